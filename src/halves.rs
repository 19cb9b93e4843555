//! A connection's two directions as separate halves, for the relay's two pumps.
//!
//! A plain TCP stream splits by borrowing (`TcpStream::split`): reading and writing a socket
//! need no coordination, so the halves share nothing. Only a TLS stream, whose one rustls state
//! both directions use, goes through `tokio::io::split` and the lock it takes on every read and
//! write. Each half is an [`Either`], which passes reads and writes to the one it holds.

use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp;
use tokio_util::either::Either;

use crate::tls::MaybeTls;

/// The TLS stream a [`MaybeTls`] may hold.
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// The reading half of a [`MaybeTls`]: plain, or TLS.
pub type Reader<'a> = Either<tcp::ReadHalf<'a>, ReadHalf<&'a mut TlsStream>>;

/// The writing half of a [`MaybeTls`]: plain, or TLS.
pub type Writer<'a> = Either<tcp::WriteHalf<'a>, WriteHalf<&'a mut TlsStream>>;

/// Splits the connection into halves that can be used at the same time.
pub fn split(stream: &mut MaybeTls) -> (Reader<'_>, Writer<'_>) {
    match stream {
        Either::Left(tcp) => {
            let (r, w) = tcp.split();
            (Either::Left(r), Either::Left(w))
        }
        Either::Right(tls) => {
            let (r, w) = tokio::io::split(tls.as_mut());
            (Either::Right(r), Either::Right(w))
        }
    }
}
