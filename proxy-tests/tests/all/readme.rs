//! The README's own commands, as written, against the demo: the "Start here" block
//! (`scripts/demo`, then psql through it), then every command of "Operating it", run from a
//! temporary directory that is not the clone's root, with `doltgres-sidecar` on `PATH` as the
//! demo says to put it; each one's exit code and output are checked. A command added to either
//! block without a check here fails the test, so the README cannot drift from what works.
//!
//! How the test adapts the demo, and why:
//! - it runs the binary this workspace built (`DOLTGRES_SIDECAR_DEMO_BINARY`): a test must not
//!   start a release build;
//! - its files go to a temporary directory (`DOLTGRES_SIDECAR_SERVER_DIR`), not the clone's
//!   `var/`, which a developer's own demo may be using;
//! - when 6432 or 9187 is taken (another sidecar, another test), it listens on free ports
//!   (`DOLTGRES_SIDECAR_LISTEN`, `DOLTGRES_SIDECAR_ADMIN_LISTEN`), psql's `-p 6432` is changed to
//!   match, and the commands get `DOLTGRES_SIDECAR_ADMIN_URL`;
//! - a `run` line is run as `check-config` with the same arguments (it would start a server the
//!   test does not have; check-config resolves and validates exactly as run does), with
//!   `sidecar.toml` being `examples/sidecar.toml`;
//! - `DIR` becomes a directory of the temporary one, and `[A | B]` each way of typing the line.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use doltgres_sidecar::config::Config;
use doltgres_sidecar::manual;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use proxy_tests::{free_port, install, readme};

/// The longest one README command may take.
const COMMAND_DEADLINE: &str = "120";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Removes the sidecar's variables (and `RUST_LOG`) this process may have, so only what the test
/// says counts.
fn clean_env(command: &mut Command) -> &mut Command {
    command.env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("DOLTGRES_SIDECAR_") || n == "DOLTGRES_PASSWORD")
        {
            command.env_remove(name);
        }
    }
    command
}

/// `scripts/demo`, running as its own process group (as in a terminal, where Ctrl-C stops it).
struct Demo {
    child: Child,
    log: PathBuf,
    admin: String,
}

impl Demo {
    fn start(line: &str, dir: &Path, ports: Option<(u16, u16)>) -> Demo {
        let log = dir.join("demo.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new("bash");
        clean_env(command.arg("-c").arg(line))
            .current_dir(repo())
            .env("DOLTGRES_SIDECAR_DEMO_BINARY", install::sidecar_binary())
            .env(
                "DOLTGRES_SIDECAR_SERVER_DIR",
                dir.join("var").join("doltgres"),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let admin = match ports {
            Some((listen, admin)) => {
                command
                    .env("DOLTGRES_SIDECAR_LISTEN", format!("127.0.0.1:{listen}"))
                    .env(
                        "DOLTGRES_SIDECAR_ADMIN_LISTEN",
                        format!("127.0.0.1:{admin}"),
                    );
                format!("http://127.0.0.1:{admin}")
            }
            None => "http://127.0.0.1:9187".to_string(),
        };
        let child = command.spawn().expect("cannot run scripts/demo");
        Demo { child, log, admin }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the sidecar's admin API answers; panics if the demo exits first.
    fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let url = format!("{}/healthz", self.admin);
        loop {
            if ureq::get(&url).call().is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("scripts/demo exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ctrl-C: SIGINT to the demo's process group; its exit status.
    fn interrupt(&mut self, within: Duration) -> std::process::ExitStatus {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGINT);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// psql from the "Start here" block, kept open like the reader's other terminal.
struct Psql {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Psql {
    fn start(line: &str, cwd: &Path) -> Psql {
        let mut command = Command::new("bash");
        let mut child = clean_env(command.arg("-c").arg(line))
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run psql");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let stdin = child.stdin.take();
        Psql {
            child,
            stdin,
            lines,
        }
    }

    /// Types `sql` and reads what psql prints until a line holding `until`.
    fn send(&mut self, sql: &str, until: &str, within: Duration) -> Vec<String> {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(sql.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(until);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("psql printed no {until:?} within {within:?}: {seen:?}"),
            }
        }
    }

    /// Ends the input, as Ctrl-D does; psql's exit status.
    fn quit(&mut self, within: Duration) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "psql did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Psql {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the "Operating it" commands run, and how.
struct Shell {
    cwd: PathBuf,
    path: OsString,
    admin_url: Option<String>,
}

impl Shell {
    /// `line`, as a shell runs it, within [`COMMAND_DEADLINE`].
    fn run(&self, line: &str) -> Output {
        let mut command = Command::new("timeout");
        clean_env(command.args([COMMAND_DEADLINE, "bash", "-c", line]))
            .current_dir(&self.cwd)
            .env("PATH", &self.path)
            .stdin(Stdio::null());
        if let Some(url) = &self.admin_url {
            command.env("DOLTGRES_SIDECAR_ADMIN_URL", url);
        }
        let out = command.output().expect("cannot run bash");
        let (stdout, stderr) = text(&out);
        // The transcript, long outputs (the manual, a config) cut short.
        let lines: Vec<&str> = stdout.lines().collect();
        let shown = match lines.len() {
            0..=12 => stdout.clone(),
            n => format!("{}\n[... {} more lines]\n", lines[..8].join("\n"), n - 8),
        };
        println!(
            "$ {line}\n{shown}{stderr}(exit {})",
            out.status.code().unwrap_or(-1)
        );
        out
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `PATH` the demo's printed `export PATH=...` line makes, run as printed.
fn path_from_demo(log: &str) -> OsString {
    let line = log
        .lines()
        .find_map(|l| l.split_once(": export PATH=").map(|(_, v)| v))
        .unwrap_or_else(|| panic!("the demo printed no export PATH line:\n{log}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("export PATH={line}; printf %s \"$PATH\""))
        .output()
        .unwrap();
    OsString::from(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn the_readme_commands_run_as_written_against_the_demo() {
    install::postgres_bindir(); // psql
    install::doltgres_binary();
    let readme = readme::text();
    let start_here = readme::block(&readme, "Start here");
    let operating = readme::block(&readme, "Operating it");
    let [demo_line, psql_line] = &start_here[..] else {
        panic!("\"Start here\" has other commands than the demo and psql: {start_here:?}")
    };
    assert_eq!(demo_line, "scripts/demo");
    assert!(psql_line.contains("psql") && psql_line.contains("-p 6432"));

    let dir = tempfile::Builder::new()
        .prefix("dgs-readme-")
        .tempdir()
        .unwrap();
    let ports = match (
        std::net::TcpListener::bind("127.0.0.1:6432").is_ok(),
        std::net::TcpListener::bind("127.0.0.1:9187").is_ok(),
    ) {
        (true, true) => None,
        _ => Some((free_port(), free_port())),
    };
    let started = Instant::now();
    let mut demo = Demo::start(demo_line, dir.path(), ports);
    demo.wait_ready(Duration::from_secs(120));
    let ready = started.elapsed();
    println!("scripts/demo ready in {ready:?} (ports: {ports:?})");
    assert!(
        ready < Duration::from_secs(60),
        "a demo with everything built must start in seconds, not {ready:?}"
    );

    let cwd = dir.path().join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();
    let psql_line = match ports {
        Some((listen, _)) => psql_line.replace("-p 6432", &format!("-p {listen}")),
        None => psql_line.clone(),
    };
    let mut psql = Psql::start(&psql_line, &cwd);
    let shown = psql.send(
        "CREATE TABLE notes (id int primary key, v text);\n\
         INSERT INTO notes VALUES (1, 'one'), (2, 'two');\n\
         SELECT 'psql says ' || count(*) FROM notes;\n",
        "psql says 2",
        Duration::from_secs(60),
    );
    println!(
        "psql: {shown:?}, first answer {:?} after the start",
        started.elapsed()
    );

    let shell = Shell {
        path: path_from_demo(&demo.log()),
        admin_url: ports.map(|_| demo.admin.clone()),
        cwd: cwd.clone(),
    };
    std::fs::copy(
        repo().join("examples/sidecar.toml"),
        cwd.join("sidecar.toml"),
    )
    .unwrap();
    let server_pid = {
        let (_, body) = get(&format!("{}/status", demo.admin));
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["server_pid"].as_u64().expect("a managed server pid")
    };
    for line in &operating {
        for typed in readme::variants(line) {
            check(&shell, &typed, server_pid);
        }
    }

    assert!(psql.quit(Duration::from_secs(30)).success());
    let status = demo.interrupt(Duration::from_secs(120));
    let log = demo.log();
    assert!(status.success(), "the demo's exit: {status}\n{log}");
    assert!(log.contains("proxy stopped"), "{log}");
}

/// `GET url`: status and body.
fn get(url: &str) -> (u16, String) {
    let mut r = ureq::get(url).call().expect("the admin API answers");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// Runs one way of typing a README line and checks what it did.
fn check(shell: &Shell, typed: &str, server_pid: u64) {
    let words: Vec<&str> = typed.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"doltgres-sidecar"), "{typed}");
    let command = words.get(1).copied().unwrap_or_default();
    let has = |flag: &str| words.contains(&flag);
    let in_cwd = |name: &str| shell.cwd.join(name).display().to_string();
    let ok = |out: &Output| {
        let (stdout, stderr) = text(out);
        assert!(out.status.success(), "{typed}: {stdout}{stderr}");
        assert!(
            !stderr.contains("note:"),
            "{typed}: the running sidecar was not found: {stderr}"
        );
        stdout
    };
    match command {
        "run" => {
            let checked =
                typed.replacen("doltgres-sidecar run", "doltgres-sidecar check-config", 1);
            let stdout = ok(&shell.run(&checked));
            let config = Config::from_toml(&stdout).unwrap_or_else(|e| panic!("{typed}: {e}"));
            if has("--listen") {
                assert_eq!(config.listen, "0.0.0.0:6432", "{typed}");
            }
            if has("--server-dir") {
                assert_eq!(
                    config.backup.copy.unwrap().catalog,
                    Path::new("/data/backups"),
                    "{typed}"
                );
            }
        }
        "status" => {
            let stdout = ok(&shell.run(typed));
            assert!(
                stdout.contains(&format!("server: managed Doltgres, pid {server_pid}")),
                "{stdout}"
            );
            assert!(stdout.contains("1 session(s)"), "{stdout}");
            assert!(stdout.contains("server pid"), "{stdout}");
            let row = stdout.lines().find(|l| l.contains("postgres ")).unwrap();
            assert!(row.contains(&format!(" {server_pid} ")), "{stdout}");
        }
        "backup" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.contains("copy (operator): ok"), "{stdout}");
        }
        "quiesce" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.contains("holds every session"), "{stdout}");
        }
        "resume" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.contains("resumed"), "{stdout}");
        }
        "backups" if has("--json") => {
            let stdout = ok(&shell.run(typed));
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert!(v["copies"].as_array().is_some_and(|c| !c.is_empty()), "{v}");
        }
        "backups" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.contains("copy (operator): ok"), "{stdout}");
            assert!(stdout.contains("copies (newest first)"), "{stdout}");
        }
        "verify" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.contains("verifies"), "{stdout}");
        }
        "restore" => {
            let typed = typed.replace(" DIR", &format!(" {}", in_cwd("restored")));
            let stdout = ok(&shell.run(&typed));
            if has("--if-empty") {
                assert!(stdout.contains("nothing restored"), "{stdout}");
            } else {
                assert!(stdout.contains("restored copy"), "{stdout}");
            }
            assert!(shell.cwd.join("restored/data/postgres").is_dir(), "{typed}");
        }
        "check-config" => {
            let stdout = ok(&shell.run(typed));
            Config::from_toml(&stdout).unwrap_or_else(|e| panic!("{typed}: {e}\n{stdout}"));
        }
        "completions" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.contains("complete "), "{stdout}");
        }
        "man" if has("--dir") => {
            let pages = in_cwd("manual");
            ok(&shell.run(&typed.replace(" DIR", &format!(" {pages}"))));
            let written: Vec<PathBuf> = std::fs::read_dir(&pages)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(written.len() > 10, "{written:?}");
            for page in &written {
                for named in manual::references(&std::fs::read(page).unwrap()) {
                    assert!(
                        Path::new(&pages).join(&named).exists(),
                        "{} names {named}, which was not written",
                        page.display()
                    );
                }
            }
        }
        "man" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.contains(".TH doltgres-sidecar 1"), "{stdout}");
            assert!(stdout.contains(".SH \"doltgres\\-sidecar restore\""));
        }
        "--version" => {
            let stdout = ok(&shell.run(typed));
            assert!(stdout.starts_with("doltgres-sidecar "), "{stdout}");
        }
        other => panic!(
            "the README's \"Operating it\" runs `{other}`, which this test does not check yet: \
             add its check"
        ),
    }
}
