//! The quiesce gate against real servers, driven through the admin API: windows wait for open
//! transactions, hold idle sessions and new connections, answer with a notice and 57P03 when a
//! hold runs too long, abort or terminate by policy, and always resume.

use std::time::{Duration, Instant};

use doltgres_sidecar::gate::DrainPolicy;
use proxy_tests::facts::exec;
use proxy_tests::raw::RawClient;
use proxy_tests::{TestProxy, TestServer, both_servers};
use tokio_postgres::error::SqlState;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

both_servers!(window_waits_for_the_transaction_and_holds_idle_sessions);
async fn window_waits_for_the_transaction_and_holds_idle_sessions(server: TestServer) {
    server
        .connect_direct()
        .await
        .batch_execute("CREATE TABLE t (i INT PRIMARY KEY)")
        .await
        .unwrap();
    let proxy = std::sync::Arc::new(TestProxy::start(&server.addr()).await);
    let writer = server.connect_at(&proxy.addr).await;
    let idle = server.connect_at(&proxy.addr).await;
    exec(&writer, "BEGIN; INSERT INTO t VALUES (1)").await;

    let quiesce = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.admin_post("/quiesce?ttl=30s&timeout=20s").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !quiesce.is_finished(),
        "quiesce must wait for the open transaction"
    );
    // The transaction runs on while the window waits for it.
    exec(&writer, "INSERT INTO t VALUES (2)").await;
    writer.batch_execute("COMMIT").await.unwrap();
    let (code, body) = quiesce.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(json(&body)["window_id"].as_u64().unwrap() > 0);

    // Quiesced: an idle session's next query waits, and so does a new connection's first.
    let held = tokio::spawn(async move {
        idle.query_one("SELECT count(*) FROM t", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    let newcomer = {
        let config = server.config_at(&proxy.addr);
        tokio::spawn(async move {
            let (c, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            c.simple_query("SELECT 1").await.map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "idle session must be held");
    assert!(
        !newcomer.is_finished(),
        "a new connection's first query must be held"
    );
    let status = proxy.status().await;
    assert_eq!(status["sessions"].as_array().unwrap().len(), 3, "{status}");

    let resumed_at = Instant::now();
    let (code, body) = proxy.admin_post("/resume").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(held.await.unwrap().unwrap(), 2);
    newcomer.await.unwrap().unwrap();
    assert!(resumed_at.elapsed() < Duration::from_secs(5));

    let (_, metrics) = proxy.admin_get("/metrics").await;
    let stalls = metrics
        .lines()
        .find(|l| l.starts_with("doltgres_sidecar_window_stall_seconds_count"))
        .unwrap_or_default();
    assert!(stalls.ends_with(" 2") || stalls.ends_with(" 3"), "{stalls}");
    let (code, body) = proxy.admin_post("/resume").await;
    assert_eq!(code, 409, "nothing held any more: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_policy_gives_up_and_traffic_flows() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let in_txn = server.connect_at(&proxy.addr).await;
    let other = server.connect_at(&proxy.addr).await;
    in_txn.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let started = Instant::now();
    let (code, body) = proxy.admin_post("/quiesce?ttl=30s&timeout=300ms").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("still inside a transaction"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    tokio::time::timeout(Duration::from_secs(2), other.simple_query("SELECT 1"))
        .await
        .unwrap()
        .unwrap();
    in_txn.batch_execute("COMMIT").await.unwrap();
    let history = json(&proxy.admin_get("/backups").await.1);
    assert_eq!(history["windows"][0]["result"], "aborted", "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_policy_ends_the_lingering_session() {
    let server = TestServer::postgres().await;
    let proxy =
        TestProxy::start_with(&server.addr(), |c| c.drain_policy = DrainPolicy::Terminate).await;
    let (lingering, conn) = server
        .config_at(&proxy.addr)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    lingering.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let (code, body) = proxy.admin_post("/quiesce?ttl=30s&timeout=300ms").await;
    assert_eq!(code, 200, "{body}");
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .unwrap()
        .unwrap();
    let err = ended.expect_err("the session must be ended");
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    assert_eq!(proxy.admin_post("/resume").await.0, 200);
}

both_servers!(held_request_gets_a_notice_then_57p03);
async fn held_request_gets_a_notice_then_57p03(server: TestServer) {
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.hold_notice_after = Duration::from_millis(200);
        c.hold_timeout = Duration::from_millis(800);
    })
    .await;
    let mut raw = RawClient::login(&proxy.addr, &server).await;
    let extended = server.connect_at(&proxy.addr).await;
    let (code, _) = proxy.admin_post("/quiesce?ttl=30s").await;
    assert_eq!(code, 200);

    let started = Instant::now();
    raw.query("SELECT 1").await;
    let msgs = raw.until_ready().await;
    let tags: Vec<u8> = msgs.iter().map(|m| m.tag).collect();
    assert_eq!(tags, b"NEZ", "{msgs:?}");
    assert_eq!(msgs[1].sqlstate().as_deref(), Some("57P03"));
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(msgs[2].body.as_ref(), b"I");

    // Extended protocol: the driver sees an ordinary error and keeps its connection.
    let err = extended
        .query("SELECT $1::int4", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::CANNOT_CONNECT_NOW), "{err}");

    assert_eq!(proxy.admin_post("/resume").await.0, 200);
    raw.query("SELECT 2").await;
    let msgs = raw.until_ready().await;
    assert!(msgs.iter().any(|m| m.tag == b'D'), "{msgs:?}");
    let row = extended
        .query_one("SELECT $1::int4", &[&5i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_window_ends_at_its_ttl() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let c = server.connect_at(&proxy.addr).await;
    let (code, _) = proxy.admin_post("/quiesce?ttl=700ms").await;
    assert_eq!(code, 200);
    let started = Instant::now();
    c.simple_query("SELECT 1").await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "held only {waited:?}");
    assert!(waited < Duration::from_secs(5), "held {waited:?}");
    let history = json(&proxy.admin_get("/backups").await.1);
    assert_eq!(history["windows"][0]["action"], "hold", "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_window_at_a_time_and_resume_during_drain() {
    let server = TestServer::postgres().await;
    let proxy = std::sync::Arc::new(TestProxy::start(&server.addr()).await);
    let in_txn = server.connect_at(&proxy.addr).await;
    in_txn.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let draining = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.admin_post("/quiesce?ttl=30s&timeout=20s").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _) = proxy.admin_post("/quiesce?ttl=30s").await;
    assert_eq!(code, 409, "a second window must be refused");
    // A resume while the first is still draining cancels it; nothing stays held.
    assert_eq!(proxy.admin_post("/resume").await.0, 200);
    let (code, body) = draining.await.unwrap();
    assert_eq!(code, 503, "{body}");
    let other = server.connect_at(&proxy.addr).await;
    tokio::time::timeout(Duration::from_secs(2), other.simple_query("SELECT 1"))
        .await
        .unwrap()
        .unwrap();
    in_txn.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_control_endpoints() {
    let server = TestServer::postgres().await;
    let proxy =
        TestProxy::start_with(&server.addr(), |c| c.admin_token = Some("s3cret".into())).await;
    assert_eq!(proxy.admin_get("/status").await.0, 200, "with the token");
    let request =
        |path: &str| proxy_tests::http::request("GET", format!("{}{path}", proxy.admin_url), None);
    assert_eq!(request("/status").await.0, 401);
    assert_eq!(
        request("/metrics").await.0,
        200,
        "metrics stay open for scrapers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_has_its_own_id_whatever_its_outcome() {
    // Aborted windows (a session stays inside a transaction), a failed one and successful ones
    // are numbered one after the other: no id twice, none skipped, none 0.
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.drain_timeout = Duration::from_millis(200);
        c.backup.snapshot = Some(doltgres_sidecar::config::backup::SnapshotConfig {
            command: vec!["true".into()],
            timeout: Duration::from_secs(10),
        });
    })
    .await;
    let in_txn = server.connect_at(&proxy.addr).await;
    in_txn.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let mut expected = Vec::new();
    for _ in 0..2 {
        let (code, body) = proxy.admin_post("/backups?action=snapshot").await;
        assert_ne!(code, 200, "{body}");
        expected.push("aborted");
        let (code, body) = proxy.admin_post("/quiesce?ttl=30s&timeout=200ms").await;
        assert_eq!(code, 503, "{body}");
        expected.push("aborted");
    }
    in_txn.batch_execute("COMMIT").await.unwrap();
    for _ in 0..2 {
        let (code, body) = proxy.admin_post("/backups?action=snapshot").await;
        assert_eq!(code, 200, "{body}");
        expected.push("ok");
    }
    let history = json(&proxy.admin_get("/backups").await.1);
    let windows = history["windows"].as_array().unwrap();
    // Newest first.
    let results: Vec<&str> = windows
        .iter()
        .rev()
        .map(|w| w["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, expected, "{history}");
    let ids: Vec<u64> = windows
        .iter()
        .rev()
        .map(|w| w["id"].as_u64().unwrap())
        .collect();
    let first = ids[0];
    assert!(first > 0, "{ids:?}");
    assert_eq!(
        ids,
        (first..first + ids.len() as u64).collect::<Vec<_>>(),
        "{history}"
    );
}
