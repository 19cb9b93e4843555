//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the messages of both sides, parsed
//! and built, and the key arithmetic.
//!
//! Pure: no IO, no clock. Every parser is total: any byte string gives a value or a
//! [`ScramError`], never a panic (the unit tests feed them garbage). Nonces come from the caller,
//! so exchanges are reproducible in tests.
//!
//! The two sides:
//! - [`ServerExchange`]: the proxy authenticating a client against a [`ScramVerifier`]. A client
//!   whose proof matches yields its ClientKey (`ClientProof XOR HMAC(StoredKey, AuthMessage)`,
//!   checked by `H(ClientKey) == StoredKey` in constant time: that comparison is the password
//!   check).
//! - [`ClientExchange`]: the proxy logging in upstream with a ClientKey (or keys derived from a
//!   password) and checking the server's signature with the ServerKey.
//!
//! Error texts follow PostgreSQL 15's, so a client sees what PostgreSQL would have said.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::verifier::ScramVerifier;
use crate::protocol::notice::sqlstate;

/// The mechanism without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel-binding type PostgreSQL supports (RFC 5929).
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";
/// Length of every SCRAM-SHA-256 key, signature and proof.
pub const KEY_LEN: usize = 32;
/// A key, signature or proof.
pub type Key = [u8; KEY_LEN];
/// PostgreSQL's default iteration count (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// PostgreSQL's salt length.
pub const SALT_LEN: usize = 16;
/// Random bytes in a nonce (PostgreSQL's length; 24 characters in base64).
pub const NONCE_BYTES: usize = 18;

/// A SCRAM exchange that cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// The proof does not match the verifier (a wrong password, or no verifier at all): the
    /// client is told "password authentication failed".
    Rejected,
    /// A message broke the rules: reported with this SQLSTATE, message and detail.
    Protocol {
        code: &'static str,
        message: &'static str,
        detail: Option<String>,
    },
}

impl std::fmt::Display for ScramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramError::Rejected => write!(f, "the SCRAM proof does not match"),
            ScramError::Protocol {
                message,
                detail: Some(detail),
                ..
            } => write!(f, "{message}: {detail}"),
            ScramError::Protocol { message, .. } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for ScramError {}

fn malformed(detail: impl Into<String>) -> ScramError {
    ScramError::Protocol {
        code: sqlstate::PROTOCOL_VIOLATION,
        message: "malformed SCRAM message",
        detail: Some(detail.into()),
    }
}

fn violation(message: &'static str, detail: Option<String>) -> ScramError {
    ScramError::Protocol {
        code: sqlstate::PROTOCOL_VIOLATION,
        message,
        detail,
    }
}

fn unsupported(message: &'static str) -> ScramError {
    ScramError::Protocol {
        code: sqlstate::FEATURE_NOT_SUPPORTED,
        message,
        detail: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Key arithmetic

/// `HMAC-SHA-256(key, parts...)`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `SHA-256(data)`.
pub fn h(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// `a XOR b`.
pub fn xor(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The password as SCRAM hashes it: SASLprep'd when that succeeds, else its raw bytes (as
/// PostgreSQL does for passwords that are not valid UTF-8 or hold prohibited characters).
pub fn normalize_password(password: &str) -> Zeroizing<Vec<u8>> {
    match stringprep::saslprep(password) {
        Ok(prepared) => Zeroizing::new(prepared.as_bytes().to_vec()),
        Err(_) => Zeroizing::new(password.as_bytes().to_vec()),
    }
}

/// `SaltedPassword = Hi(Normalize(password), salt, i)` (PBKDF2 with HMAC-SHA-256).
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Zeroizing<Key> {
    let normalized = normalize_password(password);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    pbkdf2::pbkdf2_hmac::<Sha256>(&normalized, salt, iterations, out.as_mut());
    out
}

/// `ClientKey = HMAC(SaltedPassword, "Client Key")`.
pub fn client_key(salted_password: &Key) -> Zeroizing<Key> {
    Zeroizing::new(hmac(salted_password, &[b"Client Key"]))
}

/// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
pub fn server_key(salted_password: &Key) -> Key {
    hmac(salted_password, &[b"Server Key"])
}

/// `ClientProof = ClientKey XOR HMAC(H(ClientKey), AuthMessage)`.
pub fn client_proof(client_key: &Key, auth_message: &[u8]) -> Key {
    let stored_key = h(client_key);
    xor(client_key, &hmac(&stored_key, &[auth_message]))
}

/// Checks a client's proof against a StoredKey. When `H(proof XOR HMAC(StoredKey, AuthMessage))`
/// equals StoredKey (compared in constant time), the proof is right and the XOR is the client's
/// ClientKey.
pub fn recover_client_key(
    stored_key: &Key,
    auth_message: &[u8],
    proof: &Key,
) -> Option<Zeroizing<Key>> {
    let signature = hmac(stored_key, &[auth_message]);
    let client_key = Zeroizing::new(xor(proof, &signature));
    bool::from(h(client_key.as_ref()).ct_eq(stored_key)).then_some(client_key)
}

/// `ServerSignature = HMAC(ServerKey, AuthMessage)`.
pub fn server_signature(server_key: &Key, auth_message: &[u8]) -> Key {
    hmac(server_key, &[auth_message])
}

/// `client-first-message-bare "," server-first-message "," client-final-message-without-proof`.
pub fn auth_message(
    client_first_bare: &str,
    server_first: &str,
    client_final_bare: &str,
) -> String {
    format!("{client_first_bare},{server_first},{client_final_bare}")
}

/// A nonce of [`NONCE_BYTES`] random bytes in base64 (printable, no comma).
pub fn random_nonce() -> String {
    B64.encode(rand::random::<[u8; NONCE_BYTES]>())
}

// ---------------------------------------------------------------------------------------------
// Message syntax

/// The gs2 channel-binding flag of a client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbindFlag {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=<type>`: the client uses channel binding of this type.
    Required(String),
}

/// A parsed client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    pub cbind: CbindFlag,
    /// `gs2-cbind-flag "," "," `: what the client-final's `c=` attribute starts with.
    pub gs2_header: &'a str,
    /// `client-first-message-bare`, part of the AuthMessage.
    pub bare: &'a str,
    /// The client's nonce.
    pub nonce: &'a str,
}

/// A parsed client-final-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    /// The decoded `c=` attribute: the gs2 header and any channel-binding data.
    pub channel_binding: Vec<u8>,
    /// `r=`: the client nonce followed by the server's.
    pub nonce: &'a str,
    pub proof: Key,
    /// The message up to the proof, part of the AuthMessage.
    pub without_proof: &'a str,
}

/// A parsed server-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// Text of a SCRAM message: non-empty, without NUL bytes, UTF-8.
fn text(input: &[u8]) -> Result<&str, ScramError> {
    if input.is_empty() {
        return Err(malformed("The message is empty."));
    }
    if input.contains(&0) {
        return Err(malformed("Message length does not match input length."));
    }
    std::str::from_utf8(input).map_err(|_| malformed("The message is not valid UTF-8."))
}

/// `printable = %x21-2B / %x2D-7E`: printable ASCII except the comma.
fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A character for an error detail.
fn shown(c: Option<char>) -> String {
    match c {
        Some(c) if c.is_ascii_graphic() => c.to_string(),
        Some(c) => format!("0x{:02x}", c as u32),
        None => "end of message".into(),
    }
}

/// Reads `attr=value` at the start of `input`; returns the value and what follows its comma.
fn read_attr(input: &str, attr: char) -> Result<(&str, &str), ScramError> {
    let mut chars = input.chars();
    let first = chars.next();
    if first != Some(attr) {
        return Err(malformed(format!(
            "Expected attribute \"{attr}\" but found \"{}\".",
            shown(first)
        )));
    }
    if chars.next() != Some('=') {
        return Err(malformed(format!(
            "Expected character \"=\" for attribute \"{attr}\"."
        )));
    }
    Ok(split_value(&input[2..]))
}

/// Reads any `attr=value`; returns the attribute, the value and what follows its comma.
fn read_any_attr(input: &str) -> Result<(char, &str, &str), ScramError> {
    let mut chars = input.chars();
    let attr = chars.next();
    let Some(attr) = attr.filter(char::is_ascii_alphabetic) else {
        return Err(malformed(format!(
            "Attribute expected, but found invalid character \"{}\".",
            shown(attr)
        )));
    };
    if chars.next() != Some('=') {
        return Err(malformed(format!(
            "Expected character \"=\" for attribute \"{attr}\"."
        )));
    }
    let (value, rest) = split_value(&input[2..]);
    Ok((attr, value, rest))
}

fn split_value(input: &str) -> (&str, &str) {
    match input.split_once(',') {
        Some((value, rest)) => (value, rest),
        None => (input, ""),
    }
}

/// Parses a client-first-message (`gs2-header client-first-message-bare`).
pub fn parse_client_first(input: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    let input = text(input)?;
    let (cbind, after_flag) = match input.as_bytes()[0] {
        b'n' => (CbindFlag::No, &input[1..]),
        b'y' => (CbindFlag::ClientOnly, &input[1..]),
        b'p' => {
            let Some(rest) = input.strip_prefix("p=") else {
                return Err(malformed("Expected character \"=\" for attribute \"p\"."));
            };
            let end = rest.find(',').unwrap_or(rest.len());
            (CbindFlag::Required(rest[..end].to_string()), &rest[end..])
        }
        _ => {
            return Err(malformed(format!(
                "Unexpected channel-binding flag \"{}\".",
                shown(input.chars().next())
            )));
        }
    };
    let Some(after_comma) = after_flag.strip_prefix(',') else {
        return Err(malformed(format!(
            "Comma expected, but found character \"{}\".",
            shown(after_flag.chars().next())
        )));
    };
    if after_comma.starts_with('a') {
        return Err(unsupported(
            "client uses authorization identity, but it is not supported",
        ));
    }
    let Some(bare) = after_comma.strip_prefix(',') else {
        return Err(malformed(format!(
            "Unexpected attribute \"{}\" in client-first-message.",
            shown(after_comma.chars().next())
        )));
    };
    let gs2_header = &input[..input.len() - bare.len()];
    if bare.starts_with('m') {
        return Err(unsupported(
            "client requires an unsupported SCRAM extension",
        ));
    }
    // The user name is ignored: PostgreSQL takes the one from the StartupMessage.
    let (_user, rest) = read_attr(bare, 'n')?;
    let (nonce, mut rest) = read_attr(rest, 'r')?;
    if !printable(nonce) {
        return Err(malformed("The nonce contains an invalid character."));
    }
    while !rest.is_empty() {
        rest = read_any_attr(rest)?.2;
    }
    Ok(ClientFirst {
        cbind,
        gs2_header,
        bare,
        nonce,
    })
}

/// Parses a client-final-message (`c=..,r=..[,ext],p=..`).
pub fn parse_client_final(input: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    let input = text(input)?;
    let (binding, rest) = read_attr(input, 'c')?;
    let channel_binding = B64
        .decode(binding)
        .map_err(|_| malformed("Malformed channel-binding data."))?;
    let (nonce, mut rest) = read_attr(rest, 'r')?;
    let proof = loop {
        if rest.is_empty() {
            return Err(malformed(
                "Expected attribute \"p\" but found \"end of message\".",
            ));
        }
        let start = input.len() - rest.len();
        let (attr, value, after) = read_any_attr(rest)?;
        if attr == 'p' {
            if !after.is_empty() || input.ends_with(',') {
                return Err(malformed(
                    "Garbage found at the end of client-final-message.",
                ));
            }
            break (start, value);
        }
        rest = after;
    };
    let (start, encoded) = proof;
    let decoded = B64
        .decode(encoded)
        .map_err(|_| malformed("Malformed proof in client-final-message."))?;
    let proof: Key = decoded
        .try_into()
        .map_err(|_| malformed("Malformed proof in client-final-message."))?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        // Without the comma before `p=`.
        without_proof: &input[..start - 1],
    })
}

/// `r=<nonce>,s=<salt>,i=<iterations>`.
pub fn server_first_message(nonce: &str, salt: &[u8], iterations: u32) -> String {
    format!("r={nonce},s={},i={iterations}", B64.encode(salt))
}

/// Parses a server-first-message; its nonce must extend `client_nonce`.
pub fn parse_server_first(input: &[u8], client_nonce: &str) -> Result<ServerFirst, ScramError> {
    let input = text(input)?;
    if input.starts_with('m') {
        return Err(unsupported(
            "server requires an unsupported SCRAM extension",
        ));
    }
    let (nonce, rest) = read_attr(input, 'r')?;
    if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) || !printable(nonce) {
        return Err(violation(
            "invalid SCRAM response",
            Some("The server's nonce does not extend the client's.".into()),
        ));
    }
    let (salt, rest) = read_attr(rest, 's')?;
    let salt = B64
        .decode(salt)
        .map_err(|_| malformed("Malformed salt in server-first-message."))?;
    let (iterations, rest) = read_attr(rest, 'i')?;
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| malformed("Malformed iteration count in server-first-message."))?;
    let mut rest = rest;
    while !rest.is_empty() {
        rest = read_any_attr(rest)?.2;
    }
    Ok(ServerFirst {
        nonce: nonce.to_string(),
        salt,
        iterations,
    })
}

/// `v=<ServerSignature>`.
pub fn server_final_message(server_key: &Key, auth_message: &[u8]) -> String {
    format!(
        "v={}",
        B64.encode(server_signature(server_key, auth_message))
    )
}

/// Parses a server-final-message: the server's signature, or the error it reports (`e=`).
pub fn parse_server_final(input: &[u8]) -> Result<Key, ScramError> {
    let input = text(input)?;
    if let Some(error) = input.strip_prefix("e=") {
        return Err(violation(
            "the server reported a SCRAM error",
            Some(
                error
                    .chars()
                    .filter(char::is_ascii_graphic)
                    .take(80)
                    .collect(),
            ),
        ));
    }
    let (signature, rest) = read_attr(input, 'v')?;
    let _ = rest;
    B64.decode(signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| malformed("Malformed server signature in server-final-message."))
}

// ---------------------------------------------------------------------------------------------
// The server side: the proxy authenticating a client

/// The proxy's side of a SCRAM exchange with a client.
pub struct ServerExchange {
    verifier: ScramVerifier,
    /// No usable verifier: the exchange runs to its end with a mock salt and fails there, as
    /// PostgreSQL does for an unknown role, so the answer does not tell whether the user exists.
    doomed: bool,
    /// The tls-server-end-point data of the proxy's certificate, when channel binding is offered.
    end_point: Option<Vec<u8>>,
    state: ServerState,
}

enum ServerState {
    Start,
    SaltSent {
        /// What the client-final's `c=` must decode to.
        expected_binding: Vec<u8>,
        channel_binding: bool,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// A client whose proof matched.
pub struct Verified {
    /// The client's ClientKey, recovered from its proof.
    pub client_key: Zeroizing<Key>,
    /// The server-final-message to send (AuthenticationSASLFinal).
    pub server_final: String,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verified(..)")
    }
}

impl ServerExchange {
    /// An exchange against `verifier`, or against `mock` (doomed) when there is none.
    /// `end_point`: the tls-server-end-point hash when the client is on TLS and channel binding
    /// is offered.
    pub fn new(
        verifier: Option<ScramVerifier>,
        mock: ScramVerifier,
        end_point: Option<Vec<u8>>,
    ) -> ServerExchange {
        let doomed = verifier.is_none();
        ServerExchange {
            verifier: verifier.unwrap_or(mock),
            doomed,
            end_point,
            state: ServerState::Start,
        }
    }

    /// The mechanisms to offer in AuthenticationSASL, preferred first (as PostgreSQL lists them).
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.end_point.is_some() {
            &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        } else {
            &[SCRAM_SHA_256]
        }
    }

    /// Handles the SASLInitialResponse: the chosen mechanism and the client-first-message.
    /// Returns the server-first-message, built with `server_nonce`.
    pub fn start(
        &mut self,
        mechanism: &str,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<String, ScramError> {
        let channel_binding = match mechanism {
            SCRAM_SHA_256_PLUS if self.end_point.is_some() => true,
            SCRAM_SHA_256 => false,
            _ => {
                return Err(violation(
                    "client selected an invalid SASL authentication mechanism",
                    None,
                ));
            }
        };
        let first = parse_client_first(client_first)?;
        match (&first.cbind, channel_binding) {
            (CbindFlag::No | CbindFlag::ClientOnly, true) => {
                return Err(malformed(
                    "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not \
                     include channel binding data.",
                ));
            }
            (CbindFlag::ClientOnly, false) if self.end_point.is_some() => {
                return Err(violation(
                    "SCRAM channel binding negotiation error",
                    Some(
                        "The client supports SCRAM channel binding but thinks the server does \
                         not.  However, this server does support channel binding."
                            .into(),
                    ),
                ));
            }
            (CbindFlag::Required(_), false) => {
                return Err(malformed(
                    "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM \
                     message includes channel binding data.",
                ));
            }
            (CbindFlag::Required(name), true) if name != TLS_SERVER_END_POINT => {
                return Err(violation(
                    "unsupported SCRAM channel-binding type",
                    Some(format!("The client asked for \"{name}\".")),
                ));
            }
            _ => {}
        }
        let mut expected_binding = first.gs2_header.as_bytes().to_vec();
        if channel_binding {
            expected_binding.extend_from_slice(self.end_point.as_deref().unwrap_or_default());
        }
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first =
            server_first_message(&nonce, &self.verifier.salt, self.verifier.iterations);
        self.state = ServerState::SaltSent {
            expected_binding,
            channel_binding,
            client_first_bare: first.bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Handles the SASLResponse (client-final-message): checks channel binding, nonce and
    /// proof. [`ScramError::Rejected`] for a wrong proof or a doomed exchange.
    pub fn finish(&mut self, client_final: &[u8]) -> Result<Verified, ScramError> {
        let ServerState::SaltSent {
            expected_binding,
            channel_binding,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(violation("invalid SCRAM exchange state", None));
        };
        let last = parse_client_final(client_final)?;
        if last.channel_binding != expected_binding {
            return Err(if channel_binding {
                ScramError::Protocol {
                    code: sqlstate::INVALID_AUTHORIZATION,
                    message: "SCRAM channel binding check failed",
                    detail: None,
                }
            } else {
                violation(
                    "unexpected SCRAM channel-binding attribute in client-final-message",
                    None,
                )
            });
        }
        if last.nonce != nonce {
            return Err(violation(
                "invalid SCRAM response",
                Some("Nonce does not match.".into()),
            ));
        }
        let auth_message = auth_message(&client_first_bare, &server_first, last.without_proof);
        // Computed for a doomed exchange too, so its timing does not tell that the user is unknown.
        let client_key = recover_client_key(
            &self.verifier.stored_key,
            auth_message.as_bytes(),
            &last.proof,
        );
        match client_key {
            Some(client_key) if !self.doomed => Ok(Verified {
                client_key,
                server_final: server_final_message(
                    &self.verifier.server_key,
                    auth_message.as_bytes(),
                ),
            }),
            _ => Err(ScramError::Rejected),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client side: the proxy logging in upstream

/// The keys a client needs for one exchange: the ClientKey, and the ServerKey to check the
/// server's signature with.
pub struct ClientKeys {
    pub client_key: Zeroizing<Key>,
    pub server_key: Key,
}

impl ClientKeys {
    /// Derives both keys from a password and the server's salt and iteration count.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ClientKeys {
        let salted = salted_password(password, salt, iterations);
        ClientKeys {
            client_key: client_key(&salted),
            server_key: server_key(&salted),
        }
    }
}

/// The proxy's side of a SCRAM exchange with the upstream (SCRAM-SHA-256, no channel binding).
pub struct ClientExchange {
    nonce: String,
    client_first_bare: String,
    state: ClientState,
}

enum ClientState {
    Start,
    ProofSent {
        server_key: Key,
        auth_message: String,
    },
    Done,
}

/// `n,,`: the gs2 header of a client without channel binding.
const GS2_NO_BINDING: &str = "n,,";

impl ClientExchange {
    /// A new exchange with `nonce`; returns it and the client-first-message to send. The user
    /// name is left empty, as libpq does: the server takes the StartupMessage's.
    pub fn new(nonce: &str) -> (ClientExchange, String) {
        let bare = format!("n=,r={nonce}");
        let first = format!("{GS2_NO_BINDING}{bare}");
        let exchange = ClientExchange {
            nonce: nonce.to_string(),
            client_first_bare: bare,
            state: ClientState::Start,
        };
        (exchange, first)
    }

    /// Handles the server-first-message. `keys` gives the keys for the server's salt and
    /// iteration count (or refuses them). Returns the client-final-message.
    pub fn respond<E>(
        &mut self,
        server_first: &[u8],
        keys: impl FnOnce(&ServerFirst) -> Result<ClientKeys, E>,
    ) -> Result<Result<String, E>, ScramError> {
        if !matches!(self.state, ClientState::Start) {
            return Err(violation("invalid SCRAM exchange state", None));
        }
        let first = parse_server_first(server_first, &self.nonce)?;
        let keys = match keys(&first) {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(e)),
        };
        let server_first = std::str::from_utf8(server_first).unwrap_or_default();
        let without_proof = format!("c={},r={}", B64.encode(GS2_NO_BINDING), first.nonce);
        let auth_message = auth_message(&self.client_first_bare, server_first, &without_proof);
        let proof = client_proof(&keys.client_key, auth_message.as_bytes());
        self.state = ClientState::ProofSent {
            server_key: keys.server_key,
            auth_message,
        };
        Ok(Ok(format!("{without_proof},p={}", B64.encode(proof))))
    }

    /// Whether the server's signature was checked.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// Handles the server-final-message: the server's signature must match, compared in
    /// constant time.
    pub fn finish(&mut self, server_final: &[u8]) -> Result<(), ScramError> {
        let ClientState::ProofSent {
            server_key,
            auth_message,
        } = std::mem::replace(&mut self.state, ClientState::Done)
        else {
            return Err(violation("invalid SCRAM exchange state", None));
        };
        let signature = parse_server_final(server_final)?;
        let expected = server_signature(&server_key, auth_message.as_bytes());
        if bool::from(expected.ct_eq(&signature)) {
            Ok(())
        } else {
            Err(violation(
                "invalid SCRAM server signature",
                Some("The server's signature does not match its verifier's ServerKey.".into()),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
