//! Stop-and-copy windows on a real Doltgres in managed mode: clients keep working across the
//! restart, copies are complete, incremental and verifiable, and failures (a full disk, a server
//! that does not come back, a crash) leave no partial entry and a serving server.

use std::time::Duration;

use doltgres_sidecar::auth::AuthMode;
use doltgres_sidecar::verify;
use proxy_tests::facts::exec;
use proxy_tests::facts::value;
use proxy_tests::managed::{ManagedProxy, doltgres_wrapper};

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_window_is_invisible_to_new_connections_and_ends_held_idle_sessions() {
    // Passthrough authentication: the sidecar cannot log a session in again, so a session idle
    // through the restart is ended (with proxy authentication it survives: survive_restart.rs).
    let m = ManagedProxy::start(|c, dir| {
        c.server.binary = doltgres_wrapper(dir);
        c.auth = Some(AuthMode::Passthrough);
    })
    .await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE items (id int primary key, v text)").await;
    exec(
        &client,
        "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    .await;
    let head = value(&client, "SELECT dolt_hashof('HEAD')").await;
    let working = value(&client, "SELECT dolt_hashof_db()").await;
    let mut held = m.raw().await;
    drop(client);
    // A slow start keeps the server down for a second inside the window.
    std::fs::write(m.dir.path().join("slow"), b"").unwrap();
    let admin = m.proxy.admin_url.clone();
    let window = tokio::spawn(proxy_tests::http::request(
        "POST",
        format!("{admin}/backups?action=copy"),
        None,
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Arrives while the server is down: waits, then works.
    let late = m.connect().await;
    assert_eq!(value(&late, "SELECT count(*) FROM items").await, "3");
    let (code, body) = window.await.unwrap();
    assert_eq!(code, 200, "{body}");
    let record: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["result"], "ok", "{record}");
    // The session held idle through the restart is told why it ends.
    let closed = held.until_end().await;
    let fatal = closed
        .messages
        .iter()
        .find(|m| m.tag == b'E')
        .expect("an error");
    assert_eq!(fatal.sqlstate().as_deref(), Some("57P01"));
    assert!(
        fatal.text().unwrap().contains("restarted for a backup"),
        "{fatal:?}"
    );
    let (_, metrics) = m.proxy.admin_get("/metrics").await;
    let ended = "doltgres_sidecar_sessions_ended_total{reason=\"restart_without_replay\"}";
    assert_eq!(metric(&metrics, ended), 1.0, "{metrics}");
    let restarts = "doltgres_sidecar_server_restarts_total{cause=\"copy\"}";
    assert_eq!(metric(&metrics, restarts), 1.0);
    // The entry is complete, and its manifest recorded the cut.
    let entries = m.catalog().entries();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let db = entry.manifest.database("postgres").unwrap();
    assert_eq!(db.head, head);
    assert_eq!(db.working_set, working);
    assert_eq!(db.tables.get("public.items"), Some(&3));
    assert!(
        entry.manifest.file("work/auth.db").is_some(),
        "auth.db copied"
    );
    assert!(
        entry
            .manifest
            .file("root/.dolt/config_global.json")
            .is_some()
    );
    assert!(entry.manifest.timings.copy > 0.0 && entry.manifest.timings.start >= 1.0);
    // It verifies, and it restores to a server with the same rows.
    let detail = verify::verify_entry(&m.scratch(), entry, &mut |_| {})
        .await
        .unwrap();
    assert!(detail.contains("match"), "{detail}");
    let rows = m
        .query_copy(entry, "postgres", "SELECT count(*) FROM items")
        .await;
    assert_eq!(rows, ["3"]);
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_copy_links_unchanged_table_files() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE big (id int primary key, v text)").await;
    exec(
        &client,
        "INSERT INTO big SELECT generate_series(1, 20000), repeat('x', 100)",
    )
    .await;
    value(&client, "SELECT dolt_commit('-Am', 'bulk')").await;
    // Garbage collection moves the journal's chunks into immutable table files.
    value(&client, "SELECT dolt_gc()").await;
    drop(client);
    assert_eq!(m.backup("copy").await.0, 200);
    let client = m.connect().await;
    exec(&client, "INSERT INTO big VALUES (0, 'new')").await;
    drop(client);
    assert_eq!(m.backup("copy").await.0, 200);
    let entries = m.catalog().entries();
    assert_eq!(entries.len(), 2);
    let (first, second) = (&entries[0].manifest, &entries[1].manifest);
    assert!(
        first.bytes_linked == 0 && first.bytes_copied > 300_000,
        "{first:?}"
    );
    assert!(
        second.bytes_linked > 300_000 && second.bytes_copied < second.bytes_linked / 10,
        "copied {} linked {}",
        second.bytes_copied,
        second.bytes_linked
    );
    let db = second
        .databases
        .iter()
        .find(|d| d.name == "postgres")
        .unwrap();
    assert_eq!(db.tables.get("public.big"), Some(&20001));
    verify::verify_entry(&m.scratch(), &entries[1], &mut |_| {})
        .await
        .unwrap();
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_catalog_disk_fails_the_window_and_leaves_no_entry() {
    let mount = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(mount.path())
        .status()
        .expect("cannot run mount");
    assert!(
        status.success(),
        "mounting a small tmpfs failed (the test runs as root)"
    );
    let catalog = mount.path().to_path_buf();
    let m = ManagedProxy::start(|c, _| {
        c.backup.copy.as_mut().unwrap().catalog = catalog.clone();
    })
    .await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE filler (id int primary key, v text)").await;
    exec(
        &client,
        "INSERT INTO filler SELECT generate_series(1, 5000), repeat('y', 100)",
    )
    .await;
    drop(client);
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 502, "{record}");
    assert_eq!(record["result"], "failed");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("No space left"), "{error}");
    let leftovers: Vec<_> = std::fs::read_dir(&catalog).unwrap().collect();
    assert!(leftovers.is_empty(), "partial entry left: {leftovers:?}");
    // The server is back on its unchanged data.
    let client = m.connect().await;
    assert_eq!(value(&client, "SELECT count(*) FROM filler").await, "5000");
    drop(client);
    m.proxy.stop().await;
    let _ = std::process::Command::new("umount")
        .arg(mount.path())
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_come_back_fails_the_window_then_is_restarted() {
    let m = ManagedProxy::start(|c, dir| c.server.binary = doltgres_wrapper(dir)).await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE kept (id int primary key)").await;
    exec(&client, "INSERT INTO kept VALUES (1)").await;
    drop(client);
    let broken = m.dir.path().join("broken");
    std::fs::write(&broken, b"").unwrap();
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 502, "{record}");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("did not come back"),
        "{record}"
    );
    assert!(
        m.catalog().entries().is_empty(),
        "no entry for a failed window"
    );
    // Once it can start again, the supervisor brings it back with backoff.
    std::fs::remove_file(&broken).unwrap();
    let client = m.connect().await;
    assert_eq!(value(&client, "SELECT count(*) FROM kept").await, "1");
    drop(client);
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_managed_server_is_restarted() {
    let m = ManagedProxy::start(|_, _| {}).await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE survives (id int primary key)").await;
    exec(&client, "INSERT INTO survives VALUES (1), (2)").await;
    drop(client);
    let pid = m.kill_server();
    // Connections made in the moment before the sidecar notices the crash fail with 08006; after
    // it, they wait for the restart and then work.
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = proxy_tests::server_connect(&m.config_at("postgres")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client.expect("no connection after the restart");
    assert_eq!(value(&client, "SELECT count(*) FROM survives").await, "2");
    let new_pid = m.proxy.shared.control.managed().unwrap().pid().unwrap();
    assert_ne!(new_pid, pid);
    let (_, metrics) = m.proxy.admin_get("/metrics").await;
    let crash = "doltgres_sidecar_server_restarts_total{cause=\"crash\"}";
    assert_eq!(metric(&metrics, crash), 1.0, "{metrics}");
    drop(client);
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_made_during_the_drain_waits_and_then_works() {
    let m = ManagedProxy::start(|c, _| c.drain_timeout = Duration::from_secs(20)).await;
    let setup = m.connect().await;
    exec(&setup, "CREATE TABLE drained (id int primary key)").await;
    drop(setup);
    // An open transaction keeps the window draining.
    let open = m.connect().await;
    open.batch_execute("BEGIN; INSERT INTO drained VALUES (1)")
        .await
        .unwrap();
    let window = tokio::spawn({
        let admin = m.proxy.admin_url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                ureq::post(&format!("{admin}/backups?action=copy"))
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .send_empty()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
            .await
            .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Arrives while the window drains: it waits before logging in.
    let config = m.config_at("postgres");
    let late = tokio::spawn(async move {
        let client = proxy_tests::server_connect(&config).await?;
        client.simple_query("SELECT count(*) FROM drained").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!late.is_finished(), "the late connection did not wait");
    open.batch_execute("COMMIT").await.unwrap();
    assert_eq!(window.await.unwrap(), 200);
    let rows = late.await.unwrap().expect("the late connection failed");
    assert!(!rows.is_empty());
    drop(open);
    m.proxy.stop().await;
}
