//! doltgres-sidecar: a PostgreSQL-wire proxy that runs beside a Doltgres server.
//!
//! # Layout
//! Read in this order, bottom to top: each group imports only from the groups before it (one
//! exception: `config` takes the off-site section's type from [`offsite`], which itself needs
//! only `catalog` and `metrics`), and no modules import one another in a cycle
//! (`proxy-tests/tests/all/import_cycles.rs` fails on one).
//!
//! **Pure types and parsers**:
//! - [`protocol`]: the wire protocol: framing with a maximum length, startup packets, the few
//!   backend messages the proxy peeks at, and the errors it originates.
//! - [`txn`]: exact transaction accounting per session; [`replay`]: the session-state tracker
//!   and the replay on a new server connection.
//! - [`config`]: every setting's type, defaults and validation (`[server]`, `[backup]`, the
//!   choices, secret files and masking, the log filter); [`redact`]: passwords out of any text;
//!   [`ports`]: a free loopback port (managed mode's, and the servers the sidecar starts).
//!
//! **Resources**:
//! - [`tls`]: TLS towards clients and the upstream; [`halves`]: a connection split for the relay;
//!   [`upstream`]: the server and every way of connecting to it (relay, cancel, SQL, probe).
//! - [`registry`]: the open sessions (status, cancel routing by the keys clients were given);
//!   [`metrics`]: Prometheus metrics; [`heap`]: the bytes the process keeps allocated;
//!   [`pause`]: the pause between two rounds of a background loop.
//! - [`auth`]: the proxy's own authentication: SCRAM-SHA-256 messages and key arithmetic,
//!   verifiers, auth files, channel binding (pure), and the exchanges over a connection.
//! - [`gate`]: the quiesce gate that holds sessions at transaction boundaries; [`limits`]:
//!   connection limits; [`descriptors`]: how the open-file limit is shared out.
//! - [`control`]: server control (`external`, `managed` child process, operator `command`s),
//!   and the server's availability that sessions wait on; [`dirlock`]: who uses a server
//!   directory.
//! - [`catalog`]: the catalog of stop-and-copy entries (atomic entries, manifests, retention);
//!   [`offsite`]: copy entries replicated to S3-compatible object storage.
//! - [`verifier_store`]: where verifiers come from (auth file, auth query); [`logging`]: the
//!   process's log (text or JSON) and the filter a reload replaces.
//!
//! **State** held by `Shared`, apart from the tasks that drive it: [`state`] (the windows and
//! their records, the verifications, the operators' work, the hand-over).
//!
//! **[`shared::Shared`]**: what sessions, windows and admin requests share (no globals).
//!
//! **Orchestration**:
//! - [`server`]: the accept loop; [`accept`]: what it does when `accept` fails; [`shutdown`]:
//!   graceful shutdown (sessions end at their boundary, then the final backup and its
//!   verification).
//! - [`session`]: one client and its upstream connection: the startup phase
//!   ([`session::startup`]), with `auth = "proxy"` the login ([`session::login`]), one
//!   [`session::pump::Pump`] per direction; or the admin console ([`session::console`], the
//!   `doltgres_sidecar` database, with `pgwire`).
//! - [`window`]: backup windows (triggers, the push/sync/snapshot/copy actions); [`supervise`]:
//!   the crash supervisor of a managed server; [`verify`]: checking backups on a scratch
//!   Doltgres, and `verify_after`'s verifications in the background; [`restore`]: building a
//!   restored directory beside its target (through a scratch Doltgres for a URL) and putting it
//!   in place at once.
//! - [`reload`]: live reload (SIGHUP, `POST /reload`) and certificate rotation from disk;
//!   [`handover`]: upgrades without dropping clients.
//! - [`ops`]: what an operator can ask (status, backups, holds, windows, reload, verify,
//!   shutdown), whatever the transport; [`admin`]: the admin HTTP API over it.
//! - [`cli`]: the command line of the `doltgres-sidecar` binary; [`manual`]: its manual pages;
//!   [`errors`]: how it says what went wrong; [`client`]: the CLI's client of the HTTP API;
//!   [`local`]: the local commands (`restore`, `verify`).
//!
//! `docs/design.md` describes the architecture, the semantics and the interface contract.
//!
//! Data flows one way through each part: socket → pump (framing, peeks) → socket.

pub mod accept;
pub mod admin;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod descriptors;
pub mod dirlock;
pub mod errors;
#[cfg(any(test, feature = "test-support"))]
pub mod fuzzing;
pub mod gate;
pub mod halves;
pub mod handover;
pub mod heap;
pub mod limits;
pub mod local;
pub mod logging;
pub mod manual;
pub mod metrics;
pub mod offsite;
pub mod ops;
pub mod pause;
pub mod ports;
pub mod protocol;
pub mod redact;
pub mod registry;
pub mod reload;
pub mod replay;
pub mod restore;
#[cfg(any(test, feature = "test-support"))]
pub mod sample;
pub mod server;
pub mod session;
pub mod shared;
pub mod shutdown;
pub mod state;
pub mod supervise;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod txn;
pub mod upstream;
pub mod verifier_store;
pub mod verify;
pub mod window;
