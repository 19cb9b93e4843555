//! Cancel requests: the proxy hands each session its own BackendKeyData and routes a
//! CancelRequest carrying that key to the session's upstream connection.

use std::time::{Duration, Instant};

use proxy_tests::raw::{RawClient, frontend};
use proxy_tests::{TestProxy, TestServer};
use tokio::io::AsyncWriteExt;
use tokio_postgres::error::SqlState;

async fn send_cancel(addr: &str, pid: u32, secret: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&frontend::cancel_request(pid, secret))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_postgresql() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let client = server.connect_at(&proxy.addr).await;
    let token = client.cancel_token();
    let started = Instant::now();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .expect("cancel did not stop the query")
        .unwrap()
        .expect_err("query must be cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_wrong_secret_is_ignored() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut raw = RawClient::login(&proxy.addr, &server).await;
    let (pid, secret) = raw.key.clone().expect("proxy sent a key");
    raw.query("SELECT pg_sleep(1.5)").await;
    let wrong: Vec<u8> = secret.iter().map(|b| b ^ 0xff).collect();
    send_cancel(&proxy.addr, pid, &wrong).await;
    let msgs = raw.until_ready().await;
    assert!(
        msgs.iter().all(|m| m.tag != b'E'),
        "query must not be cancelled: {msgs:?}"
    );
    raw.query("SELECT pg_sleep(30)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_cancel(&proxy.addr, pid, &secret).await;
    let msgs = raw.until_ready().await;
    let err = msgs.iter().find(|m| m.tag == b'E').expect("cancelled");
    assert_eq!(err.sqlstate().as_deref(), Some("57014"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_get_distinct_keys_even_where_doltgres_gives_one() {
    let server = TestServer::doltgres().await;
    let direct_a = RawClient::login(&server.addr(), &server).await;
    let direct_b = RawClient::login(&server.addr(), &server).await;
    // Doltgres hands every connection the same key.
    assert_eq!(direct_a.key, direct_b.key);
    let proxy = TestProxy::start(&server.addr()).await;
    let a = RawClient::login(&proxy.addr, &server).await;
    let b = RawClient::login(&proxy.addr, &server).await;
    assert_ne!(a.key, b.key);
    assert_ne!(a.key, direct_a.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doltgres_runs_a_cancelled_query_to_completion() {
    // The proxy forwards the cancel; Doltgres ignores it, so the query finishes normally.
    let server = TestServer::doltgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let client = server.connect_at(&proxy.addr).await;
    let token = client.cancel_token();
    let started = Instant::now();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(2)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "Doltgres cancelled after all: {result:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
}
