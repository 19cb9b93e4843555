//! Dolt's chunk journal in the catalog. Each database keeps new chunks in one journal file
//! (`<db>/.dolt/noms/` + 32 `v`s, with its index `journal.idx` beside it) until a GC moves them
//! into table files; the journal can reach hundreds of megabytes, and copying it whole made every
//! copy window's stall and every entry's size follow the journal instead of the change. So both
//! files ([`kept_in_segments`]) are copied in two parts and kept in parts:
//!
//! - **Segments.** An entry stores a journal as [`SEGMENT`]-sized pieces under
//!   `<entry>/journal/<path>/<n>` (the manifest lists each with its size and checksum). A piece
//!   another entry already holds, of the same journal, is hard-linked: consecutive entries share
//!   what they have in common, and an entry costs what was appended since the last one.
//! - **Before the gate closes** ([`precopy`]), while the server runs, every whole segment below
//!   the journal's current size is linked or copied: Dolt only appends to its journal between
//!   GCs, so those bytes can no longer change. **Inside the window** ([`finish`]), with the
//!   server stopped, the journal is checked to still begin with what was pre-copied, and only
//!   the rest is copied: at most one segment plus what was appended meanwhile.
//!
//! Whether a file still begins with bytes copied earlier is decided by a [`Mark`]: its inode,
//! the length copied, and the checksums of the first and of the last 64 KiB of that length. Dolt
//! never rewrites a journal in place (`docs/doltgres-notes.md`, pinned by
//! `doltgres_journal_facts.rs`); a GC deletes it and the next write starts a new file — which may
//! get the same inode number back, hence the checksums: a new journal's bytes differ where the
//! old one began and where it ended. A journal that no longer matches (a GC ran between the
//! pre-copy and the stop, or a crash recovery cut it short) is copied whole, and the window's
//! steps say so.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::private::{copy_hashed, hex, private_dir_all};

/// The size of a journal segment.
pub const SEGMENT: u64 = 1 << 20;
/// How much of its start and of its end a [`Mark`] checks.
const CHECKED: u64 = 64 * 1024;

/// Whether the file at `rel` (a path inside an entry's `files/`) is a Dolt chunk journal.
pub fn is_journal(rel: &str) -> bool {
    let mut parts = rel.rsplit('/');
    let name = parts.next().unwrap_or_default();
    parts.next() == Some("noms") && name.len() == 32 && name.bytes().all(|b| b == b'v')
}

/// Whether the file at `rel` is kept in segments: a chunk journal, or the journal's index
/// (`journal.idx`), which Dolt also only appends to (in whole batches; on opening it cuts a
/// partial last batch, and rebuilds an index it cannot read — both caught by the [`Mark`]
/// check, which then copies it whole).
pub fn kept_in_segments(rel: &str) -> bool {
    let mut parts = rel.rsplit('/');
    let name = parts.next().unwrap_or_default();
    is_journal(rel) || (name == "journal.idx" && parts.next() == Some("noms"))
}

/// What identifies the first `size` bytes of a journal file (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub inode: u64,
    pub size: u64,
    /// SHA-256 of the first min(64 KiB, size) bytes.
    pub head: String,
    /// SHA-256 of the last min(64 KiB, size) bytes before `size`.
    pub tail: String,
}

/// One piece of a stored journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub size: u64,
    pub sha256: String,
    /// Hard-linked from an earlier entry, not copied.
    pub linked: bool,
}

/// The mark of the first `size` bytes of the file at `path`.
pub fn mark(path: &Path, size: u64) -> io::Result<Mark> {
    let mut file = File::open(path)?;
    let inode = file.metadata()?.ino();
    let head = hash_range(&mut file, 0, size.min(CHECKED))?;
    let tail = hash_range(&mut file, size.saturating_sub(CHECKED), size)?;
    Ok(Mark {
        inode,
        size,
        head,
        tail,
    })
}

/// Whether the file at `path` still begins with the bytes `mark` describes.
pub fn still_begins_with(path: &Path, mark: &Mark) -> io::Result<bool> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if meta.ino() != mark.inode || meta.len() < mark.size {
        return Ok(false);
    }
    Ok(self::mark(path, mark.size)? == *mark)
}

/// Where segment `index` of the journal `rel` is kept in the entry at `entry_dir`.
pub fn segment_path(entry_dir: &Path, rel: &str, index: usize) -> PathBuf {
    entry_dir
        .join("journal")
        .join(rel)
        .join(format!("{index:06}"))
}

/// An earlier entry's copy of a journal at the same path, to link segments from.
pub struct Earlier<'a> {
    pub entry_dir: &'a Path,
    pub mark: &'a Mark,
    pub segments: &'a [Segment],
}

/// What [`precopy`] did: the journal's mark when it looked, and the whole segments below it.
#[derive(Debug, Clone)]
pub struct Precopied {
    pub mark: Mark,
    pub segments: Vec<Segment>,
}

/// Before the gate closes: links or copies every whole segment of the live journal at `live`
/// (path `rel` in the entry) below its current size into the entry at `entry_dir`.
pub fn precopy(
    live: &Path,
    rel: &str,
    entry_dir: &Path,
    earlier: Option<Earlier<'_>>,
) -> io::Result<Precopied> {
    let size = fs::metadata(live)?.len();
    let mark = mark(live, size)?;
    // The earlier copy's whole segments are this journal's too if it still begins with them.
    let shared = match &earlier {
        Some(e) if still_begins_with(live, e.mark)? => (e.mark.size / SEGMENT) as usize,
        _ => 0,
    };
    let whole = (size / SEGMENT) as usize;
    let mut input = File::open(live)?;
    let mut segments = Vec::with_capacity(whole);
    for index in 0..whole {
        let dest = segment_path(entry_dir, rel, index);
        if let Some(parent) = dest.parent() {
            private_dir_all(parent)?;
        }
        let linked = earlier
            .as_ref()
            .filter(|e| index < shared && index < e.segments.len())
            .map(|e| (segment_path(e.entry_dir, rel, index), &e.segments[index]));
        match linked {
            Some((source, segment)) if source.is_file() => {
                fs::hard_link(&source, &dest)?;
                segments.push(Segment {
                    linked: true,
                    ..segment.clone()
                });
            }
            _ => segments.push(copy_range(
                &mut input,
                index as u64 * SEGMENT,
                SEGMENT,
                &dest,
            )?),
        }
    }
    Ok(Precopied { mark, segments })
}

/// Inside the window, with the server stopped: completes the journal `rel` from the live file,
/// keeping what [`precopy`] did if the file still begins with it, else copying it whole.
/// Returns the segments, the journal's mark now, and whether it was copied whole.
pub fn finish(
    live: &Path,
    rel: &str,
    entry_dir: &Path,
    precopied: Option<Precopied>,
) -> io::Result<(Vec<Segment>, Mark, bool)> {
    let kept = match precopied {
        Some(pre) if still_begins_with(live, &pre.mark)? => Some(pre.segments),
        _ => None,
    };
    let whole = kept.is_none();
    let mut segments = kept.unwrap_or_default();
    let size = fs::metadata(live)?.len();
    let mut input = File::open(live)?;
    let mut index = segments.len();
    while (index as u64) * SEGMENT < size {
        let dest = segment_path(entry_dir, rel, index);
        if let Some(parent) = dest.parent() {
            private_dir_all(parent)?;
        }
        // A segment left by the pre-copy of a journal that changed is replaced.
        let _ = fs::remove_file(&dest);
        let start = index as u64 * SEGMENT;
        segments.push(copy_range(
            &mut input,
            start,
            SEGMENT.min(size - start),
            &dest,
        )?);
        index += 1;
    }
    Ok((segments, mark(live, size)?, whole))
}

/// The SHA-256 a manifest records for a segmented file: of its segments' checksums in order.
pub fn combined_sha256(segments: &[Segment]) -> String {
    let mut hasher = Sha256::new();
    for segment in segments {
        hasher.update(segment.sha256.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Writes the stored journal `rel` of the entry at `entry_dir` to `out`, checking each segment
/// against its size and checksum; `progress` is told the bytes of each segment.
pub fn reassemble(
    entry_dir: &Path,
    rel: &str,
    segments: &[Segment],
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, String> {
    let mut total = 0;
    for (index, segment) in segments.iter().enumerate() {
        let path = segment_path(entry_dir, rel, index);
        let kind = fs::symlink_metadata(&path)
            .map_err(|e| format!("{rel} segment {index}: {e}"))?
            .file_type();
        if !kind.is_file() {
            return Err(format!("{rel} segment {index}: not a regular file"));
        }
        let bytes = fs::read(&path).map_err(|e| format!("{rel} segment {index}: {e}"))?;
        if bytes.len() as u64 != segment.size || hex(&Sha256::digest(&bytes)) != segment.sha256 {
            return Err(format!(
                "{rel} segment {index}: size or checksum differs from the manifest"
            ));
        }
        out.write_all(&bytes)
            .map_err(|e| format!("{rel} segment {index}: {e}"))?;
        total += segment.size;
        progress(segment.size);
    }
    Ok(total)
}

/// Copies `len` bytes (fewer at the end of the file) from `start` into a new private file at
/// `dest`, hashing them, and fsyncs it.
fn copy_range(input: &mut File, start: u64, len: u64, dest: &Path) -> io::Result<Segment> {
    input.seek(SeekFrom::Start(start))?;
    let (size, sha256) = copy_hashed(&mut input.take(len), dest, 256 * 1024)?;
    Ok(Segment {
        size,
        sha256,
        linked: false,
    })
}

/// SHA-256 of the bytes from `start` to `end`.
fn hash_range(file: &mut File, start: u64, end: u64) -> io::Result<String> {
    file.seek(SeekFrom::Start(start))?;
    let mut hasher = Sha256::new();
    io::copy(
        &mut file.take(end.saturating_sub(start)),
        &mut HashWriter(&mut hasher),
    )?;
    Ok(hex(&hasher.finalize()))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tempdir;

    /// Finishes a pre-copy into `entry` of a journal that only grew since: nothing copied whole,
    /// and the segments put together are the journal.
    fn finish_grown(live: &Path, entry: &Path, pre: Precopied) -> (Vec<Segment>, Mark) {
        let (segments, mark, whole) = finish(live, REL, entry, Some(pre)).unwrap();
        assert!(!whole, "the journal only grew");
        assert_reassembles(entry, &segments, live);
        (segments, mark)
    }

    /// The segments copied into `entry` put together are the live journal's bytes.
    fn assert_reassembles(entry: &Path, segments: &[Segment], live: &Path) {
        assert_eq!(reassembled(entry, REL, segments), fs::read(live).unwrap());
    }

    fn append(path: &Path, bytes: usize, seed: u8) {
        let data: Vec<u8> = (0..bytes)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        File::options()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(&data)
            .unwrap();
    }

    fn reassembled(entry: &Path, rel: &str, segments: &[Segment]) -> Vec<u8> {
        let mut out = Vec::new();
        reassemble(entry, rel, segments, &mut out, &mut |_| {}).unwrap();
        out
    }

    const REL: &str = "data/db/.dolt/noms/vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";

    #[test]
    fn the_journal_is_told_by_its_name() {
        assert!(is_journal(REL));
        assert!(kept_in_segments(REL));
        assert!(kept_in_segments("data/db/.dolt/noms/journal.idx"));
        assert!(!is_journal("data/db/.dolt/noms/journal.idx"));
        assert!(!is_journal(
            "data/db/.dolt/noms/0123456789abcdefghijklmnopqrstuv"
        ));
        assert!(!is_journal(
            "data/db/.dolt/vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
        ));
    }

    #[test]
    fn an_appended_journal_keeps_the_precopy_and_shares_segments_with_the_earlier_entry() {
        let (_tmp, dir) = tempdir("journal-append");
        let live = dir.join("journal");
        append(&live, 3 * SEGMENT as usize + 1000, 1);
        // The first entry: everything copied.
        let first = dir.join("e1");
        let pre = precopy(&live, REL, &first, None).unwrap();
        assert_eq!(pre.segments.len(), 3);
        append(&live, 5000, 2);
        let (segments, mark) = finish_grown(&live, &first, pre);
        assert_eq!(segments.len(), 4);
        // The second entry: the three whole segments linked, the tail copied.
        append(&live, SEGMENT as usize, 3);
        let second = dir.join("e2");
        let earlier = Earlier {
            entry_dir: &first,
            mark: &mark,
            segments: &segments,
        };
        let pre = precopy(&live, REL, &second, Some(earlier)).unwrap();
        let linked = pre.segments.iter().filter(|s| s.linked).count();
        assert_eq!(linked, 3);
        finish_grown(&live, &second, pre);
    }

    #[test]
    fn a_journal_rewritten_after_the_precopy_is_copied_whole() {
        let (_tmp, dir) = tempdir("journal-rewritten");
        let live = dir.join("journal");
        append(&live, 2 * SEGMENT as usize + 10, 1);
        let entry = dir.join("e1");
        let pre = precopy(&live, REL, &entry, None).unwrap();
        // A GC: the journal goes, a new one starts (here in the same place, longer).
        fs::remove_file(&live).unwrap();
        append(&live, 3 * SEGMENT as usize, 9);
        let (segments, _, whole) = finish(&live, REL, &entry, Some(pre)).unwrap();
        assert!(whole, "the pre-copy no longer matches");
        assert_reassembles(&entry, &segments, &live);
    }

    #[test]
    fn a_changed_segment_fails_reassembly() {
        let (_tmp, dir) = tempdir("journal-changed");
        let live = dir.join("journal");
        append(&live, SEGMENT as usize + 10, 1);
        let entry = dir.join("e1");
        let (segments, _, _) = finish(&live, REL, &entry, None).unwrap();
        fs::write(segment_path(&entry, REL, 1), b"changed").unwrap();
        let mut out = Vec::new();
        let err = reassemble(&entry, REL, &segments, &mut out, &mut |_| {}).unwrap_err();
        assert!(err.contains("segment 1"), "{err}");
    }
}
