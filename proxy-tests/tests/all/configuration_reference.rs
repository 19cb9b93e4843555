//! The configuration reference (`docs/configuration.md`) and the annotated example
//! (`examples/sidecar.toml`) against the code: the example loads and validates through the same
//! path as `run --config`; every key of `Config` (read from its `Debug` form, with every optional
//! section present) is documented and appears in the example; every `run` flag and environment
//! variable (read from the binary's `--help`) is documented.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use doltgres_sidecar::config::Config;
use doltgres_sidecar::config::server::ControlMode;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Dotted key paths (`backup.copy.keep_last`) of a pretty-printed `Debug` of `Config`.
fn debug_paths(config: &Config) -> BTreeSet<String> {
    let text = format!("{config:#?}");
    let mut paths = BTreeSet::new();
    // (indent, field) of the fields whose value is open on the lines below.
    let mut open: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        let Some((name, rest)) = trimmed.split_once(": ") else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        while open.last().is_some_and(|(i, _)| *i >= indent) {
            open.pop();
        }
        let mut path: Vec<&str> = open.iter().map(|(_, n)| n.as_str()).collect();
        path.push(name);
        let rest = rest.trim_end();
        let opens_struct =
            rest.ends_with('{') && rest.chars().next().is_some_and(char::is_uppercase);
        let opens_some_struct = rest == "Some(";
        if opens_struct || opens_some_struct {
            open.push((indent, name.to_string()));
        } else {
            paths.insert(path.join("."));
        }
    }
    paths
}

/// The key paths of configurations with every optional section present and each control mode,
/// so that `Debug` shows every key: each mode's settings live in its variant.
fn every_key() -> BTreeSet<String> {
    ["managed", "command"]
        .iter()
        .flat_map(|mode| debug_paths(&every_section(mode)))
        .collect()
}

/// A config with every optional section present and control `mode`.
fn every_section(mode: &str) -> Config {
    let server = match mode {
        "command" => {
            "[server]\ncontrol = \"command\"\nstop = [\"s\"]\nstart = [\"t\"]\ndata_dir = \"/d\"\n"
        }
        _ => "[server]\ncontrol = \"managed\"\n",
    };
    Config::from_toml(
        &(server.to_string()
            + r#"
        [backup.push]
        remote = "r"
        [backup.sync]
        name = "s"
        [backup.snapshot]
        command = ["true"]
        [backup.copy]
        catalog = "c"
        [backup.copy.offsite]
        url = "s3://b/p"
        "#),
    )
    .expect("every section parses")
}

/// What an example file shows, set or commented out (`# key = ...`, `# [section]`): the key paths
/// under their sections, and the section names.
struct ExampleKeys {
    keys: BTreeSet<String>,
    sections: BTreeSet<String>,
}

fn example_keys(text: &str) -> ExampleKeys {
    let name_char = |c: char| c.is_ascii_lowercase() || c == '_';
    let mut found = ExampleKeys {
        keys: BTreeSet::new(),
        sections: BTreeSet::new(),
    };
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        let body = line.strip_prefix('#').unwrap_or(line).trim_start();
        if let Some((name, _)) = body.strip_prefix('[').and_then(|b| b.split_once(']')) {
            if name.chars().all(|c| name_char(c) || c == '.') {
                section = name.to_string();
                found.sections.insert(section.clone());
            }
            continue;
        }
        let Some((key, _)) = body.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(name_char) {
            continue;
        }
        found.keys.insert(if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        });
    }
    found
}

#[test]
fn the_example_config_loads_as_run_loads_it() {
    // What `run --config` does with it: read the file and its secret files, take the managed
    // superuser's password from DOLTGRES_PASSWORD (here a stand-in), settle managed mode, validate.
    let example = repo().join("examples/sidecar.toml");
    let mut config = Config::from_file(&example)
        .unwrap_or_else(|e| panic!("examples/sidecar.toml does not load: {e}"));
    doltgres_sidecar::config::secrets::read_secret_files(&mut config).unwrap();
    config
        .server
        .password
        .get_or_insert_with(|| "stand-in".into());
    config.settle_managed().unwrap();
    config
        .validate()
        .unwrap_or_else(|e| panic!("examples/sidecar.toml is not valid: {e}"));
    assert_eq!(config.server.control.mode(), ControlMode::Managed);
    assert!(config.backup.copy.as_ref().is_some_and(|c| c.verify_after));
    assert_eq!(config.backup.every_write_commits, 1000);
}

#[test]
fn every_key_is_documented_and_in_the_example() {
    let paths = every_key();
    for expected in [
        "listen",
        "backup.copy.keep_last",
        "server.control",
        "backup.push.url",
    ] {
        assert!(
            paths.contains(expected),
            "{expected} not read from Debug: {paths:?}"
        );
    }
    let doc = read("docs/configuration.md");
    let example = example_keys(&read("examples/sidecar.toml"));
    let undocumented: Vec<_> = paths
        .iter()
        .filter(|p| !doc.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/configuration.md (a table row starting | `key` |): {undocumented:?}"
    );
    // A table-valued key (`[auth_passwords]`) shows as a section of its own.
    let missing: Vec<_> = paths
        .iter()
        .filter(|p| !example.keys.contains(*p) && !example.sections.contains(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from examples/sidecar.toml (set, or shown as `# key = ...`): {missing:?}"
    );
    // Entries of a table-valued key (`alice` under `[auth_passwords]`) are data, not keys.
    let unknown: Vec<_> = example
        .keys
        .iter()
        .filter(|k| {
            let parent = k.rsplit_once('.').map(|(p, _)| p);
            !paths.contains(*k) && !parent.is_some_and(|p| paths.contains(p))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "examples/sidecar.toml shows keys the code lacks: {unknown:?}"
    );
}

#[test]
fn every_flag_and_variable_is_documented() {
    let binary = proxy_tests::install::sidecar_binary();
    let doc = read("docs/configuration.md");
    let mut seen = 0;
    for command in [
        &["run", "--help"][..],
        &["status", "--help"],
        &["restore", "--help"],
    ] {
        let out = Command::new(binary)
            .args(command)
            .output()
            .expect("run --help");
        assert!(out.status.success(), "{command:?} failed");
        let help = String::from_utf8_lossy(&out.stdout);
        for word in help.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == ',') {
            let word = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            // The configuration's flags are run's; the other commands' are their own.
            let flag = command[0] == "run" && word.starts_with("--") && word != "--help";
            let env = word.strip_prefix("env:").unwrap_or(word);
            let variable = env.starts_with("DOLTGRES_SIDECAR_");
            if flag || variable {
                let name = if variable { env } else { word };
                assert!(
                    doc.contains(&format!("`{name}")),
                    "{name} (doltgres-sidecar {}) is not in docs/configuration.md",
                    command[0]
                );
                seen += 1;
            }
        }
    }
    assert!(
        seen > 20,
        "read only {seen} flags and variables from --help"
    );
}

#[test]
fn every_key_has_its_flag_and_variable_in_the_reference_and_in_help() {
    use doltgres_sidecar::config::keys::KEYS;
    let paths = every_key();
    let listed: BTreeSet<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
    assert_eq!(
        paths, listed,
        "config::keys::KEYS must list every key of Config, and only those"
    );
    let doc = read("docs/configuration.md");
    let out = Command::new(proxy_tests::install::sidecar_binary())
        .args(["run", "--help"])
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for key in KEYS {
        let row = doc
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", key.path)))
            .unwrap_or_else(|| panic!("no row for {} in docs/configuration.md", key.path));
        let flag = format!("--{}", key.flag);
        let env = key.env();
        for name in [&flag, &env] {
            assert!(
                row.contains(&format!("`{name}`")),
                "the row of {} in docs/configuration.md does not name {name}: {row}",
                key.path
            );
            assert!(
                [" ", "]", "="]
                    .iter()
                    .any(|after| help.contains(&format!("{name}{after}"))),
                "run --help does not show {name} ({})",
                key.path
            );
        }
    }
}

#[test]
fn a_flag_and_a_variable_set_a_nested_key_over_the_file() {
    let dir = std::env::temp_dir().join(format!("dgs-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "[server]\ncontrol = \"command\"\nstop = [\"/bin/true\"]\nstart = [\"/bin/true\"]\ndata_dir = \"/d\"\n").unwrap();
    let out = Command::new(proxy_tests::install::sidecar_binary())
        .args(["check-config", "--config"])
        .arg(&file)
        .args([
            "--backup-copy-catalog",
            "/var/copies",
            "--tls-cert",
            "/c.pem",
        ])
        .env("DOLTGRES_SIDECAR_BACKUP_COPY_KEEP_LAST", "4")
        .env("DOLTGRES_SIDECAR_TLS_KEY", "/k.pem")
        .env("DOLTGRES_SIDECAR_TLS", "require")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: toml::Table = text.parse().unwrap();
    let copy = &shown["backup"]["copy"];
    assert_eq!(copy["catalog"].as_str(), Some("/var/copies"));
    assert_eq!(copy["keep_last"].as_integer(), Some(4));
    assert_eq!(shown["tls"].as_str(), Some("require"));
    assert_eq!(shown["tls_cert"].as_str(), Some("/c.pem"));
    assert_eq!(shown["tls_key"].as_str(), Some("/k.pem"));
    assert_eq!(
        shown["server"]["stop"][0].as_str(),
        Some("/bin/true"),
        "the file stays"
    );
    let out = Command::new(proxy_tests::install::sidecar_binary())
        .args(["check-config", "--tls", "sometimes"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--tls / DOLTGRES_SIDECAR_TLS"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
