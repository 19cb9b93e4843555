//! `push`, in three parts:
//!
//! - before the gate closes (traffic flowing): log in to each database, make sure the remote
//!   exists, and read the connection's branch;
//! - inside the window (the cut): optionally record a Dolt commit of the working set (a clean
//!   working set answers "nothing to commit"), and take each branch's head — for the branch
//!   just committed to, the new commit's hash;
//! - after traffic resumes: `dolt_push` each branch.

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::sql::{column, connect_all, literal};
use super::{ActionError, Context};
use crate::config::backup::PushConfig;
use crate::state::record::Steps;

/// A push ready for its window: one logged-in connection per database, remote in place.
pub struct Prepared {
    cfg: PushConfig,
    databases: Vec<Database>,
}

struct Database {
    client: Client,
    name: String,
    /// The connection's branch: the one its `dolt_commit` commits to.
    branch: Option<String>,
}

/// Work a window leaves for after traffic resumes: the transfer of a push, whose cut (commit and
/// head hashes) was taken inside the window.
pub struct Transfer {
    cfg: PushConfig,
    pushes: Vec<(Client, String)>,
}

/// Before the gate closes: connects to every configured database and adds the remote where it
/// is missing and a URL is configured.
pub async fn prepare(
    ctx: &Context,
    cfg: &PushConfig,
    steps: &mut Steps,
) -> Result<Prepared, ActionError> {
    let mut databases = Vec::new();
    for (client, name) in connect_all(ctx, steps).await? {
        let db = name.as_str();
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
        let branch = if cfg.commit_working_set {
            let active = "SELECT active_branch()";
            steps
                .time("branch", Some(db), column(&client, db, active))
                .await?
                .into_iter()
                .next()
        } else {
            None
        };
        databases.push(Database {
            client,
            name,
            branch,
        });
    }
    Ok(Prepared {
        cfg: cfg.clone(),
        databases,
    })
}

/// Inside the window: takes the cut of every configured database; returns it and the transfer
/// still to do.
pub async fn cut(
    prepared: Prepared,
    window_id: u64,
    steps: &mut Steps,
) -> Result<(Value, Transfer), ActionError> {
    let mut cut = Map::new();
    for database in &prepared.databases {
        cut.insert(
            database.name.clone(),
            database_cut(database, &prepared.cfg, window_id, steps).await?,
        );
    }
    let pushes = prepared
        .databases
        .into_iter()
        .map(|d| (d.client, d.name))
        .collect();
    let cfg = prepared.cfg;
    Ok((Value::Object(cut), Transfer { cfg, pushes }))
}

/// Pushes each branch once traffic flows again, and records in `cut` which head went out. It
/// equals the cut unless a client made a Dolt commit after the window; either is a consistent
/// snapshot, since a Dolt commit is one.
pub async fn transfer(
    transfer: Transfer,
    cut: &mut Value,
    steps: &mut Steps,
) -> Result<(), ActionError> {
    let cfg = &transfer.cfg;
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
    database: &Database,
    cfg: &PushConfig,
    window_id: u64,
    steps: &mut Steps,
) -> Result<Value, ActionError> {
    let (client, db) = (&database.client, database.name.as_str());
    // The new commit's hash, which is now its branch's head.
    let mut commit = None;
    if cfg.commit_working_set {
        let message = format!("doltgres-sidecar: working set at window {window_id}");
        let sql = format!("SELECT dolt_commit('-Am', {})", literal(&message));
        match steps
            .time("commit", Some(db), column(client, db, &sql))
            .await
        {
            Ok(hash) => commit = hash.into_iter().next(),
            // A clean working set: nothing to record.
            Err(e) if e.to_string().contains("nothing to commit") => {}
            Err(e) => return Err(e),
        }
    }
    let mut heads = Map::new();
    for branch in &cfg.branches {
        let hash = match &commit {
            Some(hash) if database.branch.as_ref() == Some(branch) => Some(hash.clone()),
            _ => {
                let head = format!("SELECT dolt_hashof({})", literal(branch));
                let hash = steps
                    .time("head", Some(db), column(client, db, &head))
                    .await?;
                hash.into_iter().next()
            }
        };
        heads.insert(branch.clone(), json!(hash));
    }
    let committed = commit.is_some();
    Ok(json!({ "remote": cfg.remote, "heads": heads, "committed_working_set": committed }))
}
