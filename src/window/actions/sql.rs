//! The actions' own connections to the upstream (not through the proxy, so the gate never holds
//! them), with the relay's TLS settings, and the small SQL helpers they share.

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::ActionError;
use crate::shared::Shared;
use crate::tls::UpstreamTlsMode;

pub(super) async fn connect(shared: &Shared, database: &str) -> Result<Client, ActionError> {
    let backup = &shared.config.backup;
    let upstream = &shared.config.upstream;
    // `upstream` was validated as host:port when the configuration was resolved.
    let bad_address = || ActionError::Sql {
        database: database.to_string(),
        message: format!("upstream {upstream:?} is not host:port"),
    };
    let (host, port) = upstream.rsplit_once(':').ok_or_else(bad_address)?;
    let port: u16 = port.parse().map_err(|_| bad_address())?;
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
        .port(port)
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
pub(super) fn sql_error(database: &str) -> impl Fn(tokio_postgres::Error) -> ActionError {
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

/// Runs a query and returns the first column of each row as text.
pub(super) async fn column(
    client: &Client,
    database: &str,
    sql: &str,
) -> Result<Vec<String>, ActionError> {
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
