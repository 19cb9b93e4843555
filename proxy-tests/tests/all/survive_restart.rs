//! Sessions that outlive their server connection: in managed mode (proxy authentication by
//! default) a session idle when Doltgres restarts — for a copy window, or after a crash — keeps
//! its client connection, and its next request runs on a new server connection that was logged in
//! on its behalf and given its state again (settings, branch, named prepared statements).
//! Sessions whose state cannot be rebuilt, and sessions inside a transaction, are told.

use std::time::{Duration, Instant};

use proxy_tests::facts::exec;
use proxy_tests::facts::first;
use proxy_tests::managed::{ManagedProxy, assert_commit_lost};
use proxy_tests::raw::{RawClient, briefs, frontend};

/// Longer than the join grace, so a copy window treats the sessions as long idle.
const IDLE: Duration = Duration::from_millis(1300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_keep_settings_branch_and_prepared_statements_across_copy_windows() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let setup = m.connect().await;
    exec(
        &setup,
        "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'main')",
    )
    .await;
    // Committed, so that a branch made from HEAD has the table.
    first(&setup, "SELECT dolt_commit('-Am', 'seed')").await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let c = m.connect().await;
        c.batch_execute(&format!("SET app.who = 'client-{i}'"))
            .await
            .unwrap();
        let statement = c
            .prepare("SELECT v || '-' || $1::text FROM t WHERE id = 1")
            .await
            .unwrap();
        clients.push((c, statement));
    }
    // One session on a branch of its own.
    let branch = m.connect().await;
    first(&branch, "SELECT dolt_checkout('-b', 'feat')").await;
    exec(&branch, "UPDATE t SET v = 'feat' WHERE id = 1").await;
    // A raw session with a named statement made through Parse.
    let mut raw = m.raw().await;
    let mut parse = frontend::parse("kept", "SELECT 40 + 2");
    parse.extend(frontend::sync());
    raw.send(&parse).await;
    assert_eq!(briefs(&raw.until_ready().await), ["1", "Z(I)"]);

    for _ in 0..3 {
        tokio::time::sleep(IDLE).await;
        m.copy_window().await;
    }

    for (i, (c, statement)) in clients.iter().enumerate() {
        assert_eq!(first(c, "SHOW app.who").await, format!("client-{i}"));
        let rows = c.query(statement, &[&format!("{i}")]).await.unwrap();
        let v: String = rows[0].get(0);
        assert_eq!(
            v,
            format!("main-{i}"),
            "the statement prepared before the windows"
        );
    }
    assert_eq!(first(&branch, "SELECT active_branch()").await, "feat");
    assert_eq!(first(&branch, "SELECT v FROM t WHERE id = 1").await, "feat");
    let mut run = frontend::bind("", "kept");
    run.extend(frontend::execute(""));
    run.extend(frontend::sync());
    raw.send(&run).await;
    assert_eq!(
        briefs(&raw.until_ready().await),
        ["2", "D", "C(SELECT 1)", "Z(I)"]
    );

    assert_eq!(
        m.proxy
            .metric("doltgres_sidecar_server_restarts_total{cause=\"copy\"}")
            .await,
        3.0
    );
    let ended = m
        .proxy
        .metric("doltgres_sidecar_sessions_ended_total{reason=\"restart_without_replay\"}");
    assert_eq!(ended.await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holding_a_temp_table_is_ended_with_57p01_naming_it() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let keeps = m.connect().await;
    keeps.batch_execute("SET app.x = '1'").await.unwrap();
    let mut temp = m.raw().await;
    temp.send(&frontend::query("CREATE TEMP TABLE scratch (a int)"))
        .await;
    assert_eq!(
        briefs(&temp.until_ready().await),
        ["C(CREATE TABLE)", "Z(I)"]
    );
    tokio::time::sleep(IDLE).await;
    m.copy_window().await;
    // As PostgreSQL ends a session it terminates: a FATAL error, then the close.
    let closed = tokio::time::timeout(Duration::from_secs(30), temp.until_end())
        .await
        .expect("the session was not ended");
    let fatal = closed
        .messages
        .iter()
        .find(|m| m.tag == b'E')
        .expect("an error");
    assert_eq!(fatal.sqlstate().as_deref(), Some("57P01"));
    let text = fatal.text().unwrap_or_default();
    assert!(text.contains("a temporary table"), "{text}");
    assert_eq!(
        first(&keeps, "SHOW app.x").await,
        "1",
        "the other session went on"
    );
    let reason = "doltgres_sidecar_sessions_ended_total{reason=\"unreplayable_temp_table\"}";
    assert_eq!(m.proxy.metric(reason).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_idle_sessions_go_on_and_a_transaction_is_told() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let setup = m.connect().await;
    exec(&setup, "CREATE TABLE k (id int primary key)").await;
    let idle = m.connect().await;
    idle.batch_execute("SET app.y = 'kept'").await.unwrap();
    let in_txn = m.connect().await;
    exec(&in_txn, "BEGIN; INSERT INTO k VALUES (1)").await;
    m.kill_server();
    assert_commit_lost(&in_txn).await;
    m.crash_noticed().await;
    // The idle session's next query waits for the restart, then runs with its setting.
    let started = Instant::now();
    assert_eq!(first(&idle, "SHOW app.y").await, "kept");
    assert_eq!(
        first(&idle, "SELECT count(*) FROM k").await,
        "0",
        "nothing uncommitted"
    );
    println!(
        "idle session answered {:?} after the crash",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_while_the_server_is_down_waits_and_runs() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let mut raw: RawClient = m.raw().await;
    raw.send(&frontend::query("SET app.z = 'z'")).await;
    raw.until_ready().await;
    m.kill_server();
    // Sent once the server is gone, before it is back.
    m.crash_noticed().await;
    raw.send(&frontend::query("SHOW app.z")).await;
    let answer = tokio::time::timeout(Duration::from_secs(60), raw.until_ready())
        .await
        .expect("no answer within 60 s");
    assert_eq!(briefs(&answer), ["T", "D", "C(SHOW)", "Z(I)"]);
    assert!(answer[1].body.ends_with(b"z"));
}
