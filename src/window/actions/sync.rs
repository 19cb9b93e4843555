//! `sync`: `dolt_backup('sync', name)` for every configured database (every branch and working
//! set), adding the backup first when a URL is configured.

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::ActionError;
use super::sql::{column, connect, literal};
use crate::shared::Shared;
use crate::window::config::SyncConfig;

/// Syncs every configured database inside the window; returns each one's head as the cut.
pub async fn run(shared: &Shared, cfg: &SyncConfig) -> Result<Value, ActionError> {
    let mut cut = Map::new();
    for database in &shared.config.backup.databases {
        let client = connect(shared, database).await?;
        cut.insert(
            database.clone(),
            database_sync(&client, database, cfg).await?,
        );
    }
    Ok(Value::Object(cut))
}

async fn database_sync(client: &Client, db: &str, cfg: &SyncConfig) -> Result<Value, ActionError> {
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
