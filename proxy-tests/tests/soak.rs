//! Soak: the real binary in managed mode under mixed load for `SOAK_SECONDS` (default 150), with
//! push, sync, snapshot and copy windows triggered every `EVERY` write commits, while the sidecar
//! process's RSS, open file descriptors and threads (from `/proc`), its heap in use and its
//! sessions gauge (from `/metrics`) are
//! sampled every few seconds.
//!
//! Load, all through the sidecar:
//! - ledger writers, a new connection per append (`BEGIN; INSERT … max(seq) + 1; COMMIT`), a
//!   write conflict rolled back and retried;
//! - pgbench `-C` (a connection per transaction) with a write script (`UPDATE` of the client's own
//!   row of `pgb`) and a read script, again and again until the end;
//! - one reader on a persistent connection, querying every 50 ms, reconnecting when a copy
//!   window ends its session (with `auth = "passthrough"`, every copy window does: the documented
//!   `57P01`; with `"proxy"`, the default here as in managed mode, the session is logged in again).
//!
//! Pass criteria: every acknowledged append is in the ledger with no gap, `pgb` holds every write
//! pgbench reported, and the sidecar's commit, rollback and write-commit counters equal the
//! clients' tallies; every window succeeded (no `failed` or `aborted`), the four actions ran the
//! same number of triggered windows, every write commit that reached the trigger was served,
//! every snapshot ran its command, every copy verified (`verify_after`); after the load, fresh
//! push, sync and copy windows restore (through `doltgres-sidecar restore`) to the full ledger;
//! no client error but the documented `57P01` (it ends a session before anything of its request
//! ran; the clients retry); after warm-up, the heap in use (`heap_bytes`: bytes allocated and
//! not freed) grows by no more than what the sidecar legitimately keeps (`GROWTH_MAX`, derived
//! below; the window history is filled before the load so that it cannot grow with the number of
//! windows) and the fd count is flat (least-squares
//! slope under its bound); the fds are back to the idle count afterwards. A second test runs the
//! soak against a debug build that leaks 2 KiB per session and requires the growth check to fail.
//!
//! What the soak once found about the join grace: a client that connected during the round's
//! push, sync or snapshot window had its first request held, and the copy window that followed
//! at once closed the gate again before the held request ran, so the drain waited out the grace
//! (~1 s of every copy's stall). A held request is now looked at again when the next window
//! closes the gate (copy drains: median 9 ms in the 20-minute run). The report counts drains
//! and 57P01s per client kind; `SOAK_ACTIONS=copy,push,sync,snapshot` runs copies first.
//!
//! The long run writes every sample to JSON (`SOAK_REPORT`, relative to the repository root):
//! `benches/soak/run.sh` (20 minutes), then `benches/soak/plot.py` for the plot and summary.
//! Throughput is reported, never asserted.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use doltgres_sidecar::verify::{self, Scratch, ScratchConfig, VerifyError};
use doltgres_sidecar::window::HISTORY;
use proxy_tests::facts::exec;
use proxy_tests::managed::{PASSWORD, USER};
use proxy_tests::process::{SidecarProcess, proc_status_kb};
use proxy_tests::{install, ledger};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Write commits per triggered round of windows (push, sync, snapshot, copy in turn).
const EVERY: u64 = 300;
const LEDGER_WRITERS: u64 = 3;
const PGBENCH_CLIENTS: u64 = 2;
/// The longest single pgbench run; it is started again until the soak ends.
const PGBENCH_RUN_SECONDS: u64 = 20;
const READER_PAUSE: Duration = Duration::from_millis(50);
const ACTIONS: [&str; 4] = ["push", "sync", "snapshot", "copy"];
/// Samples before this fraction of the run are warm-up: allocator arenas, buffers grown to
/// `read_buffer_size`, the window history filling, the blocking pool's first threads.
const WARMUP_FRACTION: f64 = 0.3;
/// How often the window records are read from `GET /backups`.
const COLLECT_EVERY: Duration = Duration::from_secs(10);
/// Open fds the idle sidecar may have after the load beyond those it had before: none should
/// stay, but a verification's or a pgbench's last connection may still be closing.
const IDLE_FD_MARGIN: u64 = 3;

/// How much the sidecar's heap in use (`heap_bytes`, bytes allocated and not yet freed) may grow
/// after warm-up: what it legitimately keeps, which is bounded and does not grow with the load's
/// length, the number of windows or the machine's speed. The window history is filled before the
/// load starts (with operator holds; it keeps the last [`HISTORY`] records), so a window after
/// that only replaces a record: a copy's, the largest, has ~1.7 KB of JSON more than a hold's,
/// at most 200 × 2 × 1.7 KB ≈ 0.7 MB in memory. The read buffer pools are bounded (256 small and
/// 32 grown buffers per thread, the grown ones up to `read_buffer_size`: 1 MB per thread, two
/// runtime threads) and mostly filled during warm-up. A leak is not bounded: one of 2 KiB per
/// session (a read buffer) over the thousands of sessions after warm-up is many times this;
/// [`LEAK_PER_SESSION`] is injected in a debug build to prove the check catches it.
///
/// The resident size (RSS) is reported, not bounded: glibc keeps what is freed in per-thread
/// arenas, and a blocking-pool thread (copies, checksums, verifications) that first allocates
/// late in the run adds a step of 1–2 MB that is not kept by the program (a CI run measured
/// 3.5 MB of RSS growth after warm-up with no leak).
const GROWTH_MAX: f64 = 3.0 * 1024.0 * 1024.0;
/// The leak [`the_leak_check_catches_a_leak_per_session`] injects: what a forgotten read buffer
/// would leak.
const LEAK_PER_SESSION: u64 = 2048;
/// Open file descriptor slope bound after warm-up, per minute. A leaked socket per connection
/// would add thousands a minute, a leaked fd per window round (one every 5–10 s here) 6–12; the
/// count itself moves with the sessions open at the instant of the sample (two fds each, up to
/// ~15) and a verification's child pipes, which after a 150 s run's warm-up measured slopes within
/// ±1.2 a minute. 4 a minute catches a leak per connection at once and one per window round,
/// and the idle count after the load (`IDLE_FD_MARGIN`) catches what is left behind.
const FD_SLOPE_MAX: f64 = 4.0;

struct Settings {
    seconds: u64,
    sample_every: Duration,
    report: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        let seconds = env_u64("SOAK_SECONDS").unwrap_or(150);
        assert!(seconds >= 30, "SOAK_SECONDS must be at least 30");
        // About 150–240 samples a run, every 1–5 s.
        let sample = env_u64("SOAK_SAMPLE_SECONDS").unwrap_or((seconds / 240).clamp(1, 5));
        let report = std::env::var_os("SOAK_REPORT").map(|p| repo_root().join(p));
        Settings {
            seconds,
            sample_every: Duration::from_secs(sample),
            report,
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number"))
    })
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the sidecar binary from the current sources (a no-op when it is up to date): a stale
/// binary would soak old code, and `install::sidecar_binary` builds only a missing one.
fn build_sidecar() {
    let bin = install::sidecar_binary();
    let profile = bin.parent().and_then(Path::file_name).unwrap_or_default();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "--bin", "doltgres-sidecar"])
        .current_dir(repo_root());
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cannot run cargo build");
    assert!(
        status.success(),
        "cargo build --bin doltgres-sidecar failed"
    );
}

// ------------------------------------------------------------------------------------------------
// The sidecar process

/// `SOAK_ACTIONS=copy,push,sync,snapshot` runs a round's windows in that order (default: push,
/// sync, snapshot, copy, the sidecar's own order).
/// `SOAK_AUTH=passthrough|proxy` (default `proxy`, managed mode's own default): who checks
/// client passwords. Set explicitly so the report says which mode ran: with `proxy` sessions are
/// logged in again after a copy window's restart; with `passthrough` they are ended with 57P01.
fn auth_mode() -> String {
    let mode = std::env::var("SOAK_AUTH").unwrap_or_else(|_| "proxy".into());
    assert!(
        mode == "proxy" || mode == "passthrough",
        "SOAK_AUTH={mode:?}: use proxy or passthrough"
    );
    mode
}

fn actions_line() -> String {
    match std::env::var("SOAK_ACTIONS") {
        Ok(list) => {
            let quoted: Vec<String> = list
                .split(',')
                .map(|a| format!("\"{}\"", a.trim()))
                .collect();
            format!("actions = [{}]\n", quoted.join(", "))
        }
        Err(_) => String::new(),
    }
}

/// The sidecar binary with the soak's configuration, its log in the temp dir.
struct Sidecar {
    process: SidecarProcess,
    listen: String,
    admin: String,
    log: PathBuf,
}

impl Sidecar {
    fn start(dir: &Path, env: &[(&str, String)]) -> Sidecar {
        let d = dir.display();
        let config = dir.join("sidecar.toml");
        std::fs::write(
            &config,
            format!(
                "drain_timeout = \"10s\"\nauth = \"{auth}\"\n\n\
                 [server]\ncontrol = \"managed\"\nbinary = \"{bin}\"\ndir = \"{d}/doltgres\"\n\
                 password = \"{PASSWORD}\"\nrestart_initial = \"200ms\"\n\n\
                 [backup]\nevery_write_commits = {EVERY}\non_shutdown = false\n{actions}\
                 retry_initial = \"200ms\"\nretry_max = \"5s\"\n\n\
                 [backup.push]\nremote = \"backup\"\nurl = \"file://{d}/remote/{{database}}\"\n\
                 commit_working_set = true\n\n\
                 [backup.sync]\nname = \"soak\"\nurl = \"file://{d}/sync/{{database}}\"\n\n\
                 [backup.snapshot]\ncommand = [\"/bin/sh\", \"-c\", \
                 \"echo $DOLTGRES_SIDECAR_WINDOW_ID >> {d}/snapshots.log\"]\n\n\
                 [backup.copy]\ncatalog = \"{d}/backups\"\nkeep_last = 4\nverify_after = true\n",
                bin = install::doltgres_binary().display(),
                actions = actions_line(),
                auth = auth_mode(),
            ),
        )
        .unwrap();
        let log = dir.join("sidecar.log");
        let log_file = std::fs::File::create(&log).unwrap();
        build_sidecar();
        let process =
            SidecarProcess::start_with(&[OsStr::new("--config"), config.as_os_str()], |c| {
                c.current_dir(dir)
                    .env(
                        "RUST_LOG",
                        std::env::var("SOAK_RUST_LOG").unwrap_or_else(|_| "info".into()),
                    )
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(log_file.try_clone().unwrap())
                    .stderr(log_file);
            });
        Sidecar {
            listen: process.listen.clone(),
            admin: process.admin.clone(),
            process,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.process.child.id()
    }

    fn config_at(&self, database: &str) -> tokio_postgres::Config {
        proxy_tests::client_config(&self.listen, USER, PASSWORD, database)
    }

    /// The last lines of the sidecar's log, for a failure message.
    fn log_tail(&self) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = all.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!("--- {}\n{}", self.log.display(), lines[from..].join("\n"))
    }
}

/// An admin API request (`proxy_tests::http`): status (0 if unreachable) and body.
async fn admin(method: &str, url: String) -> (u16, String) {
    proxy_tests::http::request(method, url, None).await
}

/// `GET` returning JSON; panics unless 200.
async fn admin_json(sidecar_admin: &str, path: &str) -> Value {
    let (code, body) = admin("GET", format!("{sidecar_admin}{path}")).await;
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Parsed `GET /metrics`: each sample line's value by its name and labels as written.
struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    async fn fetch(admin_url: &str) -> Option<Metrics> {
        let (code, body) = admin("GET", format!("{admin_url}/metrics")).await;
        if code != 200 {
            return None;
        }
        let map = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect();
        Some(Metrics(map))
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .get(&format!("doltgres_sidecar_{name}"))
            .copied()
            .unwrap_or(0.0) as u64
    }

    fn windows(&self, action: &str, result: &str) -> u64 {
        self.get(&format!(
            "windows_total{{action=\"{action}\",result=\"{result}\"}}"
        ))
    }
}

// ------------------------------------------------------------------------------------------------
// Sampling

/// One sample of the sidecar process and its metrics.
#[derive(Clone)]
struct Sample {
    t: f64,
    rss: u64,
    heap: u64,
    fds: u64,
    threads: u64,
    sessions: u64,
    commits: u64,
    write_commits: u64,
    windows_ok: u64,
    ended_57p01: u64,
    verify_ok: u64,
}

impl Sample {
    fn json(&self) -> Value {
        json!({
            "t": (self.t * 1000.0).round() / 1000.0, "rss_bytes": self.rss,
            "heap_bytes": self.heap, "fds": self.fds,
            "threads": self.threads, "sessions": self.sessions, "commits": self.commits,
            "write_commits": self.write_commits, "windows_ok": self.windows_ok,
            "ended_57p01": self.ended_57p01, "verify_ok": self.verify_ok,
        })
    }
}

/// RSS (bytes) and threads from `/proc/PID/status`, open fds from `/proc/PID/fd`; `None` once
/// the process is gone.
fn proc_figures(pid: u32) -> Option<(u64, u64, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let rss = proc_status_kb(pid, "VmRSS:") * 1024;
    let threads = proc_status_kb(pid, "Threads:");
    Some((rss, fds, threads))
}

async fn take_sample(pid: u32, admin_url: &str, t0: Instant) -> Option<Sample> {
    let (rss, fds, threads) = proc_figures(pid)?;
    let t = t0.elapsed().as_secs_f64();
    let m = Metrics::fetch(admin_url).await?;
    Some(Sample {
        t,
        rss,
        heap: m.get("heap_bytes"),
        fds,
        threads,
        sessions: m.get("sessions"),
        commits: m.get("commits_total"),
        write_commits: m.get("write_commits_total"),
        windows_ok: ACTIONS.iter().map(|a| m.windows(a, "ok")).sum(),
        ended_57p01: m.get("sessions_ended_total{reason=\"restart_without_replay\"}"),
        verify_ok: m.get("verify_total{result=\"ok\"}"),
    })
}

/// Every window record seen in `GET /backups` (which keeps the last 200), by id.
type WindowLog = Arc<Mutex<BTreeMap<u64, Value>>>;

async fn collect_windows(admin_url: &str, log: &WindowLog) {
    let (code, body) = admin("GET", format!("{admin_url}/backups")).await;
    if code != 200 {
        return;
    }
    let Ok(history) = serde_json::from_str::<Value>(&body) else {
        return;
    };
    let mut log = log.lock().unwrap();
    for w in history["windows"].as_array().into_iter().flatten() {
        // The holds that filled the history before the load are not the load's windows.
        if w["action"] == "hold" {
            continue;
        }
        if let Some(id) = w["id"].as_u64() {
            // Only what the report needs: the cut of a push or copy can be long.
            log.entry(id).or_insert_with(|| {
                json!({
                    "id": id, "action": w["action"], "trigger": w["trigger"],
                    "started_unix": w["started_unix"], "drain_ms": w["drain_ms"],
                    "stall_ms": w["stall_ms"], "duration_ms": w["duration_ms"],
                    "result": w["result"], "error": w["error"],
                })
            });
        }
    }
}

/// Least-squares slope of `y` over `t` (seconds), per minute.
fn slope_per_minute(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 3.0 {
        return 0.0;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_y)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var * 60.0 }
}

// ------------------------------------------------------------------------------------------------
// Load

/// The clients' own tallies.
#[derive(Default)]
struct Tally {
    ledger_acked: AtomicU64,
    ledger_conflicts: AtomicU64,
    ledger_57p01: AtomicU64,
    reader_ok: AtomicU64,
    reader_57p01: AtomicU64,
    pgbench_runs: AtomicU64,
    pgbench_processed: AtomicU64,
    pgbench_writes: AtomicU64,
    pgbench_reads: AtomicU64,
    pgbench_failed: AtomicU64,
    pgbench_57p01: AtomicU64,
    /// Anything else a client saw: each is a failure of the soak.
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, what: String) {
        eprintln!("soak: client error: {what}");
        self.errors.lock().unwrap().push(what);
    }
}

type Connection = JoinHandle<Result<(), tokio_postgres::Error>>;

async fn connect(
    config: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, Connection), tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    Ok((client, tokio::spawn(connection)))
}

/// The SQLSTATE behind an error: its own, or, when the connection was closed under the request,
/// the one the connection ended with (a FATAL that arrived between requests).
async fn sqlstate(e: &tokio_postgres::Error, connection: Connection) -> Option<String> {
    if let Some(code) = e.code() {
        return Some(code.code().to_string());
    }
    match tokio::time::timeout(Duration::from_secs(10), connection).await {
        Ok(Ok(Err(ended))) => ended.code().map(|c| c.code().to_string()),
        _ => None,
    }
}

fn is_conflict(code: Option<&str>, e: &tokio_postgres::Error) -> bool {
    matches!(code, Some("23505" | "40001")) || e.to_string().contains("conflict")
}

/// Appends to the ledger on a new connection per transaction until `end`.
async fn ledger_writer(config: tokio_postgres::Config, id: u64, end: Instant, tally: Arc<Tally>) {
    let sql = format!(
        "BEGIN; INSERT INTO ledger SELECT coalesce(max(seq), 0) + 1, {id} FROM ledger; COMMIT"
    );
    while Instant::now() < end {
        let (client, connection) = match connect(&config).await {
            Ok(c) => c,
            Err(e) => {
                tally.error(format!("writer {id} connect: {e:?}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Err(e) = client.batch_execute(&sql).await else {
            tally.ledger_acked.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let code = e.code().map(|c| c.code().to_string());
        if is_conflict(code.as_deref(), &e) {
            // Roll the failed block back so the sidecar counts it; then retry. A conflict found
            // at COMMIT leaves no block open (the sidecar counted the rollback already) and the
            // ROLLBACK is then a request at a boundary, which a copy window may end with 57P01.
            tally.ledger_conflicts.fetch_add(1, Ordering::SeqCst);
            if let Err(r) = client.batch_execute("ROLLBACK").await {
                drop(client);
                match sqlstate(&r, connection).await.as_deref() {
                    Some("57P01") => tally.ledger_57p01.fetch_add(1, Ordering::SeqCst),
                    code => {
                        tally.error(format!("writer {id} rollback after {e} ({code:?}): {r:?}"));
                        0
                    }
                };
            }
            continue;
        }
        drop(client);
        match sqlstate(&e, connection).await.as_deref() {
            // Ended by a copy window before the append ran (nothing of it committed): retry.
            Some("57P01") => {
                tally.ledger_57p01.fetch_add(1, Ordering::SeqCst);
            }
            code => tally.error(format!("writer {id} ({code:?}): {e:?}")),
        }
    }
}

/// A persistent session reading every `READER_PAUSE` until `end`; reconnects after the `57P01`
/// each copy window gives it.
async fn reader(config: tokio_postgres::Config, end: Instant, tally: Arc<Tally>) {
    let mut session = None;
    while Instant::now() < end {
        let (client, connection) = match session.take() {
            Some(s) => s,
            None => match connect(&config).await {
                Ok(s) => s,
                Err(e) => {
                    tally.error(format!("reader connect: {e:?}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        match client
            .simple_query("SELECT n FROM pgb WHERE client = 0")
            .await
        {
            Ok(_) => {
                tally.reader_ok.fetch_add(1, Ordering::SeqCst);
                session = Some((client, connection));
                tokio::time::sleep(READER_PAUSE).await;
            }
            Err(e) => {
                drop(client);
                match sqlstate(&e, connection).await.as_deref() {
                    Some("57P01") => tally.reader_57p01.fetch_add(1, Ordering::SeqCst),
                    code => {
                        tally.error(format!("reader ({code:?}): {e:?}"));
                        0
                    }
                };
            }
        }
    }
}

/// pgbench `-C` with the write and read scripts, run after run until `end`.
fn pgbench_loop(addr: String, dir: PathBuf, end: Instant, tally: Arc<Tally>) {
    let write = proxy_tests::pgbench::script(
        &dir,
        "write",
        "UPDATE pgb SET n = n + 1 WHERE client = :client_id;\n",
        2,
    );
    let read = proxy_tests::pgbench::script(
        &dir,
        "read",
        "SELECT n FROM pgb WHERE client = :client_id;\n",
        1,
    );
    let (host, port) = addr.rsplit_once(':').unwrap();
    loop {
        let left = end.saturating_duration_since(Instant::now()).as_secs();
        if left < 2 {
            return;
        }
        let seconds = left.min(PGBENCH_RUN_SECONDS).to_string();
        let clients = PGBENCH_CLIENTS.to_string();
        let out = Command::new("pgbench")
            .args(["-h", host, "-p", port, "-U", USER, "-n", "-C"])
            // One thread per client: with -C, a thread's connect blocks every client it runs, so
            // a client logged in just before a copy window could not send its first request
            // while another waits for the server to come back.
            .args(["-c", &clients, "-j", &clients, "-T", &seconds])
            .args(["-f", &write, "-f", &read])
            .arg("postgres")
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "30")
            .output()
            .expect("cannot run pgbench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report = proxy_tests::pgbench::parse(&stdout);
        tally.pgbench_runs.fetch_add(1, Ordering::SeqCst);
        tally
            .pgbench_processed
            .fetch_add(report.processed, Ordering::SeqCst);
        tally
            .pgbench_failed
            .fetch_add(report.failed, Ordering::SeqCst);
        match report.per_script[..] {
            [writes, reads] => {
                tally.pgbench_writes.fetch_add(writes, Ordering::SeqCst);
                tally.pgbench_reads.fetch_add(reads, Ordering::SeqCst);
            }
            _ => tally.error(format!("pgbench printed no per-script counts:\n{stdout}")),
        }
        let ended = stderr
            .lines()
            .filter(|l| l.contains("restarted for a backup"))
            .count() as u64;
        tally.pgbench_57p01.fetch_add(ended, Ordering::SeqCst);
        // Errors that are neither a window's documented 57P01 nor pgbench's report of the aborts
        // it caused (as in copy_proof.rs).
        let others: Vec<_> = stderr
            .lines()
            .filter(|l| {
                (l.contains("error") || l.contains("FATAL"))
                    && !l.contains("restarted for a backup")
                    && !l.contains("aborted")
            })
            .collect();
        if !others.is_empty() || !(out.status.success() || ended > 0) {
            tally.error(format!("pgbench ({}): {stdout}\n{stderr}", out.status));
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Checks after the load

/// Waits until the triggered rounds have settled: no write commit owed a window, every action
/// at the same count of successful windows, nothing changing for 3 s.
async fn settle(sidecar: &Sidecar) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last: Option<(Vec<u64>, Instant)> = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "windows did not settle within 300 s\n{}",
            sidecar.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(m) = Metrics::fetch(&sidecar.admin).await else {
            continue;
        };
        let key: Vec<u64> = ACTIONS
            .iter()
            .flat_map(|a| ["ok", "failed", "aborted"].map(|r| m.windows(a, r)))
            .chain([
                m.get("write_commits_since_backup"),
                m.get("verify_total{result=\"ok\"}"),
            ])
            .chain([m.get("verify_total{result=\"failed\"}")])
            .collect();
        let oks: Vec<u64> = ACTIONS.iter().map(|a| m.windows(a, "ok")).collect();
        let verified =
            m.get("verify_total{result=\"ok\"}") + m.get("verify_total{result=\"failed\"}");
        let quiet = oks.iter().all(|&n| n == oks[0])
            && m.get("write_commits_since_backup") < EVERY
            && verified >= m.windows("copy", "ok");
        match &last {
            Some((k, since)) if *k == key && quiet && since.elapsed() >= Duration::from_secs(3) => {
                return m;
            }
            Some((k, _)) if *k == key => {}
            _ => last = Some((key, Instant::now())),
        }
    }
}

/// Runs one operator window; retries while a triggered one is open (409).
async fn operator_window(sidecar: &Sidecar, action: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (code, body) =
            admin("POST", format!("{}/backups?action={action}", sidecar.admin)).await;
        if code == 200 {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(
            code == 409 && Instant::now() < deadline,
            "{action}: {code} {body}\n{}",
            sidecar.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `doltgres-sidecar restore …` into `to`.
fn restore(args: &[&str], to: &Path) -> Result<(), String> {
    let out = Command::new(install::sidecar_binary())
        .arg("restore")
        .args(args)
        .arg("--to")
        .arg(to)
        .arg("--doltgres")
        .arg(install::doltgres_binary())
        .env("DOLTGRES_PASSWORD", PASSWORD)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "restore {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The ledger's (rows after row 0, max seq) and pgb's sum, read from a scratch Doltgres on a
/// restored directory.
async fn restored_counts(dir: &Path, database: &str) -> Result<(u64, u64, u64), VerifyError> {
    let config = ScratchConfig {
        binary: install::doltgres_binary().to_path_buf(),
        user: USER.into(),
        password: PASSWORD.into(),
        ready_timeout: Duration::from_secs(120),
    };
    let scratch = Scratch::start(&config, dir, false).await?;
    let counts = match scratch.connect(database).await {
        Ok(client) => Ok(read_counts(&client).await),
        Err(e) => Err(e),
    };
    scratch.finish().await;
    counts
}

async fn read_counts(client: &tokio_postgres::Client) -> (u64, u64, u64) {
    let one = |sql: &'static str| async move {
        let v = verify::column(client, sql).await.unwrap();
        v[0].parse::<u64>().unwrap()
    };
    (
        one("SELECT count(*) FROM ledger WHERE seq > 0").await,
        one("SELECT coalesce(max(seq), 0) FROM ledger").await,
        one("SELECT coalesce(sum(n), 0) FROM pgb").await,
    )
}

/// Whether the sources the sidecar is built from differ from the commit (a shared work tree).
fn sources_modified() -> bool {
    Command::new("git")
        .args([
            "status",
            "--porcelain",
            "--",
            "src",
            "Cargo.toml",
            "Cargo.lock",
        ])
        .current_dir(repo_root())
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------

/// One soak at a time: two would share the machine's cores and measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_load_with_every_window_action() {
    let _one = ONE_AT_A_TIME.lock().await;
    run_soak(Settings::from_env(), None).await.assert_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leak_check_catches_a_leak_per_session() {
    // The same soak, shorter, against a sidecar whose every session leaks a read buffer's
    // worth (a debug build's test hook): the growth check must fail, and the run must have had
    // enough transactions after warm-up for the check to mean anything.
    let _one = ONE_AT_A_TIME.lock().await;
    let settings = Settings {
        seconds: 60,
        sample_every: Duration::from_secs(1),
        report: None,
    };
    let checks = run_soak(settings, Some(LEAK_PER_SESSION)).await;
    assert!(
        checks.passed(ENOUGH_TRANSACTIONS) == Some(true),
        "{:#?}",
        checks.0
    );
    assert!(
        checks.passed(GROWTH_CHECK) == Some(false),
        "a leak of {LEAK_PER_SESSION} bytes per session went unnoticed: {:#?}",
        checks.0
    );
}

/// The name of the leak check, and of the check that the run could see a leak.
const GROWTH_CHECK: &str = "heap growth after warm-up <= what is legitimately kept";
const ENOUGH_TRANSACTIONS: &str =
    "transactions after warm-up enough for a 2 KiB leak per session to pass the bound";

/// Runs the soak and returns its checks; with `leak`, against a sidecar whose sessions each
/// leak that many bytes, and without the final restores (only the leak check matters).
async fn run_soak(settings: Settings, leak: Option<u64>) -> Checks {
    // What the sidecar is built from (the work tree may be shared and change during the run).
    let (commit, modified) = (git_commit(), sources_modified());
    let mut dir = tempfile::Builder::new()
        .prefix("dgs-soak-")
        .tempdir()
        .unwrap();
    if std::env::var_os("SOAK_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("soak: keeping {}", dir.path().display());
    }
    let env: Vec<(&str, String)> = leak
        .map(|bytes| ("DOLTGRES_SIDECAR_DEBUG_LEAK_BYTES", bytes.to_string()))
        .into_iter()
        .collect();
    let sidecar = Sidecar::start(dir.path(), &env);
    let pid = sidecar.pid();
    let setup = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match proxy_tests::server_connect(&sidecar.config_at("postgres")).await {
                Ok(client) => break client,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "the sidecar never served: {e}\n{}",
                    sidecar.log_tail()
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    ledger::create(&setup).await;
    exec(
        &setup,
        "CREATE TABLE pgb (client INT PRIMARY KEY, n BIGINT NOT NULL)",
    )
    .await;
    exec(
        &setup,
        &format!(
            "INSERT INTO pgb SELECT generate_series(0, {}), 0",
            PGBENCH_CLIENTS - 1
        ),
    )
    .await;
    drop(setup);
    fill_history(&sidecar).await;
    // The counters' baseline: everything after it is the load's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = Metrics::fetch(&sidecar.admin).await.unwrap();

    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(settings.seconds);
    let started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The first sample: the idle process, before any load.
    let idle = take_sample(pid, &sidecar.admin, t0)
        .await
        .expect("cannot sample the sidecar");
    let samples = Arc::new(Mutex::new(vec![idle]));
    let windows: WindowLog = Arc::default();
    let sampler = {
        let (samples, windows, admin_url) =
            (samples.clone(), windows.clone(), sidecar.admin.clone());
        let every = settings.sample_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut last_collect: Option<Instant> = None;
            loop {
                tick.tick().await;
                if let Some(s) = take_sample(pid, &admin_url, t0).await {
                    samples.lock().unwrap().push(s);
                }
                // `GET /backups` keeps the last 200 windows, several minutes' worth here.
                if last_collect.is_none_or(|t| t.elapsed() >= COLLECT_EVERY) {
                    collect_windows(&admin_url, &windows).await;
                    last_collect = Some(Instant::now());
                }
            }
        })
    };

    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    for id in 1..=LEDGER_WRITERS {
        let config = sidecar.config_at("postgres");
        load.push(tokio::spawn(ledger_writer(config, id, end, tally.clone())));
    }
    load.push(tokio::spawn(reader(
        sidecar.config_at("postgres"),
        end,
        tally.clone(),
    )));
    let pgbench = {
        let (addr, scripts, tally) = (
            sidecar.listen.clone(),
            dir.path().to_path_buf(),
            tally.clone(),
        );
        tokio::task::spawn_blocking(move || pgbench_loop(addr, scripts, end, tally))
    };
    let load_deadline = end + Duration::from_secs(120);
    for task in load {
        tokio::time::timeout_at(load_deadline.into(), task)
            .await
            .expect("a load task did not stop")
            .unwrap();
    }
    tokio::time::timeout_at(load_deadline.into(), pgbench)
        .await
        .expect("pgbench did not stop")
        .unwrap();
    let load_seconds = t0.elapsed().as_secs_f64();

    // Triggered rounds finish; then one more sample, and the window log is complete.
    let settled = settle(&sidecar).await;
    if let Some(s) = take_sample(pid, &sidecar.admin, t0).await {
        samples.lock().unwrap().push(s);
    }
    collect_windows(&sidecar.admin, &windows).await;
    sampler.abort();
    let samples = samples.lock().unwrap().clone();
    let windows: Vec<Value> = windows.lock().unwrap().values().cloned().collect();

    // Counters, against the clients' tallies and the tables.
    let t = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let acked = t(&tally.ledger_acked);
    let pg_writes = t(&tally.pgbench_writes);
    let delta = |name: &str| settled.get(name) - base.get(name);
    let commits = delta("commits_total");
    let rollbacks = delta("rollbacks_total");
    let write_commits = delta("write_commits_total");
    let check = proxy_tests::server_connect(&sidecar.config_at("postgres"))
        .await
        .unwrap();
    let (rows, max_seq, pgb_sum) = read_counts(&check).await;
    drop(check);

    // Windows by action and result.
    let mut by_action = serde_json::Map::new();
    for a in ACTIONS {
        let durations: Vec<u64> = windows
            .iter()
            .filter(|w| w["action"] == a && w["result"] == "ok")
            .filter_map(|w| w["duration_ms"].as_u64())
            .collect();
        let stalls: Vec<u64> = windows
            .iter()
            .filter(|w| w["action"] == a && w["result"] == "ok")
            .filter_map(|w| w["stall_ms"].as_u64())
            .collect();
        by_action.insert(
            a.into(),
            json!({
                "ok": settled.windows(a, "ok"), "failed": settled.windows(a, "failed"),
                "aborted": settled.windows(a, "aborted"),
                "stall_ms": summary(&stalls), "duration_ms": summary(&durations),
            }),
        );
    }
    let rounds = settled.windows("copy", "ok");
    let snapshots_run = std::fs::read_to_string(dir.path().join("snapshots.log"))
        .unwrap_or_default()
        .lines()
        .count() as u64;
    let verify_ok = settled.get("verify_total{result=\"ok\"}");
    let verify_failed = settled.get("verify_total{result=\"failed\"}");
    let ended_57p01 = settled.get("sessions_ended_total{reason=\"restart_without_replay\"}");
    let client_57p01 = t(&tally.ledger_57p01) + t(&tally.reader_57p01) + t(&tally.pgbench_57p01);

    // Slopes over the load after its warm-up (the samples taken while windows settle, with no
    // load, would pull them down).
    let warm = samples
        .iter()
        .filter(|s| s.t >= WARMUP_FRACTION * load_seconds && s.t <= load_seconds)
        .collect::<Vec<_>>();
    let rss_slope = slope_per_minute(&warm.iter().map(|s| (s.t, s.rss as f64)).collect::<Vec<_>>());
    // What the fitted line grows by over the samples after warm-up.
    let warm_span = match (warm.first(), warm.last()) {
        (Some(a), Some(b)) => b.t - a.t,
        _ => 0.0,
    };
    let rss_growth = rss_slope * warm_span / 60.0;
    let heap_slope = slope_per_minute(
        &warm
            .iter()
            .map(|s| (s.t, s.heap as f64))
            .collect::<Vec<_>>(),
    );
    let heap_growth = heap_slope * warm_span / 60.0;
    let warm_commits = match (warm.first(), warm.last()) {
        (Some(a), Some(b)) => b.commits.saturating_sub(a.commits),
        _ => 0,
    };
    let fd_slope = slope_per_minute(&warm.iter().map(|s| (s.t, s.fds as f64)).collect::<Vec<_>>());
    let thread_slope = slope_per_minute(
        &warm
            .iter()
            .map(|s| (s.t, s.threads as f64))
            .collect::<Vec<_>>(),
    );
    let transactions = acked + t(&tally.pgbench_processed) + t(&tally.reader_ok);
    let errors = tally.errors.lock().unwrap().clone();
    let first = samples.first().cloned();
    let last = samples.last().cloned();
    let figure = |f: fn(&Sample) -> u64| {
        json!({
            "start": first.as_ref().map(f), "end": last.as_ref().map(f),
            "min": samples.iter().map(f).min(), "max": samples.iter().map(f).max(),
            "after_warmup_start": warm.first().map(|s| f(s)),
        })
    };
    let report = json!({
        "checks": [],
        "meta": {
            "commit": commit,
            "sources_modified": modified,
            "auth": auth_mode(),
            "started_unix": started_unix,
            "seconds_requested": settings.seconds,
            "load_seconds": load_seconds,
            "sample_every_s": settings.sample_every.as_secs(),
            "warmup_fraction": WARMUP_FRACTION,
            "every_write_commits": EVERY,
            "ledger_writers": LEDGER_WRITERS,
            "pgbench_clients": PGBENCH_CLIENTS,
            "sidecar_binary": install::sidecar_binary().display().to_string(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "bounds": {"heap_growth_bytes": GROWTH_MAX, "fds_per_min": FD_SLOPE_MAX},
            "debug_leak_per_session": leak,
        },
        "load": {
            "transactions": transactions,
            "tps": transactions as f64 / load_seconds,
            "ledger_appends": acked, "ledger_conflicts": t(&tally.ledger_conflicts),
            "pgbench_runs": t(&tally.pgbench_runs),
            "pgbench_processed": t(&tally.pgbench_processed),
            "pgbench_writes": pg_writes, "pgbench_reads": t(&tally.pgbench_reads),
            "pgbench_failed": t(&tally.pgbench_failed),
            "reader_queries": t(&tally.reader_ok),
            "write_commits": write_commits,
        },
        "counters": {
            "commits": commits, "rollbacks": rollbacks, "write_commits": write_commits,
            "ledger_rows": rows, "ledger_max_seq": max_seq, "pgb_sum": pgb_sum,
        },
        "windows": {
            "rounds": rounds, "by_action": by_action, "snapshots_run": snapshots_run,
            "verify_ok": verify_ok, "verify_failed": verify_failed,
            "write_commits_since_backup": settled.get("write_commits_since_backup"),
        },
        "process": {
            "rss_bytes": figure(|s| s.rss), "fds": figure(|s| s.fds),
            "threads": figure(|s| s.threads), "sessions": figure(|s| s.sessions),
            "rss_slope_bytes_per_min": rss_slope, "fd_slope_per_min": fd_slope,
            "rss_growth_after_warmup_bytes": rss_growth,
            "heap_bytes": figure(|s| s.heap), "heap_slope_bytes_per_min": heap_slope,
            "heap_growth_after_warmup_bytes": heap_growth,
            "commits_after_warmup": warm_commits,
            "thread_slope_per_min": thread_slope,
            "rss_slope_bytes_per_txn": rss_slope / (transactions as f64 / load_seconds * 60.0),
        },
        "errors": {
            "documented_57p01": {
                "ledger": t(&tally.ledger_57p01), "reader": t(&tally.reader_57p01),
                "pgbench": t(&tally.pgbench_57p01),
                "sessions_ended_restart_without_replay": ended_57p01,
            },
            "other": errors,
        },
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
        "windows_log": windows,
    });
    eprintln!(
        "soak: {:.0} s, {transactions} transactions ({acked} appends, {} pgbench, {} reader), \
         {rounds} rounds of windows, RSS {:.1} -> {:.1} MB (slope {:.0} KB/min), heap in use \
         {:.1} -> {:.1} MB (slope {:.0} KB/min), fds {} -> {} \
         (slope {fd_slope:.2}/min), threads {} -> {}, 57P01 seen {client_57p01} (ended \
         {ended_57p01}), other errors {}",
        load_seconds,
        t(&tally.pgbench_processed),
        t(&tally.reader_ok),
        first.as_ref().map_or(0.0, |s| s.rss as f64 / 1e6),
        last.as_ref().map_or(0.0, |s| s.rss as f64 / 1e6),
        rss_slope / 1024.0,
        first.as_ref().map_or(0.0, |s| s.heap as f64 / 1e6),
        last.as_ref().map_or(0.0, |s| s.heap as f64 / 1e6),
        heap_slope / 1024.0,
        first.as_ref().map_or(0, |s| s.fds),
        last.as_ref().map_or(0, |s| s.fds),
        first.as_ref().map_or(0, |s| s.threads),
        last.as_ref().map_or(0, |s| s.threads),
        errors.len(),
    );
    let write_report = |report: &Value| {
        if let Some(path) = &settings.report {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, serde_json::to_string_pretty(report).unwrap()).unwrap();
            eprintln!("soak: wrote {}", path.display());
        }
    };
    // Every pass criterion, recorded in the report before any is asserted, so a failed run
    // leaves its figures and says which criterion failed.
    let mut checks = Checks::default();
    checks.add(
        "no client error but the documented 57P01",
        errors.is_empty(),
        format!("{} others", errors.len()),
    );
    checks.eq("pgbench failed transactions", t(&tally.pgbench_failed), 0);
    checks.eq("ledger rows = acknowledged appends", rows, acked);
    checks.eq(
        "ledger max(seq) = acknowledged appends (no gap)",
        max_seq,
        acked,
    );
    // pgbench's per-script counts can miss a write the server committed (one per client and
    // run at most: in flight when the run's -T ended), while its total and the proxy's counts
    // agree (checked below); the database is the truth the proxy's counts are held to.
    let uncounted = PGBENCH_CLIENTS * t(&tally.pgbench_runs);
    checks.add(
        "pgbench writes <= pgb sum <= pgbench writes + clients x runs",
        pg_writes <= pgb_sum && pgb_sum <= pg_writes + uncounted,
        format!("{pgb_sum}, pgbench counted {pg_writes}, at most {uncounted} more"),
    );
    checks.eq(
        "commits_total = clients' transactions",
        commits,
        transactions,
    );
    checks.eq(
        "write_commits_total = appends + pgb sum",
        write_commits,
        acked + pgb_sum,
    );
    checks.eq(
        "rollbacks_total = write conflicts",
        rollbacks,
        t(&tally.ledger_conflicts),
    );
    checks.add(
        "57P01 seen by clients <= sessions the sidecar ended",
        client_57p01 <= ended_57p01,
        format!("{client_57p01} <= {ended_57p01}"),
    );
    for a in ACTIONS {
        checks.eq(
            &format!("{a} windows failed"),
            settled.windows(a, "failed"),
            0,
        );
        checks.eq(
            &format!("{a} windows aborted"),
            settled.windows(a, "aborted"),
            0,
        );
        checks.eq(
            &format!("{a} windows ok = rounds"),
            settled.windows(a, "ok"),
            rounds,
        );
    }
    checks.add("at least 2 rounds", rounds >= 2, rounds.to_string());
    let all_writes = settled.get("write_commits_total");
    checks.add(
        "rounds x every_write_commits <= write commits",
        rounds * EVERY <= all_writes,
        format!("{rounds} x {EVERY} <= {all_writes}"),
    );
    let owed = settled.get("write_commits_since_backup");
    checks.add(
        "every due round served",
        owed < EVERY,
        format!("{owed} owed < {EVERY}"),
    );
    let odd = windows
        .iter()
        .filter(|w| w["trigger"] != "commits" || w["result"] != "ok")
        .count();
    checks.eq("windows not triggered by commits or not ok", odd as u64, 0);
    checks.eq("snapshot commands run = rounds", snapshots_run, rounds);
    checks.eq("copies failing verification", verify_failed, 0);
    checks.eq("copies verified = rounds", verify_ok, rounds);
    let listed = admin_json(&sidecar.admin, "/backups").await;
    let unverified = listed["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verify"] != "ok")
        .count();
    checks.eq("listed copies not verified ok", unverified as u64, 0);
    checks.add(
        "at least 10 samples after warm-up",
        warm.len() >= 10,
        warm.len().to_string(),
    );
    checks.add(
        "heap_bytes exported in every sample",
        !samples.is_empty() && samples.iter().all(|s| s.heap > 0),
        format!("{} samples", samples.len()),
    );
    checks.add(
        GROWTH_CHECK,
        heap_growth <= GROWTH_MAX,
        format!(
            "{:.0} KB (slope {:.0} KB/min over {warm_span:.0} s) <= {:.0} KB",
            heap_growth / 1024.0,
            heap_slope / 1024.0,
            GROWTH_MAX / 1024.0
        ),
    );
    checks.add(
        ENOUGH_TRANSACTIONS,
        warm_commits as f64 * 2048.0 > 2.0 * GROWTH_MAX,
        format!(
            "{warm_commits} commits x 2 KiB > 2 x {:.0} KB",
            GROWTH_MAX / 1024.0
        ),
    );
    checks.add(
        "fd slope after warm-up < bound",
        fd_slope < FD_SLOPE_MAX,
        format!("{fd_slope:.2} < {FD_SLOPE_MAX}/min"),
    );
    // With no client left, the process is back to its idle descriptors.
    let (idle_before, idle_after) = (
        first.as_ref().map_or(0, |s| s.fds),
        last.as_ref().map_or(0, |s| s.fds),
    );
    checks.add(
        "open fds with no client: after the load <= before + margin",
        idle_after <= idle_before + IDLE_FD_MARGIN,
        format!("{idle_after} <= {idle_before} + {IDLE_FD_MARGIN}"),
    );
    checks.eq(
        "sessions after the load",
        last.as_ref().map_or(0, |s| s.sessions),
        0,
    );
    let mut report = report;
    report["checks"] = checks.json();
    write_report(&report);
    if leak.is_some() {
        return checks;
    }

    // Fresh push, sync and copy of the final state restore to the whole ledger.
    for action in ["push", "sync", "copy"] {
        let record = operator_window(&sidecar, action).await;
        checks.add(
            &format!("final {action} window ok"),
            record["result"] == "ok",
            format!("{} {}", record["result"], record["error"]),
        );
    }
    let d = dir.path();
    let catalog = d.join("backups");
    // What the catalog (keep_last entries, sharing files by hard links) and the server's data
    // take on disk at the end, each file counted once.
    report["disk"] = json!({
        "catalog_bytes": unique_bytes(&catalog),
        "catalog_keep_last": 4,
        "server_data_bytes": unique_bytes(&d.join("doltgres")),
    });
    let latest = listed_latest(&sidecar).await;
    let remote = format!("file://{}/remote/postgres", d.display());
    let sync = format!("file://{}/sync/postgres", d.display());
    let restores = [
        (
            "copy",
            vec!["--from", &latest, "--catalog", catalog.to_str().unwrap()],
            "postgres",
        ),
        (
            "push",
            vec!["--from", &remote, "--database", "soak"],
            "soak",
        ),
        ("sync", vec!["--from", &sync, "--database", "soak"], "soak"),
    ];
    let expected = (acked, acked, pgb_sum);
    for (kind, args, database) in restores {
        let to = d.join(format!("restored-{kind}"));
        let found = match restore(&args, &to) {
            Ok(()) => restored_counts(&to, database)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        checks.add(
            &format!("restored {kind} = (appends, max seq, pgb sum)"),
            found.as_ref() == Ok(&expected),
            format!("{found:?}, expected {expected:?}"),
        );
    }
    report["checks"] = checks.json();
    write_report(&report);
    drop(sidecar);
    checks
}

/// Bytes of the regular files under `root`, a file with several links counted once.
fn unique_bytes(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}

/// Fills the window history with operator holds, so that the load's windows only replace
/// records and what the history keeps no longer grows (see [`GROWTH_MAX`]).
async fn fill_history(sidecar: &Sidecar) {
    for _ in 0..HISTORY {
        let (code, body) = admin(
            "POST",
            format!("{}/quiesce?ttl=1m&timeout=5s", sidecar.admin),
        )
        .await;
        assert_eq!(code, 200, "hold: {body}");
        let (code, body) = admin("POST", format!("{}/resume", sidecar.admin)).await;
        assert_eq!(code, 200, "resume: {body}");
    }
}

/// The pass criteria, each with what was found.
#[derive(Default)]
struct Checks(Vec<(String, bool, String)>);

impl Checks {
    fn add(&mut self, name: &str, ok: bool, found: String) {
        self.0.push((name.to_string(), ok, found));
    }

    fn eq(&mut self, name: &str, found: u64, expected: u64) {
        self.add(
            name,
            found == expected,
            format!("{found}, expected {expected}"),
        );
    }

    fn json(&self) -> Value {
        self.0
            .iter()
            .map(|(name, ok, found)| json!({"check": name, "ok": ok, "found": found}))
            .collect()
    }

    /// Whether the check of this name passed (`None` if there is none).
    fn passed(&self, name: &str) -> Option<bool> {
        self.0.iter().find(|c| c.0 == name).map(|c| c.1)
    }

    fn assert_all(&self) {
        let failed: Vec<_> = self.0.iter().filter(|c| !c.1).collect();
        assert!(failed.is_empty(), "soak criteria failed: {failed:#?}");
    }
}

/// The id of the newest copy entry, once it verified.
async fn listed_latest(sidecar: &Sidecar) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed = admin_json(&sidecar.admin, "/backups").await;
        let newest = listed["copies"]
            .as_array()
            .and_then(|c| {
                c.iter().max_by(|a, b| {
                    a["created_unix"]
                        .as_f64()
                        .partial_cmp(&b["created_unix"].as_f64())
                        .unwrap()
                })
            })
            .cloned()
            .unwrap_or_default();
        match newest["verify"].as_str() {
            Some("ok") => return newest["id"].as_str().unwrap().to_string(),
            Some(other) => panic!("the final copy: {other} {}", newest["verify_detail"]),
            None => {}
        }
        assert!(Instant::now() < deadline, "the final copy was not verified");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Median and maximum, for the report.
fn summary(values: &[u64]) -> Value {
    let mut v = values.to_vec();
    v.sort_unstable();
    json!({
        "n": v.len(),
        "median": v.get(v.len() / 2),
        "p90": v.get(v.len() * 9 / 10),
        "max": v.last(),
    })
}
