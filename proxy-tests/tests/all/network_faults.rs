//! Network faults between the sidecar and its server, through a real fault proxy (toxiproxy):
//! latency and jitter, a thin pipe, the stream cut into 1-byte pieces both ways, a reset in the
//! middle of a result, and a server that stops answering. Each says what the client sees.

use std::time::{Duration, Instant};

use proxy_tests::raw::RawClient;
use proxy_tests::toxiproxy::Toxiproxy;
use proxy_tests::{TestProxy, TestServer};
use serde_json::json;
use tokio_postgres::SimpleQueryMessage;

/// PostgreSQL, toxiproxy in front of it, and the sidecar in front of toxiproxy.
async fn chain() -> (TestServer, Toxiproxy, TestProxy) {
    let server = TestServer::postgres().await;
    let faults = Toxiproxy::start(&server.addr()).await;
    let proxy = TestProxy::start(&faults.listen).await;
    (server, faults, proxy)
}

/// Every row of a query, as text, the first column only.
async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

/// A workload whose answers must be the same whatever the network does.
async fn workload(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = rows(
        client,
        "SELECT md5(g::text) FROM generate_series(1, 2000) g",
    )
    .await;
    let big = rows(client, "SELECT repeat('y', 200000)").await;
    out.push(format!("{}", big[0].len()));
    let stmt = client.prepare("SELECT $1::int * 2").await.unwrap();
    for i in 0..20 {
        let row = client.query_one(&stmt, &[&i]).await.unwrap();
        out.push(row.get::<_, i32>(0).to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_bandwidth_and_one_byte_slices_change_nothing_but_time() {
    let (server, faults, proxy) = chain().await;
    let direct = server.connect_direct().await;
    let expected = workload(&direct).await;
    let cases = [
        ("latency", "latency", json!({"latency": 30, "jitter": 20})),
        ("thin", "bandwidth", json!({"rate": 256})),
        (
            "sliced",
            "slicer",
            json!({"average_size": 1, "size_variation": 0, "delay": 0}),
        ),
    ];
    for (name, kind, attributes) in cases {
        faults
            .add(&format!("{name}-up"), kind, "upstream", attributes.clone())
            .await;
        faults
            .add(&format!("{name}-down"), kind, "downstream", attributes)
            .await;
        let client = server.connect_at(&proxy.addr).await;
        assert_eq!(workload(&client).await, expected, "{name}");
        drop(client);
        faults.remove(&format!("{name}-up")).await;
        faults.remove(&format!("{name}-down")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_in_the_middle_of_a_result_is_08006_and_the_next_session_works() {
    let (server, faults, proxy) = chain().await;
    let mut victim = RawClient::login(&proxy.addr, &server).await;
    // Let 64 KiB of the answer through, then reset the connection.
    faults
        .add("cut", "limit_data", "downstream", json!({"bytes": 65536}))
        .await;
    victim
        .query("SELECT repeat('z', 100) FROM generate_series(1, 100000)")
        .await;
    let closed = victim.until_end().await;
    // At a message boundary the proxy says why (08006); in the middle of a row it can only
    // close, as the server's own connection did.
    match closed.messages.iter().find(|m| m.tag == b'E') {
        Some(error) => assert_eq!(error.sqlstate().as_deref(), Some("08006"), "{error:?}"),
        None => assert!(
            !closed.trailing.is_empty(),
            "closed at a boundary without a word: {closed:?}"
        ),
    }
    assert!(
        closed.messages.iter().all(|m| m.tag != b'C'),
        "the cut-off result must not look complete"
    );
    faults.remove("cut").await;
    let client = server.connect_at(&proxy.addr).await;
    assert_eq!(rows(&client, "SELECT 1").await, ["1"]);
    let status = proxy.status().await;
    assert_eq!(status["sessions"].as_array().unwrap().len(), 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_leaves_no_session_behind_once_the_client_gives_up() {
    let (server, faults, proxy) = chain().await;
    let mut stuck = RawClient::login(&proxy.addr, &server).await;
    faults
        .add("silence", "timeout", "downstream", json!({"timeout": 0}))
        .await;
    stuck.query("SELECT 1").await;
    let mut buf = [0u8; 64];
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut stuck.stream, &mut buf),
    )
    .await;
    assert!(answer.is_err(), "an answer came through a silent server");
    // A new connection's login is stuck as well, until the client gives up on it.
    let config = server.config_at(&proxy.addr);
    let login = tokio::time::timeout(
        Duration::from_secs(1),
        config.connect(tokio_postgres::NoTls),
    );
    assert!(login.await.is_err(), "a login went through a silent server");
    // The first client gives up too and closes its connection.
    drop(stuck);
    // Both clients gave up: their sessions end with them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = proxy.status().await;
        if status["sessions"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "sessions left behind: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    faults.remove("silence").await;
    let client = server.connect_at(&proxy.addr).await;
    assert_eq!(rows(&client, "SELECT 1").await, ["1"]);
}
