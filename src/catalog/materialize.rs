//! Writing an entry's files out (for `restore`, and for `verify`'s scratch copy): exactly the
//! files its manifest lists, each checked against its size and checksum while it is copied, a
//! chunk journal reassembled from its segments. A path that leaves the entry, a symbolic link, a
//! file that differs from the manifest stops it.

use std::fs;
use std::path::Path;

use super::Entry;
use super::copy_tree;
use super::journal;

/// Copies the files an entry's manifest lists into `to`, checking each against the manifest as
/// it goes. `progress` is told the bytes of each file done.
pub fn materialize(entry: &Entry, to: &Path, progress: &mut dyn FnMut(u64)) -> Result<(), String> {
    for record in &entry.manifest.files {
        if let Some(segments) = &record.segments {
            restore_segmented(entry, record, segments, to, progress)?;
            continue;
        }
        let from = entry.file_path(record)?;
        let rel = record.relative().unwrap_or(Path::new(""));
        let kind = fs::symlink_metadata(&from)
            .map_err(|e| format!("{}: {e}", record.path))?
            .file_type();
        if !kind.is_file() {
            return Err(format!("{}: not a regular file", record.path));
        }
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            copy_tree::private_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let copied = copy_tree::copy_file(&from, &dest, record.path.clone())
            .map_err(|e| format!("{}: {e}", record.path))?;
        if copied.size != record.size {
            return Err(format!(
                "{}: {} bytes, the manifest says {}",
                record.path, copied.size, record.size
            ));
        }
        if copied.sha256 != record.sha256 {
            return Err(format!(
                "{}: checksum differs from the manifest",
                record.path
            ));
        }
        progress(copied.size);
    }
    Ok(())
}

/// A chunk journal kept in segments, reassembled into `to` with each segment checked.
fn restore_segmented(
    entry: &Entry,
    record: &super::manifest::FileRecord,
    segments: &[journal::Segment],
    to: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let rel = record
        .relative()
        .ok_or_else(|| format!("{:?}: not a path inside the entry", record.path))?;
    let dest = to.join(rel);
    if let Some(parent) = dest.parent() {
        copy_tree::private_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut file =
        copy_tree::private_file(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let size = journal::reassemble(&entry.dir, &record.path, segments, &mut file, progress)?;
    if size != record.size || journal::combined_sha256(segments) != record.sha256 {
        return Err(format!("{}: differs from the manifest", record.path));
    }
    file.sync_all()
        .map_err(|e| format!("{}: {e}", dest.display()))
}
