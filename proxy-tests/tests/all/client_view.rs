//! What a client observes through the proxy is what it observes directly: its backend's process
//! id (in BackendKeyData, `pg_backend_pid()`, NOTIFY and `pg_stat_activity`), ParameterStatus,
//! errors and notices byte for byte, and how connections close. The differences that remain are
//! listed in the README ("What a client sees") and pinned here too.

use std::time::Duration;

use proxy_tests::raw::{Msg, RawClient, frontend};
use proxy_tests::{Kind, TestProxy, TestServer, both_servers};

/// The single value of a one-row, one-column result.
async fn value(c: &mut RawClient, sql: &str) -> String {
    let msgs = c.simple(sql).await;
    let row = msgs
        .iter()
        .find(|m| m.tag == b'D')
        .unwrap_or_else(|| panic!("{sql}: no row in {msgs:?}"));
    let len = u32::from_be_bytes(row.body[2..6].try_into().unwrap()) as usize;
    String::from_utf8_lossy(&row.body[6..6 + len]).into_owned()
}

/// The process id a NotificationResponse names.
fn notify_pid(m: &Msg) -> u32 {
    assert_eq!(m.tag, b'A', "{m:?}");
    u32::from_be_bytes(m.body[..4].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_pid_is_the_backend_pid_everywhere() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    for (how, addr) in [("direct", server.addr()), ("proxied", proxy.addr.clone())] {
        let name = format!("pid-check-{how}");
        let mut c = RawClient::login_with(&addr, &server, &[("application_name", &name)]).await;
        let (pid, secret) = c.key.clone().expect("a key");
        assert_eq!(secret.len(), 4, "{how}");
        assert_eq!(
            value(&mut c, "SELECT pg_backend_pid()").await,
            pid.to_string(),
            "{how}"
        );
        let sql = format!("SELECT pid FROM pg_stat_activity WHERE application_name = '{name}'");
        assert_eq!(value(&mut c, &sql).await, pid.to_string(), "{how}");
        let msgs = c.simple("LISTEN ch; NOTIFY ch, 'x'").await;
        let note = msgs.iter().find(|m| m.tag == b'A').expect("a notification");
        assert_eq!(notify_pid(note), pid, "{how}");
    }
    // /status shows the same pid, so operators can match sessions to pg_stat_activity.
    let mut c = RawClient::login(&proxy.addr, &server).await;
    let pid = value(&mut c, "SELECT pg_backend_pid()").await;
    let status = proxy.status().await;
    let pids: Vec<String> = status["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["backend_pid"].to_string())
        .collect();
    assert!(pids.contains(&pid), "{pid} not in {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_by_the_reported_pid_ends_exactly_that_session() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut proxied = Vec::new();
    for _ in 0..12 {
        proxied.push(RawClient::login(&proxy.addr, &server).await);
    }
    let mut direct = Vec::new();
    for _ in 0..3 {
        direct.push(RawClient::login(&server.addr(), &server).await);
    }
    let victim = proxied.remove(5);
    let (pid, _) = victim.key.clone().unwrap();
    let admin = server.connect_direct().await;
    let row = admin
        .query_one("SELECT pg_terminate_backend($1::int)", &[&(pid as i32)])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "pid {pid} is not a backend");
    let mut victim = victim;
    let closed = victim.until_end().await;
    let codes: Vec<_> = closed.messages.iter().map(|m| m.sqlstate()).collect();
    assert_eq!(codes, [Some("57P01".to_string())], "{closed:?}");
    assert!(closed.end.is_ok(), "{closed:?}");
    for c in proxied.iter_mut().chain(direct.iter_mut()) {
        assert_eq!(value(c, "SELECT 1").await, "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_right_session_among_many() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(RawClient::login(&proxy.addr, &server).await);
    }
    for c in sessions.iter_mut() {
        c.query("SELECT pg_sleep(2)").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (pid, secret) = sessions[3].key.clone().unwrap();
    let mut cancel = tokio::net::TcpStream::connect(&proxy.addr).await.unwrap();
    let packet = proxy_tests::raw::frontend::cancel_request(pid, &secret);
    tokio::io::AsyncWriteExt::write_all(&mut cancel, &packet)
        .await
        .unwrap();
    for (i, c) in sessions.iter_mut().enumerate() {
        let msgs = c.until_ready().await;
        let error = msgs.iter().find_map(|m| m.sqlstate());
        let expected = (i == 3).then(|| "57014".to_string());
        assert_eq!(error, expected, "session {i}: {msgs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doltgres_sessions_keep_the_server_pid_with_distinct_secrets() {
    let server = TestServer::doltgres().await;
    let direct = RawClient::login(&server.addr(), &server).await;
    let (server_pid, server_secret) = direct.key.clone().unwrap();
    let proxy = TestProxy::start(&server.addr()).await;
    let mut secrets = Vec::new();
    for _ in 0..20 {
        let c = RawClient::login(&proxy.addr, &server).await;
        let (pid, secret) = c.key.clone().unwrap();
        assert_eq!(pid, server_pid);
        assert_eq!(secret.len(), server_secret.len());
        secrets.push(secret);
    }
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 20, "secrets repeat");
    let status = proxy.status().await;
    for s in status["sessions"].as_array().unwrap() {
        assert_eq!(s["backend_pid"].as_u64(), Some(server_pid as u64), "{s}");
    }
}

both_servers!(parameters_errors_and_notices_are_the_servers_own_bytes);
async fn parameters_errors_and_notices_are_the_servers_own_bytes(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let mut seen = Vec::new();
    for addr in [server.addr(), proxy.addr.clone()] {
        let mut c = RawClient::login(&addr, &server).await;
        let parameters: Vec<Msg> = c
            .startup
            .iter()
            .filter(|m| m.tag == b'S')
            .cloned()
            .collect();
        let mut answers = Vec::new();
        for sql in ["SELECT 1/0", "SELEKT 1", "SELECT * FROM no_such_table"] {
            answers.extend(c.simple(sql).await);
        }
        if server.kind == Kind::Postgres {
            answers.extend(c.simple("DO $$ BEGIN RAISE NOTICE 'hello'; END $$").await);
            answers.extend(c.simple("SET application_name = 'changed'").await);
        }
        seen.push((parameters, answers));
    }
    assert!(!seen[0].0.is_empty());
    assert!(seen[0].1.iter().any(|m| m.tag == b'E'));
    assert_eq!(seen[0], seen[1], "direct (left) and proxied (right) differ");
}

both_servers!(closes_look_the_same);
async fn closes_look_the_same(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    for addr in [server.addr(), proxy.addr.clone()] {
        // Terminate: the server closes, the client sees an orderly EOF and nothing else.
        let mut c = RawClient::login(&addr, &server).await;
        c.send(b"X\0\0\0\x04").await;
        let closed = c.until_end().await;
        assert!(
            closed.messages.is_empty() && closed.end.is_ok(),
            "{addr}: {closed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_is_seen_by_the_server_as_gone_not_as_terminated() {
    // Directly, a client that disappears inside a transaction makes PostgreSQL log an unexpected
    // EOF; through the proxy it must too (the proxy sends no Terminate of its own).
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let needle = "unexpected EOF on client connection with an open transaction";
    for (n, addr) in [(1, server.addr()), (2, proxy.addr.clone())] {
        let mut c = RawClient::login(&addr, &server).await;
        c.simple("BEGIN").await;
        drop(c);
        let mut found = 0;
        for _ in 0..100 {
            found = server.log().matches(needle).count();
            if found >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            found, n,
            "{addr}: PostgreSQL did not log the unexpected EOF"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_servers_fatal_the_client_sees_that_and_the_close_only() {
    // pg_terminate_backend ends an idle session with FATAL 57P01 and a close. A statement the
    // client sends meanwhile races the close: the server's socket may answer it with a reset,
    // and the proxy's write of it may fail. Directly the client reads the FATAL and then the
    // close (or reset), nothing else; through the proxy it must be the same: no second FATAL of
    // the proxy's own about the lost connection. The race goes either way, so it runs 15 times.
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let admin = server.connect_direct().await;
    for (how, addr) in [("direct", server.addr()), ("proxied", proxy.addr.clone())] {
        for round in 0..15 {
            let mut victim = RawClient::login(&addr, &server).await;
            let (pid, _) = victim.key.clone().unwrap();
            let row = admin
                .query_one("SELECT pg_terminate_backend($1::int)", &[&(pid as i32)])
                .await
                .unwrap();
            assert!(row.get::<_, bool>(0));
            victim.send(&frontend::query("BEGIN")).await;
            let closed = victim.until_end().await;
            let codes: Vec<_> = closed.messages.iter().map(|m| m.sqlstate()).collect();
            assert_eq!(
                codes,
                [Some("57P01".to_string())],
                "{how}, round {round}: {closed:?}"
            );
        }
    }
}
