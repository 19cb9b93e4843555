//! The actions' own connections to the upstream (not through the proxy, so the gate never holds
//! them), with the relay's TLS settings, and the small SQL helpers they share.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{ActionError, Context};
use crate::state::record::Steps;
use crate::upstream::{Login, describe_sql_error};

pub(super) async fn connect(ctx: &Context, database: &str) -> Result<Client, ActionError> {
    let backup = &ctx.config.backup;
    let login = Login {
        user: &backup.user,
        password: backup.password(),
        database,
    };
    ctx.upstream
        .sql(&login)
        .await
        .map_err(|message| ActionError::Sql {
            database: database.to_string(),
            message,
        })
}

/// A connection to every configured database (`backup.databases`), each timed as a `connect`
/// step, in order.
pub(super) async fn connect_all(
    ctx: &Context,
    steps: &mut Steps,
) -> Result<Vec<(Client, String)>, ActionError> {
    let mut clients = Vec::new();
    for database in &ctx.config.backup.databases {
        let client = steps
            .time("connect", Some(database), connect(ctx, database))
            .await?;
        clients.push((client, database.clone()));
    }
    Ok(clients)
}

/// Keeps the server's SQLSTATE and message: tokio-postgres's own Display says only "db error".
pub(super) fn sql_error(database: &str) -> impl Fn(tokio_postgres::Error) -> ActionError {
    let database = database.to_string();
    move |e| ActionError::Sql {
        database: database.clone(),
        message: describe_sql_error(&e),
    }
}

/// A SQL string literal.
pub(super) fn literal(text: &str) -> String {
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

/// Runs a query over the simple protocol; its errors name the database.
async fn simple(
    client: &Client,
    database: &str,
    sql: &str,
) -> Result<Vec<SimpleQueryMessage>, ActionError> {
    client.simple_query(sql).await.map_err(sql_error(database))
}

/// Runs a query and returns the first column of each row as text.
pub(super) async fn column(
    client: &Client,
    database: &str,
    sql: &str,
) -> Result<Vec<String>, ActionError> {
    let messages = simple(client, database, sql).await?;
    Ok(crate::upstream::first_column(&messages))
}

/// Runs a query and returns every column of its first row as text (`None` for NULL).
pub(super) async fn row(
    client: &Client,
    database: &str,
    sql: &str,
) -> Result<Vec<Option<String>>, ActionError> {
    let messages = simple(client, database, sql).await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::literal;
    use crate::upstream::quote_ident as ident;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("t"), "\"t\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("main"), "'main'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("file:///tmp/x"), "'file:///tmp/x'");
    }
}
