//! One session: a client connection and the upstream connection made for it.
//!
//! The startup phase is handled here (encryption requests answered, cancel requests routed,
//! limits applied), then [`relay`] moves bytes both ways until either side ends.

pub mod cancel;
pub mod observe;
pub mod pump;
pub mod relay;
pub mod startup;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::protocol::notice::{self, Severity, sqlstate};
use crate::protocol::startup::{StartupPacket, param, parse as parse_startup};
use crate::registry::{Registered, SessionInfo};
use crate::server::Shared;
use crate::txn::Tracker;
use startup::{Opening, StartupFailure};

/// How long the proxy spends telling a client why its session ends.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one client connection to its end.
pub async fn serve(
    id: u64,
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
            info!("startup timed out");
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
        Ok(Ok(Opening::Cancel {
            process_id,
            secret_key,
        })) => {
            return cancel::forward(&shared, process_id, &secret_key).await;
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
    let info = Arc::new(session_info(id, peer, &startup));
    debug!(user = %info.user, database = %info.database, "session starting");
    let registered = Registered::new(&shared.registry, info);
    shared.metrics.sessions.inc();
    let _count = scopeguard(|| {
        shared.metrics.sessions.dec();
    });
    let server = match connect_upstream(&shared).await {
        Ok(server) => server,
        Err(message) => {
            warn!(upstream = %config.upstream, %message, "upstream connection failed");
            return farewell(&mut client, sqlstate::CONNECTION_FAILURE, &message).await;
        }
    };
    relay::relay(client, server, startup, &shared, &registered.info, &stop).await;
}

/// Builds the registry entry from the StartupMessage.
fn session_info(id: u64, peer: SocketAddr, startup: &[u8]) -> SessionInfo {
    let params = match parse_startup(startup) {
        StartupPacket::Startup { params, .. } => params,
        _ => &[],
    };
    let user = param(params, "user").unwrap_or_default().to_string();
    let database = param(params, "database")
        .map(str::to_string)
        .unwrap_or_else(|| user.clone());
    SessionInfo {
        id,
        peer,
        application_name: param(params, "application_name")
            .unwrap_or_default()
            .to_string(),
        user,
        database,
        started: SystemTime::now(),
        started_at: Instant::now(),
        // The process id is the session id's low bits: unique among open sessions in practice,
        // and the secret makes a guessed id useless.
        proxy_key: (id as u32 & 0x7fff_ffff, rand::random()),
        upstream_key: Mutex::new(None),
        tracker: Mutex::new(Tracker::new()),
    }
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

/// Sends a FATAL ErrorResponse and gives up on the client.
pub(crate) async fn farewell<W: AsyncWrite + Unpin>(client: &mut W, code: &str, message: &str) {
    let msg = notice::build(Severity::Fatal, code, message);
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.write_all(&msg)).await;
}

/// Runs a closure when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    Guard(Some(f))
}
