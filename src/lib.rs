//! doltgres-sidecar: a PostgreSQL-wire proxy that runs beside a Doltgres server.
//!
//! # Layout
//! Read in this order:
//! - [`protocol`]: the wire protocol, pure (no IO): framing with a maximum length, startup
//!   packets, the few backend messages the proxy peeks at, and the errors it originates.
//! - [`config`]: settings, their defaults and validation; [`reload`]: live reload (SIGHUP,
//!   `POST /reload`) and certificate rotation from disk.
//! - [`server`]: the accept loop; [`shutdown`]: graceful shutdown (sessions end at their
//!   boundary, then the final backup and its verification); [`shared::Shared`] is the state
//!   sessions share (no globals). [`accept`]: what the accept loops do when `accept` fails;
//!   [`descriptors`]: how the open-file limit is shared out (sessions, admin connections, a
//!   reserve).
//! - [`session`]: one client and its upstream connection: the startup phase
//!   ([`session::startup`]), with `auth = "proxy"` the login ([`session::login`]), and one
//!   [`session::pump::Pump`] per direction.
//! - [`auth`]: the proxy's own authentication: SCRAM-SHA-256 messages and key arithmetic (pure),
//!   verifiers, auth files, channel binding, and where verifiers come from.
//! - [`txn`]: exact transaction accounting per session (pure state machine).
//! - [`registry`]: the open sessions (status, cancel routing by the keys clients were given);
//!   [`metrics`]: Prometheus metrics; [`heap`]: the bytes the process keeps allocated.
//! - [`gate`]: the quiesce gate that holds sessions at transaction boundaries;
//!   [`window`]: backup windows (triggers, the push/sync/snapshot actions, their records).
//! - [`control`]: server control (`external`, `managed` child process, operator `command`s),
//!   and the server's availability that sessions wait on; [`supervise`]: the crash supervisor of
//!   a managed server; [`ports`]: a free loopback port for the servers the sidecar starts.
//! - [`upstream`]: the server and every way of connecting to it (relay, cancel, SQL, probe);
//!   [`tls`]: TLS towards clients and the upstream; [`halves`]: a connection split for the relay.
//! - [`catalog`]: the catalog of stop-and-copy entries (atomic entries, manifests, retention);
//!   [`verify`]: checking backups on a scratch Doltgres, and `verify_after`'s verifications in
//!   the background; [`restore`]: building a restored directory beside its target and putting
//!   it in place at once; [`dirlock`]: who uses a server directory (the sidecar's lock,
//!   Doltgres' database locks); [`offsite`]: copy entries replicated to S3-compatible object
//!   storage (content-addressed, compressed objects; the manifest written last), uploaded in
//!   the background and read back by `restore`.
//! - [`ops`]: what an operator can ask (status, backups, holds, windows, reload, verify,
//!   shutdown), whatever the transport; [`admin`]: the admin HTTP API (`/healthz`, `/readyz`,
//!   `/status`, `/metrics`, `/quiesce`, `/resume`, `/backups`) over it, and the bounds on its
//!   connections; [`console`]: the same over the PostgreSQL protocol on the proxy's port (the
//!   `doltgres_sidecar` database, with `pgwire`); [`client`]: the CLI's client of the HTTP API.
//! - [`handover`]: upgrades without dropping clients: the listening sockets passed to a
//!   successor process, the counters carried over.
//! - [`cli`]: the command line of the `doltgres-sidecar` binary; [`manual`]: its manual pages,
//!   generated from the same definitions; [`errors`]: how it says what went wrong;
//!   [`logging`]: its log (text or JSON) and the filter that can be replaced while it runs.
//! - [`local`]: the local commands (`restore`, `verify`), which find the catalog and the Doltgres
//!   binary the running sidecar uses.
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
pub mod console;
pub mod control;
pub mod descriptors;
pub mod dirlock;
pub mod errors;
#[cfg(any(test, feature = "test-support"))]
pub mod fuzzing;
pub mod gate;
pub mod halves;
pub mod heap;
pub mod handover;
pub mod limits;
pub mod local;
pub mod logging;
pub mod manual;
pub mod metrics;
pub mod offsite;
pub mod ops;
pub mod ports;
pub mod protocol;
pub mod redact;
pub mod registry;
pub mod reload;
pub mod replay;
pub mod restore;
#[cfg(any(test, feature = "test-support"))]
pub mod sample;
pub mod secrets;
pub mod server;
pub mod session;
pub mod shared;
pub mod shutdown;
pub mod supervise;
pub mod tls;
pub mod txn;
pub mod upstream;
pub mod verify;
pub mod window;
