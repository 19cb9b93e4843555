//! Client certificates re-read from disk when their files change (see the module docs of
//! `reload`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::auth::AuthMode;
use crate::config::stamp::FileStamp;
use crate::shared::Shared;
use crate::tls::ClientTls;

/// Checks `tls_cert`/`tls_key` every `tls_reload_interval` until `shutdown`; see the module docs.
pub async fn watch_certificates(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut failed = None;
    loop {
        let interval = shared.config().tls_reload_interval;
        // Off (0): look again in a second in case a reload turns it on.
        if !crate::pause::pause(&shutdown, interval, Duration::from_secs(1)).await {
            return;
        }
        if !interval.is_zero() {
            poll_certificates(&shared, &mut failed).await;
        }
    }
}

/// One check: loads the certificate and key if they changed since the running pair was read.
/// `failed` remembers the stamps of a pair that did not load, so it is warned about once.
/// Returns whether a new pair is now served.
pub async fn poll_certificates(
    shared: &Arc<Shared>,
    failed: &mut Option<[Option<FileStamp>; 2]>,
) -> bool {
    let changed = |tls: &ClientTls| ClientTls::stamps_of(&tls.cert, &tls.key) != tls.stamps;
    if !shared.client_tls().is_some_and(|tls| changed(&tls)) {
        *failed = None;
        return false;
    }
    let _one_at_a_time = shared.reload_lock.lock().await;
    // A reload may have loaded them meanwhile.
    let Some(current) = shared.client_tls().filter(|tls| changed(tls)) else {
        return false;
    };
    let (cert, key) = (current.cert.clone(), current.key.clone());
    let channel_binding = shared.config().auth_mode() == AuthMode::Proxy;
    let load = tokio::task::spawn_blocking(move || {
        let stamps = ClientTls::stamps_of(&cert, &key);
        (ClientTls::load(&cert, &key, channel_binding), stamps)
    });
    let Ok((loaded, stamps)) = load.await else {
        return false;
    };
    match loaded {
        Ok(tls) => {
            info!(cert = %tls.cert.display(), "TLS certificate renewed: new handshakes use it");
            shared.store_client_tls(Some(tls));
            *failed = None;
            true
        }
        Err(e) => {
            if failed.as_ref() != Some(&stamps) {
                warn!(
                    error = %e,
                    "the changed TLS certificate or key cannot be used (yet): keeping the one \
                     in use, trying again at the next check"
                );
            }
            *failed = Some(stamps);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dgs-reload-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn stamps_see_rewrites_replacements_and_symlink_swaps() {
        let dir = temp_dir("stamps");
        let file = dir.join("cert.pem");
        std::fs::write(&file, "one").unwrap();
        let first = FileStamp::of(&file).unwrap();
        assert_eq!(FileStamp::of(&file), Some(first.clone()), "unchanged");

        // Rewritten in place with a different length.
        std::fs::write(&file, "three").unwrap();
        let second = FileStamp::of(&file).unwrap();
        assert_ne!(first, second);

        // Replaced by a rename with the same length (and maybe the same mtime): a new inode.
        let tmp = dir.join("cert.pem.tmp");
        std::fs::write(&tmp, "THREE").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_ne!(FileStamp::of(&file).unwrap(), second);

        // Kubernetes: cert.pem -> ..data/cert.pem, ..data -> a timestamped directory, swapped.
        let (v1, v2) = (dir.join("..v1"), dir.join("..v2"));
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v1.join("tls.crt"), "same").unwrap();
        std::fs::write(v2.join("tls.crt"), "same").unwrap();
        symlink("..v1", dir.join("..data")).unwrap();
        let mounted = dir.join("tls.crt");
        symlink("..data/tls.crt", &mounted).unwrap();
        let before = FileStamp::of(&mounted).unwrap();
        symlink("..v2", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        assert_ne!(FileStamp::of(&mounted).unwrap(), before);

        // Gone (mid-update): no stamp, which differs from any.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(FileStamp::of(&file), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
