//! Stop-and-copy under load, on a real Doltgres in managed mode: ledger writers and pgbench (a
//! new connection per transaction, as a pooled application's would be) run through the proxy
//! while copy windows open every few write commits. No transaction fails because of a window,
//! every copy verifies, and every copy restores to an unbroken prefix of the ledger that equals
//! the cut its manifest recorded.
//!
//! A connection made for one transaction is never cut off: one that arrives during a window waits
//! before logging in, and one that had just connected when the window began runs its first request
//! before the server stops (the join grace). Sessions idle through the windows survive too: with
//! proxy authentication (managed mode's default) each is logged in again on the restarted server
//! and given its setting and prepared statement back. No client sees an error and no session is
//! ended.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use doltgres_sidecar::verify;
use proxy_tests::ledger::{self, Append};
use proxy_tests::managed::{ManagedProxy, PASSWORD, USER};

const WRITERS: u64 = 3;
const PER_WRITER: u64 = 60;
const EVERY: u64 = 15;
const MIN_COPIES: usize = 5;
const PGBENCH_TXNS: u64 = 300;
/// Sessions that stay connected and idle through every window.
const IDLE_SESSIONS: usize = 5;

/// What the pgbench load did.
struct Load {
    processed: u64,
    /// Clients pgbench aborted because a window ended their session (57P01).
    aborted_clients: usize,
}

/// Runs pgbench (`-C`, a connection per transaction) again and again until `total` transactions
/// ran. No transaction may fail; a client may only be aborted by a window's documented 57P01.
fn pgbench_until(addr: &str, script: &std::path::Path, total: u64) -> Load {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut load = Load {
        processed: 0,
        aborted_clients: 0,
    };
    for _ in 0..50 {
        if load.processed >= total {
            return load;
        }
        let out = Command::new("pgbench")
            .args([
                "-h", host, "-p", port, "-U", USER, "-n", "-C", "-c", "2", "-t", "25", "-f",
            ])
            .arg(script)
            .arg("postgres")
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "30")
            .output()
            .expect("cannot run pgbench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report = proxy_tests::pgbench::parse(&stdout);
        assert_eq!(report.failed, 0, "{stdout}");
        let aborted = stderr
            .lines()
            .filter(|l| l.contains("client") && l.contains("aborted"))
            .count();
        // Errors that are neither a window's 57P01 nor pgbench's report of the aborts it caused.
        let other = stderr.lines().filter(|l| {
            (l.contains("error") || l.contains("FATAL"))
                && !l.contains("restarted for a backup")
                && !l.contains("aborted")
        });
        assert_eq!(other.count(), 0, "pgbench saw other errors:\n{stderr}");
        assert!(
            out.status.success() || aborted > 0,
            "pgbench failed: {stdout}\n{stderr}"
        );
        load.processed += report.processed;
        load.aborted_clients += aborted;
    }
    panic!(
        "pgbench ran {} of {total} transactions in 50 runs",
        load.processed
    );
}

/// Appends `PER_WRITER` rows, one transaction per connection; retries write conflicts, and
/// sessions a window ended before their transaction ran.
async fn writer(
    config: tokio_postgres::Config,
    id: u64,
    conflicts: Arc<AtomicU64>,
    ended: Arc<AtomicU64>,
) {
    let mut done = 0;
    while done < PER_WRITER {
        match ledger::append_once(&config, id).await {
            Append::Committed => done += 1,
            Append::Conflict => {
                conflicts.fetch_add(1, Ordering::SeqCst);
            }
            // Ended by a window before anything of it ran: reconnect and retry.
            Append::Failed(e) | Append::NotConnected(e)
                if e.code().is_some_and(|c| c.code() == "57P01") =>
            {
                ended.fetch_add(1, Ordering::SeqCst);
            }
            Append::Failed(e) | Append::NotConnected(e) => panic!("writer {id}: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_windows_under_load_cut_restorable_prefixes() {
    let m = ManagedProxy::start(|c, _| {
        c.backup.every_write_commits = EVERY;
        c.backup.retry_initial = Duration::from_millis(200);
        c.backup.copy.as_mut().unwrap().keep_last = 0;
    })
    .await;
    ledger::create(&m.connect().await).await;
    // Long-lived sessions, idle through every window, each with a setting and a prepared
    // statement made before the first one.
    let mut idle = Vec::new();
    for i in 0..IDLE_SESSIONS {
        let c = m.connect().await;
        c.batch_execute(&format!("SET app.n = '{i}'"))
            .await
            .unwrap();
        let statement = c
            .prepare("SELECT count(*) FROM ledger WHERE seq >= $1::int")
            .await
            .unwrap();
        idle.push((c, statement));
    }

    let conflicts = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (1..=WRITERS)
        .map(|id| {
            let config = m.config_at("postgres");
            tokio::spawn(writer(config, id, conflicts.clone(), ended.clone()))
        })
        .collect();
    let script = m.dir.path().join("read.sql");
    std::fs::write(&script, "SELECT count(*) FROM ledger;\n").unwrap();
    let addr = m.addr().to_string();
    // pgbench aborts a client whose session was ended; like a pooled application, the load
    // starts it again until it has run its transactions.
    let pgbench = tokio::task::spawn_blocking(move || pgbench_until(&addr, &script, PGBENCH_TXNS));
    for w in writers {
        w.await.unwrap();
    }
    let load = pgbench.await.unwrap();

    // Let the last triggered windows finish, then take one more so the end state is copied too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(m.backup("copy").await.0, 200);
    let entries = m.catalog().entries();
    assert!(entries.len() > MIN_COPIES, "only {} copies", entries.len());
    let total = WRITERS * PER_WRITER;
    let mut cuts = Vec::new();
    for entry in &entries {
        let db = entry.manifest.database("postgres").unwrap();
        let cut = *db.tables.get("public.ledger").unwrap();
        verify::verify_entry(&m.scratch(), entry, &mut |_| {})
            .await
            .unwrap_or_else(|e| panic!("copy {} does not verify: {e}", entry.id));
        let sql = "SELECT count(*) || ',' || max(seq) FROM ledger";
        let row = m.query_copy(entry, "postgres", sql).await;
        let (count, max) = row[0].split_once(',').unwrap();
        let (count, max): (u64, u64) = (count.parse().unwrap(), max.parse().unwrap());
        assert_eq!(count, max + 1, "copy {}: the ledger has a gap", entry.id);
        assert_eq!(
            count, cut,
            "copy {}: restored rows differ from the cut",
            entry.id
        );
        cuts.push(cut);
    }
    assert!(
        cuts.windows(2).all(|w| w[0] <= w[1]),
        "cuts go back: {cuts:?}"
    );
    assert_eq!(
        *cuts.last().unwrap(),
        total + 1,
        "the last copy holds every row"
    );
    let ended_writers = ended;
    eprintln!(
        "{}",
        summary(&m, &entries, &cuts, &conflicts, &ended_writers, &load).await
    );
    assert_eq!(
        ended_writers.load(Ordering::SeqCst),
        0,
        "writer sessions were ended"
    );
    assert_eq!(load.aborted_clients, 0, "pgbench clients were aborted");
    assert_eq!(load.processed, PGBENCH_TXNS);
    // The idle sessions are all still there, with their settings and statements.
    for (i, (c, statement)) in idle.iter().enumerate() {
        let rows = c.simple_query("SHOW app.n").await.unwrap();
        let shown = rows.iter().find_map(|r| match r {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(shown, Some(i.to_string()));
        let rows = c.query(statement, &[&0i32]).await.unwrap();
        let count: i64 = rows[0].get(0);
        assert_eq!(count as u64, total + 1, "idle session {i}");
    }
    let (_, metrics) = m.proxy.admin_get("/metrics").await;
    let ended: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("doltgres_sidecar_sessions_ended_total{"))
        .collect();
    assert!(ended.is_empty(), "sessions were ended: {ended:?}");
    m.proxy.stop().await;
}

/// One line for the log: what the run did.
async fn summary(
    m: &ManagedProxy,
    entries: &[doltgres_sidecar::catalog::Entry],
    cuts: &[u64],
    conflicts: &AtomicU64,
    ended_writers: &AtomicU64,
    load: &Load,
) -> String {
    let (_, metrics) = m.proxy.admin_get("/metrics").await;
    let ended = metrics
        .lines()
        .find(|l| l.contains("restart_without_replay"))
        .unwrap_or("no session ended");
    format!(
        "copy proof: {} copies, cuts {cuts:?}, {} write conflicts retried, {} writer sessions \
         ended before their transaction, {} pgbench clients aborted, pgbench processed {}, {ended}",
        entries.len(),
        conflicts.load(Ordering::SeqCst),
        ended_writers.load(Ordering::SeqCst),
        load.aborted_clients,
        load.processed,
    )
}
