//! [`FileStamp`]: whether a file changed since it was read (certificates, auth files, secret
//! files). A leaf.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// A file's identity and state, following symlinks: when any part differs the file was
/// rewritten, replaced, or a symlink on its path (a Kubernetes secret mount's `..data`) now
/// points elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// The stamp of `path` now; `None` if it cannot be read (missing mid-update, say).
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
            device: meta.dev(),
        })
    }
}
