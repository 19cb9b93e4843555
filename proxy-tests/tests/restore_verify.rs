//! `restore` and `verify` for every kind of backup, through the real binary: copy entries, sync
//! backups and push remotes (by file:// URL) restore into a directory a Doltgres starts on, with
//! the rows that were backed up; a copy whose files were tampered with does not verify.

use std::process::Command;

use doltgres_sidecar::window::config::{PushConfig, SyncConfig};
use proxy_tests::install;
use proxy_tests::managed::ManagedProxy;

/// Runs the binary with these arguments; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(install::sidecar_binary())
        .args(args)
        .env("DOLTGRES_PASSWORD", proxy_tests::managed::PASSWORD)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn rows_in(m: &ManagedProxy, dir: &std::path::Path, database: &str) -> Vec<String> {
    m.query_restored(dir, database, "SELECT v FROM notes ORDER BY id")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_backup_restores_and_verifies() {
    let m = ManagedProxy::start(|c, dir| {
        c.backup.push = Some(PushConfig {
            remote: "backup".into(),
            url: Some(format!("file://{}/remote/{{database}}", dir.display())),
            branches: vec!["main".into()],
            commit_working_set: true,
        });
        c.backup.sync = Some(SyncConfig {
            name: "nightly".into(),
            url: Some(format!("file://{}/sync/{{database}}", dir.display())),
        });
    })
    .await;
    let client = m.connect().await;
    client
        .batch_execute("CREATE TABLE notes (id int primary key, v text)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    drop(client);
    for action in ["push", "sync", "copy"] {
        let (code, record) = m.backup(action).await;
        assert_eq!(code, 200, "{action}: {record}");
    }
    let base = m.dir.path();
    let doltgres = install::doltgres_binary().to_str().unwrap().to_string();
    let catalog = m.catalog_dir().to_str().unwrap().to_string();
    let local = ["--catalog", &catalog, "--doltgres", &doltgres];
    let expected = ["one", "two"];

    // A copy entry, by id.
    let id = m.catalog().latest().unwrap().id;
    let (ok, out, err) = cli(&[&["verify", &id][..], &local].concat());
    assert!(ok && out.contains("verifies"), "{out}\n{err}");
    let target = base.join("restored-copy");
    let to = target.to_str().unwrap();
    let (ok, out, err) = cli(&[&["restore", "--from", &id, "--to", to][..], &local].concat());
    assert!(ok, "{out}\n{err}");
    assert_eq!(rows_in(&m, &target, "postgres").await, expected);
    // The target is not empty now: refused, unless told to leave or replace it.
    let (ok, _, err) = cli(&[&["restore", "--from", &id, "--to", to][..], &local].concat());
    assert!(!ok && err.contains("not empty"), "{err}");
    let (ok, out, _) = cli(&[
        &["restore", "--from", &id, "--to", to, "--if-empty"][..],
        &local,
    ]
    .concat());
    assert!(ok && out.contains("nothing restored"), "{out}");
    let (ok, _, err) = cli(&[
        &["restore", "--from", &id, "--to", to, "--force"][..],
        &local,
    ]
    .concat());
    assert!(ok, "{err}");

    // A sync backup and a push remote, by URL.
    for (kind, dir) in [("sync", "sync/postgres"), ("push", "remote/postgres")] {
        let url = format!("file://{}/{dir}", base.display());
        let (ok, out, err) = cli(&[&["verify", &url][..], &local].concat());
        assert!(ok && out.contains("restores"), "{kind}: {out}\n{err}");
        let target = base.join(format!("restored-{kind}"));
        let args = [
            "restore",
            "--from",
            &url,
            "--to",
            target.to_str().unwrap(),
            "--database",
            "notesdb",
        ];
        let (ok, out, err) = cli(&[&args[..], &local].concat());
        assert!(ok, "{kind}: {out}\n{err}");
        assert_eq!(rows_in(&m, &target, "notesdb").await, expected, "{kind}");
    }

    // A copy whose files changed after it was written does not verify.
    let entry = m.catalog().latest().unwrap();
    let tampered = entry
        .manifest
        .files
        .iter()
        .find(|f| f.path.starts_with("data/") && f.size > 0)
        .unwrap();
    std::fs::write(entry.files_dir().join(&tampered.path), b"tampered").unwrap();
    let (ok, _, err) = cli(&[&["verify", &entry.id][..], &local].concat());
    assert!(!ok && err.contains("does not verify"), "{err}");
    m.proxy.stop().await;
}
