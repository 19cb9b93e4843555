//! Replicating one copy entry: every object it refers to that the repository lacks, hashed,
//! compressed (and encrypted) and sent as each file is read, then its manifest, only if absent.
//! Blocking; run on a blocking thread.

use std::fs::File;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::listed::Listed;
use super::seal::{Recipients, Sealing};
use super::store::{Put, Store};
use super::{entry_key, object_key, objects_of};
use crate::catalog::Entry;
use crate::catalog::journal;

/// zstd's level for objects: its default, fast enough to keep up with a disk.
const LEVEL: i32 = 3;
/// An upload longer than this checks every object again after its manifest, not only those it
/// found in place: well under any sensible `prune_grace`.
const RECHECK_ALL_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// What an upload did; kept beside the entry as `offsite.json` once it succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The repository, `s3://bucket/prefix`.
    pub url: String,
    pub at_unix: f64,
    /// Objects the entry refers to.
    pub objects: usize,
    /// Of those, the ones this upload sent (the others were there already).
    pub sent: usize,
    /// Uncompressed bytes of the objects sent.
    pub bytes_sent_raw: u64,
    /// Bytes sent, compressed.
    pub bytes_sent: u64,
    /// Uncompressed bytes of the objects already there.
    pub bytes_deduplicated: u64,
    /// Objects found missing again after the manifest was written (deleted meanwhile by a
    /// retention running elsewhere on the prefix) and sent again.
    #[serde(default)]
    pub repaired: usize,
}

/// The file beside an entry that says it is in the repository.
pub const RECORD: &str = "offsite.json";

/// The entry's upload record, if it was uploaded.
pub fn recorded(entry: &Entry) -> Option<UploadRecord> {
    let bytes = std::fs::read(entry.dir.join(RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the entry is complete in the repository at `url` (an entry uploaded to another
/// repository, before the configuration changed, is not).
pub fn uploaded_to(entry: &Entry, url: &str) -> bool {
    recorded(entry).is_some_and(|r| r.url == url)
}

/// Keeps `record` beside the entry (written to a temporary name, then renamed).
pub fn record(entry: &Entry, record: &UploadRecord) -> std::io::Result<()> {
    let tmp = entry.dir.join(format!(".{RECORD}.tmp"));
    crate::catalog::copy_tree::write_private(&tmp, &serde_json::to_vec_pretty(record)?)?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, entry.dir.join(RECORD))
}

/// Uploads `entry` to `store`, encrypted to `recipients` if there are any: afterwards the entry
/// is listed in the repository, whole. `progress` gets the uncompressed bytes of each object
/// dealt with.
pub fn upload(
    store: &Store,
    entry: &Entry,
    recipients: Option<&Recipients>,
    progress: &mut dyn FnMut(u64),
) -> Result<UploadRecord, String> {
    let manifest_key = entry_key(&store.prefix, &entry.id);
    let objects = objects_of(&entry.manifest);
    let mut record = UploadRecord {
        url: store.url.clone(),
        at_unix: 0.0,
        objects: objects.len(),
        sent: 0,
        bytes_sent_raw: 0,
        bytes_sent: 0,
        bytes_deduplicated: 0,
        repaired: 0,
    };
    let places = places_by_sha(entry)?;
    let started = std::time::Instant::now();
    let send = |sha: &str, key: &str| -> Result<Sent, String> {
        let path = places
            .get(sha)
            .ok_or_else(|| format!("entry {}: no file holds {sha}", entry.id))?;
        send_object(store, key, path, sha, recipients)
    };
    // Objects found in place: a retention elsewhere on the prefix may delete one before the
    // manifest names it, so they are looked at again once it does.
    let mut found = Vec::new();
    for (sha, size) in &objects {
        let key = object_key(&store.prefix, sha, recipients.is_some());
        if store.exists(&key)? {
            record.bytes_deduplicated += size;
            found.push((sha.as_str(), key));
        } else {
            let packed = send(sha, &key)?;
            record.sent += 1;
            record.bytes_sent_raw += packed.raw_len;
            record.bytes_sent += packed.len;
        }
        progress(*size);
    }
    let listed = Listed::of(&entry.manifest, recipients)?;
    match store.put(&manifest_key, &listed.to_json(), true)? {
        Put::Written | Put::AlreadyThere => {}
    }
    // A long upload: the objects it sent first may have aged past a retention's grace too.
    let recheck: Vec<(&str, String)> = match started.elapsed() > RECHECK_ALL_AFTER {
        true => objects
            .iter()
            .map(|(sha, _)| {
                (
                    sha.as_str(),
                    object_key(&store.prefix, sha, recipients.is_some()),
                )
            })
            .collect(),
        false => found,
    };
    for (sha, key) in recheck {
        if !store.exists(&key)? {
            tracing::warn!(entry = %entry.id, object = %key, "an object was deleted while the entry was uploaded: sent again");
            send(sha, &key)?;
            record.repaired += 1;
        }
    }
    record.at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Ok(record)
}

/// Where in the entry the bytes of each SHA-256 are: a file, or a journal segment.
fn places_by_sha(
    entry: &Entry,
) -> Result<std::collections::HashMap<String, std::path::PathBuf>, String> {
    let mut places = std::collections::HashMap::new();
    for file in &entry.manifest.files {
        match &file.segments {
            Some(segments) => {
                for (index, segment) in segments.iter().enumerate() {
                    let path = journal::segment_path(&entry.dir, &file.path, index);
                    places.entry(segment.sha256.clone()).or_insert(path);
                }
            }
            None => {
                places
                    .entry(file.sha256.clone())
                    .or_insert(entry.file_path(file)?);
            }
        }
    }
    Ok(places)
}

/// What sending one object took.
struct Sent {
    /// The file's bytes.
    raw_len: u64,
    /// The object's: compressed, and encrypted with recipients.
    len: u64,
}

/// Sends `path` as object `key`: read, hashed, compressed, encrypted to `recipients`, and sent
/// as it goes (in parts, several at once, for a large one), with no copy on disk. The file must
/// hash to `sha256`, or nothing is left at `key`: what goes off-site is what the entry's
/// manifest says, never a file changed since.
fn send_object(
    store: &Store,
    key: &str,
    path: &std::path::Path,
    sha256: &str,
    recipients: Option<&Recipients>,
) -> Result<Sent, String> {
    let failed = |e: std::io::Error| format!("compressing {}: {e}", path.display());
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = file.metadata().map_err(failed)?.len();
    let mut raw_len = 0;
    // zstd's worst case adds a little; the hint only bounds the number of parts.
    let hint = size + size / 64 + (1 << 20);
    let mut source = Some(file);
    let len = store.put_streamed(key, hint, &mut |to| {
        let mut reader = Hashing {
            inner: source.take().ok_or("the file was read already")?,
            hasher: sha2::Sha256::default(),
            len: 0,
        };
        let sink = match recipients {
            Some(recipients) => Sink::Sealed(recipients.seal(to).map_err(failed)?),
            None => Sink::Plain(to),
        };
        let mut encoder = zstd::stream::Encoder::new(sink, LEVEL).map_err(failed)?;
        std::io::copy(&mut reader, &mut encoder).map_err(failed)?;
        if let Sink::Sealed(sealing) = encoder.finish().map_err(failed)? {
            sealing.finish().map_err(failed)?;
        }
        use sha2::Digest;
        let found = crate::catalog::copy_tree::hex(&reader.hasher.finalize());
        if found != sha256 {
            return Err(format!(
                "{} changed since it was copied (SHA-256 {found}, the manifest says {sha256}): not uploaded",
                path.display()
            ));
        }
        raw_len = reader.len;
        Ok(())
    })?;
    Ok(Sent { raw_len, len })
}

/// Where compressed bytes go: the object, or an encryption into it.
enum Sink<'a> {
    Plain(&'a mut dyn Write),
    Sealed(Sealing<&'a mut dyn Write>),
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(file) => file.write(buf),
            Sink::Sealed(sealing) => sealing.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(file) => file.flush(),
            Sink::Sealed(sealing) => sealing.flush(),
        }
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::manifest::Manifest;

    #[test]
    fn an_entry_counts_as_uploaded_only_to_the_repository_its_record_names() {
        let dir = std::env::temp_dir().join(format!("dgs-offsite-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let entry = Entry {
            id: "e".into(),
            dir: dir.clone(),
            manifest: Manifest {
                id: "e".into(),
                ..Manifest::default()
            },
        };
        assert!(!uploaded_to(&entry, "s3://a/p"));
        let uploaded = UploadRecord {
            url: "s3://a/p".into(),
            at_unix: 2.0,
            objects: 3,
            sent: 1,
            bytes_sent_raw: 10,
            bytes_sent: 5,
            bytes_deduplicated: 20,
            repaired: 0,
        };
        record(&entry, &uploaded).unwrap();
        assert_eq!(recorded(&entry), Some(uploaded));
        assert!(uploaded_to(&entry, "s3://a/p"));
        assert!(!uploaded_to(&entry, "s3://b/p"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
