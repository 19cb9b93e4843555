//! Where the local commands (`restore`, `verify`) find what the running sidecar uses: its copy
//! catalog, its Doltgres binary (for scratch servers) and the superuser those log in as. Run in
//! any directory, they must work on the same files as the sidecar, so each comes from, in order:
//!
//! 1. `--catalog DIR` and `--doltgres PATH` (`DOLTGRES_SIDECAR_DOLTGRES`), each for itself;
//! 2. with `--config FILE` (`DOLTGRES_SIDECAR_CONFIG`): that file, with the `DOLTGRES_SIDECAR_*`
//!    variables over it, as `run` reads it;
//! 3. otherwise the sidecar answering at `--admin-url` (`GET /status` gives absolute paths);
//! 4. when none answers: the variables over the built-in defaults (the catalog `var/backups`,
//!    `doltgres` on `PATH`), with a note on stderr saying what was assumed and why.
//!
//! The password of the scratch servers' superuser is never asked for over the API: it is
//! `server.password` (file or variables), else `DOLTGRES_PASSWORD`, else Doltgres' default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::LocalArgs;
use crate::client::AdminClient;
use crate::config::flags::Overrides;
use crate::config::{Config, ConfigError};
use crate::verify::ScratchConfig;

/// How long the running sidecar has to say where its files are.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a local command works with.
#[derive(Debug)]
pub struct Places {
    /// The copy catalog, if known (a URL needs none).
    pub catalog: Option<PathBuf>,
    pub scratch: ScratchConfig,
    /// Where the catalog came from, for messages: `--catalog`, `the config file x.toml`, `the
    /// sidecar at http://…`, `the built-in default`.
    pub catalog_from: String,
    /// What was assumed because no sidecar answered, to be said before the work starts.
    pub note: Option<String>,
}

/// What the running sidecar said about itself.
struct Answer {
    url: String,
    catalog: Option<PathBuf>,
    doltgres: Option<PathBuf>,
    user: Option<String>,
}

/// Finds the catalog, the binary and the login (see the module's documentation for the order).
pub fn find(args: &LocalArgs) -> Result<Places, ConfigError> {
    let variables = Overrides::from_env()?;
    let mut config = match &args.config {
        Some(path) => variables.over(&Config::load_file(path)?.1)?,
        None => variables.over(&toml::Table::new())?,
    };
    crate::config::secrets::read_secret_files(&mut config)?;
    config.settle_default_backups();
    let asked = match (&args.config, &args.catalog, &args.doltgres) {
        (Some(_), _, _) | (None, Some(_), Some(_)) => None,
        _ => Some(ask(&AdminClient::new(&args.admin))),
    };
    let answer = asked.as_ref().and_then(|a| a.as_ref().ok());
    let (catalog, catalog_from) = match (&args.catalog, &args.config, answer) {
        (Some(dir), _, _) => (Some(dir.clone()), "--catalog".to_string()),
        (None, Some(file), _) => (
            Some(config.default_catalog()),
            format!("the config file {}", file.display()),
        ),
        (None, None, Some(answer)) => (
            answer.catalog.clone(),
            format!("the sidecar at {}", answer.url),
        ),
        (None, None, None) => (
            Some(config.default_catalog()),
            "the built-in default".to_string(),
        ),
    };
    let binary = args
        .doltgres
        .clone()
        .or_else(|| answer.and_then(|a| a.doltgres.clone()))
        .unwrap_or_else(|| config.server.binary.clone());
    let user = answer
        .and_then(|a| a.user.clone())
        .unwrap_or_else(|| config.server.user.clone());
    let note = match asked {
        Some(Err(why)) => Some(format!(
            "{why}; using the catalog {} and the Doltgres binary {} (give --catalog and \
             --doltgres, or --config, to choose)",
            shown(catalog.as_deref()),
            program(&binary)
        )),
        _ => None,
    };
    let password = config
        .server
        .password
        .clone()
        .or_else(|| std::env::var("DOLTGRES_PASSWORD").ok())
        .unwrap_or_else(|| "password".into());
    Ok(Places {
        catalog,
        scratch: ScratchConfig {
            binary,
            user,
            password,
            ready_timeout: config.server.ready_timeout,
        },
        catalog_from,
        note,
    })
}

/// `GET /status` of the sidecar at `admin`: where its catalog and Doltgres are, as absolute
/// paths; or why it did not say.
fn ask(admin: &AdminClient) -> Result<Answer, String> {
    let status = admin
        .call_within("GET", "/status", ASK_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let path = |key: &str| status[key].as_str().map(PathBuf::from);
    Ok(Answer {
        url: admin.base.clone(),
        catalog: path("catalog"),
        doltgres: path("doltgres"),
        user: status["server_user"].as_str().map(str::to_string),
    })
}

/// A path as it will be used: absolute when it can be made so.
fn shown(path: Option<&Path>) -> String {
    match path {
        Some(path) => absolute(path).display().to_string(),
        None => "(none)".to_string(),
    }
}

/// A program as it will be started: a bare name is looked up on `PATH`.
fn program(binary: &Path) -> String {
    match crate::control::locate::locate(binary) {
        Some(found) => found.display().to_string(),
        None if binary.components().count() == 1 => format!("{} (not on PATH)", binary.display()),
        None => format!("{} (not there)", binary.display()),
    }
}

/// `path` made absolute against the current directory, when it can be.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
