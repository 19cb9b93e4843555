//! Facts about Doltgres v1.2.0 that the sidecar depends on, each pinned by one test against the
//! real server. If a test here fails after a Doltgres upgrade, the behaviour changed: update
//! `docs/doltgres-notes.md` and check the part of the sidecar that relied on it.
//!
//! Wire-level facts use [`wire::RawSession`]: tokio-postgres logs in (SCRAM) through a recording
//! relay, then the test speaks the protocol itself and sees every message, unfiltered.

// The raw client lives in the test bed's source tree but is compiled into this test only.
#[path = "../src/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use proxy_tests::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::SimpleQueryMessage;
use wire::{RawSession, briefs, frontend};

// ---------------------------------------------------------------------------------------------
// Helpers

async fn raw(server: &TestServer) -> RawSession {
    RawSession::login(&server.addr(), |addr| server.config_at(addr)).await
}

/// A tokio-postgres connection to `database` on the server.
async fn connect_to(server: &TestServer, database: &str) -> tokio_postgres::Client {
    let mut config = server.config_at(&server.addr());
    config.dbname(database);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {database}: {e}"));
    tokio::spawn(connection);
    client
}

/// The first column of every row `sql` returns, as text (simple protocol).
async fn column(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

/// The single value `sql` returns.
async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    let values = column(client, sql).await;
    assert_eq!(values.len(), 1, "{sql} returned {values:?}");
    values.into_iter().next().unwrap()
}

/// The pid recorded in `<data_dir>/.dolt/sql-server.info` (`pid:port:uuid`).
fn server_pid(server: &TestServer) -> u32 {
    let info = fs::read_to_string(server.data_dir.join(".dolt/sql-server.info")).unwrap();
    info.split(':').next().unwrap().parse().unwrap()
}

/// The test bed's layout: `<tmp>/data` (data dir), `<tmp>/work` (the server's working directory),
/// `<tmp>/root` (`DOLT_ROOT_PATH`).
fn sibling(server: &TestServer, name: &str) -> PathBuf {
    server.data_dir.parent().unwrap().join(name)
}

/// Every regular file under `dirs` with its size, mtime and contents.
fn snapshot(dirs: &[PathBuf]) -> BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(&entry.path(), out);
            } else if kind.is_file() {
                let meta = entry.metadata().unwrap();
                let contents = fs::read(entry.path()).unwrap();
                out.insert(
                    entry.path(),
                    (meta.len(), meta.modified().unwrap(), contents),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    for dir in dirs {
        walk(dir, &mut out);
    }
    out
}

/// Whether another process holds an flock on `path` (tried without blocking, released at once).
fn flock_held(path: &Path) -> bool {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_lock) => false,
        Err((_, Errno::EWOULDBLOCK)) => true,
        Err((_, e)) => panic!("flock {}: {e}", path.display()),
    }
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
    let key = |s: &RawSession| s.startup.iter().find_map(|m| m.backend_key()).unwrap();
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
// 4. Dolt commits, pushes, backups and restores

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_commit_does_not_create_a_dolt_commit() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    client
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let head = value(&client, "SELECT dolt_hashof('HEAD')").await;
    let log = value(&client, "SELECT count(*) FROM dolt_log").await;
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (1); COMMIT")
        .await
        .unwrap();
    assert_eq!(value(&client, "SELECT dolt_hashof('HEAD')").await, head);
    assert_eq!(value(&client, "SELECT count(*) FROM dolt_log").await, log);
    assert_eq!(
        column(&client, "SELECT table_name FROM dolt_status").await,
        ["public.t"],
        "the change stays in the working set"
    );
    // dolt_commit returns the new commit's hash, which becomes HEAD.
    let commit = value(&client, "SELECT dolt_commit('-Am', 'm')").await;
    assert_ne!(commit, head);
    assert_eq!(value(&client, "SELECT dolt_hashof('HEAD')").await, commit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dolt_push_carries_only_the_last_dolt_commit() {
    let server = TestServer::doltgres().await;
    let remotes = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remotes.path().join("remote").display());
    let client = server.connect_direct().await;
    client
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let head = value(&client, "SELECT dolt_commit('-Am', 'one')").await;
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();

    let add = format!("SELECT dolt_remote('add', 'backup', '{url}')");
    assert_eq!(value(&client, &add).await, "0");
    let pushed = value(&client, "SELECT dolt_push('backup', 'main')").await;
    assert!(pushed.starts_with("(0,"), "{pushed}");
    assert!(
        pushed.contains("[new branch]") && pushed.contains("main -> main"),
        "{pushed}"
    );

    let clone = format!("SELECT dolt_clone('{url}', 'otherdb')");
    assert_eq!(value(&client, &clone).await, "0");
    let other = connect_to(&server, "otherdb").await;
    assert_eq!(column(&other, "SELECT id FROM t ORDER BY id").await, ["1"]);
    assert_eq!(value(&other, "SELECT dolt_hashof('HEAD')").await, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dolt_backup_sync_carries_the_working_set() {
    let server = TestServer::doltgres().await;
    let backups = tempfile::tempdir().unwrap();
    let url = format!("file://{}", backups.path().join("bk").display());
    let client = server.connect_direct().await;
    client
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let head = value(&client, "SELECT dolt_commit('-Am', 'one')").await;
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();

    let add = format!("SELECT dolt_backup('add', 'bk', '{url}')");
    assert_eq!(value(&client, &add).await, "0");
    assert_eq!(
        value(&client, "SELECT dolt_backup('sync', 'bk')").await,
        "0"
    );
    assert!(backups.path().join("bk/manifest").exists());

    let restore = format!("SELECT dolt_backup('restore', '{url}', 'newdb')");
    assert_eq!(value(&client, &restore).await, "0");
    assert!(server.data_dir.join("newdb/.dolt").is_dir());
    let restored = connect_to(&server, "newdb").await;
    assert_eq!(
        column(&restored, "SELECT id FROM t ORDER BY id").await,
        ["1", "2"]
    );
    assert_eq!(value(&restored, "SELECT dolt_hashof('HEAD')").await, head);
    assert_eq!(
        column(&restored, "SELECT table_name FROM dolt_status").await,
        ["public.t"],
        "the uncommitted row came back as a working-set change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_switches_the_current_database_and_answers_set() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    client.batch_execute("CREATE DATABASE other").await.unwrap();
    let mut s = raw(&server).await;
    assert_eq!(briefs(&s.simple("USE other").await), ["C(SET)", "Z(I)"]);
    let current = s.simple("SELECT current_database()").await;
    let row = current.iter().find(|m| m.tag == b'D').unwrap();
    assert!(row.body.ends_with(b"other"), "{:?}", row.body);
}

// ---------------------------------------------------------------------------------------------
// 5. Files: background writes, locks, auth data

/// The files under `dirs` that differ between two snapshots (added, removed or rewritten).
fn changed_files(
    before: &BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)>,
    after: &BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)>,
) -> Vec<PathBuf> {
    let paths: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .cloned()
        .collect()
}

/// A table with a secondary index and some rows, written through `client`.
async fn load_indexed_table(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE big (id INT PRIMARY KEY, k INT); CREATE INDEX big_k ON big (k)",
        )
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO big SELECT generate_series(1, 5000), 7")
        .await
        .unwrap();
    client
        .batch_execute("UPDATE big SET k = 8 WHERE id < 100")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_with_one_database_writes_no_files() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    load_indexed_table(&client).await;
    value(&client, "SELECT dolt_commit('-Am', 'load')").await;
    let dirs = [
        server.data_dir.clone(),
        sibling(&server, "work"),
        sibling(&server, "root"),
    ];
    let before = snapshot(&dirs);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&dirs);
    assert_eq!(changed_files(&before, &after), Vec::<PathBuf>::new());
    // With a single database the statistics live in memory only.
    assert!(
        !after
            .keys()
            .any(|p| p.to_string_lossy().contains("/.dolt/stats/"))
    );
    let stats = value(&client, "SELECT dolt_stats_info()").await;
    assert!(stats.contains(r#""backing":"memory""#), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_store_of_a_created_database_is_written_after_the_client_is_answered() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    client
        .batch_execute("CREATE DATABASE second")
        .await
        .unwrap();
    // The database created while running hosts the statistics store.
    let stats_dir = server.data_dir.join("second/.dolt/stats");
    assert!(stats_dir.join(".dolt/noms/LOCK").exists());
    let info = value(&client, "SELECT dolt_stats_info()").await;
    assert!(info.contains(r#""backing":"second""#), "{info}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let second = connect_to(&server, "second").await;
    load_indexed_table(&second).await;
    // Every statement has been answered; nothing is running. Files still change.
    let dirs = [
        server.data_dir.clone(),
        sibling(&server, "work"),
        sibling(&server, "root"),
    ];
    let before = snapshot(&dirs);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&dirs);
    let changed = changed_files(&before, &after);
    assert!(
        !changed.is_empty(),
        "the statistics store was not written in the background"
    );
    let outside: Vec<&PathBuf> = changed
        .iter()
        .filter(|p| !p.starts_with(&stats_dir))
        .collect();
    assert!(
        outside.is_empty(),
        "changed outside the stats store: {outside:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_database_holds_an_flock_on_noms_lock_while_running() {
    let mut server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    client
        .batch_execute("CREATE DATABASE second")
        .await
        .unwrap();
    drop(client);
    let locks = [
        server.data_dir.join("postgres/.dolt/noms/LOCK"),
        server.data_dir.join("second/.dolt/noms/LOCK"),
    ];
    let info = server.data_dir.join(".dolt/sql-server.info");
    for lock in &locks {
        assert!(flock_held(lock), "{} not locked", lock.display());
    }
    let contents = fs::read_to_string(&info).unwrap();
    let fields: Vec<&str> = contents.split(':').collect();
    assert_eq!(fields.len(), 3, "pid:port:uuid, got {contents:?}");
    assert_eq!(fields[1], server.port.to_string());

    server.stop();
    for lock in &locks {
        assert!(lock.exists(), "{} removed at exit", lock.display());
        assert!(!flock_held(lock), "{} still locked", lock.display());
    }
    assert!(!info.exists(), "sql-server.info is removed at exit");
    let leftovers: Vec<_> = fs::read_dir(server.data_dir.join(".dolt"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    server.start().await;
    assert!(flock_held(&locks[0]));
    assert!(info.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_data_lives_in_the_working_directory() {
    let mut server = TestServer::doltgres().await;
    let auth = sibling(&server, "work").join("auth.db");
    let initial = fs::read(&auth).expect("auth.db is written at first start");
    let client = server.connect_direct().await;
    client
        .batch_execute("CREATE USER alice WITH PASSWORD 'secret'")
        .await
        .unwrap();
    let after = fs::read(&auth).unwrap();
    assert_ne!(initial, after, "CREATE USER rewrites auth.db");
    let all = snapshot(&[
        server.data_dir.clone(),
        sibling(&server, "work"),
        sibling(&server, "root"),
    ]);
    let auth_files: Vec<&PathBuf> = all
        .keys()
        .filter(|p| {
            let p = p.to_string_lossy();
            p.contains(".doltcfg") || p.ends_with("auth.db") || p.ends_with("privileges.db")
        })
        .collect();
    assert_eq!(auth_files, [&auth]);

    // The user survives a restart (it is read back from auth.db).
    drop(client);
    server.stop();
    server.start().await;
    let mut config = server.config_at(&server.addr());
    config.user("alice").password("secret");
    let (alice, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("alice logs in after a restart");
    tokio::spawn(connection);
    assert_eq!(value(&alice, "SELECT 1").await, "1");
    // Oddly, a plain user may not call current_user.
    let err = alice.simple_query("SELECT current_user").await.unwrap_err();
    let err = err.as_db_error().expect("a server error");
    assert_eq!(err.message(), "permission denied for routine current_user");
}

// ---------------------------------------------------------------------------------------------
// 6. SIGTERM with sessions open

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_with_a_bare_eof() {
    let server = TestServer::doltgres().await;
    let idle = raw(&server).await;
    let mut in_txn = raw(&server).await;
    in_txn.simple("BEGIN").await;
    let mut running = raw(&server).await;
    running.send(&frontend::query("SELECT pg_sleep(5)")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let watch = |session: RawSession| {
        tokio::spawn(async move {
            let closed = session.read_until_closed().await;
            (closed, Instant::now())
        })
    };
    let watchers = [watch(idle), watch(in_txn), watch(running)];
    let signalled = Instant::now();
    let mut server = server;
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let exited = signalled.elapsed();

    for (name, watcher) in ["idle", "in transaction", "running pg_sleep"]
        .iter()
        .zip(watchers)
    {
        let (closed, at) = watcher.await.unwrap();
        assert!(
            closed.messages.is_empty(),
            "{name}: {:?}",
            briefs(&closed.messages)
        );
        assert!(closed.trailing.is_empty(), "{name}: {:?}", closed.trailing);
        assert!(closed.end.is_ok(), "{name}: {:?}", closed.end);
        let after = at.duration_since(signalled);
        assert!(
            after < Duration::from_secs(2),
            "{name} closed {after:?} after SIGTERM"
        );
    }
    // The process itself exits only once the running pg_sleep has finished.
    assert!(
        exited >= Duration::from_millis(3500),
        "exited after {exited:?}"
    );
    drop(server);
}
