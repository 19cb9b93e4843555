//! The actions a window runs, over the sidecar's own connections to the upstream (not through
//! the proxy, so they are never held by the gate). Each returns the cut it recorded.

use std::fmt::Write as _;
use std::process::Stdio;

use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::config::{Action, PushConfig, SnapshotConfig, SyncConfig};
use crate::server::Shared;
use crate::tls::UpstreamTlsMode;

/// An action that failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("database {database}: {message}")]
    Sql { database: String, message: String },
    #[error("[backup.{0}] is not configured")]
    NotConfigured(&'static str),
    #[error("snapshot command: {0}")]
    Command(String),
}

/// Work a window leaves for after traffic resumes: the transfer of a push, whose cut (commit and
/// head hashes) was taken inside the window.
pub struct Transfer {
    pushes: Vec<(Client, String)>,
}

/// Runs the part of `action` that needs traffic held, for window `window_id`; returns the cut as
/// JSON and, for a push, the transfer still to do.
pub async fn run(
    shared: &Shared,
    action: Action,
    window_id: u64,
) -> Result<(Value, Option<Transfer>), ActionError> {
    let backup = &shared.config.backup;
    match action {
        Action::Push => {
            let cfg = backup
                .push
                .as_ref()
                .ok_or(ActionError::NotConfigured("push"))?;
            let mut cut = Map::new();
            let mut pushes = Vec::new();
            for database in &backup.databases {
                let client = connect(shared, database).await?;
                cut.insert(
                    database.clone(),
                    push_cut(&client, database, cfg, window_id).await?,
                );
                pushes.push((client, database.clone()));
            }
            Ok((Value::Object(cut), Some(Transfer { pushes })))
        }
        Action::Sync => {
            let cfg = backup
                .sync
                .as_ref()
                .ok_or(ActionError::NotConfigured("sync"))?;
            let mut cut = Map::new();
            for database in &backup.databases {
                let client = connect(shared, database).await?;
                cut.insert(database.clone(), sync(&client, database, cfg).await?);
            }
            Ok((Value::Object(cut), None))
        }
        Action::Snapshot => {
            let cfg = backup
                .snapshot
                .as_ref()
                .ok_or(ActionError::NotConfigured("snapshot"))?;
            Ok((snapshot(shared, cfg, window_id).await?, None))
        }
    }
}

/// Pushes each branch once traffic flows again, and records in `cut` which head went out. It
/// equals the cut unless a client made a Dolt commit after the window; either is a consistent
/// snapshot, since a Dolt commit is one.
pub async fn transfer(
    shared: &Shared,
    transfer: Transfer,
    cut: &mut Value,
) -> Result<(), ActionError> {
    let cfg = shared
        .config
        .backup
        .push
        .as_ref()
        .ok_or(ActionError::NotConfigured("push"))?;
    for (client, database) in transfer.pushes {
        let db = database.as_str();
        let mut pushed = Map::new();
        for branch in &cfg.branches {
            let hash = column(
                &client,
                db,
                &format!("SELECT dolt_hashof({})", literal(branch)),
            )
            .await?;
            column(
                &client,
                db,
                &format!(
                    "SELECT dolt_push({}, {})",
                    literal(&cfg.remote),
                    literal(branch)
                ),
            )
            .await?;
            pushed.insert(branch.clone(), json!(hash.first()));
        }
        cut[db]["pushed"] = Value::Object(pushed);
    }
    Ok(())
}

async fn connect(shared: &Shared, database: &str) -> Result<Client, ActionError> {
    let backup = &shared.config.backup;
    let upstream = &shared.config.upstream;
    let (host, port) = upstream.rsplit_once(':').unwrap_or(("127.0.0.1", "5432"));
    let mut config = tokio_postgres::Config::new();
    match &shared.config.upstream_tls_server_name {
        // Verify this name, but connect to the configured address.
        Some(name) if shared.upstream_tls_config.is_some() => {
            let addr = tokio::net::lookup_host(upstream)
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ActionError::Sql {
                    database: database.to_string(),
                    message: format!("cannot resolve {upstream}"),
                })?;
            config.host(name).hostaddr(addr.ip());
        }
        _ => {
            config.host(host);
        }
    }
    config
        .port(port.parse().unwrap_or(5432))
        .user(&backup.user)
        .password(backup.password())
        .dbname(database)
        .application_name("doltgres-sidecar")
        .connect_timeout(shared.config.connect_timeout);
    let Some(tls) = &shared.upstream_tls_config else {
        let (client, connection) = config.connect(NoTls).await.map_err(sql_error(database))?;
        tokio::spawn(connection);
        return Ok(client);
    };
    // The same TLS settings as the relay's upstream connections.
    config.ssl_mode(match shared.config.upstream_tls {
        UpstreamTlsMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let make_tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
    let (client, connection) = config
        .connect(make_tls)
        .await
        .map_err(sql_error(database))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Keeps the server's SQLSTATE and message: tokio-postgres's own Display says only "db error".
fn sql_error(database: &str) -> impl Fn(tokio_postgres::Error) -> ActionError {
    let database = database.to_string();
    move |e| ActionError::Sql {
        database: database.clone(),
        message: match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        },
    }
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Runs a query and returns the first column of each row as text.
async fn column(client: &Client, database: &str, sql: &str) -> Result<Vec<String>, ActionError> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(sql_error(database))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect())
}

/// Inside the window: make sure the remote exists, optionally commit the working set, and record
/// each branch's head.
async fn push_cut(
    client: &Client,
    db: &str,
    cfg: &PushConfig,
    window_id: u64,
) -> Result<Value, ActionError> {
    let remotes = column(client, db, "SELECT name FROM dolt_remotes").await?;
    if !remotes.contains(&cfg.remote)
        && let Some(url) = &cfg.url
    {
        let url = url.replace("{database}", db);
        let sql = format!(
            "SELECT dolt_remote('add', {}, {})",
            literal(&cfg.remote),
            literal(&url)
        );
        column(client, db, &sql).await?;
    }
    let mut committed = false;
    if cfg.commit_working_set {
        let changes = column(client, db, "SELECT count(*) FROM dolt_status").await?;
        if changes.first().is_some_and(|n| n != "0") {
            let message = format!("doltgres-sidecar: working set at window {window_id}");
            column(
                client,
                db,
                &format!("SELECT dolt_commit('-Am', {})", literal(&message)),
            )
            .await?;
            committed = true;
        }
    }
    let mut heads = Map::new();
    for branch in &cfg.branches {
        let hash = column(
            client,
            db,
            &format!("SELECT dolt_hashof({})", literal(branch)),
        )
        .await?;
        heads.insert(branch.clone(), json!(hash.first()));
    }
    Ok(json!({ "remote": cfg.remote, "heads": heads, "committed_working_set": committed }))
}

async fn sync(client: &Client, db: &str, cfg: &SyncConfig) -> Result<Value, ActionError> {
    if let Some(url) = &cfg.url {
        let url = url.replace("{database}", db);
        let sql = format!(
            "SELECT dolt_backup('add', {}, {})",
            literal(&cfg.name),
            literal(&url)
        );
        if let Err(e) = column(client, db, &sql).await {
            // Adding an existing backup fails; anything else is a real error.
            let text = e.to_string();
            if !text.contains("already exists") {
                return Err(e);
            }
        }
    }
    let head = column(client, db, "SELECT dolt_hashof('HEAD')").await?;
    column(
        client,
        db,
        &format!("SELECT dolt_backup('sync', {})", literal(&cfg.name)),
    )
    .await?;
    Ok(json!({ "backup": cfg.name, "head": head.first() }))
}

async fn snapshot(
    shared: &Shared,
    cfg: &SnapshotConfig,
    window_id: u64,
) -> Result<Value, ActionError> {
    let (program, args) = cfg
        .command
        .split_first()
        .ok_or(ActionError::NotConfigured("snapshot"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("DOLTGRES_SIDECAR_WINDOW_ID", window_id.to_string())
        .env("DOLTGRES_SIDECAR_ACTION", "snapshot")
        .env("DOLTGRES_SIDECAR_UPSTREAM", &shared.config.upstream)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ActionError::Command(format!("cannot start {program}: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let run = async {
        let (mut out, mut err) = (String::new(), String::new());
        let (status, _, _) = tokio::join!(
            child.wait(),
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        (status, out, err)
    };
    let (status, out, err) = tokio::time::timeout(cfg.timeout, run).await.map_err(|_| {
        ActionError::Command(format!("{program} did not finish within {:?}", cfg.timeout))
    })?;
    let status = status.map_err(|e| ActionError::Command(e.to_string()))?;
    if !status.success() {
        let mut text = format!("{program} exited with {status}");
        let tail: String = err
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let _ = write!(text, ": {}", tail.trim());
        return Err(ActionError::Command(text));
    }
    Ok(json!({ "command": program, "output": out.trim() }))
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_are_quoted() {
        assert_eq!(literal("main"), "'main'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("file:///tmp/x"), "'file:///tmp/x'");
    }
}
