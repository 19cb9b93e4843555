//! Masking secrets in text that is shown: the password of a URL with credentials, wherever it
//! appears (a remote's URL ends up in the SQL a window runs, and so in its error; a URL given on
//! the command line in an error message). Pure: text in, text out.

/// What a masked secret shows as.
pub const MASK: &str = "********";

/// Free text (an error message, a log line) with the password of every
/// `scheme://user:password@host…` in it masked: a remote's URL with credentials ends up in the
/// SQL a window runs, and so in its error.
pub fn urls_in(text: &str) -> String {
    let opens = |c: char| c.is_whitespace() || "'\"(`<[,".contains(c);
    let closes = |c: char| c.is_whitespace() || "'\")`>],".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at].rfind(opens).map_or(0, |i| i + 1);
        let end = rest[at..].find(closes).map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        let url = &rest[start..end];
        out.push_str(&url_password(url).unwrap_or_else(|| url.to_string()));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `scheme://user:password@host...` with the password masked; `None` when the text holds no URL
/// with a password.
pub fn url_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, _) = userinfo.split_once(':')?;
    let host_and_path = &rest[userinfo.len()..];
    Some(format!("{scheme}://{user}:{MASK}{host_and_path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_url_passwords_are_masked() {
        for (url, masked) in [
            ("https://u:pw@h/p", Some("https://u:********@h/p")),
            (
                "https://u:p@w@h:443?q=a@b",
                Some("https://u:********@h:443?q=a@b"),
            ),
            ("https://u@h/p", None),
            ("file:///backups/{database}", None),
            ("https://h/a:b@c", None),
            ("not a url", None),
        ] {
            assert_eq!(url_password(url).as_deref(), masked, "{url}");
        }
    }

    #[test]
    fn passwords_of_urls_in_free_text_are_masked() {
        let text = "SELECT dolt_remote('add', 'backup', 'https://bob:hunter2@dolthub.example/org/db'): \
                    could not reach https://bob:hunter2@dolthub.example (file:///x, s3://b/p)";
        let masked = urls_in(text);
        assert!(!masked.contains("hunter2"), "{masked}");
        assert_eq!(
            masked.matches("bob:********@dolthub.example").count(),
            2,
            "{masked}"
        );
        assert!(masked.contains("(file:///x, s3://b/p)"), "{masked}");
        assert_eq!(urls_in("no url here"), "no url here");
    }
}
