//! `server.control = "command"`: the sidecar stops and starts a Doltgres it does not own through
//! the operator's commands (here two shell scripts, as a container setup would have), copies its
//! data directory and the listed config files, and the copy verifies.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use doltgres_sidecar::config::Config;
use doltgres_sidecar::config::backup::CopyConfig;
use doltgres_sidecar::config::server::{Commands, ServerControl};
use doltgres_sidecar::control::managed::{ManagedServer, ManagedSpec};
use doltgres_sidecar::ports::free_port;
use proxy_tests::facts::exec;
use proxy_tests::managed::{PASSWORD, USER};
use proxy_tests::{TestProxy, install};

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\nset -e\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_stop_and_start_the_server_around_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("doltgres");
    let port = free_port().unwrap();
    // Lay the server's files out once (data/, work/, root/, config.yaml), then hand it over.
    let spec = ManagedSpec {
        binary: install::doltgres_binary().to_path_buf(),
        dir: server_dir.clone(),
        port,
        user: USER.into(),
        password: PASSWORD.into(),
        telemetry: false,
        log_level: "info".into(),
        stop_timeout: Duration::from_secs(20),
        lock_dir: false,
    };
    let layout = ManagedServer::new(spec);
    layout.start().await.unwrap();
    layout.stop().await.unwrap();
    let d = server_dir.display();
    let start = dir.path().join("start-doltgres");
    script(
        &start,
        &format!(
            "cd '{d}/work'\nDOLT_ROOT_PATH='{d}/root' HOME='{d}/root' DOLTGRES_USER={USER} \
             DOLTGRES_PASSWORD={PASSWORD} nohup '{bin}' --config '{d}/config.yaml' \
             >>'{d}/server.log' 2>&1 &\necho $! >'{d}/pid'\n",
            bin = install::doltgres_binary().display()
        ),
    );
    let stop = dir.path().join("stop-doltgres");
    script(
        &stop,
        &format!(
            "pid=$(cat '{d}/pid')\nkill -TERM \"$pid\"\nwhile kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done\n"
        ),
    );
    assert!(
        std::process::Command::new(&start)
            .status()
            .unwrap()
            .success()
    );

    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        upstream: format!("127.0.0.1:{port}"),
        ..Config::default()
    };
    config.server.control = ServerControl::Command(Commands {
        start: vec![start.display().to_string()],
        stop: vec![stop.display().to_string()],
        data_dir: server_dir.join("data"),
        config_files: vec![
            server_dir.join("work/auth.db"),
            server_dir.join("config.yaml"),
        ],
    });
    config.backup.password = Some(PASSWORD.into());
    config.backup.copy = Some(CopyConfig::new(dir.path().join("backups")));
    let proxy = TestProxy::start_config(config).await;
    // The server needs its first login before the proxy can relay (the start script returns at
    // once); the copy's own readiness check covers the restart.
    proxy
        .shared
        .control
        .wait_ready(&proxy.shared.upstream)
        .await
        .unwrap();
    let (host, _) = proxy.addr.rsplit_once(':').unwrap();
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(proxy.addr.rsplit_once(':').unwrap().1.parse().unwrap())
        .user(USER)
        .password(PASSWORD)
        .dbname("postgres");
    let client = proxy_tests::server_connect(&pg).await.unwrap();
    exec(&client, "CREATE TABLE cmd (id int primary key)").await;
    exec(&client, "INSERT INTO cmd VALUES (1), (2)").await;
    drop(client);
    let old_pid = std::fs::read_to_string(server_dir.join("pid")).unwrap();

    let (code, body) = proxy.admin_post("/backups?action=copy").await;
    assert_eq!(code, 200, "{body}");
    let new_pid = std::fs::read_to_string(server_dir.join("pid")).unwrap();
    assert_ne!(old_pid, new_pid, "the server was restarted by the commands");
    let catalog = doltgres_sidecar::catalog::Catalog::open(&dir.path().join("backups")).unwrap();
    let entry = catalog.latest().expect("an entry");
    for path in ["config/auth.db", "config/config.yaml"] {
        assert!(entry.manifest.file(path).is_some(), "{path} not copied");
    }
    let db = entry.manifest.database("postgres").unwrap();
    assert_eq!(db.tables.get("public.cmd"), Some(&2));
    let scratch = doltgres_sidecar::verify::ScratchConfig {
        binary: install::doltgres_binary().to_path_buf(),
        user: USER.into(),
        password: PASSWORD.into(),
        ready_timeout: Duration::from_secs(60),
    };
    doltgres_sidecar::verify::verify_entry(&scratch, &entry, &mut |_| {})
        .await
        .unwrap();
    let client = proxy_tests::server_connect(&pg).await.unwrap();
    client
        .simple_query("SELECT count(*) FROM cmd")
        .await
        .unwrap();
    drop(client);
    proxy.stop().await;
    assert!(
        std::process::Command::new(&stop)
            .status()
            .unwrap()
            .success()
    );
}
