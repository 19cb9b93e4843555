//! Settings in doubt (`set_config` whose effect the tracker cannot know) and the read-back that
//! settles them, before a replay.

use super::*;

fn row(name: &str, value: Option<&str>, kind: Kind) -> Row {
    Row {
        name: name.into(),
        value: value.map(str::to_string),
        kind,
    }
}

#[test]
fn a_setting_read_back_as_a_new_connection_starts_with_it_needs_nothing() {
    let mut s = on_doltgres(&[
        Q("SET TimeZone = 'UTC'; SET enable_seqscan = off; SET app.x = '1'"),
        C("SET"),
        C("SET"),
        C("SET"),
        Z(b'I'),
    ]);
    // A function set TimeZone back; the custom setting is unknown to the server by now.
    s.settings_read(vec![
        row("TimeZone", Some("Local"), Kind::Same),
        row("timezone", Some("Local"), Kind::Named),
        row("enable_seqscan", Some("off"), Kind::Changed),
        row("enable_seqscan", Some("0"), Kind::Named),
        row("app.x", None, Kind::Named),
    ]);
    assert_eq!(
        statements(&s),
        [
            "SELECT set_config('enable_seqscan', 'off', false)",
            "SET app.x = '1'"
        ]
    );
}

/// A session on Doltgres, whose SETs hold at once.
fn on_doltgres(conversation: &[M]) -> SessionState {
    let mut state = SessionState::ready(false);
    run(&mut state, conversation);
    state
}

fn doubted(state: &SessionState) -> Vec<String> {
    state
        .doubt()
        .map(|d| d.names.iter().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn set_config_puts_its_setting_in_doubt_until_a_set_settles_it() {
    let mut s = on_doltgres(&[
        Q("SELECT set_config('search_path', 's2', false)"),
        C("SELECT 1"),
        Z(b'I'),
    ]);
    assert_eq!(doubted(&s), ["search_path"]);
    assert!(statements(&s).is_empty(), "nothing to replay as written");
    run(&mut s, &[Q("SET Search_Path = s3"), C("SET"), Z(b'I')]);
    assert_eq!(s.doubt(), None, "the SET decides the value");
    // In one Query the last statement decides.
    run(
        &mut s,
        &[
            Q("SET TimeZone = 'UTC'; SELECT set_config('TIMEZONE', 'Asia/Kolkata', false)"),
            C("SET"),
            C("SELECT 1"),
            Z(b'I'),
        ],
    );
    assert_eq!(doubted(&s), ["timezone"]);
    run(
        &mut s,
        &[
            Q("SELECT set_config('a.b', '1', false); RESET timezone"),
            C("SELECT 1"),
            C("RESET"),
            Z(b'I'),
        ],
    );
    assert_eq!(doubted(&s), ["a.b"]);
}

#[test]
fn a_local_set_config_and_a_statement_that_never_ran_leave_no_doubt() {
    let s = on_doltgres(&[
        Q("SELECT set_config('search_path', 's2', true)"),
        Err,
        Z(b'I'),
        Q("SELECT 1/0; SELECT set_config('search_path', 's2', false)"),
        Err,
        Z(b'I'),
        Q("CREATE FUNCTION f() RETURNS void AS $$ SELECT set_config('a.b', '1', false) $$"),
        C("CREATE FUNCTION"),
        Z(b'I'),
    ]);
    assert_eq!(s.doubt(), None);
}

#[test]
fn a_failing_statement_s_set_config_counts_on_doltgres_only() {
    let failing = [Q("SELECT set_config('a.b', '1', false), 1/0"), Err, Z(b'I')];
    assert_eq!(
        doubted(&on_doltgres(&failing)),
        ["a.b"],
        "it may have run before the failure, and Doltgres keeps settings"
    );
    assert_eq!(after(&failing).doubt(), None, "PostgreSQL undoes it");
}

#[test]
fn on_postgresql_set_config_follows_its_transaction_in_order() {
    let s = after(&[
        Q("BEGIN; SELECT set_config('a.b', '1', false); ROLLBACK"),
        C("BEGIN"),
        C("SELECT 1"),
        C("ROLLBACK"),
        Z(b'I'),
    ]);
    assert_eq!(s.doubt(), None);
    let block = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("SET a.b = 2"),
        C("SET"),
        Z(b'T'),
        Q("SELECT set_config('a.b', '1', false)"),
        C("SELECT 1"),
        Z(b'T'),
    ];
    let mut s = after(&block);
    assert_eq!(s.doubt(), None, "not before the commit");
    run(&mut s, &[Q("COMMIT"), C("COMMIT"), Z(b'I')]);
    assert_eq!(doubted(&s), ["a.b"], "the call came after the SET");
}

#[test]
fn a_name_passed_as_a_parameter_is_read_from_the_bind() {
    let s = on_doltgres(&[
        Parse("sc", "SELECT set_config($1::text, $2::text, false)"),
        BindP("", "sc", &["TimeZone", "UTC"]),
        Exec(""),
        Sync,
        ParseOk,
        BindOk,
        C("SELECT 1"),
        Z(b'I'),
    ]);
    assert_eq!(doubted(&s), ["timezone"]);
    let s = on_doltgres(&[
        Parse("", "SELECT set_config(name, 'x', false) FROM names"),
        Bind("", ""),
        Exec(""),
        Sync,
        ParseOk,
        BindOk,
        C("SELECT 2"),
        Z(b'I'),
    ]);
    let doubt = s.doubt().expect("in doubt");
    assert!(doubt.unnamed && doubt.names.is_empty());
}

#[test]
fn settings_read_back_replace_what_was_tracked_and_settle_the_doubt() {
    let mut s = on_doltgres(&[
        Q("SET app.who = 'x'; USE db; SELECT set_config('search_path', 's2', false)"),
        C("SET"),
        C("SET"),
        C("SELECT 1"),
        Z(b'I'),
        Q("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
        C("SET"),
        Z(b'I'),
    ]);
    assert_eq!(s.readback_names(), ["app.who", "search_path"]);
    s.settings_read(vec![
        row("search_path", Some("s2"), Kind::Changed),
        row("TimeZone", Some("Asia/Kolkata"), Kind::Changed),
        row("app.who", Some("it's"), Kind::Named),
        row("search_path", Some("s2"), Kind::Named),
        row("app.none", None, Kind::Named),
    ]);
    assert_eq!(s.doubt(), None);
    assert_eq!(
        statements(&s),
        [
            "SELECT set_config('app.who', 'it''s', false)",
            "SELECT set_config('search_path', 's2', false)",
            "SELECT set_config('TimeZone', 'Asia/Kolkata', false)",
            "USE db",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        ],
        "settings in place or before USE; a statement that sets no setting of its name kept"
    );
}

#[test]
fn a_read_back_cannot_settle_a_setting_named_by_an_expression() {
    let mut s = on_doltgres(&[
        Q("SELECT set_config(n, 'x', false) FROM t; SELECT set_config('a.b', '1', false)"),
        C("SELECT 1"),
        C("SELECT 1"),
        Z(b'I'),
    ]);
    s.settings_read(vec![row("a.b", Some("1"), Kind::Named)]);
    let doubt = s.doubt().expect("still in doubt");
    assert!(doubt.unnamed && doubt.names.is_empty());
    assert_eq!(doubt.describe(), "a setting named by an expression");
}

#[test]
fn discard_all_and_reset_all_settle_every_doubt() {
    let doubt = [
        Q("SELECT set_config(n, 'x', false) FROM t"),
        C("SELECT 1"),
        Z(b'I'),
    ];
    let mut s = on_doltgres(&doubt);
    run(&mut s, &[Q("DISCARD ALL"), C("DISCARD ALL"), Z(b'I')]);
    assert_eq!(s.doubt(), None);
    let mut s = on_doltgres(&doubt);
    run(&mut s, &[Q("RESET ALL"), C("RESET"), Z(b'I')]);
    assert_eq!(s.doubt(), None);
}

#[test]
fn setting_names_ignore_case() {
    let s = on_doltgres(&[
        Q("SET \"TimeZone\" = 'UTC'; SET timezone = 'Asia/Kolkata'"),
        C("SET"),
        C("SET"),
        Z(b'I'),
    ]);
    assert_eq!(statements(&s), ["SET timezone = 'Asia/Kolkata'"]);
}
