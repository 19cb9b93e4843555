//! SQL behaviours of Doltgres v1.2.0 that differ from PostgreSQL and that the sidecar's tests had
//! to work around. Each is pinned against the real server; see docs/doltgres-notes.md.

use proxy_tests::TestServer;

/// An aggregate inside an expression over an empty table yields no row at all, where
/// PostgreSQL yields one row (`max` is NULL). A bare `count(*)` still yields its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_expression_over_empty_table_returns_no_row() {
    let server = TestServer::doltgres().await;
    let c = server.connect_direct().await;
    c.batch_execute("CREATE TABLE l (seq INT PRIMARY KEY, c INT NOT NULL)")
        .await
        .unwrap();
    let rows = c
        .query("SELECT coalesce(max(seq), 0) + 1, 5 FROM l", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 0, "PostgreSQL would return one row");
    let rows = c.query("SELECT count(*) FROM l", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    let inserted = c
        .execute(
            "INSERT INTO l SELECT coalesce(max(seq), 0) + 1, 5 FROM l",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 0);
    c.batch_execute("INSERT INTO l VALUES (1, 1)")
        .await
        .unwrap();
    let inserted = c
        .execute(
            "INSERT INTO l SELECT coalesce(max(seq), 0) + 1, 5 FROM l",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1, "with a row present the same statement works");
}
