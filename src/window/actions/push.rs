//! `push`: inside the window, make sure the remote exists, optionally record a Dolt commit of the
//! working set, and take each branch's head as the cut; after traffic resumes, `dolt_push` each
//! branch.

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::ActionError;
use super::sql::{column, connect, literal};
use crate::shared::Shared;
use crate::window::config::PushConfig;

/// Work a window leaves for after traffic resumes: the transfer of a push, whose cut (commit and
/// head hashes) was taken inside the window.
pub struct Transfer {
    pushes: Vec<(Client, String)>,
}

/// Takes the cut of every configured database; returns it and the transfer still to do.
pub async fn cut(
    shared: &Shared,
    cfg: &PushConfig,
    window_id: u64,
) -> Result<(Value, Transfer), ActionError> {
    let mut cut = Map::new();
    let mut pushes = Vec::new();
    for database in &shared.config.backup.databases {
        let client = connect(shared, database).await?;
        cut.insert(
            database.clone(),
            database_cut(&client, database, cfg, window_id).await?,
        );
        pushes.push((client, database.clone()));
    }
    Ok((Value::Object(cut), Transfer { pushes }))
}

/// Pushes each branch once traffic flows again, and records in `cut` which head went out. It
/// equals the cut unless a client made a Dolt commit after the window; either is a consistent
/// snapshot, since a Dolt commit is one.
pub async fn transfer(
    cfg: &PushConfig,
    transfer: Transfer,
    cut: &mut Value,
) -> Result<(), ActionError> {
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

/// Inside the window: make sure the remote exists, optionally commit the working set, and record
/// each branch's head.
async fn database_cut(
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
