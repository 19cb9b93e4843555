//! `push`, in three parts:
//!
//! - before the gate closes (traffic flowing): log in to each database and make sure the remote
//!   exists;
//! - inside the window (the cut): optionally record a Dolt commit of the working set, and take
//!   each branch's head;
//! - after traffic resumes: `dolt_push` each branch.

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::ActionError;
use super::sql::{column, connect, literal};
use crate::shared::Shared;
use crate::window::config::PushConfig;
use crate::window::record::Steps;

/// A push ready for its window: one logged-in connection per database, remote in place.
pub struct Prepared {
    databases: Vec<(Client, String)>,
}

/// Work a window leaves for after traffic resumes: the transfer of a push, whose cut (commit and
/// head hashes) was taken inside the window.
pub struct Transfer {
    pushes: Vec<(Client, String)>,
}

/// Before the gate closes: connects to every configured database and adds the remote where it
/// is missing and a URL is configured.
pub async fn prepare(
    shared: &Shared,
    cfg: &PushConfig,
    steps: &mut Steps,
) -> Result<Prepared, ActionError> {
    let mut databases = Vec::new();
    for database in &shared.config.backup.databases {
        let db = database.as_str();
        let client = steps.time("connect", Some(db), connect(shared, db)).await?;
        let list = "SELECT name FROM dolt_remotes";
        let remotes = steps
            .time("remotes", Some(db), column(&client, db, list))
            .await?;
        if !remotes.contains(&cfg.remote)
            && let Some(url) = &cfg.url
        {
            let url = url.replace("{database}", db);
            let sql = format!(
                "SELECT dolt_remote('add', {}, {})",
                literal(&cfg.remote),
                literal(&url)
            );
            steps
                .time("remote_add", Some(db), column(&client, db, &sql))
                .await?;
        }
        databases.push((client, database.clone()));
    }
    Ok(Prepared { databases })
}

/// Inside the window: takes the cut of every configured database; returns it and the transfer
/// still to do.
pub async fn cut(
    prepared: Prepared,
    cfg: &PushConfig,
    window_id: u64,
    steps: &mut Steps,
) -> Result<(Value, Transfer), ActionError> {
    let mut cut = Map::new();
    for (client, database) in &prepared.databases {
        cut.insert(
            database.clone(),
            database_cut(client, database, cfg, window_id, steps).await?,
        );
    }
    Ok((
        Value::Object(cut),
        Transfer {
            pushes: prepared.databases,
        },
    ))
}

/// Pushes each branch once traffic flows again, and records in `cut` which head went out. It
/// equals the cut unless a client made a Dolt commit after the window; either is a consistent
/// snapshot, since a Dolt commit is one.
pub async fn transfer(
    cfg: &PushConfig,
    transfer: Transfer,
    cut: &mut Value,
    steps: &mut Steps,
) -> Result<(), ActionError> {
    for (client, database) in transfer.pushes {
        let db = database.as_str();
        let mut pushed = Map::new();
        for branch in &cfg.branches {
            let head = format!("SELECT dolt_hashof({})", literal(branch));
            let hash = steps
                .time("head", Some(db), column(&client, db, &head))
                .await?;
            let push = format!(
                "SELECT dolt_push({}, {})",
                literal(&cfg.remote),
                literal(branch)
            );
            steps
                .time("push", Some(db), column(&client, db, &push))
                .await?;
            pushed.insert(branch.clone(), json!(hash.first()));
        }
        cut[db]["pushed"] = Value::Object(pushed);
    }
    Ok(())
}

/// Inside the window: optionally commit the working set, and record each branch's head.
async fn database_cut(
    client: &Client,
    db: &str,
    cfg: &PushConfig,
    window_id: u64,
    steps: &mut Steps,
) -> Result<Value, ActionError> {
    let mut committed = false;
    if cfg.commit_working_set {
        let status = "SELECT count(*) FROM dolt_status";
        let changes = steps
            .time("status", Some(db), column(client, db, status))
            .await?;
        if changes.first().is_some_and(|n| n != "0") {
            let message = format!("doltgres-sidecar: working set at window {window_id}");
            let commit = format!("SELECT dolt_commit('-Am', {})", literal(&message));
            steps
                .time("commit", Some(db), column(client, db, &commit))
                .await?;
            committed = true;
        }
    }
    let mut heads = Map::new();
    for branch in &cfg.branches {
        let head = format!("SELECT dolt_hashof({})", literal(branch));
        let hash = steps
            .time("head", Some(db), column(client, db, &head))
            .await?;
        heads.insert(branch.clone(), json!(hash.first()));
    }
    Ok(json!({ "remote": cfg.remote, "heads": heads, "committed_working_set": committed }))
}
