//! The `doltgres-sidecar` binary run as its own process, for tests that kill it, signal it or
//! measure its memory apart from the test's own.

use std::ffi::OsStr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{free_port, install};

/// A running `doltgres-sidecar run` on free loopback ports. Dropping it sends SIGTERM (so a
/// managed server is stopped too), then SIGKILL if it has not exited within 30 s.
pub struct SidecarProcess {
    pub child: Child,
    /// Where clients connect.
    pub listen: String,
    /// The admin API's base URL (`http://host:port`).
    pub admin: String,
}

impl SidecarProcess {
    /// Starts `doltgres-sidecar run` with these extra arguments (a `--config`, an `--upstream`,
    /// ...) and `RUST_LOG=info`; output goes to the test's. Does not wait for it to be ready.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> SidecarProcess {
        SidecarProcess::start_with(args, |_| {})
    }

    /// Like [`SidecarProcess::start`], with the command adjusted first (environment, output).
    pub fn start_with<S: AsRef<OsStr>>(
        args: &[S],
        adjust: impl FnOnce(&mut Command),
    ) -> SidecarProcess {
        let listen = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        SidecarProcess::start_at(&listen, &admin, args, adjust)
    }

    /// Like [`SidecarProcess::start_with`], on given addresses (a successor of an upgrade
    /// listens where its predecessor did).
    pub fn start_at<S: AsRef<OsStr>>(
        listen: &str,
        admin: &str,
        args: &[S],
        adjust: impl FnOnce(&mut Command),
    ) -> SidecarProcess {
        let mut command = Command::new(install::sidecar_binary());
        command
            .arg("run")
            .args(args)
            .args(["--listen", listen, "--admin-listen", admin])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        adjust(&mut command);
        let child = command.spawn().expect("cannot start doltgres-sidecar");
        SidecarProcess {
            child,
            listen: listen.to_string(),
            admin: format!("http://{admin}"),
        }
    }

    /// Like [`SidecarProcess::start`], under an open-file limit of `fd_limit` (soft and hard, set
    /// by the shell that then execs the binary, so the process sees it from its start and cannot
    /// raise it).
    pub fn start_with_fd_limit<S: AsRef<OsStr>>(fd_limit: u64, args: &[S]) -> SidecarProcess {
        let listen = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new("sh");
        command
            .args(["-c", "ulimit -n \"$0\" && exec \"$@\""])
            .arg(fd_limit.to_string())
            .arg(install::sidecar_binary())
            .arg("run")
            .args(args)
            .args(["--listen", &listen, "--admin-listen", &admin])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        let child = command.spawn().expect("cannot start doltgres-sidecar");
        SidecarProcess {
            child,
            listen,
            admin: format!("http://{admin}"),
        }
    }

    /// The admin API's address (`host:port`), for raw connections.
    pub fn admin_addr(&self) -> &str {
        self.admin.trim_start_matches("http://")
    }

    /// How many file descriptors the process has open (the entries of `/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits (up to 60 s) until `/healthz` answers; panics if the process exits first.
    pub async fn ready(&mut self) {
        let url = format!("{}/healthz", self.admin);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let u = url.clone();
            let up = tokio::task::spawn_blocking(move || ureq::get(&u).call().is_ok())
                .await
                .unwrap();
            if up {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("doltgres-sidecar exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "doltgres-sidecar did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST {admin}{path}`: the status code (0 if no answer) and the body.
    pub async fn post(&self, path: &str) -> (u16, String) {
        crate::http::request("POST", format!("{}{path}", self.admin), None).await
    }

    /// `GET {admin}{path}`: the status code (0 if no answer) and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        crate::http::request("GET", format!("{}{path}", self.admin), None).await
    }

    /// A gauge or counter from `/metrics` (the sum of its series), if present.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await;
        metric_sum(&text, name)
    }

    /// Resident memory of the process, in bytes (`VmRSS` in `/proc/PID/status`).
    pub fn rss_bytes(&self) -> u64 {
        proc_status_kb(self.child.id(), "VmRSS:") * 1024
    }

    /// Waits up to `timeout` for the process to exit by itself; its status, or `None` if it
    /// still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill_9(&mut self) {
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.pid(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection as the managed servers' user to `postgres` through a sidecar at `addr`,
/// retried until it serves (up to 60 s): a process just started, or restarted.
pub async fn connect_when_serving(addr: &str) -> tokio_postgres::Client {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().unwrap())
        .user(crate::managed::USER)
        .password(crate::managed::PASSWORD)
        .dbname("postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match crate::server_connect(&config).await {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("sidecar never served: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A test bed server's process (SeaweedFS, Dolt's remote server), killed and reaped when
/// dropped or told to.
#[derive(Default)]
pub struct ServerChild(Option<std::process::Child>);

impl ServerChild {
    pub fn set(&mut self, child: std::process::Child) {
        self.kill();
        self.0 = Some(child);
    }

    /// SIGKILL, then reap it; nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `POST url` without a body: the status code (0 if no answer) and the body.
pub fn post(url: &str) -> (u16, String) {
    crate::http::call("POST", url, None, None)
}

/// The sum of a metric's series in a Prometheus text exposition (`name` or `name{...}` lines).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A `kB` field of `/proc/PID/status` (0 if absent).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's soft open-file limit to its hard limit (children inherit it) and
/// returns that limit. Raising the hard limit itself needs CAP_SYS_RESOURCE, which containers
/// often lack, so tests size themselves to what this returns.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    hard
}
