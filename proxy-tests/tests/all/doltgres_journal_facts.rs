//! Facts about Doltgres v1.2.0's chunk journal (`<db>/.dolt/noms/vvvv…v`, 32 `v`s) that copy
//! windows rely on: between garbage collections it only grows by appending (the same file, its
//! earlier bytes unchanged), so a copy can take what is there before the server stops and only
//! what was appended after; a `dolt_gc()` deletes it (its chunks move into a table file) and the
//! next write starts a new journal, a different file that may get the same inode number; a
//! crash and restart leave it as it was.
//! If a test here fails after a Doltgres upgrade, the behaviour changed: update
//! `docs/doltgres-notes.md` and check the copy's journal handling (`src/catalog/journal.rs`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use proxy_tests::TestServer;
use proxy_tests::facts::exec;

fn journal(server: &TestServer) -> PathBuf {
    server
        .data_dir
        .join("postgres/.dolt/noms")
        .join("v".repeat(32))
}

/// The journal's inode and contents, if it exists.
fn read(path: &Path) -> Option<(u64, Vec<u8>)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), std::fs::read(path).unwrap()))
}

async fn insert(client: &tokio_postgres::Client, from: i32) {
    exec(
        client,
        &format!(
            "INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series({from}, {}) AS s(g)",
            from + 999
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn between_gcs_the_journal_only_grows_by_appending() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    let path = journal(&server);
    exec(&client, "CREATE TABLE t (id int primary key, v text)").await;
    let (inode, mut before) = read(&path).expect("a journal");
    for round in 0..5 {
        insert(&client, round * 1000).await;
        let (now_inode, now) = read(&path).expect("a journal");
        assert_eq!(now_inode, inode, "round {round}: the same file");
        assert!(now.len() > before.len(), "round {round}: it grew");
        assert!(
            now.starts_with(&before),
            "round {round}: its earlier bytes are unchanged"
        );
        before = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_deletes_the_journal_and_the_next_write_starts_a_new_file() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    let path = journal(&server);
    exec(&client, "CREATE TABLE t (id int primary key, v text)").await;
    insert(&client, 0).await;
    let (inode, before) = read(&path).expect("a journal");
    client.simple_query("SELECT dolt_gc()").await.unwrap();
    assert!(read(&path).is_none(), "the journal is gone after dolt_gc()");
    let noms = path.parent().unwrap();
    let archives = std::fs::read_dir(noms)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".darc")
        })
        .count();
    assert!(
        archives > 0,
        "its chunks went into a table file (an archive)"
    );
    insert(&client, 1000).await;
    let (new_inode, after) = read(&path).expect("a new journal");
    // A new file, which may get the old inode number back (seen here in some runs, not in
    // others): an inode alone does not tell the old journal from the new one; their bytes do.
    let _ = (new_inode, inode);
    assert!(
        !after.starts_with(&before),
        "the new journal does not continue the old one"
    );
    let tail = &before[before.len() - 4096..];
    assert!(
        after.len() < before.len() || &after[before.len() - 4096..before.len()] != tail,
        "the bytes where the old journal ended differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_a_restart_leave_the_journal_as_it_was() {
    let mut server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    let path = journal(&server);
    exec(&client, "CREATE TABLE t (id int primary key, v text)").await;
    insert(&client, 0).await;
    drop(client);
    let before = read(&path).expect("a journal");
    server.kill();
    server.start().await;
    let client = server.connect_direct().await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1000);
    assert_eq!(
        read(&path).expect("a journal"),
        before,
        "same file, same bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_breaks_open_transactions_of_other_sessions_and_spares_idle_ones() {
    // Why the sidecar runs dolt_gc() only inside a window, with every session at a boundary:
    // a transaction open in another session fails at COMMIT (its chunks were collected), while
    // a session idle through the GC goes on.
    let (server, setup) =
        TestServer::doltgres_seeded("CREATE TABLE t (id int primary key, v text)").await;
    insert(&setup, 0).await;
    let idle = server.connect_direct().await;
    let open = server.connect_direct().await;
    open.batch_execute("BEGIN; INSERT INTO t VALUES (5000, 'x')")
        .await
        .unwrap();
    setup.simple_query("SELECT dolt_gc()").await.unwrap();
    let count: i64 = idle
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1000, "the idle session goes on");
    let err = open.batch_execute("COMMIT").await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "XX000", "{}", db.message());
    assert!(
        db.message().contains("required but not found"),
        "{}",
        db.message()
    );
    let fresh = server.connect_direct().await;
    let count: i64 = fresh
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1000, "the open transaction's row is lost");
}
