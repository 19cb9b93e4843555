//! Messages and file descriptors over the hand-over socket (a Unix stream socket). The
//! listeners travel as `SCM_RIGHTS` on one marker byte after the offer; frames are read exactly
//! (no read-ahead), so that byte and its descriptors are only ever taken by [`recv_fds`].

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use super::message::{self, Message};

/// The byte the descriptors ride on.
const MARKER: u8 = b'F';

/// A conversation that went wrong.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the other process closed the hand-over connection")]
    Closed,
    #[error("no answer on the hand-over connection within {0:?}")]
    Timeout(Duration),
    #[error("hand-over connection: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] message::FrameError),
    #[error("expected {expected} on the hand-over connection, got {got:?}")]
    Unexpected {
        expected: &'static str,
        got: Box<Message>,
    },
    #[error("expected {expected} listening sockets, got {got}")]
    Descriptors { expected: usize, got: usize },
}

/// Sends one message.
pub async fn send(stream: &mut UnixStream, message: &Message) -> Result<(), WireError> {
    stream.write_all(&message::encode(message)).await?;
    Ok(())
}

/// Receives one message, waiting at most `timeout`.
pub async fn recv(stream: &mut UnixStream, timeout: Duration) -> Result<Message, WireError> {
    tokio::time::timeout(timeout, recv_unbounded(stream))
        .await
        .map_err(|_| WireError::Timeout(timeout))?
}

/// Receives one message, however long it takes.
pub async fn recv_unbounded(stream: &mut UnixStream) -> Result<Message, WireError> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; message::body_len(header)?];
    match stream.read_exact(&mut body).await {
        Ok(_) => Ok(message::decode(&body)?),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// Sends `fds` (duplicates travel; ours stay open) on the marker byte.
pub async fn send_fds(stream: &UnixStream, fds: &[RawFd]) -> Result<(), WireError> {
    loop {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let rights = [ControlMessage::ScmRights(fds)];
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(&[MARKER])],
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives exactly `count` descriptors sent with [`send_fds`], waiting at most `timeout`.
pub async fn recv_fds(
    stream: &UnixStream,
    count: usize,
    timeout: Duration,
) -> Result<Vec<OwnedFd>, WireError> {
    tokio::time::timeout(timeout, recv_fds_unbounded(stream, count))
        .await
        .map_err(|_| WireError::Timeout(timeout))?
}

async fn recv_fds_unbounded(stream: &UnixStream, count: usize) -> Result<Vec<OwnedFd>, WireError> {
    loop {
        stream.readable().await?;
        let received = stream.try_io(Interest::READABLE, || {
            let mut byte = [0u8; 1];
            let mut iov = [IoSliceMut::new(&mut byte)];
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let mut fds = Vec::new();
            for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
                if let ControlMessageOwned::ScmRights(raw) = cmsg {
                    // SAFETY: the kernel just installed these descriptors in this process for
                    // us; nothing else owns them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            Ok((msg.bytes, fds))
        });
        match received {
            Ok((0, _)) => return Err(WireError::Closed),
            Ok((_, fds)) if fds.len() == count => return Ok(fds),
            Ok((_, fds)) => {
                return Err(WireError::Descriptors {
                    expected: count,
                    got: fds.len(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn a_listener_crosses_with_the_messages_around_it_intact() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        send(&mut a, &Message::Accepting).await.unwrap();
        send_fds(&a, &[listener.as_raw_fd()]).await.unwrap();
        send(&mut a, &Message::Refused { reason: "x".into() })
            .await
            .unwrap();
        let second = Duration::from_secs(1);
        assert_eq!(recv(&mut b, second).await.unwrap(), Message::Accepting);
        let fds = recv_fds(&b, 1, second).await.unwrap();
        assert_eq!(
            recv(&mut b, second).await.unwrap(),
            Message::Refused { reason: "x".into() }
        );
        // The received descriptor is the same listening socket: a client of the original
        // address is accepted through it.
        let received = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(received.local_addr().unwrap(), addr);
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.write_all(b"hi").unwrap();
        let (mut server, _) = received.accept().unwrap();
        let mut got = [0u8; 2];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    #[tokio::test]
    async fn a_closed_peer_and_a_wrong_count_are_errors() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        send_fds(&a, &[listener.as_raw_fd()]).await.unwrap();
        let second = Duration::from_secs(1);
        assert!(matches!(
            recv_fds(&b, 2, second).await,
            Err(WireError::Descriptors {
                expected: 2,
                got: 1
            })
        ));
        drop(a);
        assert!(matches!(recv(&mut b, second).await, Err(WireError::Closed)));
        assert!(matches!(
            recv_fds(&b, 1, second).await,
            Err(WireError::Closed)
        ));
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (_a, mut b) = UnixStream::pair().unwrap();
        assert!(matches!(
            recv(&mut b, Duration::from_millis(20)).await,
            Err(WireError::Timeout(_))
        ));
    }
}
