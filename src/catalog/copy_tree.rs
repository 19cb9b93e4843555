//! Copies a stopped server's files into a catalog entry: the data directory and the files beside
//! it, each checksummed while it is copied and fsynced. Dolt table files never change once
//! written, so one that the previous entry already holds (same path, same size) is hard-linked
//! instead of copied: a copy costs what changed since the last one, not the database's size.
//! Chunk journals are kept in segments, most of them copied before the server stops (see
//! [`super::journal`]).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use std::collections::BTreeMap;

use super::journal;
use super::manifest::{FileRecord, Manifest};
pub use super::private::{copy_hashed, hex, private_dir_all, private_file, write_private};

/// What a copy takes: the data directory, and files beside it that the server needs to come
/// back identically, each with the path it gets inside the copy.
#[derive(Debug, Clone)]
pub struct CopySources {
    pub data_dir: PathBuf,
    pub extra: Vec<(PathBuf, PathBuf)>,
}

/// Files of the data directory that only describe a running server.
const RUNTIME_FILES: &[&str] = &["data/.dolt/sql-server.info"];

/// The previous complete entry, to link unchanged table files and journal segments from.
pub struct Previous<'a> {
    /// The entry's directory (its files are in `files/`, journal segments in `journal/`).
    pub entry_dir: &'a Path,
    pub manifest: &'a Manifest,
}

impl Previous<'_> {
    fn files_dir(&self) -> PathBuf {
        self.entry_dir.join("files")
    }

    /// Its copy of the journal at `rel`, if it kept one in segments.
    fn journal(&self, rel: &str) -> Option<journal::Earlier<'_>> {
        let record = self.manifest.file(rel)?;
        Some(journal::Earlier {
            entry_dir: self.entry_dir,
            mark: record.journal.as_ref()?,
            segments: record.segments.as_deref()?,
        })
    }
}

/// What a copy made: a record per file, and the journals it had to copy whole (their
/// pre-copy no longer matched: a GC or a recovery rewrote them meanwhile).
pub struct Copied {
    pub records: Vec<FileRecord>,
    pub whole_journals: Vec<String>,
}

/// Before the server stops: pre-copies every chunk journal of the data directory into the entry
/// at `entry_dir` (see [`journal::precopy`]), by its path in the entry.
pub fn precopy_journals(
    sources: &CopySources,
    entry_dir: &Path,
    previous: Option<&Previous<'_>>,
) -> io::Result<BTreeMap<String, journal::Precopied>> {
    let mut files = Vec::new();
    walk(&sources.data_dir, Path::new("data"), &mut files)?;
    let mut done = BTreeMap::new();
    for (from, rel) in files {
        let rel = rel.to_string_lossy().replace('\\', "/");
        if journal::kept_in_segments(&rel) {
            let earlier = previous.and_then(|p| p.journal(&rel));
            let precopied = journal::precopy(&from, &rel, entry_dir, earlier)?;
            done.insert(rel, precopied);
        }
    }
    Ok(done)
}

/// Whether the file at `rel` (a path inside an entry's `files/`) is a Dolt table file: 32
/// characters of Dolt's base-32 alphabet (optionally `.darc`, an archive) directly in `noms/` or
/// `noms/oldgen/`, and not the journal (whose name is all `v`).
pub fn immutable(rel: &str) -> bool {
    let mut parts = rel.rsplit('/');
    let name = parts.next().unwrap_or_default();
    let parent = parts.next().unwrap_or_default();
    let grandparent = parts.next().unwrap_or_default();
    let in_noms = parent == "noms" || (parent == "oldgen" && grandparent == "noms");
    let stem = name.strip_suffix(".darc").unwrap_or(name);
    in_noms
        && stem.len() == 32
        && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'v'))
        && stem.bytes().any(|b| b != b'v')
}

/// Copies everything `sources` names into the entry at `entry_dir`: the data directory to
/// `files/data`, each extra file to its own path under `files/`, chunk journals in segments
/// (completing what `precopied` holds). Missing extra files are skipped (a server that never
/// had a login has no `auth.db`). `progress` is told the bytes of each file done.
pub fn copy_sources(
    sources: &CopySources,
    entry_dir: &Path,
    previous: Option<Previous<'_>>,
    mut precopied: BTreeMap<String, journal::Precopied>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Copied> {
    let dest = &entry_dir.join("files");
    let mut whole_journals = Vec::new();
    let mut files = Vec::new();
    walk(&sources.data_dir, Path::new("data"), &mut files)?;
    for (from, to) in &sources.extra {
        if from.is_file() {
            files.push((from.clone(), to.clone()));
        }
    }
    let mut records = Vec::with_capacity(files.len());
    for (from, rel) in files {
        let rel_text = rel.to_string_lossy().replace('\\', "/");
        if RUNTIME_FILES.contains(&rel_text.as_str()) {
            continue;
        }
        if journal::kept_in_segments(&rel_text) {
            let pre = precopied.remove(&rel_text);
            let (segments, mark, whole) = journal::finish(&from, &rel_text, entry_dir, pre)?;
            if whole {
                whole_journals.push(rel_text.clone());
            }
            let record = FileRecord {
                size: segments.iter().map(|s| s.size).sum(),
                sha256: journal::combined_sha256(&segments),
                linked: false,
                path: rel_text,
                segments: Some(segments),
                journal: Some(mark),
            };
            progress(record.size);
            records.push(record);
            continue;
        }
        let to = dest.join(&rel);
        if let Some(parent) = to.parent() {
            private_dir_all(parent)?;
        }
        let record = match link_from_previous(&from, &to, &rel_text, previous.as_ref())? {
            Some(record) => record,
            None => copy_file(&from, &to, rel_text)?,
        };
        progress(record.size);
        records.push(record);
    }
    // A journal pre-copied and gone since (a GC moved it into a table file): not part of it.
    for rel in precopied.keys() {
        let _ = fs::remove_dir_all(entry_dir.join("journal").join(rel));
    }
    private_dir_all(dest)?;
    sync_dirs(entry_dir)?;
    Ok(Copied {
        records,
        whole_journals,
    })
}

/// Lists regular files under `dir`, each with its path relative to the entry.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let rel = rel.join(entry.file_name());
        if kind.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if kind.is_file() {
            out.push((entry.path(), rel));
        }
        // Sockets and symbolic links are not part of a server's state.
    }
    Ok(())
}

fn link_from_previous(
    from: &Path,
    to: &Path,
    rel: &str,
    previous: Option<&Previous<'_>>,
) -> io::Result<Option<FileRecord>> {
    let Some(previous) = previous.filter(|_| immutable(rel)) else {
        return Ok(None);
    };
    let Some(before) = previous.manifest.file(rel) else {
        return Ok(None);
    };
    let size = fs::metadata(from)?.len();
    let source = previous.files_dir().join(rel);
    if before.size != size || !source.is_file() {
        return Ok(None);
    }
    fs::hard_link(&source, to)?;
    Ok(Some(FileRecord {
        path: rel.to_string(),
        size,
        sha256: before.sha256.clone(),
        linked: true,
        segments: None,
        journal: None,
    }))
}

/// Copies one file, hashing it on the way, and fsyncs the copy (mode 0600).
pub fn copy_file(from: &Path, to: &Path, rel: String) -> io::Result<FileRecord> {
    let (size, sha256) = copy_hashed(&mut File::open(from)?, to, 1 << 20)?;
    Ok(FileRecord {
        path: rel,
        size,
        sha256,
        linked: false,
        segments: None,
        journal: None,
    })
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut input = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Fsyncs every directory under (and including) `dir`, so the new names are durable.
pub fn sync_dirs(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_dirs(&entry.path())?;
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_files_are_immutable_and_the_journal_is_not() {
        let table = "data/db/.dolt/noms/0123456789abcdefghijklmnopqrstuv";
        assert!(immutable(table));
        assert!(immutable(
            "data/db/.dolt/noms/oldgen/0123456789abcdefghijklmnopqrstuv"
        ));
        assert!(immutable(
            "data/db/.dolt/noms/0123456789abcdefghijklmnopqrstuv.darc"
        ));
        assert!(!immutable(
            "data/db/.dolt/noms/vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
        ));
        assert!(!immutable("data/db/.dolt/noms/manifest"));
        assert!(!immutable(
            "data/db/.dolt/noms/0123456789abcdefghijklmnopqrstuw"
        ));
        assert!(!immutable("data/db/.dolt/0123456789abcdefghijklmnopqrstuv"));
    }

    #[test]
    fn unchanged_table_files_are_linked_and_changed_ones_copied() {
        let base = std::env::temp_dir().join(format!("dgs-copytree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let src = base.join("src");
        let noms = src.join("db/.dolt/noms");
        fs::create_dir_all(&noms).unwrap();
        let table = "0123456789abcdefghijklmnopqrstuv";
        fs::write(noms.join(table), b"table").unwrap();
        fs::write(noms.join("manifest"), b"m1").unwrap();
        fs::write(src.join(".dolt-ignored"), b"x").unwrap();
        let sources = CopySources {
            data_dir: src.clone(),
            extra: vec![],
        };
        let first = base.join("e1");
        let records = copy_sources(&sources, &first, None, BTreeMap::new(), &mut |_| {})
            .unwrap()
            .records;
        assert!(records.iter().all(|r| !r.linked));
        let manifest = Manifest {
            id: "e1".into(),
            files: records,
            ..Manifest::default()
        };
        fs::write(noms.join("manifest"), b"m2").unwrap();
        let second = base.join("e2");
        let previous = Previous {
            entry_dir: &first,
            manifest: &manifest,
        };
        let records = copy_sources(
            &sources,
            &second,
            Some(previous),
            BTreeMap::new(),
            &mut |_| {},
        )
        .unwrap()
        .records;
        let rel = format!("data/db/.dolt/noms/{table}");
        let linked = records.iter().find(|r| r.path == rel).unwrap();
        assert!(linked.linked);
        assert_eq!(linked.sha256, manifest.file(&rel).unwrap().sha256);
        let manifest_file = records
            .iter()
            .find(|r| r.path == "data/db/.dolt/noms/manifest")
            .unwrap();
        assert!(!manifest_file.linked);
        assert_eq!(
            fs::read(second.join("files/data/db/.dolt/noms/manifest")).unwrap(),
            b"m2"
        );
        assert_eq!(
            sha256_file(&second.join("files").join(&rel)).unwrap(),
            linked.sha256
        );
        fs::remove_dir_all(base).unwrap();
    }
}
