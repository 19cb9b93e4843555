//! Reading an entry back from the repository: its manifest, then every object it names,
//! decompressed and checked against its SHA-256, laid out as a catalog entry in a local
//! directory, from which `restore` writes the server's files as it does for a local entry.
//! Blocking; run on a blocking thread.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::listed::Listed;
use super::seal::Identities;
use super::store::Store;
use super::{entry_key, object_key};
use crate::catalog::Entry;
use crate::catalog::copy_tree::{hex, private_dir_all, private_file, write_private};
use crate::catalog::journal;
use crate::catalog::manifest::Manifest;

/// The ids of the entries listed in the repository, oldest first (ids sort by time).
pub fn list(store: &Store) -> Result<Vec<String>, String> {
    let dir = format!("{}entries/", store.prefix);
    let mut ids: Vec<String> = store
        .list(&dir)?
        .into_iter()
        .filter_map(|key| {
            key.strip_prefix(&dir)?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    Ok(ids)
}

/// Entry `id` (or the newest, for `latest`) as the repository lists it.
pub fn find(store: &Store, id: &str) -> Result<Listed, String> {
    let id = match id {
        "latest" => list(store)?
            .pop()
            .ok_or_else(|| format!("{} has no entries yet", store.url))?,
        id => id.to_string(),
    };
    let bytes = store
        .get(&entry_key(&store.prefix, &id))?
        .ok_or_else(|| format!("no entry {id:?} in {}", store.url))?;
    let listed = Listed::parse(&bytes)
        .map_err(|e| format!("entry {id} in {}: unreadable manifest: {e}", store.url))?;
    if listed.id() != id {
        return Err(format!(
            "entry {id} in {}: its manifest names {}",
            store.url,
            listed.id()
        ));
    }
    Ok(listed)
}

/// The entry `listed` (from [`find`]) rebuilt in `dir` (which must be empty or absent),
/// decrypted with `identities` if the repository is encrypted. `progress` gets the uncompressed
/// bytes of each object fetched.
pub fn fetch(
    store: &Store,
    listed: &Listed,
    identities: Option<&Identities>,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Entry, String> {
    let manifest = listed.manifest(identities)?;
    let id = manifest.id.clone();
    let sealed = listed.encrypted().then_some(identities).flatten();
    private_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // An object fetched once serves every place that holds the same bytes.
    let mut fetched: HashMap<String, PathBuf> = HashMap::new();
    for file in &manifest.files {
        let rel = file
            .relative()
            .ok_or_else(|| format!("{:?}: not a path inside the entry", file.path))?;
        let places: Vec<(String, PathBuf)> = match &file.segments {
            Some(segments) => segments
                .iter()
                .enumerate()
                .map(|(i, s)| (s.sha256.clone(), journal::segment_path(dir, &file.path, i)))
                .collect(),
            None => vec![(file.sha256.clone(), dir.join("files").join(rel))],
        };
        for (sha, path) in places {
            if let Some(parent) = path.parent() {
                private_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            if let Some(first) = fetched.get(&sha) {
                std::fs::hard_link(first, &path).map_err(|e| format!("{}: {e}", path.display()))?;
                continue;
            }
            let len = fetch_object(store, &sha, sealed, &path)?;
            progress(len);
            fetched.insert(sha, path);
        }
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    write_private(&dir.join("manifest.json"), &json)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Entry {
        id,
        dir: dir.to_path_buf(),
        manifest,
    })
}

/// Object `sha256` decrypted (with `sealed`'s keys) and decompressed into `path` as it
/// arrives, checked; returns its length. A damaged object leaves no file behind.
fn fetch_object(
    store: &Store,
    sha256: &str,
    sealed: Option<&Identities>,
    path: &Path,
) -> Result<u64, String> {
    let mut file = private_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let result = fetch_into(store, sha256, sealed, &mut file);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Object `sha256` decrypted and decompressed into `out` as it arrives, checked against its
/// SHA-256; returns its length.
fn fetch_into(
    store: &Store,
    sha256: &str,
    sealed: Option<&Identities>,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let key = object_key(&store.prefix, sha256, sealed.is_some());
    let mut decoder = zstd::stream::write::Decoder::new(Hashing {
        inner: out,
        hasher: sha2::Sha256::default(),
        len: 0,
    })
    .map_err(|e| format!("{key}: cannot decompress: {e}"))?;
    let found = store.get_with(&key, &mut |body| match sealed {
        None => std::io::copy(body, &mut decoder).map(|_| ()),
        Some(identities) => {
            let mut plain = identities.open(body).map_err(std::io::Error::other)?;
            std::io::copy(&mut plain, &mut decoder).map(|_| ())
        }
    });
    if !found.map_err(|e| format!("{e}: {key} is damaged or not ours"))? {
        return Err(format!("{key} is missing from {}", store.url));
    }
    decoder
        .flush()
        .map_err(|e| format!("{key}: cannot decompress: {e}"))?;
    let out = decoder.into_inner();
    let found = hex(&out.hasher.finalize());
    if found != sha256 {
        return Err(format!(
            "{key} is damaged: its bytes hash to {found}, not {sha256}"
        ));
    }
    Ok(out.len)
}

/// The server's files of the entry `listed` written straight into `to` (the restore's staging
/// directory), as `catalog::materialize` writes a local entry's: each object checked against its
/// SHA-256 as it arrives, a chunk journal reassembled from its segments, every file synced. No
/// copy of the entry is kept on the way. Returns the manifest.
pub fn restore_files(
    store: &Store,
    listed: &Listed,
    identities: Option<&Identities>,
    to: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, String> {
    let manifest = listed.manifest(identities)?;
    let sealed = listed.encrypted().then_some(identities).flatten();
    // A file whose bytes were fetched once is copied locally for the others (never linked: the
    // server may later write one of them in place).
    let mut written: HashMap<String, PathBuf> = HashMap::new();
    for file in &manifest.files {
        let rel = file
            .relative()
            .ok_or_else(|| format!("{:?}: not a path inside the entry", file.path))?;
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            private_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let failed = |e: std::io::Error| format!("{}: {e}", dest.display());
        let size = match (&file.segments, written.get(&file.sha256)) {
            (None, Some(first)) => std::fs::copy(first, &dest).map_err(failed)?,
            (None, None) => fetch_object(store, &file.sha256, sealed, &dest)?,
            (Some(segments), _) => {
                let mut out = private_file(&dest).map_err(failed)?;
                let mut size = 0;
                for segment in segments {
                    let len = fetch_into(store, &segment.sha256, sealed, &mut out)?;
                    if len != segment.size {
                        return Err(format!(
                            "{}: a journal segment differs from the manifest",
                            file.path
                        ));
                    }
                    size += len;
                }
                if journal::combined_sha256(segments) != file.sha256 {
                    return Err(format!("{}: differs from the manifest", file.path));
                }
                size
            }
        };
        if size != file.size {
            return Err(format!(
                "{}: {size} bytes, the manifest says {}",
                file.path, file.size
            ));
        }
        std::fs::File::open(&dest)
            .and_then(|f| f.sync_all())
            .map_err(failed)?;
        progress(size);
        if file.segments.is_none() {
            written.entry(file.sha256.clone()).or_insert(dest);
        }
    }
    Ok(manifest)
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
