//! Secrets in the configuration: the admin token and the passwords may come from files (the way
//! Kubernetes mounts secrets), read once while the configuration is resolved; a config file
//! that holds a secret itself but can be read by other users gets a warning; and the effective
//! configuration is shown (`check-config`) with every secret masked.

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

/// What a masked secret shows instead of its value.
pub use crate::redact::MASK;

/// The configuration as TOML with every secret replaced by [`MASK`]: each value whose key names a
/// password or a token (`admin_token`, `backup.password`, `server.password`, ...; not the
/// `*_file` paths that hold them), and every entry of a table so named (`auth_passwords`), at any
/// depth, so that a secret added to the configuration later is masked too; and the password of
/// any URL with credentials (`https://user:password@host/...` in a remote's URL or a command).
pub fn masked_toml(config: &Config) -> Result<String, toml::ser::Error> {
    let mut value = toml::Value::try_from(config)?;
    mask_value(false, &mut value);
    toml::to_string(&value)
}

/// The configuration as dotted keys and their values (TOML's notation, strings bare), every
/// secret masked as [`masked_toml`] masks it, in the order of the TOML document.
pub fn masked_settings(config: &Config) -> Result<Vec<(String, String)>, toml::ser::Error> {
    let mut value = toml::Value::try_from(config)?;
    mask_value(false, &mut value);
    let mut out = Vec::new();
    flatten("", &value, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = match prefix {
                    "" => key.clone(),
                    _ => format!("{prefix}.{key}"),
                };
                flatten(&path, value, out);
            }
        }
        toml::Value::String(text) => out.push((prefix.to_string(), text.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Whether a key names a secret rather than, say, the file that holds one.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    (key.contains("password") || key.contains("token") || key.contains("secret"))
        && !key.ends_with("_file")
}

/// Masks `value` whole when its key names a secret, else the secrets inside it.
fn mask_value(secret: bool, value: &mut toml::Value) {
    if secret {
        return mask_all(value);
    }
    match value {
        toml::Value::Table(table) => table
            .iter_mut()
            .for_each(|(key, value)| mask_value(is_secret_key(key), value)),
        toml::Value::Array(items) => items.iter_mut().for_each(|item| mask_value(false, item)),
        toml::Value::String(text) => {
            if let Some(masked) = crate::redact::url_password(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

/// Masks a secret value: a string, or every string inside a table or array.
fn mask_all(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| mask_all(v)),
        toml::Value::Array(items) => items.iter_mut().for_each(mask_all),
        other => *other = toml::Value::String(MASK.into()),
    }
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

    /// A config holding every kind of secret, each value distinct and findable in the output.
    fn config_with_every_secret() -> (Config, Vec<&'static str>) {
        let config = Config::from_toml(
            r#"
            admin_token = "admin-Secret-1"
            admin_token_file = "/run/secrets/token"
            auth = "proxy"
            auth_file = "users.txt"
            upstream = "db.internal:5433"
            shutdown_timeout = "1m 500ms"
            log_format = "json"
            log_level = "warn,doltgres_sidecar=debug"
            [auth_passwords]
            alice = "alice-Secret-2"
            bob = "bob-Secret-3"
            [backup]
            password = "backup-Secret-4"
            password_file = "/run/secrets/backup"
            databases = ["db1", "db2"]
            every_write_commits = 100
            [backup.push]
            remote = "r"
            url = "https://pusher:url-Secret-6@dolthub.example/{database}"
            [backup.sync]
            name = "s"
            url = "file:///b/{database}"
            [backup.snapshot]
            command = ["snap", "--to", "s3://key:cmd-Secret-7@bucket/x"]
            [backup.copy]
            catalog = "/backups"
            max_age = "30days"
            [server]
            control = "command"
            password = "server-Secret-5"
            stop = ["stop"]
            start = ["start"]
            data_dir = "/data"
            "#,
        )
        .unwrap();
        let secrets = vec![
            "admin-Secret-1",
            "alice-Secret-2",
            "bob-Secret-3",
            "backup-Secret-4",
            "server-Secret-5",
            "url-Secret-6",
            "cmd-Secret-7",
        ];
        (config, secrets)
    }

    #[test]
    fn the_shown_config_holds_no_secret() {
        let (config, secrets) = config_with_every_secret();
        let text = masked_toml(&config).unwrap();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
        // Each secret's place shows the mask; the files that hold secrets show their paths.
        assert_eq!(text.matches(MASK).count(), 7, "{text}");
        assert!(text.contains("/run/secrets/backup"), "{text}");
    }

    #[test]
    fn the_shown_config_reads_back_as_the_same_config_but_the_masks() {
        let (config, _) = config_with_every_secret();
        let text = masked_toml(&config).unwrap();
        let read_back = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut expected = config.clone();
        expected.admin_token = Some(MASK.into());
        expected.backup.password = Some(MASK.into());
        expected.server.password = Some(MASK.into());
        for password in expected.auth_passwords.0.values_mut() {
            *password = MASK.into();
        }
        expected.backup.push.as_mut().unwrap().url = Some(format!(
            "https://pusher:{MASK}@dolthub.example/{{database}}"
        ));
        expected.backup.snapshot.as_mut().unwrap().command[2] = format!("s3://key:{MASK}@bucket/x");
        assert_eq!(read_back, expected, "{text}");
        // So does the default config, whose optional settings are all absent.
        let text = masked_toml(&Config::default()).unwrap();
        assert_eq!(
            Config::from_toml(&text).unwrap(),
            Config::default(),
            "{text}"
        );
    }

    #[test]
    fn secret_keys_are_told_from_the_files_that_hold_them() {
        for key in [
            "admin_token",
            "password",
            "auth_passwords",
            "api_secret",
            "Token",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "admin_token_file",
            "password_file",
            "user",
            "listen",
            "max_hold_ttl",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
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
