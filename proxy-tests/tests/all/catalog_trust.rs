//! The catalog as an attack surface, on real Doltgres in managed mode: copies are private to the
//! sidecar's user; a new copy hard-links table files only from an entry known to be whole and
//! private (never from a catalog or entry others can write to, never from one whose files
//! changed); a scrub finds a changed file and the next copy takes it afresh from the server;
//! entries that are links to elsewhere are not entries; scratch copies a cut-off verification
//! left behind are removed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use proxy_tests::facts::exec;
use proxy_tests::install;
use proxy_tests::managed::ManagedProxy;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o777
}

/// Every directory and file under `dir`, with its mode.
fn modes(dir: &Path, out: &mut Vec<(String, u32, bool)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_dir = path.is_dir();
        out.push((path.display().to_string(), mode(&path), is_dir));
        if is_dir {
            modes(&path, out);
        }
    }
}

/// A table with enough rows, moved into table files by `dolt_gc()` (which copies link).
async fn table_in_table_files(m: &ManagedProxy) {
    let client = m.connect().await;
    exec(
        &client,
        "CREATE TABLE t (id int primary key, v text); \
             INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) AS s(g)",
    )
    .await;
    client.simple_query("SELECT dolt_gc()").await.unwrap();
}

/// A new copy's manifest: how many bytes it linked from an earlier entry.
async fn copy_linked(m: &ManagedProxy) -> u64 {
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    m.catalog().latest().unwrap().manifest.bytes_linked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_private_and_link_only_from_private_whole_entries() {
    let m = ManagedProxy::start(|_, _| {}).await;
    table_in_table_files(&m).await;
    assert_eq!(
        copy_linked(&m).await,
        0,
        "the first copy has nothing to link from"
    );
    // Private: the catalog, the entries, their files (auth.db among them).
    let catalog = m.catalog_dir();
    assert_eq!(mode(&catalog), 0o700);
    let mut seen = Vec::new();
    modes(&m.catalog().latest().unwrap().dir, &mut seen);
    assert!(seen.iter().any(|(p, _, _)| p.ends_with("work/auth.db")));
    for (path, mode, is_dir) in &seen {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path}");
    }
    // Written by this process: the next copy links its table files.
    assert!(
        copy_linked(&m).await > 0,
        "unchanged table files are linked"
    );

    // A catalog others can write to: nothing is linked (anyone could have planted an entry).
    std::fs::set_permissions(&catalog, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        copy_linked(&m).await,
        0,
        "linked from a catalog open to others"
    );
    std::fs::set_permissions(&catalog, std::fs::Permissions::from_mode(0o700)).unwrap();
    // An entry others can write to is not linked from.
    let newest = m.catalog().latest().unwrap();
    std::fs::set_permissions(newest.files_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let linked = copy_linked(&m).await;
    let from = m.catalog().latest().unwrap();
    assert!(linked > 0, "the entry before it is still private and whole");
    let used_newest = from.manifest.files.iter().filter(|f| f.linked).any(|f| {
        let here = std::fs::metadata(from.files_dir().join(&f.path))
            .unwrap()
            .ino();
        let there = std::fs::metadata(newest.files_dir().join(&f.path)).map(|m| m.ino());
        there.is_ok_and(|ino| ino == here)
    });
    assert!(!used_newest, "linked from an entry open to others");
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_found_by_the_scrub_and_the_next_copy_takes_it_afresh() {
    let m = ManagedProxy::start(|_, _| {}).await;
    table_in_table_files(&m).await;
    copy_linked(&m).await;
    let first = m.catalog().latest().unwrap();
    let table = first
        .manifest
        .files
        .iter()
        .find(|f| doltgres_sidecar::catalog::copy_tree::immutable(&f.path))
        .expect("a table file")
        .clone();
    // The file changes on disk (bit rot, or someone).
    let path = first.files_dir().join(&table.path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    doltgres_sidecar::verify::background::scrub(&m.proxy.shared).await;
    let record = m
        .catalog()
        .entry(&first.id)
        .unwrap()
        .verify_record()
        .unwrap();
    assert!(
        !record.ok && record.detail.contains(&table.path),
        "{record:?}"
    );
    // The next copy links nothing from it: the table file is copied from the server, whole.
    let linked = copy_linked(&m).await;
    assert_eq!(linked, 0);
    let next = m.catalog().latest().unwrap();
    let fresh = next.manifest.file(&table.path).unwrap();
    assert!(!fresh.linked);
    assert_eq!(
        fresh.sha256, table.sha256,
        "the server's file, not the changed one"
    );
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_the_catalog_are_not_followed_and_cut_off_scratch_copies_are_removed() {
    let m = ManagedProxy::start(|_, _| {}).await;
    table_in_table_files(&m).await;
    copy_linked(&m).await;
    let entry = m.catalog().latest().unwrap();
    let catalog = m.catalog_dir().to_str().unwrap().to_string();
    let doltgres = install::doltgres_binary().to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    // What a verification killed mid-way leaves: a scratch copy of a process that is gone.
    let left = tmp.path().join("dgs-verify-4194305-1765000000000000000");
    std::fs::create_dir_all(left.join("work")).unwrap();
    std::fs::write(left.join("work/auth.db"), b"verifiers").unwrap();
    let verify = |id: &str| {
        Command::new(install::sidecar_binary())
            .args(["verify", id, "--catalog", &catalog, "--doltgres", &doltgres])
            .env("TMPDIR", tmp.path())
            .env("DOLTGRES_PASSWORD", proxy_tests::managed::PASSWORD)
            .output()
            .unwrap()
    };
    let out = verify(&entry.id);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!left.exists(), "the abandoned scratch copy is still there");
    let remaining: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(remaining.is_empty(), "{remaining:?}");
    // An entry whose files are a link to somewhere else is no entry.
    let files = entry.files_dir();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&files, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &files).unwrap();
    let out = verify(&entry.id);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no copy entry"),
        "{err}"
    );
    m.proxy.stop().await;
}
