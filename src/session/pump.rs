//! One direction of a session's relay: read what is there, find the forwardable prefix, show each
//! message to an observer, write the prefix in one call, repeat.

use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use prometheus_client::metrics::counter::Counter;

use tokio_util::either::Either;

use crate::halves::TlsStream;
use crate::protocol::frame::{FrameError, HEADER_LEN, Scanner, Seen};

use super::buffers;
use super::inject::Injector;

/// Whether a batch of read bytes may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Forward the batch.
    Forward,
    /// Consume the batch without forwarding it (the observer answers it itself).
    Discard,
}

/// What a pump reads from.
pub trait Source: AsyncRead + Unpin {
    /// Whether [`Source::readable`] can wait for data with no buffer to read it into; only then
    /// does an idle pump give its buffer back.
    fn waits_unbuffered(&self) -> bool {
        false
    }
    /// Resolves once a read would not wait (data, end of stream or an error is there).
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

// For two lifetimes, not `Reader<'_>`'s one: the compiler proves the session's future `Send`
// over any lifetimes its halves' borrows get.
impl Source for Either<tokio::net::tcp::ReadHalf<'_>, tokio::io::ReadHalf<&mut TlsStream>> {
    fn waits_unbuffered(&self) -> bool {
        // A TLS stream may hold decrypted bytes the socket's readiness knows nothing of.
        matches!(self, Either::Left(_))
    }
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        // Only the plain half is borrowed into the future, not the whole `Either`.
        let plain = match self {
            Either::Left(r) => Some(r),
            Either::Right(_) => None,
        };
        async move {
            match plain {
                Some(r) => r.readable().await,
                None => Ok(()),
            }
        }
    }
}

impl Source for tokio::io::DuplexStream {}

/// Watches the messages a pump forwards.
pub trait Observer {
    /// Decides, before a batch is scanned, whether it goes on; may wait (the quiesce gate).
    fn admit(&mut self) -> impl Future<Output = Admit> + Send {
        std::future::ready(Admit::Forward)
    }
    /// The largest message to accept from now on, when it changes (a login's messages are
    /// capped far below `max_message_len`); asked before each batch is scanned.
    fn max_len(&mut self) -> Option<u32> {
        None
    }
    /// Sees each message, or the start of a streamed one, before it is forwarded.
    fn seen(&mut self, seen: Seen<'_>);
    /// May change the bytes about to be forwarded; called once per batch after `seen`.
    fn patch(&mut self, _ready: &mut [u8]) {}
    /// The batch has been forwarded (or discarded).
    fn finished(&mut self) {}
}

impl<F: FnMut(Seen<'_>)> Observer for F {
    fn seen(&mut self, seen: Seen<'_>) {
        self(seen)
    }
}

/// Why a pump stopped.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The buffered state of one direction. It lives outside the future that drives it so that,
/// once that future is dropped, the session can still tell whether the stream is at a message
/// boundary (and so whether a message of the proxy's own may be written after it).
#[derive(Debug)]
pub struct Pump {
    buf: BytesMut,
    scanner: Scanner,
    /// How much a read asks for: [`buffers::SMALL`], or `full_read_size` while reads fill it.
    read_size: usize,
    /// A write was started and has not finished.
    writing: bool,
    /// Bytes forwarded.
    bytes: Counter,
    /// The configured read buffer size; `read_size` grows to it the first time a read fills the
    /// buffer, so idle and light sessions keep a small buffer.
    full_read_size: usize,
    /// Messages the proxy itself sends in this direction (notices, answers to held requests),
    /// written only between messages.
    inject: Option<Arc<Injector>>,
    /// `buf` is a buffer from [`buffers`] (a consumed one may show no capacity and still be
    /// one), not the empty placeholder.
    lent: bool,
}

impl Pump {
    pub fn new(read_size: usize, max_message_len: u32, bytes: Counter) -> Pump {
        let start = read_size.min(buffers::SMALL);
        Pump {
            // No buffer until there is something to read (see `run`).
            buf: BytesMut::new(),
            scanner: Scanner::new(max_message_len),
            read_size: start,
            full_read_size: read_size,
            writing: false,
            bytes,
            inject: None,
            lent: false,
        }
    }

    /// Lets the proxy write its own messages into this direction's stream.
    pub fn with_injection(mut self, inject: Arc<Injector>) -> Pump {
        self.inject = Some(inject);
        self
    }

    /// Starts with bytes already read from the source (e.g. during startup).
    pub fn preload(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads once from the source into the buffer, to be relayed later (while the session waits
    /// for a new destination); the byte count, 0 at end of stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, src: &mut R) -> std::io::Result<usize> {
        self.ensure_buffer();
        if self.buf.capacity() - self.buf.len() < self.read_size / 4 {
            self.buf.reserve(self.read_size);
        }
        src.read_buf(&mut self.buf).await
    }

    /// The buffer holds a read buffer's worth: [`Pump::fill`] should wait.
    pub fn is_full(&self) -> bool {
        self.buf.len() >= self.full_read_size
    }

    /// Drops unforwarded input: the source is replaced by a new one, and a partial message of
    /// the old one must not be taken for the start of the new one's.
    pub fn forget_input(&mut self) {
        self.buf.clear();
        self.scanner = Scanner::new(self.scanner.max_len());
    }

    /// True unless a future running this pump was dropped in the middle of a write (and how
    /// much of it went out is unknown): only then may [`Pump::run`] be called again.
    pub fn can_resume(&self) -> bool {
        !self.writing
    }

    /// True when nothing has been half-written to the destination.
    pub fn at_message_boundary(&self) -> bool {
        !self.writing && self.scanner.at_message_boundary()
    }

    /// Relays until the source closes (`Ok(())`) or an error. `observe` sees every message
    /// before it is forwarded.
    pub async fn run<R, W, O>(
        &mut self,
        src: &mut R,
        dst: &mut W,
        observer: &mut O,
    ) -> Result<(), PumpError>
    where
        R: Source,
        W: AsyncWrite + Unpin,
        O: Observer,
    {
        loop {
            if !self.buf.is_empty() {
                let admit = observer.admit().await;
                if let Some(max_len) = observer.max_len() {
                    self.scanner.set_max_len(max_len);
                }
                // Where the bytes known to be whole end: the rest of a streamed message, then
                // each whole message seen.
                let mut whole = self.scanner.streaming_left().min(self.buf.len());
                let ready = self.scanner.scan(&self.buf, |seen| {
                    if let Seen::Whole(m) = seen {
                        whole = m.offset + HEADER_LEN + m.body.len();
                    }
                    observer.seen(seen)
                });
                let ready = match ready {
                    Ok(ready) => ready,
                    Err(e) => {
                        // What came before the message that cannot be framed goes on, as it
                        // would have had a read ended just before it: the outcome does not
                        // depend on how the stream was cut into reads.
                        if whole > 0 && admit == Admit::Forward {
                            observer.patch(&mut self.buf[..whole]);
                            self.write(dst, whole).await?;
                            self.bytes.inc_by(whole as u64);
                        }
                        observer.finished();
                        return Err(e.into());
                    }
                };
                if ready > 0 && admit == Admit::Forward {
                    observer.patch(&mut self.buf[..ready]);
                    self.write(dst, ready).await?;
                    self.bytes.inc_by(ready as u64);
                }
                self.buf.advance(ready);
                observer.finished();
            }
            let boundary = self.scanner.at_message_boundary();
            if self.buf.is_empty() && src.waits_unbuffered() {
                let mut readable = std::pin::pin!(src.readable());
                let now = std::future::poll_fn(|cx| Poll::Ready(readable.as_mut().poll(cx))).await;
                if now.is_pending() {
                    // Nothing buffered and nothing to read: give the buffer back and wait for
                    // data without one, so an idle session holds none.
                    self.give_back();
                    tokio::select! {
                        // The proxy's own messages first (a cheap look at a counter), so a
                        // stream that never pauses cannot keep them waiting.
                        biased;
                        Some(own) = recv(&self.inject), if boundary => {
                            dst.write_all(&own).await.map_err(PumpError::Write)?;
                            continue;
                        }
                        ready = &mut readable => ready.map_err(PumpError::Read)?,
                    }
                }
            }
            self.ensure_buffer();
            let spare = self.buf.capacity() - self.buf.len();
            if spare < self.read_size / 4 {
                // Room up to one read buffer: reclaims the consumed front in place. Only a peeked
                // message larger than the buffer makes it grow (bounded by max_message_len).
                let room = self
                    .read_size
                    .saturating_sub(self.buf.len())
                    .max(self.read_size / 4);
                self.buf.reserve(room);
            }
            let spare = self.buf.capacity() - self.buf.len();
            let read = tokio::select! {
                biased;
                Some(own) = recv(&self.inject), if boundary => {
                    dst.write_all(&own).await.map_err(PumpError::Write)?;
                    continue;
                }
                read = src.read_buf(&mut self.buf) => read,
            };
            let n = read.map_err(PumpError::Read)?;
            if n == 0 {
                return Ok(());
            }
            if n == spare && self.read_size < self.full_read_size {
                // A read filled the buffer: this session moves real data; use the full size.
                self.read_size = self.full_read_size;
            }
        }
    }

    /// Makes sure the pump reads into a buffer of its own: one from the pool, unless bytes put
    /// there before the relay started (see [`Pump::preload`]) are still waiting.
    fn ensure_buffer(&mut self) {
        if !self.lent {
            if self.buf.is_empty() {
                self.buf = buffers::take(self.read_size);
            }
            self.lent = true;
        }
    }

    /// Returns the (empty) buffer to the pool, if the pump has one.
    fn give_back(&mut self) {
        if std::mem::take(&mut self.lent) {
            buffers::give(std::mem::take(&mut self.buf), self.full_read_size);
        }
    }

    async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        dst: &mut W,
        len: usize,
    ) -> Result<(), PumpError> {
        self.writing = true;
        dst.write_all(&self.buf[..len])
            .await
            .map_err(PumpError::Write)?;
        self.writing = false;
        Ok(())
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            self.give_back();
        }
    }
}

async fn recv(inject: &Option<Arc<Injector>>) -> Option<bytes::Bytes> {
    match inject {
        Some(queue) => Some(queue.recv().await),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_bytes_unchanged_and_reports_messages() {
        let input: Vec<u8> = [
            &b"Q\0\0\0\x0dSELECT 1\0"[..],
            &b"D\0\0\0\x0a\0\x01\0\0\0\0"[..],
            &b"\x7f\0\0\0\x04"[..],
        ]
        .concat();
        let (mut src_w, mut src_r) = tokio::io::duplex(7);
        let (mut dst_w, mut dst_r) = tokio::io::duplex(1 << 16);
        let feeder = {
            let input = input.clone();
            tokio::spawn(async move {
                src_w.write_all(&input).await.unwrap();
            })
        };
        let mut pump = Pump::new(512, 1 << 20, Counter::default());
        let mut tags = Vec::new();
        // The 7-byte pipe splits the DataRow, so it is streamed rather than seen whole.
        let mut observe = |s: Seen<'_>| match s {
            Seen::Whole(m) => tags.push(m.tag),
            Seen::StreamStart { tag, .. } => tags.push(tag),
        };
        pump.run(&mut src_r, &mut dst_w, &mut observe)
            .await
            .unwrap();
        feeder.await.unwrap();
        drop(dst_w);
        let mut out = Vec::new();
        dst_r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
        assert_eq!(tags, vec![b'Q', b'D', 0x7f]);
        assert!(pump.at_message_boundary());
    }

    #[tokio::test]
    async fn messages_before_one_that_cannot_be_framed_still_go_on() {
        // The end of a streamed DataRow, a whole ReadyForQuery, then a length word over the
        // maximum, all in one read: the first two are forwarded before the error.
        let mut head = b"D\0\0\x01\x04\0\x01\0\0\0\xfa".to_vec();
        head.extend_from_slice(&[b'x'; 100]);
        let mut tail = vec![b'x'; 150];
        tail.extend_from_slice(b"Z\0\0\0\x05I");
        let bad = b"C\x7f\xff\xff\xff";
        let (mut src_w, mut src_r) = tokio::io::duplex(1 << 16);
        let (mut dst_w, mut dst_r) = tokio::io::duplex(1 << 16);
        let mut pump = Pump::new(512, 1 << 20, Counter::default());
        src_w.write_all(&head).await.unwrap();
        let mut tags = Vec::new();
        let mut observe = |s: Seen<'_>| match s {
            Seen::Whole(m) => tags.push(m.tag),
            Seen::StreamStart { tag, .. } => tags.push(tag),
        };
        let run = pump.run(&mut src_r, &mut dst_w, &mut observe);
        let feed = async {
            // Once the head has been forwarded, the rest arrives in one piece.
            let mut got = vec![0u8; head.len()];
            dst_r.read_exact(&mut got).await.unwrap();
            src_w
                .write_all(&[&tail[..], &bad[..]].concat())
                .await
                .unwrap();
            got
        };
        let (err, got) = tokio::join!(run, feed);
        assert!(matches!(
            err.unwrap_err(),
            PumpError::Frame(FrameError::TooLong { tag: b'C', .. })
        ));
        assert_eq!(got, head);
        drop(dst_w);
        let mut rest = Vec::new();
        dst_r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            rest, tail,
            "the row's end and the ReadyForQuery, not the bad header"
        );
        assert_eq!(tags, vec![b'D', b'Z']);
        assert!(pump.at_message_boundary());
    }

    #[tokio::test]
    async fn oversized_message_is_an_error() {
        let (mut src_w, mut src_r) = tokio::io::duplex(64);
        src_w.write_all(b"Q\x7f\0\0\0").await.unwrap();
        let mut sink = tokio::io::sink();
        let mut pump = Pump::new(512, 1 << 20, Counter::default());
        let err = pump
            .run(&mut src_r, &mut sink, &mut |_: Seen<'_>| {})
            .await
            .unwrap_err();
        assert!(matches!(err, PumpError::Frame(FrameError::TooLong { .. })));
    }

    #[tokio::test]
    async fn a_pump_waiting_on_an_idle_socket_holds_no_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut server = crate::tls::plain(listener.accept().await.unwrap().0);
        let (mut src, _) = crate::halves::split(&mut server);
        let (mut dst_w, mut dst_r) = tokio::io::duplex(1 << 16);
        let mut pump = Pump::new(16 * 1024, 1 << 20, Counter::default());
        client.write_all(b"Q\0\0\0\x0dSELECT 1\0").await.unwrap();
        let mut tags = Vec::new();
        let mut observe = |s: Seen<'_>| {
            if let Seen::Whole(m) = s {
                tags.push(m.tag)
            }
        };
        let run = pump.run(&mut src, &mut dst_w, &mut observe);
        // The pump forwards the query, then waits for more: stop it there.
        let idle = tokio::time::timeout(std::time::Duration::from_millis(300), run).await;
        assert!(idle.is_err(), "still relaying");
        let mut got = [0u8; 14];
        dst_r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"Q\0\0\0\x0dSELECT 1\0");
        assert_eq!(tags, vec![b'Q']);
        assert!(!pump.lent, "the buffer went back to the pool");
        assert_eq!(pump.buf.capacity(), 0);
    }
}
