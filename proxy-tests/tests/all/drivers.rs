//! The driver matrix: real client drivers work through the proxy exactly as they do directly.
//!
//! Each driver's check program (`proxy-tests/drivers/`: pgx v5, psycopg 3, node-postgres, and
//! PostgreSQL's JDBC driver with server-side prepared statements from the first execution) runs the
//! same scenario — SCRAM login, simple query, `$1` parameters, a prepared statement reused, a
//! committed and a rolled-back transaction, a failing query and recovery, 10,000 rows — once
//! straight against the server and once through the proxy. Both runs must print the same steps and
//! exit alike, and both must pass every step (on Doltgres too: see docs/driver-matrix.md). A third
//! run goes through a proxy with `auth = "proxy"`: each driver's SCRAM client against the proxy's
//! own exchange.
//! The programs are installed by `scripts/ensure-drivers.sh`; if that fails, the tests fail.

use std::process::Stdio;
use std::time::Duration;

use doltgres_sidecar::auth::AuthMode;
use proxy_tests::install::{DriverProgram, driver_program};
use proxy_tests::{TestProxy, TestServer, both_servers};
use tokio::process::Command;

/// How long one run of a check program may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What every check program prints when each step passes.
const ALL_STEPS_PASS: &str = "\
connect: ok
simple: ok 42
params: ok 42 hello
prepared: ok 2 4 6
create: ok
commit: ok 3
rollback: ok 3
error: ok 22012
after-error: ok 1
rows: ok 10000 rows, sum 50005000
drop: ok
close: ok
";

/// The table prefix the programs use (suffixed with their pid, so it differs between runs).
const TABLE_PREFIX: &str = "driver_check_";

both_servers!(pgx);
async fn pgx(server: TestServer) {
    direct_and_through_proxy("go", server).await;
}

both_servers!(psycopg);
async fn psycopg(server: TestServer) {
    direct_and_through_proxy("python", server).await;
}

both_servers!(node_postgres);
async fn node_postgres(server: TestServer) {
    direct_and_through_proxy("node", server).await;
}

both_servers!(jdbc);
async fn jdbc(server: TestServer) {
    direct_and_through_proxy("java", server).await;
}

async fn direct_and_through_proxy(driver: &str, server: TestServer) {
    let program = driver_program(driver);
    let proxy = TestProxy::start(&server.addr()).await;
    // The same, with the proxy running the SCRAM exchange itself (verifiers from the server).
    let password = server.password.clone();
    let auth_proxy = TestProxy::start_with(&server.addr(), |c| {
        c.auth = Some(AuthMode::Proxy);
        c.backup.password = Some(password);
    })
    .await;
    let direct = run(program, &server, &server.addr()).await;
    let proxied = run(program, &server, &proxy.addr).await;
    let authenticated = run(program, &server, &auth_proxy.addr).await;
    for (how, through) in [
        ("through the proxy", &proxied),
        ("through the proxy with auth = proxy", &authenticated),
    ] {
        assert_eq!(
            (direct.success, &direct.steps),
            (through.success, &through.steps),
            "{driver} on {:?}: {how} (right) differs from direct (left)\n\
             direct stderr:\n{}\n{how}, stderr:\n{}",
            server.kind,
            direct.stderr,
            through.stderr,
        );
    }
    for (how, run) in [
        ("direct", &direct),
        ("through the proxy", &proxied),
        ("through the proxy with auth = proxy", &authenticated),
    ] {
        assert!(
            run.success && run.steps == ALL_STEPS_PASS,
            "{driver} on {:?} {how} did not pass every step:\n{}\nstderr:\n{}",
            server.kind,
            run.steps,
            run.stderr,
        );
    }
    proxy.stop().await;
    auth_proxy.stop().await;
}

// A driver's cancel (libpq's, pgx's) returns once the server has closed the cancel connection,
// which PostgreSQL does only after it has signalled the backend: a query sent afterwards cannot
// be hit. Through the proxy the client's cancel connection must not close earlier, or the cancel
// lands on the next query. Each check program cancels on an idle connection and then runs
// `SELECT pg_sleep(0.2)`, 20 times: none may be cancelled, directly, through the proxy, and
// through the proxy with TLS. (Doltgres ignores cancels: 0 there too.)
both_servers!(psycopg_cancel);
async fn psycopg_cancel(server: TestServer) {
    cancel_hits_nothing_later("python", server).await;
}

both_servers!(pgx_cancel);
async fn pgx_cancel(server: TestServer) {
    cancel_hits_nothing_later("go", server).await;
}

async fn cancel_hits_nothing_later(driver: &str, server: TestServer) {
    let program = driver_program(driver);
    let dir = tempfile::tempdir().unwrap();
    let certs = proxy_tests::certs::TestCerts::create(dir.path());
    let proxy = TestProxy::start(&server.addr()).await;
    let tls_proxy = TestProxy::start_with(&server.addr(), |c| {
        c.tls = doltgres_sidecar::tls::ClientTlsMode::Require;
        c.tls_cert = Some(certs.cert.clone());
        c.tls_key = Some(certs.key.clone());
    })
    .await;
    for (how, addr, sslmode) in [
        ("direct", server.addr(), "prefer"),
        ("through the proxy", proxy.addr.clone(), "disable"),
        (
            "through the proxy with TLS",
            tls_proxy.addr.clone(),
            "require",
        ),
    ] {
        let run = run_mode(
            program,
            &server,
            &addr,
            &["--cancel"],
            &[("DRIVER_SSLMODE", sslmode)],
        )
        .await;
        assert!(
            run.success && run.steps == "cancel: ok 0 of 20\n",
            "{driver} on {:?} {how}:\n{}\nstderr:\n{}",
            server.kind,
            run.steps,
            run.stderr
        );
    }
    proxy.stop().await;
    tls_proxy.stop().await;
}

/// What one run of a check program printed, and whether it exited 0.
struct Run {
    success: bool,
    /// Its stdout (one line per step), the per-run table name made uniform.
    steps: String,
    stderr: String,
}

/// Runs `program`'s scenario against `addr` with `server`'s credentials.
async fn run(program: &DriverProgram, server: &TestServer, addr: &str) -> Run {
    run_mode(program, server, addr, &[], &[]).await
}

/// Runs `program` against `addr` with `server`'s credentials, more arguments and variables.
async fn run_mode(
    program: &DriverProgram,
    server: &TestServer,
    addr: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut cmd = Command::new(&program.argv[0]);
    cmd.args(&program.argv[1..])
        .args([host, port, &server.user, &server.password, &server.database])
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // The programs are told everything; no PG* variable of ours may change how drivers connect.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within {RUN_TIMEOUT:?}", program.name))
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", program.argv));
    Run {
        success: out.status.success(),
        steps: uniform_table_names(&String::from_utf8_lossy(&out.stdout)),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Replaces `driver_check_<pid>` with `driver_check_N`, so that error messages naming the table
/// compare equal across runs.
fn uniform_table_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TABLE_PREFIX) {
        let after = &rest[at + TABLE_PREFIX.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&rest[..at + TABLE_PREFIX.len()]);
        out.push_str(if digits > 0 { "N" } else { "" });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn table_names_are_made_uniform() {
    assert_eq!(
        uniform_table_names("table driver_check_4242 not found; driver_check_x driver_check_7"),
        "table driver_check_N not found; driver_check_x driver_check_N"
    );
}
