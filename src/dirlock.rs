//! Who uses a server directory. A sidecar running a managed Doltgres holds an exclusive `flock`
//! on `<server.dir>/.doltgres-sidecar.lock` for as long as it runs (its pid and role written
//! inside), and so does `restore` while it replaces that directory; Doltgres itself holds one on
//! every database's `.dolt/noms/LOCK` while it runs. [`holder`] reads both without taking either
//! (Doltgres' locks are looked up in `/proc/locks`, so a check never makes a starting server
//! fail), and `restore` refuses a directory that anything holds.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The lock file inside a server directory.
pub const LOCK_FILE: &str = ".doltgres-sidecar.lock";

/// Present in a server directory while a restore moves a new tree into it, and left there by
/// one that was cut off: the directory is incomplete, and no server is started on it.
pub const RESTORING_MARKER: &str = ".doltgres-sidecar-restoring";

/// An exclusive lock on a server directory, released when dropped (or when the process ends:
/// the file is opened close-on-exec, so a Doltgres child does not inherit it).
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

/// Who holds a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<i32>,
    /// `doltgres-sidecar run`, `doltgres-sidecar restore`, or `a running Doltgres`.
    pub what: String,
    /// The lock file that says so.
    pub lock: PathBuf,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "{} (pid {pid})", self.what),
            None => write!(f, "{}", self.what),
        }?;
        write!(f, ", which holds {}", self.lock.display())
    }
}

/// A directory that cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{dir} is in use by {holder}")]
    InUse { dir: String, holder: Holder },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl DirLock {
    /// Takes `dir`'s lock (creating the directory and the file), writing this process's pid and
    /// `role` (`run`, `restore`) into it; fails naming whoever holds it.
    pub fn take(dir: &Path, role: &str) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(LockError::InUse {
                    dir: dir.display().to_string(),
                    holder: sidecar_holder(&path),
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        let note = format!("{}\n{role}\n", std::process::id());
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        lock.write_all(note.as_bytes()).map_err(io)?;
        Ok(DirLock { _lock: lock })
    }
}

/// Who holds the sidecar lock at `path`, from what it wrote there.
fn sidecar_holder(path: &Path) -> Holder {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let mut lines = text.lines();
    let pid = lines.next().and_then(|p| p.trim().parse().ok());
    let role = lines.next().unwrap_or("run").trim().to_string();
    Holder {
        pid,
        what: format!("doltgres-sidecar {role}"),
        lock: path.to_path_buf(),
    }
}

/// Who uses `dir`: a sidecar or restore holding its lock file, and a Doltgres holding a
/// database under it (as `dir/data/<db>`, `dir/<db>` or `dir` itself).
pub fn holders(dir: &Path) -> Vec<Holder> {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let held = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        locked_by(&locks, meta.dev(), meta.ino())
    };
    let own = dir.join(LOCK_FILE);
    let sidecar = held(&own).map(|pid| Holder {
        pid: Some(pid),
        ..sidecar_holder(&own)
    });
    let servers = database_locks(dir).into_iter().filter_map(|lock| {
        Some(Holder {
            pid: Some(held(&lock)?),
            what: "a running Doltgres".into(),
            lock,
        })
    });
    sidecar.into_iter().chain(servers).collect()
}

/// The first of [`holders`], if any.
pub fn holder(dir: &Path) -> Option<Holder> {
    holders(dir).into_iter().next()
}

/// The `.dolt/noms/LOCK` files of the databases a directory may hold.
fn database_locks(dir: &Path) -> Vec<PathBuf> {
    let lock = |db: &Path| db.join(".dolt/noms/LOCK");
    let mut found = vec![lock(dir)];
    for parent in [dir.to_path_buf(), dir.join("data")] {
        if let Ok(children) = std::fs::read_dir(&parent) {
            found.extend(children.filter_map(Result::ok).map(|c| lock(&c.path())));
        }
    }
    found.retain(|path| path.is_file());
    found
}

/// The pid holding a lock on the file `dev`/`ino` according to `/proc/locks` text.
fn locked_by(locks: &str, dev: u64, ino: u64) -> Option<i32> {
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        nix::libc::major(dev),
        nix::libc::minor(dev)
    );
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; `1: -> FLOCK ...` is a waiter.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.get(5) != Some(&wanted.as_str()) {
            return None;
        }
        fields.get(4)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tempdir;

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 08:01:12345 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 08:01:99 0 EOF\n\
                    2: POSIX  ADVISORY  READ 77 fd:00:99 0 EOF\n";
        let dev = nix::libc::makedev(8, 1);
        assert_eq!(locked_by(text, dev, 12345), Some(4242));
        assert_eq!(locked_by(text, dev, 99), None, "a waiter holds nothing");
        assert_eq!(locked_by(text, nix::libc::makedev(0xfd, 0), 99), Some(77));
        assert_eq!(locked_by(text, dev, 1), None);
    }

    #[test]
    fn a_taken_lock_names_its_holder_until_dropped() {
        let (_tmp, dir) = tempdir("dirlock-take");
        assert_eq!(holder(&dir), None);
        let lock = DirLock::take(&dir, "run").unwrap();
        let held = holder(&dir).expect("held");
        assert_eq!(held.pid, Some(std::process::id() as i32));
        assert_eq!(held.what, "doltgres-sidecar run");
        let err = DirLock::take(&dir, "restore").unwrap_err().to_string();
        assert!(err.contains("doltgres-sidecar run (pid"), "{err}");
        drop(lock);
        assert_eq!(holder(&dir), None);
        let _again = DirLock::take(&dir, "restore").unwrap();
        assert_eq!(holder(&dir).unwrap().what, "doltgres-sidecar restore");
    }

    #[test]
    fn a_database_lock_held_by_a_server_is_found_in_proc_locks() {
        let (_tmp, dir) = tempdir("dirlock-db");
        let noms = dir.join("data/postgres/.dolt/noms");
        std::fs::create_dir_all(&noms).unwrap();
        let file = File::create(noms.join("LOCK")).unwrap();
        assert_eq!(holder(&dir), None, "an unlocked LOCK file is not a server");
        let _held = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        let found = holder(&dir).expect("held");
        assert_eq!(found.what, "a running Doltgres");
        assert_eq!(found.pid, Some(std::process::id() as i32));
        assert!(found.lock.ends_with("postgres/.dolt/noms/LOCK"));
    }
}
