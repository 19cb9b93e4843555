//! CancelRequest: the client sends the key it was given (the upstream's process id, the proxy's
//! secret); the proxy looks the session up and sends a CancelRequest with the upstream's own key
//! to the upstream, then waits until the upstream has closed that connection before the client's
//! is closed (see [`crate::upstream::Upstream::send_cancel`]): a client that waits for the close,
//! as libpq does, then knows its cancel can no longer hit a later request.
//!
//! Doltgres hands every connection the same key and ignores cancels; the proxy still forwards
//! them (harmlessly), so the same code serves PostgreSQL, where cancels work.

use bytes::{BufMut, BytesMut};
use tracing::{debug, info};

use crate::protocol::startup::CANCEL_REQUEST;
use crate::shared::Shared;

/// Forwards a cancel for the session holding this proxy key, if any.
pub async fn forward(shared: &Shared, process_id: u32, secret: &[u8]) {
    let Some(session) = shared.registry.by_cancel_key(process_id, secret) else {
        return debug!(process_id, "cancel request for an unknown key ignored");
    };
    let Some(key) = session.upstream_key.lock().unwrap().clone() else {
        return debug!(
            session = session.id,
            "cancel request before the upstream sent its key"
        );
    };
    let mut packet = BytesMut::with_capacity(12 + key.secret_key.len());
    packet.put_u32(12 + key.secret_key.len() as u32);
    packet.put_u32(CANCEL_REQUEST);
    packet.put_u32(key.process_id);
    packet.put_slice(&key.secret_key);
    match shared.upstream.send_cancel(&packet).await {
        Ok(()) => info!(session = session.id, "cancel request forwarded"),
        Err(e) => info!(session = session.id, error = %e, "cancel request could not be forwarded"),
    }
}
