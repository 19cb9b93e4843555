//! Framing of tagged messages (`tag: u8, len: u32 (includes itself), body`).
//!
//! [`Scanner`] walks a read buffer and reports which prefix of it can be forwarded: every complete
//! message, plus the available part of a message that is being streamed. Messages the proxy peeks
//! at wait in the buffer until they are whole; DataRow and CopyData, which it never reads, are
//! passed on in pieces whenever a read cuts them, so memory per session stays bounded by the read
//! buffer, not by the largest row.

/// Bytes in a message header: the tag and the length.
pub const HEADER_LEN: usize = 5;
/// The smallest valid length field: the length counts itself.
pub const MIN_LEN: u32 = 4;

/// A parsed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// The length field: body length plus the four length bytes, not the tag.
    pub len: u32,
}

impl Header {
    /// Reads a header from the start of `buf`, `None` if fewer than five bytes are there.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let bytes: [u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            tag: bytes[0],
            len: u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
        })
    }

    /// Checks the length field against the allowed range.
    pub fn validate(self, max_len: u32) -> Result<Header, FrameError> {
        if self.len < MIN_LEN {
            return Err(FrameError::TooShort {
                tag: self.tag,
                len: self.len,
            });
        }
        if self.len > max_len {
            return Err(FrameError::TooLong {
                tag: self.tag,
                len: self.len,
                max: max_len,
            });
        }
        Ok(self)
    }

    /// Size of the whole message on the wire, tag included.
    pub fn total_len(self) -> usize {
        self.len as usize + 1
    }
}

/// A length field outside the allowed range: the stream cannot be framed any further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message {:?} declares length {len}, below the minimum of 4", *tag as char)]
    TooShort { tag: u8, len: u32 },
    #[error("message {:?} declares length {len}, above the maximum of {max}", *tag as char)]
    TooLong { tag: u8, len: u32, max: u32 },
}

/// One complete message, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub tag: u8,
    /// The body, without tag and length.
    pub body: &'a [u8],
    /// Where the message (its tag) starts in the scanned buffer.
    pub offset: usize,
}

/// What the scanner saw in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'a> {
    /// A whole message.
    Whole(Message<'a>),
    /// The start of a streamed message whose body will pass through in pieces.
    StreamStart { tag: u8, len: u32 },
}

/// Walks a stream of tagged messages across reads.
#[derive(Debug, Clone)]
pub struct Scanner {
    max_len: u32,
    /// Body bytes of a streamed message that have not been seen yet.
    streaming: usize,
}

impl Scanner {
    pub fn new(max_len: u32) -> Scanner {
        Scanner {
            max_len: max_len.max(MIN_LEN),
            streaming: 0,
        }
    }

    /// The largest message length accepted.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Changes the largest message length accepted from the next message on.
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len.max(MIN_LEN);
    }

    /// True when the stream is between messages: nothing is half passed on.
    pub fn at_message_boundary(&self) -> bool {
        self.streaming == 0
    }

    /// Body bytes of a streamed message still to come before the next message starts.
    pub fn streaming_left(&self) -> usize {
        self.streaming
    }

    /// Scans `buf`, calling `seen` for each message or streamed-message start, and returns how many
    /// leading bytes of `buf` may be forwarded now. Bytes after that are an incomplete message that
    /// must stay buffered until more arrives. Never reports the same bytes twice if the caller drops
    /// the returned prefix from its buffer before the next call.
    pub fn scan<'a>(
        &mut self,
        buf: &'a [u8],
        mut seen: impl FnMut(Seen<'a>),
    ) -> Result<usize, FrameError> {
        let mut pos = self.streaming.min(buf.len());
        self.streaming -= pos;
        if self.streaming > 0 {
            return Ok(pos);
        }
        while let Some(header) = Header::parse(&buf[pos..]) {
            let header = header.validate(self.max_len)?;
            let total = header.total_len();
            let available = buf.len() - pos;
            if available >= total {
                seen(Seen::Whole(Message {
                    tag: header.tag,
                    body: &buf[pos + HEADER_LEN..pos + total],
                    offset: pos,
                }));
                pos += total;
            } else if super::tags::streamable(header.tag) {
                seen(Seen::StreamStart {
                    tag: header.tag,
                    len: header.len,
                });
                self.streaming = total - available;
                return Ok(buf.len());
            } else {
                break;
            }
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tag and body of each message seen.
    type Messages = Vec<(u8, Vec<u8>)>;

    fn collect(scanner: &mut Scanner, buf: &[u8]) -> (Result<usize, FrameError>, Messages) {
        let mut out = Vec::new();
        let r = scanner.scan(buf, |s| match s {
            Seen::Whole(m) => out.push((m.tag, m.body.to_vec())),
            Seen::StreamStart { tag, .. } => out.push((tag, b"<stream>".to_vec())),
        });
        (r, out)
    }

    #[test]
    fn several_messages_in_one_read() {
        let buf = b"Z\0\0\0\x05IC\0\0\0\x0dSELECT 1\0";
        let mut s = Scanner::new(1 << 20);
        let (n, msgs) = collect(&mut s, buf);
        assert_eq!(n, Ok(buf.len()));
        assert_eq!(
            msgs,
            vec![(b'Z', b"I".to_vec()), (b'C', b"SELECT 1\0".to_vec())]
        );
    }

    #[test]
    fn message_split_across_reads() {
        let full = b"C\0\0\0\x0dSELECT 1\0";
        let mut s = Scanner::new(1 << 20);
        for cut in 0..full.len() {
            let (n, msgs) = collect(&mut s, &full[..cut]);
            assert_eq!(n, Ok(0), "cut at {cut}");
            assert!(msgs.is_empty());
        }
        let (n, msgs) = collect(&mut s, full);
        assert_eq!(n, Ok(full.len()));
        assert_eq!(msgs.len(), 1);
    }

    #[test]
    fn complete_prefix_is_forwarded_and_rest_kept() {
        let buf = b"Z\0\0\0\x05IC\0\0\0\x0dSEL";
        let mut s = Scanner::new(1 << 20);
        let (n, msgs) = collect(&mut s, buf);
        assert_eq!(n, Ok(6));
        assert_eq!(msgs.len(), 1);
    }

    #[test]
    fn length_below_four_is_rejected() {
        let mut s = Scanner::new(1 << 20);
        let (r, _) = collect(&mut s, b"Q\0\0\0\x03");
        assert_eq!(r, Err(FrameError::TooShort { tag: b'Q', len: 3 }));
    }

    #[test]
    fn length_above_maximum_is_rejected_before_the_body_arrives() {
        let mut s = Scanner::new(100);
        let (r, _) = collect(&mut s, b"Q\0\0\x01\0");
        assert_eq!(
            r,
            Err(FrameError::TooLong {
                tag: b'Q',
                len: 256,
                max: 100
            })
        );
    }

    #[test]
    fn empty_body_message() {
        let mut s = Scanner::new(100);
        let (n, msgs) = collect(&mut s, b"S\0\0\0\x04");
        assert_eq!(n, Ok(5));
        assert_eq!(msgs, vec![(b'S', vec![])]);
    }

    #[test]
    fn large_data_row_streams_in_pieces() {
        // A DataRow of 20 body bytes arriving in three reads, then a ReadyForQuery.
        let mut s = Scanner::new(1 << 20);
        let mut first = b"D\0\0\0\x18".to_vec();
        first.extend_from_slice(&[7u8; 6]);
        let (n, msgs) = collect(&mut s, &first);
        assert_eq!(n, Ok(first.len()));
        assert_eq!(msgs, vec![(b'D', b"<stream>".to_vec())]);
        assert!(!s.at_message_boundary());

        let (n, msgs) = collect(&mut s, &[7u8; 10]);
        assert_eq!(n, Ok(10));
        assert!(msgs.is_empty());

        let mut last = vec![7u8; 4];
        last.extend_from_slice(b"Z\0\0\0\x05I");
        let (n, msgs) = collect(&mut s, &last);
        assert_eq!(n, Ok(last.len()));
        assert_eq!(msgs, vec![(b'Z', b"I".to_vec())]);
        assert!(s.at_message_boundary());
    }

    #[test]
    fn streaming_left_counts_the_body_still_to_come() {
        let mut s = Scanner::new(1 << 20);
        assert_eq!(s.streaming_left(), 0);
        let (n, _) = collect(&mut s, b"D\0\0\0\x18\x07\x07");
        assert_eq!(n, Ok(7));
        assert_eq!(s.streaming_left(), 18);
        let (n, _) = collect(&mut s, &[7u8; 10]);
        assert_eq!(n, Ok(10));
        assert_eq!(s.streaming_left(), 8);
        let (n, _) = collect(&mut s, &[7u8; 8]);
        assert_eq!(n, Ok(8));
        assert_eq!(s.streaming_left(), 0);
    }

    #[test]
    fn incomplete_peeked_message_waits_for_the_rest() {
        // ErrorResponse is not streamable: it waits until whole.
        let mut s = Scanner::new(1 << 20);
        let (n, msgs) = collect(&mut s, b"E\0\0\0\x10SERR");
        assert_eq!(n, Ok(0));
        assert!(msgs.is_empty());
    }

    #[test]
    fn unknown_tags_pass_through() {
        let mut s = Scanner::new(100);
        let (n, msgs) = collect(&mut s, b"~\0\0\0\x06hi");
        assert_eq!(n, Ok(7));
        assert_eq!(msgs, vec![(b'~', b"hi".to_vec())]);
    }
}
