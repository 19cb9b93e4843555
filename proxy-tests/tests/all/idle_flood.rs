//! 10,000 idle sessions (or as many as the open-file limit allows: see [`sessions`]) through the
//! sidecar binary to a real Doltgres, each sending a query during
//! an operator hold: every one is held (the `held_sessions` gauge counts them all), nothing is
//! answered early, and after `/resume` every one gets its answer. The sidecar's resident memory is
//! measured as its own process before, with the sessions idle, held and after they left; the
//! figures are printed (run with `--nocapture`) and bounded generously, so that a leak or a
//! per-session buffer of tens of kilobytes fails while ordinary allocator noise does not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use proxy_tests::TestServer;
use proxy_tests::process::{SidecarProcess, raise_fd_limit};
use proxy_tests::raw::{Login, Msg, RawClient, briefs};

const WANTED: usize = 10_000;
/// Sockets and files the sidecar holds besides its sessions' (listeners, logs, the runtime).
const SIDECAR_OVERHEAD: u64 = 100;
/// Logins in flight at once while connecting.
const CONNECTING: usize = 48;
/// Resident memory allowed per idle session. Idle sessions keep their two read buffers and the
/// socket state; 10,000 of them at 8 KiB each would be 80 MB, far below this.
const MAX_BYTES_PER_SESSION: u64 = 32 * 1024;

/// How many sessions to open under this open-file limit: each session holds two sockets in the
/// sidecar (the client's and the server's), so a limit of 20,000 (what this machine's containers
/// allow, without CAP_SYS_RESOURCE to raise it) caps the sidecar at 9,950 sessions.
fn sessions(fd_limit: u64) -> usize {
    let fit = fd_limit.saturating_sub(SIDECAR_OVERHEAD) / 2;
    let sessions = WANTED.min(fit as usize);
    if sessions < WANTED {
        println!(
            "idle flood: the open-file limit is {fd_limit}, so {sessions} sessions instead of \
             {WANTED} (each takes two sockets in the sidecar)"
        );
    }
    assert!(
        sessions >= 1_000,
        "open-file limit {fd_limit} is too low for this test"
    );
    sessions
}

/// Waits (up to `limit`) until `/metrics` shows `name` at `want`; returns the last value seen.
async fn metric_reaches(sidecar: &SidecarProcess, name: &str, want: f64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let value = sidecar.metric(name).await.unwrap_or(-1.0);
        if value == want || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_sessions_are_held_through_a_window_and_released() {
    let sessions = sessions(raise_fd_limit());
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    let limit = sessions + 100;
    std::fs::write(&config, format!("max_client_connections = {limit}\n")).unwrap();
    let mut sidecar = SidecarProcess::start(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--upstream".as_ref(),
        server.addr().as_ref(),
    ]);
    sidecar.ready().await;
    let rss_start = sidecar.rss_bytes();

    let login = Arc::new((
        server.user.clone(),
        server.password.clone(),
        server.database.clone(),
    ));
    let addr = sidecar.listen.clone();
    let connecting = Instant::now();
    let clients: Vec<RawClient> = futures_util::stream::iter(0..sessions)
        .map(|_| {
            let login = login.clone();
            let addr = addr.clone();
            async move {
                let credentials = Login {
                    user: &login.0,
                    password: &login.1,
                    database: &login.2,
                };
                tokio::time::timeout(
                    Duration::from_secs(120),
                    RawClient::login_as(&addr, &credentials, &[]),
                )
                .await
                .expect("a login took more than 120 s")
            }
        })
        .buffer_unordered(CONNECTING)
        .collect()
        .await;
    let connect_time = connecting.elapsed();
    assert_eq!(clients.len(), sessions);
    let open = metric_reaches(
        &sidecar,
        "doltgres_sidecar_sessions",
        sessions as f64,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(open, sessions as f64, "sessions gauge");
    let rss_idle = sidecar.rss_bytes();

    let (code, body) = sidecar.post("/quiesce?ttl=5m&timeout=10s").await;
    assert_eq!(code, 200, "{body}");
    let mut clients = clients;
    for (i, client) in clients.iter_mut().enumerate() {
        client.query(&format!("SELECT {i}")).await;
    }
    let held = metric_reaches(
        &sidecar,
        "doltgres_sidecar_held_sessions",
        sessions as f64,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(held, sessions as f64, "every session's query is held");
    let rss_held = sidecar.rss_bytes();

    let released = Instant::now();
    let (code, body) = sidecar.post("/resume").await;
    assert_eq!(code, 200, "{body}");
    let answers: Vec<(usize, Vec<Msg>)> =
        futures_util::stream::iter(clients.iter_mut().enumerate())
            .map(|(i, client)| async move {
                let messages = tokio::time::timeout(Duration::from_secs(120), client.until_ready())
                    .await
                    .expect("a held query was not answered within 120 s of the resume");
                (i, messages)
            })
            .buffer_unordered(sessions)
            .collect()
            .await;
    let release_time = released.elapsed();
    for (i, messages) in &answers {
        let value = i.to_string();
        let row = messages
            .iter()
            .find(|m| m.tag == b'D')
            .is_some_and(|m| m.body.ends_with(value.as_bytes()));
        let ready = messages.last().and_then(|m| m.ready_status()) == Some('I');
        assert!(row && ready, "session {i} got {:?}", briefs(messages));
    }
    assert_eq!(
        sidecar.metric("doltgres_sidecar_held_sessions").await,
        Some(0.0)
    );

    drop(clients);
    let left = metric_reaches(
        &sidecar,
        "doltgres_sidecar_sessions",
        0.0,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(left, 0.0, "sessions gauge after every client left");
    let rss_end = sidecar.rss_bytes();

    let per_session = rss_idle.saturating_sub(rss_start) / sessions as u64;
    println!(
        "idle flood: {sessions} sessions connected in {:.1} s; sidecar RSS {:.1} MiB at start, \
         {:.1} MiB idle ({per_session} B per session), {:.1} MiB held, {:.1} MiB after they left; \
         all {sessions} held queries answered {:.0} ms after the resume",
        connect_time.as_secs_f64(),
        mib(rss_start),
        mib(rss_idle),
        mib(rss_held),
        mib(rss_end),
        release_time.as_secs_f64() * 1000.0,
    );
    assert!(
        per_session <= MAX_BYTES_PER_SESSION,
        "{per_session} bytes of RSS per idle session"
    );
    let held_extra = rss_held.saturating_sub(rss_idle) / sessions as u64;
    assert!(
        held_extra <= MAX_BYTES_PER_SESSION,
        "{held_extra} more bytes per session while held"
    );
}
