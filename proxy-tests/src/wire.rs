//! A minimal raw protocol client, for tests that must see every message a server sends.
//!
//! Writing SCRAM-SHA-256 by hand is not worth it, so tokio-postgres does the login: it connects
//! through a one-shot relay that forwards both directions and records what the server sends. Once
//! the server has sent its first ReadyForQuery the relay stops and hands the authenticated server
//! socket to a [`RawSession`]; from then on the test writes frontend messages itself (built by the
//! functions in [`frontend`]) and reads every backend message, unfiltered.
//!
//! Deliberately small and strict: messages are framed by tag and length, nothing is interpreted
//! beyond the accessors on [`Message`], and every read has a deadline so a silent server fails the
//! test instead of hanging it.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for the next message before it gives up.
const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// One backend message: its tag and its body (without the length word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Message {
    /// The tag as a character, for readable assertions.
    pub fn tag(&self) -> char {
        self.tag as char
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
        (self.tag == b'K').then(|| (be_u32(&self.body[..4]), self.body[4..].to_vec()))
    }

    /// Authentication request: its code (0 = ok, 10 = SASL, 11 = SASL continue, 12 = SASL final).
    pub fn auth_code(&self) -> Option<u32> {
        (self.tag == b'R').then(|| be_u32(&self.body[..4]))
    }

    /// ErrorResponse / NoticeResponse: the fields as (code, value) pairs.
    pub fn fields(&self) -> Vec<(char, String)> {
        if self.tag != b'E' && self.tag != b'N' {
            return Vec::new();
        }
        let mut fields = Vec::new();
        let mut at = 0;
        while at < self.body.len() && self.body[at] != 0 {
            let code = self.body[at] as char;
            let (value, next) = cstr(&self.body, at + 1);
            fields.push((code, value));
            at = next;
        }
        fields
    }

    /// ErrorResponse / NoticeResponse: the SQLSTATE (field `C`).
    pub fn sqlstate(&self) -> Option<String> {
        self.field('C')
    }

    /// ErrorResponse / NoticeResponse: one field by its code.
    pub fn field(&self, code: char) -> Option<String> {
        self.fields()
            .into_iter()
            .find_map(|(c, v)| (c == code).then_some(v))
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
pub fn briefs(messages: &[Message]) -> Vec<String> {
    messages.iter().map(Message::brief).collect()
}

/// Splits one complete message off the front of `buf`, or `None` if it is not all there yet.
pub fn take_message(buf: &mut Vec<u8>) -> Option<Message> {
    if buf.len() < 5 {
        return None;
    }
    let len = be_u32(&buf[1..5]) as usize;
    assert!(len >= 4, "invalid message length {len}");
    if buf.len() < 1 + len {
        return None;
    }
    let message = Message {
        tag: buf[0],
        body: buf[5..1 + len].to_vec(),
    };
    buf.drain(..1 + len);
    Some(message)
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

    /// CancelRequest, sent on a connection of its own instead of a startup packet.
    pub fn cancel_request(process_id: u32, secret_key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(12 + secret_key.len() as u32).to_be_bytes());
        out.extend_from_slice(&80877102u32.to_be_bytes());
        out.extend_from_slice(&process_id.to_be_bytes());
        out.extend_from_slice(secret_key);
        out
    }
}

/// How a connection ended, as seen by [`RawSession::read_until_closed`].
#[derive(Debug)]
pub struct Closed {
    /// Every message received before the end.
    pub messages: Vec<Message>,
    /// `Ok(())` for an orderly EOF, else the read error (a reset, say).
    pub end: io::Result<()>,
    /// Bytes left over that did not make a whole message.
    pub trailing: Vec<u8>,
}

/// An authenticated connection on which the test speaks the protocol itself.
pub struct RawSession {
    stream: TcpStream,
    buf: Vec<u8>,
    /// What the server sent from the start of the conversation up to and including its first
    /// ReadyForQuery: authentication requests, ParameterStatus, BackendKeyData, ...
    pub startup: Vec<Message>,
}

impl RawSession {
    /// Logs in to the server at `upstream` with tokio-postgres, through a recording relay, and
    /// takes over the authenticated socket. `config_at` gives a client config pointed at an
    /// address (the relay's).
    pub async fn login(
        upstream: &str,
        config_at: impl FnOnce(&str) -> tokio_postgres::Config,
    ) -> RawSession {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        let relay = tokio::spawn(async move {
            let (client, _) = listener.accept().await?;
            let server = TcpStream::connect(&upstream).await?;
            relay_startup(client, server).await
        });
        let (client, connection) = config_at(&relay_addr)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("login through the recording relay failed");
        let (stream, startup, buf) = relay
            .await
            .expect("relay task panicked")
            .expect("relay failed");
        // The client half goes away; the server never sees its Terminate.
        drop(client);
        drop(connection);
        RawSession {
            stream,
            buf,
            startup,
        }
    }

    /// Writes frontend bytes (one or many messages) as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write failed");
    }

    /// The next message; `None` if the server closed the connection. Panics after the deadline.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            if let Some(message) = take_message(&mut self.buf) {
                return Some(message);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(RECV_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("no message from the server before the deadline")
                .expect("read failed");
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Every message up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        loop {
            let message = self
                .recv()
                .await
                .expect("connection closed before ReadyForQuery");
            let done = message.tag == b'Z';
            messages.push(message);
            if done {
                return messages;
            }
        }
    }

    /// Sends a simple Query and returns every message up to its ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> Vec<Message> {
        self.send(&frontend::query(sql)).await;
        self.until_ready().await
    }

    /// Reads until the server closes the connection (or the deadline passes, which panics).
    pub async fn read_until_closed(mut self) -> Closed {
        let mut messages = Vec::new();
        let end = loop {
            while let Some(message) = take_message(&mut self.buf) {
                messages.push(message);
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(RECV_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("server did not close the connection before the deadline")
            {
                Ok(0) => break Ok(()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => break Err(e),
            }
        };
        Closed {
            messages,
            end,
            trailing: self.buf,
        }
    }
}

/// Relays a login between tokio-postgres and the server until the server's first ReadyForQuery,
/// recording the server's messages. Returns the server socket, those messages and any bytes that
/// followed them.
async fn relay_startup(
    mut client: TcpStream,
    mut server: TcpStream,
) -> io::Result<(TcpStream, Vec<Message>, Vec<u8>)> {
    let mut startup = Vec::new();
    let mut pending = Vec::new();
    let mut from_client = [0u8; 8192];
    let mut from_server = [0u8; 8192];
    loop {
        tokio::select! {
            n = client.read(&mut from_client) => {
                let n = n?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client left during login"));
                }
                server.write_all(&from_client[..n]).await?;
            }
            n = server.read(&mut from_server) => {
                let n = n?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed during login"));
                }
                client.write_all(&from_server[..n]).await?;
                pending.extend_from_slice(&from_server[..n]);
                while let Some(message) = take_message(&mut pending) {
                    let ready = message.tag == b'Z';
                    startup.push(message);
                    if ready {
                        return Ok((server, startup, pending));
                    }
                }
            }
        }
    }
}
