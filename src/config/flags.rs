//! The configuration keys as `run` flags and environment variables, and how what they say is laid
//! over the config file: each value is written into the file's TOML table at its key's place and
//! the whole is read as one configuration, so a flag means exactly what the key means in the
//! file (the same types, the same defaults for the rest of its section).

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use toml::{Table, Value};

use super::keys::{KEYS, Key, Kind};
use super::{Config, ConfigError};

/// The keys given on the command line or in the environment, with their text.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    values: Vec<(&'static Key, String)>,
}

impl Overrides {
    /// The keys set by environment variables alone (`DOLTGRES_SIDECAR_*`), for commands that take
    /// no key flags but must read the configuration `run` reads (the local commands).
    pub fn from_env() -> Result<Overrides, ConfigError> {
        let command = Overrides::augment_args(Command::new("environment").no_binary_name(true));
        let matches = command
            .try_get_matches_from(std::iter::empty::<String>())
            .map_err(|e| ConfigError::Invalid {
                name: "environment",
                reason: e.to_string(),
            })?;
        Overrides::from_arg_matches(&matches).map_err(|e| ConfigError::Invalid {
            name: "environment",
            reason: e.to_string(),
        })
    }

    /// The text given for the key with this dotted path, if any.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(key, _)| key.path == path)
            .map(|(_, value)| value.as_str())
    }

    /// The file's table with every given value written in at its key's place, read as a
    /// configuration. A value the key cannot take is reported with its flag and variable.
    pub fn over(&self, file: &Table) -> Result<Config, ConfigError> {
        let mut merged = file.clone();
        for (key, text) in &self.values {
            let value = parse(key, text).map_err(|reason| invalid(key, reason))?;
            insert(&mut merged, key.path, value).map_err(|reason| invalid(key, reason))?;
            // A secret given here replaces the file's setting of it in either form, value or
            // file (given both ways here, it is refused like both in the file).
            for (a, b) in SECRET_TWINS {
                let twin = if key.path == a {
                    b
                } else if key.path == b {
                    a
                } else {
                    continue;
                };
                remove(&mut merged, twin);
            }
        }
        match Config::deserialize_table(merged) {
            Ok(config) => Ok(config),
            // Which value it was: the first that the file alone does not reject with it.
            Err(e) => Err(self.culprit(file).unwrap_or(ConfigError::Invalid {
                name: "flags and environment",
                reason: e.to_string(),
            })),
        }
    }

    fn culprit(&self, file: &Table) -> Option<ConfigError> {
        self.values.iter().find_map(|(key, text)| {
            let mut alone = file.clone();
            insert(&mut alone, key.path, parse(key, text).ok()?).ok()?;
            let e = Config::deserialize_table(alone).err()?;
            Some(invalid(key, e.to_string()))
        })
    }
}

fn invalid(key: &'static Key, reason: String) -> ConfigError {
    ConfigError::Invalid {
        name: key.path,
        reason: format!("--{} / {}: {}", key.flag, key.env(), reason.trim()),
    }
}

/// The TOML value a flag's text stands for.
fn parse(key: &Key, text: &str) -> Result<Value, String> {
    match key.kind {
        Kind::Text => Ok(Value::String(text.to_string())),
        Kind::Number => text
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{text:?} is not a whole number")),
        Kind::Switch => match text.trim() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("{text:?} is not true or false")),
        },
        Kind::List if text.trim_start().starts_with('[') => inline(text),
        Kind::List => Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect(),
        )),
        Kind::Table => inline(text),
        Kind::Choice(_) => Ok(Value::String(text.to_string())),
    }
}

/// A TOML inline value (`["a", "b"]`, `{ a = "b" }`). The error does not quote the text: a
/// table of passwords must not end up in a log.
fn inline(text: &str) -> Result<Value, String> {
    let mut doc: Table = format!("v = {text}")
        .parse()
        .map_err(|_| "not a TOML array or inline table".to_string())?;
    doc.remove("v")
        .ok_or_else(|| "not a TOML value".to_string())
}

/// Secrets the file may give as a value or as a file holding it.
const SECRET_TWINS: [(&str, &str); 3] = [
    ("admin_token", "admin_token_file"),
    ("backup.password", "backup.password_file"),
    ("server.password", "server.password_file"),
];

/// Removes the key at the dotted `path`, if the file has it.
fn remove(table: &mut Table, path: &str) {
    let mut at = table;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.remove(part);
            return;
        }
        match at.get_mut(part).and_then(Value::as_table_mut) {
            Some(inner) => at = inner,
            None => return,
        }
    }
}

/// Writes `value` at the dotted `path`, making the sections on the way.
fn insert(table: &mut Table, path: &str, value: Value) -> Result<(), String> {
    let (sections, last) = match path.rsplit_once('.') {
        Some((sections, last)) => (Some(sections), last),
        None => (None, path),
    };
    let mut at = table;
    for section in sections.into_iter().flat_map(|s| s.split('.')) {
        at = at
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{section} in the config file is not a section"))?;
    }
    at.insert(last.to_string(), value);
    Ok(())
}

impl Key {
    fn arg(&self) -> Arg {
        let arg = Arg::new(self.flag)
            .long(self.flag)
            .env(self.env())
            .hide_env_values(self.secret)
            .value_name(self.value_name)
            .help(self.help)
            .help_heading(self.section());
        match self.kind {
            // An empty value (an empty variable) is taken, and sets nothing.
            Kind::Choice(names) => arg.value_parser(PossibleValuesParser::new(
                names
                    .iter()
                    .map(|name| PossibleValue::new(*name))
                    .chain([PossibleValue::new("").hide(true)]),
            )),
            _ => arg.value_parser(clap::value_parser!(String)),
        }
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values = KEYS
            .iter()
            .filter_map(|key| {
                // An empty value (an empty variable, as templates leave them) sets nothing.
                let value = matches.get_one::<String>(key.flag)?;
                (!value.is_empty()).then(|| (key, value.clone()))
            })
            .collect();
        Ok(Overrides { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Overrides::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for Overrides {
    fn augment_args(cmd: Command) -> Command {
        KEYS.iter().fold(cmd, |cmd, key| cmd.arg(key.arg()))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Overrides::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::key;
    use std::time::Duration;

    fn overrides(pairs: &[(&str, &str)]) -> Overrides {
        Overrides {
            values: pairs
                .iter()
                .map(|(path, text)| (key(path).unwrap(), text.to_string()))
                .collect(),
        }
    }

    #[test]
    fn values_land_at_their_keys_over_the_file() {
        let file: Table =
            "listen = \"127.0.0.1:7000\"\nupstream = \"db:1\"\n[backup]\nuser = \"u\""
                .parse()
                .unwrap();
        let config = overrides(&[
            ("upstream", "db:2"),
            ("tls", "allow"),
            ("backup.copy.catalog", "/c"),
            ("backup.copy.keep_last", "3"),
            ("backup.copy.verify_after", "true"),
            ("backup.databases", "a, b"),
            ("backup.snapshot.command", r#"["/bin/snap", "--x,y"]"#),
            ("auth_passwords", r#"{ alice = "pw" }"#),
            ("server.stop_timeout", "2m"),
        ])
        .over(&file)
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:7000");
        assert_eq!(config.upstream, "db:2");
        assert_eq!(config.tls, crate::tls::ClientTlsMode::Allow);
        assert_eq!(config.backup.user, "u", "the file's other keys stay");
        let copy = config.backup.copy.unwrap();
        assert_eq!((copy.keep_last, copy.verify_after), (3, true));
        assert_eq!(config.backup.databases, ["a", "b"]);
        assert_eq!(
            config.backup.snapshot.unwrap().command,
            ["/bin/snap", "--x,y"]
        );
        assert_eq!(format!("{:?}", config.auth_passwords), "{\"alice\"}");
        assert_eq!(config.server.stop_timeout, Duration::from_secs(120));
    }

    #[test]
    fn a_bad_value_names_its_flag_and_variable() {
        let file = Table::new();
        for (path, text, says) in [
            ("tls", "sometimes", "--tls / DOLTGRES_SIDECAR_TLS"),
            ("backup.copy.keep_last", "many", "not a whole number"),
            ("backup.on_shutdown", "maybe", "not true or false"),
            ("connect_timeout", "soon", "--connect-timeout"),
        ] {
            let err = overrides(&[("upstream", "db:2"), (path, text)])
                .over(&file)
                .unwrap_err()
                .to_string();
            assert!(err.contains(path) && err.contains(says), "{err}");
        }
        let err = overrides(&[("auth_passwords", "{ alice = pw }")])
            .over(&file)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "a secret is not echoed: {err}");
    }

    #[test]
    fn a_choice_takes_its_names_and_an_empty_value_only() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            keys: Overrides,
        }
        let cli = Cli::try_parse_from(["x", "--control", "managed", "--log-format", ""]).unwrap();
        assert_eq!(cli.keys.get("server.control"), Some("managed"));
        assert_eq!(cli.keys.get("log_format"), None);
        let err = Cli::try_parse_from(["x", "--control", "manged"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("external") && err.contains("command"), "{err}");
    }
}
