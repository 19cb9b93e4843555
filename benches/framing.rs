//! Throughput of the relay's hot path, without sockets:
//! - `scanner`: how fast a read buffer full of typical server output (DataRows, CommandComplete,
//!   ReadyForQuery) is scanned for forwardable messages;
//! - `pump`: one direction of a session, [`Pump::run`] from an in-memory reader (16 KiB reads)
//!   into `tokio::io::sink()` on a current-thread runtime, the observer peeking as the session's
//!   do;
//! - `tracker`: the transaction tracker fed a conversation (both sides, in order).
//!
//! The traffic is built from the parts in `protocol::sample`, as in `tests/allocations.rs`, which
//! checks the same paths allocate nothing per message.

use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use doltgres_sidecar::protocol::backend;
use doltgres_sidecar::protocol::frame::{Scanner, Seen};
use doltgres_sidecar::sample::{self, Conversation, Side, complete, data_row, ready, track};
use doltgres_sidecar::session::pump::{Pump, Source};
use doltgres_sidecar::txn::{Tally, Tracker};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, ReadBuf};

/// `rows` one-column DataRows, then CommandComplete and ReadyForQuery.
fn server_batch(rows: usize) -> Vec<u8> {
    let mut out: Vec<u8> = (0..rows)
        .flat_map(|i| data_row(&[format!("{i:08}").as_bytes()]))
        .collect();
    out.extend(complete("SELECT 1"));
    out.extend(ready(b'I'));
    out
}

fn scan(c: &mut Criterion) {
    let batch = server_batch(500);
    let messages = 502u64;
    let mut group = c.benchmark_group("scanner");
    group.throughput(Throughput::Elements(messages));
    group.bench_function("messages", |b| {
        b.iter(|| {
            let mut scanner = Scanner::new(1 << 30);
            let mut ready_for_query = 0;
            let n = scanner
                .scan(black_box(&batch), |seen| {
                    if let Seen::Whole(m) = seen {
                        ready_for_query += (m.tag == b'Z') as u32;
                    }
                })
                .unwrap();
            black_box((n, ready_for_query))
        })
    });
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("bytes", |b| {
        b.iter(|| {
            let mut scanner = Scanner::new(1 << 30);
            black_box(scanner.scan(black_box(&batch), |_| {}).unwrap())
        })
    });
    group.finish();
}

/// One round of a typical conversation, in the order the messages cross the proxy: a SELECT of
/// ten rows, an INSERT, an extended-protocol SELECT, an explicit UPDATE transaction and an error.
fn conversation() -> Conversation {
    let rows = (0..10).map(|i| data_row(&[format!("value {i:04}").as_bytes()]));
    [
        sample::select("SELECT id, v FROM t WHERE id <= 10", &["v"], rows),
        sample::simple("INSERT INTO t VALUES (11, 'eleven')", "INSERT 0 1", b'I'),
        sample::prepared_select("SELECT v FROM t WHERE id = $1", b"7", "v", b"seven"),
        sample::transaction("UPDATE t SET v = 'x' WHERE id = 1"),
        sample::failing("SELECT 1/0", &["SERROR", "C22012", "Mdivision by zero"]),
    ]
    .concat()
}

/// Serves a prepared byte stream in reads of at most `read` bytes, then end of stream.
struct Chunked<'a> {
    data: &'a [u8],
    read: usize,
}

/// Waited on with no buffer, like a socket: the pump gives back and takes its pooled buffer.
impl Source for Chunked<'_> {
    fn waits_unbuffered(&self) -> bool {
        true
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.read.min(buf.remaining()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

/// Bytes per read from the in-memory source, and the pump's read buffer size (the default).
const READ: usize = 16 * 1024;
/// Rounds of conversation per benchmark iteration.
const ROUNDS: usize = 200;

/// Relays `data` once through `pump` into a sink; the observer peeks at ReadyForQuery and
/// CommandComplete like the server side of a session.
fn relay(rt: &tokio::runtime::Runtime, pump: &mut Pump, data: &[u8]) -> usize {
    let mut src = Chunked { data, read: READ };
    let mut dst = tokio::io::sink();
    let mut peeked = 0;
    let mut observer = |seen: Seen<'_>| {
        if let Seen::Whole(m) = seen {
            peeked += match m.tag {
                b'Z' => backend::ready_status(m.body).is_some() as usize,
                b'C' => backend::command_tag(m.body).len(),
                _ => 1,
            };
        }
    };
    rt.block_on(pump.run(&mut src, &mut dst, &mut observer))
        .expect("relay to the end");
    peeked
}

fn pump(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let conversation = conversation();
    let mut group = c.benchmark_group("pump");
    for (name, side) in [("server", Side::Server), ("client", Side::Client)] {
        let (round, messages) = sample::side_of(&conversation, side);
        let (data, messages) = (round.repeat(ROUNDS), (messages * ROUNDS) as u64);
        let forwarded = Counter::default();
        let mut pump = Pump::new(READ, 1 << 30, forwarded.clone());
        relay(&rt, &mut pump, &data);
        assert_eq!(
            forwarded.get(),
            data.len() as u64,
            "the relay forwards every byte"
        );
        group.throughput(Throughput::Elements(messages));
        group.bench_function(format!("{name}_messages"), |b| {
            b.iter(|| black_box(relay(&rt, &mut pump, black_box(&data))))
        });
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("{name}_bytes"), |b| {
            b.iter(|| black_box(relay(&rt, &mut pump, black_box(&data))))
        });
    }
    group.finish();
}

fn tracker(c: &mut Criterion) {
    let conversation = conversation();
    let mut tracker = Tracker::new();
    tracker.server_message(b'Z', b"I", &mut Tally::default());
    let tally = track(&mut tracker, &conversation, 1);
    assert_eq!(
        (tally.commits, tally.rollbacks, tally.write_commits),
        (4, 1, 2)
    );
    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Elements((conversation.len() * ROUNDS) as u64));
    group.bench_function("messages", |b| {
        b.iter(|| black_box(track(&mut tracker, black_box(&conversation), ROUNDS)))
    });
    group.finish();
}

criterion_group!(benches, scan, pump, tracker);
criterion_main!(benches);
