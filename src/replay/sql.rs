//! Just enough SQL to know what a statement does to the session: split a simple Query's text into
//! statements (quotes, dollar quotes and comments respected), and classify each by its leading
//! words. Pure and total: any input gives an answer.

use std::borrow::Cow;

/// What a statement does to session state, if it runs and its transaction commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing the session keeps.
    None,
    /// `SET [SESSION] name ...`: replayed by running the same text; `name` lowercased.
    Set(String),
    /// `RESET name`.
    Reset(String),
    /// `RESET ALL`.
    ResetAll,
    /// `PREPARE name ...` (not transactional).
    Prepare(String),
    /// `DEALLOCATE [PREPARE] name`.
    Deallocate(String),
    /// `DEALLOCATE [PREPARE] ALL`.
    DeallocateAll,
    /// `DISCARD ALL`: back to a fresh session.
    DiscardAll,
    /// `DISCARD TEMP` / `DISCARD TEMPORARY`.
    DiscardTemp,
    /// `USE name`: the current database.
    Use,
    /// A call of `dolt_checkout`: the session's branch may have changed.
    Checkout,
    /// State that cannot be rebuilt on a new connection.
    Unreplayable(Unreplayable),
    /// `UNLISTEN *`.
    UnlistenAll,
}

/// Session state a new connection cannot be given again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unreplayable {
    TempTable,
    HoldCursor,
    Listen,
    AdvisoryLock,
}

impl Unreplayable {
    /// For messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreplayable::TempTable => "temp_table",
            Unreplayable::HoldCursor => "hold_cursor",
            Unreplayable::Listen => "listen",
            Unreplayable::AdvisoryLock => "advisory_lock",
        }
    }

    /// What a client is told when its session ends because of this state.
    pub fn describe(self) -> &'static str {
        match self {
            Unreplayable::TempTable => "a temporary table",
            Unreplayable::HoldCursor => "a WITH HOLD cursor",
            Unreplayable::Listen => "LISTEN",
            Unreplayable::AdvisoryLock => "a session-level advisory lock",
        }
    }
}

/// Splits a simple Query's text into the statements the server answers one by one: at top-level
/// semicolons, leaving out empty ones (only blanks and comments), which the server skips. A text
/// with no statement at all is answered once (EmptyQueryResponse), so it gives one empty string.
pub fn split_statements(text: &str) -> Vec<&str> {
    let mut statements: Vec<&str> = split_at_semicolons(text)
        .into_iter()
        .filter(|s| !words(s, 1).is_empty())
        .collect();
    if statements.is_empty() {
        statements.push("");
    }
    statements
}

fn split_at_semicolons(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = skip_comment_or_dollar_quoted(bytes, i) {
            i = end;
            continue;
        }
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i, bytes[i]),
            b';' => {
                out.push(&text[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if !text[start..].trim().is_empty() || out.is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// Past a quoted string or identifier starting at `i` (doubled quotes stay inside).
/// Where what starts at `i` ends, when it is a comment (`--` to the end of the line, `/* */`
/// nested) or a dollar-quoted string; `None` for anything else.
pub(super) fn skip_comment_or_dollar_quoted(bytes: &[u8], i: usize) -> Option<usize> {
    match (bytes[i], bytes.get(i + 1)) {
        (b'-', Some(b'-')) => Some(
            bytes[i..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |p| i + p + 1),
        ),
        (b'/', Some(b'*')) => Some(skip_block_comment(bytes, i)),
        (b'$', _) => Some(skip_dollar_quoted(bytes, i)),
        _ => None,
    }
}

pub(super) fn skip_quoted(bytes: &[u8], i: usize, quote: u8) -> usize {
    let mut j = i + 1;
    while j < bytes.len() {
        if bytes[j] == quote {
            if bytes.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    bytes.len()
}

/// Past a (nesting) block comment starting at `i`.
pub(super) fn skip_block_comment(bytes: &[u8], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j + 1 < bytes.len() {
        match (bytes[j], bytes[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return j;
                }
            }
            _ => j += 1,
        }
    }
    bytes.len()
}

/// Past a dollar-quoted string (`$tag$ ... $tag$`) starting at `i`, or one byte if `$` does not
/// open one (a parameter like `$1`).
pub(super) fn skip_dollar_quoted(bytes: &[u8], i: usize) -> usize {
    let tag_len = bytes[i + 1..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(bytes.len() - i - 1);
    let close = i + 1 + tag_len;
    let opens =
        bytes.get(close) == Some(&b'$') && bytes.get(i + 1).is_none_or(|b| !b.is_ascii_digit());
    if !opens {
        return i + 1;
    }
    let tag = &bytes[i..=close];
    let body = close + 1;
    bytes[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(bytes.len(), |p| body + p + tag.len())
}

/// The statement's words, lowercased, with comments skipped, up to `limit` words. Quoted parts
/// become one word each, quotes kept. Borrowed from the statement where it can be (a quoted
/// literal, an already lowercase word): a statement may be a query of hundreds of megabytes.
fn words(statement: &str, limit: usize) -> Vec<Cow<'_, str>> {
    let bytes = statement.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() && out.len() < limit {
        let b = bytes[i];
        if b.is_ascii_whitespace() || b == b',' || b == b'(' || b == b')' || b == b'=' {
            if b == b'=' || b == b'(' {
                out.push(Cow::Borrowed(&statement[i..i + 1]));
            }
            i += 1;
        } else if b == b'-' && bytes.get(i + 1) == Some(&b'-') {
            i = bytes[i..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |p| i + p + 1);
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(bytes, i);
        } else if b == b'\'' || b == b'"' {
            let end = skip_quoted(bytes, i, b);
            out.push(Cow::Borrowed(&statement[i..end]));
            i = end;
        } else {
            let end = bytes[i..]
                .iter()
                .position(|c| {
                    c.is_ascii_whitespace() || matches!(c, b',' | b'(' | b')' | b'=' | b';')
                })
                .map_or(bytes.len(), |p| i + p);
            let end = end.max(i + 1);
            let word = &statement[i..end];
            out.push(match word.bytes().any(|c| c.is_ascii_uppercase()) {
                true => Cow::Owned(word.to_ascii_lowercase()),
                false => Cow::Borrowed(word),
            });
            i = end;
        }
    }
    out
}

/// An identifier as the server folds it: unquoted lowercased, quoted kept.
fn ident(word: &str) -> String {
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => word.to_string(),
    }
}

/// What `statement` does to the session (see [`Effect`]).
pub fn classify(statement: &str) -> Effect {
    let w = words(statement, 6);
    let w: Vec<&str> = w.iter().map(|w| w.as_ref()).collect();
    match w.as_slice() {
        ["set", "local", ..] | ["set", "transaction", ..] => Effect::None,
        ["set", "session", "characteristics", ..] => Effect::Set("session_characteristics".into()),
        ["set", "session", "authorization", ..] => Effect::Set("session_authorization".into()),
        ["set", "session", "time", "zone", ..] | ["set", "time", "zone", ..] => {
            Effect::Set("timezone".into())
        }
        ["set", "session", name, ..] | ["set", name, ..] => Effect::Set(ident(name)),
        ["reset", "session", "authorization", ..] => Effect::Reset("session_authorization".into()),
        ["reset", "time", "zone", ..] => Effect::Reset("timezone".into()),
        ["reset", "all", ..] => Effect::ResetAll,
        ["reset", name, ..] => Effect::Reset(ident(name)),
        ["prepare", "transaction", ..] => Effect::None,
        ["prepare", name, ..] => Effect::Prepare(ident(name)),
        ["deallocate", "prepare", "all", ..] | ["deallocate", "all", ..] => Effect::DeallocateAll,
        ["deallocate", "prepare", name, ..] | ["deallocate", name, ..] => {
            Effect::Deallocate(ident(name))
        }
        ["discard", "all", ..] => Effect::DiscardAll,
        ["discard", "temp" | "temporary", ..] => Effect::DiscardTemp,
        ["use", ..] => Effect::Use,
        ["listen", ..] => Effect::Unreplayable(Unreplayable::Listen),
        ["unlisten", "*", ..] => Effect::UnlistenAll,
        ["create", "temp" | "temporary", ..]
        | ["create", "local" | "global", "temp" | "temporary", ..] => {
            Effect::Unreplayable(Unreplayable::TempTable)
        }
        ["declare", ..] if contains_words(statement, &["with", "hold"]) => {
            Effect::Unreplayable(Unreplayable::HoldCursor)
        }
        _ if mentions(statement, "pg_advisory_lock")
            || mentions(statement, "pg_try_advisory_lock")
            || mentions(statement, "pg_advisory_lock_shared")
            || mentions(statement, "pg_try_advisory_lock_shared") =>
        {
            Effect::Unreplayable(Unreplayable::AdvisoryLock)
        }
        _ if mentions(statement, "dolt_checkout") => Effect::Checkout,
        _ => Effect::None,
    }
}

/// False for the names [`classify`] gives statements that set no setting of that name
/// (`SET SESSION CHARACTERISTICS`, `SET SESSION AUTHORIZATION`): they are replayed as written,
/// never read back from the server.
pub fn is_real_setting(name: &str) -> bool {
    !matches!(name, "session_characteristics" | "session_authorization")
}

/// True for `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`, whose tag is `ROLLBACK` too.
pub fn rolls_back_to_savepoint(statement: &str) -> bool {
    let w = words(statement, 3);
    matches!(
        w.iter()
            .map(|w| w.as_ref())
            .collect::<Vec<&str>>()
            .as_slice(),
        ["rollback", "to", ..] | ["rollback", "work" | "transaction", "to"]
    )
}

/// The string literals in a statement, in order, unquoted (`'it''s'` gives `it's`).
pub fn string_literals(statement: &str) -> Vec<String> {
    words(statement, 64)
        .into_iter()
        .filter_map(|w| {
            w.strip_prefix('\'')
                .and_then(|w| w.strip_suffix('\''))
                .map(|w| w.replace("''", "'"))
        })
        .collect()
}

/// True if `statement` calls a function of this name (a whole identifier, any case).
fn mentions(statement: &str, name: &str) -> bool {
    // Compared in place, without a lowercase copy of the statement.
    let (hay, needle) = (statement.as_bytes(), name.as_bytes());
    let word_char = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    hay.len() >= needle.len()
        && (0..=hay.len() - needle.len()).any(|start| {
            let end = start + needle.len();
            hay[start..end].eq_ignore_ascii_case(needle)
                && !hay[..start].last().is_some_and(word_char)
                && !hay.get(end).is_some_and(word_char)
        })
}

/// True if the words appear one after the other somewhere in `statement`.
fn contains_words(statement: &str, seq: &[&str]) -> bool {
    let w = words(statement, 64);
    w.windows(seq.len())
        .any(|win| win.iter().zip(seq).all(|(a, b)| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        assert_eq!(split_statements("SELECT 1"), ["SELECT 1"]);
        assert_eq!(
            split_statements("SET a = 1; SELECT ';' ; SELECT $$;$$;"),
            ["SET a = 1", " SELECT ';' ", " SELECT $$;$$"]
        );
        assert_eq!(
            split_statements("SELECT 1 -- ;\n; /* ; /* ; */ */ SELECT \"a;b\""),
            ["SELECT 1 -- ;\n", " /* ; /* ; */ */ SELECT \"a;b\""]
        );
        assert_eq!(
            split_statements("SELECT $1; SELECT $tag$ ; $tag$"),
            ["SELECT $1", " SELECT $tag$ ; $tag$"]
        );
        assert_eq!(split_statements(";;"), [""]);
        assert_eq!(split_statements(" /* only */ ; -- this\n"), [""]);
        assert_eq!(split_statements(""), [""]);
        assert_eq!(split_statements("; SET a = 1;;"), [" SET a = 1"]);
        assert_eq!(
            split_statements("SELECT 'unterminated;"),
            ["SELECT 'unterminated;"]
        );
    }

    #[test]
    fn classifies_session_statements() {
        let set = |n: &str| Effect::Set(n.to_string());
        assert_eq!(classify("SET search_path TO a, b"), set("search_path"));
        assert_eq!(classify("set SESSION DateStyle = 'ISO'"), set("datestyle"));
        assert_eq!(classify("SET \"Foo.Bar\" = 1"), set("Foo.Bar"));
        assert_eq!(classify("SET LOCAL work_mem = '1MB'"), Effect::None);
        assert_eq!(
            classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            Effect::None
        );
        assert_eq!(classify("SET TIME ZONE 'UTC'"), set("timezone"));
        assert_eq!(
            classify("SET SESSION AUTHORIZATION bob"),
            set("session_authorization")
        );
        assert_eq!(
            classify("RESET search_path"),
            Effect::Reset("search_path".into())
        );
        assert_eq!(classify(" reset all"), Effect::ResetAll);
        assert_eq!(
            classify("PREPARE q1 (int) AS SELECT $1"),
            Effect::Prepare("q1".into())
        );
        assert_eq!(classify("PREPARE TRANSACTION 'x'"), Effect::None);
        assert_eq!(
            classify("DEALLOCATE PREPARE q1"),
            Effect::Deallocate("q1".into())
        );
        assert_eq!(classify("DEALLOCATE ALL"), Effect::DeallocateAll);
        assert_eq!(classify("DISCARD ALL"), Effect::DiscardAll);
        assert_eq!(classify("discard temp"), Effect::DiscardTemp);
        assert_eq!(classify("USE mydb"), Effect::Use);
        assert_eq!(classify("SELECT dolt_checkout('b1')"), Effect::Checkout);
        assert_eq!(classify("SELECT * FROM dolt_checkouts"), Effect::None);
        assert_eq!(classify("/* hi */ SET x = 1"), set("x"));
    }

    #[test]
    fn classifies_unreplayable_state() {
        let un = Effect::Unreplayable;
        assert_eq!(
            classify("CREATE TEMP TABLE t (a int)"),
            un(Unreplayable::TempTable)
        );
        assert_eq!(
            classify("create local temporary table t (a int)"),
            un(Unreplayable::TempTable)
        );
        assert_eq!(classify("CREATE TABLE t (a int)"), Effect::None);
        assert_eq!(
            classify("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
            un(Unreplayable::HoldCursor)
        );
        assert_eq!(classify("DECLARE c CURSOR FOR SELECT 1"), Effect::None);
        assert_eq!(classify("LISTEN ch"), un(Unreplayable::Listen));
        assert_eq!(classify("UNLISTEN *"), Effect::UnlistenAll);
        assert_eq!(
            classify("SELECT pg_advisory_lock(1)"),
            un(Unreplayable::AdvisoryLock)
        );
        assert_eq!(classify("SELECT pg_advisory_xact_lock(1)"), Effect::None);
    }
}
