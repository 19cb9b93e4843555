//! Auth files in PgBouncer's `userlist.txt` format: one user a line, two double-quoted strings,
//! the user name and its secret (a doubled `""` stands for a quote inside one):
//!
//! ```text
//! "alice" "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"
//! "bob" "a plain password"
//! ; a comment
//! ```
//!
//! A secret is a SCRAM verifier, an MD5 hash (`md5` and 32 hex digits; the proxy cannot check a
//! SCRAM proof against one, so such a user cannot log in through it), or a plain password (its
//! verifier is derived; it also serves as the user's password towards the server). Anything after
//! the second string is ignored, as PgBouncer ignores it. Pure.

use zeroize::Zeroizing;

use super::verifier::ScramVerifier;

/// What an auth file holds for one user.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Scram(ScramVerifier),
    /// `md5` followed by 32 hex digits.
    Md5,
    Password(Zeroizing<String>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Scram(v) => v.fmt(f),
            Secret::Md5 => f.write_str("Md5"),
            Secret::Password(_) => f.write_str("Password(..)"),
        }
    }
}

impl Secret {
    /// Reads a secret as PgBouncer does: a SCRAM verifier, an MD5 hash, else a plain password.
    pub fn classify(text: &str) -> Secret {
        if let Some(verifier) = ScramVerifier::parse(text) {
            return Secret::Scram(verifier);
        }
        let md5 = text
            .strip_prefix("md5")
            .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if md5 {
            Secret::Md5
        } else {
            Secret::Password(Zeroizing::new(text.to_string()))
        }
    }
}

/// A line of an auth file that cannot be read. The line's text is not repeated: it may hold a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct UserlistError {
    pub line: usize,
    pub reason: &'static str,
}

/// Parses an auth file into (user, secret) pairs, in file order. Blank lines and lines starting
/// with `;` or `#` are skipped.
pub fn parse(text: &str) -> Result<Vec<(String, Secret)>, UserlistError> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let error = |reason| UserlistError {
            line: index + 1,
            reason,
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let (user, rest) = quoted(line).ok_or(error("expected a double-quoted user name"))?;
        if user.is_empty() {
            return Err(error("the user name is empty"));
        }
        let rest = rest.trim_start();
        let (secret, _ignored) = quoted(rest).ok_or(error("expected a double-quoted secret"))?;
        entries.push((user.to_string(), Secret::classify(&secret)));
    }
    Ok(entries)
}

/// Reads a double-quoted string at the start of `input` (`""` inside is one quote); returns it
/// and the rest of the input.
fn quoted(input: &str) -> Option<(Zeroizing<String>, &str)> {
    let mut rest = input.strip_prefix('"')?;
    let mut out = Zeroizing::new(String::new());
    loop {
        let end = rest.find('"')?;
        out.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('"') {
            Some(after) => {
                out.push('"');
                rest = after;
            }
            None => return Some((out, rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_of_secret() {
        let verifier = ScramVerifier::generate("pw");
        let text = format!(
            "\"alice\" \"{verifier}\"\n\
             ; comment\n\
             # another\n\
             \n\
             \"bob\"   \"md5a3556571e93b0d20722ba62be61e8c2d\"\n\
             \"carol\" \"plain \"\"quoted\"\" pw\" trailing words\n\
             \t\"dave\"\t\"\"\n"
        );
        let entries = parse(&text).unwrap();
        let users: Vec<&str> = entries.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(users, ["alice", "bob", "carol", "dave"]);
        assert_eq!(entries[0].1, Secret::Scram(verifier));
        assert_eq!(entries[1].1, Secret::Md5);
        assert_eq!(
            entries[2].1,
            Secret::Password(Zeroizing::new("plain \"quoted\" pw".into()))
        );
        assert_eq!(
            entries[3].1,
            Secret::Password(Zeroizing::new(String::new()))
        );
    }

    #[test]
    fn quotes_in_user_names() {
        let entries = parse("\"we\"\"ird\" \"x\"").unwrap();
        assert_eq!(entries[0].0, "we\"ird");
    }

    #[test]
    fn broken_lines_name_their_number_and_not_their_text() {
        for (text, line) in [
            ("alice \"pw\"", 1),
            ("\"alice\" \"pw\"\n\"bob\" secret-pw", 2),
            ("\"alice\" \"unterminated-secret", 1),
            ("\"\" \"pw\"", 1),
            ("\"alice", 1),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let samples = [
            "\"",
            "\"\"",
            "\"\"\"",
            "\"a\"\"",
            "\"a\" \"",
            "\"a\" \"\"\"",
            "\u{feff}\"a\" \"b\"",
            "\"é\" \"ü\"",
            "\0\"a\"",
        ];
        for text in samples {
            let _ = parse(text);
        }
        for len in 0..64u8 {
            let bytes: Vec<u8> = (0..len)
                .map(|i| b"\"a ;#\n\t"[(i as usize * 7) % 7])
                .collect();
            let _ = parse(&String::from_utf8(bytes).unwrap());
        }
    }

    #[test]
    fn debug_hides_plain_passwords() {
        let shown = format!("{:?}", Secret::classify("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
