//! `manifest.json` of a copy entry: what was copied (files, sizes, checksums), what the server
//! held at the cut (each database's HEAD and working-set hash, per-table row counts, taken inside
//! the window), and how long the window's steps took.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::journal::{Mark, Segment};

/// One copied file, by its path inside the entry's `files/` directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Hard-linked from the previous entry (an immutable table file), not copied.
    pub linked: bool,
    /// A chunk journal, kept in segments (`super::journal`): `sha256` is then that of the
    /// segments' checksums, and the file is reassembled from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<Segment>>,
    /// A chunk journal's mark when it was copied: the next copy links the segments it shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<Mark>,
}

impl FileRecord {
    /// Its path inside the entry, if it stays there: relative, made of plain names only (no
    /// `..`, no root, not empty). A manifest is data read from disk; a path that would leave
    /// the entry is refused, not followed.
    pub fn relative(&self) -> Option<&std::path::Path> {
        let path = std::path::Path::new(&self.path);
        let plain = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        (plain && path.components().next().is_some()).then_some(path)
    }
}

/// One database at the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseState {
    pub name: String,
    /// `dolt_hashof('HEAD')`.
    pub head: String,
    /// `dolt_hashof_db()`: the working set, uncommitted changes included.
    pub working_set: String,
    /// Rows per table, by `schema.table`.
    pub tables: BTreeMap<String, u64>,
}

/// How long each step of the window took, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub inventory: f64,
    /// `dolt_gc()` of the databases whose journal passed `gc_journal_size` (0 without one).
    #[serde(default)]
    pub gc: f64,
    pub detach: f64,
    pub stop: f64,
    pub copy: f64,
    pub start: f64,
}

/// The whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub window_id: u64,
    pub created_unix: f64,
    pub doltgres_version: String,
    pub databases: Vec<DatabaseState>,
    pub files: Vec<FileRecord>,
    pub bytes_copied: u64,
    pub bytes_linked: u64,
    pub timings: Timings,
}

impl Manifest {
    /// Total size of the entry's files.
    pub fn bytes(&self) -> u64 {
        self.bytes_copied + self.bytes_linked
    }

    /// The record of a file, by its path.
    pub fn file(&self, path: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The state of a database, by its name.
    pub fn database(&self, name: &str) -> Option<&DatabaseState> {
        self.databases.iter().find(|d| d.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_entry_are_relative() {
        let record = |path: &str| FileRecord {
            path: path.into(),
            size: 0,
            sha256: String::new(),
            linked: false,
            segments: None,
            journal: None,
        };
        assert!(record("data/db/.dolt/noms/manifest").relative().is_some());
        for outside in ["/etc/passwd", "../x", "data/../../x", "", "./data"] {
            assert!(record(outside).relative().is_none(), "{outside:?}");
        }
    }
}
