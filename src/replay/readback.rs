//! Reading a session's settings from the server on its own connection, before it is detached for
//! a copy window, so that the new connection gets the values the session really had, whatever
//! changed them (a `SET`, a `set_config` call, a function): the query, the rows of its answer,
//! what each means for a new connection, and the statements that set values again. Pure: the
//! session layer sends and reads.
//!
//! Doltgres lists its own settings in `pg_settings` with the session's value (`setting`) beside
//! the value the session started with (`reset_val`), which a new connection logged in with the
//! same startup packet starts with too; `source` never says `session`. Custom settings (`app.x`)
//! and Dolt's own (`dolt_transaction_commit`) are not listed, so those the tracker knows of are
//! read by name with `current_setting(name, true)` (NULL for a name the server does not know).
//! A listed row wins over a read by name: `current_setting` gives a boolean as `1`/`0`, which
//! `set_config` refuses, where `pg_settings` says `on`/`off` (docs/doltgres-notes.md).

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use crate::protocol::tags;

/// The listed settings whose value differs from the session's starting one. Only those a
/// session may set (`user`, `superuser`): Doltgres reports a few others as changed in every
/// session (`port`, `archive_command`).
const CHANGED: &str = "SELECT name, setting, 'changed' FROM pg_settings \
                       WHERE setting IS DISTINCT FROM reset_val \
                       AND context IN ('user', 'superuser')";

/// What a row of the answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A listed setting whose value is not the one the session started with.
    Changed,
    /// A listed setting, asked for by name, with the value the session started with.
    Same,
    /// A setting asked for by name with `current_setting`.
    Named,
}

/// One row of the answer: a setting's name as the server spells it, its value (`None` for
/// NULL), and what kind of row it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub value: Option<String>,
    pub kind: Kind,
}

/// What a new connection needs for one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// This value, set again.
    Set(String),
    /// Nothing: it starts with the session's value.
    Fresh,
    /// The server does not know the setting: keep what the tracker has.
    Unknown,
}

/// The read as a simple Query message (one request).
pub fn request(names: &[String]) -> BytesMut {
    let mut out = BytesMut::new();
    put_message(&mut out, tags::QUERY, |m| {
        m.put_slice(query(names).as_bytes());
        m.put_u8(0);
    });
    out
}

/// One query, answered with one row per setting: the changed listed ones, the listed ones among
/// `names` (lowercased) that are unchanged, and each of `names` read by name.
pub fn query(names: &[String]) -> String {
    let mut sql = String::from(CHANGED);
    if names.is_empty() {
        return sql;
    }
    let list: Vec<String> = names.iter().map(|n| literal(n)).collect();
    sql.push_str(&format!(
        " UNION ALL SELECT name, setting, 'same' FROM pg_settings \
         WHERE lower(name) IN ({}) AND setting IS NOT DISTINCT FROM reset_val",
        list.join(", ")
    ));
    for name in &list {
        sql.push_str(&format!(
            " UNION ALL SELECT {name}, current_setting({name}, true), 'named'"
        ));
    }
    sql
}

/// A row of the answer (a DataRow body); `None` for one that is not three text columns with a
/// name and a known kind.
pub fn row(body: &[u8]) -> Option<Row> {
    let columns = crate::protocol::backend::data_row(body)?;
    let [Some(name), value, Some(kind)] = columns.as_slice() else {
        return None;
    };
    let kind = match *kind {
        b"changed" => Kind::Changed,
        b"same" => Kind::Same,
        b"named" => Kind::Named,
        _ => return None,
    };
    let value = match value {
        Some(v) => Some(String::from_utf8(v.to_vec()).ok()?),
        None => None,
    };
    Some(Row {
        name: String::from_utf8(name.to_vec()).ok()?,
        value,
        kind,
    })
}

/// What the rows mean for a new connection, per setting (by lowercased name, with the name as
/// the server spells it): a listed row decides over a read by name.
pub fn settle(rows: Vec<Row>) -> BTreeMap<String, (String, Value)> {
    let rank = |kind| match kind {
        Kind::Changed => 2,
        Kind::Same => 1,
        Kind::Named => 0,
    };
    let mut best: BTreeMap<String, Row> = BTreeMap::new();
    for row in rows {
        let key = row.name.to_lowercase();
        if best.get(&key).is_none_or(|b| rank(row.kind) > rank(b.kind)) {
            best.insert(key, row);
        }
    }
    best.into_iter()
        .map(|(key, row)| {
            let value = match (row.kind, row.value) {
                (Kind::Same, _) => Value::Fresh,
                (_, Some(value)) => Value::Set(value),
                (_, None) => Value::Unknown,
            };
            (key, (row.name, value))
        })
        .collect()
}

/// The statement that gives a new connection this value of the setting.
pub fn set_again(name: &str, value: &str) -> String {
    format!(
        "SELECT set_config({}, {}, false)",
        literal(name),
        literal(value)
    )
}

/// A string literal that reads the same whatever `standard_conforming_strings` says: an escape
/// string (`E'...'`) when the text holds a backslash.
fn literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Appends one message: its tag, its length and what `body` writes.
pub(super) fn put_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_row(columns: &[Option<&str>]) -> Vec<u8> {
        let mut body = (columns.len() as u16).to_be_bytes().to_vec();
        body.extend(crate::protocol::values(columns));
        body
    }

    fn r(name: &str, value: Option<&str>, kind: Kind) -> Row {
        Row {
            name: name.into(),
            value: value.map(str::to_string),
            kind,
        }
    }

    #[test]
    fn the_query_reads_changed_settings_and_each_name() {
        assert_eq!(query(&[]), CHANGED);
        let q = query(&["app.who".into(), "it's".into()]);
        assert!(q.starts_with(CHANGED));
        assert!(q.ends_with(
            " UNION ALL SELECT name, setting, 'same' FROM pg_settings \
             WHERE lower(name) IN ('app.who', 'it''s') AND setting IS NOT DISTINCT FROM reset_val \
             UNION ALL SELECT 'app.who', current_setting('app.who', true), 'named' \
             UNION ALL SELECT 'it''s', current_setting('it''s', true), 'named'"
        ));
    }

    #[test]
    fn the_request_is_one_query_message() {
        let names = ["app.who".to_string()];
        let m = request(&names);
        assert_eq!(m[0], b'Q');
        let len = u32::from_be_bytes(m[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, m.len());
        assert_eq!(&m[5..m.len() - 1], query(&names).as_bytes());
        assert_eq!(m[m.len() - 1], 0);
    }

    #[test]
    fn rows_are_a_name_a_value_or_null_and_a_kind() {
        assert_eq!(
            row(&data_row(&[Some("TimeZone"), Some("UTC"), Some("changed")])),
            Some(r("TimeZone", Some("UTC"), Kind::Changed))
        );
        assert_eq!(
            row(&data_row(&[Some("app.none"), None, Some("named")])),
            Some(r("app.none", None, Kind::Named))
        );
        assert_eq!(row(&data_row(&[None, Some("x"), Some("named")])), None);
        assert_eq!(row(&data_row(&[Some("a"), Some("x"), Some("other")])), None);
        assert_eq!(row(&data_row(&[Some("a"), Some("x")])), None);
        assert_eq!(row(&[0, 3, 0]), None);
    }

    #[test]
    fn a_listed_row_decides_over_a_read_by_name() {
        let settled = settle(vec![
            r("enable_seqscan", Some("off"), Kind::Changed),
            r("enable_seqscan", Some("0"), Kind::Named),
            r("TimeZone", Some("UTC"), Kind::Same),
            r("timezone", Some("UTC"), Kind::Named),
            r("app.who", Some("me"), Kind::Named),
            r("app.none", None, Kind::Named),
        ]);
        let got: Vec<(&str, &str, &Value)> = settled
            .iter()
            .map(|(k, (n, v))| (k.as_str(), n.as_str(), v))
            .collect();
        assert_eq!(
            got,
            [
                ("app.none", "app.none", &Value::Unknown),
                ("app.who", "app.who", &Value::Set("me".into())),
                (
                    "enable_seqscan",
                    "enable_seqscan",
                    &Value::Set("off".into())
                ),
                ("timezone", "TimeZone", &Value::Fresh),
            ]
        );
    }

    #[test]
    fn values_are_set_again_as_literals() {
        assert_eq!(
            set_again("search_path", "\"$user\", public"),
            "SELECT set_config('search_path', '\"$user\", public', false)"
        );
        assert_eq!(
            set_again("app.v", "it's a\\b"),
            "SELECT set_config('app.v', E'it''s a\\\\b', false)"
        );
    }
}
