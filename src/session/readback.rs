//! Before a copy window detaches a session whose settings are in doubt (it called `set_config`),
//! while the server is still up and the session idle at a boundary: read the session's settings on
//! its own connection (see [`crate::replay::readback`]) so that the new connection gets exactly
//! those. The client sees none of it, and it is no transaction of the client's. If the read
//! fails, the session is ended as after a crash.
//!
//! Only sessions in doubt are read: the read scans `pg_settings`, which costs Doltgres enough that
//! reading every session stretched a copy window with 1,000 idle sessions from 0.74 s to 4.6–5 s
//! (`survival_figures.rs`), near `detach_timeout`. A session without doubt needs no read: the
//! tracker knows its settings.

use std::sync::Mutex;
use std::time::Duration;

use tracing::{debug, info};

use crate::protocol::tags;
use crate::replay::{SessionState, readback};
use crate::shared::Shared;
use crate::tls::MaybeTls;

use super::converse::converse;

/// The longest a read may take. The window waits for every session to close its connection
/// within `detach_timeout`, so a read gets at most half of that.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// Reads the session's settings into `state` if some are in doubt, unless the session cannot
/// go on anyway (state that cannot be replayed, a setting no read can cover).
pub async fn before_detach(shared: &Shared, server: &mut MaybeTls, state: &Mutex<SessionState>) {
    let names = {
        let state = state.lock().unwrap();
        match state.doubt() {
            Some(doubt) if !doubt.unnamed && state.unreplayable().is_none() => {
                state.readback_names()
            }
            _ => return,
        }
    };
    let config = shared.config();
    let limit = config
        .backup
        .copy
        .as_ref()
        .map_or(READ_LIMIT, |copy| (copy.detach_timeout / 2).min(READ_LIMIT));
    let request = readback::request(&names);
    let mut read = Vec::new();
    let mut malformed = 0usize;
    let exchange = converse(server, &request, 1, config.max_message_len, |tag, body| {
        if tag == tags::DATA_ROW {
            match readback::row(body) {
                Some(row) => read.push(row),
                None => malformed += 1,
            }
        }
    });
    let outcome = tokio::time::timeout(limit, exchange).await;
    match outcome {
        Ok(Ok(())) if malformed == 0 => {
            debug!(settings = read.len(), "read the session's settings");
            state.lock().unwrap().settings_read(read);
        }
        Ok(Ok(())) => info!(
            malformed,
            "the session's settings came back in rows that cannot be read"
        ),
        Ok(Err(error)) => {
            // The server's words may quote a setting's name, which may have come from a query
            // parameter: at debug only.
            debug!(%error, "reading the session's settings failed");
            info!("could not read the session's settings before the copy");
        }
        Err(_) => info!(
            ?limit,
            "reading the session's settings before the copy took too long"
        ),
    }
}
