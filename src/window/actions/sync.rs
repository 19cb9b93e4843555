//! `sync`: `dolt_backup('sync', name)` for every configured database (every branch and working
//! set), in two parts:
//!
//! - before the gate closes (traffic flowing): log in, add the backup when a URL is configured,
//!   and *pre-sync*: run the same `dolt_backup('sync')` until one round is quick. A sync copies
//!   only the chunks the backup lacks (Dolt walks from the source's root and skips what the
//!   destination has), so each round leaves less for the next;
//! - inside the window: record HEAD and the working set's hash, and sync once more. This is the
//!   sync that counts: it sets the backup's root to the server's root at the cut, and copies
//!   only what was written since the last pre-sync began.
//!
//! A pre-sync sets the backup's root too: until the window's own sync ends, the backup holds the
//! state of the last pre-sync — a state made of whole committed transactions (Dolt moves the root
//! once per commit), but not a window's cut. If the window then fails (drain timeout, an error),
//! the backup keeps that state until the next window succeeds; the record's `presync` steps say
//! that it happened.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tokio_postgres::Client;

use super::sql::{column, connect_all, literal, row};
use super::{ActionError, Context};
use crate::config::backup::SyncConfig;
use crate::state::record::Steps;

/// At most this many pre-sync rounds per database.
const PRESYNC_ROUNDS: usize = 3;
/// A pre-sync round this quick leaves too little for another one to be worth its cost: the
/// sync inside the window will copy about what was written during it and the drain.
const PRESYNC_SETTLED: Duration = Duration::from_millis(60);

/// A sync ready for its window: one logged-in connection per database, backup added and
/// pre-synced.
pub struct Prepared {
    cfg: SyncConfig,
    databases: Vec<(Client, String)>,
}

/// Before the gate closes: connects, adds the backup where a URL is configured, and pre-syncs
/// each database.
pub async fn prepare(
    ctx: &Context,
    cfg: &SyncConfig,
    steps: &mut Steps,
) -> Result<Prepared, ActionError> {
    let databases = connect_all(ctx, steps).await?;
    for (client, db) in &databases {
        if let Some(url) = &cfg.url {
            let url = url.replace("{database}", db);
            let sql = format!(
                "SELECT dolt_backup('add', {}, {})",
                literal(&cfg.name),
                literal(&url)
            );
            let added = steps
                .time("backup_add", Some(db), column(client, db, &sql))
                .await;
            if let Err(e) = added {
                // Adding an existing backup fails; anything else is a real error.
                if !e.to_string().contains("already exists") {
                    return Err(e);
                }
            }
        }
    }
    for (client, db) in &databases {
        let sync = sync_sql(cfg);
        for _ in 0..PRESYNC_ROUNDS {
            let start = Instant::now();
            steps
                .time("presync", Some(db), column(client, db, &sync))
                .await?;
            if start.elapsed() < PRESYNC_SETTLED {
                break;
            }
        }
    }
    Ok(Prepared {
        cfg: cfg.clone(),
        databases,
    })
}

/// Inside the window: records each database's HEAD and working set, and syncs it; returns them
/// as the cut.
pub async fn run(prepared: Prepared, steps: &mut Steps) -> Result<Value, ActionError> {
    let cfg = &prepared.cfg;
    let mut cut = Map::new();
    for (client, database) in &prepared.databases {
        let db = database.as_str();
        let hashes = "SELECT dolt_hashof('HEAD'), dolt_hashof_db()";
        let hashes = steps
            .time("head", Some(db), row(client, db, hashes))
            .await?;
        steps
            .time("sync", Some(db), column(client, db, &sync_sql(cfg)))
            .await?;
        cut.insert(
            database.clone(),
            json!({
                "backup": cfg.name,
                "head": hashes.first(),
                "working_set": hashes.get(1),
            }),
        );
    }
    Ok(Value::Object(cut))
}

fn sync_sql(cfg: &SyncConfig) -> String {
    format!("SELECT dolt_backup('sync', {})", literal(&cfg.name))
}
