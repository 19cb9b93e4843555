//! The relay against real servers: what clients see through the proxy is what they would see
//! directly.

use std::process::Command;
use std::time::Duration;

use proxy_tests::facts::exec;
use proxy_tests::{TestProxy, TestServer, both_servers};
use tokio_postgres::error::SqlState;

both_servers!(psql_runs_a_query);
async fn psql_runs_a_query(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let out = Command::new("psql")
        .arg(server.conninfo_at(&proxy.addr))
        .args([
            "-X",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SELECT 40 + 2 AS answer",
        ])
        .output()
        .expect("cannot run psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}

both_servers!(simple_and_extended_queries);
async fn simple_and_extended_queries(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let client = server.connect_at(&proxy.addr).await;
    let rows = client.simple_query("SELECT 'simple' AS s").await.unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
            _ => None,
        })
        .unwrap();
    assert_eq!(row, "simple");
    let row = client
        .query_one("SELECT $1::int4 + 1", &[&41i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let stmt = client.prepare("SELECT $1::text || '!'").await.unwrap();
    for word in ["a", "b"] {
        let row = client.query_one(&stmt, &[&word]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), format!("{word}!"));
    }
}

both_servers!(writes_reach_the_server);
async fn writes_reach_the_server(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let mut client = server.connect_at(&proxy.addr).await;
    exec(
        &client,
        "CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .await;
    client
        .execute("INSERT INTO items VALUES (1, 'one')", &[])
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO items VALUES ($1, $2)", &[&2i32, &"two"])
        .await
        .unwrap();
    tx.execute("UPDATE items SET name = 'uno' WHERE id = 1", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO items VALUES (3, 'rolled back')", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let direct = server.connect_direct().await;
    let rows = direct
        .query("SELECT id, name FROM items ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "uno".to_string()), (2, "two".to_string())]);
}

both_servers!(wrong_password_is_refused_by_the_server);
async fn wrong_password_is_refused_by_the_server(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let mut config = server.config_at(&proxy.addr);
    config.password("not-the-password");
    let err = config
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("login must fail");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    // The proxy keeps serving.
    let client = server.connect_at(&proxy.addr).await;
    client.simple_query("SELECT 1").await.unwrap();
}

both_servers!(fifty_concurrent_clients);
async fn fifty_concurrent_clients(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let mut tasks = Vec::new();
    for i in 0..50i32 {
        let config = server.config_at(&proxy.addr);
        tasks.push(tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let mut sum = 0;
            for j in 0..5i32 {
                let row = client
                    .query_one("SELECT $1::int4 * 10 + $2::int4", &[&i, &j])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i32>(0), i * 10 + j);
                sum += row.get::<_, i32>(0);
            }
            sum
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let expected: i32 = (0..50).flat_map(|i| (0..5).map(move |j| i * 10 + j)).sum();
    assert_eq!(total, expected);
}

both_servers!(vanished_client_does_not_disturb_others);
async fn vanished_client_does_not_disturb_others(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let other = server.connect_at(&proxy.addr).await;
    let (doomed, conn) = server
        .config_at(&proxy.addr)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn_task = tokio::spawn(conn);
    let query = tokio::spawn(async move { doomed.simple_query("SELECT pg_sleep(3)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Dropping the connection future closes the socket with the query still running.
    conn_task.abort();
    assert!(query.await.unwrap().is_err());
    for i in 0..3i32 {
        let row = other.query_one("SELECT $1::int4", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i);
    }
    let fresh = server.connect_at(&proxy.addr).await;
    fresh.simple_query("SELECT 1").await.unwrap();
}

both_servers!(upstream_down_then_back);
async fn upstream_down_then_back(mut server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let before = server.connect_at(&proxy.addr).await;
    before.simple_query("SELECT 1").await.unwrap();
    server.stop();

    // The open session learns that its server is gone.
    let err = before
        .simple_query("SELECT 1")
        .await
        .expect_err("server is down");
    assert!(before.is_closed(), "session must be closed: {err}");

    // A new client gets a clear error with SQLSTATE 08006.
    let err = server.connect_error_at(&proxy.addr).await;
    assert_eq!(err.code(), Some(&SqlState::CONNECTION_FAILURE), "{err}");
    let db = err.as_db_error().unwrap();
    assert!(
        db.message()
            .contains("could not connect to the upstream server"),
        "{db:?}"
    );

    server.start().await;
    let after = server.connect_at(&proxy.addr).await;
    after.simple_query("SELECT 1").await.unwrap();
}
