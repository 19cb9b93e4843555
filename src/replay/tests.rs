//! Session-state transitions, fed with conversations as a client and a server produce them.

use super::readback::{Kind, Row};
use super::state::Key;
use super::*;
use crate::protocol::tags;

/// One message of a conversation.
enum M<'a> {
    /// Client: simple Query.
    Q(&'a str),
    /// Client: Parse (name, query).
    Parse(&'a str, &'a str),
    /// Client: Bind (portal, statement).
    Bind(&'a str, &'a str),
    /// Client: Bind (portal, statement) with text parameters.
    BindP(&'a str, &'a str, &'a [&'a str]),
    /// Client: Execute (portal).
    Exec(&'a str),
    /// Client: Close of a statement.
    CloseS(&'a str),
    /// Client: Sync.
    Sync,
    /// Server: CommandComplete.
    C(&'a str),
    /// Server: EmptyQueryResponse.
    Empty,
    /// Server: ErrorResponse.
    Err,
    /// Server: ParseComplete.
    ParseOk,
    /// Server: BindComplete.
    BindOk,
    /// Server: CloseComplete.
    CloseOk,
    /// Server: ReadyForQuery.
    Z(u8),
}
use M::*;

/// Each part, NUL-terminated, one after another.
fn nul(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
}

fn run(state: &mut SessionState, conversation: &[M]) {
    for m in conversation {
        match m {
            Q(sql) => state.client_message(tags::QUERY, &nul(&[sql])),
            Parse(name, sql) => {
                let mut body = nul(&[name, sql]);
                body.extend_from_slice(&[0, 0]);
                state.client_message(tags::PARSE, &body)
            }
            Bind(portal, statement) => {
                let mut body = nul(&[portal, statement]);
                body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                state.client_message(tags::BIND, &body)
            }
            BindP(portal, statement, params) => {
                let mut body = nul(&[portal, statement]);
                body.extend_from_slice(&[0, 0]);
                body.extend_from_slice(&(params.len() as u16).to_be_bytes());
                for p in params.iter() {
                    body.extend_from_slice(&(p.len() as i32).to_be_bytes());
                    body.extend_from_slice(p.as_bytes());
                }
                body.extend_from_slice(&[0, 0]);
                state.client_message(tags::BIND, &body)
            }
            Exec(portal) => {
                let mut body = nul(&[portal]);
                body.extend_from_slice(&[0, 0, 0, 0]);
                state.client_message(tags::EXECUTE, &body)
            }
            CloseS(name) => {
                let mut body = b"S".to_vec();
                body.extend_from_slice(&nul(&[name]));
                state.client_message(tags::CLOSE, &body)
            }
            Sync => state.client_message(tags::SYNC, &[]),
            C(tag) => state.server_message(tags::COMMAND_COMPLETE, &nul(&[tag])),
            Empty => state.server_message(tags::EMPTY_QUERY_RESPONSE, &[]),
            Err => state.server_message(tags::ERROR_RESPONSE, b"SERROR\0C22012\0\0"),
            ParseOk => state.server_message(b'1', &[]),
            BindOk => state.server_message(b'2', &[]),
            CloseOk => state.server_message(b'3', &[]),
            Z(status) => state.server_message(tags::READY_FOR_QUERY, &[*status]),
        }
    }
}

/// A session on PostgreSQL, whose SETs follow their transaction.
fn after(conversation: &[M]) -> SessionState {
    let mut state = SessionState::ready(true);
    run(&mut state, conversation);
    state
}

fn statements(state: &SessionState) -> Vec<&str> {
    state
        .replayable()
        .statements
        .iter()
        .map(|(_, t)| t.as_str())
        .collect()
}

fn parsed(state: &SessionState) -> Vec<String> {
    state
        .replayable()
        .parsed
        .iter()
        .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
        .collect()
}

#[test]
fn a_committed_set_is_kept_and_a_later_one_replaces_it() {
    let s = after(&[
        Q("SET search_path TO a"),
        C("SET"),
        Z(b'I'),
        Q("SET work_mem = '8MB'"),
        C("SET"),
        Z(b'I'),
        Q("SET search_path TO b"),
        C("SET"),
        Z(b'I'),
    ]);
    assert_eq!(
        statements(&s),
        ["SET work_mem = '8MB'", "SET search_path TO b"]
    );
}

#[test]
fn set_local_and_set_transaction_are_not_kept() {
    let s = after(&[
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("SET LOCAL work_mem = '8MB'; SET TRANSACTION READ ONLY"),
        C("SET"),
        C("SET"),
        Z(b'T'),
        Q("COMMIT"),
        C("COMMIT"),
        Z(b'I'),
    ]);
    assert!(statements(&s).is_empty());
}

#[test]
fn a_set_in_a_block_counts_only_when_the_block_commits() {
    let begin_set = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("SET search_path TO x"),
        C("SET"),
        Z(b'T'),
    ];
    let mut s = after(&begin_set);
    assert!(statements(&s).is_empty(), "not before the commit");
    run(&mut s, &[Q("COMMIT"), C("COMMIT"), Z(b'I')]);
    assert_eq!(statements(&s), ["SET search_path TO x"]);

    let mut s = after(&begin_set);
    run(&mut s, &[Q("ROLLBACK"), C("ROLLBACK"), Z(b'I')]);
    assert!(statements(&s).is_empty(), "rolled back");

    let mut s = after(&begin_set);
    run(
        &mut s,
        &[
            Q("SELECT 1/0"),
            Err,
            Z(b'E'),
            Q("COMMIT"),
            C("ROLLBACK"),
            Z(b'I'),
        ],
    );
    assert!(
        statements(&s).is_empty(),
        "a failed block's COMMIT rolls back"
    );
}

#[test]
fn a_set_in_a_failed_implicit_transaction_is_undone() {
    let s = after(&[Q("SET a.b = 1; SELECT 1/0"), C("SET"), Err, Z(b'I')]);
    assert!(statements(&s).is_empty());
    let s = after(&[Q("SET a.b = 1; SELECT 1"), C("SET"), C("SELECT 1"), Z(b'I')]);
    assert_eq!(statements(&s), ["SET a.b = 1"]);
}

#[test]
fn a_statement_after_an_error_in_the_same_query_never_ran() {
    // The server skips the rest of the Query after the error; the SET's completion never comes.
    let s = after(&[
        Q("SELECT 1/0; SET a.b = 1"),
        Err,
        Z(b'I'),
        Q("SELECT 1"),
        C("SELECT 1"),
        Z(b'I'),
    ]);
    assert!(statements(&s).is_empty());
}

#[test]
fn rollback_to_savepoint_keeps_the_block() {
    let s = after(&[
        Q("BEGIN; SET x.y = 1; SAVEPOINT s; SELECT 1/0"),
        C("BEGIN"),
        C("SET"),
        C("SAVEPOINT"),
        Err,
        Z(b'E'),
        Q("ROLLBACK TO SAVEPOINT s"),
        C("ROLLBACK"),
        Z(b'T'),
        Q("COMMIT"),
        C("COMMIT"),
        Z(b'I'),
    ]);
    assert_eq!(statements(&s), ["SET x.y = 1"]);
}

#[test]
fn an_empty_query_is_answered_once_and_empty_statements_are_skipped() {
    let s = after(&[
        Q(" ; "),
        Empty,
        Z(b'I'),
        Q(";SET a.b = 1;;"),
        C("SET"),
        Z(b'I'),
    ]);
    assert_eq!(statements(&s), ["SET a.b = 1"]);
}

#[test]
fn reset_and_reset_all_forget_settings() {
    let mut s = after(&[
        Q("SET a.x = 1; SET a.y = 2; SET a.z = 3"),
        C("SET"),
        C("SET"),
        C("SET"),
        Z(b'I'),
    ]);
    run(&mut s, &[Q("RESET a.y"), C("RESET"), Z(b'I')]);
    assert_eq!(statements(&s), ["SET a.x = 1", "SET a.z = 3"]);
    run(&mut s, &[Q("RESET ALL"), C("RESET"), Z(b'I')]);
    assert!(statements(&s).is_empty());
}

#[test]
fn named_parses_are_kept_until_closed_and_the_unnamed_one_never() {
    let mut s = after(&[
        Parse("s1", "SELECT $1::int"),
        Parse("", "SELECT 2"),
        Bind("", ""),
        Exec(""),
        Sync,
        ParseOk,
        ParseOk,
        BindOk,
        C("SELECT 1"),
        Z(b'I'),
    ]);
    assert_eq!(parsed(&s), ["s1"]);
    run(&mut s, &[CloseS("s1"), Sync, CloseOk, Z(b'I')]);
    assert!(parsed(&s).is_empty());
}

#[test]
fn a_parse_the_server_refused_is_not_kept() {
    let s = after(&[
        Parse("bad", "SELEC 1"),
        Parse("after", "SELECT 1"),
        Sync,
        Err,
        Z(b'I'),
        Parse("good", "SELECT 1"),
        Sync,
        ParseOk,
        Z(b'I'),
    ]);
    assert_eq!(
        parsed(&s),
        ["good"],
        "the batch's later Parse was skipped too"
    );
}

#[test]
fn pipelined_batches_are_matched_in_order() {
    let s = after(&[
        Parse("a", "SELECT 1"),
        Sync,
        Parse("b", "SELEC"),
        Sync,
        Parse("c", "SELECT 3"),
        Sync,
        ParseOk,
        Z(b'I'),
        Err,
        Z(b'I'),
        ParseOk,
        Z(b'I'),
    ]);
    assert_eq!(parsed(&s), ["a", "c"]);
}

#[test]
fn prepared_statements_outlive_a_rollback_and_deallocate_forgets_them() {
    let mut s = after(&[
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("PREPARE q AS SELECT 1"),
        C("PREPARE"),
        Z(b'T'),
        Q("ROLLBACK"),
        C("ROLLBACK"),
        Z(b'I'),
    ]);
    assert_eq!(statements(&s), ["PREPARE q AS SELECT 1"]);
    run(&mut s, &[Parse("p", "SELECT 1"), Sync, ParseOk, Z(b'I')]);
    run(&mut s, &[Q("DEALLOCATE q"), C("DEALLOCATE"), Z(b'I')]);
    assert!(statements(&s).is_empty());
    assert_eq!(parsed(&s), ["p"]);
    run(&mut s, &[Q("DEALLOCATE ALL"), C("DEALLOCATE ALL"), Z(b'I')]);
    assert!(parsed(&s).is_empty());
}

#[test]
fn set_through_the_extended_protocol_is_kept() {
    let s = after(&[
        Parse("", "SET application_name = 'x'"),
        Bind("", ""),
        Exec(""),
        Sync,
        ParseOk,
        BindOk,
        C("SET"),
        Z(b'I'),
    ]);
    assert_eq!(statements(&s), ["SET application_name = 'x'"]);
}

#[test]
fn unreplayable_state_is_named_and_discard_all_clears_everything() {
    let mut s = after(&[Q("LISTEN ch"), C("LISTEN"), Z(b'I')]);
    assert_eq!(s.unreplayable(), Some(Unreplayable::Listen));
    run(&mut s, &[Q("UNLISTEN *"), C("UNLISTEN"), Z(b'I')]);
    assert_eq!(s.unreplayable(), None);
    run(
        &mut s,
        &[
            Q("CREATE TEMP TABLE t (a int); SET x.y = 1"),
            C("CREATE TABLE"),
            C("SET"),
            Z(b'I'),
            Parse("p", "SELECT 1"),
            Sync,
            ParseOk,
            Z(b'I'),
        ],
    );
    assert_eq!(s.unreplayable(), Some(Unreplayable::TempTable));
    run(&mut s, &[Q("DISCARD ALL"), C("DISCARD ALL"), Z(b'I')]);
    assert_eq!(s.unreplayable(), None);
    assert!(statements(&s).is_empty() && parsed(&s).is_empty());
}

#[test]
fn a_failed_listen_leaves_nothing() {
    let s = after(&[Q("LISTEN"), Err, Z(b'I')]);
    assert_eq!(s.unreplayable(), None);
}

#[test]
fn use_and_checkout_are_kept_in_order_and_use_forgets_the_branch() {
    let mut s = after(&[
        Q("SELECT dolt_checkout('-b', 'feat')"),
        C("SELECT 1"),
        Z(b'I'),
    ]);
    assert_eq!(s.replayable().statements[0].0, Key::Branch);
    run(&mut s, &[Q("USE other"), C("SET"), Z(b'I')]);
    assert_eq!(statements(&s), ["USE other"]);
    let plan = plan::build(s.replayable());
    assert_eq!(plan.requests, 1);
}

#[test]
fn on_doltgres_a_set_holds_even_when_its_transaction_rolls_back() {
    let mut s = SessionState::ready(false);
    run(
        &mut s,
        &[
            Q("SET a.b = 1; SELECT 1/0"),
            C("SET"),
            Err,
            Z(b'I'),
            Q("BEGIN; SET a.c = 2; ROLLBACK"),
            C("BEGIN"),
            C("SET"),
            C("ROLLBACK"),
            Z(b'I'),
        ],
    );
    assert_eq!(statements(&s), ["SET a.b = 1", "SET a.c = 2"]);
}

#[test]
fn the_login_tells_postgresql_from_doltgres() {
    let login = |params: &[&str]| {
        let mut s = SessionState::new();
        for p in params {
            s.server_message(tags::PARAMETER_STATUS, &nul(&[p, "x"]));
        }
        s.server_message(tags::READY_FOR_QUERY, b"I");
        run(
            &mut s,
            &[Q("SET a.b = 1; SELECT 1/0"), C("SET"), Err, Z(b'I')],
        );
        statements(&s).len()
    };
    assert_eq!(
        login(&["server_version", "session_authorization"]),
        0,
        "PostgreSQL"
    );
    assert_eq!(login(&["server_version", "client_encoding"]), 1, "Doltgres");
}

#[test]
fn nothing_counts_before_login_ends() {
    let mut s = SessionState::new();
    s.client_message(tags::QUERY, &nul(&["SET a.b = 1"]));
    s.server_message(tags::COMMAND_COMPLETE, &nul(&["SET"]));
    s.server_message(tags::READY_FOR_QUERY, b"I");
    assert!(statements(&s).is_empty());
    run(&mut s, &[Q("SET a.b = 2"), C("SET"), Z(b'I')]);
    assert_eq!(statements(&s), ["SET a.b = 2"]);
}

#[test]
fn the_plan_sends_statements_then_parses_and_counts_requests() {
    let s = after(&[
        Q("SET a.b = 1"),
        C("SET"),
        Z(b'I'),
        Parse("p1", "SELECT 1"),
        Parse("p2", "SELECT 2"),
        Sync,
        ParseOk,
        ParseOk,
        Z(b'I'),
    ]);
    let plan = plan::build(s.replayable());
    assert_eq!(plan.requests, 2);
    let m = &plan.messages[..];
    assert_eq!(m[0], b'Q');
    assert_eq!(m.iter().filter(|b| **b == b'P').count(), 2);
    assert_eq!(*m.last().unwrap(), 4, "ends with Sync's length");
    assert_eq!(m[m.len() - 5], b'S');
}

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
