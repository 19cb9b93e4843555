//! The test bed: real Doltgres and PostgreSQL servers, and the proxy in front of them.
//!
//! - [`TestServer::doltgres`] builds (once, cached outside the repository) and starts the pinned
//!   Doltgres; [`TestServer::postgres`] starts Debian's PostgreSQL. Each gets a free loopback port
//!   and a temp dir, is polled until it accepts a login, prints its log if the test fails, and is
//!   stopped when dropped.
//! - [`TestProxy`] runs the proxy in-process on port 0 in front of a server.
//!
//! - [`remote_server::RemoteServer`] runs Dolt's remote server (`remotesrv`, built from the Dolt
//!   module the pinned Doltgres requires), the `http://` remote that push and sync go to when the
//!   backup leaves the machine.
//! - [`seaweedfs::SeaweedFs`] runs SeaweedFS (built from the Go module proxy), the S3-compatible
//!   object store off-site backups go to, with a key and a bucket of its own.
//! - [`readme`] reads the README's shell blocks as commands, for the test that runs them.
//! - [`process::SidecarProcess`] runs the `doltgres-sidecar` binary as its own process, for tests
//!   that signal it, kill it or measure its memory.
//!
//! A missing server is installed or built by the scripts in `scripts/`; if that fails the test
//! fails loudly. Nothing here stands in for Doltgres or PostgreSQL: [`fault_server`] only plays a
//! server that breaks the protocol on purpose, which no real server can be made to do.

pub mod certs;
pub mod facts;
pub mod fault_server;
pub mod http;
pub mod install;
pub mod ledger;
pub mod managed;
pub mod offsite;
pub mod pgbench;
pub mod ports;
pub mod process;
mod proxy;
pub mod raw;
pub mod readme;
pub mod remote_server;
pub mod seaweedfs;
mod server;
pub mod startup_probe;
pub mod toxiproxy;

pub use ports::free_port;
pub use proxy::TestProxy;
pub use server::{Kind, TestServer, client_config, connect as server_connect};

/// Runs a test body against both servers: expands to one `#[tokio::test]` per server kind.
#[macro_export]
macro_rules! both_servers {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn doltgres() {
                super::$name($crate::TestServer::doltgres().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::TestServer::postgres().await).await
            }
        }
    };
}
