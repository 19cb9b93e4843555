//! Peeks at the few backend messages the proxy must understand, reading borrowed bodies only.

/// Transaction status reported by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    /// `I`: no transaction open.
    Idle,
    /// `T`: inside a transaction block.
    InTransaction,
    /// `E`: inside a failed transaction block.
    Failed,
}

/// Reads the status byte of a ReadyForQuery body.
pub fn ready_status(body: &[u8]) -> Option<TxnStatus> {
    match body {
        [b'I'] => Some(TxnStatus::Idle),
        [b'T'] => Some(TxnStatus::InTransaction),
        [b'E'] => Some(TxnStatus::Failed),
        _ => None,
    }
}

/// The command tag of a CommandComplete body, without its terminating NUL.
pub fn command_tag(body: &[u8]) -> &[u8] {
    body.strip_suffix(&[0]).unwrap_or(body)
}

/// The process id and secret key of a BackendKeyData body.
pub fn backend_key(body: &[u8]) -> Option<(u32, &[u8])> {
    let pid = body.get(..4)?;
    Some((
        u32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]),
        &body[4..],
    ))
}

/// The fields of an ErrorResponse/NoticeResponse the proxy reports on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: Option<&'a str>,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// Reads severity, SQLSTATE and message from an ErrorResponse/NoticeResponse body.
pub fn error_fields(body: &[u8]) -> ErrorFields<'_> {
    let mut fields = ErrorFields::default();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let Some(end) = tail.iter().position(|b| *b == 0) else {
            break;
        };
        let value = std::str::from_utf8(&tail[..end]).ok();
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_none() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
        rest = &tail[end + 1..];
    }
    fields
}

/// The columns of a DataRow body (`None` for NULL); `None` if the body is malformed.
pub fn data_row(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let count = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut rest = &body[2..];
    let mut columns = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        if len < 0 {
            columns.push(None);
            continue;
        }
        let len = len as usize;
        columns.push(Some(rest.get(..len)?));
        rest = &rest[len..];
    }
    rest.is_empty().then_some(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rows() {
        let row = [0, 2, 0, 0, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(data_row(&row), Some(vec![Some(&b"a"[..]), None]));
        assert_eq!(data_row(&row[..8]), None, "truncated");
        assert_eq!(data_row(&[0, 0]), Some(vec![]));
        assert_eq!(data_row(&[0, 0, 1]), None, "trailing bytes");
        assert_eq!(data_row(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn ready_for_query_statuses() {
        assert_eq!(ready_status(b"I"), Some(TxnStatus::Idle));
        assert_eq!(ready_status(b"T"), Some(TxnStatus::InTransaction));
        assert_eq!(ready_status(b"E"), Some(TxnStatus::Failed));
        assert_eq!(ready_status(b"X"), None);
        assert_eq!(ready_status(b""), None);
    }

    #[test]
    fn command_tags() {
        assert_eq!(command_tag(b"INSERT 0 1\0"), b"INSERT 0 1");
        assert_eq!(command_tag(b"COMMIT"), b"COMMIT");
    }

    #[test]
    fn backend_key_data() {
        assert_eq!(
            backend_key(&[0, 0, 1, 0, 9, 9, 9, 9]),
            Some((256, &[9u8, 9, 9, 9][..]))
        );
        assert_eq!(backend_key(&[0, 0]), None);
    }

    #[test]
    fn error_fields_tolerate_truncation() {
        let f = error_fields(b"SERROR\0C28P01\0Mpassword authentication failed\0\0");
        assert_eq!(f.severity, Some("ERROR"));
        assert_eq!(f.code, Some("28P01"));
        assert_eq!(f.message, Some("password authentication failed"));
        let f = error_fields(b"SERROR\0C28P");
        assert_eq!(f.code, None);
    }
}
