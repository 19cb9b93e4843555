//! What the off-site tests share: waiting for an entry's upload, taking a copy, and running a
//! local command that finds the repository by the AWS variables alone.

use std::time::{Duration, Instant};

use doltgres_sidecar::offsite::config::OffsiteConfig;
use doltgres_sidecar::offsite::upload::{self, UploadRecord};

use crate::install;
use crate::managed::{ManagedProxy, local_command_with};
use crate::seaweedfs::SeaweedFs;

/// Waits until entry `id` of the catalog has its upload record.
pub async fn uploaded(m: &ManagedProxy, id: &str, within: Duration) -> UploadRecord {
    let deadline = Instant::now() + within;
    loop {
        if let Some(record) = m
            .catalog()
            .entry(id)
            .ok()
            .and_then(|e| upload::recorded(&e))
        {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "entry {id} was not uploaded within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn copy(m: &ManagedProxy) -> String {
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    record["cut"]["entry"].as_str().unwrap().to_string()
}

/// The AWS variables that find `store`.
pub fn aws_env(store: &SeaweedFs) -> [(&'static str, &str); 4] {
    [
        ("AWS_ENDPOINT_URL", store.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", store.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", store.secret_key.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ]
}

/// A local command with the pinned Doltgres and only the AWS variables to find the repository.
pub fn local(store: &SeaweedFs, args: &[&str]) -> (bool, String, String) {
    let doltgres = install::doltgres_binary().to_str().unwrap();
    local_command_with(&[args, &["--doltgres", doltgres]].concat(), &aws_env(store))
}

/// What finds a store: its endpoint and key, to move into a proxy's configuration.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Credentials {
    pub fn of(store: &SeaweedFs) -> Credentials {
        Credentials {
            endpoint: store.endpoint.clone(),
            access_key: store.access_key.clone(),
            secret_key: store.secret_key.clone(),
        }
    }

    /// `[backup.copy.offsite]` for `s3://BUCKET/prefix` on this store, the secret key in a file
    /// written into `dir`.
    pub fn section(&self, dir: &std::path::Path, prefix: &str) -> OffsiteConfig {
        let secret_file = dir.join("s3-secret");
        std::fs::write(&secret_file, &self.secret_key).unwrap();
        OffsiteConfig {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key_file: Some(secret_file),
            allow_http: Some(true),
            ..OffsiteConfig::from_url(&format!("s3://{}/{prefix}", crate::seaweedfs::BUCKET))
        }
    }
}
