//! One direction of a session's relay: read what is there, find the forwardable prefix, show each
//! message to an observer, write the prefix, repeat.
//!
//! A pump is polled, not awaited: its whole state (the buffer, the batch being written, the
//! proxy's own message being written) lives in the [`Pump`], so the session's task polls both
//! directions from one small future, and a pump stopped in the middle of a write can go on
//! where it was.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

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
    /// Whether [`Source::poll_read_ready`] can wait for data with no buffer to read it into;
    /// only then does an idle pump give its buffer back.
    fn waits_unbuffered(&self) -> bool {
        false
    }
    /// Ready once a read would not wait (data, end of stream or an error is there).
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// For two lifetimes, not `Reader<'_>`'s one: the compiler proves the session's future `Send`
// over any lifetimes its halves' borrows get.
impl Source for Either<tokio::net::tcp::ReadHalf<'_>, tokio::io::ReadHalf<&mut TlsStream>> {
    fn waits_unbuffered(&self) -> bool {
        // A TLS stream may hold decrypted bytes the socket's readiness knows nothing of.
        matches!(self, Either::Left(_))
    }
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Either::Left(r) => r.as_ref().poll_read_ready(cx),
            Either::Right(_) => Poll::Ready(Ok(())),
        }
    }
}

impl Source for tokio::io::DuplexStream {}

/// Watches the messages a pump forwards.
pub trait Observer {
    /// Decides, before a batch is scanned, whether it goes on; may wait (the quiesce gate).
    fn poll_admit(&mut self, _cx: &mut Context<'_>) -> Poll<Admit> {
        Poll::Ready(Admit::Forward)
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
    Read(io::Error),
    #[error("write failed: {0}")]
    Write(io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The state of one direction.
#[derive(Debug)]
pub struct Pump {
    buf: BytesMut,
    scanner: Scanner,
    /// How much a read asks for: [`buffers::SMALL`], or `full_read_size` while reads fill it.
    read_size: usize,
    /// The front of `buf` that is scanned, admitted and not yet written.
    to_write: usize,
    /// Bytes were read (or preloaded) since the last scan.
    unscanned: bool,
    /// A batch was scanned: the observer hears it finished once its bytes are out.
    in_batch: bool,
    /// A message that cannot be framed ends the pump once the batch before it is out.
    failed: Option<FrameError>,
    /// The proxy's own message being written (at a message boundary).
    own: Option<Bytes>,
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
            // No buffer until there is something to read (see `poll_run`).
            buf: BytesMut::new(),
            scanner: Scanner::new(max_message_len),
            read_size: start,
            full_read_size: read_size,
            to_write: 0,
            unscanned: false,
            in_batch: false,
            failed: None,
            own: None,
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
        self.unscanned |= !bytes.is_empty();
    }

    /// Reads once from the source into the buffer, to be relayed later (while the session waits
    /// for a new destination); the byte count, 0 at end of stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, src: &mut R) -> io::Result<usize> {
        self.ensure_buffer();
        if self.buf.capacity() - self.buf.len() < self.read_size / 4 {
            self.buf.reserve(self.read_size);
        }
        let n = src.read_buf(&mut self.buf).await?;
        self.unscanned |= n > 0;
        Ok(n)
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
        self.to_write = 0;
        self.unscanned = false;
        self.in_batch = false;
        self.failed = None;
    }

    /// True when nothing has been half-written to the destination.
    pub fn at_message_boundary(&self) -> bool {
        self.to_write == 0 && self.own.is_none() && self.scanner.at_message_boundary()
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
        std::future::poll_fn(|cx| self.poll_run(cx, src, dst, observer)).await
    }

    /// Relays what can be relayed now: `Ready` when the source closed (`Ok(())`) or on an error,
    /// `Pending` (the task registered to be woken) when it waits for the source, the destination
    /// or the observer. Dropping the poller in between loses nothing: the next call goes on.
    pub fn poll_run<R, W, O>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        observer: &mut O,
    ) -> Poll<Result<(), PumpError>>
    where
        R: Source,
        W: AsyncWrite + Unpin,
        O: Observer,
    {
        loop {
            while self.to_write > 0 {
                let n = ready!(poll_write(cx, dst, &self.buf[..self.to_write]))?;
                self.buf.advance(n);
                self.to_write -= n;
                self.bytes.inc_by(n as u64);
            }
            if let Some(own) = &mut self.own {
                while !own.is_empty() {
                    let n = ready!(poll_write(cx, dst, own))?;
                    own.advance(n);
                }
                self.own = None;
            }
            if std::mem::take(&mut self.in_batch) {
                observer.finished();
                if let Some(e) = self.failed.take() {
                    return Poll::Ready(Err(e.into()));
                }
            }
            if self.unscanned {
                let admit = ready!(observer.poll_admit(cx));
                self.unscanned = false;
                self.scan(admit, observer);
                continue;
            }
            // The proxy's own messages go between messages, before more is read, so a stream
            // that never pauses cannot keep them waiting.
            let boundary = self.scanner.at_message_boundary();
            if boundary && let Some(own) = self.inject.as_ref().and_then(|i| i.try_recv()) {
                self.own = Some(own);
                continue;
            }
            if self.buf.is_empty() && src.waits_unbuffered() {
                match src.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpError::Read(e))),
                    Poll::Pending => {
                        // Nothing buffered and nothing to read: give the buffer back and wait
                        // for data without one, so an idle session holds none.
                        self.give_back();
                        return self.wait_for_own(cx, boundary);
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
            let n = match tokio_util::io::poll_read_buf(Pin::new(&mut *src), cx, &mut self.buf) {
                Poll::Ready(read) => read.map_err(PumpError::Read)?,
                Poll::Pending => return self.wait_for_own(cx, boundary),
            };
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            self.unscanned = true;
            if n == spare && self.read_size < self.full_read_size {
                // A read filled the buffer: this session moves real data; use the full size.
                self.read_size = self.full_read_size;
            }
        }
    }

    /// Scans what was read: the observer sees each message, and the forwardable prefix becomes
    /// the batch to write (or is dropped, when the observer discards it).
    fn scan<O: Observer>(&mut self, admit: Admit, observer: &mut O) {
        if let Some(max_len) = observer.max_len() {
            self.scanner.set_max_len(max_len);
        }
        // Where the bytes known to be whole end: the rest of a streamed message, then each
        // whole message seen.
        let mut whole = self.scanner.streaming_left().min(self.buf.len());
        let scanned = self.scanner.scan(&self.buf, |seen| {
            if let Seen::Whole(m) = seen {
                whole = m.offset + HEADER_LEN + m.body.len();
            }
            observer.seen(seen)
        });
        self.in_batch = true;
        let ready = match scanned {
            Ok(ready) => ready,
            Err(e) => {
                // What came before the message that cannot be framed goes on, as it would have
                // had a read ended just before it: the outcome does not depend on how the
                // stream was cut into reads.
                self.failed = Some(e);
                whole
            }
        };
        if ready > 0 && admit == Admit::Forward {
            observer.patch(&mut self.buf[..ready]);
            self.to_write = ready;
        } else if self.failed.is_none() {
            self.buf.advance(ready);
        }
    }

    /// Waits for the source; at a message boundary, the proxy's own messages wake the pump too.
    fn wait_for_own(
        &mut self,
        cx: &mut Context<'_>,
        boundary: bool,
    ) -> Poll<Result<(), PumpError>> {
        if boundary
            && let Some(inject) = &self.inject
            && let Poll::Ready(own) = inject.poll_recv(cx)
        {
            self.own = Some(own);
            // Written at the next poll, which comes at once.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
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
}

impl Drop for Pump {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            self.give_back();
        }
    }
}

/// One write to the destination; writing nothing is an error, as in `write_all`.
fn poll_write<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dst: &mut W,
    bytes: &[u8],
) -> Poll<Result<usize, PumpError>> {
    match ready!(Pin::new(dst).poll_write(cx, bytes)) {
        Ok(0) => Poll::Ready(Err(PumpError::Write(io::ErrorKind::WriteZero.into()))),
        Ok(n) => Poll::Ready(Ok(n)),
        Err(e) => Poll::Ready(Err(PumpError::Write(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

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
