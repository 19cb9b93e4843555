//! What clients can make the sidecar hold, measured on the real binary's RSS: memory taken for
//! a large message is given back once the message has passed, not kept in a pool.

use std::time::Duration;

use proxy_tests::TestServer;
use proxy_tests::process::{SidecarProcess, proc_status_kb};
use proxy_tests::raw::RawClient;

const MB: u64 = 1024 * 1024;

fn rss(sidecar: &SidecarProcess) -> u64 {
    proc_status_kb(sidecar.child.id(), "VmRSS:") * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_grown_by_large_queries_are_freed_when_the_sessions_end() {
    // Ten sessions each send a 40 MiB query through the sidecar, one after the other, and close.
    // What stays is what the sidecar keeps for reuse: per thread 256 small and 32 grown read
    // buffers (at most 2 x read_buffer_size each: ~1.5 MiB a thread), far below one query. 64 MiB
    // above the idle figure is the bound; keeping the ten buffers would be 400 MiB.
    let server = TestServer::postgres().await;
    let mut sidecar = SidecarProcess::start(&["--upstream", &server.addr()]);
    sidecar.ready().await;
    let mut warm = RawClient::login(&sidecar.listen, &server).await;
    warm.simple("SELECT 1").await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss(&sidecar);
    let text = "x".repeat(40 << 20);
    let sql = format!("SELECT length('{text}')");
    let mut peak = idle;
    for _ in 0..10 {
        let mut client = RawClient::login(&sidecar.listen, &server).await;
        let msgs = client.simple(&sql).await;
        assert!(
            msgs.iter().any(|m| m.tag == b'D'),
            "{:?}",
            proxy_tests::raw::briefs(&msgs)
        );
        peak = peak.max(rss(&sidecar));
        drop(client);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss(&sidecar);
    eprintln!(
        "RSS idle {} MB, peak {} MB, after the sessions {} MB",
        idle / MB,
        peak / MB,
        after / MB
    );
    assert!(
        after < idle + 64 * MB,
        "{} MB kept after ten 40 MiB queries (idle: {} MB)",
        after / MB,
        idle / MB
    );
}
