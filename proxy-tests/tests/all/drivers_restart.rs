//! Real drivers keep their session across a Doltgres restart: each driver's check program
//! (`proxy-tests/drivers/`, run with `--restart`) connects through a managed proxy, sets a custom
//! parameter, prepares a statement on the server the way the driver does it (pgx `Prepare`, psycopg
//! `prepare=True`, node-postgres `name:`, JDBC with `prepareThreshold=1`) and executes it, and then
//! sits idle while a copy window stops and restarts Doltgres. Told to go on, it executes the same
//! statement again (the driver only binds it: it believes the server still has it) and reads the
//! parameter back, all on the connection it opened before the window, and must print
//! `after: ok 42 <driver>`.
//!
//! Each driver also runs the same program with the window left out (`*::without_a_window`), which
//! must pass whatever the proxy does across restarts: it shows that the program itself is right, so
//! a failure of `*::across_a_copy_window` is the session's loss, not the program's.

use std::process::Stdio;
use std::time::Duration;

use proxy_tests::install::driver_program;
use proxy_tests::managed::{ManagedProxy, PASSWORD, USER};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Longer than the sidecar's join grace (1 s), so the copy window treats the session as long idle.
const IDLE: Duration = Duration::from_millis(1300);
/// How long a program may take to connect, prepare and print `ready` (a JVM starts slowly on two
/// cores).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the copy window may take.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a program may take from the line on stdin to its exit.
const AFTER_TIMEOUT: Duration = Duration::from_secs(60);

/// One test per driver and case: `driver` names the program (`go`, `python`, `node`, `java`),
/// `who` the value it sets `app.who` to.
macro_rules! restart_tests {
    ($name:ident, $driver:literal, $who:literal) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn across_a_copy_window() {
                super::session_scenario($driver, $who, true).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn without_a_window() {
                super::session_scenario($driver, $who, false).await
            }
        }
    };
}

restart_tests!(pgx, "go", "pgx");
restart_tests!(psycopg, "python", "psycopg");
restart_tests!(node_postgres, "node", "node-postgres");
restart_tests!(jdbc, "java", "jdbc");

/// Runs `driver`'s program with `--restart` through a managed proxy; with `window`, a copy window
/// restarts Doltgres while the program waits.
async fn session_scenario(driver: &str, who: &str, window: bool) {
    let m = ManagedProxy::start(|_, _| {}).await;
    let mut program = Program::start(driver, m.addr());

    let first = program.line(READY_TIMEOUT).await;
    if first.as_deref() != Some("ready") {
        panic!(
            "{driver}: want `ready`, got {first:?}\nstderr:\n{}",
            program.stderr().await
        );
    }
    if window {
        tokio::time::sleep(IDLE).await;
        let (code, record) = timeout(WINDOW_TIMEOUT, m.backup("copy"))
            .await
            .unwrap_or_else(|_| panic!("the copy window took longer than {WINDOW_TIMEOUT:?}"));
        assert_eq!(code, 200, "copy window: {record}");
    }
    program.go_on().await;

    let (success, rest) = program.finish(AFTER_TIMEOUT).await;
    let want = format!("after: ok 42 {who}\n");
    let stderr = program.stderr().await;
    assert!(
        success && rest == want,
        "{driver} {}: want {want:?} and exit 0, got {rest:?} (exit {})\nstderr:\n{stderr}",
        if window {
            "across a copy window"
        } else {
            "without a window"
        },
        if success { "0" } else { "non-zero" },
    );
    m.proxy.stop().await;
}

/// A driver's program running `--restart`, its stdin and stdout piped.
struct Program {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
}

impl Program {
    fn start(driver: &str, addr: &str) -> Program {
        let program = driver_program(driver);
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        let mut cmd = Command::new(&program.argv[0]);
        cmd.args(&program.argv[1..])
            .args([host, port, USER, PASSWORD, "postgres", "--restart"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The programs are told everything; no PG* variable of ours may change how drivers connect.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", program.argv));
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Program {
            child,
            stdout,
            stderr: Some(stderr),
        }
    }

    /// The next line on stdout (None at its end), waiting at most `limit`.
    async fn line(&mut self, limit: Duration) -> Option<String> {
        timeout(limit, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("the program printed no line within {limit:?}"))
            .expect("reading the program's stdout")
    }

    /// Writes the line the program waits for, and closes its stdin.
    async fn go_on(&mut self) {
        let mut stdin = self.child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").await.expect("writing a line");
        stdin.flush().await.expect("flushing stdin");
    }

    /// The rest of stdout and whether the program exited 0, waiting at most `limit` for both.
    async fn finish(&mut self, limit: Duration) -> (bool, String) {
        let run = async {
            let mut rest = String::new();
            while let Some(line) = self.stdout.next_line().await.expect("reading stdout") {
                rest.push_str(&line);
                rest.push('\n');
            }
            let status = self.child.wait().await.expect("waiting for the program");
            (status.success(), rest)
        };
        match timeout(limit, run).await {
            Ok(done) => done,
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "the program did not finish within {limit:?} of its line\nstderr:\n{}",
                    self.stderr().await
                )
            }
        }
    }

    /// Everything the program wrote to stderr, once it has closed it (at most 10 s after the
    /// program is killed).
    async fn stderr(&mut self) -> String {
        let Some(task) = self.stderr.take() else {
            return String::new();
        };
        let _ = self.child.start_kill();
        timeout(Duration::from_secs(10), task)
            .await
            .map(|r| r.unwrap_or_default())
            .unwrap_or_else(|_| "(stderr still open after 10 s)".into())
    }
}
