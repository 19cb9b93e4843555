//! Secrets in the configuration: the admin token and the passwords may come from files (the way
//! Kubernetes mounts secrets), read once while the configuration is resolved; and a config file
//! that holds a secret itself but can be read by other users gets a warning.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

/// Fills `admin_token`, `backup.password` and `server.password` from their `*_file` settings.
/// A setting given both ways, or a file that cannot be read or is empty, is an error.
pub fn read_secret_files(config: &mut Config) -> Result<(), ConfigError> {
    let slots: [(&'static str, &mut Option<String>, &Option<PathBuf>); 3] = [
        (
            "admin_token_file",
            &mut config.admin_token,
            &config.admin_token_file,
        ),
        (
            "backup.password_file",
            &mut config.backup.password,
            &config.backup.password_file,
        ),
        (
            "server.password_file",
            &mut config.server.password,
            &config.server.password_file,
        ),
    ];
    for (name, value, file) in slots {
        let Some(file) = file else { continue };
        if value.is_some() {
            return Err(invalid(name, "set either the value or its file, not both"));
        }
        *value = Some(read(name, file)?);
    }
    Ok(())
}

/// Reads a secret file: its content without the trailing newline.
fn read(name: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(name, format!("cannot read {}: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(invalid(name, format!("{} is empty", path.display())));
    }
    Ok(secret)
}

/// Whether the config file itself holds a secret and other users may read it.
pub fn exposed_in_file(config: &Config, path: &Path) -> bool {
    let holds_secret = (config.admin_token.is_some() && config.admin_token_file.is_none())
        || (config.backup.password.is_some() && config.backup.password_file.is_none())
        || (config.server.password.is_some() && config.server.password_file.is_none())
        || !config.auth_passwords.0.is_empty();
    let readable_by_others =
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0);
    holds_secret && readable_by_others
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, content: &str, mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dgs-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn secrets_come_from_files_without_their_newline() {
        let mut config = Config {
            admin_token_file: Some(temp("token", "tok\n", 0o600)),
            ..Config::default()
        };
        config.backup.password_file = Some(temp("pw", "backup-pw\r\n", 0o600));
        read_secret_files(&mut config).unwrap();
        assert_eq!(config.admin_token.as_deref(), Some("tok"));
        assert_eq!(config.backup.password.as_deref(), Some("backup-pw"));
        assert_eq!(config.server.password, None);
    }

    #[test]
    fn both_ways_missing_or_empty_files_are_errors() {
        let mut both = Config {
            admin_token: Some("a".into()),
            admin_token_file: Some(temp("token2", "b", 0o600)),
            ..Config::default()
        };
        assert!(read_secret_files(&mut both).is_err());
        let mut missing = Config::default();
        missing.server.password_file = Some(PathBuf::from("/nonexistent/secret"));
        let err = read_secret_files(&mut missing).unwrap_err().to_string();
        assert!(err.contains("server.password_file"), "{err}");
        let mut empty = Config::default();
        empty.backup.password_file = Some(temp("empty", "\n", 0o600));
        assert!(read_secret_files(&mut empty).is_err());
    }

    #[test]
    fn a_readable_config_file_with_a_secret_is_exposed() {
        let readable = temp("c1.toml", "", 0o644);
        let private = temp("c2.toml", "", 0o600);
        let with_secret = Config {
            admin_token: Some("t".into()),
            ..Config::default()
        };
        assert!(exposed_in_file(&with_secret, &readable));
        assert!(!exposed_in_file(&with_secret, &private));
        assert!(!exposed_in_file(&Config::default(), &readable));
        let mut with_passwords = Config::default();
        with_passwords
            .auth_passwords
            .0
            .insert("alice".into(), "pw".into());
        assert!(exposed_in_file(&with_passwords, &readable));
    }
}
