//! One-line SQL helpers for the tests: a raw session straight to the server, connections to other
//! databases, statements that must succeed, and reads of query results.

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

/// Runs `sql` (one or more statements, simple protocol), which must succeed.
pub async fn exec(client: &tokio_postgres::Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
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

/// Runs psql (no psqlrc, tuples only, unaligned, stop on error) with `conninfo` and returns (success, stdout, stderr).
pub fn psql(conninfo: &str, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("cannot run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// What psql printed for `sql` at `conninfo`, which must succeed.
pub fn psql_answer(conninfo: &str, sql: &str) -> String {
    let (ok, out, err) = psql(conninfo, sql);
    assert!(ok, "psql {conninfo:?} {sql:?}: {err}");
    out
}

/// What psql printed on its error stream for `sql` at `conninfo`, which must fail.
pub fn psql_refused(conninfo: &str, sql: &str) -> String {
    let (ok, out, err) = psql(conninfo, sql);
    assert!(
        !ok,
        "psql {conninfo:?} {sql:?} was expected to fail, and printed {out:?}"
    );
    err
}
