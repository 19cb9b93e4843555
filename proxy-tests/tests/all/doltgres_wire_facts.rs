//! Wire-protocol facts about Doltgres v1.2.0 that the sidecar depends on (startup messages,
//! ReadyForQuery status, command tags, the extended protocol, CancelRequest), each pinned by one
//! test against the real server. If a test here fails after a Doltgres upgrade, the behaviour
//! changed: update `docs/doltgres-notes.md` and check the part of the sidecar that relied on it.
//!
//! The tests log in with [`proxy_tests::raw::RawClient`] straight to the server, then speak the
//! protocol themselves and see every message, unfiltered.

use std::fs;
use std::time::{Duration, Instant};

use proxy_tests::TestServer;
use proxy_tests::facts::{column, raw, value};
use proxy_tests::raw::{RawClient, briefs, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The pid recorded in `<data_dir>/.dolt/sql-server.info` (`pid:port:uuid`).
fn server_pid(server: &TestServer) -> u32 {
    let info = fs::read_to_string(server.data_dir.join(".dolt/sql-server.info")).unwrap();
    info.split(':').next().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Wire level: startup, ReadyForQuery, command tags

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_sends_four_parameter_statuses_then_key_data() {
    let server = TestServer::doltgres().await;
    let session = raw(&server).await;
    let auth: Vec<u32> = session
        .startup
        .iter()
        .filter_map(|m| m.auth_code())
        .collect();
    assert_eq!(auth, [10, 11, 12, 0], "SASL, SASL continue, SASL final, ok");
    let tags: String = session.startup.iter().map(|m| m.tag()).collect();
    assert_eq!(tags, "RRRRSSSSKZ");
    let params: Vec<(String, String)> = session
        .startup
        .iter()
        .filter_map(|m| m.parameter())
        .collect();
    let expected = [
        ("server_version", "15.17"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
        ("in_hot_standby", "off"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(params, expected);
    assert_eq!(session.startup.last().unwrap().ready_status(), Some('I'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_gets_the_same_backend_key_data() {
    let server = TestServer::doltgres().await;
    let key = |s: &RawClient| s.startup.iter().find_map(|m| m.backend_key()).unwrap();
    let first = key(&raw(&server).await);
    let second = key(&raw(&server).await);
    assert_eq!(first, second);
    assert_eq!(
        first.0,
        server_pid(&server),
        "process id is the server's OS pid"
    );
    assert_eq!(first.1, vec![0u8; 4], "secret key is four zero bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_for_query_status_follows_the_transaction() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    s.simple("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let steps = [
        ("SELECT 1", vec!["T", "D", "C(SELECT 1)", "Z(I)"]),
        ("BEGIN", vec!["C(BEGIN)", "Z(T)"]),
        ("INSERT INTO t VALUES (1)", vec!["C(INSERT 0 1)", "Z(T)"]),
        ("SELECT * FROM missing", vec!["E(42P01)", "Z(E)"]),
        ("SELECT 1", vec!["E(25P02)", "Z(E)"]),
        ("ROLLBACK", vec!["C(ROLLBACK)", "Z(I)"]),
        ("START TRANSACTION", vec!["C(BEGIN)", "Z(T)"]),
        ("END", vec!["C(COMMIT)", "Z(I)"]),
        // An error outside a transaction leaves the session idle.
        ("SELECT * FROM missing", vec!["E(42P01)", "Z(I)"]),
        ("", vec!["I", "Z(I)"]),
    ];
    for (sql, expected) in steps {
        assert_eq!(briefs(&s.simple(sql).await), expected, "{sql:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_in_failed_transaction_answers_rollback() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    s.simple("CREATE TABLE t (id INT PRIMARY KEY)").await;
    s.simple("BEGIN").await;
    s.simple("INSERT INTO t VALUES (1)").await;
    assert_eq!(
        briefs(&s.simple("INSERT INTO t VALUES (1)").await),
        ["E(23505)", "Z(E)"]
    );
    assert_eq!(briefs(&s.simple("COMMIT").await), ["C(ROLLBACK)", "Z(I)"]);
    let client = server.connect_direct().await;
    assert_eq!(value(&client, "SELECT count(*) FROM t").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_tags_of_writes_and_dolt_functions() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    let steps = [
        (
            "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)",
            "CREATE TABLE",
        ),
        ("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT 0 2"),
        ("UPDATE t SET v = 'c' WHERE id = 1", "UPDATE 1"),
        ("DELETE FROM t WHERE id = 2", "DELETE 1"),
        ("ALTER TABLE t ADD COLUMN w INT", "ALTER TABLE"),
        ("CREATE INDEX t_w ON t (w)", "CREATE INDEX"),
        ("SELECT dolt_add('.')", "SELECT 1"),
        ("SELECT dolt_commit('-Am', 'm')", "SELECT 1"),
        ("TRUNCATE t", "TRUNCATE"),
        ("DROP TABLE t", "DROP TABLE"),
        ("SET search_path = public", "SET"),
    ];
    for (sql, tag) in steps {
        let messages = s.simple(sql).await;
        let tags: Vec<String> = messages.iter().filter_map(|m| m.command_tag()).collect();
        assert_eq!(tags, [tag], "{sql}: {:?}", briefs(&messages));
        assert_eq!(messages.last().unwrap().ready_status(), Some('I'), "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dolt_functions_must_be_called_with_select_not_call() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    let messages = s
        .simple("CALL dolt_commit('--allow-empty', '-m', 'm')")
        .await;
    assert_eq!(briefs(&messages), ["E(XX000)", "Z(I)"]);
    assert_eq!(
        messages[0].field('M').unwrap(),
        "Dolt stored procedure may only be invoked using SELECT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_query_is_one_implicit_transaction() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    s.simple("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let messages = s
        .simple("INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)")
        .await;
    assert_eq!(briefs(&messages), ["C(INSERT 0 1)", "E(23505)", "Z(I)"]);
    let client = server.connect_direct().await;
    assert_eq!(
        value(&client, "SELECT count(*) FROM t").await,
        "0",
        "first INSERT rolled back"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Extended protocol: implicit transactions and pipelined Syncs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_batch_up_to_sync_is_one_implicit_transaction() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    s.simple("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let client = server.connect_direct().await;

    // Two statements that succeed, one Sync: both committed.
    let batch = [
        frontend::run("INSERT INTO t VALUES (1)"),
        frontend::run("INSERT INTO t VALUES (2)"),
        frontend::sync(),
    ];
    s.send(&batch.concat()).await;
    let expected = ["1", "2", "C(INSERT 0 1)", "1", "2", "C(INSERT 0 1)", "Z(I)"];
    assert_eq!(briefs(&s.until_ready().await), expected);
    assert_eq!(value(&client, "SELECT count(*) FROM t").await, "2");

    // The second statement fails: the first is rolled back with it.
    let batch = [
        frontend::run("INSERT INTO t VALUES (3)"),
        frontend::run("INSERT INTO t VALUES (3)"),
        frontend::sync(),
    ];
    s.send(&batch.concat()).await;
    let expected = ["1", "2", "C(INSERT 0 1)", "1", "2", "E(23505)", "Z(I)"];
    assert_eq!(briefs(&s.until_ready().await), expected);
    assert_eq!(value(&client, "SELECT count(*) FROM t").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_syncs_each_get_ready_for_query() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    s.simple("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let pipeline = [
        frontend::run("INSERT INTO t VALUES (1)"),
        frontend::sync(),
        frontend::run("INSERT INTO t VALUES (1)"),
        frontend::sync(),
        frontend::run("INSERT INTO t VALUES (2)"),
        frontend::sync(),
    ];
    s.send(&pipeline.concat()).await;
    assert_eq!(
        briefs(&s.until_ready().await),
        ["1", "2", "C(INSERT 0 1)", "Z(I)"]
    );
    assert_eq!(
        briefs(&s.until_ready().await),
        ["1", "2", "E(23505)", "Z(I)"]
    );
    assert_eq!(
        briefs(&s.until_ready().await),
        ["1", "2", "C(INSERT 0 1)", "Z(I)"]
    );
    let client = server.connect_direct().await;
    assert_eq!(
        column(&client, "SELECT id FROM t ORDER BY id").await,
        ["1", "2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_in_an_extended_batch_keeps_the_transaction_open() {
    let server = TestServer::doltgres().await;
    let mut s = raw(&server).await;
    s.simple("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let batch = [
        frontend::run("BEGIN"),
        frontend::run("INSERT INTO t VALUES (1)"),
        frontend::sync(),
    ];
    s.send(&batch.concat()).await;
    let expected = ["1", "2", "C(BEGIN)", "1", "2", "C(INSERT 0 1)", "Z(T)"];
    assert_eq!(briefs(&s.until_ready().await), expected);
    // An error in a later batch fails the explicit transaction: the batch ends at E.
    s.send(&[frontend::run("SELECT * FROM missing"), frontend::sync()].concat())
        .await;
    assert_eq!(briefs(&s.until_ready().await), ["E(42P01)", "Z(E)"]);
    assert_eq!(briefs(&s.simple("ROLLBACK").await), ["C(ROLLBACK)", "Z(I)"]);
}

// ---------------------------------------------------------------------------------------------
// 3. CancelRequest

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_is_ignored() {
    let server = TestServer::doltgres().await;
    let session = raw(&server).await;
    let (pid, secret) = session
        .startup
        .iter()
        .find_map(|m| m.backend_key())
        .unwrap();

    // A CancelRequest connection is closed at once, without a byte in answer.
    let mut cancel = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    cancel
        .write_all(&frontend::cancel_request(pid, &secret))
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), cancel.read_to_end(&mut answer))
        .await
        .expect("cancel connection left open")
        .expect("cancel connection reset");
    assert!(answer.is_empty(), "{answer:?}");

    // A running query is not cancelled.
    let client = server.connect_direct().await;
    let token = client.cancel_token();
    let started = Instant::now();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(3)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("sending the cancel request");
    let result = query.await.unwrap();
    assert!(result.is_ok(), "query was cancelled: {result:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Startup anomalies: Doltgres stays silent where PostgreSQL answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_anomalies_meet_silence_or_are_let_through() {
    use proxy_tests::startup_probe::{
        Case, End, GSS, SSL, account, packet, probe, startup_message,
    };
    let server = TestServer::doltgres().await;
    let v3 = 3 << 16;
    let login = startup_message(v3, &[("user", "postgres")]);
    let sasl = "R \"\\0\\0\\0\\nSCRAM-SHA-256\\0\\0\"";
    let cases: Vec<(Case, Vec<&str>, End)> = vec![
        (Case::new("length 4", &[&[0, 0, 0, 4]]), vec![], End::Eof),
        (
            Case::new("length 0xffffffff", &[&[0xff; 4]]),
            vec![],
            End::Eof,
        ),
        (
            Case::new(
                "Terminate first",
                &[&[&b"X\0\0\0\x04"[..], &login].concat()],
            ),
            vec![],
            End::Eof,
        ),
        // PostgreSQL answers these three with 0A000 or NegotiateProtocolVersion.
        (
            Case::new("protocol 2.0", &[&packet(8, 2 << 16, &[])]),
            vec![],
            End::Eof,
        ),
        (
            Case::new("protocol 4.0", &[&packet(8, 4 << 16, &[])]),
            vec![],
            End::Eof,
        ),
        (
            Case::new(
                "protocol 3.9",
                &[&startup_message(v3 | 9, &[("user", "postgres")])],
            ),
            vec![],
            End::Eof,
        ),
        // PostgreSQL refuses a second SSLRequest with 0A000; Doltgres answers it again.
        (
            Case::new("SSLRequest twice", &[SSL, SSL]),
            vec!["byte N", "byte N"],
            End::Open,
        ),
        (
            Case::new("GSSENCRequest", &[GSS]),
            vec!["byte N"],
            End::Open,
        ),
        // PostgreSQL refuses bytes sent ahead of its answer (08P01); Doltgres reads them on.
        (
            Case::new("data after SSLRequest", &[&[SSL, &login].concat()]),
            vec!["byte N", sasl],
            End::Open,
        ),
        // PostgreSQL answers 28000 for both.
        (
            Case::new("no user", &[&packet(9, v3, &[0])]),
            vec![],
            End::Eof,
        ),
        (
            Case::new("empty user", &[&startup_message(v3, &[("user", "")])]),
            vec![sasl],
            End::Open,
        ),
        (
            Case::new(
                "CancelRequest",
                &[&packet(16, 80_877_102, &[0, 0, 0, 1, 0, 0, 0, 2])],
            ),
            vec![],
            End::Eof,
        ),
    ];
    for (case, expected, end) in cases {
        let outcome = probe(&server.addr(), &case, Duration::from_secs(2)).await;
        assert_eq!(
            (account(&outcome.bytes, false), outcome.end),
            (expected.iter().map(|s| s.to_string()).collect(), end),
            "{}",
            case.name
        );
    }
}
