//! A free loopback port, for the servers the sidecar starts (the managed Doltgres, scratch
//! servers). A leaf.

/// A free loopback port (bound and released; the server binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
