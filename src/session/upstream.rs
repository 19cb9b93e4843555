//! Connecting to the upstream: TCP within `connect_timeout`, then TLS if configured (SSLRequest,
//! `S`/`N`, handshake), with libpq's `prefer`/`require`/`verify-full` meanings.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::startup::SSL_REQUEST;
use crate::shared::Shared;
use crate::tls::{self, MaybeTls, UpstreamTlsMode};

/// Opens the upstream connection for a session; the error is the text for the client.
pub async fn connect(shared: &Shared) -> Result<MaybeTls, String> {
    let config = &shared.config;
    let addr = &config.upstream;
    let attempt = async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("could not connect to the upstream server {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let Some(connector) = &shared.upstream_tls else {
            return Ok(MaybeTls::Plain(tcp));
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
                let name = match &config.upstream_tls_server_name {
                    Some(name) => tls::server_name(name)?,
                    None => tls::server_name(addr)?,
                };
                let stream = connector.connect(name, tcp).await.map_err(|e| {
                    format!("TLS handshake with the upstream server {addr} failed: {e}")
                })?;
                Ok(MaybeTls::Tls(Box::new(stream.into())))
            }
            b'N' if config.upstream_tls == UpstreamTlsMode::Prefer => Ok(MaybeTls::Plain(tcp)),
            b'N' => Err(format!(
                "the upstream server {addr} does not offer TLS (upstream_tls = {:?})",
                config.upstream_tls
            )),
            other => Err(format!(
                "the upstream server {addr} answered SSLRequest with {other:#04x}"
            )),
        }
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "could not connect to the upstream server {addr}: no answer within {:?}",
            config.connect_timeout
        )),
    }
}
