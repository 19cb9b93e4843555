//! The relay's hot path allocates nothing per message.
//!
//! A counting global allocator (wrapping [`System`]) counts the allocations a thread makes while
//! its flag is set, so only the measured section counts and tests can still run in parallel. The
//! relay is driven over in-memory streams (a reader that serves a prepared byte stream in reads of
//! fixed, cycled sizes, and `tokio::io::sink()`), so every run is deterministic: nothing depends
//! on timing. A run over 10×N messages must allocate no more than a small constant over a run of
//! N messages; fixed costs (the first growth of a read buffer, the tracker's queue reaching its
//! working size) are allowed, anything proportional to the traffic is not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use doltgres_sidecar::protocol::backend;
use doltgres_sidecar::protocol::frame::{Scanner, Seen};
use doltgres_sidecar::sample::{
    self, Conversation, Side, bind, bind_complete, complete, data_row, execute, parse,
    parse_complete, query, ready, side_of, sync, track,
};
use doltgres_sidecar::session::pump::{Pump, Source};
use doltgres_sidecar::txn::{Tally, Tracker};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, ReadBuf};

// ---------------------------------------------------------------------------------------------
// Counting allocator.

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (`alloc`, `alloc_zeroed`, `realloc`) made by threads whose `COUNTING` flag is set.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by those allocations.
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set only inside [`measure`]: allocations made by the test harness, by other tests' threads
    /// or while setting a measurement up are not counted. `const`, so reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Serializes measured sections: the counters are process-wide, the flag is per thread.
static MEASURING: Mutex<()> = Mutex::new(());

struct Counting;

impl Counting {
    fn note(size: usize) {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only atomics and a
// `const` thread-local without a destructor, neither of which allocates or re-enters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Counting::note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::note(new_size);
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What a measured section allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Allocs {
    count: u64,
    bytes: u64,
}

/// Runs `f` with counting on for this thread; returns its result and what it allocated.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocs) {
    /// Turns counting off even if `f` panics.
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            COUNTING.with(|c| c.set(false));
        }
    }
    let _serial = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (count, bytes) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    COUNTING.with(|c| c.set(true));
    let off = Off;
    let out = f();
    drop(off);
    let allocs = Allocs {
        count: ALLOCATIONS.load(Ordering::Relaxed) - count,
        bytes: ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes,
    };
    (out, allocs)
}

/// Rounds of traffic in the small run; the large run has ten times as many.
const N: usize = 100;
/// How many more allocations the 10×N run may make than the N run: fixed costs that may fall
/// only in the longer run, never one per message (a per-message allocation would add thousands).
/// Seen so far: the read buffer's one-off growth (`BytesMut::reserve` in `Pump::run`, when a
/// partial message is left as the buffer fills), tokio's list of deferred wakers (allocated the
/// first time a `block_on` exhausts its coop budget), the tracker's queue reaching the pipeline
/// depth.
const SLACK: u64 = 4;

/// Asserts that going from N to 10×N rounds did not add allocations beyond [`SLACK`].
fn assert_flat(what: &str, messages: (usize, usize), small: Allocs, large: Allocs) {
    eprintln!(
        "{what}: {} messages -> {} allocations ({} B); {} messages -> {} allocations ({} B)",
        messages.0, small.count, small.bytes, messages.1, large.count, large.bytes
    );
    assert!(
        large.count <= small.count + SLACK,
        "{what}: allocations grew with the traffic: {} for {} messages, {} for {} messages",
        small.count,
        messages.0,
        large.count,
        messages.1,
    );
}

// ---------------------------------------------------------------------------------------------
// Traffic: one round of a typical conversation, in the order the messages cross the proxy, built
// from the parts in `protocol::sample` (shared with `benches/framing.rs`).

/// Bytes in the large row of a round: more than the read buffer, so it is streamed in pieces.
const LARGE_ROW: usize = 20_000;

/// One round: nine requests (simple and extended, reads and writes, an explicit block, a Dolt
/// commit, an error, a row larger than the read buffer) with the server's answers.
fn round() -> Conversation {
    let rows = [
        data_row(&[b"1", b"one"]),
        data_row(&[b"2", b"two"]),
        data_row(&[b"3", b"three"]),
    ];
    let commit = data_row(&[b"{abcdefghijklmnopqrstuvwxyz012345}"]);
    let large = data_row(&[&vec![b'x'; LARGE_ROW]]);
    [
        sample::select("SELECT id, v FROM t WHERE id < 4", &["id", "v"], rows),
        sample::simple("INSERT INTO t VALUES (4, 'four')", "INSERT 0 1", b'I'),
        sample::prepared_select("SELECT v FROM t WHERE id = $1", b"42", "v", b"forty-two"),
        sample::transaction("UPDATE t SET v = 'uno' WHERE id = 1"),
        sample::select(
            "SELECT dolt_commit('-Am', 'nightly')",
            &["dolt_commit"],
            [commit],
        ),
        sample::failing(
            "SELECT 1/0",
            &["SERROR", "VERROR", "C22012", "Mdivision by zero"],
        ),
        sample::select("SELECT big FROM t WHERE id = 1", &["big"], [large]),
    ]
    .concat()
}

/// What the tracker counts for one round.
const ROUND_TALLY: Tally = Tally {
    commits: 6,
    rollbacks: 1,
    write_commits: 3,
};

/// `rounds` repetitions of one side's stream, and how many messages they are.
fn stream(side: Side, rounds: usize) -> (Vec<u8>, usize) {
    let (bytes, messages) = side_of(&round(), side);
    (bytes.repeat(rounds), messages * rounds)
}

// ---------------------------------------------------------------------------------------------
// In-memory transport.

/// Reads as a socket delivers them: one large read at a time.
const WHOLE_READS: &[usize] = &[16 * 1024];
/// Reads of awkward sizes, cycled, so messages (and headers) are cut at many different places.
const RAGGED_READS: &[usize] = &[1000, 7, 4096, 333, 1, 65536, 5, 2048];

/// Serves a prepared byte stream in reads of the given sizes (cycled), then end of stream.
/// Always ready, and allocation-free.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    next: usize,
}

impl<'a> Chunked<'a> {
    fn new(data: &'a [u8], sizes: &'a [usize]) -> Chunked<'a> {
        Chunked {
            data,
            sizes,
            next: 0,
        }
    }
}

/// Like a socket, it can be waited on with no buffer: the pump gives its buffer back to the pool
/// whenever it has forwarded everything, and takes it again, as between a session's requests.
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
        let this = &mut *self;
        let size = this.sizes[this.next % this.sizes.len()];
        this.next += 1;
        let n = size.min(buf.remaining()).min(this.data.len());
        let (head, tail) = this.data.split_at(n);
        buf.put_slice(head);
        this.data = tail;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// What an observer saw during a relay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Observed {
    /// Messages seen, whole or as the start of a streamed one.
    messages: usize,
    /// Messages streamed in pieces.
    streamed: usize,
    /// ReadyForQuery messages reporting idle.
    idle: usize,
}

/// Relays `data` through a fresh pump into a sink, the observer peeking as the proxy does
/// (ReadyForQuery status, CommandComplete tag). Only the relay itself is measured.
fn relay(data: &[u8], read_size: usize, reads: &[usize]) -> (Observed, Allocs) {
    let rt = runtime();
    let bytes = Counter::default();
    let mut pump = Pump::new(read_size, 1 << 30, bytes.clone());
    let mut src = Chunked::new(data, reads);
    let mut dst = tokio::io::sink();
    let mut observed = Observed::default();
    let mut tag_bytes = 0;
    let mut observer = |seen: Seen<'_>| {
        observed.messages += 1;
        match seen {
            Seen::Whole(m) if m.tag == b'Z' => {
                observed.idle +=
                    (backend::ready_status(m.body) == Some(backend::TxnStatus::Idle)) as usize
            }
            Seen::Whole(m) if m.tag == b'C' => tag_bytes += backend::command_tag(m.body).len(),
            Seen::Whole(_) => {}
            Seen::StreamStart { .. } => observed.streamed += 1,
        }
    };
    let (result, allocs) = measure(|| rt.block_on(pump.run(&mut src, &mut dst, &mut observer)));
    result.expect("the relay ends at end of stream");
    assert_eq!(bytes.get(), data.len() as u64, "every byte is forwarded");
    assert!(pump.at_message_boundary());
    std::hint::black_box(tag_bytes);
    (observed, allocs)
}

/// Relays N and 10×N rounds of one side and checks the allocations did not grow.
fn check_relay(what: &str, side: Side, read_size: usize, reads: &[usize]) {
    let (small, small_messages) = stream(side, N);
    let (large, large_messages) = stream(side, 10 * N);
    let (seen_small, allocs_small) = relay(&small, read_size, reads);
    let (seen_large, allocs_large) = relay(&large, read_size, reads);
    assert_eq!(seen_small.messages, small_messages);
    assert_eq!(seen_large.messages, large_messages);
    if side == Side::Server {
        // An idle ReadyForQuery ends each of a round's seven transactions; its large row (and any
        // DataRow a read cuts) is streamed unless a grown buffer happens to hold it whole.
        assert_eq!(seen_large.idle, 7 * 10 * N);
        assert!(seen_large.streamed > 0);
    }
    assert_flat(
        what,
        (small_messages, large_messages),
        allocs_small,
        allocs_large,
    );
}

// ---------------------------------------------------------------------------------------------
// The pump.

#[test]
fn pump_relays_server_messages_without_allocating_per_message() {
    check_relay(
        "pump, server stream, 16 KiB buffer, whole reads",
        Side::Server,
        16 * 1024,
        WHOLE_READS,
    );
    check_relay(
        "pump, server stream, 16 KiB buffer, ragged reads",
        Side::Server,
        16 * 1024,
        RAGGED_READS,
    );
    check_relay(
        "pump, server stream, 512 B buffer, ragged reads",
        Side::Server,
        512,
        RAGGED_READS,
    );
}

#[test]
fn pump_relays_client_messages_without_allocating_per_message() {
    check_relay(
        "pump, client stream, 16 KiB buffer, whole reads",
        Side::Client,
        16 * 1024,
        WHOLE_READS,
    );
    check_relay(
        "pump, client stream, 512 B buffer, ragged reads",
        Side::Client,
        512,
        RAGGED_READS,
    );
}

/// Both directions of a session, a round at a time (requests, then their answers), the observers
/// feeding one transaction tracker as the session's do.
fn session(rounds: usize, reads: &[usize]) -> (Tally, usize, Allocs) {
    let round = round();
    let (client, client_messages) = side_of(&round, Side::Client);
    let (server, server_messages) = side_of(&round, Side::Server);
    let rt = runtime();
    let mut up = Pump::new(16 * 1024, 1 << 30, Counter::default());
    let mut down = Pump::new(16 * 1024, 1 << 30, Counter::default());
    let mut tracker = Tracker::new();
    let mut tally = Tally::default();
    tracker.server_message(b'Z', b"I", &mut tally);
    let (result, allocs) = measure(|| {
        rt.block_on(async {
            let mut sink = tokio::io::sink();
            for _ in 0..rounds {
                let mut client_side = |seen: Seen<'_>| {
                    if let Seen::Whole(m) = seen
                        && Tracker::wants_client(m.tag)
                    {
                        tracker.client_message(m.tag, m.body);
                    }
                };
                up.run(
                    &mut Chunked::new(&client, reads),
                    &mut sink,
                    &mut client_side,
                )
                .await?;
                let mut server_side = |seen: Seen<'_>| {
                    if let Seen::Whole(m) = seen
                        && Tracker::wants_server(m.tag)
                    {
                        tracker.server_message(m.tag, m.body, &mut tally);
                    }
                };
                down.run(
                    &mut Chunked::new(&server, reads),
                    &mut sink,
                    &mut server_side,
                )
                .await?;
            }
            Ok::<_, doltgres_sidecar::session::pump::PumpError>(())
        })
    });
    result.expect("both directions relay to the end");
    assert!(tracker.at_boundary());
    (tally, rounds * (client_messages + server_messages), allocs)
}

#[test]
fn session_relay_with_transaction_tracking_allocates_nothing_per_message() {
    for (what, reads) in [
        ("session, whole reads", WHOLE_READS),
        ("session, ragged reads", RAGGED_READS),
    ] {
        let (tally_small, messages_small, small) = session(N, reads);
        let (tally_large, messages_large, large) = session(10 * N, reads);
        assert_eq!(tally_small, times(ROUND_TALLY, N));
        assert_eq!(tally_large, times(ROUND_TALLY, 10 * N));
        assert_flat(what, (messages_small, messages_large), small, large);
    }
}

fn times(tally: Tally, n: usize) -> Tally {
    let n = n as u64;
    Tally {
        commits: tally.commits * n,
        rollbacks: tally.rollbacks * n,
        write_commits: tally.write_commits * n,
    }
}

// ---------------------------------------------------------------------------------------------
// The scanner.

/// Scans `data` as the pump does: a window that grows by one read and loses the forwarded prefix.
fn scan_all(data: &[u8], reads: &[usize]) -> usize {
    let mut scanner = Scanner::new(1 << 30);
    let (mut start, mut end, mut messages) = (0, 0, 0);
    for read in reads.iter().cycle() {
        if end == data.len() && start == end {
            break;
        }
        end = (end + read).min(data.len());
        start += scanner
            .scan(&data[start..end], |_| messages += 1)
            .expect("valid framing");
    }
    assert!(scanner.at_message_boundary());
    messages
}

#[test]
fn scanner_never_allocates() {
    for side in [Side::Server, Side::Client] {
        let (data, messages) = stream(side, 10 * N);
        for reads in [WHOLE_READS, RAGGED_READS] {
            let (seen, allocs) = measure(|| scan_all(&data, reads));
            assert_eq!(seen, messages);
            eprintln!("scanner, {side:?} stream: {messages} messages -> {allocs:?}");
            assert_eq!(allocs.count, 0, "Scanner::scan allocated: {allocs:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The transaction tracker.

/// A tracker past startup that has seen `warm_up` once (its queue is at working size).
fn warmed(warm_up: &[(Side, Vec<u8>)]) -> Tracker {
    let mut tracker = Tracker::new();
    tracker.server_message(b'Z', b"I", &mut Tally::default());
    track(&mut tracker, warm_up, 1);
    tracker
}

/// Measures the tracker over N and 10×N rounds of `conversation` after one warm-up round, and
/// returns the allocations of the larger run.
fn check_tracker(what: &str, conversation: &[(Side, Vec<u8>)]) -> Allocs {
    let per_round = conversation.len();
    let mut tracker = warmed(conversation);
    let (_, small) = measure(|| track(&mut tracker, conversation, N));
    let mut tracker = warmed(conversation);
    let (_, large) = measure(|| track(&mut tracker, conversation, 10 * N));
    assert_flat(what, (N * per_round, 10 * N * per_round), small, large);
    large
}

#[test]
fn tracker_allocates_nothing_per_message_after_warm_up() {
    let simple = [
        sample::transaction("UPDATE t SET v = v + 1 WHERE id = 7"),
        sample::simple("SELECT v FROM t WHERE id = 7", "SELECT 1", b'I'),
    ]
    .concat();
    let allocs = check_tracker("tracker, simple-query transactions", &simple);
    assert_eq!(allocs.count, 0);

    let mixed = round();
    let allocs = check_tracker("tracker, the relay's mix", &mixed);
    assert_eq!(allocs.count, 0);

    // Pipelined: four requests in flight before the first answer; the queue holds four.
    let mut pipelined = Conversation::new();
    for i in 0..4 {
        pipelined.push((Side::Client, query(&format!("INSERT INTO t VALUES ({i})"))));
    }
    for _ in 0..4 {
        pipelined.push((Side::Server, complete("INSERT 0 1")));
        pipelined.push((Side::Server, ready(b'I')));
    }
    let allocs = check_tracker("tracker, four pipelined queries", &pipelined);
    assert_eq!(allocs.count, 0);
}

#[test]
fn tracker_executing_a_prepared_dolt_procedure_allocates_nothing() {
    // A driver's statement cache: the named statement is parsed once, then bound and executed.
    let prepare = vec![
        (
            Side::Client,
            parse("s_1", "SELECT dolt_commit('-Am', $1::text)"),
        ),
        (Side::Client, sync()),
        (Side::Server, parse_complete()),
        (Side::Server, ready(b'I')),
    ];
    let execute_it = vec![
        (Side::Client, bind("", "s_1", b"42")),
        (Side::Client, execute()),
        (Side::Client, sync()),
        (Side::Server, bind_complete()),
        (Side::Server, complete("SELECT 1")),
        (Side::Server, ready(b'I')),
    ];
    let mut tracker = warmed(&prepare);
    track(&mut tracker, &execute_it, 1);
    let (tally, allocs) = measure(|| track(&mut tracker, &execute_it, 10 * N));
    assert_eq!(tally.write_commits, 10 * N as u64);
    eprintln!(
        "tracker, prepared dolt_commit executed {} times: {allocs:?}",
        10 * N
    );
    assert_eq!(allocs.count, 0);
}

#[test]
fn tracker_reparsing_a_named_writing_statement_allocates_at_most_its_name() {
    // Re-parsing a named statement that calls a writing Dolt procedure stores its name again
    // (`Tracker::parse` copies it); nothing else on the path allocates.
    let reparse = vec![
        (
            Side::Client,
            parse("s_1", "SELECT dolt_commit('-Am', $1::text)"),
        ),
        (Side::Client, bind("", "s_1", b"42")),
        (Side::Client, execute()),
        (Side::Client, sync()),
        (Side::Server, parse_complete()),
        (Side::Server, bind_complete()),
        (Side::Server, complete("SELECT 1")),
        (Side::Server, ready(b'I')),
    ];
    let mut tracker = warmed(&reparse);
    let (_, allocs) = measure(|| track(&mut tracker, &reparse, 10 * N));
    eprintln!(
        "tracker, named writing statement re-parsed {} times: {allocs:?}",
        10 * N
    );
    assert!(allocs.count <= 10 * N as u64, "{allocs:?}");
}
