//! One session: a client connection and the upstream connection made for it.
//!
//! The startup phase is handled here (encryption requests answered, limits applied), then the two
//! directions are relayed by two [`pump::Pump`]s polled together in the session's task. When either
//! side ends, the session ends; if the client is still there and its stream is at a message
//! boundary, it is told why with a proper ErrorResponse.

pub mod pump;
pub mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::protocol::frame::Seen;
use crate::protocol::notice::{self, Severity, sqlstate};
use crate::protocol::tags;
use crate::server::Shared;
use pump::{Pump, PumpError};
use startup::{Opening, StartupFailure};

/// How long the proxy spends telling a client why its session ends.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one client connection to its end.
pub async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let config = &shared.config;
    let _ = client.set_nodelay(true);
    let permit = shared.limiter.clone().try_acquire_owned().ok();
    let opening = tokio::time::timeout(
        config.startup_timeout,
        startup::negotiate(&mut client, config.max_startup_len),
    )
    .await;
    let startup = match opening {
        Err(_) => {
            debug!("startup timed out");
            return farewell(
                &mut client,
                sqlstate::PROTOCOL_VIOLATION,
                "timeout waiting for the startup packet",
            )
            .await;
        }
        Ok(Err(e)) if e.is_disconnect() => return debug!("client left during startup"),
        Ok(Err(e @ StartupFailure::Io(_))) => return debug!(error = %e, "startup failed"),
        Ok(Err(e)) => {
            info!(error = %e, "bad startup packet");
            return farewell(&mut client, sqlstate::PROTOCOL_VIOLATION, &e.to_string()).await;
        }
        Ok(Ok(Opening::Cancel { process_id, .. })) => {
            return debug!(process_id, "cancel request ignored");
        }
        Ok(Ok(Opening::Startup(bytes))) => bytes,
    };
    if permit.is_none() {
        info!(
            max = config.max_client_connections,
            "connection refused: too many clients"
        );
        let message = format!(
            "too many client connections (max_client_connections = {})",
            config.max_client_connections
        );
        return farewell(&mut client, sqlstate::TOO_MANY_CONNECTIONS, &message).await;
    }
    let server = match connect_upstream(&shared).await {
        Ok(server) => server,
        Err(message) => {
            warn!(upstream = %config.upstream, %message, "upstream connection failed");
            return farewell(&mut client, sqlstate::CONNECTION_FAILURE, &message).await;
        }
    };
    debug!(%peer, "session relaying");
    relay(client, server, startup, &shared, &stop).await;
}

async fn connect_upstream(shared: &Shared) -> Result<TcpStream, String> {
    let addr = &shared.config.upstream;
    match tokio::time::timeout(shared.config.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(format!(
            "could not connect to the upstream server {addr}: {e}"
        )),
        Err(_) => Err(format!(
            "could not connect to the upstream server {addr}: no answer within {:?}",
            shared.config.connect_timeout
        )),
    }
}

/// How the relay ended.
enum Ending {
    Client(Result<(), PumpError>),
    Server(Result<(), PumpError>),
    Stopped,
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    startup: BytesMut,
    shared: &Shared,
    stop: &CancellationToken,
) {
    let config = &shared.config;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    if let Err(e) = server_write.write_all(&startup).await {
        let message = format!("lost the upstream connection: {e}");
        return farewell_half(&mut client_write, sqlstate::CONNECTION_FAILURE, &message).await;
    }
    let mut up = Pump::new(config.read_buffer_size, config.max_message_len);
    let mut down = Pump::new(config.read_buffer_size, config.max_message_len);
    let mut client_terminated = false;
    let mut last_server_tag = 0u8;
    let ending = tokio::select! {
        r = up.run(&mut client_read, &mut server_write, |seen| {
            if let Seen::Whole(m) = seen { client_terminated |= m.tag == tags::TERMINATE; }
        }) => Ending::Client(r),
        r = down.run(&mut server_read, &mut client_write, |seen| {
            last_server_tag = match seen { Seen::Whole(m) => m.tag, Seen::StreamStart { tag, .. } => tag };
        }) => Ending::Server(r),
        _ = stop.cancelled() => Ending::Stopped,
    };
    let farewell = match ending {
        Ending::Client(Ok(())) => None,
        Ending::Client(Err(PumpError::Read(e))) => {
            debug!(error = %e, "client connection lost");
            None
        }
        Ending::Client(Err(PumpError::Frame(e))) => {
            info!(error = %e, "client broke the protocol");
            Some((
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid message from client: {e}"),
            ))
        }
        Ending::Client(Err(PumpError::Write(e))) | Ending::Server(Err(PumpError::Read(e))) => {
            warn!(error = %e, "upstream connection lost");
            Some((
                sqlstate::CONNECTION_FAILURE,
                format!("lost the upstream connection: {e}"),
            ))
        }
        Ending::Server(Ok(())) if client_terminated || last_server_tag == tags::ERROR_RESPONSE => {
            None
        }
        Ending::Server(Ok(())) => {
            warn!("upstream closed the connection");
            Some((
                sqlstate::CONNECTION_FAILURE,
                "the upstream server closed the connection unexpectedly".into(),
            ))
        }
        Ending::Server(Err(PumpError::Write(e))) => {
            debug!(error = %e, "client connection lost");
            None
        }
        Ending::Server(Err(PumpError::Frame(e))) => {
            warn!(error = %e, "upstream broke the protocol");
            Some((
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid message from the upstream server: {e}"),
            ))
        }
        Ending::Stopped => {
            info!("session closed by proxy shutdown");
            Some((
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection: the proxy is shutting down".into(),
            ))
        }
    };
    if let Some((code, message)) = farewell {
        if down.at_message_boundary() {
            farewell_half(&mut client_write, code, &message).await;
        }
    }
    if up.at_message_boundary() {
        let _ =
            tokio::time::timeout(FAREWELL_TIMEOUT, server_write.write_all(b"X\0\0\0\x04")).await;
    }
}

/// Sends a FATAL ErrorResponse and gives up on the client.
async fn farewell(client: &mut TcpStream, code: &str, message: &str) {
    let msg = notice::build(Severity::Fatal, code, message);
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.write_all(&msg)).await;
}

async fn farewell_half(client: &mut OwnedWriteHalf, code: &str, message: &str) {
    let msg = notice::build(Severity::Fatal, code, message);
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.write_all(&msg)).await;
}
