//! `restore` never touches a directory a live server uses, never leaves a half-made target, and
//! leaves a directory that serves the restored data and nothing else, through the real binary on
//! real Doltgres servers:
//! - a directory a sidecar runs its server on, or a Doltgres serves, is refused, naming the
//!   process, whatever `--force` says;
//! - a restore that fails (a mistyped entry, a changed file, a URL that does not exist) leaves
//!   the target as it was and nothing beside it, and says why;
//! - a sync backup of `postgres` (the default database) restores under that name;
//! - the restored `config.yaml` names the restored directory, not the original's: a Doltgres
//!   started with it while the original runs serves the backup's rows.

use std::path::Path;
use std::time::Duration;

use doltgres_sidecar::config::backup::SyncConfig;
use proxy_tests::facts::exec;
use proxy_tests::managed::ManagedProxy;
use proxy_tests::managed::local_command as cli;
use proxy_tests::{TestServer, install};

/// `restore` with the catalog and Doltgres of `m`.
fn restore(m: &ManagedProxy, args: &[&str]) -> (bool, String, String) {
    let catalog = m.catalog_dir().to_str().unwrap().to_string();
    let doltgres = install::doltgres_binary().to_str().unwrap().to_string();
    let local = ["--catalog", &catalog, "--doltgres", &doltgres];
    cli(&[&["restore"][..], args, &local].concat())
}

/// The names in a directory, sorted, but for the lock file a restore or sidecar leaves (as
/// Doltgres leaves its `LOCK` files).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != doltgres_sidecar::dirlock::LOCK_FILE)
        .collect();
    names.sort();
    names
}

async fn notes(m: &ManagedProxy, rows: &[&str]) {
    let client = m.connect().await;
    exec(
        &client,
        "CREATE TABLE IF NOT EXISTS notes (id serial primary key, v text)",
    )
    .await;
    for row in rows {
        client
            .execute("INSERT INTO notes (v) VALUES ($1)", &[row])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_use_is_refused_naming_who_uses_it() {
    let m = ManagedProxy::start(|_, _| {}).await;
    notes(&m, &["one"]).await;
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    let live = m.dir.path().join("doltgres");
    let to = live.to_str().unwrap();
    let before = names(&live);
    let (ok, _, err) = restore(&m, &["--from", "latest", "--to", to, "--force"]);
    assert!(!ok, "a running sidecar's directory was replaced");
    let pid = std::process::id(); // the proxy runs in this test's process
    assert!(
        err.contains("in use by doltgres-sidecar run") && err.contains(&format!("(pid {pid})")),
        "{err}"
    );
    assert_eq!(names(&live), before, "the live directory is untouched");
    // The sidecar goes on: a write is acknowledged and read back.
    notes(&m, &["two"]).await;
    let client = m.connect().await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);

    // A Doltgres that no sidecar runs holds its databases' locks: refused as well.
    let server = TestServer::doltgres().await;
    let served = server.data_dir.parent().unwrap().to_path_buf();
    let (ok, _, err) = restore(
        &m,
        &[
            "--from",
            "latest",
            "--to",
            served.to_str().unwrap(),
            "--force",
        ],
    );
    assert!(!ok, "a running Doltgres' directory was replaced");
    assert!(err.contains("in use by a running Doltgres (pid "), "{err}");
    assert!(err.contains(".dolt/noms/LOCK"), "{err}");
    let direct = server.connect_direct().await;
    direct.simple_query("SELECT 1").await.unwrap();
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_leaves_the_target_as_it_was_and_says_why() {
    let m = ManagedProxy::start(|_, _| {}).await;
    notes(&m, &["one", "two"]).await;
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    let base = tempfile::tempdir().unwrap();
    let idle = base.path().join("idle");
    let (ok, out, err) = restore(&m, &["--from", "latest", "--to", idle.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let restored = names(&idle);
    let to = idle.to_str().unwrap();

    // A mistyped entry: nothing is deleted before the source is found.
    let (ok, _, err) = restore(&m, &["--from", "2026TYPO", "--to", to, "--force"]);
    assert!(!ok && err.contains("no copy entry \"2026TYPO\""), "{err}");
    assert_eq!(names(&idle), restored);
    // An entry id that leaves the catalog is no entry.
    let (ok, _, err) = restore(&m, &["--from", "..", "--to", to, "--force"]);
    assert!(!ok && err.contains("no copy entry"), "{err}");

    // A changed file: the checksum stops the restore; the target keeps the last good restore.
    let entry = m.catalog().latest().unwrap();
    let changed = entry
        .manifest
        .files
        .iter()
        .find(|f| f.path.starts_with("data/") && f.size > 0)
        .unwrap();
    let original = std::fs::read(entry.files_dir().join(&changed.path)).unwrap();
    std::fs::write(entry.files_dir().join(&changed.path), b"changed").unwrap();
    let (ok, _, err) = restore(&m, &["--from", &entry.id, "--to", to, "--force"]);
    assert!(!ok, "a changed copy restored");
    assert!(err.contains(&changed.path), "{err}");
    assert_eq!(names(&idle), restored);
    assert_eq!(
        names(base.path()),
        ["idle"],
        "nothing left beside the target"
    );
    std::fs::write(entry.files_dir().join(&changed.path), original).unwrap();

    // A URL that does not exist: the error says so (not that a database exists), no target
    // is made, and a retry with --if-empty restores.
    let fresh = base.path().join("fresh");
    let fresh_to = fresh.to_str().unwrap();
    let (ok, _, err) = restore(&m, &["--from", "file:///nonexistent/x", "--to", fresh_to]);
    assert!(!ok, "a missing backup restored");
    assert!(
        !err.contains("already exists") && !err.contains("42P04"),
        "{err}"
    );
    assert!(err.contains("file:///nonexistent/x"), "{err}");
    assert!(!fresh.exists(), "a failed restore made {}", fresh.display());
    assert_eq!(names(base.path()), ["idle"]);
    let (ok, out, err) = restore(&m, &["--from", "latest", "--to", fresh_to, "--if-empty"]);
    assert!(ok && out.contains("restored copy"), "{out}{err}");
    assert_eq!(
        m.query_restored(&fresh, "postgres", "SELECT v FROM notes ORDER BY id")
            .await,
        ["one", "two"]
    );
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_backup_of_the_postgres_database_restores_under_its_name() {
    let m = ManagedProxy::start(|c, dir| {
        c.backup.sync = Some(SyncConfig {
            name: "nightly".into(),
            url: Some(format!("file://{}/sync/{{database}}", dir.display())),
        });
    })
    .await;
    notes(&m, &["one", "two"]).await;
    let (code, record) = m.backup("sync").await;
    assert_eq!(code, 200, "{record}");
    let url = format!("file://{}/sync/postgres", m.dir.path().display());
    let target = m.dir.path().join("restored");
    let (ok, out, err) = restore(&m, &["--from", &url, "--to", target.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("as database postgres"), "{out}");
    assert_eq!(
        m.query_restored(&target, "postgres", "SELECT v FROM notes ORDER BY id")
            .await,
        ["one", "two"]
    );
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_directory_serves_the_backup_while_the_original_runs() {
    let m = ManagedProxy::start(|_, _| {}).await;
    notes(&m, &["one", "two"]).await;
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    notes(&m, &["three"]).await; // only in the original
    let target = m.dir.path().join("restored");
    let (ok, out, err) = restore(&m, &["--from", "latest", "--to", target.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let yaml = std::fs::read_to_string(target.join("config.yaml")).unwrap();
    let original = m.dir.path().join("doltgres");
    assert!(
        !yaml.contains(original.to_str().unwrap()),
        "the restored config names the original: {yaml}"
    );
    // Started with its own config.yaml (on a port of its own: the original holds its port),
    // the restored directory serves the backup's rows, not the original's.
    let port = proxy_tests::free_port();
    let yaml: String = yaml
        .lines()
        .map(|line| match line.trim_start().starts_with("port:") {
            true => format!("  port: {port}\n"),
            false => format!("{line}\n"),
        })
        .collect();
    std::fs::write(target.join("config.yaml"), yaml).unwrap();
    let mut server = std::process::Command::new(install::doltgres_binary())
        .arg("--config")
        .arg(target.join("config.yaml"))
        .current_dir(target.join("work"))
        .env("DOLT_ROOT_PATH", target.join("root"))
        .env("HOME", target.join("root"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(proxy_tests::managed::USER)
        .password(proxy_tests::managed::PASSWORD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let mut rows = None;
    for _ in 0..300 {
        if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            let got: Vec<String> = client
                .query("SELECT v FROM notes ORDER BY id", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            rows = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        rows.expect("the restored server took no login"),
        ["one", "two"]
    );
    m.proxy.stop().await;
}
