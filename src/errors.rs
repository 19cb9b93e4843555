//! How the binary says what went wrong: an error and its causes on one line, each said once (an
//! error whose own text already ends with its cause's, as `cannot read FILE: {source}` does, does
//! not repeat it), with the passwords of URLs masked.

/// The text for `error: ...`.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if said.is_empty() || text.ends_with(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    crate::redact::urls_in(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_cause_in_its_errors_own_text_is_said_once() {
        let missing = std::fs::read("/no/such/file").unwrap_err();
        let config =
            crate::config::Config::from_file(std::path::Path::new("/no/such/file")).unwrap_err();
        let error = anyhow::Error::new(config);
        let text = error_text(&error);
        assert_eq!(
            text,
            format!("cannot read config file /no/such/file: {missing}")
        );
        let error = anyhow::Error::new(missing).context("starting the managed Doltgres");
        let text = error_text(&error);
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(
            text.starts_with("starting the managed Doltgres: "),
            "{text}"
        );
        let masked = error_text(&anyhow::anyhow!("cannot restore https://u:pw@host/db"));
        assert!(!masked.contains("pw@"), "{masked}");
        let plain: anyhow::Result<()> = Err(anyhow::anyhow!("x")).context("y");
        assert_eq!(error_text(&plain.unwrap_err()), "y: x");
    }
}
