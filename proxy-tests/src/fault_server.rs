//! A PostgreSQL-wire server that misbehaves on request, to put behind the sidecar in tests of a
//! broken upstream.
//!
//! It logs anyone in without a password (AuthenticationOk, a few ParameterStatus, BackendKeyData,
//! ReadyForQuery `I`) and answers simple queries: `SELECT x` returns one text row `x` (single
//! quotes and a trailing `;` dropped), an empty query EmptyQueryResponse, anything else an error.
//! The extended protocol is answered with an error at its Sync.
//!
//! A fault is chosen per query or per connection, so other sessions on the same server go on
//! normally:
//! - the query `SELECT 'fault:NAME'` ([`fault_query`]) is answered with a RowDescription and
//!   [`ROWS_BEFORE_FAULT`] DataRows (`1`, `2`, ...), and then the fault;
//! - the startup parameter `application_name=fault:NAME` ([`LOGIN_FAULT_PARAM`]) puts the fault
//!   into the login, after AuthenticationOk and one ParameterStatus.
//!
//! The names are [`Fault`]'s. After a fault that leaves the connection open the server reads, and
//! ignores, whatever comes until the peer closes, so a test can see the sidecar let go of its
//! upstream connection ([`FaultServer::open_connections`]). Nothing here shares code with a real
//! server: every byte is written by the functions below.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// DataRows a query fault sends before it misbehaves.
pub const ROWS_BEFORE_FAULT: usize = 3;
/// The startup parameter that asks for a fault during login.
pub const LOGIN_FAULT_PARAM: &str = "application_name";
/// What [`Fault::Garbage`] sends.
pub const GARBAGE: &[u8] = b"this is not a protocol message\n";
/// The body of the message [`Fault::UnknownTag`] sends, with tag [`UNKNOWN_TAG`].
pub const UNKNOWN_BODY: &[u8] = b"no server sends this\0";
/// A message type byte no PostgreSQL server sends.
pub const UNKNOWN_TAG: u8 = b'~';
/// How long [`Fault::BigRow`] waits for [`FaultServer::release`] before it goes on anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);

/// How the server misbehaves (or, for the last two, sends a large but valid answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `garbage`: the text [`GARBAGE`] where the next message should start; then silence.
    Garbage,
    /// `unknown-tag`: a well-framed message of type [`UNKNOWN_TAG`]; then the rest of the answer
    /// as usual.
    UnknownTag,
    /// `header:T:LEN`: a message header with type `T` and length word `LEN` and no body; then
    /// silence.
    Header { tag: u8, len: u32 },
    /// `cut`: the first 8 bytes of the next message (a CommandComplete, or a ParameterStatus
    /// during login), then the server closes.
    Cut,
    /// `cut-in-row`: a DataRow that declares 1,000 bytes, 10 of them sent, then the server closes.
    CutInRow,
    /// `rows:N:WIDTH`: a valid answer of N rows, row `i` (from 1) being `i` zero-padded to WIDTH.
    Rows { count: usize, width: usize },
    /// `big-row:LEN`: a valid answer of one row of LEN bytes `x`; the server sends half of it,
    /// waits for [`FaultServer::release`], then the rest.
    BigRow { len: usize },
}

impl Fault {
    /// Parses a fault's name (without `fault:`).
    pub fn parse(name: &str) -> Option<Fault> {
        let parts: Vec<&str> = name.split(':').collect();
        Some(match parts[..] {
            ["garbage"] => Fault::Garbage,
            ["unknown-tag"] => Fault::UnknownTag,
            ["header", tag, len] if tag.len() == 1 => Fault::Header {
                tag: tag.as_bytes()[0],
                len: len.parse().ok()?,
            },
            ["cut"] => Fault::Cut,
            ["cut-in-row"] => Fault::CutInRow,
            ["rows", count, width] => Fault::Rows {
                count: count.parse().ok()?,
                width: width.parse().ok()?,
            },
            ["big-row", len] => Fault::BigRow {
                len: len.parse().ok()?,
            },
            _ => return None,
        })
    }

    /// The fault's name, as [`Fault::parse`] reads it.
    pub fn name(self) -> String {
        match self {
            Fault::Garbage => "garbage".into(),
            Fault::UnknownTag => "unknown-tag".into(),
            Fault::Header { tag, len } => format!("header:{}:{len}", tag as char),
            Fault::Cut => "cut".into(),
            Fault::CutInRow => "cut-in-row".into(),
            Fault::Rows { count, width } => format!("rows:{count}:{width}"),
            Fault::BigRow { len } => format!("big-row:{len}"),
        }
    }
}

/// The query that triggers `fault`.
pub fn fault_query(fault: Fault) -> String {
    format!("SELECT 'fault:{}'", fault.name())
}

/// The value of [`LOGIN_FAULT_PARAM`] that puts `fault` into the login.
pub fn login_fault(fault: Fault) -> String {
    format!("fault:{}", fault.name())
}

/// A running fault server on a loopback port. Dropping it stops it and closes its connections.
pub struct FaultServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    state: Arc<State>,
    stop: CancellationToken,
}

struct State {
    /// Connections whose task is still running (the peer has not closed them, nor the server).
    open: AtomicUsize,
    /// Connections accepted so far; also the next process id.
    accepted: AtomicU32,
    /// Lets a paused [`Fault::BigRow`] go on.
    release: Notify,
}

impl FaultServer {
    /// Binds a free loopback port and starts serving.
    pub async fn start() -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            open: AtomicUsize::new(0),
            accepted: AtomicU32::new(0),
            release: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        FaultServer { addr, state, stop }
    }

    /// Connections the server still has open.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u32 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Lets a [`Fault::BigRow`] paused halfway send the rest of its row.
    pub fn release(&self) {
        self.state.release.notify_one();
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let pid = state.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        state.open.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut conn = Conn {
                stream,
                buf: BytesMut::new(),
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = conn.serve(pid, &state) => {}
            }
            state.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn serve(&mut self, pid: u32, state: &State) -> std::io::Result<()> {
        let Some(params) = self.startup().await? else {
            return Ok(());
        };
        let login_fault = params
            .iter()
            .find(|(k, _)| k == LOGIN_FAULT_PARAM)
            .and_then(|(_, v)| v.strip_prefix("fault:"))
            .and_then(Fault::parse);
        let mut out = message(b'R', &0u32.to_be_bytes());
        out.extend(parameter_status("server_version", "16.0 (fault server)"));
        if let Some(fault) = login_fault
            && self.misbehave(fault, out.clone(), Phase::Login).await?
        {
            return Ok(());
        }
        for (name, value) in [
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
        ] {
            out.extend(parameter_status(name, value));
        }
        let mut key = pid.to_be_bytes().to_vec();
        key.extend_from_slice(&[0x5e, 0xc2, 0xe7, 0x00]);
        out.extend(message(b'K', &key));
        out.extend(ready());
        self.stream.write_all(&out).await?;
        self.queries(state).await
    }

    /// Reads startup packets until the StartupMessage and returns its parameters; `None` for a
    /// CancelRequest or anything else.
    async fn startup(&mut self) -> std::io::Result<Option<Vec<(String, String)>>> {
        loop {
            if !self.fill(4).await? {
                return Ok(None);
            }
            let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
            if !(8..=10_000).contains(&len) || !self.fill(len).await? {
                return Ok(None);
            }
            let packet = self.buf.split_to(len);
            let code = u32::from_be_bytes(packet[4..8].try_into().unwrap());
            match code {
                // SSLRequest, GSSENCRequest: not offered.
                80_877_103 | 80_877_104 => self.stream.write_all(b"N").await?,
                196_608 => {
                    let fields: Vec<String> = packet[8..]
                        .split(|&b| b == 0)
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    let params = fields
                        .chunks_exact(2)
                        .take_while(|pair| !pair[0].is_empty())
                        .map(|pair| (pair[0].clone(), pair[1].clone()))
                        .collect();
                    return Ok(Some(params));
                }
                _ => return Ok(None),
            }
        }
    }

    /// Answers messages until Terminate, the peer's close, or a fault that ends the connection.
    async fn queries(&mut self, state: &State) -> std::io::Result<()> {
        let mut extended_failed = false;
        while let Some((tag, body)) = self.message().await? {
            match tag {
                b'Q' => {
                    let sql = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body))
                        .into_owned();
                    if self.query(&sql, state).await? {
                        return Ok(());
                    }
                }
                b'S' => {
                    extended_failed = false;
                    self.stream.write_all(&ready()).await?;
                }
                b'X' => return Ok(()),
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' if !extended_failed => {
                    extended_failed = true;
                    let msg = error("0A000", "the fault server answers simple queries only");
                    self.stream.write_all(&msg).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Answers one simple query; true when the connection is done with.
    async fn query(&mut self, sql: &str, state: &State) -> std::io::Result<bool> {
        let sql = sql.trim().trim_end_matches(';').trim();
        if sql.is_empty() {
            let out = [message(b'I', &[]), ready()].concat();
            self.stream.write_all(&out).await?;
            return Ok(false);
        }
        let Some(value) = sql
            .strip_prefix("SELECT ")
            .map(|v| v.trim().trim_matches('\''))
        else {
            let out = [
                error("42601", "the fault server answers SELECT only"),
                ready(),
            ]
            .concat();
            self.stream.write_all(&out).await?;
            return Ok(false);
        };
        if let Some(fault) = value.strip_prefix("fault:").and_then(Fault::parse) {
            return self.fault(fault, state).await;
        }
        let out = [
            row_description(),
            data_row(value.as_bytes()),
            command_complete("SELECT 1"),
            ready(),
        ]
        .concat();
        self.stream.write_all(&out).await?;
        Ok(false)
    }

    /// Answers a query that asked for `fault`; true when the connection is done with.
    async fn fault(&mut self, fault: Fault, state: &State) -> std::io::Result<bool> {
        match fault {
            Fault::Rows { count, width } => {
                let mut out = row_description();
                for i in 1..=count {
                    out.extend(data_row(format!("{i:0width$}").as_bytes()));
                    if out.len() >= 1 << 16 {
                        self.stream.write_all(&out).await?;
                        out.clear();
                    }
                }
                out.extend(command_complete(&format!("SELECT {count}")));
                out.extend(ready());
                self.stream.write_all(&out).await?;
                Ok(false)
            }
            Fault::BigRow { len } => {
                let mut head = row_description();
                head.push(b'D');
                head.extend_from_slice(&(4 + 2 + 4 + len as u32).to_be_bytes());
                head.extend_from_slice(&1u16.to_be_bytes());
                head.extend_from_slice(&(len as u32).to_be_bytes());
                self.stream.write_all(&head).await?;
                let half = len / 2;
                self.stream.write_all(&vec![b'x'; half]).await?;
                let _ = tokio::time::timeout(RELEASE_TIMEOUT, state.release.notified()).await;
                let mut rest = vec![b'x'; len - half];
                rest.extend(command_complete("SELECT 1"));
                rest.extend(ready());
                self.stream.write_all(&rest).await?;
                Ok(false)
            }
            _ => {
                let mut out = row_description();
                for i in 1..=ROWS_BEFORE_FAULT {
                    out.extend(data_row(i.to_string().as_bytes()));
                }
                self.misbehave(fault, out, Phase::Result).await
            }
        }
    }

    /// Writes `before`, then the fault; true when the connection is done with (`false` only for
    /// [`Fault::UnknownTag`] in a result, which goes on normally).
    async fn misbehave(
        &mut self,
        fault: Fault,
        mut before: Vec<u8>,
        phase: Phase,
    ) -> std::io::Result<bool> {
        let next = match phase {
            Phase::Result => command_complete(&format!("SELECT {ROWS_BEFORE_FAULT}")),
            Phase::Login => parameter_status("client_encoding", "UTF8"),
        };
        match fault {
            Fault::Garbage => before.extend_from_slice(GARBAGE),
            Fault::UnknownTag => {
                before.extend(message(UNKNOWN_TAG, UNKNOWN_BODY));
                if phase == Phase::Result {
                    before.extend(next);
                    before.extend(ready());
                    self.stream.write_all(&before).await?;
                    return Ok(false);
                }
            }
            Fault::Header { tag, len } => {
                before.push(tag);
                before.extend_from_slice(&len.to_be_bytes());
            }
            Fault::Cut | Fault::CutInRow => {
                if fault == Fault::Cut {
                    before.extend_from_slice(&next[..8]);
                } else {
                    before.push(b'D');
                    before.extend_from_slice(&(4 + 2 + 4 + 1000u32).to_be_bytes());
                    before.extend_from_slice(&1u16.to_be_bytes());
                    before.extend_from_slice(&1000u32.to_be_bytes());
                    before.extend_from_slice(&[b'y'; 10]);
                }
                self.stream.write_all(&before).await?;
                // A FIN, not a reset: whatever the peer sends is read until it closes too.
                self.stream.shutdown().await?;
                self.drain().await;
                return Ok(true);
            }
            Fault::Rows { .. } | Fault::BigRow { .. } => return Ok(false),
        }
        self.stream.write_all(&before).await?;
        self.drain().await;
        Ok(true)
    }

    /// Reads and ignores everything until the peer closes.
    async fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    }

    /// The next tagged message, `None` at the peer's close.
    async fn message(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        if !self.fill(5).await? {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
        if !(4..=1 << 24).contains(&len) {
            return Err(std::io::Error::other("client sent a bad message length"));
        }
        if !self.fill(1 + len).await? {
            return Ok(None);
        }
        self.buf.advance(5);
        let body = self.buf.split_to(len - 4).to_vec();
        Ok(Some((tag, body)))
    }

    /// Reads until `n` bytes are buffered; false if the peer closed first.
    async fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        while self.buf.len() < n {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Where a fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Login,
    Result,
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(tag);
    out.put_u32(4 + body.len() as u32);
    out.put_slice(body);
    out.to_vec()
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, value);
    message(b'S', &body)
}

/// One text column, `?column?`.
fn row_description() -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u16(1);
    body.put_slice(b"?column?\0");
    body.put_u32(0); // table
    body.put_u16(0); // column number
    body.put_u32(25); // text
    body.put_i16(-1); // variable length
    body.put_i32(-1); // no modifier
    body.put_u16(0); // text format
    message(b'T', &body)
}

fn data_row(value: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::with_capacity(6 + value.len());
    body.put_u16(1);
    body.put_u32(value.len() as u32);
    body.put_slice(value);
    message(b'D', &body)
}

fn command_complete(tag: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, tag);
    message(b'C', &body)
}

fn ready() -> Vec<u8> {
    message(b'Z', b"I")
}

fn error(code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
        body.push(field);
        cstr(&mut body, value);
    }
    body.push(0);
    message(b'E', &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for fault in [
            Fault::Garbage,
            Fault::UnknownTag,
            Fault::Header {
                tag: b'D',
                len: 0x7fff_ffff,
            },
            Fault::Cut,
            Fault::CutInRow,
            Fault::Rows {
                count: 10,
                width: 3,
            },
            Fault::BigRow { len: 1 << 20 },
        ] {
            assert_eq!(Fault::parse(&fault.name()), Some(fault));
        }
        assert_eq!(Fault::parse("header:DD:5"), None);
        assert_eq!(Fault::parse("nothing"), None);
    }
}
