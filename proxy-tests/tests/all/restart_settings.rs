//! Settings changed with `set_config(...)`, whose values the replay tracker cannot follow from the
//! statements, across a server restart, in managed mode with proxy authentication. Through a copy
//! window the server is still up when the session detaches, so the proxy reads the session's
//! settings from its own connection and gives the new connection the same; after a crash nothing
//! can be read, so a session that called `set_config` is ended with `57P01` naming it rather than
//! run on other settings.

use std::time::{Duration, Instant};

use proxy_tests::facts::exec;
use proxy_tests::facts::{column, first};
use proxy_tests::managed::ManagedProxy;
use proxy_tests::raw::{RawClient, briefs};

/// Longer than the join grace, so a copy window treats the sessions as long idle.
const IDLE: Duration = Duration::from_millis(1300);

/// A zone with a fixed offset and no daylight saving, so `now()` shows it.
const ZONE: &str = "Asia/Kolkata";

/// Sessions ended for any reason.
async fn ended(m: &ManagedProxy) -> f64 {
    let (_, text) = m.proxy.admin_get("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("doltgres_sidecar_sessions_ended_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A table `t2` in `public` and in schema `s2`, and a function that sets `search_path`.
async fn schema(m: &ManagedProxy) {
    let setup = m.connect().await;
    exec(
        &setup,
        "CREATE SCHEMA s2; CREATE TABLE public.t2 (v text); CREATE TABLE s2.t2 (v text); \
             CREATE FUNCTION to_s2() RETURNS int LANGUAGE plpgsql AS \
             $$ BEGIN SET search_path = s2; RETURN 1; END $$",
    )
    .await;
}

/// Rows of `t2` in `public` and in `s2`, read on a connection of its own.
async fn rows(m: &ManagedProxy) -> (String, String) {
    let c = m.connect().await;
    (
        first(&c, "SELECT count(*) FROM public.t2").await,
        first(&c, "SELECT count(*) FROM s2.t2").await,
    )
}

/// The session's listed settings that differ from those it started with, and a custom one.
async fn settings(client: &tokio_postgres::Client) -> Vec<String> {
    let sql = "SELECT name || '=' || setting FROM pg_settings \
               WHERE setting IS DISTINCT FROM reset_val ORDER BY lower(name)";
    let mut out = column(client, sql).await;
    out.push(
        first(
            client,
            "SELECT coalesce(current_setting('app.k', true), '-')",
        )
        .await,
    );
    out
}

/// Reads until the proxy ends the session; returns the FATAL's message and detail after checking
/// its code.
async fn ended_with_57p01(raw: &mut RawClient) -> (String, String) {
    let closed = tokio::time::timeout(Duration::from_secs(60), raw.until_end())
        .await
        .expect("the session was not ended");
    let fatal = closed
        .messages
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("no error before the close: {:?}", briefs(&closed.messages)));
    assert_eq!(fatal.field('S').as_deref(), Some("FATAL"));
    assert_eq!(fatal.sqlstate().as_deref(), Some("57P01"));
    let text = fatal.text().unwrap_or_default();
    assert!(text.contains("set_config()"), "{text}");
    (text, fatal.field('D').unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changed_by_set_config_survive_copy_windows_and_a_crash_after() {
    let m = ManagedProxy::start(|_, _| {}).await;
    schema(&m).await;
    let path = m.connect().await;
    first(&path, "SELECT set_config('search_path', 's2', false)").await;
    let zone = m.connect().await;
    first(
        &zone,
        &format!("SELECT set_config('TimeZone', '{ZONE}', false)"),
    )
    .await;
    // What a function changed is read with the rest of a session in doubt.
    let by_function = m.connect().await;
    exec(
        &by_function,
        &format!("SELECT to_s2(); SELECT set_config('TimeZone', '{ZONE}', false)"),
    )
    .await;
    // Through the extended protocol with the name and value as parameters.
    let bound = m.connect().await;
    bound
        .query(
            "SELECT set_config($1::text, $2::text, false)",
            &[&"search_path", &"s2"],
        )
        .await
        .unwrap();
    // A tracked SET that a set_config call overrides afterwards.
    let overridden = m.connect().await;
    exec(
        &overridden,
        "SET search_path = public; SELECT set_config('search_path', 's2', false)",
    )
    .await;
    // Tracked SETs of a boolean, a custom setting and one set back to its start.
    let tracked = m.connect().await;
    exec(
        &tracked,
        "SET enable_seqscan = off; SET app.k = 'v'; SET search_path = s2; \
             SET search_path = '\"$user\", public'",
    )
    .await;
    let sessions = [&path, &zone, &by_function, &bound, &overridden, &tracked];
    let mut before = Vec::new();
    for c in sessions {
        before.push(settings(c).await);
    }

    // Twice: the second window reads what the first one replayed. The reads and the replays
    // are the proxy's, never counted as the clients' transactions.
    let counted = m.proxy.counters().await;
    for _ in 0..2 {
        tokio::time::sleep(IDLE).await;
        m.copy_window().await;
    }
    let control = &m.proxy.shared.control;
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.attached() < sessions.len() {
        assert!(Instant::now() < deadline, "the sessions did not re-attach");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(m.proxy.counters().await, counted, "no transaction counted");

    path.batch_execute("INSERT INTO t2 VALUES ('path')")
        .await
        .unwrap();
    assert_eq!(rows(&m).await, ("0".into(), "1".into()), "into s2.t2");
    assert_eq!(first(&path, "SHOW search_path").await, "s2");
    assert_eq!(
        first(&zone, "SELECT current_setting('TimeZone')").await,
        ZONE
    );
    let now = first(&zone, "SELECT now()::text").await;
    assert!(now.ends_with("+05:30"), "{now}");
    assert_eq!(first(&by_function, "SHOW search_path").await, "s2");
    assert_eq!(first(&bound, "SHOW search_path").await, "s2");
    assert_eq!(first(&overridden, "SHOW search_path").await, "s2");
    for (c, before) in sessions.iter().zip(&before) {
        assert_eq!(
            &settings(c).await,
            before,
            "the same settings after the windows"
        );
    }
    assert_eq!(ended(&m).await, 0.0, "no session was ended");

    // What the window read is now known: a crash after it replays the same settings.
    m.kill_server();
    m.crash_noticed().await;
    path.batch_execute("INSERT INTO t2 VALUES ('path again')")
        .await
        .unwrap();
    assert_eq!(rows(&m).await, ("0".into(), "2".into()), "into s2.t2 again");
    assert_eq!(
        first(&zone, "SELECT current_setting('TimeZone')").await,
        ZONE
    );
    assert_eq!(ended(&m).await, 0.0, "no session was ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_a_session_that_called_set_config_is_ended_with_57p01_naming_it() {
    let m = ManagedProxy::start(|_, _| {}).await;
    schema(&m).await;
    let mut path = m.raw().await;
    let answer = path
        .simple("SELECT set_config('search_path', 's2', false)")
        .await;
    assert_eq!(briefs(&answer), ["T", "D", "C(SELECT 1)", "Z(I)"]);
    let mut zone = m.raw().await;
    zone.simple(&format!("SELECT set_config('TimeZone', '{ZONE}', false)"))
        .await;
    // The name is not in the text: the proxy cannot tell which setting changed.
    let mut unnamed = m.raw().await;
    unnamed
        .simple("SELECT set_config(n, 'x', false) FROM (SELECT 'app.k' AS n) AS s")
        .await;
    let kept = m.connect().await;
    kept.batch_execute("SET search_path = s2").await.unwrap();

    m.kill_server();
    m.crash_noticed().await;

    let (_, detail) = ended_with_57p01(&mut path).await;
    assert_eq!(detail, "Settings changed with set_config(): search_path.");
    let (_, detail) = ended_with_57p01(&mut zone).await;
    assert_eq!(detail, "Settings changed with set_config(): timezone.");
    let (_, detail) = ended_with_57p01(&mut unnamed).await;
    assert_eq!(
        detail,
        "Settings changed with set_config(): a setting named by an expression."
    );
    // A tracked SET goes on as before.
    kept.batch_execute("INSERT INTO t2 VALUES ('kept')")
        .await
        .unwrap();
    assert_eq!(rows(&m).await, ("0".into(), "1".into()));
    let reason = "doltgres_sidecar_sessions_ended_total{reason=\"unreplayable_settings\"}";
    assert_eq!(m.proxy.metric(reason).await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_window_ends_a_session_whose_set_config_named_no_setting() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let mut unnamed = m.raw().await;
    unnamed
        .simple("SELECT set_config(n, 'x', false) FROM (SELECT 'app.k' AS n) AS s")
        .await;
    let kept = m.connect().await;
    first(&kept, "SELECT set_config('app.k', 'y', false)").await;
    tokio::time::sleep(IDLE).await;
    m.copy_window().await;
    let (_, detail) = ended_with_57p01(&mut unnamed).await;
    assert!(detail.contains("named by an expression"), "{detail}");
    assert_eq!(first(&kept, "SELECT current_setting('app.k')").await, "y");
    let reason = "doltgres_sidecar_sessions_ended_total{reason=\"unreplayable_settings\"}";
    assert_eq!(m.proxy.metric(reason).await, 1.0);
}
