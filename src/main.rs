use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use doltgres_sidecar::admin;
use doltgres_sidecar::cli::{Cli, Command};
use doltgres_sidecar::server::{self, Shared};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Run(args) => {
            let config = args.resolve()?;
            runtime.block_on(run(config))
        }
    }
}

async fn run(config: doltgres_sidecar::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(&config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin API)", config.admin_listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let shared = Shared::new(config).context("setting up TLS")?;
    let admin = tokio::spawn(admin::serve(admin, shared.clone(), shutdown.clone()));
    server::run(listener, shared, shutdown).await?;
    admin.await??;
    Ok(())
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit now.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if round == 0 {
            tracing::info!("signal received: shutting down (send again to exit at once)");
            shutdown.cancel();
        }
    }
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}
