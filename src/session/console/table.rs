//! The console's answers as typed tables: each command's columns (known before it runs, for the
//! extended protocol's Describe), and rows of values. Pure; [`super::handler`] encodes them with
//! `pgwire`, in text or binary as the client asks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::command::{Command, Show};

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// `int8`.
    Int,
    /// `float8`.
    Float,
    Bool,
    /// `timestamptz`.
    Time,
}

/// A column: its name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

use Kind::{Bool, Float, Int, Text, Time};

/// One value; `Null` in a column of any type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(SystemTime),
}

impl Value {
    /// A count or size: `int8` holds every one a sidecar reaches.
    pub fn int(n: impl TryInto<i64>) -> Value {
        n.try_into().map_or(Value::Null, Value::Int)
    }

    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    /// Seconds since the Unix epoch, as the JSON answers give them.
    pub fn unix(seconds: f64) -> Value {
        if seconds.is_finite() && seconds >= 0.0 {
            Value::Time(UNIX_EPOCH + Duration::from_secs_f64(seconds))
        } else {
            Value::Null
        }
    }

    pub fn or_null<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        value.map_or(Value::Null, f)
    }
}

/// An answer: the command's columns and its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: &'static [Column],
    pub rows: Vec<Vec<Value>>,
}

pub const HELP: &[Column] = &[col("command", Text), col("description", Text)];
pub const VERSION: &[Column] = &[col("version", Text)];
pub const SESSIONS: &[Column] = &[
    col("id", Int),
    col("client", Text),
    col("user", Text),
    col("database", Text),
    col("application_name", Text),
    col("state", Text),
    col("server_pid", Int),
    col("started", Time),
    col("age_seconds", Float),
    col("held_since", Time),
];
pub const STATS: &[Column] = &[
    col("sessions", Int),
    col("commits", Int),
    col("rollbacks", Int),
    col("write_commits", Int),
    col("write_commits_since_backup", Int),
    col("bytes_upstream", Int),
    col("bytes_downstream", Int),
];
/// A window's record: `SHOW WINDOWS`, and the answer of `BACKUP`.
pub const WINDOWS: &[Column] = &[
    col("id", Int),
    col("action", Text),
    col("trigger", Text),
    col("started", Time),
    col("result", Text),
    col("drain_ms", Int),
    col("stall_ms", Int),
    col("duration_ms", Int),
    col("error", Text),
    col("steps", Text),
];
pub const BACKUPS: &[Column] = &[
    col("id", Text),
    col("created", Time),
    col("window_id", Int),
    col("databases", Text),
    col("files", Int),
    col("bytes", Int),
    col("bytes_copied", Int),
    col("verify", Text),
    col("verify_detail", Text),
    col("offsite_uploaded", Bool),
];
pub const CONFIG: &[Column] = &[col("key", Text), col("value", Text)];
pub const SERVER: &[Column] = &[
    col("control", Text),
    col("upstream", Text),
    col("available", Bool),
    col("server_pid", Int),
    col("server_user", Text),
    col("doltgres", Text),
    col("catalog", Text),
    col("restarts_copy", Int),
    col("restarts_crash", Int),
    col("backup_actions", Text),
    col("windows_held_off", Text),
    col("sidecar_pid", Int),
];
pub const PAUSE: &[Column] = &[col("window_id", Int), col("ttl_seconds", Float)];
pub const RESUME: &[Column] = &[col("resumed", Int)];
pub const RELOAD: &[Column] = &[col("changed", Text)];
pub const VERIFY: &[Column] = &[col("entry", Text), col("verify", Text), col("detail", Text)];
/// `SHUTDOWN` answers with its command tag alone.
pub const NONE: &[Column] = &[];

/// The columns `command`'s answer has.
pub fn columns(command: &Command) -> &'static [Column] {
    match command {
        Command::Show(show) => match show {
            Show::Help => HELP,
            Show::Version => VERSION,
            Show::Sessions => SESSIONS,
            Show::Stats => STATS,
            Show::Windows => WINDOWS,
            Show::Backups => BACKUPS,
            Show::Config => CONFIG,
            Show::Server => SERVER,
        },
        Command::Backup(_) => WINDOWS,
        Command::Pause(_) => PAUSE,
        Command::Resume => RESUME,
        Command::Reload => RELOAD,
        Command::Verify(_) => VERIFY,
        Command::Shutdown => NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::console::command::parse;

    #[test]
    fn every_command_has_distinct_column_names() {
        for text in [
            "SHOW HELP",
            "SHOW VERSION",
            "SHOW SESSIONS",
            "SHOW STATS",
            "SHOW WINDOWS",
            "SHOW BACKUPS",
            "SHOW CONFIG",
            "SHOW SERVER",
            "BACKUP",
            "PAUSE",
            "RESUME",
            "RELOAD",
            "VERIFY latest",
        ] {
            let columns = columns(&parse(text).unwrap());
            assert!(!columns.is_empty(), "{text}");
            let mut names: Vec<&str> = columns.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), columns.len(), "{text}");
        }
        assert!(columns(&Command::Shutdown).is_empty());
    }

    #[test]
    fn values_out_of_range_are_null() {
        assert_eq!(Value::int(u64::MAX), Value::Null);
        assert_eq!(Value::int(7u64), Value::Int(7));
        assert_eq!(Value::unix(f64::NAN), Value::Null);
        assert_eq!(Value::unix(-1.0), Value::Null);
        assert_eq!(
            Value::unix(1.5),
            Value::Time(UNIX_EPOCH + Duration::from_millis(1500))
        );
    }
}
