//! Clients that misbehave cannot hurt the proxy or anyone else: connections that never finish
//! their startup, a flood past `max_client_connections`, held clients that vanish, a client that
//! never reads its results (the relay stops reading from the server instead of buffering), and
//! thousands of pipelined queries.

use std::time::Duration;

use proxy_tests::raw::{RawClient, frontend};
use proxy_tests::{TestProxy, TestServer};
use tokio::io::AsyncWriteExt;

async fn still_serves(server: &TestServer, proxy: &TestProxy) {
    let client = server.connect_at(&proxy.addr).await;
    client.simple_query("SELECT 1").await.unwrap();
}

/// `doltgres_sidecar_bytes_total{direction="downstream"}`.
async fn downstream_bytes(proxy: &TestProxy) -> f64 {
    let (_, text) = proxy.admin_get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with("doltgres_sidecar_bytes_total{direction=\"downstream\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_closed_at_the_startup_timeout() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.startup_timeout = Duration::from_millis(800)
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(&proxy.addr).await.unwrap();
        s.write_all(&[0, 0]).await.unwrap(); // half a length word, then nothing
        stalled.push(s);
    }
    // Everyone else is served meanwhile.
    still_serves(&server, &proxy).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for s in &mut stalled {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(s, &mut buf),
        )
        .await
        .expect("a stalled connection was left open")
        .unwrap_or(0);
        assert_eq!(n, 0, "closed in silence, as PostgreSQL does");
    }
    still_serves(&server, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_limit_gets_53300_and_the_rest_are_served() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| c.max_client_connections = 40).await;
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(RawClient::login(&proxy.addr, &server).await);
    }
    let mut refused = 0;
    for _ in 0..200 {
        let mut c = RawClient::connect(&proxy.addr).await;
        let mut startup = bytes::BytesMut::new();
        postgres_protocol::message::frontend::startup_message(
            [
                ("user", server.user.as_str()),
                ("database", server.database.as_str()),
            ],
            &mut startup,
        )
        .unwrap();
        c.send(&startup).await;
        let msgs = c.until_closed().await;
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0].sqlstate().as_deref(), Some("53300"));
        refused += 1;
    }
    assert_eq!(refused, 200);
    for c in &mut held {
        let msgs = c.simple("SELECT 1").await;
        assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_serves(&server, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_clients_that_vanish_leave_nothing_behind() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(RawClient::login(&proxy.addr, &server).await);
    }
    assert_eq!(proxy.admin_post("/quiesce?ttl=30s").await.0, 200);
    for c in &mut clients {
        c.query("SELECT 1").await; // held at the gate
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(clients);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.admin_post("/resume").await.0, 200);
    for _ in 0..50 {
        if proxy.status().await["sessions"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = proxy.status().await;
    assert!(
        status["sessions"].as_array().unwrap().is_empty(),
        "{status}"
    );
    assert!(!proxy.shared.gate.is_closed());
    still_serves(&server, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_held_back_not_buffered() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut greedy = RawClient::login(&proxy.addr, &server).await;
    // About 100 MB of rows, never read.
    greedy
        .query("SELECT repeat('x', 100) FROM generate_series(1, 1000000)")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = downstream_bytes(&proxy).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = downstream_bytes(&proxy).await;
    // Relayed only as far as the sockets' buffers hold: far below the result, and stalled.
    assert!(
        first < 20_000_000.0,
        "relayed {first} bytes to a client that reads nothing"
    );
    assert!(
        second - first < 1_000_000.0,
        "still relaying: {first} then {second}"
    );
    still_serves(&server, &proxy).await;
    drop(greedy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_serves(&server, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_pipelined_queries_are_answered_in_order() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut c = RawClient::login(&proxy.addr, &server).await;
    let pipeline: Vec<u8> = (0..5000)
        .flat_map(|i| frontend::query(&format!("SELECT {i}")))
        .collect();
    let (before, _, _) = proxy.counters().await;
    c.send(&pipeline).await;
    for i in 0..5000 {
        let msgs = c.until_ready().await;
        let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
        assert!(
            row.body.ends_with(i.to_string().as_bytes()),
            "query {i}: {msgs:?}"
        );
    }
    let (after, _, _) = proxy.counters().await;
    assert_eq!(
        after - before,
        5000,
        "each pipelined query is one implicit transaction"
    );
}
