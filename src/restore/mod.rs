//! Restoring a backup into a directory a Doltgres starts on, so that the directory serves the
//! restored data and nothing else:
//!
//! - a copy entry: exactly the files its manifest lists, each checked against its size and
//!   checksum while it is copied (a file that is not listed, a path that leaves the entry, or a
//!   symbolic link is refused: [`crate::catalog::materialize`]);
//! - a sync backup or push remote (a URL): restored through a scratch Doltgres under a name of
//!   its own (the scratch server has a `postgres` database of its own), then renamed to the
//!   database's name once the scratch server has stopped;
//! - then the managed layout's `config.yaml` is pointed at the new directory: its `data_dir`
//!   named the original server's.
//!
//! Everything is built in a [`staging::Staging`] directory and put in place at the end, so a
//! failed restore leaves the target as it was.

pub mod staging;

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use crate::verify::{self, Scratch, ScratchConfig};

/// The name a URL is restored under on the scratch server, before it gets its own.
const RESTORING: &str = "doltgres_sidecar_restoring";

/// Restores a sync backup or push remote `url` as `database` into `dir` (the managed layout:
/// `data/`, `work/`, `root/`), through a scratch Doltgres started there; returns its HEAD.
pub async fn url_into(
    scratch: &ScratchConfig,
    url: &str,
    database: &str,
    dir: &Path,
) -> Result<String, String> {
    let server = Scratch::start(scratch, dir, false)
        .await
        .map_err(|e| e.to_string())?;
    let restored = verify::restore_url(&server, url, RESTORING).await;
    server.finish().await;
    let restored = restored.map_err(|e| e.to_string())?;
    let data = dir.join("data");
    let named = data.join(database);
    if named.exists() {
        // The scratch server's own (empty) database of that name.
        fs::remove_dir_all(&named).map_err(|e| format!("{}: {e}", named.display()))?;
    }
    for name in [RESTORING.to_string(), format!("{RESTORING}_clone")] {
        let built = data.join(&name);
        if name == restored.database {
            fs::rename(&built, &named).map_err(|e| format!("{}: {e}", named.display()))?;
        } else if built.exists() {
            // What a failed `dolt_backup('restore')` left.
            fs::remove_dir_all(&built).map_err(|e| format!("{}: {e}", built.display()))?;
        }
    }
    Ok(restored.head)
}

/// Points the `config.yaml` of a tree built for `target` at `target`: its `data_dir` becomes
/// `target/data`, and a unix `socket` line (which named the original server's) goes. Other
/// settings (the port, the log level) stay. Nothing to do without a `config.yaml`.
pub fn point_config_at(built: &Path, target: &Path) -> io::Result<()> {
    let path = built.join("config.yaml");
    let mut text = String::new();
    match fs::File::open(&path) {
        Ok(mut file) => file.read_to_string(&mut text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    fs::write(&path, repointed(&text, target))
}

fn repointed(yaml: &str, target: &Path) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let key = line.trim_start();
        if key.starts_with("socket:") {
            continue;
        }
        if line.starts_with("data_dir:") {
            out.push_str(&format!("data_dir: {}\n", target.join("data").display()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_new_directory_and_no_socket() {
        let yaml = "log_level: info\nlistener:\n  host: 127.0.0.1\n  port: 5433\n  socket: \
                    /live/.s.PGSQL.5433\ndata_dir: /live/data\n";
        let out = repointed(yaml, Path::new("/restored"));
        assert_eq!(
            out,
            "log_level: info\nlistener:\n  host: 127.0.0.1\n  port: 5433\ndata_dir: /restored/data\n"
        );
        assert!(!out.contains("/live"));
    }
}
