//! A raw protocol client for tests that must send exactly chosen bytes (malformed messages,
//! pipelines, cancel requests) and see every message a server or the proxy returns, unfiltered.
//!
//! [`RawClient::login`] speaks the startup and SCRAM-SHA-256 exchange itself (the SCRAM arithmetic
//! is postgres-protocol's) and keeps what the server sent up to its first ReadyForQuery. After
//! that the test writes frontend messages (built by the functions in [`frontend`]) and reads
//! backend ones. Messages are framed by tag and length and interpreted only by the accessors on
//! [`Msg`]; every read has a deadline so a silent server fails the test instead of hanging it, and
//! [`RawClient::until_end`] tells an orderly EOF from a reset.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend as pg_frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::TestServer;

/// How long a read may wait before the test fails.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One backend message: its tag and its body (without the length word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub tag: u8,
    pub body: Bytes,
}

impl Msg {
    /// The tag as a character, for readable assertions.
    pub fn tag(&self) -> char {
        self.tag as char
    }

    /// ErrorResponse / NoticeResponse: one field by its code.
    pub fn field(&self, code: char) -> Option<String> {
        if self.tag != b'E' && self.tag != b'N' {
            return None;
        }
        let mut at = 0;
        while at < self.body.len() && self.body[at] != 0 {
            let (value, next) = cstr(&self.body, at + 1);
            if self.body[at] as char == code {
                return Some(value);
            }
            at = next;
        }
        None
    }

    /// ErrorResponse / NoticeResponse: the SQLSTATE (field `C`).
    pub fn sqlstate(&self) -> Option<String> {
        self.field('C')
    }

    /// ErrorResponse / NoticeResponse: the message text (field `M`).
    pub fn text(&self) -> Option<String> {
        self.field('M')
    }

    /// CommandComplete: the command tag (`INSERT 0 1`, `ROLLBACK`, ...).
    pub fn command_tag(&self) -> Option<String> {
        (self.tag == b'C').then(|| cstr(&self.body, 0).0)
    }

    /// ReadyForQuery: the transaction status `I`, `T` or `E`.
    pub fn ready_status(&self) -> Option<char> {
        (self.tag == b'Z').then(|| self.body[0] as char)
    }

    /// ParameterStatus: name and value.
    pub fn parameter(&self) -> Option<(String, String)> {
        if self.tag != b'S' {
            return None;
        }
        let (name, next) = cstr(&self.body, 0);
        let (value, _) = cstr(&self.body, next);
        Some((name, value))
    }

    /// BackendKeyData: process id and secret key (whatever its length).
    pub fn backend_key(&self) -> Option<(u32, Vec<u8>)> {
        (self.tag == b'K').then(|| (be_u32(&self.body), self.body[4..].to_vec()))
    }

    /// Authentication request: its code (0 = ok, 10 = SASL, 11 = SASL continue, 12 = SASL final).
    pub fn auth_code(&self) -> Option<u32> {
        (self.tag == b'R').then(|| be_u32(&self.body))
    }

    /// A short description for assertions: `Z(I)`, `C(INSERT 0 1)`, `E(23505)`, or the tag alone.
    pub fn brief(&self) -> String {
        if let Some(status) = self.ready_status() {
            format!("Z({status})")
        } else if let Some(tag) = self.command_tag() {
            format!("C({tag})")
        } else if self.tag == b'E' || self.tag == b'N' {
            format!("{}({})", self.tag(), self.sqlstate().unwrap_or_default())
        } else {
            self.tag().to_string()
        }
    }
}

/// The `brief` of each message, for comparing whole conversations at once.
pub fn briefs(messages: &[Msg]) -> Vec<String> {
    messages.iter().map(Msg::brief).collect()
}

/// Splits one complete message off the front of `buf`, or `None` if it is not all there yet.
pub fn take_message(buf: &mut BytesMut) -> Option<Msg> {
    if buf.len() < 5 {
        return None;
    }
    let len = be_u32(&buf[1..]) as usize;
    assert!(len >= 4, "invalid message length {len}");
    if buf.len() < 1 + len {
        return None;
    }
    let tag = buf[0];
    buf.advance(5);
    let body = buf.split_to(len - 4).freeze();
    Some(Msg { tag, body })
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().unwrap())
}

/// The NUL-terminated string at `at`, and the index after its terminator.
fn cstr(body: &[u8], at: usize) -> (String, usize) {
    let end = body[at..]
        .iter()
        .position(|&b| b == 0)
        .map_or(body.len(), |p| at + p);
    (
        String::from_utf8_lossy(&body[at..end]).into_owned(),
        end + 1,
    )
}

/// Frontend messages, each as the bytes to write.
pub mod frontend {
    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(tag);
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn push_cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// Query (simple protocol).
    pub fn query(sql: &str) -> Vec<u8> {
        let mut body = Vec::new();
        push_cstr(&mut body, sql);
        message(b'Q', &body)
    }

    /// Parse without parameter types.
    pub fn parse(statement: &str, sql: &str) -> Vec<u8> {
        let mut body = Vec::new();
        push_cstr(&mut body, statement);
        push_cstr(&mut body, sql);
        body.extend_from_slice(&0i16.to_be_bytes());
        message(b'P', &body)
    }

    /// Bind without parameters, all results in text.
    pub fn bind(portal: &str, statement: &str) -> Vec<u8> {
        let mut body = Vec::new();
        push_cstr(&mut body, portal);
        push_cstr(&mut body, statement);
        body.extend_from_slice(&0i16.to_be_bytes()); // parameter format codes
        body.extend_from_slice(&0i16.to_be_bytes()); // parameter values
        body.extend_from_slice(&0i16.to_be_bytes()); // result format codes
        message(b'B', &body)
    }

    /// Execute a portal to completion.
    pub fn execute(portal: &str) -> Vec<u8> {
        let mut body = Vec::new();
        push_cstr(&mut body, portal);
        body.extend_from_slice(&0i32.to_be_bytes());
        message(b'E', &body)
    }

    /// Sync.
    pub fn sync() -> Vec<u8> {
        message(b'S', &[])
    }

    /// Parse, Bind and Execute of one statement through the unnamed statement and portal.
    pub fn run(sql: &str) -> Vec<u8> {
        [parse("", sql), bind("", ""), execute("")].concat()
    }

    /// CancelRequest, sent on a connection of its own instead of a startup packet. The secret
    /// key may have any length.
    pub fn cancel_request(process_id: u32, secret_key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(12 + secret_key.len() as u32).to_be_bytes());
        out.extend_from_slice(&80_877_102u32.to_be_bytes());
        out.extend_from_slice(&process_id.to_be_bytes());
        out.extend_from_slice(secret_key);
        out
    }
}

/// Credentials for [`RawClient::login_as`].
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
}

/// How a connection ended, as seen by [`RawClient::until_end`].
#[derive(Debug)]
pub struct Closed {
    /// Every message received before the end.
    pub messages: Vec<Msg>,
    /// `Ok(())` for an orderly EOF, else the read error (a reset, say).
    pub end: io::Result<()>,
    /// Bytes left over that did not make a whole message.
    pub trailing: Bytes,
}

/// One connection on which the test speaks the protocol itself.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    /// The BackendKeyData received at login: (process id, secret key).
    pub key: Option<(u32, Vec<u8>)>,
    /// What the server sent at login, up to and including its first ReadyForQuery:
    /// authentication requests, ParameterStatus, BackendKeyData, ...
    pub startup: Vec<Msg>,
}

impl RawClient {
    /// Connects without sending anything.
    pub async fn connect(addr: &str) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
            key: None,
            startup: Vec::new(),
        }
    }

    /// Connects and logs in with the server's credentials; returns after the first ReadyForQuery,
    /// with every message up to it in `startup`.
    pub async fn login(addr: &str, server: &TestServer) -> RawClient {
        RawClient::login_with(addr, server, &[]).await
    }

    /// Like [`RawClient::login`], with more startup parameters.
    pub async fn login_with(addr: &str, server: &TestServer, extra: &[(&str, &str)]) -> RawClient {
        let login = Login {
            user: &server.user,
            password: &server.password,
            database: &server.database,
        };
        RawClient::login_as(addr, &login, extra).await
    }

    /// Logs in with these credentials and more startup parameters.
    pub async fn login_as(addr: &str, login: &Login<'_>, extra: &[(&str, &str)]) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        let mut out = BytesMut::new();
        let mut params = vec![("user", login.user), ("database", login.database)];
        params.extend_from_slice(extra);
        pg_frontend::startup_message(params, &mut out).unwrap();
        c.send(&out).await;
        let mut scram = None;
        loop {
            let msg = c.read().await.expect("server closed during login");
            match msg.tag {
                b'R' => c.authenticate(&msg, login.password, &mut scram).await,
                b'K' => c.key = msg.backend_key(),
                b'E' => panic!("login failed: {:?}", msg.text()),
                _ => {}
            }
            let ready = msg.tag == b'Z';
            c.startup.push(msg);
            if ready {
                return c;
            }
        }
    }

    /// Answers one authentication request; `scram` carries the SCRAM exchange between steps.
    async fn authenticate(&mut self, msg: &Msg, password: &str, scram: &mut Option<ScramSha256>) {
        let data = &msg.body[4..];
        let mut out = BytesMut::new();
        match msg.auth_code().unwrap() {
            0 => {}
            10 => {
                let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                pg_frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out).unwrap();
                *scram = Some(s);
            }
            11 => {
                let s = scram.as_mut().expect("SASL continue before SASL");
                s.update(data).unwrap();
                pg_frontend::sasl_response(s.message(), &mut out).unwrap();
            }
            12 => scram
                .as_mut()
                .expect("SASL final before SASL")
                .finish(data)
                .unwrap(),
            other => panic!("unexpected authentication request {other}"),
        }
        if !out.is_empty() {
            self.send(&out).await;
        }
    }

    /// Writes bytes (one or many messages, or part of one) as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends a simple Query.
    pub async fn query(&mut self, sql: &str) {
        self.send(&frontend::query(sql)).await;
    }

    /// Sends a simple Query and returns every message up to its ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> Vec<Msg> {
        self.query(sql).await;
        self.until_ready().await
    }

    /// The next message, `Ok(None)` at an orderly EOF, `Err` on a read error (a reset, say).
    /// Panics after the read deadline.
    pub async fn next(&mut self) -> io::Result<Option<Msg>> {
        loop {
            if let Some(msg) = take_message(&mut self.buf) {
                return Ok(Some(msg));
            }
            let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("no message within the read timeout")?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// The next message, `None` when the connection is closed (by EOF or an error).
    pub async fn read(&mut self) -> Option<Msg> {
        self.next().await.unwrap_or(None)
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut msgs = Vec::new();
        while let Some(m) = self.read().await {
            let done = m.tag == b'Z';
            msgs.push(m);
            if done {
                return msgs;
            }
        }
        panic!("connection closed before ReadyForQuery: {msgs:?}");
    }

    /// Reads until the connection closes; returns everything read.
    pub async fn until_closed(&mut self) -> Vec<Msg> {
        self.until_end().await.messages
    }

    /// Reads until the connection closes; returns everything read and how it ended.
    pub async fn until_end(&mut self) -> Closed {
        let mut messages = Vec::new();
        let end = loop {
            match self.next().await {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        Closed {
            messages,
            end,
            trailing: std::mem::take(&mut self.buf).freeze(),
        }
    }
}
