//! Figures for proxy authentication and session survival, printed (run with `--nocapture`) and
//! never asserted as times: a login through the sidecar in `auth = "proxy"` against
//! `auth = "passthrough"` (pgbench `-C`, a new connection per transaction, same Doltgres), and 1,000
//! idle sessions re-attached after a copy window. What is asserted is that everything worked.

use std::time::{Duration, Instant};

use doltgres_sidecar::auth::AuthMode;
use proxy_tests::managed::ManagedProxy;
use proxy_tests::raw::{Login, Msg, RawClient};
use proxy_tests::{TestProxy, TestServer, pgbench};

const LOGINS: &str = "300";
const IDLE_SESSIONS: usize = 1_000;

/// CPU time (user + system) this process has used: the in-process proxy's, as the test itself
/// waits while pgbench runs.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cost_in_proxy_and_passthrough_mode() {
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let script = pgbench::script(dir.path(), "one", "SELECT 1;\n", 1);
    let mut lines = Vec::new();
    for mode in [AuthMode::Passthrough, AuthMode::Proxy] {
        let password = server.password.clone();
        let user = server.user.clone();
        let proxy = TestProxy::start_with(&server.addr(), |c| {
            c.auth = Some(mode);
            c.backup.user = user;
            c.backup.password = Some(password);
        })
        .await;
        let addr = proxy.addr.clone();
        let started = (Instant::now(), cpu());
        let report = {
            let server = &server;
            let args = ["-C", "-c", "1", "-t", LOGINS, "-f", &script];
            tokio::task::block_in_place(|| pgbench::run(server, &addr, &args))
        };
        let (wall, used) = (started.0.elapsed(), cpu() - started.1);
        assert_eq!(report.failed, 0);
        assert_eq!(report.processed, LOGINS.parse::<u64>().unwrap());
        let n = report.processed as f64;
        lines.push(format!(
            "{mode:?}: {:.2} ms per connection and query, proxy CPU {:.0} µs per login",
            wall.as_secs_f64() * 1000.0 / n,
            used.as_secs_f64() * 1e6 / n
        ));
        proxy.stop().await;
    }
    println!(
        "login cost (pgbench -C, {LOGINS} logins, Doltgres):\n  {}",
        lines.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sessions_reattach_after_a_copy_window() {
    let m = ManagedProxy::start(|c, _| c.max_client_connections = IDLE_SESSIONS + 10).await;
    let login = Login {
        user: proxy_tests::managed::USER,
        password: proxy_tests::managed::PASSWORD,
        database: "postgres",
    };
    let mut clients = Vec::with_capacity(IDLE_SESSIONS);
    for i in 0..IDLE_SESSIONS {
        let mut c = RawClient::login_as(m.addr(), &login, &[]).await;
        c.query(&format!("SET app.n = '{i}'")).await;
        clients.push(c);
    }
    for c in &mut clients {
        c.until_ready().await;
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let window = Instant::now();
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    let window_took = window.elapsed();
    let back = Instant::now();
    for c in &mut clients {
        c.query("SHOW app.n").await;
    }
    let answers: Vec<Vec<Msg>> =
        futures_util::future::join_all(clients.iter_mut().map(|c| async {
            tokio::time::timeout(Duration::from_secs(120), c.until_ready())
                .await
                .expect("no answer within 120 s")
        }))
        .await;
    let answered = back.elapsed();
    for (i, messages) in answers.iter().enumerate() {
        let row = messages.iter().find(|m| m.tag == b'D').expect("a row");
        assert!(row.body.ends_with(i.to_string().as_bytes()), "session {i}");
    }
    println!(
        "re-attach: {IDLE_SESSIONS} idle sessions; the copy window took {:.0} ms; every session's \
         next query answered, with its setting, {:.0} ms after the window ended",
        window_took.as_secs_f64() * 1000.0,
        answered.as_secs_f64() * 1000.0
    );
}
