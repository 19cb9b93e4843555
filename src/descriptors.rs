//! The process's file descriptors: how the open-file limit (`RLIMIT_NOFILE`) is shared out, so
//! that connections nobody has authenticated cannot take the descriptors the proxy port needs.
//!
//! - Each client session holds two sockets (the client's and the server's), so
//!   `max_client_connections` sessions need twice as many descriptors.
//! - The admin API serves at most [`Budget::admin_connections`] connections at once: an eighth of
//!   the limit, and never more than [`MAX_ADMIN_CONNECTIONS`]. Beyond that it stops accepting
//!   (the admin API caps its connections), so an admin flood holds a bounded number of descriptors.
//! - [`RESERVE`] more are kept for everything else: the listeners, the hand-over socket, the
//!   upstream probes and logins, a backup window's files and commands, a managed server's pipes.
//!
//! At start (and when a reload changes `max_client_connections`) the soft limit is raised
//! towards the hard one as far as that sum needs, as HAProxy does for its `maxconn`; when even
//! the hard limit is too low the sidecar says so and runs on. Past the limit, an accept fails
//! with `EMFILE`: the accept loops back off and retry (the `accept` module).

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{info, warn};

/// The most admin connections served at once, whatever the limit.
pub const MAX_ADMIN_CONNECTIONS: usize = 512;
/// The admin API's share of the open-file limit: one descriptor in this many.
const ADMIN_SHARE: u64 = 8;
/// Descriptors kept for what is neither a session nor an admin connection.
pub const RESERVE: u64 = 64;

/// How the open-file limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft open-file limit in force.
    pub limit: u64,
    /// Admin connections served at once.
    pub admin_connections: usize,
    /// What a full proxy can hold: two per client connection, the admin connections, the
    /// reserve.
    pub needed: u64,
}

impl Budget {
    /// The budget under a soft open-file limit of `limit` (pure).
    pub fn under(limit: u64, max_client_connections: usize) -> Budget {
        let admin_connections = (limit / ADMIN_SHARE).clamp(1, MAX_ADMIN_CONNECTIONS as u64);
        Budget {
            limit,
            admin_connections: admin_connections as usize,
            needed: sessions(max_client_connections) + admin_connections + RESERVE,
        }
    }

    /// Whether every client `max_client_connections` allows can be served within the limit.
    pub fn fits(&self) -> bool {
        self.needed <= self.limit
    }

    /// The budget under the limit in force now (nothing raised, nothing logged).
    pub fn current(max_client_connections: usize) -> Budget {
        Budget::under(limits().0, max_client_connections)
    }
}

/// The soft limit to ask for, given the limits in force: what the configuration can use at most
/// (with the largest admin share), within the hard limit; never lower than the soft limit.
pub fn wanted_soft_limit(soft: u64, hard: u64, max_client_connections: usize) -> u64 {
    let most = sessions(max_client_connections) + MAX_ADMIN_CONNECTIONS as u64 + RESERVE;
    soft.max(most.min(hard))
}

/// Raises the soft open-file limit as far as `max_client_connections` needs (within the hard
/// limit), logs how the limit is shared out, warns when it is too low, and returns the budget.
pub fn plan(max_client_connections: usize) -> Budget {
    let (soft, hard) = limits();
    let wanted = wanted_soft_limit(soft, hard, max_client_connections);
    let limit = if wanted > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => {
                info!(
                    from = soft,
                    to = wanted,
                    "raised the open-file limit to what max_client_connections needs"
                );
                wanted
            }
            Err(e) => {
                warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                soft
            }
        }
    } else {
        soft
    };
    let budget = Budget::under(limit, max_client_connections);
    if budget.fits() {
        info!(
            open_file_limit = limit,
            max_client_connections,
            admin_connections = budget.admin_connections,
            reserve = RESERVE,
            "file descriptors"
        );
    } else {
        warn!(
            open_file_limit = limit,
            hard_limit = hard,
            needed = budget.needed,
            max_client_connections,
            admin_connections = budget.admin_connections,
            "the open-file limit is lower than max_client_connections needs (two descriptors \
             per client, plus the admin connections and a reserve): raise it (ulimit -n, \
             systemd's LimitNOFILE, the container's nofile) or lower max_client_connections; \
             until then clients past it wait to be accepted"
        );
    }
    budget
}

/// Two descriptors per session.
fn sessions(max_client_connections: usize) -> u64 {
    2 * max_client_connections as u64
}

/// The soft and hard open-file limits; (1024, 1024) if they cannot be read.
fn limits() -> (u64, u64) {
    getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_share_is_an_eighth_of_the_limit_up_to_the_cap() {
        assert_eq!(Budget::under(20_000, 1000).admin_connections, 512);
        assert_eq!(Budget::under(2_048, 1000).admin_connections, 256);
        assert_eq!(Budget::under(1_024, 100).admin_connections, 128);
        assert_eq!(Budget::under(4, 1).admin_connections, 1);
    }

    #[test]
    fn the_budget_counts_two_descriptors_per_client() {
        let budget = Budget::under(20_000, 1000);
        assert_eq!(budget.needed, 2000 + 512 + RESERVE);
        assert!(budget.fits());
        // 2,048 descriptors cannot hold 1,000 sessions beside the admin connections.
        assert!(!Budget::under(2_048, 1000).fits());
        assert!(Budget::under(2_048, 800).fits());
    }

    #[test]
    fn the_soft_limit_is_raised_as_far_as_needed_within_the_hard_one() {
        // A systemd service's defaults: soft 1,024, hard 524,288.
        assert_eq!(wanted_soft_limit(1024, 524_288, 1000), 2000 + 512 + RESERVE);
        // Never above the hard limit, never below the soft one.
        assert_eq!(wanted_soft_limit(1024, 2048, 1000), 2048);
        assert_eq!(wanted_soft_limit(65_536, 65_536, 10), 65_536);
        assert_eq!(wanted_soft_limit(1024, u64::MAX, 100_000), 200_576);
    }
}
