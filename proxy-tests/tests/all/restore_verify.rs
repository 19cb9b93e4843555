//! `restore` and `verify` for every kind of backup, through the real binary: copy entries, sync
//! backups and push remotes (by file:// URL) restore into a directory a Doltgres starts on, with
//! the rows that were backed up; a copy whose files were tampered with does not verify.

use std::process::Command;

use doltgres_sidecar::config::backup::{PushConfig, SyncConfig};
use proxy_tests::facts::exec;
use proxy_tests::install;
use proxy_tests::managed::ManagedProxy;
use proxy_tests::managed::local_command as cli;

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
    exec(&client, "CREATE TABLE notes (id int primary key, v text)").await;
    exec(&client, "INSERT INTO notes VALUES (1, 'one'), (2, 'two')").await;
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

/// The local command `args` run in `cwd`, in an environment holding only `env` of the sidecar's
/// variables; returns (success, stdout, stderr).
fn local_in(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(install::sidecar_binary());
    command.args(args).current_dir(cwd).env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("DOLTGRES_SIDECAR_") || n == "DOLTGRES_PASSWORD")
        {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `verify` and `restore` run in any directory work on the files the running sidecar uses: they
/// ask it (`--admin-url`) for its catalog and Doltgres binary; with `--config`, or with the
/// `DOLTGRES_SIDECAR_*` variables a container sets, they find the same without it, and when no
/// sidecar answers they say what they assumed. A verification that finds other values than the
/// manifest's shows them as values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commands_find_the_running_sidecars_files_from_anywhere() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let client = m.connect().await;
    exec(
        &client,
        "CREATE TABLE notes (id int primary key, v text); \
             INSERT INTO notes VALUES (1, 'one'), (2, 'two')",
    )
    .await;
    drop(client);
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    let elsewhere = tempfile::tempdir().unwrap();
    let cwd = elsewhere.path();
    let admin = m.proxy.admin_url.as_str();
    let nobody = "http://127.0.0.1:1";
    let doltgres = install::doltgres_binary().to_str().unwrap();
    let server_dir = m.dir.path().join("doltgres");
    let server_dir = server_dir.to_str().unwrap();

    tokio::task::block_in_place(|| {
        // Asked over the admin API: no note, the sidecar's catalog and binary.
        let (ok, out, err) = local_in(cwd, &["verify", "latest", "--admin-url", admin], &[]);
        assert!(ok && out.contains("verifies"), "{out}\n{err}");
        assert!(!err.contains("note:"), "{err}");
        let to = cwd.join("restored");
        let to = to.to_str().unwrap();
        let args = [
            "restore",
            "--from",
            "latest",
            "--to",
            to,
            "--admin-url",
            admin,
        ];
        let (ok, out, err) = local_in(cwd, &args, &[]);
        assert!(ok && out.contains("restored copy"), "{out}\n{err}");

        // The container's variables (managed mode, --server-dir): backups/ beside the server's
        // directory, with a note that no sidecar answered.
        let env = [
            ("DOLTGRES_SIDECAR_CONTROL", "managed"),
            ("DOLTGRES_SIDECAR_SERVER_DIR", server_dir),
            ("DOLTGRES_SIDECAR_DOLTGRES", doltgres),
        ];
        let (ok, out, err) = local_in(cwd, &["verify", "latest", "--admin-url", nobody], &env);
        assert!(ok && out.contains("verifies"), "{out}\n{err}");
        let catalog = m.catalog_dir();
        assert!(
            err.contains("note: no sidecar answers at http://127.0.0.1:1")
                && err.contains(&format!("using the catalog {}", catalog.display())),
            "{err}"
        );

        // A config file: no question asked.
        let config = cwd.join("sidecar.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\ncontrol = \"managed\"\ndir = \"{server_dir}\"\nbinary = \"{doltgres}\"\n"
            ),
        )
        .unwrap();
        let args = [
            "verify",
            "latest",
            "--config",
            config.to_str().unwrap(),
            "--admin-url",
            nobody,
        ];
        let (ok, out, err) = local_in(cwd, &args, &[]);
        assert!(ok && out.contains("verifies"), "{out}\n{err}");
        assert!(!err.contains("note:"), "{err}");

        // Nothing answers and nothing says otherwise: the default, said, and a clear failure.
        let (ok, _, err) = local_in(cwd, &["verify", "latest", "--admin-url", nobody], &[]);
        assert!(!ok, "{err}");
        let default = cwd.join("var/backups");
        assert!(
            err.contains(&format!("there is no catalog at {}", default.display())),
            "{err}"
        );
        assert!(!cwd.join("var").exists(), "looking created nothing");
    });

    // The manifest says 5 rows where the copy has 2: the values, not JSON arrays.
    let entry = m.catalog().latest().unwrap();
    let path = entry.dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["databases"][0]["tables"]["public.notes"] = 5.into();
    std::fs::write(&path, manifest.to_string()).unwrap();
    let (ok, _, err) = tokio::task::block_in_place(|| {
        local_in(cwd, &["verify", "latest", "--admin-url", admin], &[])
    });
    assert!(!ok, "{err}");
    assert!(
        err.contains("public.notes has 2 rows, the manifest says 5"),
        "{err}"
    );
    assert!(!err.contains("[\""), "{err}");
    m.proxy.stop().await;
}
