//! The floor of a relaying proxy: a TCP relay on tokio that parses nothing.
//!
//! usage: relay_floor LISTEN_ADDR UPSTREAM_ADDR [--threads N]
//!
//! Every accepted connection gets its own upstream connection, TCP_NODELAY on both sockets, and
//! `tokio::io::copy_bidirectional` between them until either side closes. The pgbench harness
//! (benches/pgbench) runs it beside the sidecar to show what the sidecar's per-transaction CPU would
//! be if it did nothing but move bytes with the same runtime. `--threads` sets the multi-thread
//! runtime's worker count (tokio's default: one per core).

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::{TcpListener, TcpStream};

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut threads = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--threads" {
            let value = args.next().ok_or("--threads needs a value")?;
            let n: usize = value
                .parse()
                .map_err(|_| format!("bad --threads value: {value}"))?;
            if n == 0 {
                return Err("--threads must be at least 1".into());
            }
            threads = Some(n);
        } else {
            positional.push(arg);
        }
    }
    let [listen, upstream] = positional.as_slice() else {
        return Err("usage: relay_floor LISTEN_ADDR UPSTREAM_ADDR [--threads N]".into());
    };
    let addr = |text: &str| {
        text.parse::<SocketAddr>()
            .map_err(|e| format!("bad address {text}: {e}"))
    };
    Ok(Args {
        listen: addr(listen)?,
        upstream: addr(upstream)?,
        threads,
    })
}

async fn relay(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

async fn serve(listener: TcpListener, upstream: SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(async move {
                    // A reset by either side is the normal end of a relayed session.
                    let _ = relay(client, upstream).await;
                });
            }
            Err(e) => {
                // Out of descriptors and the like: report, back off, keep serving.
                eprintln!("relay_floor: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("relay_floor: {message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("relay_floor: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("relay_floor: bind {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "relay_floor: listening on {}, relaying to {}",
            args.listen, args.upstream
        );
        serve(listener, args.upstream).await;
        ExitCode::SUCCESS
    })
}
