//! What `entries/<id>.json` holds: the entry's manifest as the catalog keeps it, or, in an
//! encrypted repository, a [`SealedEntry`]: what retention and listing need in the clear (the
//! objects it names, its time and size), and the manifest itself encrypted.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::seal::{Identities, Recipients};
use super::{object_key, objects_of};
use crate::catalog::manifest::Manifest;

/// An encrypted repository's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedEntry {
    pub id: String,
    pub created_unix: f64,
    /// How objects and the manifest are encrypted: `age`.
    pub encryption: String,
    /// Every object the entry names: SHA-256 of its bytes, and their length.
    pub objects: Vec<(String, u64)>,
    pub files: usize,
    pub bytes: u64,
    /// The manifest, encrypted, in base64.
    pub sealed_manifest: String,
}

/// An entry as the repository lists it.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    Plain(Manifest),
    Sealed(SealedEntry),
}

impl Listed {
    /// What is written for `manifest`: sealed to `recipients` if there are any.
    pub fn of(manifest: &Manifest, recipients: Option<&Recipients>) -> Result<Listed, String> {
        let Some(recipients) = recipients else {
            return Ok(Listed::Plain(manifest.clone()));
        };
        let json = serde_json::to_vec(manifest).map_err(|e| e.to_string())?;
        let sealed = recipients
            .seal_bytes(&json)
            .map_err(|e| format!("cannot encrypt the manifest: {e}"))?;
        Ok(Listed::Sealed(SealedEntry {
            id: manifest.id.clone(),
            created_unix: manifest.created_unix,
            encryption: "age".into(),
            objects: objects_of(manifest),
            files: manifest.files.len(),
            bytes: manifest.bytes(),
            sealed_manifest: base64::engine::general_purpose::STANDARD.encode(sealed),
        }))
    }

    /// Reads `entries/<id>.json`.
    pub fn parse(bytes: &[u8]) -> Result<Listed, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("sealed_manifest").is_some() {
            serde_json::from_value(value).map(Listed::Sealed)
        } else {
            serde_json::from_value(value).map(Listed::Plain)
        }
        .map_err(|e| e.to_string())
    }

    pub fn to_json(&self) -> Vec<u8> {
        match self {
            Listed::Plain(m) => serde_json::to_vec_pretty(m),
            Listed::Sealed(s) => serde_json::to_vec_pretty(s),
        }
        .unwrap_or_default()
    }

    pub fn id(&self) -> &str {
        match self {
            Listed::Plain(m) => &m.id,
            Listed::Sealed(s) => &s.id,
        }
    }

    pub fn created_unix(&self) -> f64 {
        match self {
            Listed::Plain(m) => m.created_unix,
            Listed::Sealed(s) => s.created_unix,
        }
    }

    pub fn encrypted(&self) -> bool {
        matches!(self, Listed::Sealed(_))
    }

    /// Files and bytes of the entry.
    pub fn size(&self) -> (usize, u64) {
        match self {
            Listed::Plain(m) => (m.files.len(), m.bytes()),
            Listed::Sealed(s) => (s.files, s.bytes),
        }
    }

    /// Every object it names, each once, with its uncompressed size.
    pub fn objects(&self) -> Vec<(String, u64)> {
        match self {
            Listed::Plain(m) => objects_of(m),
            Listed::Sealed(s) => s.objects.clone(),
        }
    }

    /// The keys of the objects it names.
    pub fn object_keys(&self, prefix: &str) -> impl Iterator<Item = String> + '_ {
        let (prefix, sealed) = (prefix.to_string(), self.encrypted());
        self.objects()
            .into_iter()
            .map(move |(sha, _)| object_key(&prefix, &sha, sealed))
    }

    /// The manifest: decrypted with `identities` if sealed.
    pub fn manifest(&self, identities: Option<&Identities>) -> Result<Manifest, String> {
        let sealed = match self {
            Listed::Plain(m) => return Ok(m.clone()),
            Listed::Sealed(s) => s,
        };
        if sealed.encryption != "age" {
            return Err(format!(
                "entry {} is encrypted with {:?}, which this version cannot read",
                sealed.id, sealed.encryption
            ));
        }
        let identities = identities.ok_or_else(|| {
            format!(
                "entry {} is encrypted: give the identity file that decrypts it (--identity)",
                sealed.id
            )
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed.sealed_manifest)
            .map_err(|e| format!("entry {}: sealed manifest: {e}", sealed.id))?;
        let json = identities
            .open_bytes(&bytes)
            .map_err(|e| format!("entry {}: {e}", sealed.id))?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| format!("entry {}: unreadable manifest: {e}", sealed.id))?;
        let mut named = objects_of(&manifest);
        let mut listed = sealed.objects.clone();
        named.sort();
        listed.sort();
        if manifest.id != sealed.id || named != listed {
            return Err(format!(
                "entry {}: the encrypted manifest does not match the entry it is in",
                sealed.id
            ));
        }
        Ok(manifest)
    }
}
