//! A real Dolt remote on another "machine": Dolt's own remote server (`remotesrv`, built from the
//! Dolt module the pinned Doltgres requires by `scripts/ensure-remotesrv.sh`), started on a free
//! port in a temp dir. Doltgres pushes, syncs and clones over `http://` to it exactly as it would
//! to a remote server elsewhere (a DoltHub-style remote API: gRPC for the chunk index, HTTP for the
//! table files, both on one port).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::install::run_script;

/// The remotesrv binary at the pinned version, built on first use.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| run_script("ensure-remotesrv.sh"))
}

/// A running remote server, killed when dropped; its directory holds one repository per path
/// (`http://127.0.0.1:PORT/NAME`).
pub struct RemoteServer {
    child: crate::process::ServerChild,
    dir: TempDir,
    /// The port it serves gRPC and HTTP on.
    pub port: u16,
    read_only: bool,
}

impl RemoteServer {
    /// Starts a remote server that takes pushes.
    pub async fn start() -> RemoteServer {
        Self::spawn(tempfile::tempdir().unwrap(), free_port(), false).await
    }

    /// Starts a remote server that refuses every write (`-read-only`).
    pub async fn start_read_only() -> RemoteServer {
        Self::spawn(tempfile::tempdir().unwrap(), free_port(), true).await
    }

    async fn spawn(dir: TempDir, port: u16, read_only: bool) -> RemoteServer {
        let mut server = RemoteServer {
            child: Default::default(),
            dir,
            port,
            read_only,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new(binary());
        command
            .arg("-dir")
            .arg(self.dir.path())
            .args(["-grpc-port", &port, "-http-port", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.read_only {
            command.arg("-read-only");
        }
        self.child
            .set(command.spawn().expect("cannot start remotesrv"));
        self.wait_listening().await;
    }

    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = format!("127.0.0.1:{}", self.port);
        loop {
            if TcpStream::connect(&addr).is_ok() {
                return;
            }
            if let Some(status) = self.child.exited() {
                panic!("remotesrv exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "remotesrv did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL of repository `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The directory the server keeps its repositories in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (the port stops answering; its repositories stay on disk).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts the server again on the same port and directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}
