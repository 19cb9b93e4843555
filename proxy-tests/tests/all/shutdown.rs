//! Graceful shutdown of the real binary, as PostgreSQL's smart shutdown turning fast: SIGTERM
//! stops accepting; a session inside a transaction (or with a request running) runs on to its
//! boundary and is then ended with 57P01; an idle session is ended with 57P01 at once; whatever
//! is still in a transaction at `shutdown_timeout` is ended then; the process exits 0.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use proxy_tests::facts::exec;
use proxy_tests::process::SidecarProcess;
use proxy_tests::{TestServer, free_port};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

/// A sidecar in front of `server` with this `shutdown_timeout`.
async fn sidecar(server: &TestServer, dir: &tempfile::TempDir, timeout: &str) -> SidecarProcess {
    let config = dir.path().join("sidecar.toml");
    std::fs::write(&config, format!("shutdown_timeout = \"{timeout}\"\n")).unwrap();
    let upstream = server.addr();
    let args = [
        "--config".as_ref(),
        config.as_os_str(),
        "--upstream".as_ref(),
        upstream.as_ref(),
    ];
    let mut sidecar = SidecarProcess::start(&args);
    sidecar.ready().await;
    sidecar
}

/// A client through the sidecar, with its connection task (which ends with the session).
async fn connect(
    server: &TestServer,
    sidecar: &SidecarProcess,
) -> (
    tokio_postgres::Client,
    JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, conn) = server
        .config_at(&sidecar.listen)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connection through the sidecar failed");
    (client, tokio::spawn(conn))
}

/// Waits (up to `within`) for a session to end and returns how it ended.
async fn ended(
    conn: JoinHandle<Result<(), tokio_postgres::Error>>,
    within: Duration,
) -> tokio_postgres::Error {
    tokio::time::timeout(within, conn)
        .await
        .expect("the session was not ended")
        .unwrap()
        .expect_err("the session must end with an error")
}

fn sigterm(sidecar: &SidecarProcess) {
    kill(sidecar.pid(), Signal::SIGTERM).unwrap();
}

async fn exits_ok(sidecar: &mut SidecarProcess, within: Duration) {
    let status = sidecar
        .wait_exit(within)
        .await
        .unwrap_or_else(|| panic!("the sidecar did not exit within {within:?}"));
    assert!(status.success(), "the sidecar exited with {status}");
}

/// A transaction open at SIGTERM and a request running then both finish; the sessions are ended
/// with 57P01 once at a boundary, and the process exits long before `shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_finish_then_their_sessions_end() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = sidecar(&server, &dir, "60s").await;
    let (client, conn) = connect(&server, &sidecar).await;
    exec(&client, "CREATE TABLE grace (id int primary key)").await;
    exec(&client, "BEGIN; INSERT INTO grace VALUES (1)").await;
    let (sleeper, sleeper_conn) = connect(&server, &sidecar).await;
    let running = tokio::spawn(async move {
        let result = sleeper.simple_query("SELECT pg_sleep(2)").await;
        (result, sleeper)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    sigterm(&sidecar);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // No new clients...
    assert!(
        server
            .config_at(&sidecar.listen)
            .connect(tokio_postgres::NoTls)
            .await
            .is_err(),
        "new connections must be refused during shutdown"
    );
    // ...but the open transaction goes on and commits, and the running request gets its answer.
    client
        .batch_execute("INSERT INTO grace VALUES (2)")
        .await
        .expect("a transaction open at SIGTERM may go on");
    client
        .batch_execute("COMMIT")
        .await
        .expect("a transaction open at SIGTERM may commit");
    let (result, _sleeper) = running.await.unwrap();
    result.expect("a request running at SIGTERM gets its answer");

    // At their boundary both sessions are ended with 57P01, well before the 60 s timeout.
    let err = ended(conn, Duration::from_secs(15)).await;
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    let err = ended(sleeper_conn, Duration::from_secs(15)).await;
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    exits_ok(&mut sidecar, Duration::from_secs(20)).await;
    assert!(signalled.elapsed() < Duration::from_secs(30));

    let direct = server.connect_direct().await;
    let rows = direct
        .simple_query("SELECT count(*) FROM grace")
        .await
        .unwrap();
    let count = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(count.as_deref(), Some("2"), "the commit made in the grace");
}

/// One idle psql-like session does not keep a shutdown waiting for `shutdown_timeout`: it is
/// ended with FATAL 57P01 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_ended_at_once() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = sidecar(&server, &dir, "60s").await;
    let (client, conn) = connect(&server, &sidecar).await;
    client.simple_query("SELECT 1").await.unwrap();
    let signalled = Instant::now();
    sigterm(&sidecar);
    let err = ended(conn, Duration::from_secs(20)).await;
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.severity(), "FATAL");
    exits_ok(&mut sidecar, Duration::from_secs(20)).await;
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "shutdown took {:?} with one idle session",
        signalled.elapsed()
    );
    drop(client);
}

/// A session still inside a transaction at `shutdown_timeout` is ended with 57P01 then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_still_open_at_the_timeout_is_ended() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = sidecar(&server, &dir, "1500ms").await;
    let (client, conn) = connect(&server, &sidecar).await;
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    sigterm(&sidecar);
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .simple_query("SELECT 2")
        .await
        .expect("still inside its transaction: the session goes on");
    let err = ended(conn, Duration::from_secs(10)).await;
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    exits_ok(&mut sidecar, Duration::from_secs(10)).await;
}

/// A second signal ends the process at once, whatever is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = sidecar(&server, &dir, "60s").await;
    let (client, _conn) = connect(&server, &sidecar).await;
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    sigterm(&sidecar);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sidecar.child.try_wait().unwrap().is_none(),
        "the transaction keeps the first shutdown waiting"
    );
    kill(sidecar.pid(), Signal::SIGINT).unwrap();
    let status = sidecar
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("a second signal must exit at once");
    assert!(!status.success(), "{status}");
}

/// After a hand-over to a successor (`run --upgrade`) the old process's sessions run on; a
/// SIGTERM to it then ends those at a boundary at once, as a shutdown does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_hand_over_a_sigterm_ends_the_old_process_idle_sessions() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "shutdown_timeout = \"60s\"\nhandover_socket = \"{}\"\n",
            dir.path().join("handover.sock").display()
        ),
    )
    .unwrap();
    let upstream = server.addr();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &upstream,
    ];
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut old = SidecarProcess::start_at(&listen, &admin, &args, |_| {});
    old.ready().await;
    let (client, conn) = connect(&server, &old).await;
    client.simple_query("SELECT 1").await.unwrap();
    let upgrade = [&args[..], &["--upgrade"]].concat();
    let new = SidecarProcess::start_at(&listen, &admin, &upgrade, |_| {});
    // The successor answers on the shared admin port once it has taken over, and holds windows
    // off while the old process still runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = new.get("/status").await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        if status["pid"] == new.child.id() && status["windows_held_off"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "no hand-over: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .simple_query("SELECT 2")
        .await
        .expect("the old process's session goes on after the hand-over");
    assert!(old.child.try_wait().unwrap().is_none());
    sigterm(&old);
    let err = ended(conn, Duration::from_secs(20)).await;
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    exits_ok(&mut old, Duration::from_secs(20)).await;
    let (fresh, _fresh_conn) = connect(&server, &new).await;
    fresh
        .simple_query("SELECT 3")
        .await
        .expect("the successor serves");
}
