//! Finds (or installs) the server binaries through the repository's scripts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

pub(crate) fn run_script(name: &str) -> PathBuf {
    let script = repo_root().join("scripts").join(name);
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    PathBuf::from(path)
}

/// The Doltgres binary at the pinned version, built on first use.
pub fn doltgres_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| run_script("ensure-doltgres.sh"))
}

/// The directory holding PostgreSQL's server binaries (`initdb`, `postgres`), installed on first
/// use if missing.
pub fn postgres_bindir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| run_script("ensure-postgres.sh"))
}

/// The proxy binary of this workspace, built if it is not there yet.
pub fn sidecar_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Test executables live in target/<profile>/deps; the binary in target/<profile>.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
        let bin = profile_dir.join("doltgres-sidecar");
        if !bin.exists() {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--bin", "doltgres-sidecar"])
                .current_dir(repo_root());
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cannot run cargo build");
            assert!(
                status.success(),
                "cargo build --bin doltgres-sidecar failed"
            );
        }
        bin
    })
}

/// A client-driver check program of `proxy-tests/drivers/`, ready to run: append
/// `HOST PORT USER PASSWORD DBNAME` (and `--restart` for the restart scenario) to `argv`.
#[derive(Debug, Clone)]
pub struct DriverProgram {
    /// `go` (pgx), `python` (psycopg), `node` (node-postgres) or `java` (pgjdbc).
    pub name: String,
    /// The program and its leading arguments.
    pub argv: Vec<String>,
}

/// The driver check programs, installed on first use (into a cache outside the repository) by
/// `scripts/ensure-drivers.sh`, which prints one `name<TAB>argv...` line per driver.
pub fn driver_programs() -> &'static [DriverProgram] {
    static PROGRAMS: OnceLock<Vec<DriverProgram>> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let script = repo_root().join("scripts/ensure-drivers.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} failed ({}):\n{stderr}",
            script.display(),
            out.status
        );
        let programs: Vec<DriverProgram> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let mut fields = line.split('\t').map(str::to_string);
                let name = fields.next().unwrap_or_default();
                let argv: Vec<String> = fields.collect();
                assert!(!argv.is_empty(), "ensure-drivers.sh printed {line:?}");
                DriverProgram { name, argv }
            })
            .collect();
        assert!(
            !programs.is_empty(),
            "ensure-drivers.sh printed no program:\n{stderr}"
        );
        programs
    })
}

/// The check program of one driver (`go`, `python`, `node` or `java`), installed on first use.
pub fn driver_program(name: &str) -> &'static DriverProgram {
    driver_programs()
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("ensure-drivers.sh did not install a {name:?} driver"))
}

/// schemathesis's `st` command at the pinned version, installed from PyPI on first use.
pub fn schemathesis() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| run_script("ensure-schemathesis.sh"))
}
