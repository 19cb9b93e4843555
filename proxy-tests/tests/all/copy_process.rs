//! The real binary in managed mode: `kill -9` of the sidecar in the middle of a copy window leaves
//! no listed entry, and a restarted sidecar takes over the data directory (stopping the Doltgres
//! the killed one left behind), serves the same data and copies again. SIGTERM runs a final copy
//! and stops Doltgres.

use std::path::Path;

use std::time::{Duration, Instant};

use doltgres_sidecar::catalog::Catalog;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proxy_tests::facts::exec;
use proxy_tests::facts::value;
use proxy_tests::install;
use proxy_tests::managed::PASSWORD;
use proxy_tests::process::SidecarProcess;
use proxy_tests::process::connect_when_serving as connect;

fn start(config: &Path) -> SidecarProcess {
    SidecarProcess::start(&["--config".as_ref(), config.as_os_str()])
}

fn post(url: String) -> u16 {
    proxy_tests::process::post(&url).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_copy_leaves_no_entry_and_a_restart_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    // Starts Doltgres a second late while `slow` exists, to stretch the window.
    let wrapper = proxy_tests::managed::doltgres_wrapper(dir.path());
    let catalog_dir = dir.path().join("backups");
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ncontrol = \"managed\"\nbinary = \"{}\"\ndir = \"{}\"\npassword = \"{PASSWORD}\"\n\n\
             [backup]\non_shutdown = true\n\n[backup.copy]\ncatalog = \"{}\"\n",
            wrapper.display(),
            dir.path().join("doltgres").display(),
            catalog_dir.display()
        ),
    )
    .unwrap();
    let mut sidecar = start(&config);
    let client = connect(&sidecar.listen).await;
    exec(&client, "CREATE TABLE kept (id int primary key)").await;
    exec(&client, "INSERT INTO kept VALUES (1), (2), (3)").await;
    drop(client);

    std::fs::write(dir.path().join("slow"), b"").unwrap();
    let url = format!("{}/backups?action=copy", sidecar.admin);
    let window = tokio::task::spawn_blocking(move || post(url));
    // The copy is written; the server is still starting: kill the sidecar now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    sidecar.kill_9();
    assert_eq!(window.await.unwrap(), 0, "the window cannot have answered");
    let catalog = Catalog {
        dir: catalog_dir.clone(),
    };
    assert!(
        catalog.entries().is_empty(),
        "a half-written entry is listed"
    );
    std::fs::remove_file(dir.path().join("slow")).unwrap();
    // The killed sidecar's Doltgres comes up on its own meanwhile, holding the directory.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let sidecar = start(&config);
    let client = connect(&sidecar.listen).await;
    assert_eq!(value(&client, "SELECT count(*) FROM kept").await, "3");
    exec(&client, "INSERT INTO kept VALUES (4)").await;
    drop(client);
    let url = format!("{}/backups?action=copy", sidecar.admin);
    assert_eq!(
        tokio::task::spawn_blocking(move || post(url))
            .await
            .unwrap(),
        200
    );
    let reopened = Catalog::open(&catalog_dir).unwrap();
    assert_eq!(reopened.entries().len(), 1);
    let leftovers = std::fs::read_dir(&catalog_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(leftovers, 0, "incomplete entries are cleaned up");

    // SIGTERM: a final copy of what was written since, then Doltgres stops and the sidecar exits 0.
    let client = connect(&sidecar.listen).await;
    exec(&client, "INSERT INTO kept VALUES (5)").await;
    drop(client);
    let mut sidecar = sidecar;
    kill(Pid::from_raw(sidecar.child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = sidecar.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sidecar did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let entries = Catalog::open(&catalog_dir).unwrap().entries();
    assert_eq!(entries.len(), 2, "the final window copied");
    let last = &entries[1].manifest;
    let db = last.database("postgres").unwrap();
    assert_eq!(db.tables.get("public.kept"), Some(&5));
    let info = dir.path().join("doltgres/data/.dolt/sql-server.info");
    assert!(
        !info.exists(),
        "Doltgres still running after the sidecar exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sidecar_stops_the_doltgres_a_killed_one_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ncontrol = \"managed\"\nbinary = \"{}\"\ndir = \"{}\"\npassword = \"{PASSWORD}\"\n",
            install::doltgres_binary().display(),
            dir.path().join("doltgres").display(),
        ),
    )
    .unwrap();
    let mut sidecar = start(&config);
    let client = connect(&sidecar.listen).await;
    exec(&client, "CREATE TABLE kept (id int primary key)").await;
    drop(client);
    sidecar.kill_9();
    let info = dir.path().join("doltgres/data/.dolt/sql-server.info");
    let orphan: i32 = std::fs::read_to_string(&info)
        .expect("the orphaned Doltgres holds the directory")
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        Path::new(&format!("/proc/{orphan}")).exists(),
        "the orphan runs"
    );
    let sidecar = start(&config);
    let client = connect(&sidecar.listen).await;
    assert_eq!(value(&client, "SELECT count(*) FROM kept").await, "0");
    assert!(
        !Path::new(&format!("/proc/{orphan}/cmdline")).exists()
            || !std::fs::read_to_string(format!("/proc/{orphan}/cmdline"))
                .unwrap_or_default()
                .contains("doltgres"),
        "the orphan was stopped"
    );
    drop(client);
    drop(sidecar);
}
