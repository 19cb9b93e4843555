//! A real database server started for one test: Doltgres or PostgreSQL, on a free loopback port,
//! in its own temp dir, stopped on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::certs::TestCerts;
use crate::install;

/// How long a server may take to accept its first login.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a server may take to exit after SIGTERM/SIGINT before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Doltgres,
    Postgres,
}

/// One running server.
pub struct TestServer {
    pub kind: Kind,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    /// Where the server keeps its databases.
    pub data_dir: PathBuf,
    dir: TempDir,
    log_path: PathBuf,
    child: Option<Child>,
    /// Certificate and key files when the server offers TLS.
    tls: Option<(PathBuf, PathBuf)>,
}

impl TestServer {
    /// Starts the pinned Doltgres (built on first use), telemetry disabled.
    pub async fn doltgres() -> TestServer {
        TestServer::doltgres_with(None).await
    }

    /// Starts Debian's PostgreSQL on a fresh cluster with scram-sha-256 authentication.
    /// A fresh Doltgres and a direct connection to it that ran `sql` (see [`TestServer::seeded`]).
    pub async fn doltgres_seeded(sql: &str) -> (TestServer, tokio_postgres::Client) {
        let server = TestServer::doltgres().await;
        let client = server.seeded(sql).await;
        (server, client)
    }

    pub async fn postgres() -> TestServer {
        TestServer::postgres_with(None).await
    }

    /// Doltgres offering TLS with these certificates (`listener.tls_cert`/`tls_key`).
    pub async fn doltgres_with(tls: Option<&TestCerts>) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("dgs-doltgres-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join(".dolt")).unwrap();
        fs::write(
            root.join(".dolt/config_global.json"),
            r#"{"metrics.disabled":"true"}"#,
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("work")).unwrap();
        let mut server = TestServer::new(Kind::Doltgres, dir, "data");
        server.tls = tls.map(|c| (c.cert.clone(), c.key.clone()));
        server.start().await;
        server
    }

    /// PostgreSQL with `ssl = on` and these certificates when given.
    pub async fn postgres_with(tls: Option<&TestCerts>) -> TestServer {
        TestServer::postgres_configured(tls, &[]).await
    }

    /// PostgreSQL with these `pg_hba.conf` lines ahead of initdb's scram-sha-256 ones (e.g.
    /// `host all alice 127.0.0.1/32 trust`), so chosen users log in another way.
    pub async fn postgres_with_hba(hba: &[&str]) -> TestServer {
        TestServer::postgres_configured(None, hba).await
    }

    async fn postgres_configured(tls: Option<&TestCerts>, hba: &[&str]) -> TestServer {
        let bindir = install::postgres_bindir();
        let dir = tempfile::Builder::new()
            .prefix("dgs-postgres-")
            .tempdir()
            .unwrap();
        let mut server = TestServer::new(Kind::Postgres, dir, "data");
        let pwfile = server.dir.path().join("pwfile");
        fs::write(&pwfile, &server.password).unwrap();
        chown_for_postgres(server.dir.path());
        if let Some(certs) = tls {
            // PostgreSQL insists its key is owned by it and private.
            let cert = server.dir.path().join("server.pem");
            let key = server.dir.path().join("server.key");
            fs::copy(&certs.cert, &cert).unwrap();
            fs::copy(&certs.key, &key).unwrap();
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
            chown_for_postgres(&cert);
            chown_for_postgres(&key);
            server.tls = Some((cert, key));
        }
        let out = as_postgres_user(bindir.join("initdb"))
            .args([
                "--auth=scram-sha-256",
                "--username",
                &server.user,
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("--pwfile")
            .arg(&pwfile)
            .arg("-D")
            .arg(&server.data_dir)
            .output()
            .expect("cannot run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !hba.is_empty() {
            // PostgreSQL uses the first matching line: these go first. Rewriting the file in
            // place keeps its owner.
            let path = server.data_dir.join("pg_hba.conf");
            let rest = fs::read_to_string(&path).unwrap();
            fs::write(&path, format!("{}\n{rest}", hba.join("\n"))).unwrap();
        }
        server.start().await;
        server
    }

    fn new(kind: Kind, dir: TempDir, data: &str) -> TestServer {
        let data_dir = dir.path().join(data);
        TestServer {
            kind,
            port: crate::free_port(),
            user: "postgres".into(),
            password: "password".into(),
            database: "postgres".into(),
            data_dir,
            log_path: dir.path().join("server.log"),
            dir,
            child: None,
            tls: None,
        }
    }

    /// `127.0.0.1:PORT` of the server itself.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client config for this server's credentials, pointed at `addr` (the proxy, or the server).
    pub fn config_at(&self, addr: &str) -> tokio_postgres::Config {
        let mut config = client_config(addr, &self.user, &self.password, &self.database);
        config.connect_timeout(Duration::from_secs(10));
        config
    }

    /// A libpq connection string for `addr`.
    pub fn conninfo_at(&self, addr: &str) -> String {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        format!(
            "host={host} port={port} user={} password={} dbname={} connect_timeout=10",
            self.user, self.password, self.database
        )
    }

    /// Connects to `addr` (the proxy, or the server itself) with this server's credentials.
    pub async fn connect_at(&self, addr: &str) -> tokio_postgres::Client {
        connect(&self.config_at(addr))
            .await
            .unwrap_or_else(|e| panic!("connection to {addr} failed: {e}"))
    }

    /// Tries to log in at `addr` and returns the error; panics if the login succeeds.
    pub async fn connect_error_at(&self, addr: &str) -> tokio_postgres::Error {
        match self.config_at(addr).connect(tokio_postgres::NoTls).await {
            Ok(_) => panic!("login at {addr} was expected to fail"),
            Err(e) => e,
        }
    }

    /// Connects straight to the server (not through the proxy).
    pub async fn connect_direct(&self) -> tokio_postgres::Client {
        connect(&self.config_at(&self.addr()))
            .await
            .expect("direct connection failed")
    }

    /// Connects straight to the server and runs `sql` (a schema, seed rows) before handing the
    /// connection over.
    pub async fn seeded(&self, sql: &str) -> tokio_postgres::Client {
        let client = self.connect_direct().await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("seeding with {sql:?} failed: {e}"));
        client
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Starts the server (again) on the same port and data directory, and waits until it accepts
    /// a login.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = match self.kind {
            Kind::Doltgres => self.doltgres_command(),
            Kind::Postgres => self.postgres_command(),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.kind));
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Kills the server with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (killing it if it takes too long).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = match self.kind {
            Kind::Doltgres => Signal::SIGTERM,
            // Fast shutdown: disconnect clients, no waiting for them.
            Kind::Postgres => Signal::SIGINT,
        };
        let _ = kill(Pid::from_raw(child.id() as i32), signal);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The command that runs this Doltgres (its config written), for a test that runs it with
    /// other output handling.
    pub fn doltgres_command(&self) -> Command {
        let dir = self.dir.path();
        let config = dir.join("config.yaml");
        let mut yaml = format!(
            "log_level: info\nlistener:\n  host: 127.0.0.1\n  port: {port}\n  socket: {sock}\n",
            port = self.port,
            sock = dir.join(format!(".s.PGSQL.{}", self.port)).display(),
        );
        if let Some((cert, key)) = &self.tls {
            yaml.push_str(&format!(
                "  tls_cert: {}\n  tls_key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        yaml.push_str(&format!("data_dir: {}\n", self.data_dir.display()));
        fs::write(&config, yaml).unwrap();
        let mut cmd = Command::new(install::doltgres_binary());
        cmd.arg("--config")
            .arg(&config)
            .current_dir(dir.join("work"))
            .env("DOLT_ROOT_PATH", dir.join("root"))
            .env("HOME", dir.join("root"))
            .env("DOLTGRES_USER", &self.user)
            .env("DOLTGRES_PASSWORD", &self.password);
        cmd
    }

    fn postgres_command(&self) -> Command {
        let mut cmd = as_postgres_user(install::postgres_bindir().join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "max_connections=400",
                "-c",
                "fsync=off",
                "-c",
                "log_min_messages=info",
            ]);
        if let Some((cert, key)) = &self.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        cmd
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let config = self.config_at(&self.addr());
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{:?} exited during startup ({status}):\n{}",
                    self.kind,
                    self.log()
                );
            }
            if connect(&config).await.is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{:?} not ready after {READY_TIMEOUT:?}:\n{}",
                    self.kind,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- {:?} log ({}) ----\n{}",
                self.kind,
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// A client config for `user` at `addr` (`host:port`), 30 s to connect.
pub fn client_config(
    addr: &str,
    user: &str,
    password: &str,
    database: &str,
) -> tokio_postgres::Config {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().expect("a port number"))
        .user(user)
        .password(password)
        .dbname(database)
        .connect_timeout(Duration::from_secs(30));
    config
}

/// Connects with tokio-postgres and drives the connection in the background.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// PostgreSQL refuses to run as root: when we are root, run it as the `postgres` user.
fn as_postgres_user(program: PathBuf) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn chown_for_postgres(dir: &Path) {
    if !running_as_root() {
        return;
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the postgres user is missing (install Debian's postgresql package)");
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid)).unwrap();
    if dir.is_dir() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
}
