//! Backup targets that cannot take a backup: a filesystem that is full (a 64 KiB tmpfs the test
//! mounts) and a remote that refuses connections. The window fails with the reason, clients are
//! not held, nothing the server holds is touched, and once the target has room again the next
//! window succeeds and its backup restores with every row.

use std::process::Command;
use std::time::Duration;

use doltgres_sidecar::config::backup::SyncConfig;
use proxy_tests::facts::exec;
use proxy_tests::{TestProxy, TestServer};

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("cannot run mount");
        assert!(
            status.success(),
            "mounting a small tmpfs failed (the test runs as root)"
        );
        Tmpfs { dir }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn sync_to(url: String) -> impl FnOnce(&mut doltgres_sidecar::config::Config) {
    move |c| {
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(url),
        });
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    let row = client.query_one(sql, &[]).await.unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_target_fails_the_window_and_the_next_succeeds_once_there_is_room() {
    let server = TestServer::doltgres().await;
    let target = Tmpfs::mount("64k");
    let url = format!("file://{}/{{database}}", target.dir.path().display());
    let password = server.password.clone();
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(password);
        sync_to(url)(c);
    })
    .await;
    let client = server.connect_at(&proxy.addr).await;
    exec(&client, "CREATE TABLE filler (id int primary key, v text)").await;
    exec(
        &client,
        "INSERT INTO filler SELECT generate_series(1, 5000), repeat('y', 100)",
    )
    .await;

    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 502, "{body}");
    let record: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["result"], "failed");
    let error = record["error"].as_str().unwrap();
    assert!(
        error.contains("database postgres") && error.contains("no space left on device"),
        "{error}"
    );
    // Not held, and the server's data is untouched.
    let during = tokio::time::timeout(
        Duration::from_secs(5),
        count(&client, "SELECT count(*) FROM filler"),
    );
    assert_eq!(
        during.await.expect("traffic held after a failed window"),
        5000
    );

    target.resize("64m");
    exec(&client, "INSERT INTO filler VALUES (5001, 'after')").await;
    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 200, "{body}");
    let restored = format!(
        "SELECT dolt_backup('restore', 'file://{}/postgres', 'restored')",
        target.dir.path().display()
    );
    let direct = server.connect_direct().await;
    direct.batch_execute(&restored).await.unwrap();
    let mut config = server.config_at(&server.addr());
    config.dbname("restored");
    let restored_db = proxy_tests::server_connect(&config).await.unwrap();
    assert_eq!(
        count(&restored_db, "SELECT count(*) FROM filler").await,
        5001
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_remote_fails_the_window_without_holding_clients() {
    let server = TestServer::doltgres().await;
    let refused = format!("http://127.0.0.1:{}/{{database}}", proxy_tests::free_port());
    let password = server.password.clone();
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(password);
        sync_to(refused)(c);
    })
    .await;
    let client = server.connect_at(&proxy.addr).await;
    exec(&client, "CREATE TABLE t (i int primary key)").await;
    let (code, body) = tokio::time::timeout(
        Duration::from_secs(120),
        proxy.admin_post("/backups?action=sync"),
    )
    .await
    .expect("the window did not end within 120 s");
    assert!(code == 502, "{code} {body}");
    let record: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("connection refused"), "{error}");
    let after = tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"));
    after
        .await
        .expect("traffic held after a failed window")
        .unwrap();
}
