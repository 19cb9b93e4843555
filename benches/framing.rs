//! Throughput of the relay's hot path, without sockets:
//! - `scanner`: how fast a read buffer full of typical server output (DataRows, CommandComplete,
//!   ReadyForQuery) is scanned for forwardable messages;
//! - `pump`: one direction of a session, [`Pump::run`] from an in-memory reader (16 KiB reads)
//!   into `tokio::io::sink()` on a current-thread runtime, the observer peeking as the session's
//!   do;
//! - `tracker`: the transaction tracker fed a conversation (both sides, in order).
//!
//! `tests/allocations.rs` checks the same paths allocate nothing per message.

use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use doltgres_sidecar::protocol::backend;
use doltgres_sidecar::protocol::frame::{Scanner, Seen};
use doltgres_sidecar::session::pump::Pump;
use doltgres_sidecar::txn::{Tally, Tracker};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, ReadBuf};

fn server_batch(rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rows {
        let value = format!("{i:08}");
        let body_len = 2 + 4 + value.len();
        out.push(b'D');
        out.extend_from_slice(&((body_len + 4) as u32).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
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

/// Which side sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

fn message(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    let mut out = vec![tag];
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &[sql.as_bytes(), b"\0"])
}

fn complete(tag: &str) -> Vec<u8> {
    message(b'C', &[tag.as_bytes(), b"\0"])
}

fn ready(status: u8) -> Vec<u8> {
    message(b'Z', &[&[status]])
}

fn row_description(column: &str) -> Vec<u8> {
    let fixed = [
        0, 0, 0x40, 0, 0, 1, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ];
    message(b'T', &[&[0, 1], column.as_bytes(), b"\0", &fixed])
}

fn data_row(value: &[u8]) -> Vec<u8> {
    message(b'D', &[&[0, 1], &(value.len() as u32).to_be_bytes(), value])
}

/// One round of a typical conversation, in the order the messages cross the proxy: a SELECT of
/// ten rows, an INSERT, an extended-protocol SELECT, an explicit UPDATE transaction and an error.
fn conversation() -> Vec<(Side, Vec<u8>)> {
    use Side::{Client as C, Server as S};
    let mut out = vec![(C, query("SELECT id, v FROM t WHERE id <= 10"))];
    out.push((S, row_description("v")));
    for i in 0..10 {
        out.push((S, data_row(format!("value {i:04}").as_bytes())));
    }
    out.extend([
        (S, complete("SELECT 10")),
        (S, ready(b'I')),
        (C, query("INSERT INTO t VALUES (11, 'eleven')")),
        (S, complete("INSERT 0 1")),
        (S, ready(b'I')),
        (
            C,
            message(
                b'P',
                &[b"\0SELECT v FROM t WHERE id = $1\0", &[0, 1, 0, 0, 0, 23]],
            ),
        ),
        (
            C,
            message(b'B', &[b"\0\0", &[0, 0, 0, 1, 0, 0, 0, 1], b"7", &[0, 0]]),
        ),
        (C, message(b'D', &[b"P\0"])),
        (C, message(b'E', &[b"\0", &[0, 0, 0, 0]])),
        (C, message(b'S', &[])),
        (S, message(b'1', &[])),
        (S, message(b'2', &[])),
        (S, row_description("v")),
        (S, data_row(b"seven")),
        (S, complete("SELECT 1")),
        (S, ready(b'I')),
        (C, query("BEGIN")),
        (S, complete("BEGIN")),
        (S, ready(b'T')),
        (C, query("UPDATE t SET v = 'x' WHERE id = 1")),
        (S, complete("UPDATE 1")),
        (S, ready(b'T')),
        (C, query("COMMIT")),
        (S, complete("COMMIT")),
        (S, ready(b'I')),
        (C, query("SELECT 1/0")),
        (
            S,
            message(b'E', &[b"SERROR\0C22012\0Mdivision by zero\0\0"]),
        ),
        (S, ready(b'I')),
    ]);
    out
}

/// `rounds` rounds of one side's bytes, and how many messages they are.
fn side_stream(conversation: &[(Side, Vec<u8>)], side: Side, rounds: usize) -> (Vec<u8>, u64) {
    let messages: Vec<&[u8]> = conversation
        .iter()
        .filter(|(s, _)| *s == side)
        .map(|(_, m)| m.as_slice())
        .collect();
    (
        messages.concat().repeat(rounds),
        (messages.len() * rounds) as u64,
    )
}

/// Serves a prepared byte stream in reads of at most `read` bytes, then end of stream.
struct Chunked<'a> {
    data: &'a [u8],
    read: usize,
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
        let (data, messages) = side_stream(&conversation, side, ROUNDS);
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

/// Feeds `rounds` rounds of the conversation to `tracker`, as the session's observers do.
fn track(tracker: &mut Tracker, conversation: &[(Side, Vec<u8>)], rounds: usize) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..rounds {
        for (side, bytes) in conversation {
            let (tag, body) = (bytes[0], &bytes[5..]);
            match side {
                Side::Client if Tracker::wants_client(tag) => tracker.client_message(tag, body),
                Side::Server if Tracker::wants_server(tag) => {
                    tracker.server_message(tag, body, &mut tally)
                }
                _ => {}
            }
        }
    }
    tally
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
