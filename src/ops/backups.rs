//! The recent windows and the copy entries, with each entry's verification and whether it is
//! in the off-site repository.

use serde::Serialize;
use utoipa::ToSchema;

use crate::catalog::{Catalog, Entry};
use crate::shared::Shared;

/// Recent windows and the copy entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backups {
    /// Newest first.
    pub windows: Vec<crate::window::WindowRecord>,
    /// Newest first; empty without `[backup.copy]`.
    pub copies: Vec<CopySummary>,
}

/// A copy entry, with its verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct CopySummary {
    pub id: String,
    pub created_unix: f64,
    pub window_id: u64,
    pub databases: Vec<String>,
    pub files: usize,
    pub bytes: u64,
    pub bytes_copied: u64,
    /// `ok`, `failed`, or absent when not verified yet.
    pub verify: Option<String>,
    pub verify_detail: Option<String>,
    /// With `[backup.copy.offsite]`: whether the entry is in the off-site repository. Absent
    /// without one.
    pub offsite_uploaded: Option<bool>,
}

/// Recent windows (newest first), and the copy entries with their verification.
pub async fn backups(shared: &Shared) -> Backups {
    let config = shared.config();
    let copies = match &config.backup.copy {
        Some(copy) => {
            let catalog = Catalog {
                dir: copy.catalog.clone(),
            };
            let offsite = copy.offsite.as_ref().map(|o| o.url.clone());
            tokio::task::spawn_blocking(move || {
                let entries = catalog.entries();
                entries
                    .iter()
                    .rev()
                    .map(|entry| copy_summary(entry, offsite.as_deref()))
                    .collect()
            })
            .await
            .unwrap_or_default()
        }
        None => Vec::new(),
    };
    Backups {
        windows: shared.windows.history(),
        copies,
    }
}

fn copy_summary(entry: &Entry, offsite: Option<&str>) -> CopySummary {
    let m = &entry.manifest;
    let verify = entry.verify_record();
    CopySummary {
        id: entry.id.clone(),
        created_unix: m.created_unix,
        window_id: m.window_id,
        databases: m.databases.iter().map(|d| d.name.clone()).collect(),
        files: m.files.len(),
        bytes: m.bytes(),
        bytes_copied: m.bytes_copied,
        verify: verify
            .as_ref()
            .map(|v| if v.ok { "ok" } else { "failed" }.to_string()),
        verify_detail: verify.map(|v| v.detail),
        offsite_uploaded: offsite.map(|url| crate::offsite::upload::uploaded_to(entry, url)),
    }
}
