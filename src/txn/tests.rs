//! Transitions of the transaction tracker, fed with message sequences as a server would send them.

use super::*;

/// One step of a conversation.
enum Step<'a> {
    /// Client sends a simple Query.
    Q(&'a str),
    /// Client sends Parse (name, query).
    Parse(&'a str, &'a str),
    /// Client sends Bind (portal, statement).
    Bind(&'a str, &'a str),
    /// Client sends Sync.
    Sync,
    /// Server: CommandComplete with this tag.
    C(&'a str),
    /// Server: ErrorResponse.
    Err,
    /// Server: CopyInResponse.
    CopyIn,
    /// Server: ReadyForQuery with this status byte.
    Z(u8),
}
use Step::*;

/// Each part, NUL-terminated, one after another.
fn nul(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
}

/// A tracker past startup (it has seen the first ReadyForQuery).
fn ready() -> Tracker {
    let mut t = Tracker::new();
    t.server_message(b'Z', b"I", &mut Tally::default());
    assert_eq!(t.phase(), Phase::Ready);
    t
}

fn run(t: &mut Tracker, steps: &[Step]) -> Tally {
    let mut tally = Tally::default();
    for step in steps {
        match step {
            Q(sql) => t.client_message(b'Q', &nul(&[sql])),
            Parse(name, sql) => t.client_message(b'P', &[nul(&[name, sql]), vec![0, 0]].concat()),
            Bind(portal, stmt) => {
                t.client_message(b'B', &[nul(&[portal, stmt]), vec![0; 6]].concat())
            }
            Sync => t.client_message(b'S', b""),
            C(tag) => t.server_message(b'C', &nul(&[tag]), &mut tally),
            Err => t.server_message(b'E', b"SERROR\0C22012\0Mdivision by zero\0\0", &mut tally),
            CopyIn => t.server_message(b'G', b"\0\0\0", &mut tally),
            Z(s) => t.server_message(b'Z', &[*s], &mut tally),
        }
    }
    tally
}

fn tally(commits: u64, rollbacks: u64, write_commits: u64) -> Tally {
    Tally {
        commits,
        rollbacks,
        write_commits,
    }
}

#[test]
fn startup_ready_for_query_counts_nothing() {
    let mut t = Tracker::new();
    assert!(!t.at_boundary());
    let mut tally = Tally::default();
    t.server_message(b'E', b"SFATAL\0C28P01\0Mbad password\0\0", &mut tally);
    t.server_message(b'Z', b"I", &mut tally);
    assert_eq!(tally, Tally::default());
    assert!(t.at_boundary());
}

#[test]
fn autocommit_select_is_a_read_only_commit() {
    let mut t = ready();
    assert_eq!(
        run(&mut t, &[Q("SELECT 1"), C("SELECT 1"), Z(b'I')]),
        tally(1, 0, 0)
    );
    assert!(t.at_boundary());
}

#[test]
fn autocommit_insert_is_a_write_commit() {
    let mut t = ready();
    assert_eq!(
        run(
            &mut t,
            &[Q("INSERT INTO t VALUES (1)"), C("INSERT 0 1"), Z(b'I')]
        ),
        tally(1, 0, 1)
    );
}

#[test]
fn request_is_pending_until_ready_for_query() {
    let mut t = ready();
    run(&mut t, &[Q("SELECT 1")]);
    assert!(!t.at_boundary());
    assert_eq!(t.pending(), 1);
    run(&mut t, &[C("SELECT 1")]);
    assert!(!t.at_boundary());
    run(&mut t, &[Z(b'I')]);
    assert!(t.at_boundary());
}

#[test]
fn explicit_block_commits_once_with_writes() {
    let mut t = ready();
    let got = run(
        &mut t,
        &[
            Q("BEGIN"),
            C("BEGIN"),
            Z(b'T'),
            Q("INSERT"),
            C("INSERT 0 1"),
            Z(b'T'),
            Q("SELECT"),
            C("SELECT 1"),
            Z(b'T'),
        ],
    );
    assert_eq!(got, Tally::default());
    assert_eq!(t.status(), TxnStatus::InTransaction);
    assert!(!t.at_boundary());
    assert_eq!(
        run(&mut t, &[Q("COMMIT"), C("COMMIT"), Z(b'I')]),
        tally(1, 0, 1)
    );
    assert!(t.at_boundary());
}

#[test]
fn read_only_explicit_block_is_not_a_write() {
    let mut t = ready();
    let steps = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("SELECT"),
        C("SELECT 3"),
        Z(b'T'),
        Q("END"),
        C("COMMIT"),
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(1, 0, 0));
}

#[test]
fn explicit_rollback() {
    let mut t = ready();
    let steps = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("INSERT"),
        C("INSERT 0 1"),
        Z(b'T'),
        Q("ROLLBACK"),
        C("ROLLBACK"),
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(0, 1, 0));
}

#[test]
fn commit_inside_failed_block_answers_rollback() {
    let mut t = ready();
    let steps = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("INSERT"),
        C("INSERT 0 1"),
        Z(b'T'),
        Q("SELECT 1/0"),
        Err,
        Z(b'E'),
    ];
    assert_eq!(run(&mut t, &steps), Tally::default());
    assert_eq!(t.status(), TxnStatus::Failed);
    assert!(!t.at_boundary());
    assert_eq!(
        run(&mut t, &[Q("COMMIT"), C("ROLLBACK"), Z(b'I')]),
        tally(0, 1, 0)
    );
    assert!(t.at_boundary());
}

#[test]
fn error_in_implicit_transaction_is_a_rollback() {
    let mut t = ready();
    assert_eq!(
        run(&mut t, &[Q("SELECT 1/0"), Err, Z(b'I')]),
        tally(0, 1, 0)
    );
    // Statements before the error in the same Query are rolled back with it.
    let steps = [Q("INSERT ..; SELECT 1/0"), C("INSERT 0 1"), Err, Z(b'I')];
    assert_eq!(run(&mut t, &steps), tally(0, 1, 0));
}

#[test]
fn failed_commit_ends_block_as_rollback() {
    // COMMIT itself fails (e.g. a deferred constraint): error, then idle.
    let mut t = ready();
    let steps = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("INSERT"),
        C("INSERT 0 1"),
        Z(b'T'),
        Q("COMMIT"),
        Err,
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(0, 1, 0));
}

#[test]
fn whole_transaction_in_one_query() {
    let mut t = ready();
    let steps = [
        Q("BEGIN; INSERT ..; COMMIT"),
        C("BEGIN"),
        C("INSERT 0 1"),
        C("COMMIT"),
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(1, 0, 1));
}

#[test]
fn statements_before_begin_join_the_block() {
    let mut t = ready();
    let steps = [
        Q("INSERT ..; BEGIN; SELECT 1"),
        C("INSERT 0 1"),
        C("BEGIN"),
        C("SELECT 1"),
        Z(b'T'),
    ];
    assert_eq!(run(&mut t, &steps), Tally::default());
    assert_eq!(
        run(&mut t, &[Q("COMMIT"), C("COMMIT"), Z(b'I')]),
        tally(1, 0, 1)
    );
}

#[test]
fn commit_then_failure_in_one_query() {
    let mut t = ready();
    let steps = [
        Q("BEGIN; INSERT; COMMIT; SELECT 1/0"),
        C("BEGIN"),
        C("INSERT 0 1"),
        C("COMMIT"),
        Err,
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(1, 1, 1));
}

#[test]
fn commit_or_rollback_outside_a_block_count_nothing() {
    let mut t = ready();
    // PostgreSQL answers a stray COMMIT/ROLLBACK with a warning and the tag; nothing ended.
    assert_eq!(
        run(&mut t, &[Q("COMMIT"), C("COMMIT"), Z(b'I')]),
        Tally::default()
    );
    assert_eq!(
        run(&mut t, &[Q("ROLLBACK"), C("ROLLBACK"), Z(b'I')]),
        Tally::default()
    );
    assert!(t.at_boundary());
}

#[test]
fn extended_batch_is_one_implicit_transaction() {
    let mut t = ready();
    let steps = [
        Parse("", "INSERT"),
        Bind("", ""),
        Parse("", "UPDATE"),
        Bind("", ""),
        Sync,
        C("INSERT 0 1"),
        C("UPDATE 1"),
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(1, 0, 1));
}

#[test]
fn error_in_extended_batch_rolls_back_the_batch() {
    let mut t = ready();
    let steps = [
        Parse("", "INSERT"),
        Bind("", ""),
        Parse("", "bad"),
        Sync,
        C("INSERT 0 1"),
        Err,
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(0, 1, 0));
}

#[test]
fn pipelined_syncs_are_answered_in_order() {
    let mut t = ready();
    run(
        &mut t,
        &[
            Parse("", "INSERT"),
            Bind("", ""),
            Sync,
            Parse("", "SELECT"),
            Bind("", ""),
            Sync,
            Parse("", "bad"),
            Sync,
        ],
    );
    assert_eq!(t.pending(), 3);
    assert_eq!(run(&mut t, &[C("INSERT 0 1"), Z(b'I')]), tally(1, 0, 1));
    assert!(!t.at_boundary());
    assert_eq!(run(&mut t, &[C("SELECT 1"), Z(b'I')]), tally(1, 0, 0));
    assert_eq!(run(&mut t, &[Err, Z(b'I')]), tally(0, 1, 0));
    assert!(t.at_boundary());
}

#[test]
fn extended_batch_without_sync_is_not_a_boundary() {
    let mut t = ready();
    run(&mut t, &[Parse("", "SELECT 1"), Bind("", "")]);
    assert_eq!(t.pending(), 0);
    assert!(
        !t.at_boundary(),
        "the server waits for the rest of the batch"
    );
    run(&mut t, &[Sync]);
    assert!(!t.at_boundary());
    run(&mut t, &[C("SELECT 1"), Z(b'I')]);
    assert!(t.at_boundary());
}

#[test]
fn in_flight_batch_is_not_a_boundary() {
    let mut t = ready();
    t.set_in_flight(true);
    assert!(!t.at_boundary());
    assert!(!t.quiescent());
    t.set_in_flight(false);
    assert!(t.at_boundary());
}

#[test]
fn logging_in_is_quiescent_but_not_a_boundary() {
    let t = Tracker::new();
    assert!(!t.at_boundary());
    assert!(t.quiescent());
}

#[test]
fn sync_without_statements_counts_nothing() {
    // pgbench -M prepared sends Parse + Sync per statement before running anything.
    let mut t = ready();
    assert_eq!(
        run(&mut t, &[Parse("P_0", "SELECT 1"), Sync, Z(b'I')]),
        Tally::default()
    );
    assert!(t.at_boundary());
}

#[test]
fn copy_from_is_a_write_and_copy_to_is_not() {
    let mut t = ready();
    assert_eq!(
        run(
            &mut t,
            &[Q("COPY t FROM STDIN"), CopyIn, C("COPY 3"), Z(b'I')]
        ),
        tally(1, 0, 1)
    );
    assert_eq!(
        run(&mut t, &[Q("COPY t TO STDOUT"), C("COPY 3"), Z(b'I')]),
        tally(1, 0, 0)
    );
}

#[test]
fn failed_copy_from_is_a_rollback() {
    let mut t = ready();
    assert_eq!(
        run(&mut t, &[Q("COPY t FROM STDIN"), CopyIn, Err, Z(b'I')]),
        tally(0, 1, 0)
    );
}

#[test]
fn dolt_commit_via_select_is_a_write() {
    let mut t = ready();
    let steps = [
        Q("SELECT dolt_commit('-Am', 'msg')"),
        C("SELECT 1"),
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(1, 0, 1));
    let steps = [Q("SELECT * FROM dolt_log"), C("SELECT 4"), Z(b'I')];
    assert_eq!(run(&mut t, &steps), tally(1, 0, 0));
}

#[test]
fn prepared_dolt_procedure_is_a_write_each_time_it_runs() {
    let mut t = ready();
    run(
        &mut t,
        &[Parse("s1", "SELECT dolt_commit('-Am', $1)"), Sync, Z(b'I')],
    );
    for _ in 0..2 {
        let steps = [Bind("", "s1"), Sync, C("SELECT 1"), Z(b'I')];
        assert_eq!(run(&mut t, &steps), tally(1, 0, 1));
    }
    // Re-preparing the name with other text forgets the flag.
    run(&mut t, &[Parse("s1", "SELECT 1"), Sync, Z(b'I')]);
    assert_eq!(
        run(&mut t, &[Bind("", "s1"), Sync, C("SELECT 1"), Z(b'I')]),
        tally(1, 0, 0)
    );
}

#[test]
fn dolt_procedure_inside_explicit_block_marks_the_block() {
    let mut t = ready();
    let steps = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("SELECT dolt_branch('b1')"),
        C("SELECT 1"),
        Z(b'T'),
        Q("COMMIT"),
        C("COMMIT"),
        Z(b'I'),
    ];
    assert_eq!(run(&mut t, &steps), tally(1, 0, 1));
}

#[test]
fn ready_for_query_in_transaction_without_begin_tag_opens_a_block() {
    // E.g. a BEGIN sent by a driver whose tag we never saw: the status is the authority.
    let mut t = ready();
    assert_eq!(
        run(&mut t, &[Q("x"), C("INSERT 0 1"), Z(b'T')]),
        Tally::default()
    );
    assert_eq!(t.status(), TxnStatus::InTransaction);
    assert_eq!(
        run(&mut t, &[Q("COMMIT"), C("COMMIT"), Z(b'I')]),
        tally(1, 0, 1)
    );
}

#[test]
fn block_ending_without_a_tag_counts_by_its_state() {
    let mut t = ready();
    let steps = [
        Q("BEGIN"),
        C("BEGIN"),
        Z(b'T'),
        Q("INSERT"),
        C("INSERT 0 1"),
        Z(b'T'),
        Q("PREPARE TRANSACTION 'x'"),
        C("PREPARE TRANSACTION"),
        Z(b'I'),
    ];
    // Unknown ending: not failed, so counted as a commit of a write.
    assert_eq!(run(&mut t, &steps), tally(1, 0, 1));
}

#[test]
fn empty_query_counts_nothing() {
    let mut t = ready();
    let mut tally_ = Tally::default();
    t.client_message(b'Q', b"\0");
    t.server_message(b'I', b"", &mut tally_);
    t.server_message(b'Z', b"I", &mut tally_);
    assert_eq!(tally_, Tally::default());
    assert!(t.at_boundary());
}

#[test]
fn closing_a_writing_statement_forgets_it() {
    let mut t = ready();
    run(
        &mut t,
        &[Parse("s1", "SELECT dolt_commit('-Am', $1)"), Sync, Z(b'I')],
    );
    t.client_message(b'C', b"Ss1\0");
    run(&mut t, &[Sync, Z(b'I')]);
    // A later statement of the same name (re-prepared elsewhere in the protocol) reads nothing.
    assert_eq!(
        run(&mut t, &[Bind("", "s1"), Sync, C("SELECT 1"), Z(b'I')]),
        tally(1, 0, 0)
    );
}
