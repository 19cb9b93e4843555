//! The CLI against a running sidecar's admin API: status, backup, quiesce/resume, backups list.

use std::process::{Command, Output};

use doltgres_sidecar::window::config::SyncConfig;
use proxy_tests::{TestProxy, TestServer, install};

fn cli(proxy: &TestProxy, args: &[&str]) -> Output {
    Command::new(install::sidecar_binary())
        .args(args)
        .args(["--admin-url", &proxy.admin_url])
        .env_remove("DOLTGRES_SIDECAR_ADMIN_TOKEN")
        .output()
        .expect("cannot run the sidecar binary")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_a_running_sidecar() {
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/{{database}}", dir.path().display());
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(server.password.clone());
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(url),
        });
    })
    .await;
    let client = server.connect_at(&proxy.addr).await;
    client
        .batch_execute("CREATE TABLE t (i INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["status"])));
    assert!(
        text.contains("1 session(s) · commits 1 · rollbacks 0 · write commits 1"),
        "{text}"
    );
    assert!(text.contains("idle"), "{text}");

    let text =
        tokio::task::block_in_place(|| stdout(&cli(&proxy, &["backup", "--action", "sync"])));
    assert!(text.contains("sync (operator): ok"), "{text}");
    assert!(
        dir.path().join("postgres").exists(),
        "the backup was written"
    );

    // An action that is not configured is a clear failure with a non-zero exit.
    let out = tokio::task::block_in_place(|| cli(&proxy, &["backup", "--action", "push"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[backup.push] is not configured"));

    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["quiesce", "--ttl", "20s"])));
    assert!(text.contains("holds every session"), "{text}");
    let held = tokio::spawn(async move {
        client
            .simple_query("SELECT count(*) FROM t")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!held.is_finished());
    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["resume"])));
    assert!(text.contains("resumed"), "{text}");
    held.await.unwrap().unwrap();

    let json = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["backups", "list", "--json"])));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let actions: Vec<&str> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["hold", "sync"], "{v}");
    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["backups", "list"])));
    assert!(text.lines().count() == 2, "{text}");
}
