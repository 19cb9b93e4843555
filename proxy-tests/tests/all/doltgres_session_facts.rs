//! What Doltgres v1.2.0 does with session state, which the sidecar tracks to replay it on a new
//! connection after a server restart (`src/replay/`). Pinned against the real server; see
//! docs/doltgres-notes.md.

use proxy_tests::TestServer;
use proxy_tests::facts::exec;
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

/// The ParameterStatus messages in an answer, as `name=value`.
fn reported(messages: &[proxy_tests::raw::Msg]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m.parameter())
        .map(|(n, v)| format!("{n}={v}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_changes_the_session_and_no_parameter_status_reports_a_change() {
    let server = TestServer::doltgres().await;
    let mut c = RawClient::login(&server.addr(), &server).await;
    for sql in [
        "SELECT set_config('search_path', 's2', false)",
        "SELECT set_config('TimeZone', 'Asia/Kolkata', false)",
        "SET TimeZone = 'UTC'",
        "SET DateStyle = 'German'",
        "SET search_path = s3",
    ] {
        let answer = c.simple(sql).await;
        assert!(reported(&answer).is_empty(), "{sql}: {:?}", briefs(&answer));
    }
    run(
        &mut c,
        "SELECT set_config('TIMEZONE', 'Asia/Kolkata', false)",
    )
    .await;
    assert_eq!(show(&mut c, "TimeZone").await, "Asia/Kolkata", "any case");
    let (_, now) = run(&mut c, "SELECT now()::text").await;
    assert!(now[0].ends_with("+05:30"), "{now:?}");
    // set_config(..., true) is refused outright: a local setting never outlives its statement.
    let answer = c
        .simple("SELECT set_config('search_path', 'x', true)")
        .await;
    assert_eq!(briefs(&answer), ["E(XX000)", "Z(I)"]);
    let text = answer[0].text().unwrap_or_default();
    assert!(text.contains("not supported yet"), "{text}");
    assert_eq!(show(&mut c, "search_path").await, "s3");

    // PostgreSQL reports some settings (TimeZone, DateStyle) whichever way they change; 15 does
    // not report search_path.
    let postgres = TestServer::postgres().await;
    let mut c = RawClient::login(&postgres.addr(), &postgres).await;
    let answer = c
        .simple("SELECT set_config('TimeZone', 'Asia/Kolkata', false)")
        .await;
    assert_eq!(reported(&answer), ["TimeZone=Asia/Kolkata"]);
    let answer = c
        .simple("SELECT set_config('search_path', 's2', false)")
        .await;
    assert!(reported(&answer).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_changes_the_settings_of_the_session_that_calls_it() {
    let server = TestServer::doltgres().await;
    let mut c = RawClient::login(&server.addr(), &server).await;
    for sql in [
        "CREATE FUNCTION by_set() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN SET search_path = s5; RETURN 1; END $$",
        "CREATE FUNCTION by_call() RETURNS void LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM set_config('TimeZone', 'Asia/Kolkata', false); END $$",
        "CREATE FUNCTION by_clause() RETURNS int LANGUAGE plpgsql SET search_path = s9 AS \
         $$ BEGIN RETURN 1; END $$",
    ] {
        assert_eq!(
            run(&mut c, sql).await.0,
            ["C(CREATE FUNCTION)", "Z(I)"],
            "{sql}"
        );
    }
    run(&mut c, "SELECT by_set()").await;
    assert_eq!(show(&mut c, "search_path").await, "s5");
    run(&mut c, "SET search_path = public").await;
    run(&mut c, "SELECT by_call()").await;
    assert_eq!(show(&mut c, "TimeZone").await, "Asia/Kolkata");
    run(&mut c, "SELECT by_clause()").await;
    assert_eq!(
        show(&mut c, "search_path").await,
        "public",
        "a function's own SET clause ends with the call"
    );
    let answer = c.simple("DO $$ BEGIN PERFORM 1; END $$").await;
    assert_eq!(briefs(&answer), ["E(42601)", "Z(I)"], "no DO blocks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_settings_holds_the_sessions_values_beside_their_reset_values() {
    let server = TestServer::doltgres().await;
    let client = proxy_tests::facts::connect_to(&server, "postgres").await;
    let changed = "SELECT name || '=' || setting FROM pg_settings \
                   WHERE setting IS DISTINCT FROM reset_val AND context IN ('user', 'superuser') \
                   ORDER BY lower(name)";
    let column = |sql: &'static str| proxy_tests::facts::column(&client, sql);
    // A fresh session: one row differs all the same (the reset value is empty).
    assert_eq!(column(changed).await, ["enable_hashjoin=on"]);
    exec(
        &client,
        "SELECT set_config('search_path', 's2', false); \
             SELECT set_config('TimeZone', 'Asia/Kolkata', false); \
             SET DateStyle = 'German'; SET app.who = 'me'",
    )
    .await;
    assert_eq!(
        column(changed).await,
        [
            "DateStyle=German, DMY",
            "enable_hashjoin=on",
            "search_path=s2",
            "TimeZone=Asia/Kolkata"
        ]
    );
    let sources = "SELECT source FROM pg_settings WHERE name IN ('search_path', 'TimeZone') \
                   ORDER BY lower(name)";
    assert_eq!(
        column(sources).await,
        ["default", "configuration file"],
        "source never says session"
    );
    let custom = "SELECT count(*) FROM pg_settings WHERE name LIKE 'app.%'";
    assert_eq!(
        column(custom).await,
        ["0"],
        "custom settings are not listed"
    );
    let read = "SELECT 'app.who', current_setting('app.who', true) \
                UNION ALL SELECT 'app.none', current_setting('app.none', true)";
    let rows = client.simple_query(read).await.unwrap();
    let values: Vec<Option<String>> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(1).map(str::to_string)),
            _ => None,
        })
        .collect();
    assert_eq!(
        values,
        [Some("me".to_string()), None],
        "NULL for an unknown name"
    );
    // What was read, set again on a fresh session, gives the same values.
    let fresh = proxy_tests::facts::connect_to(&server, "postgres").await;
    exec(
        &fresh,
        "SELECT set_config('DateStyle', 'German, DMY', false); \
             SELECT set_config('enable_hashjoin', 'on', false); \
             SELECT set_config('search_path', 's2', false); \
             SELECT set_config('TimeZone', 'Asia/Kolkata', false); \
             SELECT set_config('app.who', E'it''s \\\\ me', false)",
    )
    .await;
    let column = |sql: &'static str| proxy_tests::facts::column(&fresh, sql);
    assert_eq!(
        column(changed).await,
        [
            "DateStyle=German, DMY",
            "enable_hashjoin=on",
            "search_path=s2",
            "TimeZone=Asia/Kolkata"
        ]
    );
    assert_eq!(
        column("SELECT current_setting('app.who')").await,
        ["it's \\ me"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_setting_gives_booleans_as_digits_that_set_config_refuses() {
    let server = TestServer::doltgres().await;
    let mut c = RawClient::login(&server.addr(), &server).await;
    run(&mut c, "SET enable_seqscan = off").await;
    let listed = "SELECT setting FROM pg_settings WHERE name = 'enable_seqscan'";
    assert_eq!(run(&mut c, listed).await.1, ["off"]);
    let by_name = "SELECT current_setting('enable_seqscan')";
    assert_eq!(run(&mut c, by_name).await.1, ["0"]);
    let answer = c
        .simple("SELECT set_config('enable_seqscan', '0', false)")
        .await;
    assert_eq!(briefs(&answer), ["E(XX000)", "Z(I)"]);
    let text = answer[0].text().unwrap_or_default();
    assert!(text.contains("can't be set to the value of '0'"), "{text}");
    let answer = c
        .simple("SELECT set_config('enable_seqscan', 'off', false)")
        .await;
    assert_eq!(briefs(&answer), ["T", "D", "C(SELECT 1)", "Z(I)"]);
    // A setting without a dot must be the server's; Dolt's own are not listed.
    assert_eq!(run(&mut c, "SET nodot = 1").await.0, ["E(XX000)", "Z(I)"]);
    run(&mut c, "SET dolt_transaction_commit = 1").await;
    let listed = "SELECT count(*) FROM pg_settings WHERE name LIKE 'dolt%'";
    assert_eq!(run(&mut c, listed).await.1, ["0"]);
    let by_name = "SELECT current_setting('dolt_transaction_commit', true)";
    assert_eq!(run(&mut c, by_name).await.1, ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untyped_parameters_sent_in_binary_fail_where_typed_ones_work() {
    let server = TestServer::doltgres().await;
    let client = proxy_tests::facts::connect_to(&server, "postgres").await;
    let err = client
        .query("SELECT set_config($1, $2, false)", &[&"a.b", &"1"])
        .await
        .expect_err("Doltgres cannot receive them");
    let db = err.as_db_error().expect("an error from the server");
    assert_eq!(db.code().code(), "XX000");
    assert!(db.message().contains("recovered panic"), "{}", db.message());
    let rows = client
        .query(
            "SELECT set_config($1::text, $2::text, false)",
            &[&"a.b", &"1"],
        )
        .await
        .unwrap();
    let value: String = rows[0].get(0);
    assert_eq!(value, "1");
}
