//! Facts about Doltgres v1.2.0 Dolt commits, pushes, backups, clones and restores (file:// URLs)
//! that the sidecar depends on, each pinned by one test against the real server. If a test here
//! fails after a Doltgres upgrade, the behaviour changed: update `docs/doltgres-notes.md` and
//! check the part of the sidecar that relied on it.

use proxy_tests::TestServer;
use proxy_tests::facts::exec;
use proxy_tests::facts::{column, connect_to, raw, value};
use proxy_tests::raw::briefs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_commit_does_not_create_a_dolt_commit() {
    let (_server, client) =
        TestServer::doltgres_seeded("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let head = value(&client, "SELECT dolt_hashof('HEAD')").await;
    let log = value(&client, "SELECT count(*) FROM dolt_log").await;
    exec(&client, "BEGIN; INSERT INTO t VALUES (1); COMMIT").await;
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
    let client = server
        .seeded("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let head = value(&client, "SELECT dolt_commit('-Am', 'one')").await;
    exec(&client, "INSERT INTO t VALUES (2)").await;

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
    let client = server
        .seeded("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let head = value(&client, "SELECT dolt_commit('-Am', 'one')").await;
    exec(&client, "INSERT INTO t VALUES (2)").await;

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
    let (server, _client) = TestServer::doltgres_seeded("CREATE DATABASE other").await;
    let mut s = raw(&server).await;
    assert_eq!(briefs(&s.simple("USE other").await), ["C(SET)", "Z(I)"]);
    let current = s.simple("SELECT current_database()").await;
    let row = current.iter().find(|m| m.tag == b'D').unwrap();
    assert!(row.body.ends_with(b"other"), "{:?}", row.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_restore_leaves_its_database_behind() {
    // dolt_backup('restore') of a URL that does not exist fails with "not found", but the
    // database it was restoring into now exists, so a dolt_clone into the same name fails with
    // "database exists". Restoring a URL therefore tries the two under different names.
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    let restore = "SELECT dolt_backup('restore', 'file:///nonexistent/x', 'r')";
    let err = client.simple_query(restore).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert!(db.message().contains("not found"), "{}", db.message());
    let clone = "SELECT dolt_clone('file:///nonexistent/x', 'r')";
    let err = client.simple_query(clone).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42P04", "{}", db.message());
    let other = "SELECT dolt_clone('file:///nonexistent/x', 'c')";
    let err = client.simple_query(other).await.unwrap_err();
    let message = err
        .as_db_error()
        .expect("a server error")
        .message()
        .to_string();
    assert!(!message.contains("exists"), "{message}");
}
