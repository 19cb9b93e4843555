//! Exact transaction accounting for one session, driven by the messages both sides send.
//!
//! The client side tells which requests are outstanding (each Query, Sync and FunctionCall is
//! answered by exactly one ReadyForQuery) and whether a request names a writing Dolt procedure.
//! The server side tells what happened: CommandComplete tags, errors, and the transaction status
//! in ReadyForQuery. From these the tracker counts, as docs/design.md defines them:
//! - a **commit** for an explicit block whose COMMIT/END answered `COMMIT`, and for every implicit
//!   transaction (simple Query, or extended batch up to Sync) that ran a statement and ended at
//!   `I` with no error;
//! - a **rollback** for an explicit ROLLBACK, a COMMIT answered `ROLLBACK`, and an implicit
//!   transaction that failed;
//! - a **write commit** for a commit that changed data or schema.
//!
//! Pure: no IO, no clock. Every transition is unit-tested in `tests.rs`.

pub mod classify;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use crate::protocol::backend::{self, TxnStatus};
use crate::protocol::tags;

/// What the tracker counted while handling messages; the session adds it to the shared counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub commits: u64,
    pub rollbacks: u64,
    pub write_commits: u64,
}

impl Tally {
    fn commit(&mut self, wrote: bool) {
        self.commits += 1;
        self.write_commits += wrote as u64;
    }
}

/// A request the server has not answered with ReadyForQuery yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    /// The request's text names a writing Dolt procedure.
    dolt_write: bool,
}

/// Statements seen since the last ReadyForQuery outside an explicit block.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Implicit {
    ran: bool,
    wrote: bool,
    failed: bool,
}

/// An explicit transaction block (BEGIN … COMMIT/ROLLBACK).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Explicit {
    wrote: bool,
    failed: bool,
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the first ReadyForQuery: authentication and startup.
    Startup,
    /// Ready for queries.
    Ready,
}

/// Per-session transaction state.
#[derive(Debug, Clone)]
pub struct Tracker {
    phase: Phase,
    status: TxnStatus,
    pending: VecDeque<Request>,
    /// Dolt-write flag of the extended-protocol batch being sent (before its Sync).
    batch_dolt_write: bool,
    /// Named prepared statements whose text calls a writing Dolt procedure.
    dolt_write_statements: Vec<Vec<u8>>,
    explicit: Option<Explicit>,
    implicit: Implicit,
    /// A CopyInResponse was seen since the last CommandComplete: the next `COPY n` wrote rows.
    copy_in: bool,
    /// Extended-protocol messages were sent and their Sync has not been yet.
    batch_open: bool,
    /// The gate admitted a batch from the client that is still being forwarded.
    in_flight: bool,
    /// A request was admitted after login.
    ran_request: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            phase: Phase::Startup,
            status: TxnStatus::Idle,
            pending: VecDeque::new(),
            batch_dolt_write: false,
            dolt_write_statements: Vec::new(),
            explicit: None,
            implicit: Implicit::default(),
            copy_in: false,
            batch_open: false,
            in_flight: false,
            ran_request: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The status of the last ReadyForQuery.
    pub fn status(&self) -> TxnStatus {
        self.status
    }

    /// Requests sent and not yet answered by ReadyForQuery.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// At a boundary: ready, every request answered, no transaction open, no extended batch
    /// half sent, nothing being forwarded.
    pub fn at_boundary(&self) -> bool {
        self.phase == Phase::Ready
            && self.pending.is_empty()
            && self.status == TxnStatus::Idle
            && !self.batch_open
            && !self.in_flight
    }

    /// Nothing a window must wait for: at a boundary, or still logging in (its first query
    /// will be held).
    pub fn quiescent(&self) -> bool {
        self.phase == Phase::Startup && !self.in_flight || self.at_boundary()
    }

    /// Whether a request was admitted since login.
    pub fn ran_a_request(&self) -> bool {
        self.ran_request
    }

    /// Marks a client batch as admitted (true) or fully forwarded (false).
    pub fn set_in_flight(&mut self, in_flight: bool) {
        self.in_flight = in_flight;
        self.ran_request |= in_flight && self.phase == Phase::Ready;
    }

    /// True if a message of this tag from the client matters to the tracker.
    pub fn wants_client(tag: u8) -> bool {
        matches!(
            tag,
            tags::QUERY
                | tags::PARSE
                | tags::BIND
                | tags::SYNC
                | tags::FUNCTION_CALL
                | tags::EXECUTE
                | tags::DESCRIBE
                | tags::CLOSE
        )
    }

    /// True if a message of this tag from the server matters to the tracker.
    pub fn wants_server(tag: u8) -> bool {
        matches!(
            tag,
            tags::READY_FOR_QUERY
                | tags::COMMAND_COMPLETE
                | tags::ERROR_RESPONSE
                | tags::COPY_IN_RESPONSE
                | tags::PORTAL_SUSPENDED
        )
    }

    /// Handles one message from the client, before it is forwarded.
    pub fn client_message(&mut self, tag: u8, body: &[u8]) {
        match tag {
            tags::QUERY => self.pending.push_back(Request {
                dolt_write: classify::calls_writing_procedure(body),
            }),
            tags::PARSE => {
                self.batch_open = true;
                self.parse(body)
            }
            tags::BIND => {
                self.batch_open = true;
                self.bind(body)
            }
            tags::EXECUTE | tags::DESCRIBE => self.batch_open = true,
            tags::CLOSE => {
                self.batch_open = true;
                // Close of a statement ('S' name): forget it if it was a writing one.
                if let Some((b'S', name)) = body.split_first() {
                    let name = name.strip_suffix(&[0]).unwrap_or(name);
                    self.dolt_write_statements.retain(|n| n != name);
                }
            }
            tags::SYNC | tags::FUNCTION_CALL => {
                self.batch_open &= tag != tags::SYNC;
                self.pending.push_back(Request {
                    dolt_write: std::mem::take(&mut self.batch_dolt_write),
                });
            }
            _ => {}
        }
    }

    /// Parse: `name\0 query\0 ...`. The unnamed statement is used by the Bind that follows.
    fn parse(&mut self, body: &[u8]) {
        let mut parts = body.splitn(3, |b| *b == 0);
        let (Some(name), Some(query)) = (parts.next(), parts.next()) else {
            return;
        };
        let writes = classify::calls_writing_procedure(query);
        self.dolt_write_statements.retain(|n| n != name);
        if writes {
            self.dolt_write_statements.push(name.to_vec());
        }
    }

    /// Bind: `portal\0 statement\0 ...`. Binding a writing statement marks the batch.
    fn bind(&mut self, body: &[u8]) {
        let mut parts = body.splitn(3, |b| *b == 0);
        let (Some(_portal), Some(statement)) = (parts.next(), parts.next()) else {
            return;
        };
        if self.dolt_write_statements.iter().any(|n| n == statement) {
            self.batch_dolt_write = true;
        }
    }

    /// Handles one message from the server, before it is forwarded; counts into `tally`.
    pub fn server_message(&mut self, tag: u8, body: &[u8], tally: &mut Tally) {
        match tag {
            tags::COMMAND_COMPLETE => self.command_complete(backend::command_tag(body), tally),
            tags::PORTAL_SUSPENDED => self.statement_ran(false),
            tags::COPY_IN_RESPONSE => self.copy_in = true,
            tags::ERROR_RESPONSE if self.phase == Phase::Ready => self.error(),
            tags::READY_FOR_QUERY => {
                if let Some(status) = backend::ready_status(body) {
                    self.ready(status, tally);
                }
            }
            _ => {}
        }
    }

    fn command_complete(&mut self, tag: &[u8], tally: &mut Tally) {
        let copy_in = std::mem::take(&mut self.copy_in);
        match tag {
            b"BEGIN" | b"START TRANSACTION" => {
                if self.explicit.is_none() {
                    // Statements before BEGIN in the same request join the block.
                    let before = std::mem::take(&mut self.implicit);
                    self.explicit = Some(Explicit {
                        wrote: before.wrote,
                        failed: false,
                    });
                }
            }
            b"COMMIT" if self.explicit.is_some() => {
                let block = self.explicit.take().unwrap_or_default();
                tally.commit(block.wrote);
            }
            b"ROLLBACK" if self.explicit.is_some() => {
                self.explicit = None;
                tally.rollbacks += 1;
            }
            // COMMIT or ROLLBACK with no transaction open: the server only warns; nothing ends.
            b"COMMIT" | b"ROLLBACK" => {}
            _ => {
                let wrote = classify::is_write_tag(tag) || (copy_in && classify::is_copy_tag(tag));
                self.statement_ran(wrote);
            }
        }
    }

    fn statement_ran(&mut self, wrote: bool) {
        let wrote = wrote || self.pending.front().is_some_and(|r| r.dolt_write);
        match &mut self.explicit {
            Some(block) => block.wrote |= wrote,
            None => {
                self.implicit.ran = true;
                self.implicit.wrote |= wrote;
            }
        }
    }

    fn error(&mut self) {
        self.copy_in = false;
        match &mut self.explicit {
            Some(block) => block.failed = true,
            None => self.implicit.failed = true,
        }
    }

    fn ready(&mut self, status: TxnStatus, tally: &mut Tally) {
        self.status = status;
        if self.phase == Phase::Startup {
            self.phase = Phase::Ready;
            self.pending.clear();
            return;
        }
        self.pending.pop_front();
        let implicit = std::mem::take(&mut self.implicit);
        match status {
            TxnStatus::Idle => {
                if let Some(block) = self.explicit.take() {
                    // The block ended without a COMMIT/ROLLBACK tag (e.g. COMMIT failed).
                    if block.failed {
                        tally.rollbacks += 1;
                    } else {
                        tally.commit(block.wrote);
                    }
                }
                if implicit.failed {
                    tally.rollbacks += 1;
                } else if implicit.ran {
                    tally.commit(implicit.wrote);
                }
            }
            TxnStatus::InTransaction | TxnStatus::Failed => {
                let block = self.explicit.get_or_insert_with(Explicit::default);
                block.wrote |= implicit.wrote;
                block.failed |= status == TxnStatus::Failed;
            }
        }
    }
}
