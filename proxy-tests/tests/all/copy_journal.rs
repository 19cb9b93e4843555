//! Copy windows and Dolt's chunk journal, on real Doltgres in managed mode (no GC in between,
//! so new writes stay in the journal): consecutive entries share the journal's unchanged
//! segments, so an entry costs what was appended since the last one, not the journal's size;
//! every entry still verifies and restores to its own rows; after a GC the new journal shares
//! nothing with the old one and is copied afresh.

use doltgres_sidecar::catalog::journal::{SEGMENT, is_journal};
use doltgres_sidecar::catalog::manifest::Manifest;
use proxy_tests::facts::exec;
use proxy_tests::managed::ManagedProxy;

/// Rows of `bytes` random hex characters each (Dolt compresses chunks: repeated text would
/// hardly grow the journal), 500 to a statement.
async fn grow(client: &tokio_postgres::Client, from: i32, rows: i32, bytes: i32) {
    use std::fmt::Write;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ from as u64;
    let mut random_hex = |len: i32| {
        let mut out = String::with_capacity(len as usize);
        while out.len() < len as usize {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let _ = write!(out, "{state:016x}");
        }
        out.truncate(len as usize);
        out
    };
    for chunk in (from..from + rows).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| format!("({id}, '{}')", random_hex(bytes)))
            .collect();
        exec(
            client,
            &format!("INSERT INTO t VALUES {}", values.join(", ")),
        )
        .await;
    }
}

/// The journal's size in a manifest, and the bytes of the other files the entry copied.
fn journal_and_rest(manifest: &Manifest) -> (u64, u64) {
    let journal = manifest
        .files
        .iter()
        .filter(|f| is_journal(&f.path))
        .map(|f| f.size)
        .sum();
    let rest = manifest
        .files
        .iter()
        .filter(|f| !is_journal(&f.path) && !f.linked)
        .map(|f| f.size)
        .sum();
    (journal, rest)
}

async fn copy(m: &ManagedProxy) -> Manifest {
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    m.catalog().latest().unwrap().manifest
}

async fn count_in(m: &ManagedProxy, manifest: &Manifest) -> Vec<String> {
    let entry = m.catalog().entry(&manifest.id).unwrap();
    m.query_copy(&entry, "postgres", "SELECT count(*) FROM t")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_entries_share_the_journal_and_cost_what_was_appended() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE t (id int primary key, v text)").await;
    grow(&client, 0, 8000, 1024).await; // ~8 MB of rows, several journal segments
    let first = copy(&m).await;
    let (journal_1, _) = journal_and_rest(&first);
    assert!(journal_1 > 4 * SEGMENT, "a journal of {journal_1} bytes");
    grow(&client, 8000, 200, 1024).await; // ~200 KB more
    let second = copy(&m).await;
    let (journal_2, rest_2) = journal_and_rest(&second);
    let appended = journal_2 - journal_1;
    assert!(appended > 0);
    // What the entry copied: what was appended, the rest of the one segment the journal ended
    // in, and the other small files; the journal's earlier segments are links.
    let bound = appended + SEGMENT + rest_2;
    assert!(
        second.bytes_copied <= bound,
        "copied {} bytes, at most {bound} expected (appended {appended})",
        second.bytes_copied
    );
    assert!(
        second.bytes_linked >= journal_1 - SEGMENT,
        "linked {} of a {journal_1}-byte journal",
        second.bytes_linked
    );
    // Both entries hold their own rows, and verify.
    assert_eq!(count_in(&m, &first).await, ["8000"]);
    assert_eq!(count_in(&m, &second).await, ["8200"]);
    for manifest in [&first, &second] {
        let entry = m.catalog().entry(&manifest.id).unwrap();
        doltgres_sidecar::verify::verify_entry(&m.scratch(), &entry, &mut |_| {})
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.id));
    }

    // A GC moves the journal into table files; the next write starts a new journal, which
    // shares nothing with the old one's segments.
    client.simple_query("SELECT dolt_gc()").await.unwrap();
    drop(client);
    let client = m.connect().await;
    grow(&client, 8200, 100, 1024).await;
    let third = copy(&m).await;
    let journal = third
        .files
        .iter()
        .find(|f| is_journal(&f.path) && f.path.contains("/postgres/"))
        .expect("a new journal");
    assert!(
        journal.segments.as_ref().unwrap().iter().all(|s| !s.linked),
        "a segment of the old journal was linked into the new one"
    );
    assert_eq!(count_in(&m, &third).await, ["8300"]);
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_past_gc_journal_size_is_collected_inside_the_window() {
    // With gc_journal_size set, the copy window runs dolt_gc() with every session at a
    // boundary: an idle session goes on, the entry holds the rows in a table file instead of the
    // journal, and it verifies.
    let m = ManagedProxy::start(|c, _| {
        c.backup.copy.as_mut().unwrap().gc_journal_size = 1 << 20;
    })
    .await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE t (id int primary key, v text)").await;
    grow(&client, 0, 3000, 1024).await;
    let manifest = copy(&m).await;
    assert!(manifest.timings.gc > 0.0);
    assert!(
        !manifest
            .files
            .iter()
            .any(|f| is_journal(&f.path) && f.path.contains("/postgres/") && f.size > 1 << 20),
        "the journal was collected"
    );
    assert!(
        manifest
            .files
            .iter()
            .any(|f| f.path.contains("/postgres/") && f.path.ends_with(".darc")),
        "into a table file"
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3000, "the idle session goes on");
    assert_eq!(count_in(&m, &manifest).await, ["3000"]);
    let entry = m.catalog().entry(&manifest.id).unwrap();
    doltgres_sidecar::verify::verify_entry(&m.scratch(), &entry, &mut |_| {})
        .await
        .unwrap();
    m.proxy.stop().await;
}
