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
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::config::Config;
pub use predecessor::finish;
pub use predecessor::serve;
pub use successor::{TakeOverError, TakenOver, take_over};

/// The hand-over socket `config` uses: `handover_socket`, or `doltgres-sidecar-<listen
/// port>.sock` in `$XDG_RUNTIME_DIR` (a directory of the user's own), else in
/// `doltgres-sidecar-<uid>/` in the temporary directory, which [`Endpoint::bind`] creates with
/// mode 0700 (in a shared `/tmp` anyone could create the socket's path first).
pub fn socket_path(config: &Config) -> PathBuf {
    if let Some(path) = &config.handover_socket {
        return path.clone();
    }
    let port = config
        .listen
        .parse::<SocketAddr>()
        .map_or(0, |addr| addr.port());
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(private_dir_name()),
    };
    dir.join(format!("doltgres-sidecar-{port}.sock"))
}

/// The name of this user's directory in the temporary directory.
fn private_dir_name() -> String {
    format!("doltgres-sidecar-{}", nix::unistd::geteuid())
}

/// Makes sure nobody else can own or replace what is at `path`: its directory, if it is this
/// user's private one in the temporary directory, exists with mode 0700 and belongs to this
/// user; and whatever is at the path already belongs to this user. Fails, naming the owner,
/// otherwise.
fn check_ownership(path: &Path) -> std::io::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let refuse = |what: &Path, why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}; refusing to use it for the hand-over socket",
                what.display()
            ),
        )
    };
    if let Some(dir) = path.parent()
        && dir.file_name().is_some_and(|n| *n == *private_dir_name())
    {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })?;
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() || meta.uid() != me {
            return Err(refuse(
                dir,
                format!("owned by uid {}, not {me}", meta.uid()),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(refuse(
                dir,
                format!("mode {:o}, not 0700", meta.mode() & 0o777),
            ));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.uid() != me => Err(refuse(
            path,
            format!("owned by uid {}, not {me}", meta.uid()),
        )),
        _ => Ok(()),
    }
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
        check_ownership(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_directory_is_made_0700_and_one_open_to_others_is_refused() {
        let base = std::env::temp_dir().join(format!("dgs-handover-{}", std::process::id()));
        let dir = base.join(private_dir_name());
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let path = dir.join("doltgres-sidecar-6432.sock");
        check_ownership(&path).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_ownership(&path).unwrap_err().to_string();
        assert!(err.contains("mode 777"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
