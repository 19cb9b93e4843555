//! What a client that has not logged in can make the sidecar do, on the real binary and real
//! PostgreSQL:
//! - an authentication message over PostgreSQL's limit (65,535 bytes) is refused at its header
//!   with FATAL `08P01`, in both `auth` modes, before its body is read;
//! - sockets that never send a startup packet do not take client slots: however many there are,
//!   a client that logs in gets in (the oldest silent sockets are closed to make room);
//! - with `auth = "proxy"`, a large query costs about its size once in the sidecar, as in
//!   passthrough.

use std::time::{Duration, Instant};

use doltgres_sidecar::auth::AuthMode;
use proxy_tests::process::{SidecarProcess, proc_status_kb};
use proxy_tests::raw::{Msg, take_message};
use proxy_tests::{TestProxy, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MB: u64 = 1024 * 1024;

/// A StartupMessage for `user` on `database`.
fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// The messages the other end sends until it closes (or 20 s pass).
async fn until_closed(stream: &mut TcpStream) -> Vec<Msg> {
    let mut buf = bytes::BytesMut::new();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(m) = take_message(&mut buf) {
            messages.push(m);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return messages,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection stayed open; got {messages:?}"),
        }
    }
}

/// Starts a login, waits for the SASL request, then sends a SASLInitialResponse whose header
/// claims 400 MiB followed by 2 MiB of it: the answer must be FATAL 08P01, then the close.
async fn oversized_sasl_message_is_refused(addr: &str, server: &TestServer) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&startup(&server.user, &server.database))
        .await
        .unwrap();
    let mut buf = bytes::BytesMut::new();
    let request = loop {
        stream.read_buf(&mut buf).await.unwrap();
        if let Some(m) = take_message(&mut buf) {
            break m;
        }
    };
    assert_eq!(request.auth_code(), Some(10), "a SASL request: {request:?}");
    let mut header = vec![b'p'];
    header.extend_from_slice(&(400u32 << 20).to_be_bytes());
    stream.write_all(&header).await.unwrap();
    // Some of the body; the rest never comes. A proxy that buffers waits for it.
    let _ = stream.write_all(&vec![b'x'; 2 << 20]).await;
    let answer = until_closed(&mut stream).await;
    let codes: Vec<_> = answer.iter().filter_map(Msg::sqlstate).collect();
    assert_eq!(codes, ["08P01"], "{addr}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_authentication_message_is_refused_in_both_auth_modes() {
    let server = TestServer::postgres().await;
    let passthrough = TestProxy::start(&server.addr()).await;
    let password = server.password.clone();
    let proxy_auth = TestProxy::start_with(&server.addr(), |c| {
        c.auth = Some(AuthMode::Proxy);
        c.backup.password = Some(password);
    })
    .await;
    oversized_sasl_message_is_refused(&passthrough.addr, &server).await;
    oversized_sasl_message_is_refused(&proxy_auth.addr, &server).await;
    // Both go on serving.
    for addr in [&passthrough.addr, &proxy_auth.addr] {
        let client = server.connect_at(addr).await;
        client.simple_query("SELECT 1").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_do_not_lock_out_a_client_that_logs_in() {
    // 20 client slots, 50 startup places, 150 sockets that never speak (kept open far longer
    // than it takes to log in: startup_timeout is a minute).
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.max_client_connections = 20;
        c.max_startup_connections = 50;
        c.startup_timeout = Duration::from_secs(60);
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(TcpStream::connect(&proxy.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = tokio::time::timeout(Duration::from_secs(20), server.connect_at(&proxy.addr))
        .await
        .expect("the login waited");
    client.simple_query("SELECT 1").await.unwrap();
    // The oldest silent sockets were closed to make room; the newest are still open.
    let mut closed = 0;
    for socket in &mut silent {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(20), socket.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 100, "{closed} of 150 silent sockets closed");
}

/// The sidecar's peak RSS above its idle RSS while one `size`-byte query runs through it.
async fn peak_for_a_large_query(server: &TestServer, extra: &[&str], size: usize) -> u64 {
    let upstream = server.addr();
    let mut args = vec!["--upstream", upstream.as_str()];
    args.extend_from_slice(extra);
    let mut sidecar = SidecarProcess::start(&args);
    sidecar.ready().await;
    let client = server.connect_at(&sidecar.listen).await;
    client.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = sidecar.child.id();
    let idle = proc_status_kb(pid, "VmRSS:") * 1024;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(proc_status_kb(pid, "VmRSS:") * 1024);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let sql = format!("SELECT length('{}')", "x".repeat(size));
    let rows = client.simple_query(&sql).await.unwrap();
    assert!(!rows.is_empty());
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap().saturating_sub(idle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_query_costs_about_its_size_with_proxy_authentication_too() {
    // The whole Query message is buffered once to be relayed (and seen by the trackers); the
    // session-state tracker of auth = proxy must not copy it again. Bound: 2x the query,
    // where three extra copies were 4x.
    let server = TestServer::postgres().await;
    let size = 100 << 20;
    let passthrough = peak_for_a_large_query(&server, &[], size).await;
    let proxy = peak_for_a_large_query(
        &server,
        &["--auth", "proxy", "--backup-password", &server.password],
        size,
    )
    .await;
    eprintln!(
        "peak above idle for a {} MB query: passthrough {} MB, auth = proxy {} MB",
        size as u64 / MB,
        passthrough / MB,
        proxy / MB
    );
    assert!(
        proxy < 2 * size as u64,
        "auth = proxy peaked {} MB above idle for a {} MB query",
        proxy / MB,
        size as u64 / MB
    );
}
