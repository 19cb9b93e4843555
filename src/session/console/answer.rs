//! Runs a console command through [`crate::ops`] (the admin HTTP API's implementation) and turns
//! the result into a [`Table`], or a refusal into an error with a SQLSTATE.

use std::sync::Arc;

use super::command::{Command, HELP, Show};
use super::table::{self, Table, Value};
use crate::ops::{self, OpError, Refusal};
use crate::shared::Shared;
use crate::window::WindowRecord;

/// Who is logged in to the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `admin_users`: every command.
    Admin,
    /// `stats_users`: `SHOW` only.
    Stats,
}

/// A command that was not done: an ErrorResponse's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

impl Refused {
    fn new(code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
            detail: None,
        }
    }
}

/// `55000`: not in the state (or configuration) the command needs.
const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// `55P03`: sessions did not reach a boundary in time.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// `22023`: an argument with a wrong value.
const INVALID_PARAMETER_VALUE: &str = "22023";
/// `58000`: an action outside the sidecar failed (the server, the remote, the store).
const SYSTEM_ERROR: &str = "58000";
/// `XX001`: a copy entry that does not verify.
const DATA_CORRUPTED: &str = "XX001";
/// `42501`.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

impl From<OpError> for Refused {
    fn from(e: OpError) -> Refused {
        let code = match e.kind {
            Refusal::Invalid => INVALID_PARAMETER_VALUE,
            Refusal::Conflict | Refusal::NeedsRestart => OBJECT_NOT_IN_PREREQUISITE_STATE,
            Refusal::Unavailable => LOCK_NOT_AVAILABLE,
            Refusal::Failed => SYSTEM_ERROR,
        };
        Refused::new(code, e.message)
    }
}

/// Runs `command` for a user with `role`.
pub async fn run(shared: &Arc<Shared>, role: Role, command: &Command) -> Result<Table, Refused> {
    if command.is_control() && role != Role::Admin {
        return Err(Refused {
            code: INSUFFICIENT_PRIVILEGE,
            message: format!(
                "permission denied: {} needs a user in admin_users",
                command.tag()
            ),
            detail: Some("stats_users may run SHOW commands only".into()),
        });
    }
    let columns = table::columns(command);
    let work = &shared.work;
    let rows = match command {
        Command::Show(show) => return show_table(shared, *show).await,
        Command::Backup(action) => {
            let record = ops::windows::backup(shared, work, *action).await?;
            if let Some(kind) = ops::windows::failure(&record) {
                let outcome = record.result.as_str();
                let mut refused = Refused::from(OpError::new(
                    kind,
                    format!(
                        "backup window {} {outcome}: {}",
                        record.id,
                        record.error.as_deref().unwrap_or("no detail")
                    ),
                ));
                refused.detail = Some(crate::state::record::describe(&record.steps));
                return Err(refused);
            }
            vec![window_row(&record)]
        }
        Command::Pause(ttl) => {
            let held = ops::windows::hold(shared, work, ttl.as_deref(), None).await?;
            vec![vec![
                Value::int(held.window_id),
                Value::Float(held.ttl_seconds),
            ]]
        }
        Command::Resume => vec![vec![Value::int(ops::windows::resume(shared)?.resumed)]],
        Command::Reload => {
            let reloaded = ops::maintenance::reload(shared).await?;
            reloaded
                .changed
                .into_iter()
                .map(|key| vec![Value::Text(key)])
                .collect()
        }
        Command::Verify(id) => {
            let verified = ops::maintenance::verify(shared, id).await?;
            if verified.verify != "ok" {
                return Err(Refused {
                    code: DATA_CORRUPTED,
                    message: format!("copy entry {} failed verification", verified.entry),
                    detail: Some(verified.detail),
                });
            }
            vec![vec![
                Value::Text(verified.entry),
                Value::Text(verified.verify),
                Value::Text(verified.detail),
            ]]
        }
        Command::Shutdown => {
            ops::maintenance::shutdown(shared)?;
            Vec::new()
        }
    };
    Ok(Table { columns, rows })
}

async fn show_table(shared: &Arc<Shared>, show: Show) -> Result<Table, Refused> {
    let columns = table::columns(&Command::Show(show));
    let rows = match show {
        Show::Help => HELP
            .iter()
            .map(|(command, what)| vec![Value::text(*command), Value::text(*what)])
            .collect(),
        Show::Version => vec![vec![Value::text(format!(
            "doltgres-sidecar {}",
            env!("CARGO_PKG_VERSION")
        ))]],
        Show::Sessions => ops::status::status(shared)
            .sessions
            .into_iter()
            .map(|s| {
                vec![
                    Value::int(s.id),
                    Value::Text(s.peer),
                    Value::Text(s.user),
                    Value::Text(s.database),
                    Value::Text(s.application_name),
                    Value::text(s.state),
                    Value::or_null(s.backend_pid, Value::int),
                    Value::unix(s.started_unix as f64),
                    Value::Float(s.age_seconds),
                    Value::or_null(s.held_since_unix, Value::unix),
                ]
            })
            .collect(),
        Show::Stats => {
            let status = ops::status::status(shared);
            let c = status.counters;
            vec![vec![
                Value::int(status.sessions.len()),
                Value::int(c.commits),
                Value::int(c.rollbacks),
                Value::int(c.write_commits),
                Value::int(c.write_commits_since_backup),
                Value::int(c.bytes_upstream),
                Value::int(c.bytes_downstream),
            ]]
        }
        Show::Windows => shared.windows.history().iter().map(window_row).collect(),
        Show::Backups => ops::backups::backups(shared)
            .await
            .copies
            .into_iter()
            .map(|c| {
                vec![
                    Value::Text(c.id),
                    Value::unix(c.created_unix),
                    Value::int(c.window_id),
                    Value::Text(c.databases.join(",")),
                    Value::int(c.files),
                    Value::int(c.bytes),
                    Value::int(c.bytes_copied),
                    Value::or_null(c.verify, Value::Text),
                    Value::or_null(c.verify_detail, Value::Text),
                    Value::or_null(c.offsite_uploaded, Value::Bool),
                ]
            })
            .collect(),
        Show::Config => crate::config::secrets::masked_settings(&shared.config())
            .map_err(|e| Refused::new(SYSTEM_ERROR, format!("cannot show the configuration: {e}")))?
            .into_iter()
            .map(|(key, value)| vec![Value::Text(key), Value::Text(value)])
            .collect(),
        Show::Server => {
            let s = ops::status::status(shared);
            vec![vec![
                Value::text(s.server_control),
                Value::Text(s.upstream),
                Value::Bool(shared.control.is_available()),
                Value::or_null(s.server_pid, Value::int),
                Value::Text(s.server_user),
                Value::or_null(s.doltgres, Value::Text),
                Value::or_null(s.catalog, Value::Text),
                Value::int(s.server_restarts.copy),
                Value::int(s.server_restarts.crash),
                Value::Text(s.backup_actions.join(",")),
                Value::or_null(s.windows_held_off, Value::Text),
                Value::int(s.pid),
            ]]
        }
    };
    Ok(Table { columns, rows })
}

fn window_row(record: &WindowRecord) -> Vec<Value> {
    vec![
        Value::int(record.id),
        Value::Text(record.action.clone()),
        Value::text(record.trigger.as_str()),
        Value::unix(record.started_unix),
        Value::text(record.result.as_str()),
        Value::int(record.drain_ms),
        Value::int(record.stall_ms),
        Value::int(record.duration_ms),
        Value::or_null(record.error.clone(), Value::Text),
        Value::Text(crate::state::record::describe(&record.steps)),
    ]
}
