//! Graceful shutdown of the real binary: SIGTERM stops accepting, lets sessions run on until the
//! shutdown timeout, then closes them with 57P01 and exits 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proxy_tests::{TestServer, free_port, install};
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_closes_sessions() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("sidecar.toml");
    std::fs::write(&config, "shutdown_timeout = \"1500ms\"\n").unwrap();
    let mut child = Command::new(install::sidecar_binary())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &listen, "--upstream", &server.addr()])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let (client, conn) = loop {
        match server
            .config_at(&listen)
            .connect(tokio_postgres::NoTls)
            .await
        {
            Ok(pair) => break pair,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("proxy never accepted: {e}"),
        }
    };
    let conn = tokio::spawn(conn);
    client.simple_query("SELECT 1").await.unwrap();

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // No new clients...
    let refused = server
        .config_at(&listen)
        .connect(tokio_postgres::NoTls)
        .await;
    assert!(
        refused.is_err(),
        "new connections must be refused during shutdown"
    );
    // ...but the open session still works during the grace period.
    client.simple_query("SELECT 2").await.unwrap();

    // At the shutdown timeout the session is closed with 57P01.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("session not closed");
    let err = ended
        .unwrap()
        .expect_err("connection must end with an error");
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "proxy did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "proxy exited with {status}");
}
