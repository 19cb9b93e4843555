//! `kill -9` of the sidecar binary while a push or a sync window is under way, at several points:
//! the server stays usable throughout, a restarted sidecar's push and sync windows succeed, and
//! what the remote and the backup hold restores.

use std::process::Stdio;
use std::time::Duration;

use proxy_tests::TestServer;
use proxy_tests::facts::exec;
use proxy_tests::process::{SidecarProcess, post};

/// The binary on free ports, its output dropped (the kills would interleave it with the test's).
fn start(config: &std::path::Path, upstream: &str) -> SidecarProcess {
    let args = [
        "--config".as_ref(),
        config.as_os_str(),
        "--upstream".as_ref(),
        upstream.as_ref(),
    ];
    SidecarProcess::start_with(&args, |c| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_push_and_sync_windows_leaves_usable_backups() {
    let (server, direct) =
        TestServer::doltgres_seeded("CREATE TABLE kept (id int primary key, v text)").await;
    exec(
        &direct,
        "INSERT INTO kept SELECT generate_series(1, 20000), repeat('k', 50)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[backup]\npassword = \"{pw}\"\non_shutdown = false\n\n\
             [backup.push]\nremote = \"backup\"\nurl = \"file://{d}/remote/{{database}}\"\n\
             commit_working_set = true\n\n\
             [backup.sync]\nname = \"nightly\"\nurl = \"file://{d}/sync/{{database}}\"\n",
            pw = server.password,
            d = dir.path().display()
        ),
    )
    .unwrap();
    for (round, delay_ms) in [0u64, 40, 120].into_iter().enumerate() {
        for action in ["push", "sync"] {
            let mut sidecar = start(&config, &server.addr());
            sidecar.ready().await;
            direct
                .batch_execute(&format!(
                    "INSERT INTO kept VALUES ({}, 'r')",
                    100_000 + round
                ))
                .await
                .ok();
            let url = format!("{}/backups?action={action}", sidecar.admin);
            let window = tokio::task::spawn_blocking(move || post(&url));
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            sidecar.kill_9();
            let _ = window.await;
            // The server never depended on the sidecar.
            direct
                .simple_query("SELECT count(*) FROM kept")
                .await
                .unwrap();
        }
    }
    // A new sidecar's windows succeed on what the killed ones left.
    let mut sidecar = start(&config, &server.addr());
    sidecar.ready().await;
    for action in ["push", "sync"] {
        let (code, body) = sidecar.post(&format!("/backups?action={action}")).await;
        assert_eq!(code, 200, "{action} after the kills: {body}");
    }
    drop(sidecar);
    // Both restore, with every row the server holds at HEAD (push committed the working set).
    let expected = direct
        .simple_query("SELECT count(*) FROM kept")
        .await
        .unwrap();
    let expected = match &expected[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().to_string(),
        other => panic!("{other:?}"),
    };
    let d = dir.path().display();
    for (sql, name) in [
        (
            format!("SELECT dolt_clone('file://{d}/remote/postgres', 'fromremote')"),
            "fromremote",
        ),
        (
            format!("SELECT dolt_backup('restore', 'file://{d}/sync/postgres', 'frombackup')"),
            "frombackup",
        ),
    ] {
        direct
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let restored = proxy_tests::facts::connect_to(&server, name).await;
        let rows = restored
            .simple_query("SELECT count(*) FROM kept")
            .await
            .unwrap();
        let count = match &rows[1] {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(count, expected, "{name}");
    }
}
