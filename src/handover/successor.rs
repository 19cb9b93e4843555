//! The new process's side: take the running process's listeners, then wait for it to finish
//! before running windows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixStream};
use tracing::{info, warn};

use super::counts::Counts;
use super::message::Message;
use super::wire::{self, WireError};
use crate::config::Config;
use crate::control::config::ControlMode;
use crate::shared::Shared;
use crate::window::Pause;

/// How long the listening sockets may take to follow the offer.
const FDS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past its `shutdown_timeout` a predecessor may take to send its final counters.
const FINAL_MARGIN: Duration = Duration::from_secs(60);

/// Why this process could not take over.
#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    #[error(
        "no running doltgres-sidecar answers on {path}: {source} (is it running, with the same \
         handover_socket and listen address?)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("the running sidecar refused the hand-over: {0}")]
    Refused(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(
        "the running sidecar listens on {theirs} ({what}), this config on {ours}: an upgrade keeps the addresses"
    )]
    Address {
        what: &'static str,
        theirs: String,
        ours: String,
    },
    #[error(
        "--upgrade needs server.control = \"external\" or \"command\": a managed Doltgres is the \
         running sidecar's child and stops with it"
    )]
    Managed,
}

/// The conversation with the predecessor, which continues until it exits.
pub struct TakenOver {
    /// The predecessor's pid.
    pub predecessor: u32,
    /// The predecessor's counters at the offer; add them to this process's before serving.
    pub offered: Counts,
    shutdown_timeout: Duration,
    stream: UnixStream,
}

/// Asks the sidecar running with `config`'s hand-over socket for its listeners: the client
/// listener, the admin listener, and the conversation.
pub async fn take_over(
    config: &Config,
) -> Result<(TcpListener, TcpListener, TakenOver), TakeOverError> {
    if config.server.control == ControlMode::Managed {
        return Err(TakeOverError::Managed);
    }
    let path = super::socket_path(config);
    let mut stream = UnixStream::connect(&path)
        .await
        .map_err(|source| TakeOverError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    wire::send(
        &mut stream,
        &Message::Hello {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )
    .await?;
    // The predecessor first waits for a window that is open to end.
    let patience = config.backup.action_timeout + config.drain_timeout + Duration::from_secs(10);
    let (predecessor, listen, admin_listen, shutdown_timeout_ms, offered) =
        match wire::recv(&mut stream, patience).await? {
            Message::Offer {
                pid,
                listen,
                admin_listen,
                shutdown_timeout_ms,
                counts,
            } => (pid, listen, admin_listen, shutdown_timeout_ms, counts),
            Message::Refused { reason } => return Err(TakeOverError::Refused(reason)),
            got => {
                return Err(WireError::Unexpected {
                    expected: "offer",
                    got: Box::new(got),
                }
                .into());
            }
        };
    let mut fds = wire::recv_fds(&stream, 2, FDS_TIMEOUT).await?.into_iter();
    let listener = adopt(fds.next(), "listen", &listen, &config.listen)?;
    let admin = adopt(
        fds.next(),
        "admin_listen",
        &admin_listen,
        &config.admin_listen,
    )?;
    info!(
        predecessor,
        listen = %listener.local_addr().map_err(WireError::Io)?,
        "took over the running sidecar's listeners"
    );
    Ok((
        listener,
        admin,
        TakenOver {
            predecessor,
            offered,
            shutdown_timeout: Duration::from_millis(shutdown_timeout_ms),
            stream,
        },
    ))
}

/// A received listening socket as a tokio listener, if it is the one this config listens on.
fn adopt(
    fd: Option<std::os::fd::OwnedFd>,
    what: &'static str,
    theirs: &str,
    ours: &str,
) -> Result<TcpListener, TakeOverError> {
    let fd = fd.ok_or(WireError::Descriptors {
        expected: 2,
        got: 0,
    })?;
    let listener = std::net::TcpListener::from(fd);
    let bound = listener.local_addr().map_err(WireError::Io)?;
    if ours.parse::<SocketAddr>().ok() != Some(bound) {
        return Err(TakeOverError::Address {
            what,
            theirs: theirs.to_string(),
            ours: ours.to_string(),
        });
    }
    listener.set_nonblocking(true).map_err(WireError::Io)?;
    Ok(TcpListener::from_std(listener).map_err(WireError::Io)?)
}

impl TakenOver {
    /// Tells the predecessor this process accepts now, then, in the background, waits for it
    /// to finish: its final counters are added, and `pause` (windows held off) ends.
    pub async fn accepting(mut self, shared: Arc<Shared>, pause: Pause) -> Result<(), WireError> {
        wire::send(&mut self.stream, &Message::Accepting).await?;
        let predecessor = self.predecessor;
        let patience = self.shutdown_timeout + FINAL_MARGIN;
        tokio::spawn(async move {
            match wire::recv(&mut self.stream, patience).await {
                Ok(Message::Final { counts }) => {
                    counts.since(&self.offered).add_to(&shared.metrics);
                    info!(
                        predecessor,
                        "the previous process finished: backup windows resume"
                    );
                }
                Ok(got) => warn!(
                    predecessor,
                    ?got,
                    "unexpected message from the previous process: backup windows resume"
                ),
                Err(e) => warn!(
                    predecessor,
                    error = %e,
                    "the previous process ended without its final counters: backup windows resume"
                ),
            }
            drop(pause);
        });
        Ok(())
    }
}
