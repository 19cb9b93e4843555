//! A Doltgres server run as the sidecar's child process: its files laid out under one directory,
//! telemetry set from the config, a listener on a loopback port and no unix socket (a socket
//! path inside a long directory name passes Linux's 108-byte limit, and nothing here uses one),
//! its log lines forwarded into the sidecar's log, stopped with SIGTERM and, past
//! `stop_timeout`, SIGKILL. The sidecar's own server holds the directory's lock
//! ([`crate::dirlock`]) for as long as the sidecar runs it, so `restore` cannot replace it and no
//! second sidecar starts on it. The same type starts the scratch servers that `restore` and
//! `verify` use, on other directories and ports.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::ControlError;
use crate::dirlock::DirLock;

/// How to run one Doltgres.
#[derive(Debug, Clone)]
pub struct ManagedSpec {
    pub binary: PathBuf,
    /// Holds `data/`, `work/`, `root/` and `config.yaml`.
    pub dir: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub telemetry: bool,
    pub log_level: String,
    pub stop_timeout: Duration,
    /// Hold the directory's lock while this process runs the server (the sidecar's own server;
    /// not a scratch server).
    pub lock_dir: bool,
}

impl ManagedSpec {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The running child: its pid and a channel that says when it exited.
struct Running {
    pid: i32,
    exited: watch::Receiver<Option<ExitStatus>>,
    /// Stops this process's watch over the server (a successor adopted it).
    release: CancellationToken,
    /// Duplicates of the read ends of its stdout and stderr, for a successor.
    outputs: Vec<OwnedFd>,
}

/// How often an adopted server (not this process's child) is checked for having exited.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// The Dolt setting that chooses how pushes, syncs and pulls write table files.
const PULL_STREAMER: &str = "DOLT_ARCHIVE_PULL_STREAMER";

/// How many of the server's last log lines are kept, to explain a server that exits at start.
const LAST_LINES: usize = 20;

/// The server's last log lines.
type LastLines = std::sync::Arc<Mutex<std::collections::VecDeque<String>>>;

fn start_error(e: std::io::Error) -> ControlError {
    ControlError::Start(format!("the server's output: {e}"))
}

/// Whether process `pid` runs (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold anything.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// One managed Doltgres.
pub struct ManagedServer {
    pub spec: ManagedSpec,
    running: Mutex<Option<Running>>,
    /// The directory's lock, once taken (with `spec.lock_dir`).
    dir_lock: std::sync::Arc<Mutex<Option<DirLock>>>,
    last_lines: LastLines,
}

impl ManagedServer {
    /// A server for `spec`; its directory is made absolute (the process runs elsewhere).
    pub fn new(mut spec: ManagedSpec) -> ManagedServer {
        if let Ok(dir) = std::path::absolute(&spec.dir) {
            spec.dir = dir;
        }
        ManagedServer {
            spec,
            running: Mutex::new(None),
            dir_lock: Default::default(),
            last_lines: Default::default(),
        }
    }

    /// Takes the directory's lock if this server holds one and does not have it yet.
    fn lock_dir(&self) -> Result<(), ControlError> {
        let mut lock = self.dir_lock.lock().unwrap();
        if self.spec.lock_dir && lock.is_none() {
            *lock = Some(
                DirLock::take(&self.spec.dir, "run")
                    .map_err(|e| ControlError::Start(e.to_string()))?,
            );
        }
        Ok(())
    }

    /// The server's last log lines, oldest first.
    pub fn last_lines(&self) -> Vec<String> {
        self.last_lines.lock().unwrap().iter().cloned().collect()
    }

    /// Why the server exited while it was starting: its status and last log lines.
    pub fn exit_report(&self, status: ExitStatus) -> String {
        let lines = self.last_lines();
        if lines.is_empty() {
            format!("doltgres exited ({status}) without a log line")
        } else {
            format!(
                "doltgres exited ({status}); its last log lines:\n  {}",
                lines.join("\n  ")
            )
        }
    }

    /// Lays out the directory and starts the process. Returns once it is spawned; the caller
    /// waits for logins to succeed.
    pub async fn start(&self) -> Result<(), ControlError> {
        let spec = &self.spec;
        self.lock_dir()?;
        if spec.dir.join(crate::dirlock::RESTORING_MARKER).exists() {
            return Err(ControlError::Start(format!(
                "{} is incomplete: a restore into it was interrupted; run the restore again",
                spec.dir.display()
            )));
        }
        stop_leftover(spec).await?;
        prepare(spec).map_err(|e| ControlError::Start(format!("{}: {e}", spec.dir.display())))?;
        let config = spec.dir.join("config.yaml");
        let mut child = tokio::process::Command::new(&spec.binary)
            .arg("--config")
            .arg(&config)
            .current_dir(spec.work_dir())
            .env("DOLT_ROOT_PATH", spec.root_dir())
            .env("HOME", spec.root_dir())
            .env("DOLTGRES_USER", &spec.user)
            .env("DOLTGRES_PASSWORD", &spec.password)
            // Dolt's classic table-file writer for pushes, syncs and pulls instead of its archive
            // writer, whose compression competes with clients for CPU during a window (measured:
            // benches/results/pull-streamer/); a value the environment sets wins.
            .env(
                PULL_STREAMER,
                std::env::var(PULL_STREAMER).unwrap_or_else(|_| "0".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ControlError::Start(format!("cannot run {}: {e}", spec.binary.display()))
            })?;
        let pid = child.id().unwrap_or_default() as i32;
        let span = info_span!("doltgres", pid, port = spec.port);
        let release = CancellationToken::new();
        let mut outputs = Vec::new();
        self.last_lines.lock().unwrap().clear();
        if let Some(out) = child.stdout.take() {
            outputs.push(out.as_fd().try_clone_to_owned().map_err(start_error)?);
            let forward = forward_lines(out, release.clone(), self.last_lines.clone());
            tokio::spawn(forward.instrument(span.clone()));
        }
        if let Some(err) = child.stderr.take() {
            outputs.push(err.as_fd().try_clone_to_owned().map_err(start_error)?);
            let forward = forward_lines(err, release.clone(), self.last_lines.clone());
            tokio::spawn(forward.instrument(span.clone()));
        }
        let (tx, exited) = watch::channel(None);
        let released = release.clone();
        tokio::spawn(
            async move {
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = released.cancelled() => {
                        // A successor process adopted the server: it must outlive this process
                        // (the handle would kill it when dropped).
                        std::mem::forget(child);
                        return;
                    }
                };
                match &status {
                    Ok(s) => info!(status = %s, "doltgres exited"),
                    Err(e) => warn!(error = %e, "cannot wait for doltgres"),
                }
                let _ = tx.send(status.ok().or(Some(ExitStatus::default())));
            }
            .instrument(span),
        );
        info!(pid, addr = %spec.addr(), dir = %spec.dir.display(), "doltgres started");
        *self.running.lock().unwrap() = Some(Running {
            pid,
            exited,
            release,
            outputs,
        });
        Ok(())
    }

    /// The running server's pid and duplicates of its output pipes' read ends, for a successor
    /// to adopt.
    pub fn handover_parts(&self) -> Option<(i32, Vec<OwnedFd>)> {
        let running = self.running.lock().unwrap();
        let running = running.as_ref()?;
        let outputs = running
            .outputs
            .iter()
            .map(|fd| fd.try_clone())
            .collect::<std::io::Result<_>>()
            .ok()?;
        Some((running.pid, outputs))
    }

    /// Leaves the running server to a successor: this process stops reading its output,
    /// stops watching it and will not stop it.
    pub fn release(&self) {
        if let Some(running) = self.running.lock().unwrap().take() {
            running.release.cancel();
            info!(pid = running.pid, "doltgres left running for the successor");
        }
    }

    /// Takes over a server a predecessor process started: its pid, and the read ends of its
    /// output pipes. It is not this process's child, so its exit is seen by polling `/proc`.
    pub fn adopt(&self, pid: i32, outputs: Vec<OwnedFd>) -> Result<(), ControlError> {
        let span = info_span!("doltgres", pid, port = self.spec.port);
        for fd in outputs {
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).map_err(start_error)?;
            let forward = forward_lines(pipe, CancellationToken::new(), self.last_lines.clone());
            tokio::spawn(forward.instrument(span.clone()));
        }
        if self.spec.lock_dir {
            // The predecessor holds the directory's lock until it exits (the server's own
            // database locks cover the directory meanwhile): take it then.
            tokio::spawn(take_when_free(self.spec.dir.clone(), self.dir_lock.clone()));
        }
        let (tx, exited) = watch::channel(None);
        tokio::spawn(
            async move {
                while alive(pid) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                info!("doltgres exited");
                let _ = tx.send(Some(ExitStatus::default()));
            }
            .instrument(span),
        );
        info!(pid, addr = %self.spec.addr(), "doltgres adopted from the previous process");
        *self.running.lock().unwrap() = Some(Running {
            pid,
            exited,
            release: CancellationToken::new(),
            outputs: Vec::new(),
        });
        Ok(())
    }

    /// A receiver that says when the current process exits (`None` if none runs).
    pub fn exit_watch(&self) -> Option<watch::Receiver<Option<ExitStatus>>> {
        self.running
            .lock()
            .unwrap()
            .as_ref()
            .map(|r| r.exited.clone())
    }

    /// Stops the process: SIGTERM, then SIGKILL after `stop_timeout`. Returns once it exited.
    pub async fn stop(&self) -> Result<(), ControlError> {
        let Some(Running {
            pid, mut exited, ..
        }) = self.running.lock().unwrap().take()
        else {
            return Ok(());
        };
        if exited.borrow().is_some() {
            return Ok(());
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let wait = exited.wait_for(Option::is_some);
        if tokio::time::timeout(self.spec.stop_timeout, wait)
            .await
            .is_ok()
        {
            return Ok(());
        }
        warn!(pid, timeout = ?self.spec.stop_timeout, "doltgres did not stop: killing it");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let wait = exited.wait_for(Option::is_some);
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .map(|_| ())
            .map_err(|_| ControlError::Stop(format!("doltgres {pid} survived SIGKILL")))
    }

    /// The pid of the running process, if any.
    pub fn pid(&self) -> Option<i32> {
        self.running.lock().unwrap().as_ref().map(|r| r.pid)
    }
}

/// Stops a Doltgres still running on this directory from an earlier sidecar (one killed with
/// SIGKILL leaves its child behind, holding the databases' locks): the pid comes from
/// `data/.dolt/sql-server.info`, and is only signalled if that process is a doltgres.
async fn stop_leftover(spec: &ManagedSpec) -> Result<(), ControlError> {
    let info = spec.data_dir().join(".dolt/sql-server.info");
    let Some(pid) = std::fs::read_to_string(&info)
        .ok()
        .and_then(|text| text.split(':').next()?.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    let is_doltgres = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("doltgres"))
    };
    if !is_doltgres(pid) {
        return Ok(());
    }
    warn!(
        pid,
        "a doltgres from an earlier run still holds the data directory: stopping it"
    );
    let deadline = tokio::time::Instant::now() + spec.stop_timeout;
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    while is_doltgres(pid) {
        if tokio::time::Instant::now() > deadline {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if tokio::time::Instant::now() > deadline + Duration::from_secs(10) {
            return Err(ControlError::Start(format!(
                "doltgres {pid} from an earlier run survives"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Takes the directory's lock once its holder (a predecessor process) has let it go.
async fn take_when_free(dir: PathBuf, slot: std::sync::Arc<Mutex<Option<DirLock>>>) {
    let mut waited = Duration::ZERO;
    loop {
        if slot.lock().unwrap().is_some() {
            return;
        }
        match DirLock::take(&dir, "run") {
            Ok(lock) => {
                *slot.lock().unwrap() = Some(lock);
                return;
            }
            Err(e) if waited == Duration::from_secs(60) => {
                warn!(error = %e, "still waiting for the server directory's lock")
            }
            Err(_) => {}
        }
        tokio::time::sleep(ADOPTED_POLL).await;
        waited += ADOPTED_POLL;
    }
}

/// Creates the directories and writes `config.yaml` and the global config (telemetry).
fn prepare(spec: &ManagedSpec) -> std::io::Result<()> {
    for dir in [
        spec.data_dir(),
        spec.work_dir(),
        spec.root_dir().join(".dolt"),
    ] {
        crate::catalog::copy_tree::private_dir_all(&dir)?;
    }
    let dir = &spec.dir;
    // No `socket`: with a host other than `localhost` Doltgres then opens no unix socket.
    let yaml = format!(
        "log_level: {level}\nlistener:\n  host: 127.0.0.1\n  port: {port}\ndata_dir: {data}\n",
        level = spec.log_level,
        port = spec.port,
        data = dir.join("data").display(),
    );
    std::fs::write(dir.join("config.yaml"), yaml)?;
    // Left by earlier versions, which gave the server a socket in its directory.
    let _ = std::fs::remove_file(dir.join(format!(".s.PGSQL.{}", spec.port)));
    set_telemetry(
        &spec.root_dir().join(".dolt/config_global.json"),
        spec.telemetry,
    )
}

/// Sets `metrics.disabled` in Doltgres' global config, keeping whatever else it holds.
fn set_telemetry(path: &Path, telemetry: bool) -> std::io::Result<()> {
    let mut config: serde_json::Map<String, serde_json::Value> = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    config.insert(
        "metrics.disabled".into(),
        serde_json::Value::String((!telemetry).to_string()),
    );
    std::fs::write(path, serde_json::to_vec(&config)?)
}

/// Forwards the server's output into the sidecar's log, a line at a time, until `release`,
/// keeping the last few in `last`. Lines the server logged as errors are logged as warnings.
async fn forward_lines(
    stream: impl AsyncRead + Unpin,
    release: CancellationToken,
    last: LastLines,
) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        let line = tokio::select! {
            biased;
            _ = release.cancelled() => return,
            line = lines.next_line() => line,
        };
        let Ok(Some(line)) = line else { return };
        if ["level=error", "level=fatal", "level=panic", "panic:"]
            .iter()
            .any(|mark| line.contains(mark))
        {
            warn!(target: "doltgres", "{line}");
        } else {
            info!(target: "doltgres", "{line}");
        }
        let mut last = last.lock().unwrap();
        if last.len() == LAST_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_alive_and_a_reaped_one_is_not() {
        assert!(alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn telemetry_setting_keeps_other_keys() {
        let dir = std::env::temp_dir().join(format!("dgs-telemetry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config_global.json");
        std::fs::write(&path, r#"{"sqlserver.global.server_uuid":"x"}"#).unwrap();
        set_telemetry(&path, false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["metrics.disabled"], "true");
        assert_eq!(v["sqlserver.global.server_uuid"], "x");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
