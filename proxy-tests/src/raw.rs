//! A raw protocol client for tests that must send exactly chosen bytes (malformed messages,
//! pipelines, cancel requests) and read every message the proxy returns. SCRAM login uses
//! postgres-protocol's implementation.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::TestServer;

/// How long a read may wait before the test fails.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// One message from the server: tag and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub tag: u8,
    pub body: Bytes,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse/NoticeResponse.
    pub fn sqlstate(&self) -> Option<String> {
        field(&self.body, b'C')
    }

    /// The message text of an ErrorResponse/NoticeResponse.
    pub fn text(&self) -> Option<String> {
        field(&self.body, b'M')
    }
}

fn field(body: &[u8], kind: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&k, tail)) = rest.split_first() {
        let end = tail.iter().position(|b| *b == 0)?;
        if k == kind {
            return Some(String::from_utf8_lossy(&tail[..end]).to_string());
        }
        rest = &tail[end + 1..];
    }
    None
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    /// The BackendKeyData received at login: (process id, secret key).
    pub key: Option<(u32, Vec<u8>)>,
}

impl RawClient {
    pub async fn connect(addr: &str) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
            key: None,
        }
    }

    /// Connects and logs in with the server's credentials; returns after the first ReadyForQuery.
    pub async fn login(addr: &str, server: &TestServer) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        let mut out = BytesMut::new();
        frontend::startup_message(
            [
                ("user", server.user.as_str()),
                ("database", server.database.as_str()),
            ],
            &mut out,
        )
        .unwrap();
        c.send(&out).await;
        let mut scram = None;
        loop {
            let msg = c.read().await.expect("server closed during login");
            match msg.tag {
                b'R' => {
                    let kind = u32::from_be_bytes(msg.body[..4].try_into().unwrap());
                    let data = &msg.body[4..];
                    let mut out = BytesMut::new();
                    match kind {
                        0 => {}
                        10 => {
                            let s = ScramSha256::new(
                                server.password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                                .unwrap();
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().unwrap();
                            s.update(data).unwrap();
                            frontend::sasl_response(s.message(), &mut out).unwrap();
                        }
                        12 => scram.as_mut().unwrap().finish(data).unwrap(),
                        other => panic!("unexpected authentication request {other}"),
                    }
                    if !out.is_empty() {
                        c.send(&out).await;
                    }
                }
                b'K' => {
                    let pid = u32::from_be_bytes(msg.body[..4].try_into().unwrap());
                    c.key = Some((pid, msg.body[4..].to_vec()));
                }
                b'E' => panic!("login failed: {:?}", msg.text()),
                b'Z' => return c,
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends a simple Query.
    pub async fn query(&mut self, sql: &str) {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).unwrap();
        self.send(&out).await;
    }

    /// The next message, `None` when the connection is closed.
    pub async fn read(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).freeze();
                    return Some(Msg { tag, body });
                }
            }
            let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("no message within the read timeout")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
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
        let mut msgs = Vec::new();
        while let Some(m) = self.read().await {
            msgs.push(m);
        }
        msgs
    }
}
