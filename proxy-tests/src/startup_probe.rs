//! Unusual startup sequences sent as raw bytes, and what came back: the bytes and how the
//! connection ended. Used to hold the proxy's startup phase to PostgreSQL's answers, and to pin
//! Doltgres' own.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An SSLRequest.
pub const SSL: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// A GSSENCRequest.
pub const GSS: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// One scripted opening: chunks written with a short pause between them, then (if `hang_up`)
/// the client's side of the connection is shut down.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub chunks: Vec<Vec<u8>>,
    pub hang_up: bool,
}

impl Case {
    pub fn new(name: &'static str, chunks: &[&[u8]]) -> Case {
        Case {
            name,
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            hang_up: false,
        }
    }

    /// The same, with the client shutting down its side after the last chunk.
    pub fn then_hang_up(mut self) -> Case {
        self.hang_up = true;
        self
    }
}

/// How the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// An orderly close by the other side.
    Eof,
    /// A connection reset.
    Reset,
    /// Still open when the probe stopped waiting.
    Open,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub bytes: Vec<u8>,
    pub end: End,
}

/// A StartupMessage of protocol `version` with these name/value pairs.
pub fn startup_message(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = (body.len() as u32 + 4).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A packet of `len` (as declared) whose 4-byte code follows the length word.
pub fn packet(len: u32, code: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

/// Plays `case` against `addr` and reads until the connection ends or `wait` passes.
pub async fn probe(addr: &str, case: &Case, wait: Duration) -> Outcome {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    for chunk in &case.chunks {
        // The other side may already have closed; what it sent is still read below.
        let _ = stream.write_all(chunk).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    if case.hang_up {
        let _ = stream.shutdown().await;
    }
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let end = loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => break End::Open,
            Ok(Ok(0)) => break End::Eof,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break End::Reset,
            Ok(Err(e)) => panic!("{}: read failed: {e}", case.name),
        }
    };
    Outcome { bytes, end }
}

/// A readable account of the bytes: single-byte answers (`N`, `S`, `G`), protocol-3 messages by
/// tag, protocol-2 errors by their text. With `errors_by_code`, error messages are reduced to
/// severity and SQLSTATE (for answers whose wording is the proxy's own); otherwise every message
/// is shown whole.
pub fn account(bytes: &[u8], errors_by_code: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let tag = rest[0];
        let len = rest
            .get(1..5)
            .map(|l| u32::from_be_bytes(l.try_into().unwrap()) as usize);
        match len {
            Some(len) if len >= 4 && len < rest.len() => {
                let body = &rest[5..1 + len];
                out.push(describe(tag, body, errors_by_code));
                at += 1 + len;
            }
            _ if tag == b'E' && rest.get(1..7) == Some(b"FATAL:") => {
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let text = String::from_utf8_lossy(&rest[1..end]);
                let shown = if errors_by_code {
                    "protocol-2 FATAL".to_string()
                } else {
                    format!("protocol-2 {text:?}")
                };
                out.push(shown);
                at += end + 1;
            }
            _ => {
                out.push(format!("byte {}", tag as char));
                at += 1;
            }
        }
    }
    out
}

fn describe(tag: u8, body: &[u8], errors_by_code: bool) -> String {
    if tag != b'E' || !errors_by_code {
        return format!("{} {:?}", tag as char, String::from_utf8_lossy(body));
    }
    let mut severity = String::new();
    let mut code = String::new();
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'V' => severity = value,
            b'C' => code = value,
            _ => {}
        }
    }
    format!("E {severity} {code}")
}
