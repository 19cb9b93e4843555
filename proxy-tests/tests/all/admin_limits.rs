//! The admin API refuses what it should not act on: malformed hold durations (longer ones are
//! capped at `max_hold_ttl`), request targets, heads and bodies too large for any endpoint, and
//! control calls without the token; it does not wait for a body nobody reads, nor keep an idle
//! connection past its timeout. Its OpenAPI document describes what it serves.

use proxy_tests::http;
use proxy_tests::{TestProxy, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_bounded_and_oversized_requests_refused() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.admin_token = Some("s3cret".into());
        c.backup.snapshot = Some(doltgres_sidecar::config::backup::SnapshotConfig {
            command: vec!["true".into()],
            timeout: std::time::Duration::from_secs(10),
        });
    })
    .await;
    let base = proxy.admin_url.clone();
    let token = Some("s3cret");
    let results = tokio::task::spawn_blocking(move || {
        let quiesce = |q: &str| http::call("POST", &format!("{base}/quiesce?{q}"), token, None);
        let day = quiesce("ttl=1day");
        let zero = quiesce("ttl=0s");
        let composite = quiesce("ttl=1m30s");
        let long_target = http::call(
            "GET",
            &format!("{base}/status?pad={}", "x".repeat(2000)),
            token,
            None,
        );
        let big_body = http::call(
            "POST",
            &format!("{base}/resume"),
            token,
            Some(&[b'x'; 4096][..]),
        );
        // Longer than max_hold_ttl: held, for max_hold_ttl.
        let ok = quiesce("ttl=5h&timeout=2h");
        // A backup asked for during the hold does not wait minutes behind it.
        let busy = http::call(
            "POST",
            &format!("{base}/backups?action=snapshot"),
            token,
            None,
        );
        let resumed = http::call("POST", &format!("{base}/resume"), token, None);
        let after = http::call(
            "POST",
            &format!("{base}/backups?action=snapshot"),
            token,
            None,
        );
        (
            day,
            zero,
            composite,
            long_target,
            big_body,
            ok,
            (busy, resumed, after),
        )
    })
    .await
    .unwrap();
    let (day, zero, composite, long_target, big_body, ok, (busy, resumed, after)) = &results;
    assert_eq!(busy.0, 409, "{busy:?}");
    assert_eq!(after.0, 200, "{after:?}");
    assert_eq!(day.0, 400, "{day:?}");
    assert!(day.1.contains("a whole number and a unit"), "{day:?}");
    assert_eq!(zero.0, 400, "{zero:?}");
    assert_eq!(composite.0, 400, "{composite:?}");
    assert_eq!(long_target.0, 414, "{long_target:?}");
    assert_eq!(big_body.0, 413, "{big_body:?}");
    assert_eq!(ok.0, 200, "{ok:?}");
    let held: serde_json::Value = serde_json::from_str(&ok.1).unwrap();
    assert_eq!(held["ttl_seconds"], 600.0, "capped at max_hold_ttl: {held}");
    assert_eq!(resumed.0, 200, "{resumed:?}");
    assert!(
        !proxy.shared.gate.is_closed(),
        "traffic flows after the refused holds"
    );
    let base = proxy.admin_url.clone();
    let no_token = tokio::task::spawn_blocking(move || {
        http::call("POST", &format!("{base}/quiesce?ttl=1m"), None, None)
    })
    .await
    .unwrap();
    assert_eq!(no_token.0, 401, "{no_token:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_served_api() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let (code, body) = proxy.admin_get("/openapi.json").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap().clone();
    assert!(paths.len() >= 8, "{paths:?}");
    let base = proxy.admin_url.clone();
    let served: Vec<(String, String, u16)> = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (path, methods) in &paths {
            for method in methods.as_object().unwrap().keys() {
                let url = match path.as_str() {
                    // Harmless forms of the control calls.
                    "/backups" if method == "post" => format!("{base}/backups?action=nothing"),
                    "/quiesce" => format!("{base}/quiesce?ttl=0s"),
                    _ => format!("{base}{path}"),
                };
                let (status, _) = http::call(&method.to_uppercase(), &url, None, None);
                out.push((method.clone(), path.clone(), status));
            }
        }
        out
    })
    .await
    .unwrap();
    for (method, path, status) in &served {
        assert!(
            *status != 404 && *status != 405,
            "{method} {path}: {status}"
        );
    }
    // The answers follow the documented shapes where it matters to clients.
    let (_, status) = proxy.admin_get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    for key in ["version", "upstream", "sessions", "counters"] {
        assert!(status.get(key).is_some(), "{key} missing in {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_schema_violation() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.admin_token = Some("s3cret".into());
        c.max_hold_ttl = std::time::Duration::from_secs(2);
        c.backup.snapshot = Some(doltgres_sidecar::config::backup::SnapshotConfig {
            command: vec!["true".into()],
            timeout: std::time::Duration::from_secs(10),
        });
    })
    .await;
    let schema = format!("{}/openapi.json", proxy.admin_url);
    // Every check, negative data included: what the document calls invalid must be refused.
    let run = tokio::process::Command::new(proxy_tests::install::schemathesis())
        .args(["run", &schema, "-H", "Authorization: Bearer s3cret"])
        .args([
            "--max-examples",
            "30",
            "--request-timeout",
            "20",
            "--seed",
            "42",
        ])
        .args(["--checks", "all"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .expect("schemathesis hung")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Tested: 9"), "{text}");
    // Traffic flows afterwards: no hold outlived the run.
    let client = server.connect_at(&proxy.addr).await;
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.simple_query("SELECT 1"),
    )
    .await
    .expect("traffic still held")
    .unwrap();
}

/// Writes `request` on a new connection to the admin API and reads until the server closes it
/// (at most 15 s): what came back, and whether the server closed the connection.
async fn raw_exchange(admin_url: &str, request: &[u8]) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = admin_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        stream.read_to_end(&mut answer),
    )
    .await;
    (String::from_utf8_lossy(&answer).into_owned(), read.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_unfinished_bodies_and_idle_keep_alive_end_the_connection() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    // A request head larger than any endpoint needs: 431, then the connection closes.
    let mut big = b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n".to_vec();
    for i in 0..40 {
        big.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "p".repeat(256)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let (answer, closed) = raw_exchange(&proxy.admin_url, &big).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(closed, "the connection stayed open after the 431");
    // A body announced but never sent whole: answered (no endpoint reads it), then closed
    // rather than waited for.
    let unfinished =
        b"POST /resume HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 500\r\n\r\nonly this much";
    let (answer, closed) = raw_exchange(&proxy.admin_url, unfinished).await;
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
    assert!(closed, "the connection waited for the rest of the body");
    // A keep-alive connection idle after its answer is closed at the idle timeout (5 s).
    let began = std::time::Instant::now();
    let (answer, closed) = raw_exchange(
        &proxy.admin_url,
        b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
        "{answer}"
    );
    assert!(closed, "an idle keep-alive connection stayed open");
    assert!(
        began.elapsed() >= doltgres_sidecar::admin::HEADER_TIMEOUT,
        "closed after {:?}, before the idle timeout",
        began.elapsed()
    );
}
