//! Starting Doltgres, as the sidecar's managed server and as the scratch server of `verify`:
//! it gets `DOLT_ARCHIVE_PULL_STREAMER=0`; a long directory name does not stop it (Doltgres gets no unix socket, whose path would pass
//! Linux's 108-byte limit), and a server that exits while starting fails the start at once, with
//! its last log lines, instead of after `ready_timeout`.

use std::time::{Duration, Instant};

use doltgres_sidecar::verify::{Scratch, ScratchConfig, VerifyError};
use proxy_tests::facts::exec;
use proxy_tests::install;
use proxy_tests::managed::ManagedProxy;

/// A directory name of `len` characters under `base`.
fn long_dir(base: &std::path::Path, len: usize) -> std::path::PathBuf {
    let prefix = base.to_string_lossy().len() + 1;
    base.join("d".repeat(len.saturating_sub(prefix).max(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_server_and_a_verify_run_in_directories_with_long_names() {
    let m = ManagedProxy::start(|c, dir| {
        c.server.control.managed_mut().unwrap().dir = long_dir(dir, 150);
    })
    .await;
    let dir = m
        .proxy
        .shared
        .config()
        .server
        .control
        .managed()
        .unwrap()
        .dir
        .clone();
    assert!(dir.to_string_lossy().len() >= 150, "{}", dir.display());
    // Pushes and syncs with Dolt's classic table-file writer (benches/results/pull-streamer).
    let pid = m.proxy.shared.control.managed().unwrap().pid().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"DOLT_ARCHIVE_PULL_STREAMER=0"),
        "the managed Doltgres runs without DOLT_ARCHIVE_PULL_STREAMER=0"
    );
    let client = m.connect().await;
    exec(
        &client,
        "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)",
    )
    .await;
    let (code, record) = m.backup("copy").await;
    assert_eq!(code, 200, "{record}");
    // verify puts its scratch copy under TMPDIR: a long one too.
    let tmp = long_dir(m.dir.path(), 150);
    std::fs::create_dir_all(&tmp).unwrap();
    let out = std::process::Command::new(install::sidecar_binary())
        .args(["verify", "latest", "--catalog"])
        .arg(m.catalog_dir())
        .arg("--doltgres")
        .arg(install::doltgres_binary())
        .env("TMPDIR", &tmp)
        .env("DOLTGRES_PASSWORD", proxy_tests::managed::PASSWORD)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("verifies"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_exits_while_starting_fails_the_start_at_once_with_its_last_lines() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("dies-at-start");
    std::fs::write(
        &binary,
        "#!/bin/sh\necho 'level=fatal msg=\"cannot bind: the reason is here\"'\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = ScratchConfig {
        binary,
        user: "postgres".into(),
        password: "password".into(),
        ready_timeout: Duration::from_secs(60),
    };
    let started = Instant::now();
    let err = match Scratch::start(&config, &dir.path().join("server"), true).await {
        Ok(_) => panic!("a server that exits started"),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the start waited for ready_timeout: {:?}",
        started.elapsed()
    );
    // A scratch server that did not start: no verdict on any backup.
    let VerifyError::Scratch(err) = err else {
        panic!("not a scratch failure: {err:?}")
    };
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("the reason is here"), "{err}");
    assert!(
        !dir.path().join("server").exists(),
        "the scratch directory is removed"
    );
}
