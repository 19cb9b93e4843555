//! A real S3-compatible object store: SeaweedFS (`weed mini`: master, volume server, filer and S3
//! gateway in one process), built from the Go module proxy by `scripts/ensure-seaweedfs.sh`,
//! started in a temp dir with every port a free loopback one and an access key of its own, with
//! one bucket made at start. Requests are signed with AWS Signature V4 (curl's `--aws-sigv4`), as
//! any S3 client signs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::install::run_script;
use crate::ports::stable_port;

/// The `weed` binary at the pinned version, built on first use.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| run_script("ensure-seaweedfs.sh"))
}

/// The bucket made at start.
pub const BUCKET: &str = "backups";
/// The region requests are signed for (SeaweedFS accepts any).
pub const REGION: &str = "us-east-1";

/// A running SeaweedFS, killed when dropped.
pub struct SeaweedFs {
    child: crate::process::ServerChild,
    dir: TempDir,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    ports: Vec<(&'static str, u16)>,
}

/// An S3 answer: status code and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl SeaweedFs {
    /// Starts SeaweedFS and waits until its S3 gateway answers a signed request for [`BUCKET`].
    pub async fn start() -> SeaweedFs {
        let dir = tempfile::tempdir().unwrap();
        // Below the ephemeral range: a restart binds the same ports again.
        let s3 = stable_port();
        let mut ports = vec![("s3.port", s3)];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            ports.push((flag, stable_port()));
        }
        let mut store = SeaweedFs {
            child: Default::default(),
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            access_key: format!("sidecar{}", std::process::id()),
            secret_key: format!("secret-{:x}-{s3}", std::process::id()),
            ports,
        };
        store.launch().await;
        store
    }

    async fn launch(&mut self) {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(self.dir.path().join("weed.log")).unwrap();
        let mut command = Command::new(binary());
        command
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args(
                self.ports
                    .iter()
                    .map(|(flag, port)| format!("-{flag}={port}")),
            )
            .args([
                // Nothing else listens: no fixed ports, so several stores run side by side.
                "-admin.port.legacy=0",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
                &format!("-bucket={BUCKET}"),
            ])
            .arg(format!(
                "-filer.localSocket={}",
                self.dir.path().join("filer.sock").display()
            ))
            .arg(format!(
                "-s3.localSocket={}",
                self.dir.path().join("s3.sock").display()
            ))
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child
            .set(command.spawn().expect("cannot start SeaweedFS"));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let reply = self.request("HEAD", "", &[], None).await;
            if reply.status == 200 {
                return;
            }
            if let Some(status) = self.child.exited() {
                panic!("SeaweedFS exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not serve bucket {BUCKET} within 90 s (last answer {}):\n{}",
                reply.status,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// A request signed with this store's key: `method` on `key` in [`BUCKET`] (`""`: the
    /// bucket itself; a `?query` may follow, its values percent-encoded as S3 signs them: `%2F`
    /// for `/`), with extra headers and a body.
    pub async fn request(
        &self,
        method: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        self.request_as(
            &self.access_key,
            &self.secret_key,
            method,
            key,
            headers,
            body,
        )
        .await
    }

    /// Like [`SeaweedFs::request`], signed with another key (`""`: not signed at all).
    pub async fn request_as(
        &self,
        access_key: &str,
        secret_key: &str,
        method: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let url = format!("{}/{BUCKET}/{key}", self.endpoint);
        let mut command = Command::new("curl");
        command.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"]);
        if method == "HEAD" {
            command.arg("-I");
        } else {
            command.args(["-X", method]);
        }
        if !access_key.is_empty() {
            command
                .arg("--aws-sigv4")
                .arg(format!("aws:amz:{REGION}:s3"))
                .arg("--user")
                .arg(format!("{access_key}:{secret_key}"));
        }
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        let body_file = body.map(|bytes| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), bytes).unwrap();
            file
        });
        if let Some(file) = &body_file {
            // `-T` (upload): curl 7.88 signs a `--data-binary` body wrongly.
            command.arg("-T").arg(file.path());
        }
        command.arg(url);
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("cannot run curl");
        let mut body = out.stdout;
        let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let status = String::from_utf8_lossy(&body[split..])
            .trim()
            .parse()
            .unwrap_or(0);
        body.truncate(split);
        Reply { status, body }
    }

    /// The keys under `prefix` in [`BUCKET`], in S3's (lexical) order.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let query = format!("?list-type=2&prefix={}", prefix.replace('/', "%2F"));
        let list = self.request("GET", &query, &[], None).await;
        assert_eq!(list.status, 200, "{}", list.text());
        list.text()
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// Kills the server (SIGKILL); its data stays in its directory.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}
