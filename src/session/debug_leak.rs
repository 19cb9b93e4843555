//! Debug builds only (`debug_assertions`; release builds have none of this): with
//! `DOLTGRES_SIDECAR_DEBUG_LEAK_BYTES=N` in its environment, every session leaks N bytes. The
//! soak test (`proxy-tests/tests/soak.rs`) runs the sidecar with it to prove that its leak check
//! catches a real leak, not only that it passes without one.

use std::sync::OnceLock;

/// The variable that sets the leak.
pub const VARIABLE: &str = "DOLTGRES_SIDECAR_DEBUG_LEAK_BYTES";

/// Leaks the configured number of bytes (written to, so they count in RSS).
pub fn per_session() {
    static BYTES: OnceLock<usize> = OnceLock::new();
    let bytes = *BYTES.get_or_init(|| {
        let bytes = std::env::var(VARIABLE)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if bytes > 0 {
            tracing::warn!(
                bytes,
                "debug build: every session leaks this many bytes ({VARIABLE})"
            );
        }
        bytes
    });
    if bytes > 0 {
        std::mem::forget(vec![0x5au8; bytes]);
    }
}
