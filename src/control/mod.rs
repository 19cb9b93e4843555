//! Server control: whether the sidecar can stop and start the Doltgres server, and what sessions
//! need to know about it.
//!
//! - `external`: the server is someone else's; nothing here acts.
//! - `managed`: the sidecar runs Doltgres as its child ([`managed`]), restarts it with backoff
//!   if it dies, and stops it on shutdown.
//! - `command`: operator commands stop and start it ([`command`]).
//!
//! Sessions consult [`Control`] twice: before connecting upstream they wait while the server is
//! down on purpose ([`Control::wait_available`]), and while relaying they hold an [`Attached`]
//! guard, through which a copy window tells them to close their upstream connection and learns
//! when every one is closed before it stops the server. A session still waiting to connect is
//! not attached, so a window passes it by: it connects to the restarted server.

pub mod command;
pub mod locate;
pub mod managed;

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::server::{Commands, ControlMode, ServerConfig, ServerControl};
use crate::upstream::{Login, Upstream};
use managed::{ManagedServer, ManagedSpec};

/// How often a starting server is tried for a login.
const READY_POLL: Duration = Duration::from_millis(10);

/// A stop, start or readiness check that failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot start the server: {0}")]
    Start(String),
    #[error("cannot stop the server: {0}")]
    Stop(String),
    #[error("{0}")]
    Command(String),
    #[error("the server did not accept a login within {timeout:?}: {last}")]
    NotReady { timeout: Duration, last: String },
    #[error("the sidecar does not control the server (server.control = \"external\")")]
    External,
}

pub use crate::catalog::copy_tree::CopySources;

/// What stops and starts the server, by mode.
enum Driver {
    External,
    Managed(ManagedServer),
    Command(Commands),
}

/// Server control and availability, shared by every session and window.
pub struct Control {
    config: ServerConfig,
    driver: Driver,
    /// Credentials for the readiness check (the backup user's; a reload may change them).
    login: std::sync::Mutex<(String, String)>,
    /// Availability and the open upstream connections, changed together under the channel's
    /// lock (see [`Links`]).
    links: watch::Sender<Links>,
    /// How many times [`Control::detach_all`] ran: a connection attached before the last run is
    /// detached.
    detaches: AtomicU64,
}

/// Whether sessions may connect, and the sessions connected. Kept in one place so that marking
/// the server unavailable and detaching every connection cannot miss a session that attaches in
/// between: [`Control::attach`] fails once the server is unavailable, and
/// [`Control::detach_all`] tells every connection attached before that.
#[derive(Debug)]
struct Links {
    /// False while the server is down on purpose or being restarted.
    available: bool,
    /// Each open upstream connection, by attachment number, with the waker of the task that
    /// watches it for a detach (once it watches).
    attached: std::collections::HashMap<u64, Option<Waker>>,
    next: u64,
}

impl Control {
    /// Control as configured; `port` is the managed server's (already chosen) port.
    pub fn new(config: &ServerConfig, login: (&str, &str)) -> Control {
        let driver = match &config.control {
            ServerControl::External => Driver::External,
            ServerControl::Managed(m) => Driver::Managed(ManagedServer::new(ManagedSpec {
                binary: config.binary.clone(),
                dir: m.dir.clone(),
                port: m.port,
                user: config.user.clone(),
                password: config.password.clone().unwrap_or_default(),
                telemetry: m.telemetry,
                log_level: m.log_level.clone(),
                stop_timeout: config.stop_timeout,
                lock_dir: true,
            })),
            ServerControl::Command(c) => Driver::Command(c.clone()),
        };
        Control {
            config: config.clone(),
            driver,
            login: std::sync::Mutex::new((login.0.to_string(), login.1.to_string())),
            links: watch::channel(Links {
                available: true,
                attached: Default::default(),
                next: 0,
            })
            .0,
            detaches: AtomicU64::new(0),
        }
    }

    /// Changes the credentials of the readiness check (a reload changed the backup login).
    pub fn set_login(&self, user: &str, password: &str) {
        *self.login.lock().unwrap() = (user.to_string(), password.to_string());
    }

    pub fn mode(&self) -> ControlMode {
        self.config.control.mode()
    }

    /// The managed server, in managed mode.
    /// `[server]` as the control was built with.
    pub fn server_config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn managed(&self) -> Option<&ManagedServer> {
        match &self.driver {
            Driver::Managed(server) => Some(server),
            _ => None,
        }
    }

    /// Marks the server down on purpose (sessions wait) or back (they go on).
    pub fn set_available(&self, up: bool) {
        self.links.send_modify(|l| l.available = up);
    }

    pub fn is_available(&self) -> bool {
        self.links.borrow().available
    }

    /// Waits until the server is available, at most `timeout`; false if it was not by then.
    pub async fn wait_available(&self, timeout: Duration) -> bool {
        let mut rx = self.links.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|l| l.available))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Registers an open upstream connection until the guard is dropped; `None` if the server
    /// became unavailable meanwhile (the caller closes the connection and waits again).
    pub fn attach(&self) -> Option<Attached<'_>> {
        let mut attached = None;
        self.links.send_if_modified(|l| {
            if !l.available {
                return false;
            }
            let id = l.next;
            l.next += 1;
            l.attached.insert(id, None);
            attached = Some(Attached {
                links: &self.links,
                detaches: &self.detaches,
                epoch: self.detaches.load(Ordering::Acquire),
                watched: AtomicBool::new(false),
                id,
            });
            true
        });
        attached
    }

    /// Marks the server unavailable and tells every attached session to close its upstream
    /// connection; returns how many were told.
    pub fn detach_all(&self) -> usize {
        let mut told = 0;
        self.links.send_modify(|l| {
            l.available = false;
            self.detaches.fetch_add(1, Ordering::AcqRel);
            for waker in l.attached.values_mut().filter_map(Option::take) {
                waker.wake();
            }
            told = l.attached.len();
        });
        told
    }

    /// Sessions with an open upstream connection now.
    pub fn attached(&self) -> usize {
        self.links.borrow().attached.len()
    }

    /// Waits until no session has an upstream connection, at most `timeout`.
    pub async fn wait_detached(&self, timeout: Duration) -> bool {
        let mut rx = self.links.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|l| l.attached.is_empty()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Starts the server (managed: the child process; command: `server.start`) and waits until
    /// it accepts a login.
    pub async fn start(&self, upstream: &Upstream) -> Result<(), ControlError> {
        match &self.driver {
            Driver::External => return Err(ControlError::External),
            Driver::Managed(server) => server.start().await?,
            Driver::Command(c) => {
                command::run("start", &c.start, self.config.ready_timeout).await?
            }
        }
        self.wait_ready(upstream).await
    }

    /// Stops the server and returns once it is down.
    pub async fn stop(&self) -> Result<(), ControlError> {
        match &self.driver {
            Driver::External => Err(ControlError::External),
            Driver::Managed(server) => server.stop().await,
            Driver::Command(c) => command::run("stop", &c.stop, self.config.stop_timeout).await,
        }
    }

    /// Logs in and runs `SELECT 1` until it works, within `ready_timeout`.
    pub async fn wait_ready(&self, upstream: &Upstream) -> Result<(), ControlError> {
        let timeout = self.config.ready_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let (user, password) = self.login.lock().unwrap().clone();
        let login = Login {
            user: &user,
            password: &password,
            database: "postgres",
        };
        let mut last = String::from("not tried");
        while tokio::time::Instant::now() < deadline {
            if let Some(managed) = self.managed()
                && let Some(exit) = managed.exit_watch()
                && let Some(status) = *exit.borrow()
            {
                return Err(ControlError::Start(managed.exit_report(status)));
            }
            match upstream.sql(&login).await {
                Ok(client) => match client.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e,
            }
            // Every copy window waits here, so poll finely: the first successful login ends
            // the server's part of the stall.
            tokio::time::sleep(READY_POLL).await;
        }
        Err(ControlError::NotReady { timeout, last })
    }

    /// What a copy takes, when the sidecar controls the server.
    pub fn copy_sources(&self) -> Option<CopySources> {
        match &self.driver {
            Driver::External => None,
            Driver::Managed(server) => {
                let spec = &server.spec;
                Some(CopySources {
                    data_dir: spec.data_dir(),
                    extra: [
                        ("work/auth.db", spec.work_dir().join("auth.db")),
                        ("config.yaml", spec.dir.join("config.yaml")),
                        (
                            "root/.dolt/config_global.json",
                            spec.root_dir().join(".dolt/config_global.json"),
                        ),
                    ]
                    .into_iter()
                    .map(|(to, from)| (from, PathBuf::from(to)))
                    .collect(),
                })
            }
            Driver::Command(c) => Some(CopySources {
                data_dir: c.data_dir.clone(),
                extra: c
                    .config_files
                    .iter()
                    .map(|f| {
                        let name = f.file_name().map(PathBuf::from).unwrap_or_default();
                        (f.clone(), PathBuf::from("config").join(name))
                    })
                    .collect(),
            }),
        }
    }
}

/// An open upstream connection, counted until dropped. One task watches it for a detach (the
/// session's): the waker it registers first is the one a detach wakes.
pub struct Attached<'a> {
    links: &'a watch::Sender<Links>,
    detaches: &'a AtomicU64,
    /// [`Control::detaches`] when it attached.
    epoch: u64,
    /// Its watcher's waker is registered.
    watched: AtomicBool,
    id: u64,
}

impl Attached<'_> {
    /// A copy window needs this connection closed.
    pub fn is_detached(&self) -> bool {
        self.detaches.load(Ordering::Acquire) != self.epoch
    }

    /// Ready once a copy window needs this connection closed; the first call registers the
    /// task to be woken then (a lock taken once, not at every poll).
    pub fn poll_detached(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.watched.swap(true, Ordering::AcqRel) {
            // Under the lock [`Control::detach_all`] takes: it either sees this waker or ran
            // before, and then the check below sees its count.
            self.links.send_if_modified(|l| {
                if let Some(slot) = l.attached.get_mut(&self.id) {
                    *slot = Some(cx.waker().clone());
                }
                false
            });
        }
        if self.is_detached() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves when a copy window needs this connection closed.
    pub async fn detached(&self) {
        std::future::poll_fn(|cx| self.poll_detached(cx)).await
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.links.send_modify(|l| {
            l.attached.remove(&self.id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> Control {
        Control::new(&ServerConfig::default(), ("u", "p"))
    }

    #[tokio::test]
    async fn detach_reaches_every_attached_connection_and_later_ones_cannot_attach() {
        let c = control();
        let a = c.attach().unwrap();
        let b = c.attach().unwrap();
        assert_eq!(c.attached(), 2);
        assert_eq!(c.detach_all(), 2);
        assert!(c.attach().is_none(), "attached while unavailable");
        tokio::time::timeout(Duration::from_secs(1), a.detached())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), b.detached())
            .await
            .unwrap();
        assert!(!c.wait_detached(Duration::from_millis(10)).await);
        drop((a, b));
        assert!(c.wait_detached(Duration::from_millis(10)).await);
        c.set_available(true);
        let fresh = c.attach().expect("attaches once available again");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), fresh.detached())
                .await
                .is_err(),
            "a connection attached after the window is not detached"
        );
    }

    #[tokio::test]
    async fn waiting_for_availability_has_a_deadline() {
        let c = control();
        assert!(c.wait_available(Duration::from_millis(1)).await);
        c.set_available(false);
        assert!(!c.wait_available(Duration::from_millis(20)).await);
    }
}
