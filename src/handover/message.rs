//! What the running sidecar and its successor say to each other over the hand-over socket: JSON
//! messages, each after its length as 4 big-endian bytes. Pure: no sockets here, so framing is
//! unit-tested and fuzzed apart from the I/O.

use serde::{Deserialize, Serialize};

use super::counts::Counts;

/// The longest message either side accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// One message of the hand-over conversation, in the order they are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Successor → running: "I want your listeners."
    Hello { pid: u32, version: String },
    /// Running → successor: see [`Offer`].
    Offer(Offer),
    /// Running → successor: no hand-over, and why.
    Refused { reason: String },
    /// Successor → running: "I am ready to accept on your listeners; stop accepting."
    Accepting,
    /// Running → successor: "I stopped accepting: they are yours." The successor serves only
    /// after this, so a running process that gave up (a timeout, a shutdown) never leaves two
    /// processes serving.
    Confirmed,
    /// Running → successor, when its last session ended: its counters at the end.
    Final { counts: Counts },
}

/// What the running process offers: the addresses whose sockets follow (client first, then
/// admin), how long it will let its sessions finish, and its counters now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub pid: u32,
    pub listen: String,
    pub admin_listen: String,
    pub shutdown_timeout_ms: u64,
    pub counts: Counts,
    /// Managed mode: the Doltgres to adopt; its output pipes follow the listeners.
    #[serde(default)]
    pub managed: Option<ManagedOffer>,
}

/// The managed Doltgres a successor adopts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedOffer {
    pub pid: i32,
    pub port: u16,
    /// How many of its output pipes follow the listeners.
    pub outputs: usize,
}

/// A frame that cannot be a message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("hand-over message of {0} bytes is longer than {MAX_MESSAGE}")]
    TooLong(usize),
    #[error("not a hand-over message: {0}")]
    Invalid(String),
}

/// The frame for `message`: length, then JSON.
pub fn encode(message: &Message) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("a message serializes");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The body length a frame's 4-byte header announces, if acceptable.
pub fn body_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_MESSAGE {
        return Err(FrameError::TooLong(len));
    }
    Ok(len)
}

/// The message in a frame's body.
pub fn decode(body: &[u8]) -> Result<Message, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: Message) {
        let frame = encode(&message);
        let len = body_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode(&frame[4..]).unwrap(), message);
    }

    #[test]
    fn every_message_round_trips() {
        let counts = Counts {
            commits: 7,
            rollbacks: 1,
            write_commits: 3,
            write_commits_since_backup: 2,
            bytes_upstream: 100,
            bytes_downstream: 900,
        };
        round_trip(Message::Hello {
            pid: 1,
            version: "0.1.0".into(),
        });
        round_trip(Message::Offer(Offer {
            pid: 2,
            listen: "127.0.0.1:6432".into(),
            admin_listen: "127.0.0.1:9187".into(),
            shutdown_timeout_ms: 30_000,
            counts: counts.clone(),
            managed: Some(ManagedOffer {
                pid: 9,
                port: 5433,
                outputs: 2,
            }),
        }));
        round_trip(Message::Refused {
            reason: "no".into(),
        });
        round_trip(Message::Accepting);
        round_trip(Message::Confirmed);
        round_trip(Message::Final { counts });
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        assert_eq!(
            body_len(((MAX_MESSAGE + 1) as u32).to_be_bytes()),
            Err(FrameError::TooLong(MAX_MESSAGE + 1))
        );
        assert!(body_len((MAX_MESSAGE as u32).to_be_bytes()).is_ok());
        assert!(matches!(decode(b"{}"), Err(FrameError::Invalid(_))));
        assert!(matches!(
            decode(br#"{"type":"takeover"}"#),
            Err(FrameError::Invalid(_))
        ));
        assert!(matches!(decode(b"\xff"), Err(FrameError::Invalid(_))));
    }
}
