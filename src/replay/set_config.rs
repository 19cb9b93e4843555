//! Finding the `set_config(name, value, is_local)` calls in a statement: each may change a
//! session setting in a way the tracker cannot follow (its value is an expression, and the call
//! may run once, many times or not at all), so all the tracker learns is which setting may have
//! changed. Pure and total, like [`super::sql`].

use super::sql::{skip_comment_or_dollar_quoted, skip_quoted};

/// What a `set_config` call's first argument says about the setting it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A string literal: the setting's name, lowercased (setting names ignore case).
    Named(String),
    /// A parameter (`$n`, counted from 1): the name is in the Bind.
    Param(usize),
    /// Anything else: the setting cannot be known from the text.
    Unknown,
}

/// The calls of `set_config` in `statement` that may change a setting for the rest of the
/// session, in order. A call whose third argument is the literal `true` is left out: a local
/// setting ends with its transaction. Strings, quoted identifiers and comments are skipped, so
/// a function body in a `CREATE FUNCTION` is not taken for a call.
pub fn calls(statement: &str) -> Vec<Target> {
    let bytes = statement.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = skip_comment_or_dollar_quoted(bytes, i) {
            i = end;
            continue;
        }
        let b = bytes[i];
        match b {
            b'\'' => i = skip_quoted(bytes, i, b),
            b'"' => {
                let end = skip_quoted(bytes, i, b);
                let quoted = &statement[i..end];
                if quoted == "\"set_config\"" {
                    i = call_at(statement, end, &mut out);
                } else {
                    i = end;
                }
            }
            _ if is_word(b) => {
                let end = bytes[i..]
                    .iter()
                    .position(|c| !is_word(*c))
                    .map_or(bytes.len(), |p| i + p);
                if statement[i..end].eq_ignore_ascii_case("set_config") {
                    i = call_at(statement, end, &mut out);
                } else {
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Reads the argument list of a `set_config` whose name ends at `at`; returns where scanning
/// goes on. A name not followed by `(` is not a call.
fn call_at(statement: &str, at: usize, out: &mut Vec<Target>) -> usize {
    let bytes = statement.as_bytes();
    let open = at
        + bytes[at..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(bytes.len() - at);
    if bytes.get(open) != Some(&b'(') {
        return at;
    }
    let args = arguments(statement, open);
    let local = args
        .get(2)
        .is_some_and(|a| strip_cast(a).eq_ignore_ascii_case("true"));
    if !(args.len() == 3 && local) {
        out.push(args.first().map_or(Target::Unknown, |a| target(a)));
    }
    // Scanning goes on inside the arguments: they may hold calls of their own.
    open + 1
}

/// The top-level arguments of the parenthesised list opening at `open`, trimmed (up to the end
/// of the text if the list is not closed).
fn arguments(statement: &str, open: usize) -> Vec<&str> {
    let bytes = statement.as_bytes();
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    let mut i = open + 1;
    while i < bytes.len() {
        if let Some(end) = skip_comment_or_dollar_quoted(bytes, i) {
            i = end;
            continue;
        }
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_quoted(bytes, i, bytes[i]);
                continue;
            }
            b'(' => depth += 1,
            b')' if depth == 0 => {
                args.push(statement[start..i].trim());
                return args;
            }
            b')' => depth -= 1,
            b',' if depth == 0 => {
                args.push(statement[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    args.push(statement[start..].trim());
    args
}

/// What a first argument names.
fn target(arg: &str) -> Target {
    let arg = strip_cast(arg);
    // One literal: any quote inside is doubled (`'a' || 'b'` is two), and no backslash (an
    // escape string is not read here).
    if let Some(quoted) = arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\''))
        && !quoted.replace("''", "").contains('\'')
        && !quoted.contains('\\')
    {
        return Target::Named(quoted.replace("''", "'").to_lowercase());
    }
    if let Some(n) = arg.strip_prefix('$')
        && let Ok(n) = n.parse::<usize>()
        && n > 0
    {
        return Target::Param(n);
    }
    Target::Unknown
}

/// An argument without a trailing `::type` cast (`'x'::text`, `$1::text`).
fn strip_cast(arg: &str) -> &str {
    let mut arg = arg.trim();
    while let Some(at) = arg.rfind("::") {
        let ty = &arg[at + 2..];
        if ty.trim().is_empty() || !ty.trim().bytes().all(|b| is_word(b) || b == b' ') {
            break;
        }
        arg = arg[..at].trim_end();
    }
    arg
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(n: &str) -> Target {
        Target::Named(n.to_string())
    }

    #[test]
    fn literal_names_parameters_and_expressions() {
        assert_eq!(
            calls("SELECT set_config('search_path', 's2', false)"),
            [named("search_path")]
        );
        assert_eq!(
            calls("select PG_CATALOG.SET_CONFIG ( 'TimeZone'::text , 'UTC', false )"),
            [named("timezone")]
        );
        assert_eq!(
            calls("SELECT set_config($1::text, $2::text, false)"),
            [Target::Param(1)]
        );
        assert_eq!(
            calls("SELECT set_config(n, 'x', false) FROM names"),
            [Target::Unknown]
        );
        assert_eq!(
            calls("SELECT set_config('a.' || x, 'y', false)"),
            [Target::Unknown]
        );
        assert_eq!(
            calls("SELECT set_config('a' || 'b', 'y', false)"),
            [Target::Unknown]
        );
        assert_eq!(
            calls("SELECT set_config('it''s', 'y', false)"),
            [named("it's")]
        );
        assert_eq!(
            calls("SELECT set_config(E'a\\\\b', 'y', false)"),
            [Target::Unknown]
        );
        assert_eq!(
            calls("SELECT \"set_config\"('a.b', '1', false)"),
            [named("a.b")]
        );
    }

    #[test]
    fn local_calls_and_mentions_that_are_no_calls_are_left_out() {
        assert!(calls("SELECT set_config('search_path', 'x', true)").is_empty());
        assert!(calls("SELECT set_config('search_path', 'x', TRUE::boolean)").is_empty());
        assert!(calls("SELECT 'set_config(''a'', ''b'', false)'").is_empty());
        assert!(calls("SELECT 1 -- set_config('a', 'b', false)").is_empty());
        assert!(calls("SELECT 1 /* set_config('a', 'b', false) */").is_empty());
        assert!(
            calls(
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM set_config('a.b', '1', false); END $$"
            )
            .is_empty()
        );
        assert!(calls("SELECT my_set_config('a', 'b', false), set_configs").is_empty());
        assert!(calls("SELECT set_config FROM t").is_empty());
    }

    #[test]
    fn a_line_comment_between_the_arguments_is_skipped() {
        assert_eq!(
            calls("SELECT set_config('a.b', -- the name ) ,\n 'v', false)"),
            [named("a.b")]
        );
    }

    #[test]
    fn every_call_counts_and_a_local_flag_that_is_no_literal_does_not_make_it_local() {
        assert_eq!(
            calls(
                "SELECT set_config('a.x', '1', false), set_config('a.y', '2', is_local), \
                 set_config('a.z', '3', true)"
            ),
            [named("a.x"), named("a.y")]
        );
        assert_eq!(
            calls("SELECT set_config('a.x', set_config('a.y', '1', false), false)"),
            [named("a.x"), named("a.y")]
        );
        assert_eq!(calls("SELECT set_config("), [Target::Unknown]);
        assert_eq!(calls("SELECT set_config('a.b')"), [named("a.b")]);
    }
}
