//! Runs pgbench against an address and reads back how many transactions each script ran.

use std::path::Path;
use std::process::Command;

use crate::TestServer;

/// What pgbench reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PgbenchReport {
    /// "number of transactions actually processed".
    pub processed: u64,
    /// Transactions per script, in the order the scripts were given.
    pub per_script: Vec<u64>,
    pub failed: u64,
    pub stdout: String,
}

/// Runs pgbench with `args` (scripts, clients, mode...) against `addr` with the server's
/// credentials. Panics with pgbench's output if it fails.
pub fn run(server: &TestServer, addr: &str, args: &[&str]) -> PgbenchReport {
    run_as(&Login::of(server), addr, args)
}

/// Who pgbench logs in as: a server's credentials, to move into another thread.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Login {
    pub fn of(server: &TestServer) -> Login {
        Login {
            user: server.user.clone(),
            password: server.password.clone(),
            database: server.database.clone(),
        }
    }
}

/// [`run`] with credentials instead of a server.
pub fn run_as(login: &Login, addr: &str, args: &[&str]) -> PgbenchReport {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("pgbench")
        .args(["-h", host, "-p", port, "-U", &login.user, "-n"])
        .args(args)
        .arg(&login.database)
        .env("PGPASSWORD", &login.password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("cannot run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "pgbench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    parse(&stdout)
}

/// Reads pgbench's summary.
pub fn parse(stdout: &str) -> PgbenchReport {
    let mut report = PgbenchReport {
        stdout: stdout.to_string(),
        ..PgbenchReport::default()
    };
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            report.processed = first_number(rest);
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            report.failed = first_number(rest);
        } else if let Some(rest) = line.strip_prefix("- ")
            && rest.contains(" transactions (")
        {
            report.per_script.push(first_number(rest));
        }
    }
    report
}

fn first_number(text: &str) -> u64 {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Writes a pgbench script file and returns its path as pgbench's `-f` argument with a weight.
pub fn script(dir: &Path, name: &str, body: &str, weight: u32) -> String {
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, body).unwrap();
    format!("{}@{weight}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_per_script_counts() {
        let out = "transaction type: multiple scripts\nnumber of transactions actually processed: 100/100\n\
                   number of failed transactions: 0 (0.000%)\nSQL script 1: /tmp/a.sql\n - weight: 1 (targets 50.0% of total)\n \
                   - 48 transactions (48.0% of total, tps = 1.0)\nSQL script 2: /tmp/b.sql\n - weight: 1\n - 52 transactions (52.0% of total, tps = 1.1)\n";
        let r = parse(out);
        assert_eq!(r.processed, 100);
        assert_eq!(r.per_script, vec![48, 52]);
    }
}
