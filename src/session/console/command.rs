//! The console's commands and their parser: pure, total over any input (fuzzed by
//! `fuzz/fuzz_targets/console_command.rs`).
//!
//! Keywords are case-insensitive and separated by whitespace; a trailing `;` is allowed. An
//! argument is a bare word (`30s`, `push`, an entry id) or a single-quoted string with `''` for a
//! quote.

use std::fmt;

use crate::config::backup::Action;

/// What `SHOW` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Help,
    Version,
    Sessions,
    Stats,
    Windows,
    Backups,
    Config,
    Server,
}

impl Show {
    pub const ALL: [Show; 8] = [
        Show::Help,
        Show::Version,
        Show::Sessions,
        Show::Stats,
        Show::Windows,
        Show::Backups,
        Show::Config,
        Show::Server,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Show::Help => "HELP",
            Show::Version => "VERSION",
            Show::Sessions => "SESSIONS",
            Show::Stats => "STATS",
            Show::Windows => "WINDOWS",
            Show::Backups => "BACKUPS",
            Show::Config => "CONFIG",
            Show::Server => "SERVER",
        }
    }
}

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    /// A backup window now, for this action or the one triggered windows run.
    Backup(Option<Action>),
    /// An operator hold, for this long (a whole number and a unit) or the default.
    Pause(Option<String>),
    Resume,
    Reload,
    /// Verify this copy entry, or `latest`.
    Verify(String),
    Shutdown,
}

impl Command {
    /// Whether the command changes something (only `admin_users` may run it).
    pub fn is_control(&self) -> bool {
        !matches!(self, Command::Show(_))
    }

    /// Its first keyword: the command tag of its answer.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Backup(_) => "BACKUP",
            Command::Pause(_) => "PAUSE",
            Command::Resume => "RESUME",
            Command::Reload => "RELOAD",
            Command::Verify(_) => "VERIFY",
            Command::Shutdown => "SHUTDOWN",
        }
    }
}

/// The commands and what they do, as `SHOW HELP` lists them.
pub const HELP: &[(&str, &str)] = &[
    ("SHOW HELP", "this list"),
    ("SHOW VERSION", "the sidecar's version"),
    (
        "SHOW SESSIONS",
        "open client sessions: client, user, database, state, server pid",
    ),
    (
        "SHOW STATS",
        "transaction counters, write commits since the last backup, bytes relayed",
    ),
    ("SHOW WINDOWS", "recent backup windows, newest first"),
    (
        "SHOW BACKUPS",
        "copy entries with their verification and off-site state",
    ),
    ("SHOW CONFIG", "the running configuration, secrets masked"),
    (
        "SHOW SERVER",
        "server control mode, pid, restarts, the upstream",
    ),
    (
        "BACKUP [push|sync|snapshot|copy]",
        "run a backup window now (default: the configured action)",
    ),
    (
        "PAUSE [ttl]",
        "hold every session at its next transaction boundary (default ttl 30s)",
    ),
    ("RESUME", "end the hold"),
    ("RELOAD", "reload the configuration, as SIGHUP does"),
    (
        "VERIFY <entry>|latest",
        "verify a copy entry on a scratch Doltgres",
    ),
    ("SHUTDOWN", "shut down gracefully, as SIGTERM does"),
];

/// A command that does not parse: the message for a `42601`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest argument accepted: ids, durations and action names are all short.
const MAX_ARGUMENT: usize = 200;

/// Splits `text` into words: bare runs of non-whitespace, or single-quoted strings.
fn words(text: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(ParseError("unterminated quoted string".into())),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        word.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '\'' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        if word.len() > MAX_ARGUMENT {
            return Err(ParseError(format!(
                "argument longer than {MAX_ARGUMENT} bytes"
            )));
        }
        out.push(word);
    }
    Ok(out)
}

/// Parses one command (without the `;` that may end it).
pub fn parse(text: &str) -> Result<Command, ParseError> {
    let text = text.trim().trim_end_matches(';').trim_end();
    let words = words(text)?;
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    let unknown = || {
        ParseError(format!(
            "unknown console command {:?}: SHOW HELP lists them",
            text.chars().take(60).collect::<String>()
        ))
    };
    let extra = |name: &str| ParseError(format!("{name} takes no more arguments"));
    let command = match upper.as_slice() {
        ["SHOW", what, rest @ ..] => {
            let show = Show::ALL
                .into_iter()
                .find(|s| s.as_str() == *what)
                .ok_or_else(unknown)?;
            if !rest.is_empty() {
                return Err(extra(&format!("SHOW {what}")));
            }
            Command::Show(show)
        }
        ["BACKUP"] => Command::Backup(None),
        ["BACKUP", _] => {
            let name = words[1].to_ascii_lowercase();
            let action = Action::parse(&name).ok_or_else(|| {
                ParseError(format!(
                    "unknown backup action {:?}: use push, sync, snapshot or copy",
                    words[1]
                ))
            })?;
            Command::Backup(Some(action))
        }
        ["PAUSE"] => Command::Pause(None),
        ["PAUSE", _] => Command::Pause(Some(words[1].to_ascii_lowercase())),
        ["RESUME"] => Command::Resume,
        ["RELOAD"] => Command::Reload,
        ["VERIFY"] => {
            return Err(ParseError(
                "VERIFY needs an entry id, or latest (SHOW BACKUPS lists them)".into(),
            ));
        }
        ["VERIFY", "LATEST"] => Command::Verify("latest".into()),
        ["VERIFY", _] => Command::Verify(words[1].clone()),
        ["SHUTDOWN"] => Command::Shutdown,
        [first @ ("BACKUP" | "PAUSE" | "VERIFY"), ..] => return Err(extra(first)),
        [first @ ("RESUME" | "RELOAD" | "SHUTDOWN"), ..] => return Err(extra(first)),
        _ => return Err(unknown()),
    };
    Ok(command)
}

/// Quotes an argument when it is not a plain word.
fn argument(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "''"))
    }
}

/// The command as it would be typed: [`parse`] of it gives it back.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Show(show) => write!(f, "SHOW {}", show.as_str()),
            Command::Backup(None) => f.write_str("BACKUP"),
            Command::Backup(Some(action)) => write!(f, "BACKUP {}", action.as_str()),
            Command::Pause(None) => f.write_str("PAUSE"),
            Command::Pause(Some(ttl)) => write!(f, "PAUSE {}", argument(ttl)),
            Command::Resume => f.write_str("RESUME"),
            Command::Reload => f.write_str("RELOAD"),
            Command::Verify(id) if id == "latest" => f.write_str("VERIFY latest"),
            Command::Verify(id) => write!(f, "VERIFY {}", argument(id)),
            Command::Shutdown => f.write_str("SHUTDOWN"),
        }
    }
}

/// Splits a simple-protocol query into its commands at `;` outside quotes; empty pieces are
/// dropped.
pub fn split(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in query.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&query[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The fuzz target's body: any input parses or is refused without panicking; what parses prints
/// as text that parses to the same command; splitting never loses a command's text.
#[cfg(any(test, feature = "test-support"))]
pub fn exercise(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for piece in split(text) {
        if let Ok(command) = parse(piece) {
            let printed = command.to_string();
            assert_eq!(
                parse(&printed),
                Ok(command.clone()),
                "{piece:?} → {printed:?}"
            );
            assert_eq!(split(&printed), vec![printed.as_str()], "{printed:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_in_any_case_with_a_semicolon() {
        assert_eq!(parse("SHOW STATS"), Ok(Command::Show(Show::Stats)));
        assert_eq!(parse("  show   stats ; "), Ok(Command::Show(Show::Stats)));
        assert_eq!(parse("Show Help;"), Ok(Command::Show(Show::Help)));
        assert_eq!(parse("backup"), Ok(Command::Backup(None)));
        assert_eq!(
            parse("BACKUP Copy"),
            Ok(Command::Backup(Some(Action::Copy)))
        );
        assert_eq!(parse("pause 5M"), Ok(Command::Pause(Some("5m".into()))));
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(parse("VERIFY Latest"), Ok(Command::Verify("latest".into())));
        assert_eq!(
            parse("VERIFY '20261206T120000Z-7'"),
            Ok(Command::Verify("20261206T120000Z-7".into()))
        );
        assert_eq!(parse("shutdown"), Ok(Command::Shutdown));
        for show in Show::ALL {
            assert_eq!(
                parse(&format!("SHOW {}", show.as_str())),
                Ok(Command::Show(show))
            );
        }
    }

    #[test]
    fn wrong_commands_say_why() {
        for (text, expected) in [
            (
                "SELECT 1",
                "unknown console command \"SELECT 1\": SHOW HELP lists them",
            ),
            ("SHOW POOLS", "unknown console command"),
            ("", "unknown console command"),
            ("BACKUP later", "unknown backup action \"later\""),
            ("BACKUP copy now", "BACKUP takes no more arguments"),
            ("RESUME all", "RESUME takes no more arguments"),
            ("SHOW STATS please", "SHOW STATS takes no more arguments"),
            ("VERIFY", "VERIFY needs an entry id"),
            ("VERIFY 'abc", "unterminated quoted string"),
        ] {
            let error = parse(text).unwrap_err().0;
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
        let long = format!("VERIFY {}", "x".repeat(201));
        assert!(parse(&long).unwrap_err().0.contains("longer than 200"));
    }

    #[test]
    fn only_show_is_read_only() {
        assert!(!parse("SHOW CONFIG").unwrap().is_control());
        for text in [
            "BACKUP",
            "PAUSE",
            "RESUME",
            "RELOAD",
            "VERIFY latest",
            "SHUTDOWN",
        ] {
            assert!(parse(text).unwrap().is_control(), "{text}");
        }
    }

    #[test]
    fn a_query_splits_at_semicolons_outside_quotes() {
        assert_eq!(
            split("SHOW STATS; SHOW VERSION;"),
            vec!["SHOW STATS", " SHOW VERSION"]
        );
        assert_eq!(split("VERIFY 'a;b'"), vec!["VERIFY 'a;b'"]);
        assert!(split(" ; ;").is_empty());
    }

    #[test]
    fn printing_and_parsing_agree_on_edge_inputs() {
        for text in [
            "VERIFY 'it''s'",
            "PAUSE '1 h'",
            "VERIFY ''",
            "show backups;;",
            "VERIFY a'b'",
            "\u{feff}SHOW STATS",
            "PAUSE 30S",
        ] {
            exercise(text.as_bytes());
        }
    }
}
