//! Cancel requests: the proxy hands each session its own BackendKeyData and routes a
//! CancelRequest carrying that key to the session's upstream connection.

use std::time::{Duration, Instant};

use proxy_tests::raw::{RawClient, frontend};
use proxy_tests::{TestProxy, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A cancel as libpq sends one: the CancelRequest, then a wait until the other end closes the
/// connection (PostgreSQL closes it once it has signalled the backend). How long the close took.
async fn cancel_like_libpq(addr: &str, pid: u32, secret: &[u8]) -> Duration {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&frontend::cancel_request(pid, secret))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the cancel connection was left open");
    assert!(
        rest.is_empty(),
        "a cancel is answered by a close only: {rest:?}"
    );
    started.elapsed()
}

/// Cancels on an idle session, then runs a short query, `rounds` times: how many of those
/// queries the cancel hit.
async fn later_queries_cancelled(addr: &str, server: &TestServer, rounds: usize) -> usize {
    let mut raw = RawClient::login(addr, server).await;
    let (pid, secret) = raw.key.clone().expect("a key");
    let mut hit = 0;
    for _ in 0..rounds {
        cancel_like_libpq(addr, pid, &secret).await;
        let msgs = raw.simple("SELECT pg_sleep(0.2)").await;
        if msgs
            .iter()
            .any(|m| m.sqlstate().as_deref() == Some("57014"))
        {
            hit += 1;
        }
    }
    hit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_connection_closes_only_after_the_server_acted() {
    // Directly, a cancel sent while idle hits nothing later: the close comes after PostgreSQL
    // signalled the (idle) backend. Through the proxy the close must wait for the same.
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    assert_eq!(
        later_queries_cancelled(&server.addr(), &server, 20).await,
        0,
        "direct"
    );
    assert_eq!(
        later_queries_cancelled(&proxy.addr, &server, 20).await,
        0,
        "through the proxy"
    );
    // And a cancel of a running query still lands on it.
    let mut raw = RawClient::login(&proxy.addr, &server).await;
    let (pid, secret) = raw.key.clone().unwrap();
    raw.query("SELECT pg_sleep(30)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel_like_libpq(&proxy.addr, pid, &secret).await;
    let msgs = raw.until_ready().await;
    let codes: Vec<_> = msgs.iter().filter_map(|m| m.sqlstate()).collect();
    assert_eq!(codes, ["57014"], "{msgs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_to_doltgres_closes_when_doltgres_closes() {
    // Doltgres closes a cancel connection at once and ignores the cancel; through the proxy the
    // client's cancel connection closes as soon as Doltgres closed the forwarded one.
    let server = TestServer::doltgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut raw = RawClient::login(&proxy.addr, &server).await;
    let (pid, secret) = raw.key.clone().unwrap();
    let took = cancel_like_libpq(&proxy.addr, pid, &secret).await;
    assert!(
        took < Duration::from_secs(5),
        "within connect_timeout: {took:?}"
    );
    let msgs = raw.simple("SELECT 1").await;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
}
