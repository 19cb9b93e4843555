//! TLS on both sides, with rustls: the acceptor for clients that send SSLRequest, and the
//! connector for an upstream reached over TLS. Certificates and keys are read from PEM files with
//! `rustls-pki-types`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::config::Config;
use crate::config::auth::AuthMode;
use crate::config::stamp::FileStamp;

pub use crate::config::modes::{ClientTlsMode, UpstreamTlsMode};

/// A TLS setup that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        what: &'static str,
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in {0}")]
    NoCertificate(String),
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("upstream_tls = verify-full needs upstream_tls_ca")]
    MissingCa,
}

fn pem_error(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.display().to_string();
    move |source| TlsError::Pem { what, path, source }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What clients are served: the acceptor, and the tls-server-end-point channel-binding data of
/// its certificate, built from one reading of the files so they always match. A reload or a
/// certificate rotation swaps in a new one; sessions keep the one their handshake used.
pub struct ClientTls {
    pub acceptor: TlsAcceptor,
    /// `auth = "proxy"`: offered as SCRAM-SHA-256-PLUS channel binding (`None`: not offered).
    pub end_point: Option<Vec<u8>>,
    /// The files, and their state just before they were read.
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) stamps: [Option<FileStamp>; 2],
}

impl ClientTls {
    /// What `config` serves: `None` with `tls = "disable"`.
    pub fn for_config(config: &Config) -> Result<Option<ClientTls>, TlsError> {
        match (config.tls, &config.tls_cert, &config.tls_key) {
            (ClientTlsMode::Disable, _, _) => Ok(None),
            (_, Some(cert), Some(key)) => {
                ClientTls::load(cert, key, config.auth_mode() == AuthMode::Proxy).map(Some)
            }
            _ => Err(TlsError::NoCertificate("tls_cert".into())),
        }
    }

    /// Reads a certificate chain and its key; `channel_binding`: compute the end-point data.
    pub fn load(cert: &Path, key: &Path, channel_binding: bool) -> Result<ClientTls, TlsError> {
        let stamps = ClientTls::stamps_of(cert, key);
        let certs = read_certs(cert)?;
        let end_point = match channel_binding {
            true => crate::auth::channel::tls_server_end_point(&certs[0]),
            false => None,
        };
        let acceptor = acceptor_for(certs, key)?;
        Ok(ClientTls {
            acceptor,
            end_point,
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            stamps,
        })
    }

    /// The files' state now, to compare with [`ClientTls::stamps`].
    pub(crate) fn stamps_of(cert: &Path, key: &Path) -> [Option<FileStamp>; 2] {
        [FileStamp::of(cert), FileStamp::of(key)]
    }
}

fn read_certs(cert: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error("certificates", cert))?
        .collect::<Result<_, _>>()
        .map_err(pem_error("certificates", cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.display().to_string()));
    }
    Ok(certs)
}

fn acceptor_for(certs: Vec<CertificateDer<'static>>, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error("private key", key))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Builds the acceptor for client TLS from a certificate chain and key in PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    acceptor_for(read_certs(cert)?, key)
}

/// The rustls client configuration for the upstream, shared by the relay's connector and the
/// sidecar's own (backup action) connections. `None` when `mode` is `disable`.
pub fn client_config(
    mode: UpstreamTlsMode,
    ca: Option<&Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let config = match mode {
        UpstreamTlsMode::Disable => return Ok(None),
        UpstreamTlsMode::VerifyFull => {
            let ca = ca.ok_or(TlsError::MissingCa)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(pem_error("CA certificates", ca))?
            {
                roots.add(cert.map_err(pem_error("CA certificates", ca))?)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        UpstreamTlsMode::Prefer | UpstreamTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// The server name to verify for `host:port`.
pub fn server_name(upstream: &str) -> Result<ServerName<'static>, String> {
    let host = upstream.rsplit_once(':').map_or(upstream, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid upstream host name {host:?}: {e}"))
}

/// `prefer`/`require`: encryption without authentication of the server, as in libpq.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection that may have been upgraded to TLS: [`Either::Left`] plain TCP,
/// [`Either::Right`] TLS. tokio-util's `Either` passes every read and write (vectored too) to the
/// stream it holds.
pub type MaybeTls = Either<TcpStream, Box<tokio_rustls::TlsStream<TcpStream>>>;

/// A connection not (yet) encrypted.
pub fn plain(tcp: TcpStream) -> MaybeTls {
    Either::Left(tcp)
}

/// A connection after its TLS handshake, either side's.
pub fn encrypted(stream: impl Into<tokio_rustls::TlsStream<TcpStream>>) -> MaybeTls {
    Either::Right(Box::new(stream.into()))
}

/// Whether the connection is encrypted.
pub fn is_tls(stream: &MaybeTls) -> bool {
    matches!(stream, Either::Right(_))
}
