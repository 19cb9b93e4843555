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

/// The startup phase (`fuzz_targets/startup.rs`): the input's first byte says whether TLS is
/// offered and which length limit applies; the rest is a stream of startup packets, each taken
/// through the negotiation as a session would. Nothing may panic; a complete packet is never
/// shorter than 8 bytes nor longer than what was read; the same encryption request is never
/// answered twice in a row.
pub fn exercise_startup(data: &[u8]) {
    use crate::protocol::startup::{Negotiation, POSTGRES_MAX_LEN, Step};
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let offer_tls = flags & 1 == 1;
    let max_len = if flags & 2 == 0 { POSTGRES_MAX_LEN } else { 64 };
    let mut negotiation = Negotiation::default();
    let mut last_answered = None;
    loop {
        let Ok(Some(len)) = startup::check(rest, max_len) else {
            return;
        };
        assert!((8..=rest.len()).contains(&len), "bad packet length {len}");
        let packet = startup::parse(&rest[..len]);
        let _ = startup::params(&rest[8..len]).count();
        let answered = match negotiation.step(packet, offer_tls) {
            Step::Ssl { accept: true } => return,
            Step::Ssl { accept: false } => "ssl",
            Step::RefuseGss => "gss",
            Step::Startup | Step::Cancel { .. } | Step::Close | Step::Unsupported { .. } => return,
        };
        assert_ne!(
            last_answered,
            Some(answered),
            "{answered} answered twice in a row"
        );
        last_answered = Some(answered);
        rest = &rest[len..];
    }
}

/// The SCRAM messages (`fuzz_targets/scram.rs`): the input's first byte chooses the mechanism
/// and whether channel binding is offered; the rest, split at its first `0xff`, is a
/// client-first and a client-final message. Every parser runs over both parts, and both go
/// through the proxy's server side of an exchange. Nothing may panic; what the parsers return
/// is part of their input; an exchange only verifies a proof that matches the verifier. Returns
/// whether the exchange verified.
pub fn exercise_scram(data: &[u8]) -> bool {
    use crate::auth::scram::{self, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ServerExchange};
    use crate::auth::verifier::ScramVerifier;
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let (first, last) = match rest.iter().position(|b| *b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    for part in [first, last] {
        if let Ok(parsed) = scram::parse_client_first(part) {
            assert_eq!(
                format!("{}{}", parsed.gs2_header, parsed.bare).as_bytes(),
                part
            );
            assert!(parsed.bare.contains(parsed.nonce));
        }
        if let Ok(parsed) = scram::parse_client_final(part) {
            assert!(part.starts_with(parsed.without_proof.as_bytes()));
            assert!(parsed.without_proof.contains(parsed.nonce));
        }
        let _ = scram::parse_server_first(part, "nonce");
        let _ = scram::parse_server_final(part);
    }
    // A fixed verifier, built without PBKDF2 so that each run stays cheap.
    let client_key = [7u8; scram::KEY_LEN];
    let verifier = ScramVerifier {
        iterations: 4096,
        salt: vec![1; scram::SALT_LEN],
        stored_key: scram::h(&client_key),
        server_key: [9; scram::KEY_LEN],
    };
    let end_point = (flags & 1 == 1).then(|| vec![3u8; 32]);
    let mechanism = if flags & 2 == 2 {
        SCRAM_SHA_256_PLUS
    } else {
        SCRAM_SHA_256
    };
    let mock = ScramVerifier::mock("fuzz", b"secret");
    let mut exchange = ServerExchange::new(Some(verifier.clone()), mock, end_point);
    if exchange.start(mechanism, first, "server-nonce").is_ok()
        && let Ok(verified) = exchange.finish(last)
    {
        assert_eq!(scram::h(verified.client_key.as_ref()), verifier.stored_key);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays a fuzz target's seed corpus (and any findings saved there) in normal test runs.
    fn replay(target: &str, exercise: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            exercise(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count >= 5, "{target} corpus has only {count} inputs");
    }

    #[test]
    fn seed_corpus_replays_cleanly() {
        replay("framing", super::exercise);
    }

    #[test]
    fn startup_corpus_replays_cleanly() {
        replay("startup", super::exercise_startup);
    }

    #[test]
    fn scram_corpus_replays_cleanly() {
        replay("scram", |data| {
            super::exercise_scram(data);
        });
        // The seeds include a plain and a channel-bound exchange whose proofs match.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/scram");
        let verified = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| super::exercise_scram(&std::fs::read(e.as_ref().unwrap().path()).unwrap()))
            .count();
        assert!(verified >= 2, "{verified} seeds verified");
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
