//! A first run says what it does: the scripts that build Doltgres name what is missing before
//! anything long starts, say when they build and when they wait for another process's build,
//! and repeat a line at every interval until it is done. Run with stand-ins for `go`, `rustc`
//! and a concurrent builder, and a one-second interval, so nothing is built for real.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proxy_tests::install;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Writes an executable script `name` into `dir`.
fn program(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `go` that reports `version` and "builds" in `seconds` (the output file is a shell script).
fn fake_go(dir: &Path, version: &str, seconds: u32) {
    program(
        dir,
        "go",
        &format!(
            "case \"$1\" in\n\
             env) echo go{version} ;;\n\
             version) echo go version go{version} linux/amd64 ;;\n\
             mod) ;;\n\
             build) sleep {seconds}; printf '#!/bin/sh\\n' >\"$3\"; chmod +x \"$3\" ;;\n\
             esac"
        ),
    );
}

/// `bash scripts/NAME args` with `stand_ins` first on PATH, the cache in `cache` and a
/// one-second progress interval; at most 60 s.
fn script(name: &str, args: &[&str], stand_ins: &Path, cache: &Path) -> Output {
    let path = format!(
        "{}:{}",
        stand_ins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["60", "bash"])
        .arg(repo().join("scripts").join(name))
        .args(args)
        .env("PATH", path)
        .env("DOLTGRES_SIDECAR_CACHE", cache)
        .env("DOLTGRES_SIDECAR_PROGRESS_INTERVAL", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    println!(
        "scripts/{name} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const MODULE: [&str; 4] = ["fake", "example.com/fake", "v0.0.1", "example.com/fake/cmd"];

#[test]
fn a_build_says_what_it_does_at_every_interval() {
    let stand_ins = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    fake_go(stand_ins.path(), "1.26.2", 3);
    let out = script("go-binary.sh", &MODULE, stand_ins.path(), cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let bin = cache.path().join("fake-v0.0.1/bin/fake");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        bin.to_str().unwrap()
    );
    assert!(
        stderr
            .contains("go-binary: building fake v0.0.1 from the Go module proxy (first run only)"),
        "{stderr}"
    );
    assert!(
        stderr
            .matches("go-binary: still building fake v0.0.1: 0m0")
            .count()
            >= 2,
        "{stderr}"
    );
    assert!(
        stderr.contains("go-binary: built fake v0.0.1 in 0m0"),
        "{stderr}"
    );
    assert!(!cache.path().join("fake-v0.0.1/.builder").exists());
    // Built: the next run says nothing and prints the path.
    let again = script("go-binary.sh", &MODULE, stand_ins.path(), cache.path());
    assert!(again.status.success() && again.stderr.is_empty());
}

#[test]
fn waiting_for_another_build_is_said_at_every_interval() {
    let stand_ins = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    fake_go(stand_ins.path(), "1.26.2", 0);
    let dir = cache.path().join("fake-v0.0.1");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    // Another process builds: it holds the lock for 3 s, then leaves the binary.
    let holder = format!(
        "echo \"$$ $(date +%s)\" >'{d}/.builder'; sleep 3; printf '#!/bin/sh\\n' >'{d}/bin/fake'; \
         chmod +x '{d}/bin/fake'",
        d = dir.display()
    );
    let mut other = Command::new("flock")
        .arg(dir.join(".lock"))
        .args(["sh", "-c", &holder])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join(".builder").exists() {
        assert!(Instant::now() < deadline, "the other build did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = script("go-binary.sh", &MODULE, stand_ins.path(), cache.path());
    assert!(other.wait().unwrap().success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dir.join("bin/fake").to_str().unwrap()
    );
    assert!(
        stderr
            .matches("go-binary: waiting for another build of fake v0.0.1 (process ")
            .count()
            >= 2,
        "{stderr}"
    );
    assert!(
        stderr.contains("the other build of fake finished"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("building fake"),
        "it built nothing itself: {stderr}"
    );
}

#[test]
fn missing_prerequisites_are_named_before_anything_starts() {
    let stand_ins = tempfile::tempdir().unwrap();
    let empty_cache = tempfile::tempdir().unwrap();
    fake_go(stand_ins.path(), "1.20.1", 0);
    program(
        stand_ins.path(),
        "rustc",
        "echo 'rustc 1.80.0 (051478957 2024-07-21)'",
    );
    let started = Instant::now();
    let out = script("demo", &[], stand_ins.path(), empty_cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it checked first"
    );
    // The version Cargo.toml's rust-version asks for.
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    let needed = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml has a rust-version");
    assert!(
        stderr.contains(&format!(
            "Rust {needed} or newer is needed (found rustc 1.80.0"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("Go 1.26.2 or newer is needed to build Doltgres v1.2.0 (found: 1.20.1)"),
        "{stderr}"
    );
    assert!(!stderr.contains("building"), "nothing started: {stderr}");
    assert!(
        std::fs::read_dir(empty_cache.path())
            .unwrap()
            .next()
            .is_none(),
        "nothing was written into the cache"
    );

    // With Doltgres built, what builds it is not needed.
    let built = install::doltgres_binary();
    let cache = built.ancestors().nth(3).unwrap();
    let out = script("prerequisites.sh", &["--no-rust"], stand_ins.path(), cache);
    assert!(out.status.success());
}
