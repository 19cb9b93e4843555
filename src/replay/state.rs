//! The session state a client has set, tracked from the messages both sides send, so that a new
//! upstream connection can be given the same state (see [`super::plan`]).
//!
//! Requests and their answers are matched in order: each simple-Query statement and each Execute
//! expects one completion (CommandComplete, EmptyQueryResponse or PortalSuspended), each Parse a
//! ParseComplete and each Close a CloseComplete; an ErrorResponse skips the rest of its request,
//! and ReadyForQuery ends it. A statement's effect counts only once it completed. On PostgreSQL a
//! SET counts only once its transaction committed (a rolled-back SET is undone by the server
//! too); Doltgres v1.2.0 keeps a SET even when its transaction rolls back, so there it counts at
//! once. The two are told apart by the login: PostgreSQL reports `session_authorization` in a
//! ParameterStatus, Doltgres does not (see docs/doltgres-notes.md). Prepared statements are not
//! transactional on either: they count once the server confirmed them.
//!
//! A `set_config` call leaves its setting in [`Doubt`], following its transaction like a SET;
//! a statement that fails counts too where SETs outlive failures (Doltgres), since the call may
//! have run before the failure. A later SET or RESET of the same setting, or a read of the
//! session's real values ([`SessionState::settings_read`]), settles it.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use super::doubt::Doubt;
use super::readback;
use super::set_config::{self, Target};
use super::sql::{self, Effect, Unreplayable};
use crate::protocol::backend::{self, TxnStatus};
use crate::protocol::{frontend, tags};

/// ParseComplete, CloseComplete (backend tags the tracker reads besides those in `tags`).
const PARSE_COMPLETE: u8 = b'1';
const CLOSE_COMPLETE: u8 = b'3';

/// The replayable part of a session, in the order it was set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayable {
    /// SQL statements to run again, in order: SETs (one per parameter, the latest), `USE`,
    /// `dolt_checkout` calls, `PREPARE`s.
    pub statements: Vec<(Key, String)>,
    /// Named prepared statements made with Parse: their name and the Parse body to send again.
    pub parsed: Vec<(Vec<u8>, Bytes)>,
}

/// What a replayed statement stands for; a later statement with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Setting(String),
    Database,
    Branch,
    Prepared(String),
}

/// A response the server owes, and what its arrival means.
#[derive(Debug, Clone)]
enum Expect {
    /// A completion for a statement with this effect (and text, to replay), and the settings its
    /// `set_config` calls may change.
    Completion(Effect, String, Doubt),
    /// ParseComplete for a Parse of this name (empty: the unnamed statement) and body.
    Parsed(Vec<u8>, Bytes),
    /// CloseComplete for a Close of this statement (`None`: a portal).
    Closed(Option<Vec<u8>>),
}

/// A statement made with Parse: its text and the `set_config` calls in it.
#[derive(Debug, Clone)]
struct Parsed {
    /// What executing it does to the session, and its text when that is kept (see
    /// [`kept_text`]).
    effect: Effect,
    text: String,
    calls: Vec<Target>,
}

/// A portal made with Bind: its statement, and the settings its `set_config` calls may change
/// (names passed as parameters read from the Bind).
#[derive(Debug, Clone)]
struct Portal {
    statement: Vec<u8>,
    doubt: Doubt,
}

/// What a transaction's end decides on (PostgreSQL): an effect, or settings in doubt.
#[derive(Debug, Clone)]
enum Staged {
    Effect(Effect, String),
    Doubt(Doubt),
}

/// Tracks one session's state. Feed it every client message before it is forwarded and every
/// server message before it is relayed.
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    /// The first ReadyForQuery has been seen (login is over).
    ready: bool,
    /// Expected answers, with the request (counted from 0) each belongs to.
    expected: VecDeque<(u64, Expect)>,
    /// Requests sent (Query, Sync, FunctionCall).
    sent: u64,
    /// Requests answered with ReadyForQuery.
    answered: u64,
    /// Named and unnamed statements parsed.
    statements: HashMap<Vec<u8>, Parsed>,
    /// Portals bound.
    portals: HashMap<Vec<u8>, Portal>,
    /// Effects that wait for their transaction to commit.
    staged: Vec<Staged>,
    /// An error happened in the current transaction.
    failed: bool,
    committed: Replayable,
    unreplayable: BTreeSet<Unreplayable>,
    /// Settings changed where the tracker could not follow.
    doubt: Doubt,
    /// SETs follow their transaction (PostgreSQL), rather than holding at once (Doltgres).
    transactional_sets: bool,
}

impl SessionState {
    /// A tracker for a session that is still logging in.
    pub fn new() -> SessionState {
        SessionState::default()
    }

    /// A tracker for a session whose login is over, on a server whose SETs follow their
    /// transaction (PostgreSQL) or not (Doltgres).
    pub fn ready(transactional_sets: bool) -> SessionState {
        SessionState {
            ready: true,
            transactional_sets,
            ..SessionState::default()
        }
    }

    /// What a new connection needs to be given.
    pub fn replayable(&self) -> &Replayable {
        &self.committed
    }

    /// The first kind of state that cannot be replayed, if the session holds any.
    pub fn unreplayable(&self) -> Option<Unreplayable> {
        self.unreplayable.first().copied()
    }

    /// The settings the session may have changed where the tracker could not follow, if any:
    /// a replay must not go on until they have been read from the server.
    pub fn doubt(&self) -> Option<&Doubt> {
        (!self.doubt.is_empty()).then_some(&self.doubt)
    }

    /// The settings to read by name from the session's connection (see [`readback`]): those
    /// its SETs changed and those in doubt, lowercased.
    pub fn readback_names(&self) -> Vec<String> {
        let tracked = self
            .committed
            .statements
            .iter()
            .filter_map(|(k, _)| match k {
                Key::Setting(name) if sql::is_real_setting(name) => Some(name.clone()),
                _ => None,
            });
        let names: BTreeSet<String> = tracked.chain(self.doubt.names.iter().cloned()).collect();
        names.into_iter().collect()
    }

    /// The session's settings as read from its own connection (see [`readback`]): a value a new
    /// connection would not start with becomes the statement that sets it again, in place of
    /// what was tracked; a setting a new connection starts with as it is needs nothing; one the
    /// server does not know keeps what was tracked. The settings in doubt by name are settled; a
    /// setting changed by a call that named it with an expression stays in doubt.
    pub fn settings_read(&mut self, rows: Vec<readback::Row>) {
        for (key, (name, value)) in readback::settle(rows) {
            if !sql::is_real_setting(&key) {
                continue;
            }
            match value {
                readback::Value::Set(value) => {
                    let text = readback::set_again(&name, &value);
                    self.committed.put_setting(key, text);
                }
                readback::Value::Fresh => {
                    self.committed.forget(|k| *k == Key::Setting(key.clone()))
                }
                readback::Value::Unknown => {}
            }
        }
        self.doubt.names.clear();
    }

    /// Handles one client message.
    pub fn client_message(&mut self, tag: u8, body: &[u8]) {
        if !self.ready {
            return;
        }
        match tag {
            tags::QUERY => {
                let text = cstr(body);
                for statement in sql::split_statements(&text) {
                    let effect = sql::classify(statement);
                    // No parameters in a simple Query: a `$n` name is an error, or unknown.
                    let doubt = Doubt::of_calls(&set_config::calls(statement), |_| None);
                    let text = kept_text(&effect, statement);
                    self.expect(Expect::Completion(effect, text, doubt));
                }
                self.sent += 1;
            }
            tags::PARSE => {
                let mut parts = body.splitn(3, |b| *b == 0);
                let (Some(name), Some(query)) = (parts.next(), parts.next()) else {
                    return;
                };
                let query = String::from_utf8_lossy(query);
                let effect = sql::classify(&query);
                let parsed = Parsed {
                    text: kept_text(&effect, &query),
                    calls: set_config::calls(&query),
                    effect,
                };
                self.statements.insert(name.to_vec(), parsed);
                // Only a named statement is kept for a replay (the unnamed one is not).
                let kept = match name.is_empty() {
                    true => Bytes::new(),
                    false => Bytes::copy_from_slice(body),
                };
                self.expect(Expect::Parsed(name.to_vec(), kept));
            }
            tags::BIND => {
                let mut parts = body.splitn(3, |b| *b == 0);
                if let (Some(portal), Some(statement)) = (parts.next(), parts.next()) {
                    let calls = self.statements.get(statement).map(|p| p.calls.as_slice());
                    let doubt = Doubt::of_calls(calls.unwrap_or_default(), |n| {
                        let value = frontend::bind_parameter(body, n)??;
                        let name = String::from_utf8(value.to_vec()).ok()?;
                        (!name.contains('\0')).then_some(name)
                    });
                    let statement = statement.to_vec();
                    self.portals
                        .insert(portal.to_vec(), Portal { statement, doubt });
                }
            }
            tags::EXECUTE => {
                let portal = body.split(|b| *b == 0).next().unwrap_or_default();
                let portal = self.portals.get(portal);
                let (effect, text) = portal
                    .and_then(|p| self.statements.get(&p.statement))
                    .map(|p| (p.effect.clone(), p.text.clone()))
                    .unwrap_or((Effect::None, String::new()));
                let doubt = portal.map(|p| p.doubt.clone()).unwrap_or_default();
                self.expect(Expect::Completion(effect, text, doubt));
            }
            tags::CLOSE => {
                let target = match body.split_first() {
                    Some((b'S', name)) => Some(name.strip_suffix(&[0]).unwrap_or(name).to_vec()),
                    _ => None,
                };
                self.expect(Expect::Closed(target));
            }
            tags::SYNC | tags::FUNCTION_CALL => self.sent += 1,
            _ => {}
        }
    }

    /// Handles one server message.
    pub fn server_message(&mut self, tag: u8, body: &[u8]) {
        if !self.ready {
            self.ready = tag == tags::READY_FOR_QUERY;
            if tag == tags::PARAMETER_STATUS && body.starts_with(b"session_authorization\0") {
                self.transactional_sets = true;
            }
            return;
        }
        match tag {
            tags::COMMAND_COMPLETE | tags::EMPTY_QUERY_RESPONSE | tags::PORTAL_SUSPENDED => {
                if let Some(Expect::Completion(effect, text, doubt)) =
                    self.take(|e| matches!(e, Expect::Completion(..)))
                {
                    let tag_text = if tag == tags::COMMAND_COMPLETE {
                        backend::command_tag(body)
                    } else {
                        b""
                    };
                    self.in_doubt(doubt);
                    self.completed(effect, text, tag_text);
                }
            }
            PARSE_COMPLETE => {
                if let Some(Expect::Parsed(name, parse)) =
                    self.take(|e| matches!(e, Expect::Parsed(..)))
                    && !name.is_empty()
                {
                    self.committed.parsed.retain(|(n, _)| *n != name);
                    self.committed.parsed.push((name, parse));
                }
            }
            CLOSE_COMPLETE => {
                if let Some(Expect::Closed(Some(name))) =
                    self.take(|e| matches!(e, Expect::Closed(..)))
                {
                    self.committed.parsed.retain(|(n, _)| *n != name);
                }
            }
            tags::ERROR_RESPONSE => {
                self.failed = true;
                let current = self.answered;
                // The statement that failed is the first one still owed an answer; its
                // set_config calls may have run before the failure.
                let failing = self
                    .expected
                    .iter()
                    .find(|(request, _)| *request == current);
                if let Some((_, Expect::Completion(_, _, doubt))) = failing {
                    let doubt = doubt.clone();
                    self.in_doubt(doubt);
                }
                self.expected.retain(|(request, _)| *request != current);
            }
            tags::READY_FOR_QUERY => {
                let current = self.answered;
                self.expected.retain(|(request, _)| *request != current);
                self.answered += 1;
                // Out of any transaction: what it staged is now in effect, unless it failed.
                if backend::ready_status(body) == Some(TxnStatus::Idle) {
                    let staged = std::mem::take(&mut self.staged);
                    if !std::mem::take(&mut self.failed) {
                        for change in staged {
                            match change {
                                Staged::Effect(effect, text) => self.apply(effect, text),
                                Staged::Doubt(doubt) => self.doubt.merge(doubt),
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn expect(&mut self, expect: Expect) {
        self.expected.push_back((self.sent, expect));
    }

    /// Removes and returns the first expected answer of the request being answered that `is`
    /// accepts.
    fn take(&mut self, is: impl Fn(&Expect) -> bool) -> Option<Expect> {
        let current = self.answered;
        let at = self
            .expected
            .iter()
            .position(|(request, e)| *request == current && is(e))?;
        self.expected.remove(at).map(|(_, e)| e)
    }

    /// Settings a statement's `set_config` calls may have changed: in doubt now, or once the
    /// transaction commits where settings follow it.
    fn in_doubt(&mut self, doubt: Doubt) {
        if doubt.is_empty() {
            return;
        }
        if self.transactional_sets {
            self.staged.push(Staged::Doubt(doubt));
        } else {
            self.doubt.merge(doubt);
        }
    }

    /// A statement completed with this tag.
    fn completed(&mut self, effect: Effect, text: String, tag: &[u8]) {
        // ROLLBACK ends the block and undoes its SETs; ROLLBACK TO SAVEPOINT has the same tag but
        // keeps the block (the SETs since the savepoint are not told apart from the rest: the
        // staged ones all stay). A COMMIT's effects apply at the ReadyForQuery that follows.
        if tag == b"ROLLBACK" {
            if !sql::rolls_back_to_savepoint(&text) {
                self.staged.clear();
            }
            // Either way the block is usable again: the error is undone.
            self.failed = false;
        }
        match effect {
            // Not transactional: they take effect now.
            Effect::Prepare(_) | Effect::Deallocate(_) | Effect::DeallocateAll => {
                self.apply(effect, text)
            }
            // Cannot run in a transaction block: applies now.
            Effect::DiscardAll | Effect::DiscardTemp => self.apply(effect, text),
            // Conservative: held from the moment the statement ran.
            Effect::Unreplayable(kind) => {
                self.unreplayable.insert(kind);
            }
            Effect::None => {}
            _ if self.transactional_sets => self.staged.push(Staged::Effect(effect, text)),
            _ => self.apply(effect, text),
        }
    }

    fn apply(&mut self, effect: Effect, text: String) {
        let state = &mut self.committed;
        match effect {
            // Setting names ignore case.
            Effect::Set(name) => {
                let name = name.to_lowercase();
                self.doubt.names.remove(&name);
                state.replace(Key::Setting(name), text)
            }
            Effect::Reset(name) => {
                let name = name.to_lowercase();
                self.doubt.names.remove(&name);
                state.forget(|k| *k == Key::Setting(name.clone()))
            }
            Effect::ResetAll => {
                self.doubt = Doubt::default();
                state.forget(|k| matches!(k, Key::Setting(_)))
            }
            Effect::Use => {
                // A new database: a branch checked out in the old one no longer applies.
                state.forget(|k| *k == Key::Branch);
                state.replace(Key::Database, text)
            }
            Effect::Checkout => state.replace(Key::Branch, text),
            Effect::Prepare(name) => state.replace(Key::Prepared(name), text),
            Effect::Deallocate(name) => {
                state.forget(|k| *k == Key::Prepared(name.clone()));
                state.parsed.retain(|(n, _)| *n != name.as_bytes());
            }
            Effect::DeallocateAll => {
                state.forget(|k| matches!(k, Key::Prepared(_)));
                state.parsed.clear();
            }
            Effect::DiscardAll => {
                *state = Replayable::default();
                self.unreplayable.clear();
                self.doubt = Doubt::default();
            }
            Effect::DiscardTemp => {
                self.unreplayable.remove(&Unreplayable::TempTable);
            }
            Effect::UnlistenAll => {
                self.unreplayable.remove(&Unreplayable::Listen);
            }
            Effect::None | Effect::Unreplayable(_) => {}
        }
    }
}

impl Replayable {
    /// Puts `text` last under `key`, dropping what the key held.
    fn replace(&mut self, key: Key, text: String) {
        self.statements.retain(|(k, _)| *k != key);
        self.statements.push((key, text));
    }

    fn forget(&mut self, gone: impl Fn(&Key) -> bool) {
        self.statements.retain(|(k, _)| !gone(k));
    }

    /// Puts `text` under the setting `name` where the setting was, or else after the other
    /// settings: before `USE`, the branch and `PREPARE`, which may depend on settings
    /// (`search_path`).
    fn put_setting(&mut self, name: String, text: String) {
        let key = Key::Setting(name);
        if let Some(at) = self.statements.iter().position(|(k, _)| *k == key) {
            self.statements[at].1 = text;
            return;
        }
        let at = self
            .statements
            .iter()
            .position(|(k, _)| !matches!(k, Key::Setting(_)))
            .unwrap_or(self.statements.len());
        self.statements.insert(at, (key, text));
    }
}

/// A NUL-terminated string field, lossily decoded.
/// The NUL-terminated text at the start of `body`, borrowed when it is valid UTF-8.
fn cstr(body: &[u8]) -> std::borrow::Cow<'_, str> {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end])
}

/// The text of a statement as kept until its answer: only when what it does must be replayed
/// or told apart by its text (`ROLLBACK TO SAVEPOINT`); otherwise nothing, so that a large
/// query is not copied (it is already buffered once to be relayed).
fn kept_text(effect: &Effect, statement: &str) -> String {
    let needed = !matches!(effect, Effect::None) || sql::rolls_back_to_savepoint(statement);
    match needed {
        true => statement.trim().to_string(),
        false => String::new(),
    }
}
