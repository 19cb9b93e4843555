//! The proxy in managed mode: it runs the pinned Doltgres itself, in a temp dir, with copies to a
//! catalog beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use doltgres_sidecar::catalog::{Catalog, Entry};
use doltgres_sidecar::config::Config;
use doltgres_sidecar::config::backup::CopyConfig;
use doltgres_sidecar::config::server::{Managed, ServerControl};
use doltgres_sidecar::verify::{self, Scratch, ScratchConfig};
use tempfile::TempDir;

use crate::TestProxy;
use crate::install;
use crate::raw::{Login, RawClient};

pub const USER: &str = "postgres";
pub const PASSWORD: &str = "password";

/// Runs a local command of the `doltgres-sidecar` binary (`restore`, `verify`, `backups`) with
/// the managed servers' password in its environment; returns (success, stdout, stderr).
pub fn local_command(args: &[&str]) -> (bool, String, String) {
    local_command_with(args, &[])
}

/// [`local_command`] with these variables in its environment too.
pub fn local_command_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(install::sidecar_binary())
        .args(args)
        .env("DOLTGRES_PASSWORD", PASSWORD)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A wrapper around the Doltgres binary, written into `dir`: while `<dir>/broken` exists it fails
/// at once (exit 3); while `<dir>/slow` exists it starts a second late. Lets tests stretch a
/// copy window or make a server that does not come back.
pub fn doltgres_wrapper(dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("doltgres-wrapper");
    let script = format!(
        "#!/bin/sh\n[ -f '{d}/broken' ] && exit 3\n[ -f '{d}/slow' ] && sleep 1\nexec '{bin}' \"$@\"\n",
        d = dir.display(),
        bin = install::doltgres_binary().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A proxy that manages its own Doltgres.
pub struct ManagedProxy {
    pub proxy: TestProxy,
    /// Holds `doltgres/` (the server's files) and `backups/` (the catalog).
    pub dir: TempDir,
}

impl ManagedProxy {
    /// Managed mode with a copy catalog in the temp dir, after `adjust` has changed the config.
    pub async fn start(adjust: impl FnOnce(&mut Config, &std::path::Path)) -> ManagedProxy {
        let dir = tempfile::Builder::new()
            .prefix("dgs-managed-")
            .tempdir()
            .unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            ..Config::default()
        };
        config.server.control = ServerControl::Managed(Managed {
            dir: dir.path().join("doltgres"),
            restart_initial: Duration::from_millis(200),
            ..Managed::default()
        });
        config.server.binary = install::doltgres_binary().to_path_buf();
        config.server.password = Some(PASSWORD.into());
        let mut copy = CopyConfig::new(dir.path().join("backups"));
        copy.verify_after = false;
        config.backup.copy = Some(copy);
        config.backup.on_shutdown = false;
        adjust(&mut config, dir.path());
        let proxy = TestProxy::start_config(config).await;
        ManagedProxy { proxy, dir }
    }

    pub fn addr(&self) -> &str {
        &self.proxy.addr
    }

    pub fn config_at(&self, database: &str) -> tokio_postgres::Config {
        crate::client_config(&self.proxy.addr, USER, PASSWORD, database)
    }

    /// A connection through the proxy.
    pub async fn connect(&self) -> tokio_postgres::Client {
        crate::server::connect(&self.config_at("postgres"))
            .await
            .expect("connection through the managed proxy failed")
    }

    /// A raw protocol session through the proxy.
    pub async fn raw(&self) -> RawClient {
        let login = Login {
            user: USER,
            password: PASSWORD,
            database: "postgres",
        };
        RawClient::login_as(&self.proxy.addr, &login, &[]).await
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::open(&self.dir.path().join("backups")).unwrap()
    }

    pub fn catalog_dir(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// Settings for scratch servers that verify or restore this proxy's backups.
    pub fn scratch(&self) -> ScratchConfig {
        ScratchConfig {
            binary: install::doltgres_binary().to_path_buf(),
            user: USER.into(),
            password: PASSWORD.into(),
            ready_timeout: Duration::from_secs(60),
        }
    }

    /// Restores a copy entry into a temporary directory, starts a scratch Doltgres on it, and
    /// returns the first column of `sql`'s rows in `database`.
    pub async fn query_copy(&self, entry: &Entry, database: &str, sql: &str) -> Vec<String> {
        let restored = tempfile::tempdir().unwrap();
        doltgres_sidecar::catalog::materialize(entry, restored.path(), &mut |_| {}).unwrap();
        self.query_restored(restored.path(), database, sql).await
    }

    /// Starts a scratch Doltgres on a restored directory and returns the first column of `sql`'s
    /// rows in `database`.
    pub async fn query_restored(&self, dir: &Path, database: &str, sql: &str) -> Vec<String> {
        let scratch = Scratch::start(&self.scratch(), dir, false).await.unwrap();
        let client = scratch.connect(database).await.unwrap();
        let rows = verify::column(&client, sql).await.unwrap();
        scratch.finish().await;
        rows
    }

    /// Sends SIGKILL to the managed Doltgres (its supervisor restarts it); returns its pid.
    pub fn kill_server(&self) -> i32 {
        let pid = self.proxy.shared.control.managed().unwrap().pid().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        pid
    }

    /// Runs a window for `action` through the admin API; returns status and the record.
    pub async fn backup(&self, action: &str) -> (u16, serde_json::Value) {
        let (code, body) = self
            .proxy
            .admin_post(&format!("/backups?action={action}"))
            .await;
        (code, serde_json::from_str(&body).unwrap_or_default())
    }

    /// Runs a copy window and requires it to succeed.
    pub async fn copy_window(&self) {
        let (code, record) = self.backup("copy").await;
        assert_eq!(code, 200, "{record}");
    }

    /// Waits (up to 10 s) until every session has seen its server connection go after a crash
    /// (none is attached), so that a request sent next finds its session idle without one: a
    /// request that races the crash and reaches the dying server first is lost with it, and gets
    /// `08006` as it would directly.
    pub async fn crash_noticed(&self) {
        let control = &self.proxy.shared.control;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while control.is_available() || control.attached() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the crash was not noticed"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Asserts that a COMMIT on `client`, whose transaction was open when the server was killed,
/// fails as the transaction is gone: 08006, or the connection closed.
pub async fn assert_commit_lost(client: &tokio_postgres::Client) {
    let err = client
        .batch_execute("COMMIT")
        .await
        .expect_err("the transaction is gone");
    let code = err.code().map(|c| c.code().to_string());
    assert!(
        code.as_deref() == Some("08006") || err.is_closed(),
        "{err:?}"
    );
}
