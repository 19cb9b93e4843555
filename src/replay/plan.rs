//! The messages that give a new upstream connection a session's state, and the check of the
//! server's answers to them.

use bytes::{BufMut, BytesMut};

use super::readback::put_message;
use super::sql;
use super::state::{Key, Replayable};
use crate::protocol::tags;

/// What to send after login, and how many ReadyForQuery answers end the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub messages: BytesMut,
    pub requests: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.requests == 0
    }
}

/// One simple Query per statement (so that one failing does not skip the others silently: the
/// replay stops at the first error anyway), then every named Parse and one Sync.
pub fn build(state: &Replayable) -> Plan {
    let mut messages = BytesMut::new();
    let mut requests = 0;
    for (key, text) in &state.statements {
        let text = match key {
            Key::Branch => match checkout_again(text) {
                Some(text) => text,
                None => continue,
            },
            _ => text.clone(),
        };
        put_message(&mut messages, tags::QUERY, |m| {
            m.put_slice(text.as_bytes());
            m.put_u8(0);
        });
        requests += 1;
    }
    if !state.parsed.is_empty() {
        for (_, parse) in &state.parsed {
            put_message(&mut messages, tags::PARSE, |m| m.put_slice(parse));
        }
        put_message(&mut messages, tags::SYNC, |_| {});
        requests += 1;
    }
    Plan { messages, requests }
}

/// The statement that puts a new connection on the branch a `dolt_checkout` call switched to:
/// `dolt_checkout('-b', 'new')` made the branch, so the replay only switches to it. The call
/// switches only if the name is a branch: `dolt_checkout` of a table name restores the table
/// instead, which must not run again. `None` if no name can be read from the call.
pub fn checkout_again(call: &str) -> Option<String> {
    let name = sql::string_literals(call)
        .into_iter()
        .find(|arg| !arg.starts_with('-'))?;
    let quoted = name.replace('\'', "''");
    Some(format!(
        "SELECT dolt_checkout('{quoted}') FROM dolt_branches WHERE name = '{quoted}'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkouts_are_replayed_as_guarded_switches() {
        assert_eq!(
            checkout_again("SELECT dolt_checkout('-b', 'feat')").unwrap(),
            "SELECT dolt_checkout('feat') FROM dolt_branches WHERE name = 'feat'"
        );
        assert_eq!(
            checkout_again("select DOLT_CHECKOUT('it''s')").unwrap(),
            "SELECT dolt_checkout('it''s') FROM dolt_branches WHERE name = 'it''s'"
        );
        assert_eq!(checkout_again("SELECT dolt_checkout($1)"), None);
    }

    #[test]
    fn an_empty_state_needs_no_replay() {
        assert!(build(&Replayable::default()).is_empty());
    }
}
