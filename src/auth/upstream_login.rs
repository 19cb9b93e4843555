//! The proxy logging a connection in upstream as a client's user: [`upstream_login`] sends the
//! client's StartupMessage and answers the server's authentication requests with
//! [`Credentials`] (the ClientKey a client's SCRAM proof revealed, or a configured password),
//! and returns what the server sent after AuthenticationOk. A session's first login and its
//! re-attach after a server restart both run it.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use super::exchange::{code, read_message};
use super::scram::{self, ClientExchange, ClientKeys, Key, SCRAM_SHA_256, ScramError};
use crate::protocol::backend;
use crate::protocol::tags;
use crate::registry::BackendKey;

/// The largest message the server may send during login.
const MAX_LOGIN_MESSAGE: u32 = 1 << 20;

/// What logs a session in upstream as its user. Held for the session's life, in memory only;
/// the keys and the password are zeroed when it is dropped.
pub struct Credentials {
    pub user: String,
    /// From the client's SCRAM proof: usable while the server's verifier has the same salt and
    /// iteration count as the one the client was checked against.
    pub scram: Option<ScramCredentials>,
    /// A configured password (`auth_passwords`, or a plain one in the auth file).
    pub password: Option<Zeroizing<String>>,
}

/// A ClientKey and the verifier it was checked against.
pub struct ScramCredentials {
    pub client_key: Zeroizing<Key>,
    /// To check the server's signature.
    pub server_key: Zeroizing<Key>,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("client_key", &self.scram.is_some())
            .field("password", &self.password.is_some())
            .finish()
    }
}

impl Credentials {
    /// The keys for a SCRAM exchange with this salt and iteration count.
    fn scram_keys(&self, salt: &[u8], iterations: u32) -> Result<ClientKeys, LoginError> {
        match (&self.scram, &self.password) {
            (Some(s), _) if s.salt == salt && s.iterations == iterations => Ok(ClientKeys {
                client_key: s.client_key.clone(),
                server_key: *s.server_key,
            }),
            (_, Some(password)) => Ok(ClientKeys::from_password(password, salt, iterations)),
            (Some(_), None) => Err(LoginError::StaleVerifier),
            (None, None) => Err(LoginError::Unsupported(format!(
                "the upstream server asks for a SCRAM login and there is no password for user \
                 \"{}\"",
                self.user
            ))),
        }
    }

    fn password_for(&self, method: &str) -> Result<&str, LoginError> {
        self.password.as_deref().map(String::as_str).ok_or_else(|| {
            LoginError::Unsupported(format!(
                "the upstream server asks for {method} and auth_passwords has none for user \"{}\"",
                self.user
            ))
        })
    }
}

/// A finished login upstream.
#[derive(Debug)]
pub struct LoginOutcome {
    /// Everything the server sent after AuthenticationOk, as it sent it: ParameterStatus,
    /// BackendKeyData, ReadyForQuery — or the ErrorResponse that ended the login (a database
    /// that does not exist, say) — and any notices among them.
    pub after_auth: BytesMut,
    pub parameters: Vec<(String, String)>,
    pub backend_key: Option<BackendKey>,
    /// The login ended with ReadyForQuery (not an ErrorResponse or a close).
    pub ready: bool,
}

/// A login upstream that did not succeed.
#[derive(Debug)]
pub enum LoginError {
    Io(std::io::Error),
    /// The server closed the connection before authentication was done.
    Closed,
    /// The server refused the login with this ErrorResponse (the whole message).
    Refused {
        response: BytesMut,
        sqlstate: Option<String>,
    },
    /// The server's SCRAM salt or iteration count differ from the verifier the client was
    /// checked against (the verifier changed since it was read), and there is no password.
    StaleVerifier,
    /// The server asks for an authentication the proxy cannot answer for this user.
    Unsupported(String),
    /// The server broke the protocol, or its SCRAM signature does not verify.
    Server(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Io(e) => write!(f, "lost the upstream connection during login: {e}"),
            LoginError::Closed => {
                write!(f, "the upstream server closed the connection during login")
            }
            LoginError::Refused { sqlstate, .. } => write!(
                f,
                "the upstream server refused the login ({})",
                sqlstate.as_deref().unwrap_or("no SQLSTATE")
            ),
            LoginError::StaleVerifier => write!(
                f,
                "the upstream server's SCRAM salt differs from the verifier's: it changed"
            ),
            LoginError::Unsupported(message) => f.write_str(message),
            LoginError::Server(message) => write!(f, "upstream login failed: {message}"),
        }
    }
}

impl From<std::io::Error> for LoginError {
    fn from(e: std::io::Error) -> LoginError {
        LoginError::Io(e)
    }
}

impl From<ScramError> for LoginError {
    fn from(e: ScramError) -> LoginError {
        LoginError::Server(e.to_string())
    }
}

/// A `p` message (PasswordMessage, SASLInitialResponse, SASLResponse) with this body.
fn password_message(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(tags::PASSWORD);
    out.put_u32(4 + body.len() as u32);
    out.put_slice(body);
    out
}

/// Sends the client's StartupMessage on a fresh connection and answers the server's
/// authentication requests with `credentials`: SCRAM-SHA-256 with the ClientKey (or a
/// password), cleartext or MD5 with a password, nothing for trust. Returns what the server sent
/// after AuthenticationOk, up to ReadyForQuery.
pub async fn upstream_login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    startup: &[u8],
    credentials: &Credentials,
) -> Result<LoginOutcome, LoginError> {
    stream.write_all(startup).await?;
    let mut buf = BytesMut::with_capacity(512);
    let mut scram: Option<ClientExchange> = None;
    loop {
        let Some((tag, body)) = read_message(stream, &mut buf, MAX_LOGIN_MESSAGE).await? else {
            return Err(LoginError::Closed);
        };
        match tag {
            tags::ERROR_RESPONSE => {
                let sqlstate = backend::error_fields(&body).code.map(str::to_string);
                let mut response = BytesMut::with_capacity(5 + body.len());
                response.put_u8(tag);
                response.put_u32(4 + body.len() as u32);
                response.put_slice(&body);
                return Err(LoginError::Refused { response, sqlstate });
            }
            // Notices before AuthenticationOk, and a NegotiateProtocolVersion answering the
            // client's StartupMessage: the proxy has answered the client's startup itself.
            tags::NOTICE_RESPONSE | tags::NEGOTIATE_PROTOCOL_VERSION => continue,
            tags::AUTHENTICATION => {}
            other => {
                return Err(LoginError::Server(format!(
                    "unexpected message {:?} before authentication was done",
                    other as char
                )));
            }
        }
        let Some(request) = body.get(..4) else {
            return Err(LoginError::Server(
                "authentication request too short".into(),
            ));
        };
        let data = &body[4..];
        match u32::from_be_bytes([request[0], request[1], request[2], request[3]]) {
            code::OK => break,
            code::CLEARTEXT_PASSWORD => {
                let password = credentials.password_for("a cleartext password")?;
                let mut body = Zeroizing::new(password.as_bytes().to_vec());
                body.push(0);
                stream.write_all(&password_message(&body)).await?;
            }
            code::MD5_PASSWORD => {
                let password = credentials.password_for("an MD5 password")?;
                let salt: [u8; 4] = data
                    .try_into()
                    .map_err(|_| LoginError::Server("MD5 request without a salt".into()))?;
                let hash = postgres_protocol::authentication::md5_hash(
                    credentials.user.as_bytes(),
                    password.as_bytes(),
                    salt,
                );
                let mut body = hash.into_bytes();
                body.push(0);
                stream.write_all(&password_message(&body)).await?;
            }
            code::SASL => {
                let offered = data
                    .split(|b| *b == 0)
                    .any(|m| m == SCRAM_SHA_256.as_bytes());
                if !offered {
                    return Err(LoginError::Unsupported(
                        "the upstream server offers no SASL mechanism the proxy speaks \
                         (SCRAM-SHA-256)"
                            .into(),
                    ));
                }
                let (exchange, first) = ClientExchange::new(&scram::random_nonce());
                scram = Some(exchange);
                let mut body = BytesMut::new();
                body.put_slice(SCRAM_SHA_256.as_bytes());
                body.put_u8(0);
                body.put_i32(first.len() as i32);
                body.put_slice(first.as_bytes());
                stream.write_all(&password_message(&body)).await?;
            }
            code::SASL_CONTINUE => {
                let exchange = scram.as_mut().ok_or_else(|| {
                    LoginError::Server("SASL continue without a SASL exchange".into())
                })?;
                let last = exchange.respond(data, |first| {
                    credentials.scram_keys(&first.salt, first.iterations)
                })??;
                stream.write_all(&password_message(last.as_bytes())).await?;
            }
            code::SASL_FINAL => {
                let exchange = scram.as_mut().ok_or_else(|| {
                    LoginError::Server("SASL final without a SASL exchange".into())
                })?;
                exchange.finish(data)?;
            }
            other => {
                return Err(LoginError::Unsupported(format!(
                    "the upstream server asks for an authentication method the proxy does not \
                     speak (request {other})"
                )));
            }
        }
    }
    if scram.is_some_and(|s| !s.is_finished()) {
        return Err(LoginError::Server(
            "AuthenticationOk before the server proved it knows the verifier".into(),
        ));
    }
    read_until_ready(stream, buf).await
}

/// Reads the server's messages after AuthenticationOk until ReadyForQuery (or an
/// ErrorResponse, or a close), keeping their bytes as they came.
async fn read_until_ready<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: BytesMut,
) -> Result<LoginOutcome, LoginError> {
    let mut outcome = LoginOutcome {
        after_auth: BytesMut::new(),
        parameters: Vec::new(),
        backend_key: None,
        ready: false,
    };
    loop {
        let Some((tag, body)) = read_message(stream, &mut buf, MAX_LOGIN_MESSAGE).await? else {
            return Ok(outcome);
        };
        outcome.after_auth.put_u8(tag);
        outcome.after_auth.put_u32(4 + body.len() as u32);
        outcome.after_auth.put_slice(&body);
        match tag {
            tags::PARAMETER_STATUS => {
                let mut parts = body[..].split(|b| *b == 0);
                if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                    outcome.parameters.push((
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    ));
                }
            }
            tags::BACKEND_KEY_DATA => {
                outcome.backend_key =
                    backend::backend_key(&body).map(|(process_id, secret)| BackendKey {
                        process_id,
                        secret_key: crate::registry::Secret::from_slice(secret),
                    });
            }
            tags::READY_FOR_QUERY => {
                outcome.ready = true;
                break;
            }
            tags::ERROR_RESPONSE => break,
            _ => {}
        }
    }
    // Whatever followed (nothing, normally) goes to the client after them.
    outcome.after_auth.put_slice(&buf);
    Ok(outcome)
}
