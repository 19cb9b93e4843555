//! `docs/design.md` against the code, so that it stays true: its module map names every source
//! file of `src/` and only files that exist, and its interface contract names every command of
//! the binary; and the benchmarks are one Python package.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use doltgres_sidecar::cli::Cli;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn design() -> String {
    std::fs::read_to_string(repo().join("docs/design.md")).unwrap()
}

/// The `.rs` files under `dir`, as `src/a/b.rs`.
fn sources(dir: &Path, into: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(repo()).unwrap();
            into.insert(relative.display().to_string());
        }
    }
}

/// The backticked words of a text.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_module_map_names_every_source_file_and_only_those() {
    let design = design();
    let start = design.find("### Module map").expect("a module map");
    let end = start + design[start..].find("\n## ").unwrap();
    // Each row: the directory its first path is in, and everything it quotes.
    let rows: Vec<(String, Vec<&str>)> = design[start..end]
        .lines()
        .filter(|l| l.starts_with("| `src/"))
        .map(|row| {
            let names = quoted(row);
            let first = names[0];
            let dir = match first.ends_with('/') {
                true => first.to_string(),
                false => first[..=first.rfind('/').unwrap()].to_string(),
            };
            (dir, names)
        })
        .collect();
    assert!(rows.len() > 40, "{rows:?}");
    let mut files = BTreeSet::new();
    sources(&repo().join("src"), &mut files);
    for file in &files {
        let (dir, name) = file.split_at(file.rfind('/').unwrap() + 1);
        let named = rows.iter().any(|(row_dir, names)| {
            names.contains(&file.as_str())
                || (row_dir == dir && names.contains(&name))
                // `scram/tests.rs` in the row of `src/auth/`
                || (dir.starts_with(row_dir.as_str())
                    && names.contains(&&file[row_dir.len()..]))
        });
        assert!(named, "docs/design.md's module map does not name {file}");
    }
    for (_, names) in &rows {
        for path in names.iter().filter(|n| n.starts_with("src/")) {
            assert!(
                repo().join(path).exists(),
                "docs/design.md's module map names {path}, which does not exist"
            );
        }
    }
}

#[test]
fn the_interface_contract_names_every_command() {
    let design = design();
    let start = design.find("## 6. Interface contract").unwrap();
    let end = start + design[start..].find("\n## 7.").unwrap();
    let contract = &design[start..end];
    for command in Cli::command().get_subcommands() {
        let name = command.get_name();
        assert!(
            contract.contains(&format!("`{name}"))
                || contract.contains(&format!(" {name}`"))
                || contract.contains(&format!("`doltgres-sidecar {name}")),
            "section 6 of docs/design.md does not name the command {name}"
        );
    }
}

/// The benchmarks are one Python package run as modules: every module of `benches/` imports
/// (those needing the bench venv's matplotlib or asyncpg are compiled only), each harness's
/// `--help` runs as `python3 -m benches.<bench>.run`, no module puts a directory on `sys.path`,
/// and there is one `free_port`.
#[test]
fn the_benchmarks_are_one_package() {
    let check = r#"
import ast, importlib, pathlib, sys
venv_only = {"matplotlib", "asyncpg"}
imported = compiled = 0
for path in sorted(pathlib.Path("benches").rglob("*.py")):
    text = path.read_text()
    assert "sys.path.insert" not in text, f"{path} puts a directory on sys.path"
    tree = ast.parse(text, str(path))
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    if top & venv_only:
        compile(text, str(path), "exec")
        compiled += 1
    else:
        importlib.import_module(".".join(path.with_suffix("").parts).removesuffix(".__init__"))
        imported += 1
print(imported, compiled)
"#;
    let out = std::process::Command::new("python3")
        .args(["-B", "-c", check])
        .current_dir(repo())
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported: usize = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(imported > 25, "only {imported} modules imported");
    for bench in [
        "pgbench",
        "stall",
        "upgrade",
        "copy",
        "offsite",
        "offsite_scale",
    ] {
        let out = std::process::Command::new("python3")
            .args(["-B", "-m", &format!("benches.{bench}.run"), "--help"])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("usage"),
            "{bench}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut free_ports = 0;
    let mut files = Vec::new();
    python_files(&repo().join("benches"), &mut files);
    for file in files {
        free_ports += std::fs::read_to_string(&file)
            .unwrap()
            .matches("def free_port(")
            .count();
    }
    assert_eq!(free_ports, 1, "one free_port, in benches/pgbench/procs.py");
}

fn python_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            python_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "py") {
            into.push(path);
        }
    }
}
