//! Names the commit the binary is built from, for `--version`: `DOLTGRES_SIDECAR_BUILD` is
//! `commit 1a2b3c4d5e6f, 2026-11-26` (the commit's date; `-dirty` after the hash when tracked
//! files differ from it), from git when the sources are a git work tree, else from
//! `DOLTGRES_SIDECAR_COMMIT` given at build time (the container builds, which have no .git), else
//! `unknown commit`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Hex digits of the commit hash shown.
const SHORT: usize = 12;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DOLTGRES_SIDECAR_COMMIT");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let build = from_git(&dir)
        .or_else(from_env)
        .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=DOLTGRES_SIDECAR_BUILD={build}");
}

/// `git` in `dir`: its trimmed output, if it ran and succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // --no-optional-locks: `git status` would otherwise refresh (rewrite) the index, which is
    // watched below, and every build would run this script, and rebuild the crate, again.
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn from_git(dir: &Path) -> Option<String> {
    let hash = git(dir, &["rev-parse", "--verify", "HEAD"])?;
    // Build again when HEAD moves (a commit, a checkout, a reset: each appends to HEAD's reflog),
    // when the index changes (staging), and when the sources change (which can make the tree
    // dirty or clean). In a linked worktree HEAD, its reflog and the index are in its own git
    // directory and the branches in the common one.
    let git_dir = git(dir, &["rev-parse", "--path-format=absolute", "--git-dir"])?;
    let common = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )?;
    let git_dir = Path::new(&git_dir);
    let common = Path::new(&common);
    let mut watched = vec![
        git_dir.join("HEAD"),
        git_dir.join("logs").join("HEAD"),
        git_dir.join("index"),
        common.join("packed-refs"),
    ];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    for name in ["src", "Cargo.toml", "Cargo.lock"] {
        watched.push(dir.join(name));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    let date = git(dir, &["log", "-1", "--format=%cs", "HEAD"]).unwrap_or_default();
    let short = &hash[..SHORT.min(hash.len())];
    let dirty = if dirty { "-dirty" } else { "" };
    Some(if date.is_empty() {
        format!("commit {short}{dirty}")
    } else {
        format!("commit {short}{dirty}, {date}")
    })
}

fn from_env() -> Option<String> {
    let hash = std::env::var("DOLTGRES_SIDECAR_COMMIT").ok()?;
    let hash = hash.trim();
    if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("commit {}", &hash[..SHORT.min(hash.len())]))
}
