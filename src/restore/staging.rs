//! Where a restore builds, and how the result takes the target's place without ever leaving a
//! half-made directory.
//!
//! - **Beside** the target (the usual case): the tree is built in a hidden sibling on the same
//!   filesystem and put in place with one `rename` (an empty or missing target) or one
//!   `renameat2(RENAME_EXCHANGE)` (a target being replaced), both atomic; the old tree, then in
//!   the sibling's place, is removed afterwards.
//! - **Inside** a target that is a mount point (a volume's root cannot be renamed): the tree is
//!   built in a hidden directory inside it and moved into place entry by entry, under a marker
//!   file that says the directory is incomplete. A crash leaves the marker: the managed server
//!   refuses to start on such a directory, and the next restore treats it as empty and builds
//!   again.
//!
//! Either way a failed restore (dropped before [`Staging::commit`]) removes what it built and
//! leaves the target as it was; a leftover of a restore that was killed is removed by the next.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::dirlock::LOCK_FILE;

/// Present in a target while an inside restore moves its entries into place.
pub use crate::dirlock::RESTORING_MARKER as MARKER;
/// How staging directories are named (then the pid of the restore that made it).
const PREFIX: &str = ".doltgres-sidecar-staging-";

/// A tree being built for `target`.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    inside: bool,
    committed: bool,
}

impl Staging {
    /// A fresh staging directory for `target` (an absolute path), after removing leftovers of
    /// restores that are no longer running.
    pub fn new(target: &Path) -> io::Result<Staging> {
        let parent = target
            .parent()
            .ok_or_else(|| io::Error::other("the target has no parent directory"))?;
        let inside = target.exists() && mount_point(target, parent)?;
        let home = if inside { target } else { parent };
        fs::create_dir_all(home)?;
        remove_leftovers(home)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = home.join(format!("{PREFIX}{}-{name}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700).create(&dir)?;
        Ok(Staging {
            dir,
            target: target.to_path_buf(),
            inside,
            committed: false,
        })
    }

    /// Where to build.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the staged tree will be moved in entry by entry (the target is a mount point).
    pub fn inside(&self) -> bool {
        self.inside
    }

    /// Puts the staged tree in the target's place, replacing whatever it holds.
    pub fn commit(mut self) -> io::Result<()> {
        sync_tree(&self.dir)?;
        if self.inside {
            self.move_in()?;
        } else {
            self.swap()?;
        }
        self.committed = true;
        Ok(())
    }

    fn swap(&self) -> io::Result<()> {
        let replaced = occupied(&self.target);
        if replaced {
            renameat2(
                AT_FDCWD,
                &self.dir,
                AT_FDCWD,
                &self.target,
                RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(io::Error::from)?;
        } else {
            // A missing or empty target (its lock file aside) is replaced by a plain rename.
            let _ = fs::remove_file(self.target.join(LOCK_FILE));
            fs::rename(&self.dir, &self.target)?;
        }
        sync_dir(self.target.parent().unwrap_or(Path::new("/")))?;
        if replaced {
            // The old tree now stands where the staging directory was.
            fs::remove_dir_all(&self.dir)?;
        }
        Ok(())
    }

    fn move_in(&self) -> io::Result<()> {
        let marker = self.target.join(MARKER);
        fs::write(&marker, format!("{}\n", std::process::id()))?;
        sync_dir(&self.target)?;
        for entry in fs::read_dir(&self.target)? {
            let path = entry?.path();
            if !restore_owned(&path) {
                remove(&path)?;
            }
        }
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            fs::rename(entry.path(), self.target.join(entry.file_name()))?;
        }
        sync_dir(&self.target)?;
        fs::remove_file(&marker)?;
        fs::remove_dir(&self.dir)?;
        sync_dir(&self.target)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether a directory holds anything a server or a user put there: the sidecar's lock file
/// and what a restore keeps there while it works do not count, and a directory an interrupted
/// restore left (its marker still there) counts as empty: it is incomplete.
pub fn occupied(dir: &Path) -> bool {
    if dir.join(MARKER).exists() {
        return false;
    }
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| !restore_owned(&e.path()))
    })
}

/// The lock file, the marker and staging directories: a restore's own, not the server's.
fn restore_owned(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name == LOCK_FILE || name == MARKER || name.starts_with(PREFIX)
}

/// Removes staging directories in `dir` whose restore is no longer running.
fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        if pid.is_none_or(|pid| !crate::control::managed::alive(pid)) {
            tracing::info!(path = %entry.path().display(), "removing a leftover of an interrupted restore");
            remove(&entry.path())?;
        }
    }
    Ok(())
}

fn mount_point(dir: &Path, parent: &Path) -> io::Result<bool> {
    Ok(fs::metadata(dir)?.dev() != fs::metadata(parent)?.dev())
}

fn remove(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Flushes every file and directory of a tree to disk (a restored server must not lose what
/// it was given to a crash right after the restore said it was done).
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            fs::File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tempdir;

    /// Writes each (path under `dir`, content), making the directories on the way.
    fn files(dir: &Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
    }

    fn build(staging: &Staging, content: &str) {
        fs::create_dir_all(staging.dir().join("data")).unwrap();
        fs::write(staging.dir().join("data/file"), content).unwrap();
    }

    fn read(target: &Path) -> String {
        fs::read_to_string(target.join("data/file")).unwrap()
    }

    #[test]
    fn a_missing_target_gets_the_tree_and_nothing_is_left_beside_it() {
        let (_tmp, root) = tempdir("staging-missing");
        let target = root.join("server");
        let staging = Staging::new(&target).unwrap();
        assert!(!staging.inside());
        build(&staging, "new");
        staging.commit().unwrap();
        assert_eq!(read(&target), "new");
        let names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["server"]);
    }

    #[test]
    fn a_replaced_target_changes_in_one_step_and_a_dropped_staging_changes_nothing() {
        let (_tmp, root) = tempdir("staging-replace");
        let target = root.join("server");
        files(&target, &[("data/file", "old"), ("extra", "old only")]);
        let staging = Staging::new(&target).unwrap();
        build(&staging, "abandoned");
        drop(staging);
        assert_eq!(
            read(&target),
            "old",
            "a failed restore leaves the target alone"
        );
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            1,
            "and no staging behind"
        );
        let staging = Staging::new(&target).unwrap();
        build(&staging, "new");
        staging.commit().unwrap();
        assert_eq!(read(&target), "new");
        assert!(
            !target.join("extra").exists(),
            "nothing of the old tree stays"
        );
        assert_eq!(fs::read_dir(&root).unwrap().count(), 1);
    }

    #[test]
    fn a_leftover_of_a_killed_restore_is_removed_and_does_not_count() {
        let (_tmp, root) = tempdir("staging-leftover");
        let target = root.join("server");
        fs::create_dir_all(&target).unwrap();
        // A pid that no process has (pids are below 2^22 on Linux).
        let dead = root.join(format!("{PREFIX}4194305-server"));
        fs::create_dir_all(dead.join("data")).unwrap();
        fs::write(target.join(LOCK_FILE), "1\nrun\n").unwrap();
        assert!(!occupied(&target), "a lock file alone is not content");
        let staging = Staging::new(&target).unwrap();
        assert!(!dead.exists());
        build(&staging, "new");
        staging.commit().unwrap();
        assert_eq!(read(&target), "new");
    }

    #[test]
    fn moving_in_replaces_the_entries_and_a_marker_left_behind_means_incomplete() {
        // The inside mode, as for a mount point (forced here: a test cannot mount).
        let (_tmp, root) = tempdir("staging-inside");
        let target = root.join("volume");
        let lock = "1\nrestore\n";
        files(
            &target,
            &[
                ("data/file", "old"),
                ("config.yaml", "old"),
                (LOCK_FILE, lock),
            ],
        );
        let mut staging = Staging::new(&target).unwrap();
        fs::remove_dir_all(staging.dir()).unwrap();
        staging.inside = true;
        staging.dir = target.join(format!("{PREFIX}{}-volume", std::process::id()));
        fs::create_dir_all(&staging.dir).unwrap();
        build(&staging, "new");
        staging.commit().unwrap();
        assert_eq!(read(&target), "new");
        assert!(!target.join("config.yaml").exists());
        assert!(!target.join(MARKER).exists());
        assert!(occupied(&target));
        fs::write(target.join(MARKER), "4194305\n").unwrap();
        assert!(
            !occupied(&target),
            "an interrupted restore's directory is not content"
        );
    }
}
