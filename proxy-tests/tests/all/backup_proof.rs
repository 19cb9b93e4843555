//! The product's promise, end to end on a real Doltgres: under a concurrent ledger workload through
//! the proxy, windows opened every N write commits push to a file:// remote and sync a file://
//! backup. Afterwards every cut holds an unbroken prefix of the ledger, the clone of the remote and
//! the restored backup equal the ledger, no client saw an error caused by a window, and the
//! proxy's counters equal the ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use doltgres_sidecar::config::backup::{PushConfig, SyncConfig};
use proxy_tests::facts::exec;
use proxy_tests::{TestProxy, TestServer};

const CLIENTS: u64 = 4;
const PER_CLIENT: u64 = 75;
const EVERY: u64 = 25;

/// Appends the next sequence number; retries transactions that lose a write conflict.
async fn ledger_client(
    client: tokio_postgres::Client,
    id: u64,
    ok: Arc<AtomicU64>,
    conflicts: Arc<AtomicU64>,
) {
    let sql = format!(
        "BEGIN; INSERT INTO ledger SELECT coalesce(max(seq), 0) + 1, {id} FROM ledger; COMMIT"
    );
    let mut done = 0;
    while done < PER_CLIENT {
        match client.batch_execute(&sql).await {
            Ok(()) => {
                done += 1;
                ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                // Concurrent appends conflict (same key, or Dolt's commit-time check); a window
                // must never be the cause of an error.
                let conflict = code == "23505"
                    || code == "40001"
                    || e.to_string().contains("conflict")
                    || e.to_string().contains("duplicate");
                assert!(
                    conflict,
                    "client {id} saw an error that is not a write conflict: {e:?}"
                );
                conflicts.fetch_add(1, Ordering::SeqCst);
                client.batch_execute("ROLLBACK").await.ok();
            }
        }
    }
}

/// (count, max) of the ledger, read with `sql`.
async fn count_and_max(client: &tokio_postgres::Client, sql: &str) -> (i64, i64) {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let count: i64 = row.get(0);
    let max: Option<i32> = row.get(1);
    (count, max.unwrap_or(0) as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggered_windows_cut_consistent_backups() {
    let (server, direct) = TestServer::doltgres_seeded(
        "CREATE TABLE ledger (seq INT PRIMARY KEY, client INT NOT NULL)",
    )
    .await;
    // Seed row 0: on an empty table Doltgres returns no row for `SELECT max(seq) + 1, 5 FROM t`
    // (see doltgres_sql_facts.rs), so the ledger starts non-empty. Counts below exclude it.
    exec(&direct, "INSERT INTO ledger VALUES (0, -1)").await;
    let dir = tempfile::tempdir().unwrap();
    let remote_root = dir.path().join("remote");
    let sync_root = dir.path().join("sync");
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.drain_timeout = Duration::from_secs(10);
        c.backup.password = Some(server.password.clone());
        c.backup.every_write_commits = EVERY;
        c.backup.push = Some(PushConfig {
            remote: "backup".into(),
            url: Some(format!("file://{}/{{database}}", remote_root.display())),
            branches: vec!["main".into()],
            commit_working_set: true,
        });
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(format!("file://{}/{{database}}", sync_root.display())),
        });
    })
    .await;

    let ok = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for id in 0..CLIENTS {
        let client = server.connect_at(&proxy.addr).await;
        workers.push(tokio::spawn(ledger_client(
            client,
            id,
            ok.clone(),
            conflicts.clone(),
        )));
    }
    // pgbench reads the ledger alongside the writers (read-only: it must never trigger a window).
    let script_dir = tempfile::tempdir().unwrap();
    let script = proxy_tests::pgbench::script(
        script_dir.path(),
        "read",
        "SELECT count(*) FROM ledger;\n",
        1,
    );
    let server = Arc::new(server);
    let bench = {
        let (server, addr) = (server.clone(), proxy.addr.clone());
        tokio::task::spawn_blocking(move || {
            proxy_tests::pgbench::run(
                &server,
                &addr,
                &["-M", "extended", "-c", "2", "-t", "150", "-f", &script],
            )
        })
    };
    for w in workers {
        w.await.unwrap();
    }
    let report = bench.await.unwrap();
    assert_eq!(report.processed, 300, "{}", report.stdout);
    // Let the last triggered windows finish.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let total = (CLIENTS * PER_CLIENT) as i64;
    let ledger = count_and_max(
        &direct,
        "SELECT count(*), max(seq) FROM ledger WHERE seq > 0",
    )
    .await;
    assert_eq!(ledger, (total, total), "the ledger itself must be unbroken");

    // Counters equal the ledger: every success a write commit, every conflict a rollback.
    let (commits, rollbacks, writes) = proxy.counters().await;
    assert_eq!(commits, total as u64 + report.processed);
    assert_eq!(writes, total as u64);
    assert_eq!(rollbacks, conflicts.load(Ordering::SeqCst));

    // Windows were triggered during the run, and each push cut an unbroken prefix.
    let history: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/backups").await.1).unwrap();
    let windows = history["windows"].as_array().unwrap();
    let pushes: Vec<_> = windows.iter().filter(|w| w["action"] == "push").collect();
    let syncs: Vec<_> = windows.iter().filter(|w| w["action"] == "sync").collect();
    assert!(
        pushes.len() >= 2 && syncs.len() >= 2,
        "too few windows: {history}"
    );
    for w in &windows[..] {
        assert_eq!(w["result"], "ok", "{w}");
    }
    let mut previous = 0;
    for push in pushes.iter().rev() {
        let head = push["cut"]["postgres"]["heads"]["main"].as_str().unwrap();
        // The transfer ran after traffic resumed; no client made a Dolt commit, so it sent the cut.
        assert_eq!(
            push["cut"]["postgres"]["pushed"]["main"].as_str(),
            Some(head),
            "{push}"
        );
        let sql = format!("SELECT count(*), max(seq) FROM ledger AS OF '{head}' WHERE seq > 0");
        let (count, max) = count_and_max(&direct, &sql).await;
        assert_eq!(count, max, "cut {head} holds a broken ledger");
        assert!(count >= previous, "cuts go forward");
        assert!(count <= total);
        previous = count;
    }

    // Final windows capture everything; the clone and the restore equal the ledger.
    for action in ["push", "sync"] {
        let (code, body) = proxy.admin_post(&format!("/backups?action={action}")).await;
        assert_eq!(code, 200, "{body}");
    }
    let remote = format!("file://{}/postgres", remote_root.display());
    let backup = format!("file://{}/postgres", sync_root.display());
    direct
        .simple_query(&format!("SELECT dolt_clone('{remote}', 'cloned')"))
        .await
        .unwrap();
    direct
        .simple_query(&format!(
            "SELECT dolt_backup('restore', '{backup}', 'restored')"
        ))
        .await
        .unwrap();
    for database in ["cloned", "restored"] {
        let mut config = server.config_at(&server.addr());
        config.dbname(database);
        let (c, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let copy = count_and_max(&c, "SELECT count(*), max(seq) FROM ledger WHERE seq > 0").await;
        assert_eq!(copy, (total, total), "{database} differs from the ledger");
    }
}
