//! The sidecar's status: the open sessions and the transaction counters; also where this sidecar
//! keeps its copies and which Doltgres it runs, so that the local commands (`verify`,
//! `restore`) run in any directory work on the same files.

use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::control::locate::locate;
use crate::handover::counts::Counts;
use crate::shared::Shared;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub version: &'static str,
    /// This sidecar's process id (after an upgrade, the new process's).
    pub pid: u32,
    pub upstream: String,
    /// `external`, `managed` or `command`.
    pub server_control: &'static str,
    /// The managed Doltgres's process id, while it runs (managed mode only).
    pub server_pid: Option<i32>,
    /// The server's superuser (`server.user`): the login of the scratch servers that verify and
    /// restore copies, whose `auth.db` is the server's.
    pub server_user: String,
    /// The Doltgres binary this sidecar runs and verifies copies with, as an absolute path
    /// (`server.binary`, looked up on the sidecar's `PATH`); absent when there is no such file.
    pub doltgres: Option<String>,
    /// The copy catalog (`backup.copy.catalog`), as an absolute path; absent without copies.
    pub catalog: Option<String>,
    /// What triggered windows run, in order (`push`, `sync`, `snapshot`, `copy`); also what
    /// `POST /backups` without `action` runs when it is one action.
    pub backup_actions: Vec<String>,
    /// Why backup windows are held off now, if they are (an upgrade: the previous process is
    /// still letting its sessions finish).
    pub windows_held_off: Option<String>,
    /// Restarts of the controlled server by this process, by cause: for a stop-and-copy window,
    /// and after a crash.
    pub server_restarts: Restarts,
    pub sessions: Vec<SessionStatus>,
    /// Transactions and bytes relayed (carried across upgrades).
    pub counters: Counts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionStatus {
    pub id: u64,
    pub peer: String,
    pub user: String,
    pub database: String,
    pub application_name: String,
    /// The upstream server's process id for this session (`pg_stat_activity.pid` on
    /// PostgreSQL; the server's own pid on Doltgres), once known.
    pub backend_pid: Option<u32>,
    /// `startup`, `idle`, `active`, `in_transaction` or `failed_transaction`.
    pub state: &'static str,
    pub started_unix: u64,
    pub age_seconds: f64,
    /// While a window holds the session's next request: since when (Unix time, seconds).
    pub held_since_unix: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Restarts {
    pub copy: u64,
    pub crash: u64,
}

/// Open sessions (with their server pid and state), the transaction counters, and where the
/// sidecar's server, binary and copies are.
pub fn status(shared: &Shared) -> Status {
    let sessions = shared
        .registry
        .snapshot()
        .iter()
        .map(|s| SessionStatus {
            id: s.id,
            peer: s.peer.to_string(),
            user: s.user.clone(),
            database: s.database.clone(),
            application_name: s.application_name.clone(),
            backend_pid: s.backend_pid(),
            state: s.state(),
            started_unix: s
                .started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            age_seconds: s.started_at.elapsed().as_secs_f64(),
            held_since_unix: s
                .held_since()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
        })
        .collect();
    let m = &shared.metrics;
    let config = shared.config();
    let absolute = |path: &std::path::Path| {
        std::path::absolute(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string()
    };
    Status {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        upstream: shared.upstream.addr.clone(),
        server_control: config.server.control.mode().as_str(),
        server_pid: shared.control.managed().and_then(|m| m.pid()),
        server_user: config.server.user.clone(),
        doltgres: locate(&config.server.binary).map(|path| path.display().to_string()),
        catalog: config.backup.copy.as_ref().map(|c| absolute(&c.catalog)),
        backup_actions: config
            .backup
            .triggered_actions()
            .iter()
            .map(|a| a.as_str().to_string())
            .collect(),
        windows_held_off: shared.windows.paused(),
        server_restarts: Restarts {
            copy: m.server_restarts_by("copy"),
            crash: m.server_restarts_by("crash"),
        },
        sessions,
        counters: Counts::read(m),
    }
}
