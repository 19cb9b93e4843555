//! What push and sync windows do before, while and after the gate is closed, on a real Doltgres:
//! each step is in the window's record with its phase; a sync pre-syncs with traffic flowing and
//! syncs again inside the window, and the backup it leaves holds exactly the transactions
//! committed before the gate closed — not the pre-sync's state, not a later one. A window that
//! pre-synced and then did not drain leaves the backup at the pre-sync's state (documented in
//! `src/window/actions/sync.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use doltgres_sidecar::config::backup::{PushConfig, SyncConfig};
use proxy_tests::facts::exec;
use proxy_tests::{TestProxy, TestServer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const WRITERS: u64 = 4;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The steps of a window record as (step, phase).
fn steps(record: &Value) -> Vec<(String, String)> {
    record["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {record}"))
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["phase"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn phase_of<'a>(steps: &'a [(String, String)], step: &str) -> Vec<&'a str> {
    steps
        .iter()
        .filter(|(s, _)| s == step)
        .map(|(_, p)| p.as_str())
        .collect()
}

/// One append: when it was sent and, if it committed, when the client had the answer.
#[derive(Debug, Clone, Copy)]
struct Append {
    sent: f64,
    acked: Option<f64>,
}

/// Appends ledger rows through the proxy until `stop`, retrying write conflicts; records each
/// attempt's times.
async fn writer(
    client: tokio_postgres::Client,
    id: u64,
    log: Arc<Mutex<Vec<Append>>>,
    stop: CancellationToken,
) {
    let sql = format!(
        "BEGIN; INSERT INTO ledger SELECT coalesce(max(seq), 0) + 1, {id} FROM ledger; COMMIT"
    );
    while !stop.is_cancelled() {
        let sent = now();
        match client.batch_execute(&sql).await {
            Ok(()) => log.lock().unwrap().push(Append {
                sent,
                acked: Some(now()),
            }),
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                let conflict = code == "23505"
                    || code == "40001"
                    || e.to_string().contains("conflict")
                    || e.to_string().contains("duplicate");
                assert!(conflict, "writer {id}: not a write conflict: {e:?}");
                log.lock().unwrap().push(Append { sent, acked: None });
                client.batch_execute("ROLLBACK").await.ok();
            }
        }
    }
}

async fn ledger_rows(client: &tokio_postgres::Client, up_to: i64) -> Vec<(i32, i32)> {
    client
        .query(
            "SELECT seq, client FROM ledger WHERE seq > 0 AND seq <= $1 ORDER BY seq",
            &[&(up_to as i32)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_backup_taken_while_writes_race_the_window_restores_to_exactly_the_acknowledged_rows()
{
    let (server, direct) = TestServer::doltgres_seeded(
        "CREATE TABLE ledger (seq INT PRIMARY KEY, client INT NOT NULL)",
    )
    .await;
    // Row 0: on an empty table `max(seq) + 1, …` returns no row (doltgres_sql_facts.rs).
    exec(&direct, "INSERT INTO ledger VALUES (0, -1)").await;
    let dir = tempfile::tempdir().unwrap();
    let sync_root = dir.path().join("sync");
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.drain_timeout = Duration::from_secs(10);
        c.backup.password = Some(server.password.clone());
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(format!("file://{}/{{database}}", sync_root.display())),
        });
    })
    .await;
    // A first sync copies the whole database; the one under test is incremental.
    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 200, "{body}");

    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let mut writers = Vec::new();
    for id in 0..WRITERS {
        let client = server.connect_at(&proxy.addr).await;
        writers.push(tokio::spawn(writer(client, id, log.clone(), stop.clone())));
    }
    // Let the writers build up a backlog for the pre-sync, then take the window under them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for w in writers {
        w.await.unwrap();
    }
    let record: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["result"], "ok", "{record}");

    // The steps: log-in and pre-sync before the gate closed, the sync itself while closed.
    let list = steps(&record);
    assert_eq!(phase_of(&list, "connect"), ["before"], "{record}");
    let presyncs = phase_of(&list, "presync");
    assert!(
        !presyncs.is_empty() && presyncs.iter().all(|p| *p == "before"),
        "{record}"
    );
    assert_eq!(phase_of(&list, "drain"), ["held"], "{record}");
    assert_eq!(phase_of(&list, "sync"), ["held"], "{record}");
    let drain = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "drain")
        .unwrap();
    let started = record["started_unix"].as_f64().unwrap();
    let closed = started + drain["at_ms"].as_f64().unwrap() / 1000.0;

    let log = log.lock().unwrap().clone();
    let acked: Vec<f64> = log.iter().filter_map(|a| a.acked).collect();
    assert!(
        acked.iter().any(|&t| t > started && t < closed),
        "no write was acknowledged while the window pre-synced: the race did not happen"
    );

    // Restore the backup and read it.
    let backup = format!("file://{}/postgres", sync_root.display());
    direct
        .simple_query(&format!(
            "SELECT dolt_backup('restore', '{backup}', 'restored')"
        ))
        .await
        .unwrap();
    let mut config = server.config_at(&server.addr());
    config.dbname("restored");
    let (restored, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = restored
        .query_one(
            "SELECT count(*), coalesce(max(seq), 0) FROM ledger WHERE seq > 0",
            &[],
        )
        .await
        .unwrap();
    let (count, max): (i64, i32) = (row.get(0), row.get(1));
    assert_eq!(count, max as i64, "the restored ledger has a gap");

    // Exactly the state inside the window: its working set, as recorded in the cut.
    let cut = &record["cut"]["postgres"];
    let hash = proxy_tests::facts::value(&restored, "SELECT dolt_hashof_db()").await;
    assert_eq!(Some(hash.as_str()), cut["working_set"].as_str(), "{record}");
    // Every append acknowledged before the gate closed is in it; none sent after it closed is
    // (a client's request then waits at the gate until the window has synced). A 2 ms margin
    // keeps the client's clock readings on the safe side of the window's.
    let margin = 0.002;
    let acked_before = acked.iter().filter(|&&t| t < closed - margin).count() as i64;
    let sent_before = log
        .iter()
        .filter(|a| a.acked.is_some() && a.sent < closed + margin)
        .count() as i64;
    assert!(
        acked_before <= count && count <= sent_before,
        "restored {count} rows; {acked_before} were acknowledged before the gate closed, \
         {sent_before} sent before it"
    );
    // And they are the live ledger's first rows, row for row.
    assert_eq!(
        ledger_rows(&restored, count).await,
        ledger_rows(&direct, count).await
    );
    // Nothing acknowledged was lost by the window.
    let live =
        proxy_tests::facts::value(&direct, "SELECT count(*) FROM ledger WHERE seq > 0").await;
    assert_eq!(live.parse::<usize>().unwrap(), acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_logs_in_before_the_gate_cuts_inside_and_pushes_after() {
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(server.password.clone());
        c.backup.push = Some(PushConfig {
            remote: "backup".into(),
            url: Some(format!(
                "file://{}/remote/{{database}}",
                dir.path().display()
            )),
            branches: vec!["main".into()],
            commit_working_set: true,
        });
    })
    .await;
    let client = server.connect_at(&proxy.addr).await;
    exec(
        &client,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .await;
    let (code, body) = proxy.admin_post("/backups?action=push").await;
    assert_eq!(code, 200, "{body}");
    let record: Value = serde_json::from_str(&body).unwrap();
    let list = steps(&record);
    for step in ["connect", "remotes", "remote_add", "branch"] {
        assert_eq!(phase_of(&list, step), ["before"], "{step}: {record}");
    }
    for step in ["drain", "commit", "gate_closed"] {
        assert_eq!(phase_of(&list, step), ["held"], "{step}: {record}");
    }
    // main's head at the cut is the commit's own hash: no query for it while the gate is closed.
    assert_eq!(phase_of(&list, "head"), ["after"], "{record}");
    assert_eq!(phase_of(&list, "push"), ["after"], "{record}");
    // The gate was closed for the held steps only: stall_ms is the `gate_closed` step.
    let gate = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "gate_closed")
        .unwrap();
    let stall = record["stall_ms"].as_f64().unwrap();
    assert!(
        (gate["ms"].as_f64().unwrap() - stall).abs() <= 1.0,
        "{record}"
    );
    let cut = &record["cut"]["postgres"];
    assert_eq!(cut["committed_working_set"], true, "{record}");
    let head = cut["heads"]["main"].as_str().unwrap().to_string();
    assert_eq!(
        cut["pushed"]["main"].as_str(),
        Some(head.as_str()),
        "{record}"
    );
    let direct = server.connect_direct().await;
    assert_eq!(
        proxy_tests::facts::value(&direct, "SELECT dolt_hashof('main')").await,
        head
    );

    // Nothing written since: no commit ("nothing to commit" is not an error), the head is read.
    let (code, body) = proxy.admin_post("/backups?action=push").await;
    assert_eq!(code, 200, "{body}");
    let record: Value = serde_json::from_str(&body).unwrap();
    let cut = &record["cut"]["postgres"];
    assert_eq!(cut["committed_working_set"], false, "{record}");
    assert_eq!(
        cut["heads"]["main"].as_str(),
        Some(head.as_str()),
        "{record}"
    );
    assert_eq!(
        phase_of(&steps(&record), "head"),
        ["held", "after"],
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_window_that_does_not_drain_leaves_the_pre_syncs_state() {
    let (server, direct) = TestServer::doltgres_seeded(
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.drain_timeout = Duration::from_millis(500);
        c.backup.password = Some(server.password.clone());
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(format!("file://{}/{{database}}", dir.path().display())),
        });
    })
    .await;
    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 200, "{body}");
    // Committed after that window: the next one's pre-sync carries it.
    let client = server.connect_at(&proxy.addr).await;
    exec(&client, "INSERT INTO t VALUES (2)").await;
    // A transaction left open keeps the next window from draining.
    let open = server.connect_at(&proxy.addr).await;
    open.batch_execute("BEGIN; INSERT INTO t VALUES (3)")
        .await
        .unwrap();
    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 503, "{body}");
    let record: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["result"], "aborted", "{record}");
    let list = steps(&record);
    assert_eq!(phase_of(&list, "presync")[0], "before", "{record}");
    assert!(phase_of(&list, "sync").is_empty(), "{record}");
    open.batch_execute("ROLLBACK").await.unwrap();

    // The backup holds the pre-sync's state: whole committed transactions (row 2), nothing of
    // the open one, but no window's cut.
    let backup = format!("file://{}/postgres", dir.path().display());
    direct
        .simple_query(&format!(
            "SELECT dolt_backup('restore', '{backup}', 'restored')"
        ))
        .await
        .unwrap();
    let restored = proxy_tests::facts::connect_to(&server, "restored").await;
    assert_eq!(
        proxy_tests::facts::column(&restored, "SELECT id FROM t ORDER BY id").await,
        ["1", "2"]
    );
}
