//! Which statements change data: by CommandComplete tag, and by the Dolt procedures named in a
//! query's text (Dolt procedures are called with SELECT, so their tag says nothing).

/// Leading words of command tags that mean data or schema changed.
const WRITE_TAGS: &[&[u8]] = &[
    b"INSERT",
    b"UPDATE",
    b"DELETE",
    b"MERGE",
    b"CREATE",
    b"ALTER",
    b"DROP",
    b"TRUNCATE",
    b"GRANT",
    b"REVOKE",
    b"COMMENT",
    b"REFRESH",
    b"IMPORT",
    b"SECURITY",
    b"CALL",
    b"REASSIGN",
];

/// Dolt procedures that change a database's data, refs or working set.
const WRITING_PROCEDURES: &[&[u8]] = &[
    b"dolt_add",
    b"dolt_branch",
    b"dolt_checkout",
    b"dolt_cherry_pick",
    b"dolt_clean",
    b"dolt_commit",
    b"dolt_fetch",
    b"dolt_merge",
    b"dolt_pull",
    b"dolt_rebase",
    b"dolt_reset",
    b"dolt_revert",
    b"dolt_rm",
    b"dolt_stash",
    b"dolt_tag",
    b"dolt_undrop",
    b"dolt_update_column_tag",
];

/// True if a CommandComplete tag (without its NUL) reports a data or schema change. `COPY` counts
/// only when it was a COPY FROM (the caller knows, from CopyInResponse).
pub fn is_write_tag(tag: &[u8]) -> bool {
    let word = tag.split(|b| *b == b' ').next().unwrap_or(tag);
    WRITE_TAGS.contains(&word)
}

/// True if the tag is a COPY's.
pub fn is_copy_tag(tag: &[u8]) -> bool {
    tag.starts_with(b"COPY")
}

/// True if `sql` names a writing Dolt procedure as a whole identifier (case-insensitive), e.g.
/// `SELECT DOLT_COMMIT('-Am', 'x')`. `dolt_branches` (a table) does not match `dolt_branch`.
pub fn calls_writing_procedure(sql: &[u8]) -> bool {
    let mut i = 0;
    while let Some(found) = find_ci(&sql[i..], b"dolt_") {
        let start = i + found;
        let end = start + sql[start..].iter().take_while(|b| is_ident(**b)).count();
        let preceded = start > 0 && is_ident(sql[start - 1]);
        if !preceded {
            let word = &sql[start..end];
            if WRITING_PROCEDURES
                .iter()
                .any(|p| p.eq_ignore_ascii_case(word))
            {
                return true;
            }
        }
        i = end.max(start + 1);
    }
    false
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_tags() {
        let writes = "INSERT 0 1|UPDATE 3|DELETE 0|MERGE 1|CREATE TABLE|ALTER TABLE|DROP INDEX|\
                      TRUNCATE TABLE|GRANT|REVOKE";
        for tag in writes.split('|') {
            assert!(is_write_tag(tag.as_bytes()), "{tag}");
        }
        for tag in "SELECT 1|BEGIN|COMMIT|SET|SHOW|FETCH 1|COPY 5".split('|') {
            assert!(!is_write_tag(tag.as_bytes()), "{tag}");
        }
    }

    #[test]
    fn writing_procedures_are_found_as_whole_words() {
        assert!(calls_writing_procedure(b"SELECT dolt_commit('-Am', 'msg')"));
        assert!(calls_writing_procedure(b"select DOLT_MERGE('feature')"));
        assert!(calls_writing_procedure(
            b"SELECT 1; SELECT dolt_branch ('b1')"
        ));
        assert!(calls_writing_procedure(b"SELECT * FROM dolt_add('.')"));
        assert!(!calls_writing_procedure(b"SELECT * FROM dolt_branches"));
        assert!(!calls_writing_procedure(b"SELECT * FROM dolt_log"));
        assert!(!calls_writing_procedure(b"SELECT dolt_hashof('HEAD')"));
        assert!(!calls_writing_procedure(
            b"SELECT dolt_push('origin', 'main')"
        ));
        assert!(!calls_writing_procedure(b"SELECT my_dolt_commit()"));
        assert!(!calls_writing_procedure(b""));
        assert!(!calls_writing_procedure(b"dolt_"));
    }
}
