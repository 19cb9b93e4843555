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
