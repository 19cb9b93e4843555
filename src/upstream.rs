//! The upstream server, as one seam: its address, the TLS settings and timeouts for reaching it,
//! and every way the sidecar connects to it — relayed sessions, forwarded cancel requests, the
//! sidecar's own SQL connections (backup actions, readiness checks) and the reachability probe of
//! `/readyz`. Nothing else opens a connection to the server, so a TLS or timeout setting cannot
//! apply to one path and be forgotten on another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::protocol::startup::SSL_REQUEST;
use crate::tls::{self, MaybeTls, TlsError, UpstreamTlsMode};

/// Where the server is and how to reach it.
pub struct Upstream {
    /// `host:port`, validated when the configuration was resolved.
    pub addr: String,
    host: String,
    port: u16,
    tls_mode: UpstreamTlsMode,
    /// The name to verify instead of the address's host.
    server_name: Option<String>,
    /// Present unless `upstream_tls = disable`; shared by the relay and the SQL connections.
    tls: Option<Arc<rustls::ClientConfig>>,
    connector: Option<TlsConnector>,
    /// How long any one connection attempt may take, in nanoseconds (a reload may change it).
    connect_timeout: AtomicU64,
}

/// An upstream that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {0:?} is not host:port")]
    Address(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Credentials for one of the sidecar's own SQL connections.
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Upstream {
    /// The upstream of a validated configuration; fails if the TLS files cannot be used.
    pub fn new(config: &Config) -> Result<Upstream, UpstreamError> {
        let (host, port) = config
            .upstream
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
            .ok_or_else(|| UpstreamError::Address(config.upstream.clone()))?;
        let tls = tls::client_config(config.upstream_tls, config.upstream_tls_ca.as_deref())?;
        Ok(Upstream {
            addr: config.upstream.clone(),
            host,
            port,
            tls_mode: config.upstream_tls,
            server_name: config.upstream_tls_server_name.clone(),
            connector: tls.clone().map(TlsConnector::from),
            tls,
            connect_timeout: AtomicU64::new(nanos(config.connect_timeout)),
        })
    }

    /// How long any one connection attempt may take (`connect_timeout`).
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_nanos(self.connect_timeout.load(Ordering::Relaxed))
    }

    pub fn set_connect_timeout(&self, timeout: Duration) {
        self.connect_timeout
            .store(nanos(timeout), Ordering::Relaxed);
    }

    /// Opens a relayed session's connection: TCP, then TLS if configured (SSLRequest, `S`/`N`,
    /// handshake) with libpq's `prefer`/`require`/`verify-full` meanings, all within
    /// `connect_timeout`. The error is the text for the client.
    pub async fn connect_relay(&self) -> Result<MaybeTls, String> {
        let addr = &self.addr;
        let attempt = async {
            let mut tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("could not connect to the upstream server {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let Some(connector) = &self.connector else {
                return Ok(tls::plain(tcp));
            };
            let mut request = [0u8; 8];
            request[..4].copy_from_slice(&8u32.to_be_bytes());
            request[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
            let mut answer = [0u8; 1];
            let negotiated = async {
                tcp.write_all(&request).await?;
                tcp.read_exact(&mut answer).await
            };
            negotiated
                .await
                .map_err(|e| format!("upstream {addr} failed during TLS negotiation: {e}"))?;
            match answer[0] {
                b'S' => {
                    let name = match &self.server_name {
                        Some(name) => tls::server_name(name)?,
                        None => tls::server_name(addr)?,
                    };
                    let stream = connector.connect(name, tcp).await.map_err(|e| {
                        format!("TLS handshake with the upstream server {addr} failed: {e}")
                    })?;
                    Ok(tls::encrypted(stream))
                }
                b'N' if self.tls_mode == UpstreamTlsMode::Prefer => Ok(tls::plain(tcp)),
                b'N' => Err(format!(
                    "the upstream server {addr} does not offer TLS (upstream_tls = {:?})",
                    self.tls_mode
                )),
                other => Err(format!(
                    "the upstream server {addr} answered SSLRequest with {other:#04x}"
                )),
            }
        };
        match tokio::time::timeout(self.connect_timeout(), attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "could not connect to the upstream server {addr}: no answer within {:?}",
                self.connect_timeout()
            )),
        }
    }

    /// Sends a CancelRequest packet on a connection of its own (plain TCP, as libpq does) and
    /// waits until the server closes that connection. PostgreSQL closes it only after it has
    /// signalled the backend, so once this returns the cancel can no longer hit a request sent
    /// later; the caller closes its client's cancel connection only then, which is what libpq's
    /// cancel waits for. Doltgres closes at once (it ignores cancels). The whole exchange is
    /// bounded by `connect_timeout`.
    pub async fn send_cancel(&self, packet: &[u8]) -> Result<(), String> {
        let sent = tokio::time::timeout(self.connect_timeout(), async {
            let mut upstream = TcpStream::connect(&self.addr).await?;
            upstream.write_all(packet).await?;
            // Nothing comes back but the close; a reset is a close too.
            let mut sink = [0u8; 64];
            while let Ok(n) = upstream.read(&mut sink).await
                && n > 0
            {}
            Ok::<(), std::io::Error>(())
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the server did not close the cancel connection within {:?}",
                self.connect_timeout()
            )),
        }
    }

    /// Opens one of the sidecar's own SQL connections, with the relay's TLS settings. The error
    /// keeps the server's SQLSTATE and message.
    pub async fn sql(&self, login: &Login<'_>) -> Result<Client, String> {
        let mut config = tokio_postgres::Config::new();
        match &self.server_name {
            // Verify this name, but connect to the configured address.
            Some(name) if self.tls.is_some() => {
                let addr = tokio::net::lookup_host(&self.addr)
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("cannot resolve {}", self.addr))?;
                config.host(name).hostaddr(addr.ip());
            }
            _ => {
                config.host(&self.host);
            }
        }
        config
            .port(self.port)
            .user(login.user)
            .password(login.password)
            .dbname(login.database)
            .application_name("doltgres-sidecar")
            .connect_timeout(self.connect_timeout());
        let connected = match &self.tls {
            None => config.connect(NoTls).await.map(|(client, connection)| {
                tokio::spawn(connection);
                client
            }),
            Some(tls) => {
                config.ssl_mode(match self.tls_mode {
                    UpstreamTlsMode::Prefer => SslMode::Prefer,
                    _ => SslMode::Require,
                });
                let make_tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                config.connect(make_tls).await.map(|(client, connection)| {
                    tokio::spawn(connection);
                    client
                })
            }
        };
        connected.map_err(|e| describe_sql_error(&e))
    }

    /// Whether the server accepts TCP connections now (for `/readyz`).
    pub async fn reachable(&self) -> Result<(), String> {
        let addr = &self.addr;
        match tokio::time::timeout(self.connect_timeout(), TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("upstream {addr} unreachable: {e}")),
            Err(_) => Err(format!("upstream {addr} did not answer")),
        }
    }
}

/// A quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The first column of every row of a simple-protocol answer, as text (NULLs left out).
pub fn first_column(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

/// The server's message and SQLSTATE: tokio-postgres's own Display says only "db error".
pub fn describe_sql_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
