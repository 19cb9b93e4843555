//! Message type bytes the proxy looks at. Any other tag passes through unexamined.

// Frontend (client to server).
pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const EXECUTE: u8 = b'E';
pub const DESCRIBE: u8 = b'D';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FUNCTION_CALL: u8 = b'F';
pub const TERMINATE: u8 = b'X';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
pub const PASSWORD: u8 = b'p';

// Backend (server to client).
pub const AUTHENTICATION: u8 = b'R';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const PARAMETER_STATUS: u8 = b'S';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const DATA_ROW: u8 = b'D';
pub const COPY_IN_RESPONSE: u8 = b'G';
pub const COPY_OUT_RESPONSE: u8 = b'H';
pub const COPY_BOTH_RESPONSE: u8 = b'W';
pub const PORTAL_SUSPENDED: u8 = b's';
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';

/// Messages whose bodies can be large and that the proxy never needs to read: they are streamed
/// through in pieces instead of being buffered whole.
pub fn streamable(tag: u8) -> bool {
    matches!(tag, DATA_ROW | COPY_DATA)
}
