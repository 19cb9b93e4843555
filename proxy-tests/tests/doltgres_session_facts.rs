//! What Doltgres v1.2.0 does with session state, which the sidecar tracks to replay it on a new
//! connection after a server restart (`src/replay/`). Pinned against the real server; see
//! docs/doltgres-notes.md.

use proxy_tests::TestServer;
use proxy_tests::raw::{RawClient, briefs, frontend};

/// Runs `sql` and returns the briefs of the answer and the first column of each row.
async fn run(c: &mut RawClient, sql: &str) -> (Vec<String>, Vec<String>) {
    let messages = c.simple(sql).await;
    let rows = messages
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            // One column: count (2 bytes), length (4 bytes), value.
            String::from_utf8_lossy(&m.body[6..]).into_owned()
        })
        .collect();
    (briefs(&messages), rows)
}

async fn show(c: &mut RawClient, name: &str) -> String {
    run(c, &format!("SHOW {name}")).await.1.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_survives_the_rollback_of_its_transaction() {
    let server = TestServer::doltgres().await;
    let mut c = RawClient::login(&server.addr(), &server).await;
    let (answer, _) = run(&mut c, "SET a.b = 1; SELECT 1/0").await;
    assert_eq!(answer, ["C(SET)", "E(22012)", "Z(I)"]);
    assert_eq!(
        show(&mut c, "a.b").await,
        "1",
        "PostgreSQL would have undone it"
    );
    run(&mut c, "BEGIN; SET a.b = 2; ROLLBACK").await;
    assert_eq!(show(&mut c, "a.b").await, "2", "PostgreSQL would show 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_reports_no_session_authorization_where_postgresql_does() {
    let names = |c: &RawClient| -> Vec<String> {
        c.startup
            .iter()
            .filter_map(|m| m.parameter())
            .map(|(n, _)| n)
            .collect()
    };
    let doltgres = TestServer::doltgres().await;
    let c = RawClient::login(&doltgres.addr(), &doltgres).await;
    assert_eq!(
        names(&c),
        [
            "server_version",
            "client_encoding",
            "standard_conforming_strings",
            "in_hot_standby"
        ]
    );
    let postgres = TestServer::postgres().await;
    let c = RawClient::login(&postgres.addr(), &postgres).await;
    assert!(names(&c).iter().any(|n| n == "session_authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_guarded_by_dolt_branches_switches_only_to_a_branch() {
    let server = TestServer::doltgres().await;
    let mut c = RawClient::login(&server.addr(), &server).await;
    run(&mut c, "SELECT dolt_checkout('-b', 'feat')").await;
    run(&mut c, "SELECT dolt_checkout('main')").await;
    let guarded = "SELECT dolt_checkout('feat') FROM dolt_branches WHERE name = 'feat'";
    let (answer, _) = run(&mut c, guarded).await;
    assert_eq!(answer, ["T", "D", "C(SELECT 1)", "Z(I)"]);
    assert_eq!(run(&mut c, "SELECT active_branch()").await.1, ["feat"]);
    let missing = "SELECT dolt_checkout('nope') FROM dolt_branches WHERE name = 'nope'";
    let (answer, _) = run(&mut c, missing).await;
    assert_eq!(answer, ["T", "C(SELECT 0)", "Z(I)"], "no call, no error");
    assert_eq!(run(&mut c, "SELECT active_branch()").await.1, ["feat"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_of_a_branch_database_is_answered_set() {
    let server = TestServer::doltgres().await;
    let mut c = RawClient::login(&server.addr(), &server).await;
    run(&mut c, "SELECT dolt_branch('feat')").await;
    let (answer, _) = run(&mut c, "USE \"postgres/feat\"").await;
    assert_eq!(answer, ["C(SET)", "Z(I)"]);
    assert_eq!(
        run(&mut c, "SELECT current_database()").await.1,
        ["postgres/feat"]
    );
    assert_eq!(run(&mut c, "SELECT active_branch()").await.1, ["feat"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn which_session_statements_exist() {
    let server = TestServer::doltgres().await;
    let mut c = RawClient::login(&server.addr(), &server).await;
    for (sql, answer) in [
        ("RESET ALL", "E(XX000)"),
        ("PREPARE q AS SELECT 1", "E(XX000)"),
        ("LISTEN ch", "E(42601)"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "E(XX000)"),
        ("SET SESSION AUTHORIZATION postgres", "E(XX000)"),
        ("SET ROLE postgres", "E(XX000)"),
        ("CREATE TEMP TABLE tt (a int)", "C(CREATE TABLE)"),
        ("DISCARD ALL", "C(DISCARD)"),
        ("DEALLOCATE ALL", "C(DEALLOCATE ALL)"),
        (" ; ", "I"),
    ] {
        assert_eq!(run(&mut c, sql).await.0[0], answer, "{sql}");
    }
    assert_eq!(run(&mut c, "SELECT pg_advisory_lock(1)").await.1, ["t"]);
    let mut batch = frontend::parse("s1", "SELECT 42");
    batch.extend(frontend::sync());
    c.send(&batch).await;
    assert_eq!(
        briefs(&c.until_ready().await),
        ["1", "Z(I)"],
        "named statements exist"
    );
}
