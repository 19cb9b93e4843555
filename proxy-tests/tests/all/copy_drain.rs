//! A copy window's drain against clients that connect for every transaction from one thread
//! (`pgbench -C -j 1`, libpq's blocking connect): with `auth = "proxy"` (managed mode's default)
//! a connection arriving during the drain logs in while the server is still up and is held at
//! its first request, so the thread goes on serving its other clients, whose open transactions
//! reach their commit, and the window is not aborted at `drain_timeout`. Real Doltgres, managed.

use std::time::{Duration, Instant};

use proxy_tests::facts::exec;
use proxy_tests::managed::{ManagedProxy, PASSWORD, USER};
use proxy_tests::pgbench::{Login, run_as, script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thread_connecting_per_transaction_does_not_keep_a_copy_from_draining() {
    let m = ManagedProxy::start(|c, _| {
        c.drain_timeout = Duration::from_secs(5);
    })
    .await;
    assert_eq!(
        m.proxy.shared.config().auth_mode(),
        doltgres_sidecar::auth::AuthMode::Proxy
    );
    let client = m.connect().await;
    exec(
        &client,
        "CREATE TABLE pgb (client int primary key, n bigint not null); \
             INSERT INTO pgb VALUES (0, 0), (1, 0), (2, 0), (3, 0)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // A transaction that stays open a little, so windows close while some are open; each
    // client its own row (concurrent updates of one row conflict in Doltgres).
    let script = script(
        dir.path(),
        "update",
        "BEGIN;\nUPDATE pgb SET n = n + 1 WHERE client = :client_id;\n\
         SELECT pg_sleep(0.01);\nCOMMIT;\n",
        1,
    );
    let login = Login {
        user: USER.into(),
        password: PASSWORD.into(),
        database: "postgres".into(),
    };
    let addr = m.addr().to_string();
    let load = tokio::task::spawn_blocking(move || {
        run_as(
            &login,
            &addr,
            &["-C", "-c", "4", "-j", "1", "-T", "24", "-f", &script],
        )
    });
    // A copy every 3 s while it runs.
    let mut results = Vec::new();
    let until = Instant::now() + Duration::from_secs(21);
    tokio::time::sleep(Duration::from_secs(2)).await;
    while Instant::now() < until {
        let (_, record) = m.backup("copy").await;
        results.push((
            record["result"].as_str().unwrap_or("?").to_string(),
            record["stall_ms"].as_u64().unwrap_or(0),
            record["error"].clone(),
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let report = load.await.unwrap();
    assert_eq!(report.failed, 0, "{}", report.stdout);
    let not_ok: Vec<_> = results.iter().filter(|r| r.0 != "ok").collect();
    assert!(
        results.len() >= 4 && not_ok.is_empty(),
        "windows (result, stall ms, error): {results:?}"
    );
    // Every committed update is in the table.
    let sum: i64 = client
        .query_one("SELECT sum(n)::bigint FROM pgb", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum as u64, report.processed, "{}", report.stdout);
    m.proxy.stop().await;
}
