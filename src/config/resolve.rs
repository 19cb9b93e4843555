//! How `run` (and `check-config`, and a reload) resolve the configuration: the defaults, the
//! TOML file, then every key as a flag or an environment variable over it; secret files; the
//! fallback password; managed mode's settling; validation.

use std::path::Path;

use super::LogFormat;
use super::flags::Overrides;
use super::{Config, ConfigError};
use crate::config::secrets;
use crate::config::server::ControlMode;

/// The log format and filter directives `run` starts its log with, before the whole
/// configuration is resolved (resolving logs its own warnings): the flags, else the config
/// file's keys, else the defaults. A file or a value that does not load counts as absent
/// here; resolving reports it.
pub fn log_settings(file: Option<&Path>, settings: &Overrides) -> (LogFormat, String) {
    let file = file
        .and_then(|path| Config::load_file(path).ok())
        .map(|(_, table)| table)
        .unwrap_or_default();
    let config = settings
        .over(&file)
        .or_else(|_| Config::deserialize_table(file))
        .unwrap_or_default();
    (config.log_format, config.log_level)
}

/// The effective configuration: defaults, then `file`, then `settings` (flags and environment),
/// secret files read, `DOLTGRES_PASSWORD` as the fallback password, managed mode settled,
/// validated. For a reload while `running` runs it is resolved as at start (the file and secret
/// files read again) but keeps what start settled that a new resolution would settle
/// differently: a managed server's port chosen for `port = 0`.
pub fn resolve(
    file: Option<&Path>,
    settings: &Overrides,
    running: Option<&Config>,
) -> Result<Config, ConfigError> {
    let file = match file {
        Some(path) => {
            let (config, table) = Config::load_file(path)?;
            if secrets::exposed_in_file(&config, path) {
                tracing::warn!(
                    file = %path.display(),
                    "the config file holds a secret and other users can read it: \
                     chmod 600 it, or use admin_token_file / password_file"
                );
            }
            table
        }
        None => toml::Table::new(),
    };
    let mut config = settings.over(&file)?;
    secrets::read_secret_files(&mut config)?;
    if config.backup.password.is_none() {
        config.backup.password = std::env::var("DOLTGRES_PASSWORD").ok();
    }
    if config.server.password.is_none() && config.server.control.mode() == ControlMode::Managed {
        config.server.password = Some(std::env::var("DOLTGRES_PASSWORD").unwrap_or_else(|_| {
            tracing::warn!(
                "the managed Doltgres gets Doltgres' default password for {:?}: set \
                 server.password or DOLTGRES_PASSWORD",
                config.server.user
            );
            "password".into()
        }));
    }
    if let Some(running) = running.and_then(|r| r.server.control.managed())
        && let Some(managed) = config.server.control.managed_mut()
        && managed.port == 0
    {
        managed.port = running.port;
    }
    config.settle_managed().map_err(|e| ConfigError::Invalid {
        name: "server.port",
        reason: format!("no free loopback port: {e}"),
    })?;
    config.validate()?;
    Ok(config)
}
