//! Process faults: a snapshot command that hangs past its timeout, and `kill -9` of a managed
//! Doltgres under load (sessions inside a transaction get `08006`; every commit a client saw
//! acknowledged is still there after the restart, as an unbroken ledger).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use doltgres_sidecar::config::backup::SnapshotConfig;
use proxy_tests::facts::exec;
use proxy_tests::ledger::{self, Append};
use proxy_tests::managed::{ManagedProxy, assert_commit_lost};
use proxy_tests::{TestProxy, TestServer};
use tokio_postgres::SimpleQueryMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_snapshot_command_fails_at_its_timeout_and_traffic_flows() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.snapshot = Some(SnapshotConfig {
            command: vec!["sleep".into(), "60".into()],
            timeout: Duration::from_millis(700),
        });
    })
    .await;
    let started = Instant::now();
    let (code, body) = proxy.admin_post("/backups?action=snapshot").await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("did not finish within"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the window waited on the command"
    );
    assert!(!proxy.shared.gate.is_closed());
    let c = server.connect_at(&proxy.addr).await;
    tokio::time::timeout(Duration::from_secs(2), c.simple_query("SELECT 1"))
        .await
        .unwrap()
        .unwrap();
}

/// Appends rows, one transaction per connection, until `stop`; counts acknowledged commits and
/// the transactions the crash cut off (`08006`, or the connection closed under them).
async fn appender(
    config: tokio_postgres::Config,
    id: u64,
    stop: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    lost_in_flight: Arc<AtomicU64>,
) {
    while stop.load(Ordering::SeqCst) == 0 {
        match ledger::append_once(&config, id).await {
            Append::Committed => {
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Append::Conflict => {}
            Append::NotConnected(_) => {
                // Refused while the server was down: try again.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Append::Failed(e) => {
                let code = e.code().map(|c| c.code().to_string());
                assert!(
                    code.as_deref() == Some("08006") || e.is_closed(),
                    "appender {id}: {e:?}"
                );
                lost_in_flight.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_under_load_loses_no_acknowledged_commit() {
    let m = ManagedProxy::start(|_, _| {}).await;
    ledger::create(&m.connect().await).await;
    let stop = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (1..=3)
        .map(|id| {
            tokio::spawn(appender(
                m.config_at("postgres"),
                id,
                stop.clone(),
                acked.clone(),
                lost.clone(),
            ))
        })
        .collect();
    // An idle session survives the crash with its setting (proxy authentication, managed mode's
    // default, logs it in again on the restarted server).
    let idle = m.connect().await;
    idle.batch_execute("SET app.kept = 'yes'").await.unwrap();
    // An open transaction when the server dies is told so.
    let in_txn = m.connect().await;
    exec(&in_txn, "BEGIN; INSERT INTO ledger VALUES (-5, 0)").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.load(Ordering::SeqCst);
    assert!(before > 0, "no load before the crash");
    m.kill_server();
    assert_commit_lost(&in_txn).await;
    // The load goes on across the restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < before + 30 {
        assert!(Instant::now() < deadline, "no commits after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = idle.simple_query("SHOW app.kept").await.unwrap();
    assert!(
        shown
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("yes"))),
        "the idle session lost its setting"
    );
    stop.store(1, Ordering::SeqCst);
    for a in appenders {
        a.await.unwrap();
    }
    let check = m.connect().await;
    let rows = check
        .simple_query("SELECT count(*) || ',' || max(seq) || ',' || min(seq) FROM ledger")
        .await
        .unwrap();
    let line = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap();
    let parts: Vec<u64> = line.split(',').map(|p| p.parse().unwrap()).collect();
    let acked = acked.load(Ordering::SeqCst);
    // Every acknowledged commit survived; the one in flight at the crash may or may not have.
    assert_eq!(parts[2], 0, "the uncommitted row is not there");
    assert_eq!(parts[0], parts[1] + 1, "the ledger has a gap: {line}");
    assert!(
        parts[1] >= acked && parts[1] <= acked + lost.load(Ordering::SeqCst),
        "{acked} commits acknowledged, {} cut off, ledger max {}",
        lost.load(Ordering::SeqCst),
        parts[1]
    );
    let (_, metrics) = m.proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("doltgres_sidecar_server_restarts_total{cause=\"crash\"} 1"),
        "{metrics}"
    );
    drop(check);
    m.proxy.stop().await;
}
