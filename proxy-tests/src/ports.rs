//! Free loopback ports for servers the tests start.

use std::net::TcpListener;
use std::sync::Mutex;

/// Ports handed out in this process, so two servers starting at once never get the same one.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port on 127.0.0.1 that nothing listens on right now and this process has not handed out.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("cannot bind a loopback port")
            .port();
        let mut handed = HANDED_OUT.lock().unwrap();
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

/// Like [`free_port`], but below the kernel's ephemeral range, where no outbound connection is
/// given a port: for a server that must bind the same port again after a restart (a port from
/// the ephemeral range may meanwhile be the local end of some connection).
pub fn stable_port() -> u16 {
    let floor = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000.min(floor / 2);
    loop {
        let port = low + (rand_u16() % (floor - low));
        let mut handed = HANDED_OUT.lock().unwrap();
        if handed.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed.push(port);
        return port;
    }
}

/// A random number from the system's source, without another dependency.
fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() as u16
}
