//! Facts about how Doltgres v1.2.0 copies data to a `dolt_backup('sync')` backup or a
//! `dolt_push` remote (file:// URLs), which decide what a window may do with traffic flowing.
//! Each is pinned by one test against the real server; `docs/doltgres-notes.md` ("Transfers")
//! gives the source behind them. If a test here fails after a Doltgres upgrade, the behaviour
//! changed: update the notes and check `src/window/actions/sync.rs` and `push.rs`.

use std::time::{Duration, Instant};

use proxy_tests::TestServer;
use proxy_tests::facts::exec;
use proxy_tests::facts::value;
use tokio_util::sync::CancellationToken;

/// The table files of a file:// backup: `<name>.darc` archives (and classic table files).
fn table_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.len() >= 32 && !name.starts_with("nbs_") && name != "manifest"
        })
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_copies_only_what_the_backup_lacks() {
    let server = TestServer::doltgres().await;
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("bk");
    let client = server.connect_direct().await;
    exec(
        &client,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO t SELECT generate_series(1, 2000), repeat('x', 100)",
    )
    .await;
    let add = format!(
        "SELECT dolt_backup('add', 'bk', 'file://{}')",
        dir.display()
    );
    value(&client, &add).await;
    value(&client, "SELECT dolt_backup('sync', 'bk')").await;
    let first = table_files(&dir);
    assert!(!first.is_empty(), "no table file in {}", dir.display());

    // Nothing changed: the sync is a no-op (Dolt's "up to date" is not an error) and writes no
    // file.
    assert_eq!(
        value(&client, "SELECT dolt_backup('sync', 'bk')").await,
        "0"
    );
    assert_eq!(table_files(&dir), first);

    // One row changed: the backup keeps every file it had, untouched, and gains one with the
    // new chunks.
    exec(&client, "UPDATE t SET v = 'changed' WHERE id = 1000").await;
    assert_eq!(
        value(&client, "SELECT dolt_backup('sync', 'bk')").await,
        "0"
    );
    let second = table_files(&dir);
    let kept: Vec<_> = second.iter().filter(|f| first.contains(f)).collect();
    assert_eq!(kept.len(), first.len(), "{first:?} -> {second:?}");
    assert_eq!(second.len(), first.len() + 1, "{first:?} -> {second:?}");
}

/// Small commits on their own connection until cancelled; returns each one's (start, end).
async fn small_commits(
    client: tokio_postgres::Client,
    first_id: i32,
    stop: CancellationToken,
) -> Vec<(Instant, Instant)> {
    let mut out = Vec::new();
    let mut i = first_id;
    while !stop.is_cancelled() {
        let start = Instant::now();
        client
            .execute("INSERT INTO small VALUES ($1)", &[&i])
            .await
            .unwrap();
        out.push((start, Instant::now()));
        i += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_or_push_holds_up_commits_while_it_copies_from_the_journal() {
    let server = TestServer::doltgres().await;
    let backups = tempfile::tempdir().unwrap();
    let client = server.connect_direct().await;
    exec(
        &client,
        "CREATE TABLE small (id INT PRIMARY KEY); \
             CREATE TABLE big (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO big SELECT generate_series(1, 60000), repeat('x', 100)",
    )
    .await;
    let sync_url = format!("file://{}", backups.path().join("bk").display());
    let push_url = format!("file://{}", backups.path().join("remote").display());
    value(
        &client,
        &format!("SELECT dolt_backup('add', 'bk', '{sync_url}')"),
    )
    .await;
    value(
        &client,
        &format!("SELECT dolt_remote('add', 'origin', '{push_url}')"),
    )
    .await;
    value(&client, "SELECT dolt_commit('-Am', 'load')").await;
    value(&client, "SELECT dolt_backup('sync', 'bk')").await;
    client
        .simple_query("SELECT dolt_push('origin', 'main')")
        .await
        .unwrap();

    for (round, transfer) in [
        "SELECT dolt_backup('sync', 'bk')",
        "SELECT dolt_push('origin', 'main')",
    ]
    .into_iter()
    .enumerate()
    {
        // Every row of `big` rewritten: thousands of new chunks, all in the chunk journal.
        let v = ["y", "z"][round];
        exec(&client, &format!("UPDATE big SET v = repeat('{v}', 100)")).await;
        value(
            &client,
            &format!("SELECT dolt_commit('-Am', 'round {round}')"),
        )
        .await;
        let stop = CancellationToken::new();
        let writer = tokio::spawn(small_commits(
            server.connect_direct().await,
            round as i32 * 1_000_000,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        client.simple_query(transfer).await.unwrap();
        let ended = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        let commits = writer.await.unwrap();
        let took = ended - started;
        let alone: Vec<Duration> = commits
            .iter()
            .filter(|(_, end)| *end < started)
            .map(|(s, e)| *e - *s)
            .collect();
        let longest_beside = commits
            .iter()
            .filter(|(s, e)| *e > started && *s < ended)
            .map(|(s, e)| *e - *s)
            .max()
            .expect("no commit overlapped the transfer");
        let typical = {
            let mut v = alone.clone();
            v.sort();
            v[v.len() / 2]
        };
        // The commit issued while the transfer read its chunks from the journal waited for a
        // good part of the transfer (about half of it on a quiet machine; a quarter is asked, as
        // a loaded machine stretches the rest of the transfer too), far longer than a commit
        // takes alone.
        assert!(
            took >= Duration::from_millis(100)
                && longest_beside * 4 >= took
                && longest_beside >= typical * 4,
            "{transfer}: took {took:?}; the longest commit beside it {longest_beside:?}; \
             alone a commit takes {typical:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_branch_leaves_the_working_set_behind() {
    let (server, client) = TestServer::doltgres_seeded(
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .await;
    value(&client, "SELECT dolt_commit('-Am', 'one')").await;
    // A change another session committed with SQL: in main's working set, in no Dolt commit.
    server.seeded("INSERT INTO t VALUES (2)").await;
    let working = value(&client, "SELECT dolt_hashof_db()").await;

    // Neither form of a new branch takes it along: the branch starts from main's HEAD.
    value(&client, "SELECT dolt_branch('-c', 'main', 'copied')").await;
    value(&client, "SELECT dolt_checkout('copied')").await;
    assert_ne!(value(&client, "SELECT dolt_hashof_db()").await, working);
    assert_eq!(value(&client, "SELECT count(*) FROM t").await, "1");
    value(&client, "SELECT dolt_checkout('main')").await;
    value(&client, "SELECT dolt_checkout('-b', 'fresh')").await;
    assert_eq!(
        value(&client, "SELECT count(*) FROM dolt_status").await,
        "0"
    );
    assert_eq!(value(&client, "SELECT count(*) FROM t").await, "1");
    let commit = client
        .simple_query("SELECT dolt_commit('-Am', 'nothing')")
        .await
        .unwrap_err();
    assert!(
        format!("{commit:?}").contains("nothing to commit"),
        "{commit:?}"
    );
    // main keeps its working set.
    value(&client, "SELECT dolt_checkout('main')").await;
    assert_eq!(value(&client, "SELECT dolt_hashof_db()").await, working);
}
