//! The new process's side: take the running process's listeners, then wait for it to finish
//! before running windows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::counts::Counts;
use super::message::Message;
use super::wire::{self, WireError};
use crate::config::Config;
use crate::config::server::ControlMode;
use crate::shared::Shared;
use crate::window::Pause;

/// How long the listening sockets may take to follow the offer.
const FDS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past its `shutdown_timeout` a predecessor may take to send its final counters.
const FINAL_MARGIN: Duration = Duration::from_secs(60);
/// How long the predecessor may take to confirm it stopped accepting.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the predecessor's process is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(100);

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
    #[error("the process on the hand-over socket runs as uid {theirs}, this one as uid {ours}")]
    Peer { theirs: u32, ours: u32 },
    #[error("the running sidecar did not confirm (it shut down or gave up): {0}")]
    NotConfirmed(String),
    #[error("this process is shutting down: the running sidecar keeps its listeners")]
    ShuttingDown,
    #[error(
        "the running sidecar listens on {theirs} ({what}), this config on {ours}: an upgrade keeps the addresses"
    )]
    Address {
        what: &'static str,
        theirs: String,
        ours: String,
    },
    #[error("the running sidecar {theirs}, this config {ours}: an upgrade keeps server.control")]
    Control {
        theirs: &'static str,
        ours: &'static str,
    },
}

/// The managed Doltgres the predecessor leaves running.
pub struct AdoptedServer {
    pub pid: i32,
    pub port: u16,
    /// The read ends of its stdout and stderr.
    pub outputs: Vec<std::os::fd::OwnedFd>,
}

/// The conversation with the predecessor, which continues until it exits.
pub struct TakenOver {
    /// Managed mode: the server to adopt (set the config's port to its port, then
    /// `ManagedServer::adopt` it).
    pub server: Option<AdoptedServer>,
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
    let path = super::socket_path(config);
    let mut stream = UnixStream::connect(&path)
        .await
        .map_err(|source| TakeOverError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    let ours = nix::unistd::geteuid().as_raw();
    let theirs = stream.peer_cred().map_err(WireError::Io)?.uid();
    if theirs != ours {
        return Err(TakeOverError::Peer { theirs, ours });
    }
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
    let offer = match wire::recv(&mut stream, patience).await? {
        Message::Offer(offer) => offer,
        Message::Refused { reason } => return Err(TakeOverError::Refused(reason)),
        got => {
            return Err(WireError::Unexpected {
                expected: "offer",
                got: Box::new(got),
            }
            .into());
        }
    };
    let sockets = receive(
        &mut stream,
        config,
        &offer.listen,
        &offer.admin_listen,
        offer.managed,
    );
    match sockets.await {
        Ok((listener, admin, server)) => Ok((
            listener,
            admin,
            TakenOver {
                server,
                predecessor: offer.pid,
                offered: offer.counts,
                shutdown_timeout: Duration::from_millis(offer.shutdown_timeout_ms),
                stream,
            },
        )),
        Err(e) => {
            // Tell the running process why, for its log; it carries on.
            let reason = e.to_string();
            let _ = wire::send(&mut stream, &Message::Refused { reason }).await;
            Err(e)
        }
    }
}

/// The listening sockets (and a managed server's output pipes) that follow an offer, checked
/// against this process's config.
async fn receive(
    stream: &mut UnixStream,
    config: &Config,
    listen: &str,
    admin_listen: &str,
    managed: Option<super::message::ManagedOffer>,
) -> Result<(TcpListener, TcpListener, Option<AdoptedServer>), TakeOverError> {
    let outputs = managed.as_ref().map_or(0, |m| m.outputs);
    let mut fds = wire::recv_fds(stream, 2 + outputs, FDS_TIMEOUT)
        .await?
        .into_iter();
    let listener = adopt(fds.next(), "listen", listen, &config.listen)?;
    let admin = adopt(
        fds.next(),
        "admin_listen",
        admin_listen,
        &config.admin_listen,
    )?;
    let managed_here = config.server.control.mode() == ControlMode::Managed;
    if managed.is_some() != managed_here {
        let (runs, not) = ("runs a managed Doltgres", "does not run a managed Doltgres");
        return Err(TakeOverError::Control {
            theirs: if managed.is_some() { runs } else { not },
            ours: if managed_here {
                "is managed"
            } else {
                "is not managed"
            },
        });
    }
    let server = managed.map(|m| AdoptedServer {
        pid: m.pid,
        port: m.port,
        outputs: fds.collect(),
    });
    info!(
        listen = %listener.local_addr().map_err(WireError::Io)?,
        "received the running sidecar's listeners"
    );
    Ok((listener, admin, server))
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
    /// Tells the predecessor this process is ready and waits for its confirmation that it
    /// stopped accepting; only then may this process serve. In the background it then waits
    /// for the predecessor to finish: its final counters are added, and once its process is
    /// gone `pause` (windows held off) ends.
    pub async fn accepting(
        mut self,
        shared: Arc<Shared>,
        pause: Pause,
        shutdown: &CancellationToken,
    ) -> Result<(), TakeOverError> {
        if shutdown.is_cancelled() {
            return Err(TakeOverError::ShuttingDown);
        }
        wire::send(&mut self.stream, &Message::Accepting).await?;
        match wire::recv(&mut self.stream, CONFIRM_TIMEOUT).await {
            Ok(Message::Confirmed) => {}
            Ok(Message::Refused { reason }) => return Err(TakeOverError::NotConfirmed(reason)),
            Ok(got) => return Err(TakeOverError::NotConfirmed(format!("{got:?}"))),
            Err(e) => return Err(TakeOverError::NotConfirmed(e.to_string())),
        }
        let predecessor = self.predecessor;
        info!(predecessor, "took over the running sidecar's listeners");
        let patience = self.shutdown_timeout + FINAL_MARGIN;
        tokio::spawn(async move {
            match wire::recv(&mut self.stream, patience).await {
                Ok(Message::Final { counts }) => {
                    counts.since(&self.offered).add_to(&shared.metrics);
                    info!(predecessor, "the previous process finished");
                }
                Ok(got) => warn!(
                    predecessor,
                    ?got,
                    "unexpected message from the previous process"
                ),
                Err(e) => warn!(
                    predecessor,
                    error = %e,
                    "no final counters from the previous process"
                ),
            }
            // Its sessions end only with its process: windows wait for that.
            let mut waited = Duration::ZERO;
            while crate::control::managed::alive(predecessor as i32) {
                if waited.as_secs() > 0 && waited.as_secs().is_multiple_of(60) {
                    warn!(
                        predecessor,
                        "the previous process still runs: backup windows wait for it to exit"
                    );
                }
                tokio::time::sleep(EXIT_POLL).await;
                waited += EXIT_POLL;
            }
            info!(
                predecessor,
                "the previous process exited: backup windows resume"
            );
            drop(pause);
        });
        Ok(())
    }
}
