//! Serving the admin API on its listener: hyper's HTTP/1 server with a timer, one task per
//! connection, a bounded number of them at once.
//!
//! - **Header and idle timeout** ([`HEADER_TIMEOUT`]): a connection that has not sent a whole
//!   request head within it is closed, and so is a keep-alive connection idle that long between
//!   requests (hyper's header read timeout, which starts again after each answer).
//! - **Body timeout** ([`BODY_TIMEOUT`]): a request body must have arrived whole that long after
//!   its head (tower-http's body deadline). No endpoint reads a body; one still arriving when the
//!   answer is written ends the connection after the answer (hyper does not wait for it).
//! - **Connection cap** ([`crate::descriptors::Budget::admin_connections`]): at the cap the
//!   listener is not accepted from. Further clients' connections wait in the kernel's listen
//!   queue, holding no descriptor of this process, and are served as connections end (which
//!   the timeouts bound); past the queue's length their handshakes are retried by the client's
//!   kernel. A client therefore sees a slow answer, or a connect timeout, never a reset.
//! - **Stop** (shutdown, or a successor taking the listener over): accepting stops, every
//!   connection is told to close — an idle one closes at once, one with a request under way after
//!   its answer — and those still open after [`STOP_GRACE`] (at most `shutdown_timeout`) are
//!   dropped. Work a request started that must not stop half-way (a window, a hold) runs in its
//!   own task, which the stop waits for (see [`crate::state::work::Work`]).

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::RequestBodyDeadline;
use tracing::{debug, info, warn};

use crate::accept::AcceptErrors;
use crate::descriptors::Budget;
use crate::shared::Shared;

/// How long a client has to send a whole request head, and how long a keep-alive connection may
/// sit idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request body may take to arrive whole.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connections get to close on stop before they are dropped.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// The most a connection buffers of a request head (hyper's least): far more than the longest
/// request target (1 KiB) and a bearer token need, and 512 connections hold 4 MiB at most.
const MAX_BUFFER: usize = 8 * 1024;
/// How often reaching the connection cap is logged while it lasts.
const CAP_LOG_EVERY: Duration = Duration::from_secs(60);

/// The service each connection runs: the router, request bodies under their deadline.
type Service = TowerToHyperService<RequestBodyDeadline<axum::Router>>;

/// Waits for the work operators' requests started, for as long as a window still open may take
/// to end (`action_timeout + drain_timeout`, as the final window waits).
async fn finish_work(shared: &Shared) {
    if shared.work.is_idle() {
        return;
    }
    let config = shared.config();
    let within = config.backup.action_timeout + config.drain_timeout;
    info!(
        ?within,
        "admin API stopped: waiting for the window or hold it started"
    );
    if !shared.work.finish(within).await {
        warn!(
            ?within,
            "a window or hold started through the admin API did not end: going on without it"
        );
    }
}

/// Serves the admin API on `listener` until `stop` is cancelled, then closes its connections
/// and waits for the work requests started (see the module doc).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let cap = Budget::current(shared.config().max_client_connections).admin_connections;
    info!(admin = %listener.local_addr()?, max_connections = cap, "admin API listening");
    let service = RequestBodyDeadline::new(super::router(shared.clone()), BODY_TIMEOUT);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUFFER);
    let permits = Arc::new(Semaphore::new(cap));
    let connections = TaskTracker::new();
    let mut errors = AcceptErrors::new("admin API");
    let mut cap_logged: Option<Instant> = None;
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit,
        };
        // (The semaphore is never closed.)
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                let pause = errors.failed(&e);
                drop(permit);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        errors.accepted();
        if permits.available_permits() == 0
            && cap_logged.is_none_or(|at| at.elapsed() >= CAP_LOG_EVERY)
        {
            cap_logged = Some(Instant::now());
            warn!(
                connections = cap,
                "the admin API serves as many connections as it may: more wait to be accepted"
            );
        }
        let grace = STOP_GRACE.min(shared.config().shutdown_timeout);
        connections.spawn(connection(
            stream,
            http.clone(),
            TowerToHyperService::new(service.clone()),
            permit,
            stop.clone(),
            grace,
        ));
    }
    drop(listener);
    connections.close();
    let open = connections.len();
    if open > 0 {
        debug!(connections = open, "admin API: closing its connections");
    }
    // Each connection ends within STOP_GRACE of the stop; the margin is for the runtime.
    let grace = STOP_GRACE + Duration::from_secs(1);
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        warn!(
            connections = connections.len(),
            "admin connections did not close: going on without them"
        );
    }
    finish_work(&shared).await;
    Ok(())
}

/// Serves one connection until it ends, or until `stop` and then at most `grace`.
async fn connection(
    stream: TcpStream,
    http: http1::Builder,
    service: Service,
    _permit: OwnedSemaphorePermit,
    stop: CancellationToken,
    grace: Duration,
) {
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(grace, conn.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => {
                    debug!("admin connection still open at the stop's deadline: dropped");
                    return;
                }
            }
        }
    };
    if let Err(e) = ended {
        // Header timeouts, malformed requests, clients gone: theirs, not the proxy's.
        debug!(error = %e, "admin connection ended");
    }
}
