//! Backup actions and triggers on a real Doltgres: the snapshot command runs while traffic is
//! held, failures (an unwritable target, a failing command) never leave traffic held and are
//! retried with backoff, the interval trigger fires `interval` after the first write not yet
//! backed up (never on reads alone), and a graceful shutdown takes a last backup.

use std::time::{Duration, Instant};

use doltgres_sidecar::config::backup::{SnapshotConfig, SyncConfig};
use proxy_tests::{TestProxy, TestServer};

async fn windows(proxy: &TestProxy) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&proxy.admin_get("/backups").await.1).unwrap();
    v["windows"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_command_runs_while_traffic_is_held() {
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("snapshot.txt");
    let script = format!(
        "echo \"window=$DOLTGRES_SIDECAR_WINDOW_ID upstream=$DOLTGRES_SIDECAR_UPSTREAM\" > {}; sleep 0.6; echo done",
        marker.display()
    );
    let proxy = std::sync::Arc::new(
        TestProxy::start_with(&server.addr(), |c| {
            c.backup.snapshot = Some(SnapshotConfig {
                command: vec!["sh".into(), "-c".into(), script],
                timeout: Duration::from_secs(10),
            });
        })
        .await,
    );
    let c = server.connect_at(&proxy.addr).await;
    let window = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.admin_post("/backups?action=snapshot").await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    c.simple_query("SELECT 1").await.unwrap();
    let held = started.elapsed();
    let (code, body) = window.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        held >= Duration::from_millis(300),
        "the query ran during the snapshot ({held:?})"
    );
    let record: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["cut"]["output"], "done");
    let written = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(
        written.trim(),
        format!("window={} upstream={}", record["id"], server.addr())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_snapshot_command_is_reported_and_traffic_flows() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.snapshot = Some(SnapshotConfig {
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo disk full >&2; exit 3".into(),
            ],
            timeout: Duration::from_secs(10),
        });
    })
    .await;
    let (code, body) = proxy.admin_post("/backups?action=snapshot").await;
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("exit status: 3") && body.contains("disk full"),
        "{body}"
    );
    let c = server.connect_at(&proxy.addr).await;
    tokio::time::timeout(Duration::from_secs(2), c.simple_query("SELECT 1"))
        .await
        .unwrap()
        .unwrap();
    assert!(!proxy.shared.gate.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_target_fails_and_is_retried_with_backoff() {
    let server = TestServer::doltgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(server.password.clone());
        c.backup.every_write_commits = 1;
        c.backup.retry_initial = Duration::from_millis(200);
        c.backup.retry_max = Duration::from_secs(5);
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some("file:///proc/no-such-place/{database}".into()),
        });
    })
    .await;
    let c = server.connect_at(&proxy.addr).await;
    c.batch_execute("CREATE TABLE t (i INT PRIMARY KEY)")
        .await
        .unwrap();
    // Traffic goes on while windows keep failing.
    for i in 0..20 {
        tokio::time::timeout(
            Duration::from_secs(5),
            c.execute("INSERT INTO t VALUES ($1)", &[&i]),
        )
        .await
        .expect("a failing window must not hold traffic")
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed: Vec<_> = windows(&proxy)
        .await
        .into_iter()
        .filter(|w| w["result"] == "failed")
        .collect();
    assert!(failed.len() >= 3, "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("database postgres"),
        "{failed:?}"
    );
    // Backoff: later attempts are further apart (newest first in the list).
    let starts: Vec<f64> = failed
        .iter()
        .map(|w| w["started_unix"].as_f64().unwrap())
        .rev()
        .collect();
    let gaps: Vec<f64> = starts.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(
        gaps.last().unwrap() > gaps.first().unwrap(),
        "gaps should grow: {gaps:?}"
    );
    let (_, metrics) = proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("doltgres_sidecar_windows_total{action=\"sync\",result=\"failed\"}"),
        "{metrics}"
    );
    let (_, metrics) = proxy.admin_get("/metrics").await;
    let since = metrics
        .lines()
        .find(|l| l.starts_with("doltgres_sidecar_write_commits_since_backup "))
        .unwrap();
    assert_eq!(
        since, "doltgres_sidecar_write_commits_since_backup 21",
        "failed windows reset nothing"
    );
}

/// The interval trigger: read-only traffic never opens a window; a write opens one `interval`
/// after it, not at once, however long the quiet before it was (a write waits at most
/// `interval` for its backup, and no less than that either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_trigger_fires_interval_after_the_first_write() {
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/{{database}}", dir.path().display());
    let interval = Duration::from_millis(1500);
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(server.password.clone());
        c.backup.interval = Some(interval);
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(url),
        });
    })
    .await;
    let c = server.connect_at(&proxy.addr).await;
    c.simple_query("SELECT 1").await.unwrap();
    // Quiet for longer than the interval.
    tokio::time::sleep(interval * 2).await;
    assert!(
        windows(&proxy).await.is_empty(),
        "read-only traffic must not trigger a backup"
    );
    let before_write = std::time::SystemTime::now();
    c.batch_execute("CREATE TABLE t (i INT PRIMARY KEY)")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let w = windows(&proxy).await;
        if let Some(first) = w.last() {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no interval window");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first["trigger"], "interval");
    assert_eq!(first["result"], "ok", "{first}");
    let written = before_write
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let waited = first["started_unix"].as_f64().unwrap() - written;
    assert!(
        waited >= interval.as_secs_f64() - 0.01,
        "the window opened {waited:.2}s after the write, before the interval"
    );
    assert!(
        waited < interval.as_secs_f64() + 2.0,
        "the window opened {waited:.2}s after the write"
    );
    assert!(dir.path().join("postgres").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_takes_a_last_backup() {
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/{{database}}", dir.path().display());
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(server.password.clone());
        c.shutdown_timeout = Duration::from_secs(1);
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(url),
        });
    })
    .await;
    let c = server.connect_at(&proxy.addr).await;
    c.batch_execute("CREATE TABLE t (i INT PRIMARY KEY); INSERT INTO t VALUES (7)")
        .await
        .unwrap();
    assert!(!dir.path().join("postgres").exists());
    let shared = proxy.shared.clone();
    proxy.stop().await;
    let history = shared.windows.history();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].result.as_str(), "ok");
    assert!(
        dir.path().join("postgres").exists(),
        "the final window wrote the backup"
    );
    drop(c);
}
