//! The running process's side: answer successors on the hand-over socket.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Endpoint;
use super::counts::Counts;
use super::message::{ManagedOffer, Message, Offer};
use super::wire::{self, WireError};
use crate::shared::Shared;

/// How long a successor has to say hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a successor has, after the offer, to start accepting.
const ACCEPTING_TIMEOUT: Duration = Duration::from_secs(60);

/// Answers successors until one takes over (or `shutdown`). `listeners` are the client and
/// admin listening sockets, in that order.
pub async fn serve(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    listeners: [OwnedFd; 2],
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = endpoint.listener.accept() => accepted,
        };
        let mut stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "hand-over socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A shutdown abandons a hand-over under way (which frees the windows' slot for the
        // final window); the successor then never gets its confirmation.
        let outcome = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            outcome = offer(&mut stream, &shared, &listeners, &shutdown) => outcome,
        };
        match outcome {
            Ok((pid, pause)) => {
                info!(
                    successor = pid,
                    "the successor accepts on the listeners: this process stops accepting, lets \
                     its sessions finish and runs no more backup windows"
                );
                shared.handover.complete(stream, pid, pause);
                if let Some(server) = shared.control.managed() {
                    server.release();
                }
                return;
            }
            Err(Refusal::Told(reason)) => {
                warn!(%reason, "hand-over refused");
                let _ = wire::send(&mut stream, &Message::Refused { reason }).await;
            }
            Err(Refusal::Declined(reason)) => {
                warn!(%reason, "the successor gave up: this process goes on serving");
            }
            Err(Refusal::Failed(e)) => {
                warn!(error = %e, "hand-over abandoned: this process goes on serving");
            }
        }
    }
}

enum Refusal {
    /// Said to the successor.
    Told(String),
    /// The successor's own reason to stop.
    Declined(String),
    /// The conversation broke; nothing more to say.
    Failed(WireError),
}

impl From<WireError> for Refusal {
    fn from(e: WireError) -> Refusal {
        Refusal::Failed(e)
    }
}

/// One successor's request, up to its `Accepting`.
async fn offer(
    stream: &mut UnixStream,
    shared: &Arc<Shared>,
    listeners: &[OwnedFd; 2],
    shutdown: &CancellationToken,
) -> Result<(u32, crate::window::Pause), Refusal> {
    let ours = nix::unistd::geteuid().as_raw();
    let theirs = stream.peer_cred().map_err(WireError::Io)?.uid();
    if theirs != ours {
        return Err(Refusal::Told(format!(
            "the successor runs as uid {theirs}, this process as uid {ours}"
        )));
    }
    let pid = match wire::recv(stream, HELLO_TIMEOUT).await? {
        Message::Hello { pid, version } => {
            info!(successor = pid, %version, "a successor asks for the listeners");
            pid
        }
        got => {
            return Err(Refusal::Failed(WireError::Unexpected {
                expected: "hello",
                got: Box::new(got),
            }));
        }
    };
    let config = shared.config();
    if let Some(reason) = shared.windows.paused() {
        return Err(Refusal::Told(format!(
            "this process cannot hand over yet: {reason}"
        )));
    }
    let wait = config.backup.action_timeout + config.drain_timeout;
    let Some(pause) = shared
        .windows
        .pause(format!("handing over to process {pid}"), wait)
        .await
    else {
        return Err(Refusal::Told(format!(
            "a backup window is still open after {wait:?}: try again when it ends"
        )));
    };
    // Managed mode: the server runs on, adopted by the successor, its output pipes handed over.
    let (managed, outputs) = match shared.control.managed() {
        None => (None, Vec::new()),
        Some(server) => match server.handover_parts() {
            Some((pid, outputs)) => (
                Some(ManagedOffer {
                    pid,
                    port: server.spec.port,
                    outputs: outputs.len(),
                }),
                outputs,
            ),
            None => {
                return Err(Refusal::Told(
                    "the managed Doltgres is not running now (stopped for a copy, or being \
                     restarted): try again"
                        .into(),
                ));
            }
        },
    };
    let mut fds = vec![listeners[0].as_raw_fd(), listeners[1].as_raw_fd()];
    fds.extend(outputs.iter().map(|fd| fd.as_raw_fd()));
    let counts = Counts::read(&shared.metrics);
    wire::send(
        stream,
        &Message::Offer(Offer {
            pid: std::process::id(),
            listen: config.listen.clone(),
            admin_listen: config.admin_listen.clone(),
            shutdown_timeout_ms: config.shutdown_timeout.as_millis() as u64,
            counts,
            managed,
        }),
    )
    .await?;
    wire::send_fds(stream, &fds).await?;
    match wire::recv(stream, ACCEPTING_TIMEOUT).await? {
        Message::Accepting if shutdown.is_cancelled() => Err(Refusal::Told(
            "this process is shutting down: start the new one on its own".into(),
        )),
        Message::Accepting => {
            // From here on the successor serves: this process must stop accepting.
            wire::send(stream, &Message::Confirmed).await?;
            Ok((pid, pause))
        }
        Message::Refused { reason } => Err(Refusal::Declined(reason)),
        got => Err(Refusal::Failed(WireError::Unexpected {
            expected: "accepting",
            got: Box::new(got),
        })),
    }
}

/// After the last session ended: tells the successor this process's final counters. The
/// windows stay held off until the process exits.
pub async fn finish(
    handover: &crate::state::handover::Handover,
    metrics: &crate::metrics::Metrics,
) {
    let Some((mut stream, pid)) = handover.take_successor() else {
        return;
    };
    let counts = super::counts::Counts::read(metrics);
    match super::wire::send(&mut stream, &super::message::Message::Final { counts }).await {
        Ok(()) => tracing::info!(successor = pid, "final counters sent to the successor"),
        Err(e) => tracing::warn!(successor = pid, error = %e, "cannot send the final counters"),
    }
}
