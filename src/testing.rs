//! Helpers for this crate's unit tests only (compiled with `cfg(test)`). A leaf.

use std::path::PathBuf;

/// A fresh directory named after `name`, removed when the first value drops.
pub fn tempdir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("dgs-{name}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}
