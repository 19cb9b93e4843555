//! Helpers shared by the Doltgres fact tests (`tests/doltgres_*_facts.rs`): a raw session straight
//! to the server, connections to other databases, and one-line reads of query results.

use tokio_postgres::SimpleQueryMessage;

use crate::TestServer;
use crate::raw::RawClient;

/// A raw session logged in straight to the server (no proxy in between).
pub async fn raw(server: &TestServer) -> RawClient {
    RawClient::login(&server.addr(), server).await
}

/// A tokio-postgres connection to `database` on the server.
pub async fn connect_to(server: &TestServer, database: &str) -> tokio_postgres::Client {
    let mut config = server.config_at(&server.addr());
    config.dbname(database);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {database}: {e}"));
    tokio::spawn(connection);
    client
}

/// The first column of every row `sql` returns, as text (simple protocol).
pub async fn column(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

/// The first column of the first row `sql` returns.
pub async fn first(client: &tokio_postgres::Client, sql: &str) -> String {
    column(client, sql)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// The single value `sql` returns.
pub async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    let values = column(client, sql).await;
    assert_eq!(values.len(), 1, "{sql} returned {values:?}");
    values.into_iter().next().unwrap()
}
