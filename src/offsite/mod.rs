//! The off-site repository: copy entries replicated to S3-compatible object storage, and read
//! back from it by `restore`.
//!
//! A repository is a bucket and a prefix (`s3://bucket/prefix`). Inside it:
//!
//! - `objects/<sha256>.zst`: every file and journal segment of every entry, zstd-compressed and
//!   named by the SHA-256 of its uncompressed bytes (the checksum the entry's manifest already
//!   holds). Dolt's table files are immutable and the catalog keeps the journal in 1 MiB segments,
//!   so an object is uploaded once and every later entry that holds the same bytes refers to it:
//!   an entry costs what changed since the entries before it.
//! - `objects/<sha256>.zst.age` instead when the repository is encrypted ([`seal`]): compressed,
//!   then encrypted to the configured `age` recipients.
//! - `entries/<id>.json`: the entry's manifest ([`listed`]; sealed in an encrypted repository),
//!   written last and only if absent (`If-None-Match: *`), after every object it names is in
//!   the repository. An entry listed in
//!   `entries/` is complete; an upload cut off at any point leaves none listed, and the next
//!   attempt skips the objects already there.
//!
//! [`store`] speaks S3 (requests signed with AWS Signature V4), [`upload`] replicates an entry,
//! [`download`] rebuilds one locally for `restore`, and [`background`] runs uploads after copy
//! windows. Endpoint, region and credentials follow the AWS conventions ([`config`]).

pub mod background;
pub mod config;
pub mod download;
pub mod listed;
pub mod parts;
pub mod prune;
pub mod seal;
pub mod store;
pub mod upload;

use crate::catalog::manifest::Manifest;

/// The key of the object holding the bytes whose SHA-256 is `sha256`: compressed, and
/// encrypted if `sealed` (an encrypted repository's objects have their own names).
pub fn object_key(prefix: &str, sha256: &str, sealed: bool) -> String {
    match sealed {
        false => format!("{prefix}objects/{sha256}.zst"),
        true => format!("{prefix}objects/{sha256}.zst.age"),
    }
}

/// The key of entry `id`'s manifest.
pub fn entry_key(prefix: &str, id: &str) -> String {
    format!("{prefix}entries/{id}.json")
}

/// Every object an entry's manifest refers to (its files, or their journal segments), by
/// SHA-256, each once, with its uncompressed size.
pub fn objects_of(manifest: &Manifest) -> Vec<(String, u64)> {
    let mut seen = std::collections::HashSet::new();
    let mut objects = Vec::new();
    for file in &manifest.files {
        let parts: Vec<(String, u64)> = match &file.segments {
            Some(segments) => segments
                .iter()
                .map(|s| (s.sha256.clone(), s.size))
                .collect(),
            None => vec![(file.sha256.clone(), file.size)],
        };
        for (sha, size) in parts {
            if seen.insert(sha.clone()) {
                objects.push((sha, size));
            }
        }
    }
    objects
}

/// `s3://bucket/prefix[/…]` split into the bucket and the prefix (empty, or ending in `/`).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url}: an off-site repository is an s3://bucket/prefix URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url}: no bucket"));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = match prefix.is_empty() {
        true => String::new(),
        false => format!("{prefix}/"),
    };
    Ok((bucket.to_string(), prefix))
}

/// `s3://bucket/prefix/ID` (or `…/latest`): the repository's URL and the entry named.
pub fn split_entry(url: &str) -> Result<(String, String), String> {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((repo, id)) if repo.len() > "s3://".len() && !id.is_empty() => {
            Ok((repo.to_string(), id.to_string()))
        }
        _ => Err(format!(
            "{url}: name an entry after the repository: s3://bucket/prefix/ENTRY or …/latest"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_prefix_and_entry() {
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/").unwrap(), ("b".into(), "".into()));
        assert_eq!(
            parse_url("s3://b/p/q/").unwrap(),
            ("b".into(), "p/q/".into())
        );
        assert!(parse_url("file:///x").is_err());
        assert!(parse_url("s3:///p").is_err());
        assert_eq!(
            split_entry("s3://b/p/latest").unwrap(),
            ("s3://b/p".into(), "latest".into())
        );
        assert!(split_entry("s3://b").is_err());
        assert_eq!(object_key("p/", "ab", false), "p/objects/ab.zst");
        assert_eq!(object_key("p/", "ab", true), "p/objects/ab.zst.age");
        assert_eq!(entry_key("", "x"), "entries/x.json");
    }
}
