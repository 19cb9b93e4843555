//! Upgrade without dropping clients: a new sidecar process takes over the running one's
//! listening sockets over a Unix socket (`handover_socket`).
//!
//! 1. The successor (`run --upgrade`) connects and says hello.
//! 2. The running process waits for any window to end and holds windows off from then on, then
//!    offers its counters and sends its client and admin listeners (`SCM_RIGHTS`).
//! 3. The successor serves on them and says it is accepting. Both accept on the same sockets for
//!    that moment, so no connection is refused or left in a queue nobody reads.
//! 4. The running process stops accepting, runs no final backup window, lets its sessions finish
//!    for `shutdown_timeout`, sends its final counters and exits.
//! 5. The successor runs windows only after that: one process runs windows at a time, and a
//!    window never quiesces one process's sessions while the other's keep writing.
//!
//! If the successor fails or goes silent before it accepts, the running process carries on as
//! if nothing happened. A managed Doltgres is the running process's child, so managed mode does
//! not hand over.

pub mod counts;
pub mod message;
mod predecessor;
mod successor;
pub mod wire;

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::window::Pause;
pub use predecessor::serve;
pub use successor::{TakeOverError, TakenOver, take_over};

/// The hand-over socket `config` uses: `handover_socket`, or `doltgres-sidecar-<listen
/// port>.sock` in `$XDG_RUNTIME_DIR` (else the temporary directory).
pub fn socket_path(config: &Config) -> PathBuf {
    if let Some(path) = &config.handover_socket {
        return path.clone();
    }
    let port = config
        .listen
        .parse::<SocketAddr>()
        .map_or(0, |addr| addr.port());
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("doltgres-sidecar-{port}.sock"))
}

/// A bound hand-over socket, remembered by inode so that only its owner removes the path.
pub struct Endpoint {
    pub listener: UnixListener,
    pub path: PathBuf,
    inode: u64,
}

impl Endpoint {
    /// Binds `path` (mode 0600). A stale socket left by a process that died is replaced; one
    /// that answers belongs to a running sidecar, and binding fails.
    pub fn bind(path: &Path) -> std::io::Result<Endpoint> {
        let listener = match UnixListener::bind(path) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                // Only a socket nobody listens on is stale; anything else at the path stays.
                let is_socket = std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
                let refused = std::os::unix::net::UnixStream::connect(path)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
                if !(is_socket && refused) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!(
                            "{} is in use (a running doltgres-sidecar, or not a stale socket)",
                            path.display()
                        ),
                    ));
                }
                std::fs::remove_file(path)?;
                UnixListener::bind(path)?
            }
            other => other?,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let inode = std::fs::metadata(path)?.ino();
        Ok(Endpoint {
            listener,
            path: path.to_path_buf(),
            inode,
        })
    }

    /// Binds beside `path` (a successor's, while the predecessor still owns `path`); [`publish`]
    /// moves it into place.
    ///
    /// [`publish`]: Endpoint::publish
    pub fn bind_beside(path: &Path) -> std::io::Result<Endpoint> {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{}", std::process::id()));
        Endpoint::bind(Path::new(&name))
    }

    /// Renames the socket to `path`, replacing whatever is there.
    pub fn publish(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, path)?;
        self.path = path.to_path_buf();
        Ok(())
    }

    /// A guard that removes the path when dropped, if it is still this socket.
    pub fn remover(&self) -> Remover {
        Remover {
            path: self.path.clone(),
            inode: self.inode,
        }
    }
}

/// Removes the hand-over socket's path when dropped (on every way out of `run`), unless a
/// successor's socket replaced it.
pub struct Remover {
    path: PathBuf,
    inode: u64,
}

impl Drop for Remover {
    fn drop(&mut self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One proxy's side of a hand-over to a successor (in `Shared`).
#[derive(Debug, Default)]
pub struct Handover {
    /// Cancelled once a successor accepts on this process's listeners.
    handed_over: CancellationToken,
    /// The successor's connection and pid, for the final counters.
    successor: Mutex<Option<(UnixStream, u32)>>,
    /// Windows held off until this process exits: the successor runs them.
    pause: Mutex<Option<Pause>>,
}

impl Handover {
    /// Whether a successor took over the listeners.
    pub fn is_handed_over(&self) -> bool {
        self.handed_over.is_cancelled()
    }

    /// Resolves once a successor took over the listeners.
    pub async fn handed_over(&self) {
        self.handed_over.cancelled().await
    }

    fn complete(&self, stream: UnixStream, pid: u32, pause: Pause) {
        *self.pause.lock().unwrap() = Some(pause);
        *self.successor.lock().unwrap() = Some((stream, pid));
        self.handed_over.cancel();
    }

    /// After the last session ended: tells the successor this process's final counters. The
    /// windows stay held off until the process exits.
    pub async fn finish(&self, metrics: &Metrics) {
        let Some((mut stream, pid)) = self.successor.lock().unwrap().take() else {
            return;
        };
        let counts = counts::Counts::read(metrics);
        match wire::send(&mut stream, &message::Message::Final { counts }).await {
            Ok(()) => tracing::info!(successor = pid, "final counters sent to the successor"),
            Err(e) => tracing::warn!(successor = pid, error = %e, "cannot send the final counters"),
        }
    }
}
