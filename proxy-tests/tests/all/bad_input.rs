//! Malformed, oversized, truncated and out-of-order input: after login the proxy answers with a
//! proper ErrorResponse (08P01) and closes the connection; during startup it answers (or stays
//! silent) as PostgreSQL does. It never panics or buffers without bound, and goes on serving
//! everyone else. Limits on connections and startup time are enforced.

use std::time::Duration;

use proxy_tests::raw::{Msg, RawClient, frontend};
use proxy_tests::{TestProxy, TestServer, both_servers};
use tokio_postgres::error::SqlState;

/// Asserts the proxy sent one FATAL ErrorResponse with `code` and then closed.
fn assert_fatal_then_closed(msgs: &[Msg], code: &str) {
    let errors: Vec<_> = msgs.iter().filter(|m| m.tag == b'E').collect();
    assert_eq!(errors.len(), 1, "{msgs:?}");
    assert_eq!(errors[0].sqlstate().as_deref(), Some(code), "{msgs:?}");
    assert_eq!(
        msgs.last().map(|m| m.tag),
        Some(b'E'),
        "the error is the last message"
    );
}

async fn wait_for_no_sessions(proxy: &TestProxy) {
    for _ in 0..50 {
        if proxy.status().await["sessions"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sessions left open: {}", proxy.status().await);
}

async fn still_serves(server: &TestServer, proxy: &TestProxy) {
    let client = server.connect_at(&proxy.addr).await;
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn garbage_startup_packets_are_closed_silently_as_postgresql_does() {
    // Bad lengths and a Query sent before any startup packet: PostgreSQL logs them and closes
    // without a word, and so does the proxy (tests/startup_like_postgres.rs compares every case).
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let out_of_order = b"Q\0\0\0\x0dSELECT 1\0";
    for packet in [&[0xffu8, 0xff, 0xff, 0xff][..], &[0, 0, 0, 4], out_of_order] {
        let mut c = RawClient::connect(&proxy.addr).await;
        c.send(packet).await;
        let closed = c.until_end().await;
        assert!(closed.messages.is_empty(), "{packet:?}: {closed:?}");
        assert!(
            closed.trailing.is_empty() && closed.end.is_ok(),
            "{closed:?}"
        );
    }
    // An unknown protocol version is answered, with PostgreSQL's SQLSTATE.
    let mut c = RawClient::connect(&proxy.addr).await;
    c.send(&[0, 0, 0, 8, 0, 4, 0, 0]).await;
    assert_fatal_then_closed(&c.until_closed().await, "0A000");
    still_serves(&server, &proxy).await;
}

#[tokio::test]
async fn silent_client_is_dropped_at_the_startup_timeout() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.startup_timeout = Duration::from_millis(300)
    })
    .await;
    let mut c = RawClient::connect(&proxy.addr).await;
    let started = std::time::Instant::now();
    let closed = c.until_end().await;
    // Closed in silence, as PostgreSQL does at its authentication_timeout.
    assert!(
        closed.messages.is_empty() && closed.end.is_ok(),
        "{closed:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    wait_for_no_sessions(&proxy).await;
}

both_servers!(oversized_message_after_login);
async fn oversized_message_after_login(server: TestServer) {
    let proxy = TestProxy::start_with(&server.addr(), |c| c.max_message_len = 64 * 1024).await;
    let mut c = RawClient::login(&proxy.addr, &server).await;
    // Only the header of a 1 MiB Query: the proxy must refuse before the body arrives.
    c.send(&[b'Q', 0, 0x10, 0, 0]).await;
    let msgs = c.until_closed().await;
    assert_fatal_then_closed(&msgs, "08P01");
    assert!(
        msgs[0].text().unwrap().contains("above the maximum"),
        "{msgs:?}"
    );
    wait_for_no_sessions(&proxy).await;
    still_serves(&server, &proxy).await;
}

both_servers!(too_short_length_after_login);
async fn too_short_length_after_login(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let mut c = RawClient::login(&proxy.addr, &server).await;
    c.send(&[b'Q', 0, 0, 0, 2]).await;
    assert_fatal_then_closed(&c.until_closed().await, "08P01");
    still_serves(&server, &proxy).await;
}

both_servers!(truncated_message_then_hang_up);
async fn truncated_message_then_hang_up(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let mut c = RawClient::login(&proxy.addr, &server).await;
    c.send(&[b'Q', 0, 0, 0, 40, b'S', b'E', b'L']).await;
    drop(c);
    wait_for_no_sessions(&proxy).await;
    still_serves(&server, &proxy).await;
}

#[tokio::test]
async fn unknown_tags_reach_the_server() {
    // PostgreSQL itself rejects an unknown message type: the error must be the server's, which
    // shows the proxy passed the message on instead of judging it.
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut c = RawClient::login(&proxy.addr, &server).await;
    c.send(&[b'~', 0, 0, 0, 4]).await;
    let msgs = c.until_closed().await;
    let err = msgs.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(err.sqlstate().as_deref(), Some("08P01"));
    assert!(
        err.text()
            .unwrap()
            .contains("invalid frontend message type 126"),
        "{msgs:?}"
    );
}

both_servers!(pipelined_batches_are_relayed_in_order);
async fn pipelined_batches_are_relayed_in_order(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let mut c = RawClient::login(&proxy.addr, &server).await;
    let pipeline: Vec<Vec<u8>> = (0..3)
        .map(|i| frontend::query(&format!("SELECT {i}")))
        .collect();
    c.send(&pipeline.concat()).await;
    for i in 0..3 {
        let msgs = c.until_ready().await;
        let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
        assert!(row.body.ends_with(i.to_string().as_bytes()), "{msgs:?}");
    }
}

#[tokio::test]
async fn connection_limit_answers_53300() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| c.max_client_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let client = server.connect_at(&proxy.addr).await;
        held.push(client);
    }
    let err = server.connect_error_at(&proxy.addr).await;
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serves(&server, &proxy).await;
}
