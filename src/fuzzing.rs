//! The body of the fuzz target (`fuzz/fuzz_targets/framing.rs`), kept in the library so that the
//! seed corpus can be replayed by plain `cargo test` and the invariants live beside the code.
//!
//! The input is read as a stream of protocol bytes cut into reads at points chosen by its first
//! bytes. Every pure function that sees untrusted bytes runs over it: framing, startup packets,
//! backend peeks, and the transaction tracker fed from both sides. Nothing may panic, and the
//! bytes the scanner forwards must be exactly the input, in order.

use crate::protocol::frame::{Scanner, Seen};
use crate::protocol::{backend, startup};
use crate::txn::{Phase, Tally, Tracker};

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

/// The admin API's inputs (`fuzz_targets/admin.rs`): the input is a query string for the hold and
/// backup endpoints (see [`crate::admin::exercise_query`]), and, cut at the point its first byte
/// names, a presented token and a configured one, which must match exactly when they are equal.
pub fn exercise_admin(data: &[u8]) {
    crate::admin::exercise_query(data);
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let (given, token) = rest.split_at(usize::from(cut).min(rest.len()));
    if let (Ok(given), Ok(token)) = (std::str::from_utf8(given), std::str::from_utf8(token)) {
        assert_eq!(crate::admin::token_matches(given, token), given == token);
    }
}

/// The console's command parser (`fuzz_targets/console.rs`): the input as a simple-protocol
/// query. Nothing panics; every command that parses prints as text that parses back to it (see
/// [`crate::session::console::command::exercise`]).
pub fn exercise_console(data: &[u8]) {
    crate::session::console::command::exercise(data);
}

/// The upgrade hand-over's framing (`fuzz_targets/handover.rs`): the input as a stream of frames
/// from the other process. A frame may be refused (too long, not a message) but never panics, and
/// a message that decodes encodes back to a frame that decodes to the same message.
pub fn exercise_handover(data: &[u8]) {
    use crate::handover::message::{body_len, decode, encode};
    let mut rest = data;
    while rest.len() >= 4 {
        let (header, tail) = rest.split_at(4);
        let Ok(len) = body_len(header.try_into().expect("four bytes")) else {
            return;
        };
        if tail.len() < len {
            return;
        }
        let (body, tail) = tail.split_at(len);
        if let Ok(message) = decode(body) {
            let frame = encode(&message);
            let again = body_len(frame[..4].try_into().expect("four bytes")).expect("fits");
            assert_eq!(again, frame.len() - 4);
            assert_eq!(decode(&frame[4..]).expect("round trip"), message);
        }
        rest = tail;
    }
}

/// Config parsing (`fuzz_targets/config.rs`): the input as a config file. Parsing and validation
/// may refuse it but not panic, and a config that validates keeps the promises the rest of the
/// program relies on (addresses that parse, limits above their floors, non-zero timeouts).
pub fn exercise_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = crate::config::Config::from_toml(text) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    assert!(config.listen.parse::<std::net::SocketAddr>().is_ok());
    assert!(config.admin_listen.parse::<std::net::SocketAddr>().is_ok());
    assert!(config.max_message_len >= 1024 && config.max_startup_len >= 64);
    assert!(config.max_client_connections >= 1 && config.read_buffer_size >= 512);
    for timeout in [
        config.startup_timeout,
        config.connect_timeout,
        config.drain_timeout,
        config.hold_timeout,
        config.max_hold_ttl,
    ] {
        assert!(!timeout.is_zero());
    }
    for action in &config.backup.actions {
        assert!(config.backup.has(*action));
    }
}

/// Statements a client sends in the tracker target; some open or end blocks, some write.
const TRACKER_SQL: &[&[u8]] = &[
    b"SET a.b = 1",
    b"SET LOCAL a.b = 2; RESET ALL",
    b"LISTEN c; UNLISTEN *",
    b"DISCARD ALL",
    b"PREPARE q AS SELECT 1",
    b"DEALLOCATE q",
    b"SELECT dolt_checkout('-b', 'x'); USE d",
    b"ROLLBACK TO SAVEPOINT s",
    b"SELECT 1",
    b"BEGIN",
    b"COMMIT",
    b"ROLLBACK",
    b"INSERT INTO t VALUES (1)",
    b"SELECT dolt_commit('-Am', 'm')",
    b"CALL DOLT_BRANCH('b')",
    b"",
];

/// Command tags a server answers with in the tracker target.
const TRACKER_TAGS: &[&[u8]] = &[
    b"SET",
    b"PREPARE",
    b"SELECT 1",
    b"INSERT 0 1",
    b"UPDATE 2",
    b"DELETE 0",
    b"BEGIN",
    b"START TRANSACTION",
    b"COMMIT",
    b"ROLLBACK",
    b"COPY 3",
    b"CREATE TABLE",
    b"",
];

/// The transaction tracker fed by both sides (`fuzz_targets/tracker.rs`): each input byte picks
/// the next message of a conversation (client requests, server answers, the gate's in-flight
/// mark, or arbitrary bytes), so the fuzzer explores orders a real server and client produce and
/// orders they do not. After every message: nothing panicked; write commits never exceed commits;
/// counts only grow, by at most one per server message; a ReadyForQuery answers one request; and
/// the tracker is at a boundary right after an idle ReadyForQuery that left nothing outstanding.
pub fn exercise_tracker(data: &[u8]) {
    use crate::protocol::tags;
    let mut tracker = Tracker::new();
    let mut tally = Tally::default();
    let mut model = TrackerModel::default();
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let before = tally;
        let (from_client, tag, body) = match next_step(op, &mut bytes) {
            Step::Message(from_client, tag, body) => (from_client, tag, body),
            Step::InFlight(in_flight) => {
                model.in_flight = in_flight;
                tracker.set_in_flight(in_flight);
                continue;
            }
        };
        let phase = tracker.phase();
        if from_client {
            tracker.client_message(tag, &body);
            // The model: which client messages open a batch, close it, or ask for an answer.
            match tag {
                tags::PARSE | tags::BIND | tags::EXECUTE | tags::DESCRIBE | tags::CLOSE => {
                    model.batch_open = true
                }
                tags::SYNC => model.batch_open = false,
                _ => {}
            }
            if matches!(tag, tags::QUERY | tags::SYNC | tags::FUNCTION_CALL) {
                model.pending += 1;
            }
        } else {
            tracker.server_message(tag, &body, &mut tally);
            if tag == tags::READY_FOR_QUERY && phase == Phase::Startup {
                model.pending = 0;
            } else if tag == tags::READY_FOR_QUERY {
                model.pending = model.pending.saturating_sub(1);
            }
        }
        assert_eq!(tracker.pending(), model.pending);
        assert!(tally.write_commits <= tally.commits);
        assert!(tally.commits >= before.commits && tally.rollbacks >= before.rollbacks);
        let counted = (tally.commits - before.commits) + (tally.rollbacks - before.rollbacks);
        let limit = if from_client { 0 } else { 2 };
        assert!(counted <= limit, "{counted} counted for one message");
        if !from_client && tag == tags::READY_FOR_QUERY && body.len() == 1 {
            let idle = body == b"I";
            let expected = idle && model.pending == 0 && !model.batch_open && !model.in_flight;
            assert_eq!(tracker.at_boundary(), expected);
        }
    }
}

/// One step of a generated conversation.
enum Step {
    /// A message: from the client (else the server), its tag and body.
    Message(bool, u8, Vec<u8>),
    /// The gate marks a batch in flight (or done).
    InFlight(bool),
}

/// The next step of a conversation, chosen by `op` and the bytes after it: requests a client
/// sends, answers a server gives, or arbitrary bytes under an arbitrary tag.
fn next_step(op: u8, bytes: &mut impl Iterator<Item = u8>) -> Step {
    use crate::protocol::tags;
    let pick =
        |list: &[&'static [u8]], b: Option<u8>| list[usize::from(b.unwrap_or(0)) % list.len()];
    let arg = bytes.next();
    let named = |b: Option<u8>| -> Vec<u8> {
        let names: [&[u8]; 3] = [b"", b"s1", b"s2"];
        names[usize::from(b.unwrap_or(0)) % 3].to_vec()
    };
    let (from_client, tag, body): (bool, u8, Vec<u8>) = match op % 20 {
        0 => (true, tags::QUERY, nul(&[pick(TRACKER_SQL, arg)])),
        1 => (
            true,
            tags::PARSE,
            nul(&[&named(arg), pick(TRACKER_SQL, arg.map(|a| a >> 2))]),
        ),
        2 => (true, tags::BIND, nul(&[b"", &named(arg)])),
        3 => (true, tags::EXECUTE, nul(&[b""])),
        4 => (true, tags::SYNC, Vec::new()),
        5 => (
            true,
            tags::CLOSE,
            [&b"S"[..], &nul(&[&named(arg)])].concat(),
        ),
        6 => (true, tags::FUNCTION_CALL, vec![0; 4]),
        7 => (
            false,
            tags::COMMAND_COMPLETE,
            nul(&[pick(TRACKER_TAGS, arg)]),
        ),
        8 => (false, tags::ERROR_RESPONSE, b"SERROR\0C42P01\0\0".to_vec()),
        9 => (false, tags::READY_FOR_QUERY, b"I".to_vec()),
        10 => (false, tags::READY_FOR_QUERY, b"T".to_vec()),
        11 => (false, tags::READY_FOR_QUERY, b"E".to_vec()),
        12 => (false, tags::COPY_IN_RESPONSE, vec![0, 0, 0]),
        13 => (false, tags::PORTAL_SUSPENDED, Vec::new()),
        14 => return Step::InFlight(arg.unwrap_or(0) & 1 == 1),
        15 => (false, b'1', Vec::new()),
        16 => (false, b'3', Vec::new()),
        17 => (false, tags::EMPTY_QUERY_RESPONSE, Vec::new()),
        _ => {
            let len = usize::from(arg.unwrap_or(0) % 8);
            let body: Vec<u8> = bytes.take(len).collect();
            (op & 0x80 == 0, op >> 4 | 0x40, body)
        }
    };
    Step::Message(from_client, tag, body)
}

/// The session-state tracker fed by both sides (`fuzz_targets/replay.rs`), with conversations
/// made as for [`exercise_tracker`]. Nothing panics; each key and each prepared name is held
/// once; and the replay plan is well-framed protocol whose requests (Query and Sync messages)
/// are as many as it says. The same holds after the session's settings were read back, which
/// leaves no setting in doubt by name.
pub fn exercise_replay(data: &[u8]) {
    use crate::replay::SessionState;
    let mut state = SessionState::new();
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        if let Step::Message(from_client, tag, body) = next_step(op, &mut bytes) {
            if from_client {
                state.client_message(tag, &body);
            } else {
                state.server_message(tag, &body);
            }
        }
    }
    check_replayable(state.replayable());
    use crate::replay::readback::{Kind, Row};
    let read = state
        .readback_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| Row {
            name: name.to_uppercase(),
            value: (i % 4 != 3).then(|| format!("v'{name}\\")),
            kind: [Kind::Changed, Kind::Same, Kind::Named, Kind::Named][i % 4],
        })
        .collect();
    state.settings_read(read);
    assert!(
        state
            .doubt()
            .is_none_or(|d| d.names.is_empty() && d.unnamed),
        "a named doubt left after the read-back"
    );
    check_replayable(state.replayable());
}

/// Keys and prepared names held once, and a plan of whole messages counted right.
fn check_replayable(replayable: &crate::replay::Replayable) {
    use crate::replay::plan;
    for (i, (key, _)) in replayable.statements.iter().enumerate() {
        assert!(
            !replayable.statements[..i].iter().any(|(k, _)| k == key),
            "{key:?} twice"
        );
    }
    for (i, (name, _)) in replayable.parsed.iter().enumerate() {
        assert!(!name.is_empty(), "the unnamed statement kept");
        assert!(
            !replayable.parsed[..i].iter().any(|(n, _)| n == name),
            "{name:?} twice"
        );
    }
    let plan = plan::build(replayable);
    let mut scanner = Scanner::new(u32::MAX);
    let mut requests = 0;
    let scanned = scanner.scan(&plan.messages, |seen| {
        if let Seen::Whole(m) = seen {
            requests += usize::from(matches!(m.tag, b'Q' | b'S'));
        }
    });
    assert_eq!(
        scanned.ok(),
        Some(plan.messages.len()),
        "plan not whole messages"
    );
    assert_eq!(requests, plan.requests);
}

/// What the tracker target expects of the tracker, kept by hand beside it.
#[derive(Default)]
struct TrackerModel {
    pending: usize,
    batch_open: bool,
    in_flight: bool,
}

fn nul(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
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
    fn admin_corpus_replays_cleanly() {
        replay("admin", super::exercise_admin);
    }

    #[test]
    fn console_corpus_replays_cleanly() {
        replay("console", super::exercise_console);
    }

    #[test]
    fn handover_corpus_replays_cleanly() {
        replay("handover", super::exercise_handover);
    }

    #[test]
    fn config_corpus_replays_cleanly() {
        replay("config", super::exercise_config);
    }

    #[test]
    fn tracker_corpus_replays_cleanly() {
        replay("tracker", super::exercise_tracker);
    }

    #[test]
    fn replay_corpus_replays_cleanly() {
        replay("replay", super::exercise_replay);
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
