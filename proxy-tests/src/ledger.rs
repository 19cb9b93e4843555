//! The ledger the proofs write: `ledger (seq INT PRIMARY KEY, client INT)`, appended one row per
//! transaction (`max(seq) + 1`), so a restored copy or a restarted server shows at a glance
//! whether any acknowledged commit is missing (a gap, or fewer rows than acknowledged).

use crate::facts::exec;

/// What one append on a fresh connection came to.
#[derive(Debug)]
pub enum Append {
    Committed,
    /// Lost a write race against another appender (retry).
    Conflict,
    /// The connection or login failed: nothing was sent.
    NotConnected(tokio_postgres::Error),
    /// Anything else: the caller decides whether it is expected.
    Failed(tokio_postgres::Error),
}

/// Creates the ledger with its row 0 (on an empty table Doltgres returns no row for
/// `max(seq) + 1, …`: see doltgres_sql_facts.rs).
pub async fn create(client: &tokio_postgres::Client) {
    exec(
        client,
        "CREATE TABLE ledger (seq INT PRIMARY KEY, client INT NOT NULL)",
    )
    .await;
    exec(client, "INSERT INTO ledger VALUES (0, -1)").await;
}

/// Connects and appends one row as `client_id`, in one transaction.
pub async fn append_once(config: &tokio_postgres::Config, client_id: u64) -> Append {
    let client = match crate::server_connect(config).await {
        Ok(client) => client,
        Err(e) => return Append::NotConnected(e),
    };
    let sql = format!(
        "BEGIN; INSERT INTO ledger SELECT coalesce(max(seq), 0) + 1, {client_id} FROM ledger; COMMIT"
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Append::Committed,
        Err(e) => {
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            if code == "23505" || code == "40001" || e.to_string().contains("conflict") {
                Append::Conflict
            } else {
                Append::Failed(e)
            }
        }
    }
}
