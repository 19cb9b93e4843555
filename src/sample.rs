//! Sample protocol traffic for the benchmarks (`benches/framing.rs`) and the allocation tests
//! (`tests/allocations.rs`); the proxy itself never uses it.
//!
//! Builders return whole messages (tag, length, body) as owned bytes, and the parts of a typical
//! conversation (a simple SELECT, an explicit transaction, an extended-protocol SELECT, a failing
//! query) as `(Side, message)` pairs in the order they cross the proxy, so that each caller
//! composes its own mix from the same pieces. [`track`] replays such a conversation into a
//! transaction tracker as the session's observers do.

use crate::protocol::tags;
use crate::txn::{Tally, Tracker};

/// Which side sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Messages in the order they cross the proxy, each with the side that sent it.
pub type Conversation = Vec<(Side, Vec<u8>)>;

/// A message on the wire: tag, length, body made of `parts`.
pub fn message(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    let mut out = vec![tag];
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Frontend messages.

pub fn query(sql: &str) -> Vec<u8> {
    message(tags::QUERY, &[sql.as_bytes(), b"\0"])
}

/// Parse with one `int4` parameter.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    message(
        tags::PARSE,
        &[
            name.as_bytes(),
            b"\0",
            sql.as_bytes(),
            b"\0",
            &[0, 1, 0, 0, 0, 23],
        ],
    )
}

/// Bind with one parameter, `value` in text format, and default result formats.
pub fn bind(portal: &str, statement: &str, value: &[u8]) -> Vec<u8> {
    message(
        tags::BIND,
        &[
            portal.as_bytes(),
            b"\0",
            statement.as_bytes(),
            b"\0",
            &[0, 0, 0, 1],
            &(value.len() as u32).to_be_bytes(),
            value,
            &[0, 0],
        ],
    )
}

pub fn describe_portal() -> Vec<u8> {
    message(tags::DESCRIBE, &[b"P\0"])
}

/// Execute the unnamed portal, no row limit.
pub fn execute() -> Vec<u8> {
    message(tags::EXECUTE, &[b"\0", &[0, 0, 0, 0]])
}

pub fn sync() -> Vec<u8> {
    message(tags::SYNC, &[])
}

// ---------------------------------------------------------------------------------------------
// Backend messages.

pub fn parse_complete() -> Vec<u8> {
    message(b'1', &[])
}

pub fn bind_complete() -> Vec<u8> {
    message(b'2', &[])
}

/// RowDescription of `columns` text columns.
pub fn row_description(columns: &[&str]) -> Vec<u8> {
    let mut body = (columns.len() as u16).to_be_bytes().to_vec();
    for name in columns {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&16384u32.to_be_bytes()); // table oid
        body.extend_from_slice(&1u16.to_be_bytes()); // attribute number
        body.extend_from_slice(&25u32.to_be_bytes()); // type oid: text
        body.extend_from_slice(&(-1i16).to_be_bytes()); // type length
        body.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        body.extend_from_slice(&0u16.to_be_bytes()); // format: text
    }
    message(b'T', &[&body])
}

pub fn data_row(values: &[&[u8]]) -> Vec<u8> {
    let mut body = (values.len() as u16).to_be_bytes().to_vec();
    for value in values {
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value);
    }
    message(tags::DATA_ROW, &[&body])
}

pub fn complete(tag: &str) -> Vec<u8> {
    message(tags::COMMAND_COMPLETE, &[tag.as_bytes(), b"\0"])
}

pub fn ready(status: u8) -> Vec<u8> {
    message(tags::READY_FOR_QUERY, &[&[status]])
}

/// ErrorResponse with `fields`, each its type byte then its value (`"C22012"`).
pub fn error_response(fields: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for field in fields {
        body.extend_from_slice(field.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(tags::ERROR_RESPONSE, &[&body])
}

// ---------------------------------------------------------------------------------------------
// Parts of a conversation.

/// A simple query answered by CommandComplete `tag` and ReadyForQuery `status`.
pub fn simple(sql: &str, tag: &str, status: u8) -> Conversation {
    vec![
        (Side::Client, query(sql)),
        (Side::Server, complete(tag)),
        (Side::Server, ready(status)),
    ]
}

/// A simple-query SELECT outside a transaction: `columns`, then the DataRow messages `rows`.
pub fn select(
    sql: &str,
    columns: &[&str],
    rows: impl IntoIterator<Item = Vec<u8>>,
) -> Conversation {
    let mut out = vec![
        (Side::Client, query(sql)),
        (Side::Server, row_description(columns)),
    ];
    out.extend(rows.into_iter().map(|row| (Side::Server, row)));
    let selected = out.len() - 2;
    out.push((Side::Server, complete(&format!("SELECT {selected}"))));
    out.push((Side::Server, ready(b'I')));
    out
}

/// An extended-protocol SELECT of one text `column` outside a transaction: the unnamed statement
/// parsed, bound to `param`, described and executed, answered with the single row `value`.
pub fn prepared_select(sql: &str, param: &[u8], column: &str, value: &[u8]) -> Conversation {
    vec![
        (Side::Client, parse("", sql)),
        (Side::Client, bind("", "", param)),
        (Side::Client, describe_portal()),
        (Side::Client, execute()),
        (Side::Client, sync()),
        (Side::Server, parse_complete()),
        (Side::Server, bind_complete()),
        (Side::Server, row_description(&[column])),
        (Side::Server, data_row(&[value])),
        (Side::Server, complete("SELECT 1")),
        (Side::Server, ready(b'I')),
    ]
}

/// An explicit transaction: BEGIN, the one-row UPDATE `sql`, COMMIT.
pub fn transaction(sql: &str) -> Conversation {
    [
        simple("BEGIN", "BEGIN", b'T'),
        simple(sql, "UPDATE 1", b'T'),
        simple("COMMIT", "COMMIT", b'I'),
    ]
    .concat()
}

/// A simple query outside a transaction that fails with an ErrorResponse of `fields`.
pub fn failing(sql: &str, fields: &[&str]) -> Conversation {
    vec![
        (Side::Client, query(sql)),
        (Side::Server, error_response(fields)),
        (Side::Server, ready(b'I')),
    ]
}

/// One side's bytes of `conversation`, and how many messages they are.
pub fn side_of(conversation: &[(Side, Vec<u8>)], side: Side) -> (Vec<u8>, usize) {
    let messages: Vec<&[u8]> = conversation
        .iter()
        .filter(|(s, _)| *s == side)
        .map(|(_, m)| m.as_slice())
        .collect();
    (messages.concat(), messages.len())
}

/// Feeds `rounds` repetitions of `conversation` to `tracker` in order, each message to the side's
/// handler if the tracker wants its tag, as the session's observers do; returns what it counted.
pub fn track(tracker: &mut Tracker, conversation: &[(Side, Vec<u8>)], rounds: usize) -> Tally {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{Scanner, Seen};

    /// The parts frame as whole messages, in the order and with the tags of a real conversation.
    #[test]
    fn parts_frame_as_whole_messages() {
        let conversation = [
            select(
                "SELECT v FROM t",
                &["v"],
                [data_row(&[b"a"]), data_row(&[b"b"])],
            ),
            prepared_select("SELECT v FROM t WHERE id = $1", b"7", "v", b"seven"),
            transaction("UPDATE t SET v = 'x' WHERE id = 1"),
            failing("SELECT 1/0", &["SERROR", "C22012", "Mdivision by zero"]),
        ]
        .concat();
        for side in [Side::Client, Side::Server] {
            let (bytes, messages) = side_of(&conversation, side);
            let mut whole = 0;
            let framed = Scanner::new(1 << 20)
                .scan(&bytes, |seen| {
                    whole += matches!(seen, Seen::Whole(_)) as usize
                })
                .unwrap();
            assert_eq!((framed, whole), (bytes.len(), messages));
        }
        let sent: Vec<u8> = conversation.iter().map(|(_, m)| m[0]).collect();
        assert_eq!(sent, b"QTDDCZPBDES12TDCZQCZQCZQCZQEZ");
        assert_eq!(complete("SELECT 2"), b"C\0\0\0\x0dSELECT 2\0");
    }

    #[test]
    fn tracker_counts_the_explicit_transaction() {
        let mut tracker = Tracker::new();
        tracker.server_message(b'Z', b"I", &mut Tally::default());
        let tally = track(&mut tracker, &transaction("UPDATE t SET v = 1"), 2);
        assert_eq!((tally.commits, tally.write_commits), (2, 2));
        assert!(tracker.at_boundary());
    }
}
