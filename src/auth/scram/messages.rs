//! The messages of both sides, parsed (totally: a value or a [`ScramError`]) and built.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Key, ScramError, malformed, server_signature, unsupported, violation};

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
