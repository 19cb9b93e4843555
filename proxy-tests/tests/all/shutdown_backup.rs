//! The final backup on shutdown, through the real binary in managed mode: it runs after the last
//! session has ended, so it holds every commit acknowledged during the grace period, and with
//! `verify_after` it is verified before the process exits. Entries a sidecar finds unverified
//! when it starts are verified in the background.

use std::path::Path;
use std::time::{Duration, Instant};

use doltgres_sidecar::catalog::Catalog;
use nix::sys::signal::{Signal, kill};
use proxy_tests::facts::exec;
use proxy_tests::install;
use proxy_tests::managed::{PASSWORD, USER};
use proxy_tests::process::SidecarProcess;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

/// Writes a managed-mode config with a copy catalog in `dir`: `top` goes first, `backup` into
/// `[backup]`, `copy` into `[backup.copy]`.
fn write_config(dir: &Path, top: &str, backup: &str, copy: &str) -> std::path::PathBuf {
    let config = dir.join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "{top}\n[server]\ncontrol = \"managed\"\nbinary = \"{}\"\ndir = \"{}\"\npassword = \"{PASSWORD}\"\n\n\
             [backup]\n{backup}\n\n[backup.copy]\ncatalog = \"{}\"\n{copy}\n",
            install::doltgres_binary().display(),
            dir.join("doltgres").display(),
            dir.join("backups").display(),
        ),
    )
    .unwrap();
    config
}

fn start(config: &Path) -> SidecarProcess {
    SidecarProcess::start(&["--config".as_ref(), config.as_os_str()])
}

fn client_config(addr: &str) -> tokio_postgres::Config {
    proxy_tests::client_config(addr, USER, PASSWORD, "postgres")
}

/// A client through the sidecar (waiting for it to serve), with its connection task.
async fn connect(
    addr: &str,
) -> (
    tokio_postgres::Client,
    JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match client_config(addr).connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => return (client, tokio::spawn(conn)),
            Err(e) if Instant::now() > deadline => panic!("the sidecar never served: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn rows_in_entry(catalog: &Catalog, table: &str) -> Option<u64> {
    let entry = catalog.latest()?;
    let db = entry.manifest.database("postgres")?;
    db.tables.get(table).copied()
}

/// A transaction open when SIGTERM arrives commits during the grace period, after the drain of an
/// early final window would have given up: the final entry holds it, and is verified before the
/// process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_entry_holds_a_commit_made_in_the_grace_and_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "shutdown_timeout = \"60s\"\ndrain_timeout = \"1s\"",
        "on_shutdown = true",
        "verify_after = true",
    );
    let mut sidecar = start(&config);
    let (writer, _writer_conn) = connect(&sidecar.listen).await;
    exec(&writer, "CREATE TABLE grace (id int primary key)").await;
    exec(&writer, "INSERT INTO grace VALUES (1), (2), (3)").await;
    let (late, late_conn) = connect(&sidecar.listen).await;
    late.batch_execute("BEGIN; INSERT INTO grace VALUES (4)")
        .await
        .unwrap();

    kill(sidecar.pid(), Signal::SIGTERM).unwrap();
    // Longer than drain_timeout: a final window run now could not wait for this transaction.
    tokio::time::sleep(Duration::from_secs(3)).await;
    late.batch_execute("INSERT INTO grace VALUES (5)")
        .await
        .expect("a transaction open at SIGTERM may go on");
    late.batch_execute("COMMIT")
        .await
        .expect("a transaction open at SIGTERM may commit");
    let ended = tokio::time::timeout(Duration::from_secs(20), late_conn)
        .await
        .expect("the session was not ended at its boundary")
        .unwrap()
        .expect_err("the session ends with an error");
    assert_eq!(ended.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{ended}");

    let status = sidecar
        .wait_exit(Duration::from_secs(180))
        .await
        .expect("the sidecar did not exit");
    assert!(status.success(), "{status}");
    let catalog = Catalog::open(&dir.path().join("backups")).unwrap();
    assert_eq!(
        rows_in_entry(&catalog, "public.grace"),
        Some(5),
        "the final entry misses the commit acknowledged in the grace period"
    );
    let entry = catalog.latest().unwrap();
    let verified = entry
        .verify_record()
        .expect("the final entry was not verified before the process exited");
    assert!(verified.ok, "{}", verified.detail);
}

/// An entry made without `verify_after` is verified by a sidecar started with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_found_unverified_at_start_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "",
        "on_shutdown = false",
        "verify_after = false",
    );
    let mut sidecar = start(&config);
    let (client, _conn) = connect(&sidecar.listen).await;
    exec(
        &client,
        "CREATE TABLE kept (id int primary key); INSERT INTO kept VALUES (1)",
    )
    .await;
    drop(client);
    let (code, body) = sidecar.post("/backups?action=copy").await;
    assert_eq!(code, 200, "{body}");
    kill(sidecar.pid(), Signal::SIGTERM).unwrap();
    let status = sidecar.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(status.success(), "{status}");
    let catalog = Catalog::open(&dir.path().join("backups")).unwrap();
    let entry = catalog.latest().expect("the operator's copy");
    assert!(entry.verify_record().is_none(), "verify_after was off");

    let config = write_config(dir.path(), "", "on_shutdown = false", "verify_after = true");
    let mut sidecar = start(&config);
    sidecar.ready().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let listed = loop {
        let out = std::process::Command::new(install::sidecar_binary())
            .args(["backups", "list", "--json", "--admin-url", &sidecar.admin])
            .output()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if listed["copies"][0]["verify"].is_string() {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the unverified entry was never verified: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let copy = &listed["copies"][0];
    assert_eq!(copy["id"], entry.id.as_str());
    assert_eq!(copy["verify"], "ok", "{copy}");
    assert!(entry.verify_record().is_some_and(|v| v.ok));
    kill(sidecar.pid(), Signal::SIGTERM).unwrap();
    let status = sidecar.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(status.success(), "{status}");
}
