//! `[backup.copy.offsite]`: where copy entries are replicated, and how the sidecar reaches it.
//! What the section leaves out comes from the AWS conventions: `AWS_ENDPOINT_URL`, `AWS_REGION`
//! (or `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::store::{MIN_PART_SIZE, Settings};

/// `[backup.copy.offsite]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteConfig {
    /// `s3://bucket/prefix`: the repository.
    pub url: String,
    /// The S3 endpoint (`https://host[:port]`); default `AWS_ENDPOINT_URL`, else AWS's own for
    /// the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Default `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Default `AWS_ACCESS_KEY_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// A file holding the secret access key (read at each upload, so a rotated secret is
    /// used); default `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<PathBuf>,
    /// Accept a plain `http://` endpoint; default `AWS_ALLOW_HTTP`, else false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// Keep at most this many entries in the repository (0: no limit); never the newest.
    #[serde(default)]
    pub keep_last: usize,
    /// Delete entries older than this from the repository; never the newest.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<std::time::Duration>,
    /// Objects larger than this many bytes are sent in parts of this size (S3's multipart
    /// upload) and read back in ranges of it; at least 5 MiB, S3's smallest part.
    #[serde(default = "default_part_size")]
    pub part_size: u64,
    /// Retention deletes an object no entry names only once it was written longer ago than
    /// this: an upload running meanwhile elsewhere on the prefix may be about to name it.
    #[serde(default = "default_prune_grace", with = "humantime_serde")]
    pub prune_grace: std::time::Duration,
    /// Encrypt objects and manifests to these `age` public keys (`age1…`): the sidecar then
    /// cannot read back what it wrote; `restore` and `verify` take the identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// A file of `age` recipients, one per line (`#` comments), added to `recipients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_file: Option<PathBuf>,
    /// The identity that decrypts an encrypted repository, for the sidecar's own verifications
    /// of uploaded entries (`verify_after`, `verify_interval`). Without one, an encrypted
    /// repository is written but never read back by the sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// After each upload, download the entry again and verify it on a scratch Doltgres.
    #[serde(default)]
    pub verify_after: bool,
    /// Every interval, download a random entry of the repository (not the newest, when there
    /// are others) and verify it: objects that rotted in the bucket are found.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_interval: Option<std::time::Duration>,
}

fn default_part_size() -> u64 {
    8 << 20
}

fn default_prune_grace() -> std::time::Duration {
    std::time::Duration::from_secs(15 * 60)
}

impl OffsiteConfig {
    /// The repository at `url`, everything else from the environment, no retention: what the
    /// local commands use.
    pub fn from_url(url: &str) -> OffsiteConfig {
        OffsiteConfig {
            url: url.to_string(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key_file: None,
            allow_http: None,
            keep_last: 0,
            max_age: None,
            prune_grace: default_prune_grace(),
            part_size: default_part_size(),
            recipients: Vec::new(),
            recipients_file: None,
            identity_file: None,
            verify_after: false,
            verify_interval: None,
        }
    }

    /// The recipients objects are encrypted to; None for a repository in the clear.
    pub fn recipients(&self) -> Result<Option<super::seal::Recipients>, String> {
        super::seal::Recipients::parse(&self.recipients, self.recipients_file.as_deref())
    }

    /// Whether the sidecar can read back what it uploads: in the clear, or with an identity.
    pub fn readable(&self) -> bool {
        (self.recipients.is_empty() && self.recipients_file.is_none())
            || self.identity_file.is_some()
    }

    /// Checks what can be checked without the network: the URL, the recipients, the identity
    /// file, and that verifications of an encrypted repository have the identity.
    pub fn check(&self) -> Result<(), String> {
        super::parse_url(&self.url)?;
        self.recipients()?;
        if self.part_size < MIN_PART_SIZE {
            return Err(format!(
                "offsite: part_size {} is under S3's smallest part ({} bytes)",
                self.part_size, MIN_PART_SIZE
            ));
        }
        if let Some(file) = &self.identity_file {
            super::seal::Identities::from_file(file).map_err(|e| format!("offsite: {e}"))?;
        }
        if (self.verify_after || self.verify_interval.is_some()) && !self.readable() {
            return Err("offsite: verify_after and verify_interval of an encrypted repository need identity_file (the identity that decrypts it)".into());
        }
        Ok(())
    }
}

impl OffsiteConfig {
    /// The repository's settings: this section over the process environment.
    pub fn resolve(&self) -> Result<Settings, String> {
        self.resolve_with(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`OffsiteConfig::resolve`] over the variables `env` gives.
    pub fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, String> {
        super::parse_url(&self.url)?;
        let access_key_id = self
            .access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
            .ok_or("offsite: no access key: set backup.copy.offsite.access_key_id or AWS_ACCESS_KEY_ID")?;
        let secret_access_key = match &self.secret_access_key_file {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    format!("offsite: secret_access_key_file {}: {e}", file.display())
                })?;
                let secret = text.trim_end_matches(['\n', '\r']).to_string();
                if secret.is_empty() {
                    return Err(format!(
                        "offsite: secret_access_key_file {} is empty",
                        file.display()
                    ));
                }
                secret
            }
            None => env("AWS_SECRET_ACCESS_KEY").ok_or(
                "offsite: no secret key: set backup.copy.offsite.secret_access_key_file or AWS_SECRET_ACCESS_KEY",
            )?,
        };
        let allow_http = match self.allow_http {
            Some(allow) => allow,
            None => {
                env("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
            }
        };
        Ok(Settings {
            url: self.url.clone(),
            endpoint: self.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")),
            region: self
                .region
                .clone()
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id,
            secret_access_key,
            allow_http,
            part_size: self.part_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: &str) -> OffsiteConfig {
        OffsiteConfig::from_url(url)
    }

    #[test]
    fn the_section_wins_over_the_environment_which_fills_the_rest() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("env-key".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("env-secret".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".to_string()),
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_string()),
            "AWS_ALLOW_HTTP" => Some("true".to_string()),
            _ => None,
        };
        let resolved = section("s3://b/p").resolve_with(&env).unwrap();
        assert_eq!(resolved.access_key_id, "env-key");
        assert_eq!(resolved.secret_access_key, "env-secret");
        assert_eq!(resolved.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(resolved.region, "eu-west-1");
        assert!(resolved.allow_http);

        let mut own = section("s3://b/p");
        own.access_key_id = Some("mine".into());
        own.region = Some("us-west-2".into());
        own.allow_http = Some(false);
        let resolved = own.resolve_with(&env).unwrap();
        assert_eq!(
            (resolved.access_key_id.as_str(), resolved.region.as_str()),
            ("mine", "us-west-2")
        );
        assert!(!resolved.allow_http);
    }

    #[test]
    fn verifying_an_encrypted_repository_needs_its_identity() {
        let (_, recipient) = crate::offsite::seal::keygen();
        let mut sealed = section("s3://b/p");
        sealed.recipients = vec![recipient];
        sealed.check().unwrap();
        sealed.verify_after = true;
        let e = sealed.check().unwrap_err();
        assert!(e.contains("identity_file"), "{e}");
        sealed.verify_after = false;
        sealed.verify_interval = Some(std::time::Duration::from_secs(3600));
        assert!(sealed.check().is_err());
        sealed.identity_file = Some("/nonexistent/identity.txt".into());
        let e = sealed.check().unwrap_err();
        assert!(e.contains("/nonexistent/identity.txt"), "{e}");
        let mut plain = section("s3://b/p");
        plain.verify_after = true;
        plain.check().unwrap();
        plain.recipients = vec!["age1bad".into()];
        assert!(plain.check().is_err());
    }

    #[test]
    fn missing_credentials_and_bad_urls_are_named() {
        let none = |_: &str| None;
        let e = section("s3://b").resolve_with(&none).unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        let e = section("gs://b").resolve_with(&none).unwrap_err();
        assert!(e.contains("s3://"), "{e}");
    }
}
