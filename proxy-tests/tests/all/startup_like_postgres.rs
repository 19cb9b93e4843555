//! The startup phase through the proxy answers exactly as PostgreSQL does. Each malformed or
//! unusual opening is sent as raw bytes to PostgreSQL directly and through the proxy; the bytes
//! back (or the silence) and the way the connection ends must be the same. Where the proxy
//! answers with its own wording (README, "What a client sees"), severity and SQLSTATE must match.

use std::process::Stdio;
use std::time::Duration;

use futures_util::future::join_all;
use proxy_tests::install::driver_program;
use proxy_tests::startup_probe::{Case, End, GSS, Outcome, SSL, account, packet, probe};
use proxy_tests::{TestProxy, TestServer, both_servers};

/// PostgreSQL's `authentication_timeout` and the proxy's `startup_timeout` in these tests.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe waits for the other side to end the connection: past the startup timeout.
const WAIT: Duration = Duration::from_secs(6);

const V3: u32 = 3 << 16;
const CANCEL: u32 = 80_877_102;

fn login() -> Vec<u8> {
    proxy_tests::startup_probe::startup_message(
        V3,
        &[("user", "postgres"), ("database", "postgres")],
    )
}

/// Every case, and whether the answer is worded by the proxy (compared by severity and code).
fn table() -> Vec<(Case, bool)> {
    let terminate_then_login = [&b"X\0\0\0\x04"[..], &login()].concat();
    let ssl_then_login = [SSL, &login()].concat();
    let v3_9 = proxy_tests::startup_probe::startup_message(V3 | 9, &[("user", "postgres")]);
    let empty_user = proxy_tests::startup_probe::startup_message(V3, &[("user", "")]);
    let largest = packet(10_004, 0, &[0; 9_996]);
    vec![
        (
            Case::new("hang up before a byte", &[]).then_hang_up(),
            false,
        ),
        (Case::new("silence until the timeout", &[]), false),
        (
            Case::new("part of a length word, then silence", &[b"\0\0"]),
            false,
        ),
        (
            Case::new("part of a length word, then hang up", &[b"\0\0"]).then_hang_up(),
            false,
        ),
        (
            Case::new(
                "incomplete packet, then hang up",
                &[&packet(100, V3, b"us")],
            )
            .then_hang_up(),
            false,
        ),
        (
            Case::new(
                "incomplete packet, then silence",
                &[&packet(100, V3, b"us")],
            ),
            false,
        ),
        (
            Case::new(
                "Terminate before the StartupMessage",
                &[&terminate_then_login],
            ),
            false,
        ),
        (Case::new("length 4", &[&[0, 0, 0, 4]]), false),
        (Case::new("length 7", &[&[0, 0, 0, 7, 0, 3, 0]]), false),
        (Case::new("length 0xffffffff", &[&[0xff; 4]]), false),
        (
            Case::new("length 10005", &[&10_005u32.to_be_bytes()]),
            false,
        ),
        (Case::new("length 10004, version 0.0", &[&largest]), true),
        (Case::new("protocol 1.0", &[&packet(8, 1 << 16, &[])]), true),
        (Case::new("protocol 2.0", &[&packet(8, 2 << 16, &[])]), true),
        (Case::new("protocol 4.0", &[&packet(8, 4 << 16, &[])]), true),
        (
            Case::new("request code 1234.1", &[&packet(8, 1234 << 16 | 1, &[])]),
            true,
        ),
        (Case::new("protocol 3.9", &[&v3_9]), false),
        (
            Case::new(
                "Query before any startup packet",
                &[b"Q\0\0\0\x0dSELECT 1\0"],
            ),
            false,
        ),
        (
            Case::new("SSLRequest, then StartupMessage", &[SSL, &login()]),
            false,
        ),
        (Case::new("SSLRequest, then silence", &[SSL]), false),
        (Case::new("SSLRequest twice", &[SSL, SSL]), true),
        (Case::new("data after SSLRequest", &[&ssl_then_login]), true),
        (Case::new("no user", &[&packet(9, V3, &[0])]), false),
        (Case::new("empty user", &[&empty_user]), false),
        (
            Case::new("no terminator", &[&packet(13, V3, b"user\0")]),
            false,
        ),
        (
            Case::new(
                "CancelRequest for no session",
                &[&packet(16, CANCEL, &[0, 0, 0, 1, 0, 0, 0, 2])],
            ),
            false,
        ),
        (
            Case::new(
                "CancelRequest too short",
                &[&packet(12, CANCEL, &[0, 0, 0, 1])],
            ),
            false,
        ),
        (
            Case::new(
                "CancelRequest with a long key",
                &[&packet(20, CANCEL, &[1; 12])],
            ),
            false,
        ),
        (
            Case::new(
                "SSLRequest, then CancelRequest",
                &[SSL, &packet(16, CANCEL, &[0; 8])],
            ),
            false,
        ),
    ]
}

/// A PostgreSQL whose `authentication_timeout` is [`STARTUP_TIMEOUT`], and a proxy in front of it
/// with the same `startup_timeout`.
async fn postgres_and_proxy() -> (TestServer, TestProxy) {
    let server = TestServer::postgres().await;
    let admin = server.connect_direct().await;
    let timeout = format!("{}s", STARTUP_TIMEOUT.as_secs());
    for sql in [
        format!("ALTER SYSTEM SET authentication_timeout = '{timeout}'"),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    // pg_reload_conf only signals the postmaster; wait until new backends see the value.
    for _ in 0..50 {
        let fresh = server.connect_direct().await;
        let row = fresh
            .query_one("SHOW authentication_timeout", &[])
            .await
            .unwrap();
        if row.get::<_, String>(0) == timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let proxy =
        TestProxy::start_with(&server.addr(), |c| c.startup_timeout = STARTUP_TIMEOUT).await;
    (server, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_startup_case_answers_like_postgresql() {
    let (server, proxy) = postgres_and_proxy().await;
    let direct_addr = server.addr();
    let table = table();
    let runs = table.iter().map(|(case, _)| async {
        let (direct, proxied) = tokio::join!(
            probe(&direct_addr, case, WAIT),
            probe(&proxy.addr, case, WAIT)
        );
        (direct, proxied)
    });
    let results = join_all(runs).await;
    let mut differences = Vec::new();
    let mut answered = 0;
    for ((case, own_wording), (direct, proxied)) in table.iter().zip(results) {
        answered += usize::from(!direct.bytes.is_empty());
        let shown = |o: &Outcome| (account(&o.bytes, *own_wording), o.end);
        if shown(&direct) != shown(&proxied) {
            differences.push(format!(
                "{}:\n  direct:  {:?}\n  proxied: {:?}",
                case.name,
                shown(&direct),
                shown(&proxied)
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // Not everything was silence: the table exercises answers too.
    assert!(answered >= 10, "only {answered} cases got an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gss_encryption_is_refused_then_negotiation_goes_on_as_postgresql_would() {
    // The proxy does not offer GSSAPI encryption: it answers `N`, as a PostgreSQL built without
    // GSSAPI does, and then keeps PostgreSQL's rules for what may follow.
    let (server, proxy) = postgres_and_proxy().await;
    let cases = [
        (
            Case::new("GSSENCRequest, then StartupMessage", &[GSS, &login()]),
            "byte N",
        ),
        (
            Case::new(
                "GSSENCRequest, SSLRequest, StartupMessage",
                &[GSS, SSL, &login()],
            ),
            "byte N",
        ),
    ];
    for (case, first) in &cases {
        let proxied = probe(&proxy.addr, case, WAIT).await;
        let seen = account(&proxied.bytes, false);
        assert_eq!(seen[0], *first, "{}: {seen:?}", case.name);
        assert!(
            seen.iter().any(|m| m.starts_with("R ")),
            "{}: the login went on: {seen:?}",
            case.name
        );
    }
    let twice = probe(
        &proxy.addr,
        &Case::new("GSSENCRequest twice", &[GSS, GSS]),
        WAIT,
    )
    .await;
    assert_eq!(account(&twice.bytes, true), ["byte N", "E FATAL 0A000"]);
    assert_eq!(twice.end, End::Eof);
    drop(server);
}

both_servers!(node_postgres_connect_then_end_exits_cleanly);
async fn node_postgres_connect_then_end_exits_cleanly(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let node = driver_program("node");
    let script = std::path::Path::new(&node.argv[1]).with_file_name("connect_end.js");
    for addr in [server.addr(), proxy.addr.clone()] {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let out = tokio::process::Command::new(&node.argv[0])
            .arg(&script)
            .args([host, port, &server.user, &server.password, &server.database])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .expect("node did not finish")
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ended",
            "connect(); end() at {addr} ({}): {}\n{}",
            if addr == server.addr() {
                "direct"
            } else {
                "through the proxy"
            },
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
