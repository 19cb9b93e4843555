//! The SCRAM exchange with a client, over its connection: AuthenticationSASL, the client's
//! SASLInitialResponse, AuthenticationSASLContinue, its SASLResponse. What each message means is
//! [`ServerExchange`]'s business; this module reads and writes them, and words failures as
//! PostgreSQL does. AuthenticationSASLFinal and AuthenticationOk are sent by the caller once the
//! login upstream has worked.

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::scram::{ScramError, ServerExchange, Verified, random_nonce};
use crate::protocol::frame::{HEADER_LEN, Header};
use crate::protocol::notice::sqlstate;
use crate::protocol::tags;

/// Authentication request codes (the body's first word of an `R` message).
pub mod code {
    pub const OK: u32 = 0;
    pub const CLEARTEXT_PASSWORD: u32 = 3;
    pub const MD5_PASSWORD: u32 = 5;
    pub const SASL: u32 = 10;
    pub const SASL_CONTINUE: u32 = 11;
    pub const SASL_FINAL: u32 = 12;
}

/// The largest SASL message PostgreSQL reads from a client (`PG_MAX_AUTH_TOKEN_LENGTH`).
pub const MAX_AUTH_MESSAGE: u32 = 65_535;

/// An exchange with a client that did not verify it.
#[derive(Debug)]
pub enum ExchangeFailure {
    /// The client left, the connection broke, or it sent an unreadable frame: close in silence,
    /// as PostgreSQL does.
    Gone(String),
    /// The proof did not match (a wrong password, or a user without a verifier).
    Rejected,
    /// Answer FATAL with this SQLSTATE, message and detail, and close.
    Refused {
        code: &'static str,
        message: String,
        detail: Option<String>,
    },
}

impl From<ScramError> for ExchangeFailure {
    fn from(e: ScramError) -> ExchangeFailure {
        match e {
            ScramError::Rejected => ExchangeFailure::Rejected,
            ScramError::Protocol {
                code,
                message,
                detail,
            } => ExchangeFailure::Refused {
                code,
                message: message.to_string(),
                detail,
            },
        }
    }
}

/// An `R` message with this code and data.
pub fn auth_request(code: u32, data: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(9 + data.len());
    out.put_u8(tags::AUTHENTICATION);
    out.put_u32(8 + data.len() as u32);
    out.put_u32(code);
    out.put_slice(data);
    out
}

/// Reads one whole tagged message into `buf` and splits it off: tag and body. `Ok(None)` when
/// the peer closed before a whole message arrived.
pub async fn read_message<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut BytesMut,
    max_len: u32,
) -> std::io::Result<Option<(u8, BytesMut)>> {
    loop {
        if let Some(header) = Header::parse(buf) {
            let header = header
                .validate(max_len)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if buf.len() >= header.total_len() {
                let mut message = buf.split_to(header.total_len());
                message.advance(HEADER_LEN);
                return Ok(Some((header.tag, message)));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Runs the exchange up to the client's proof. On success the client waits for
/// AuthenticationSASLFinal ([`Verified::server_final`]) and AuthenticationOk.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    exchange: &mut ServerExchange,
) -> Result<Verified, ExchangeFailure> {
    let gone = |e: std::io::Error| ExchangeFailure::Gone(e.to_string());
    let mut mechanisms = Vec::new();
    for name in exchange.mechanisms() {
        mechanisms.extend_from_slice(name.as_bytes());
        mechanisms.push(0);
    }
    mechanisms.push(0);
    client
        .write_all(&auth_request(code::SASL, &mechanisms))
        .await
        .map_err(gone)?;
    let mut buf = BytesMut::with_capacity(256);
    let initial = sasl_message(client, &mut buf).await?;
    let (mechanism, data) = parse_initial_response(&initial)?;
    let server_first = exchange.start(&mechanism, data, &random_nonce())?;
    client
        .write_all(&auth_request(code::SASL_CONTINUE, server_first.as_bytes()))
        .await
        .map_err(gone)?;
    let response = sasl_message(client, &mut buf).await?;
    Ok(exchange.finish(&response)?)
}

/// Reads the client's next message, which must be a SASL response (`p`).
async fn sasl_message<S: AsyncRead + Unpin>(
    client: &mut S,
    buf: &mut BytesMut,
) -> Result<BytesMut, ExchangeFailure> {
    match read_message(client, buf, MAX_AUTH_MESSAGE).await {
        Ok(Some((tags::PASSWORD, body))) => Ok(body),
        Ok(Some((tag, _))) => Err(ExchangeFailure::Refused {
            code: sqlstate::PROTOCOL_VIOLATION,
            message: format!("expected SASL response, got message type {tag}"),
            detail: None,
        }),
        Ok(None) => Err(ExchangeFailure::Gone(
            "the client closed the connection during authentication".into(),
        )),
        // A length outside PostgreSQL's bounds for an authentication message.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(ExchangeFailure::Refused {
            code: sqlstate::PROTOCOL_VIOLATION,
            message: format!("invalid authentication message: {e}"),
            detail: None,
        }),
        Err(e) => Err(ExchangeFailure::Gone(e.to_string())),
    }
}

/// SASLInitialResponse: the mechanism's name, then the length of the data (-1: none) and the
/// data.
fn parse_initial_response(body: &[u8]) -> Result<(String, &[u8]), ExchangeFailure> {
    let invalid = || ExchangeFailure::Refused {
        code: sqlstate::PROTOCOL_VIOLATION,
        message: "invalid message format".into(),
        detail: None,
    };
    let end = body.iter().position(|b| *b == 0).ok_or_else(invalid)?;
    let mechanism = String::from_utf8_lossy(&body[..end]).into_owned();
    let rest = &body[end + 1..];
    let len = rest.get(..4).ok_or_else(invalid)?;
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let data = &rest[4..];
    match len {
        -1 if data.is_empty() => Ok((mechanism, &[])),
        n if n >= 0 && n as usize == data.len() => Ok((mechanism, data)),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::{SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
    use crate::auth::verifier::ScramVerifier;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
        let mut body = mechanism.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&(data.len() as i32).to_be_bytes());
        body.extend_from_slice(data);
        message(b'p', &body)
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    async fn read_auth(stream: &mut tokio::io::DuplexStream) -> (u32, Vec<u8>) {
        let mut buf = BytesMut::new();
        let (tag, body) = read_message(stream, &mut buf, 1 << 16)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tag, b'R');
        let code = u32::from_be_bytes(body[..4].try_into().unwrap());
        (code, body[4..].to_vec())
    }

    /// A client (postgres-protocol's SCRAM implementation) against the proxy's side.
    async fn run(
        password: &str,
        verifier: Option<ScramVerifier>,
    ) -> Result<Vec<u8>, ExchangeFailure> {
        let (mut client, mut proxy) = tokio::io::duplex(1 << 16);
        let mock = ScramVerifier::mock("u", b"s");
        let server = tokio::spawn(async move {
            let mut exchange = ServerExchange::new(verifier, mock, None);
            let verified = authenticate(&mut proxy, &mut exchange).await?;
            Ok::<_, ExchangeFailure>(verified.server_final)
        });
        let (code, mechanisms) = read_auth(&mut client).await;
        assert_eq!(code, code::SASL);
        assert_eq!(mechanisms, b"SCRAM-SHA-256\0\0");
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        client
            .write_all(&initial_response(SCRAM_SHA_256, scram.message()))
            .await
            .unwrap();
        let (code, server_first) = read_auth(&mut client).await;
        assert_eq!(code, code::SASL_CONTINUE);
        scram.update(&server_first).unwrap();
        client
            .write_all(&message(b'p', scram.message()))
            .await
            .unwrap();
        let server_final = server.await.unwrap()?;
        scram.finish(server_final.as_bytes()).unwrap();
        Ok(server_final.into_bytes())
    }

    #[tokio::test]
    async fn the_right_password_verifies_both_ways() {
        let verifier = ScramVerifier::generate("pencil");
        run("pencil", Some(verifier)).await.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_password_or_no_verifier_is_rejected() {
        let verifier = ScramVerifier::generate("pencil");
        assert!(matches!(
            run("pen", Some(verifier)).await,
            Err(ExchangeFailure::Rejected)
        ));
        assert!(matches!(
            run("pencil", None).await,
            Err(ExchangeFailure::Rejected)
        ));
    }

    #[tokio::test]
    async fn other_messages_and_mechanisms_are_refused() {
        for (bytes, expected) in [
            (
                message(b'Q', b"SELECT 1\0"),
                "expected SASL response, got message type 81",
            ),
            (
                initial_response("SCRAM-SHA-1", b"n,,n=,r=abc"),
                "client selected an invalid SASL authentication mechanism",
            ),
            (
                initial_response(SCRAM_SHA_256_PLUS, b"p=tls-server-end-point,,n=,r=abc"),
                "client selected an invalid SASL authentication mechanism",
            ),
            (
                message(b'p', b"SCRAM-SHA-256\0\0\0\0\x0an,,n=,r=a"),
                "invalid message format",
            ),
            (message(b'p', b"no terminator"), "invalid message format"),
        ] {
            let (mut client, mut proxy) = tokio::io::duplex(1 << 16);
            client.write_all(&bytes).await.unwrap();
            let mut exchange = ServerExchange::new(None, ScramVerifier::mock("u", b"s"), None);
            match authenticate(&mut proxy, &mut exchange).await {
                Err(ExchangeFailure::Refused { code, message, .. }) => {
                    assert_eq!(code, "08P01");
                    assert_eq!(message, expected);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_client_that_leaves_is_gone() {
        let (client, mut proxy) = tokio::io::duplex(1 << 16);
        drop(client);
        let mut exchange = ServerExchange::new(None, ScramVerifier::mock("u", b"s"), None);
        assert!(matches!(
            authenticate(&mut proxy, &mut exchange).await,
            Err(ExchangeFailure::Gone(_))
        ));
    }

    #[test]
    fn initial_response_without_data() {
        let (mechanism, data) = parse_initial_response(b"SCRAM-SHA-256\0\xff\xff\xff\xff").unwrap();
        assert_eq!((mechanism.as_str(), data), ("SCRAM-SHA-256", &[][..]));
    }
}
