//! Client-side encryption of the repository with `age` public keys: the sidecar encrypts every
//! object and the restorable part of every manifest to the configured recipients (`age1…`) and
//! holds no key that decrypts them; `restore` and `verify` take an identity file
//! (`AGE-SECRET-KEY-1…`, one per line, `#` comments, the format `age-keygen` and
//! `doltgres-sidecar keygen` write).
//!
//! What stays readable to whoever can list the bucket: object names (the SHA-256 of each file's
//! bytes), their sizes, entry ids and times, and which objects each entry names, which the
//! sidecar needs to deduplicate and to apply retention without a key.

use std::io::{self, Read, Write};
use std::path::Path;

use age::x25519;

/// The public keys objects are encrypted to.
#[derive(Clone)]
pub struct Recipients(Vec<x25519::Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.to_string()))
            .finish()
    }
}

impl Recipients {
    /// From `age1…` strings, and the lines of a recipients file (blank lines and `#` comments
    /// skipped). None when there is none: the repository is not encrypted.
    pub fn parse(keys: &[String], file: Option<&Path>) -> Result<Option<Recipients>, String> {
        let mut lines: Vec<(String, String)> = keys
            .iter()
            .map(|k| ("backup.copy.offsite.recipients".to_string(), k.clone()))
            .collect();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("offsite: recipients_file {}: {e}", file.display()))?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| (file.display().to_string(), l.to_string())),
            );
            if lines.is_empty() {
                return Err(format!(
                    "offsite: recipients_file {} names no recipient",
                    file.display()
                ));
            }
        }
        let mut recipients = Vec::new();
        for (from, key) in lines {
            let recipient = key.trim().parse::<x25519::Recipient>().map_err(|e| {
                format!("offsite: {from}: {key:?} is not an age recipient (age1…): {e}")
            })?;
            recipients.push(recipient);
        }
        Ok((!recipients.is_empty()).then_some(Recipients(recipients)))
    }

    /// A writer that encrypts what it is given into `output`; [`Sealing::finish`] ends it.
    pub fn seal<W: Write>(&self, output: W) -> io::Result<Sealing<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.0.iter().map(|r| r as &dyn age::Recipient))
                .map_err(io::Error::other)?;
        Ok(Sealing(encryptor.wrap_output(output)?))
    }

    /// `bytes`, encrypted.
    pub fn seal_bytes(&self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut sealing = self.seal(Vec::new())?;
        sealing.write_all(bytes)?;
        sealing.finish()
    }
}

/// An encrypting writer.
pub struct Sealing<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> Sealing<W> {
    /// Writes the last chunk and the authentication; returns the output.
    pub fn finish(self) -> io::Result<W> {
        self.0.finish()
    }
}

impl<W: Write> Write for Sealing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The secret keys that decrypt a repository.
pub struct Identities(Vec<Box<dyn age::Identity + Send + Sync>>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.0.len())
    }
}

impl Identities {
    /// Reads an identity file.
    pub fn from_file(file: &Path) -> Result<Identities, String> {
        let failed = |e: &dyn std::fmt::Display| format!("identity {}: {e}", file.display());
        let identities = age::IdentityFile::from_file(file.display().to_string())
            .map_err(|e| failed(&e))?
            .into_identities()
            .map_err(|e| failed(&e))?;
        if identities.is_empty() {
            return Err(failed(&"holds no AGE-SECRET-KEY-1… line"));
        }
        Ok(Identities(identities))
    }

    /// A reader of the plaintext of `input`, which must be encrypted to one of these keys.
    pub fn open<'a, R: Read + 'a>(&self, input: R) -> Result<Box<dyn Read + 'a>, String> {
        let decryptor = age::Decryptor::new(input).map_err(|e| format!("not sealed: {e}"))?;
        let reader = decryptor
            .decrypt(self.0.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => {
                    "the identity given is not one it was encrypted to".to_string()
                }
                e => e.to_string(),
            })?;
        Ok(Box::new(reader))
    }

    /// The plaintext of `bytes`.
    pub fn open_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut plain = Vec::new();
        self.open(bytes)?
            .read_to_end(&mut plain)
            .map_err(|e| format!("cannot decrypt: {e}"))?;
        Ok(plain)
    }
}

/// A new key pair, as an identity file's text: a comment with its recipient, then the secret.
pub fn keygen() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# doltgres-sidecar off-site identity: keep it off the server; restore and verify need it\n\
         # public key (backup.copy.offsite.recipients): {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    (text, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sealed_to_a_recipient_opens_with_its_identity_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (text, recipient) = keygen();
        let file = dir.join("identity.txt");
        std::fs::write(&file, &text).unwrap();
        let (other_text, _) = keygen();
        let other = dir.join("other.txt");
        std::fs::write(&other, &other_text).unwrap();

        let recipients = Recipients::parse(std::slice::from_ref(&recipient), None)
            .unwrap()
            .unwrap();
        let sealed = recipients.seal_bytes(b"rows and rows").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"rows"));
        let identities = Identities::from_file(&file).unwrap();
        assert_eq!(identities.open_bytes(&sealed).unwrap(), b"rows and rows");
        let e = Identities::from_file(&other)
            .unwrap()
            .open_bytes(&sealed)
            .unwrap_err();
        assert!(e.contains("not one it was encrypted to"), "{e}");
        // Damage is detected, not decrypted into garbage.
        let mut damaged = sealed.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 1;
        assert!(identities.open_bytes(&damaged).is_err());
        assert!(identities.open_bytes(b"plain").is_err());

        // A recipients file: comments and blank lines skipped; bad keys named.
        let listed = dir.join("recipients.txt");
        std::fs::write(&listed, format!("# ops\n\n{recipient}\n")).unwrap();
        assert!(Recipients::parse(&[], Some(&listed)).unwrap().is_some());
        assert!(Recipients::parse(&[], None).unwrap().is_none());
        let e = Recipients::parse(&["age1nope".into()], None).unwrap_err();
        assert!(e.contains("age1nope"), "{e}");
        std::fs::write(&listed, "# nobody\n").unwrap();
        assert!(Recipients::parse(&[], Some(&listed)).is_err());
    }
}
