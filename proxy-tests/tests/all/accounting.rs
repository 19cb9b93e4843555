//! Exactness of the transaction counters: what the proxy counts equals what pgbench ran and what
//! a ledger table holds, in every query mode, with explicit commits, rollbacks, failed
//! transactions, read-only and autocommit statements.

use proxy_tests::facts::exec;
use proxy_tests::pgbench::{self, PgbenchReport};
use proxy_tests::{Kind, TestProxy, TestServer, both_servers};

const CLIENTS: &str = "4";
const PER_CLIENT: &str = "40";

struct Scripts {
    args: Vec<String>,
}

/// Five scripts; their order fixes the meaning of `PgbenchReport::per_script`.
fn scripts(dir: &std::path::Path) -> Scripts {
    let args = vec![
        pgbench::script(
            dir,
            "commit",
            "BEGIN;\nINSERT INTO ledger (client, kind) VALUES (:client_id, 'commit');\nSELECT count(*) FROM ledger WHERE client = :client_id;\nCOMMIT;\n",
            3,
        ),
        pgbench::script(
            dir,
            "rollback",
            "BEGIN;\nINSERT INTO ledger (client, kind) VALUES (:client_id, 'rollback');\nROLLBACK;\n",
            2,
        ),
        pgbench::script(
            dir,
            "readonly",
            "BEGIN;\nSELECT count(*) FROM ledger;\nCOMMIT;\n",
            2,
        ),
        pgbench::script(
            dir,
            "autocommit",
            "INSERT INTO ledger (client, kind) VALUES (:client_id, 'auto');\n",
            2,
        ),
        pgbench::script(dir, "select", "SELECT :client_id + 1;\n", 1),
    ];
    Scripts { args }
}

/// Expected (commits, rollbacks, write_commits) for one pgbench run of [`scripts`].
fn expected(r: &PgbenchReport) -> (u64, u64, u64) {
    let [commit, rollback, readonly, auto, select] = r.per_script[..] else {
        panic!(
            "pgbench reported {} scripts:\n{}",
            r.per_script.len(),
            r.stdout
        );
    };
    (commit + readonly + auto + select, rollback, commit + auto)
}

fn diff(after: (u64, u64, u64), before: (u64, u64, u64)) -> (u64, u64, u64) {
    (after.0 - before.0, after.1 - before.1, after.2 - before.2)
}

async fn create_ledger(server: &TestServer) {
    server
        .seeded("CREATE TABLE ledger (client INT NOT NULL, kind TEXT NOT NULL)")
        .await;
}

async fn ledger_counts(server: &TestServer) -> (i64, i64, i64) {
    let direct = server.connect_direct().await;
    let mut counts = (0, 0, 0);
    for row in direct
        .query("SELECT kind, count(*) FROM ledger GROUP BY kind", &[])
        .await
        .unwrap()
    {
        let kind: String = row.get(0);
        let n: i64 = row.get(1);
        match kind.as_str() {
            "commit" => counts.0 = n,
            "auto" => counts.1 = n,
            _ => counts.2 += n,
        }
    }
    counts
}

both_servers!(pgbench_counts_equal_the_proxys);
async fn pgbench_counts_equal_the_proxys(server: TestServer) {
    create_ledger(&server).await;
    let proxy = TestProxy::start(&server.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let scripts = scripts(dir.path());
    let (mut ledger_commit, mut ledger_auto) = (0i64, 0i64);
    for mode in ["simple", "extended", "prepared"] {
        let before = proxy.counters().await;
        let mut args: Vec<&str> = vec!["-M", mode, "-c", CLIENTS, "-j", "2", "-t", PER_CLIENT];
        for s in &scripts.args {
            args.extend(["-f", s.as_str()]);
        }
        let server_ref = &server;
        let addr = proxy.addr.clone();
        let report = tokio::task::block_in_place(|| pgbench::run(server_ref, &addr, &args));
        assert_eq!(report.processed, 4 * 40, "{}", report.stdout);
        assert_eq!(report.per_script.iter().sum::<u64>(), report.processed);
        assert_eq!(report.failed, 0);
        let got = diff(proxy.counters().await, before);
        assert_eq!(
            got,
            expected(&report),
            "mode {mode}: proxy (commits, rollbacks, writes) vs pgbench"
        );
        ledger_commit += report.per_script[0] as i64;
        ledger_auto += report.per_script[3] as i64;
        assert_eq!(
            ledger_counts(&server).await,
            (ledger_commit, ledger_auto, 0),
            "mode {mode}: ledger"
        );
    }
}

both_servers!(failed_transactions_count_as_rollbacks);
async fn failed_transactions_count_as_rollbacks(server: TestServer) {
    create_ledger(&server).await;
    let proxy = TestProxy::start(&server.addr()).await;
    let client = server.connect_at(&proxy.addr).await;
    let before = proxy.counters().await;

    // Three explicit blocks that fail; COMMIT is answered ROLLBACK.
    for _ in 0..3 {
        client.batch_execute("BEGIN").await.unwrap();
        exec(&client, "INSERT INTO ledger VALUES (1, 'failed')").await;
        client.batch_execute("SELECT 1/0").await.unwrap_err();
        let msgs = client.simple_query("COMMIT").await.unwrap();
        let tag = msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(_) => Some(()),
            _ => None,
        });
        assert!(tag.is_some());
    }
    // Two failing autocommit statements, one failing extended-protocol statement.
    client.batch_execute("SELECT 1/0").await.unwrap_err();
    client
        .batch_execute("INSERT INTO ledger VALUES (NULL, 'failed')")
        .await
        .unwrap_err();
    client
        .query("SELECT 1 / $1::int4", &[&0i32])
        .await
        .unwrap_err();
    // One good write and one good read, for contrast.
    client
        .execute("INSERT INTO ledger VALUES ($1, 'auto')", &[&2i32])
        .await
        .unwrap();
    client
        .query("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap();
    let mut expected = (2, 6, 1);
    if server.kind == Kind::Doltgres {
        // A Dolt procedure called with SELECT is a write.
        client
            .query("SELECT dolt_commit('-Am', 'ledger')", &[])
            .await
            .unwrap();
        expected = (3, 6, 2);
    }
    assert_eq!(diff(proxy.counters().await, before), expected);
    assert_eq!(ledger_counts(&server).await, (0, 1, 0));
}

both_servers!(status_and_metrics_report_sessions_and_counters);
async fn status_and_metrics_report_sessions_and_counters(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let client = server.connect_at(&proxy.addr).await;
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();

    let status = proxy.status().await;
    let sessions = status["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{status}");
    assert_eq!(sessions[0]["state"], "in_transaction");
    assert_eq!(sessions[0]["user"], server.user.as_str());
    assert_eq!(sessions[0]["database"], server.database.as_str());

    client.batch_execute("COMMIT").await.unwrap();
    let status = proxy.status().await;
    assert_eq!(status["sessions"][0]["state"], "idle");
    assert_eq!(status["counters"]["commits"], 1);

    let (code, metrics) = proxy.admin_get("/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "doltgres_sidecar_sessions 1",
        "doltgres_sidecar_commits_total 1",
        "doltgres_sidecar_rollbacks_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}:\n{metrics}"
        );
    }
    assert!(metrics.contains("doltgres_sidecar_bytes_total{direction=\"downstream\"}"));
    let (code, _) = proxy.admin_get("/healthz").await;
    assert_eq!(code, 200);
    let (code, body) = proxy.admin_get("/readyz").await;
    assert_eq!(code, 200, "{body}");

    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        proxy.status().await["sessions"].as_array().unwrap().len(),
        0
    );
}
