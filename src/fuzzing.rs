//! The body of the fuzz target (`fuzz/fuzz_targets/framing.rs`), kept in the library so that the
//! seed corpus can be replayed by plain `cargo test` and the invariants live beside the code.
//!
//! The input is read as a stream of protocol bytes cut into reads at points chosen by its first
//! bytes. Every pure function that sees untrusted bytes runs over it: framing, startup packets,
//! backend peeks, and the transaction tracker fed from both sides. Nothing may panic, and the
//! bytes the scanner forwards must be exactly the input, in order.

use crate::protocol::frame::{Scanner, Seen};
use crate::protocol::{backend, startup};
use crate::txn::{Tally, Tracker};

/// Runs every check over `data`; panics if an invariant breaks.
pub fn exercise(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let _ = startup::check(stream, 10_000).map(|len| len.map(|n| startup::parse(&stream[..n])));
    let _ = startup::params(stream).count();
    let step = usize::from(cut % 64) + 1;
    for max_len in [64, 1 << 20] {
        scan_in_pieces(stream, step, max_len);
    }
}

/// Feeds `stream` to a scanner `step` bytes per read, as a pump would, and checks that what it
/// forwards is the input itself.
fn scan_in_pieces(stream: &[u8], step: usize, max_len: u32) {
    let mut scanner = Scanner::new(max_len);
    let mut client = Tracker::new();
    let mut server = Tracker::new();
    let mut tally = Tally::default();
    let mut buffered: Vec<u8> = Vec::new();
    let mut forwarded: Vec<u8> = Vec::new();
    for chunk in stream.chunks(step) {
        buffered.extend_from_slice(chunk);
        let result = scanner.scan(&buffered, |seen| {
            if let Seen::Whole(m) = seen {
                peek(m.tag, m.body);
                client.client_message(m.tag, m.body);
                server.server_message(m.tag, m.body, &mut tally);
            }
        });
        let Ok(ready) = result else { return };
        assert!(ready <= buffered.len(), "forwarded more than was read");
        forwarded.extend_from_slice(&buffered[..ready]);
        buffered.drain(..ready);
    }
    assert_eq!(
        forwarded,
        stream[..forwarded.len()],
        "forwarded bytes differ from the input"
    );
    assert!(tally.write_commits <= tally.commits);
}

fn peek(tag: u8, body: &[u8]) {
    let _ = backend::ready_status(body);
    let _ = backend::command_tag(body);
    let _ = backend::backend_key(body);
    let _ = backend::error_fields(body);
    let _ = crate::txn::classify::calls_writing_procedure(body);
    let _ = crate::txn::classify::is_write_tag(body);
    let _ = tag;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays the fuzz target's seed corpus (and any findings saved there) in normal test runs.
    #[test]
    fn seed_corpus_replays_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/framing");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            super::exercise(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count >= 5, "seed corpus has only {count} inputs");
    }

    #[test]
    fn edge_inputs() {
        for input in [
            &b""[..],
            b"\0",
            b"\x01Q\0\0\0\x04",
            b"\x02\xff\xff\xff\xff",
            b"\x03D\0\0\0\x10abc",
        ] {
            super::exercise(input);
        }
    }
}
