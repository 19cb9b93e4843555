//! The catalog of full-server copies: one directory per entry, `<id>/files/` (the server's files)
//! and `<id>/manifest.json`. An entry is written under `.tmp-<id>`, fsynced, and renamed when
//! complete, so a listed entry is always complete — also after a crash mid-copy, whose leftover
//! `.tmp-*` is removed the next time the catalog is opened. Verification results live beside the
//! manifest in `verify.json`.

pub mod copy_tree;
pub mod journal;
pub mod manifest;
mod materialize;
pub mod private;

pub use materialize::materialize;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use manifest::Manifest;

const TMP_PREFIX: &str = ".tmp-";

/// The outcome of verifying an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub ok: bool,
    pub at_unix: f64,
    pub detail: String,
}

/// Whether `path` is a directory of this user's that nobody else may write to: what the
/// catalog and an entry must be before a new copy trusts what they hold (anyone who can write
/// there could plant a file, an entry, or a verification record).
pub fn private_to_me(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to this user ({me})",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by others (mode {:o})",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// One complete entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Entry {
    /// The server's files.
    pub fn files_dir(&self) -> PathBuf {
        self.dir.join("files")
    }

    /// Where the file of `record` is, checked to stay inside the entry: its path relative with
    /// plain names only, and no directory on the way, nor the file, a symbolic link.
    pub fn file_path(&self, record: &manifest::FileRecord) -> Result<PathBuf, String> {
        let rel = record
            .relative()
            .ok_or_else(|| format!("{:?}: not a path inside the entry", record.path))?;
        let mut path = self.files_dir();
        for part in std::iter::once(Path::new("")).chain(rel.iter().map(Path::new)) {
            path.push(part);
            let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", record.path))?;
            if meta.file_type().is_symlink() {
                return Err(format!("{}: a symbolic link in the entry", record.path));
            }
        }
        Ok(path)
    }

    pub fn verify_record(&self) -> Option<VerifyRecord> {
        let bytes = fs::read(self.dir.join("verify.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a verification (written to a temporary name, then renamed).
    pub fn record_verify(&self, record: &VerifyRecord) -> io::Result<()> {
        let tmp = self.dir.join(".verify.json.tmp");
        copy_tree::write_private(&tmp, &serde_json::to_vec_pretty(record)?)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(tmp, self.dir.join("verify.json"))
    }
}

/// A catalog directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
}

impl Catalog {
    /// Opens (creating) the catalog and removes entries that were never completed.
    pub fn open(dir: &Path) -> io::Result<Catalog> {
        copy_tree::private_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                tracing::info!(path = %entry.path().display(), "removing an incomplete copy");
                fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(Catalog {
            dir: dir.to_path_buf(),
        })
    }

    /// Complete entries, oldest first (ids sort by time).
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(read) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut entries: Vec<Entry> = read
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with(TMP_PREFIX))
            .filter_map(|e| self.entry(&e.file_name().to_string_lossy()).ok())
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries
    }

    /// The entry with this id.
    pub fn entry(&self, id: &str) -> io::Result<Entry> {
        // A plain name of the catalog's own: not hidden (`.tmp-…`, `.`, `..`), no separator.
        if id.starts_with('.') || id.contains('/') || id.contains('\0') || id.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such entry"));
        }
        let dir = self.dir.join(id);
        // Entries are directories the catalog made, never links to somewhere else.
        for path in [dir.clone(), dir.join("files")] {
            if !fs::symlink_metadata(&path)?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a directory",
                ));
            }
        }
        let manifest: Manifest = serde_json::from_slice(&fs::read(dir.join("manifest.json"))?)?;
        Ok(Entry {
            id: id.to_string(),
            dir,
            manifest,
        })
    }

    pub fn latest(&self) -> Option<Entry> {
        self.entries().pop()
    }

    /// The entry a new copy may hard-link unchanged table files from, if any: the newest whose
    /// directory is this user's and closed to others, and whose files were checked against
    /// their checksums (its verification passed) or were written by this process (`written`).
    /// A catalog that is not private to this user gives none (every file is then copied
    /// afresh): the error says why, for a warning.
    pub fn link_source(&self, written: &dyn Fn(&str) -> bool) -> Result<Option<Entry>, String> {
        private_to_me(&self.dir)?;
        Ok(self.entries().into_iter().rev().find(|entry| {
            let private =
                private_to_me(&entry.dir).is_ok() && private_to_me(&entry.files_dir()).is_ok();
            let checked = written(&entry.id) || entry.verify_record().is_some_and(|v| v.ok);
            private && checked
        }))
    }

    /// Starts a new entry under a temporary name.
    pub fn begin(&self, id: &str) -> io::Result<Pending> {
        let tmp = self.dir.join(format!("{TMP_PREFIX}{id}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        copy_tree::private_dir_all(&tmp.join("files"))?;
        Ok(Pending {
            tmp,
            done: self.dir.join(id),
            catalog: self.dir.clone(),
            committed: false,
        })
    }

    /// Deletes entries past `keep_last` (0: no limit) or older than `max_age`, never the newest
    /// entry, nor the newest one that verified, nor one `keep` holds on to (an entry not yet
    /// uploaded off-site). Returns the ids deleted.
    pub fn retain(
        &self,
        keep_last: usize,
        max_age: Option<Duration>,
        now: SystemTime,
        keep: &dyn Fn(&Entry) -> bool,
    ) -> Vec<String> {
        let entries = self.entries();
        let newest_verified = entries
            .iter()
            .rev()
            .find(|e| e.verify_record().is_some_and(|v| v.ok))
            .map(|e| e.id.clone());
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let count = entries.len();
        let mut removed = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let from_newest = count - 1 - index;
            let protected =
                from_newest == 0 || Some(&entry.id) == newest_verified.as_ref() || keep(entry);
            let too_many = keep_last > 0 && from_newest >= keep_last;
            let too_old =
                max_age.is_some_and(|age| now - entry.manifest.created_unix > age.as_secs_f64());
            if !protected && (too_many || too_old) && fs::remove_dir_all(&entry.dir).is_ok() {
                removed.push(entry.id.clone());
            }
        }
        removed
    }
}

/// An entry being written. Dropped without [`Pending::commit`], it is removed.
pub struct Pending {
    tmp: PathBuf,
    done: PathBuf,
    catalog: PathBuf,
    committed: bool,
}

impl Pending {
    /// The entry's directory while it is written.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Its id, once committed.
    pub fn id(&self) -> String {
        self.done
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn files_dir(&self) -> PathBuf {
        self.tmp.join("files")
    }

    /// Writes the manifest, fsyncs, and renames the entry into place.
    pub fn commit(mut self, manifest: &Manifest) -> io::Result<()> {
        let path = self.tmp.join("manifest.json");
        copy_tree::write_private(&path, &serde_json::to_vec_pretty(manifest)?)?;
        fs::File::open(&path)?.sync_all()?;
        fs::File::open(&self.tmp)?.sync_all()?;
        fs::rename(&self.tmp, &self.done)?;
        fs::File::open(&self.catalog)?.sync_all()?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A new entry's id: the UTC time to the second, then the window id, so ids sort by time.
pub fn entry_id(now: SystemTime, window_id: u64) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    format!("{compact}-w{window_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, created_unix: f64) -> Manifest {
        Manifest {
            id: id.into(),
            window_id: 1,
            created_unix,
            ..Manifest::default()
        }
    }

    fn temp_catalog(name: &str) -> Catalog {
        let dir = std::env::temp_dir().join(format!("dgs-catalog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Catalog::open(&dir).unwrap()
    }

    #[test]
    fn ids_sort_by_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(entry_id(t, 7), "20270115T080000Z-w7");
        assert!(entry_id(t, 9) < entry_id(t + Duration::from_secs(1), 1));
    }

    #[test]
    fn only_committed_entries_are_listed_and_leftovers_are_removed() {
        let catalog = temp_catalog("commit");
        let pending = catalog.begin("a").unwrap();
        fs::write(pending.files_dir().join("f"), b"x").unwrap();
        assert!(catalog.entries().is_empty());
        pending.commit(&manifest("a", 1.0)).unwrap();
        let dropped = catalog.begin("b").unwrap();
        drop(dropped);
        let crashed = catalog.begin("c").unwrap();
        std::mem::forget(crashed); // as if the process died mid-copy
        let ids: Vec<_> = catalog.entries().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["a"]);
        let reopened = Catalog::open(&catalog.dir).unwrap();
        assert!(!reopened.dir.join(".tmp-c").exists());
        assert_eq!(reopened.latest().unwrap().id, "a");
        fs::remove_dir_all(&catalog.dir).unwrap();
    }

    #[test]
    fn retention_keeps_the_newest_and_the_newest_verified() {
        let catalog = temp_catalog("retain");
        for (i, id) in ["e1", "e2", "e3", "e4"].iter().enumerate() {
            catalog
                .begin(id)
                .unwrap()
                .commit(&manifest(id, i as f64))
                .unwrap();
        }
        let verified = catalog.entry("e2").unwrap();
        verified
            .record_verify(&VerifyRecord {
                ok: true,
                at_unix: 0.0,
                detail: String::new(),
            })
            .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let removed = catalog.retain(1, None, now, &|_| false);
        assert_eq!(removed, ["e1", "e3"]);
        // Everything is too old, but the newest entry stays.
        let removed = catalog.retain(0, Some(Duration::from_secs(1)), now, &|_| false);
        assert_eq!(removed, Vec::<String>::new(), "e2 verified, e4 newest");
        let ids: Vec<_> = catalog.entries().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["e2", "e4"]);
        fs::remove_dir_all(&catalog.dir).unwrap();
    }
}
