//! Peeks at the few frontend messages whose fields the proxy reads beyond their tag.

/// The value of parameter `n` (counted from 1) in a Bind body: `Some(None)` for NULL, `None` if
/// there is no such parameter or the body is malformed. Text and binary formats are not told
/// apart: for a `text` parameter both are the string's bytes.
pub fn bind_parameter(body: &[u8], n: usize) -> Option<Option<&[u8]>> {
    let mut rest = body;
    for _ in 0..2 {
        // Portal, then statement name.
        let end = rest.iter().position(|b| *b == 0)?;
        rest = &rest[end + 1..];
    }
    let formats = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    rest = rest.get(2 + 2 * formats..)?;
    let count = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    rest = &rest[2..];
    if n == 0 || n > count {
        return None;
    }
    for i in 1..=n {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        let value = if len < 0 {
            None
        } else {
            let len = len as usize;
            let value = rest.get(..len)?;
            rest = &rest[len..];
            Some(value)
        };
        if i == n {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(formats: &[u16], params: &[Option<&str>]) -> Vec<u8> {
        let mut body = b"portal\0stmt\0".to_vec();
        body.extend_from_slice(&(formats.len() as u16).to_be_bytes());
        for f in formats {
            body.extend_from_slice(&f.to_be_bytes());
        }
        body.extend_from_slice(&(params.len() as u16).to_be_bytes());
        body.extend(crate::protocol::values(params));
        body.extend_from_slice(&[0, 0]);
        body
    }

    #[test]
    fn parameters_by_position() {
        let body = bind(&[1], &[Some("search_path"), None, Some("x")]);
        assert_eq!(bind_parameter(&body, 1), Some(Some(&b"search_path"[..])));
        assert_eq!(bind_parameter(&body, 2), Some(None));
        assert_eq!(bind_parameter(&body, 3), Some(Some(&b"x"[..])));
        assert_eq!(bind_parameter(&body, 4), None);
        assert_eq!(bind_parameter(&body, 0), None);
        let body = bind(&[], &[Some("a")]);
        assert_eq!(bind_parameter(&body, 1), Some(Some(&b"a"[..])));
    }

    #[test]
    fn malformed_bodies_give_nothing() {
        let body = bind(&[0, 0], &[Some("abc")]);
        for cut in 0..body.len() - 5 {
            assert_eq!(bind_parameter(&body[..cut], 1), None, "cut at {cut}");
        }
        assert_eq!(bind_parameter(b"no nul", 1), None);
    }
}
