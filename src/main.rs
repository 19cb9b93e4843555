use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use doltgres_sidecar::{admin, control, local};
use std::io::Write as _;

use doltgres_sidecar::cli::{BackupsCommand, Cli, ClientArgs, Command, RunArgs};
use doltgres_sidecar::client::{self, AdminClient};
use doltgres_sidecar::reload;
use doltgres_sidecar::server;
use doltgres_sidecar::shared::Shared;
use std::sync::Arc;

fn main() -> ExitCode {
    match run_cli(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Libraries whose debug and trace output carries secrets: ureq logs request headers (the admin
/// token), tokio-postgres logs query parameters. Whatever `RUST_LOG` says, they log at info at
/// most.
const SECRET_BEARING: &[&str] = &["ureq=info", "ureq_proto=info", "tokio_postgres=info"];

/// `RUST_LOG` (or `default`), with [`SECRET_BEARING`] capped.
fn log_filter(default: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    for directive in SECRET_BEARING {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    filter
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    // The proxy logs its work; the other commands print their result and log only problems.
    let level = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Run(args) => {
            let config = args.resolve()?;
            let runtime = proxy_runtime(config.worker_threads)?;
            runtime.block_on(run(config, args))
        }
        Command::Status(c) => call(&c, "GET", "/status", client::status_text),
        Command::Reload(c) => call(&c, "POST", "/reload", client::reload_text),
        Command::Backup { client: c, action } => {
            call(&c, "POST", &format!("/backups?action={action}"), |w| {
                client::window_line(w) + "\n"
            })
        }
        Command::Quiesce {
            client: c,
            ttl,
            timeout,
        } => {
            let mut path = format!("/quiesce?ttl={ttl}");
            if let Some(t) = timeout {
                path.push_str(&format!("&timeout={t}"));
            }
            call(&c, "POST", &path, |v| {
                format!(
                    "window {} holds every session at a transaction boundary for up to {}s; end it with: doltgres-sidecar resume\n",
                    v["window_id"], v["ttl_seconds"]
                )
            })
        }
        Command::Resume(c) => call(&c, "POST", "/resume", |v| {
            format!("window {} resumed\n", v["resumed"])
        }),
        Command::Backups {
            command: BackupsCommand::List(c),
        } => call(&c, "GET", "/backups", client::backups_text),
        Command::Restore(args) => local_command(local::restore(&args)),
        Command::Verify(args) => local_command(local::verify(&args)),
    }
}

/// The runtime the proxy runs on: one thread for `worker_threads = 1`, else a pool of worker
/// threads (0: one per CPU core).
fn proxy_runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 1 {
                b.worker_threads(n);
            }
            b
        }
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs a local command (restore, verify) and prints its result.
fn local_command(
    work: impl std::future::Future<Output = Result<String, local::LocalError>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let text = runtime.block_on(work)?;
    writeln!(std::io::stdout(), "{text}")?;
    Ok(())
}

/// Runs one admin API call and prints its answer as text (or JSON with --json).
fn call(
    args: &ClientArgs,
    method: &str,
    path: &str,
    text: impl Fn(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    let admin = AdminClient {
        base: args.admin_url.clone(),
        token: args.token.clone(),
    };
    let value = admin.call(method, path)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write!(out, "{}", text(&value))?;
    }
    Ok(())
}

async fn run(config: doltgres_sidecar::config::Config, args: RunArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(&config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin API)", config.admin_listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    // Installed before anything else can take a while, so an early SIGHUP does not end the
    // process (its default action).
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let shared = Shared::new(config).context("setting up TLS, authentication and the upstream")?;
    shared.set_config_source(Box::new(move |running| args.resolve_again(running)));
    tokio::spawn(reload_on_hangup(shared.clone(), hangup));
    if shared.control.managed().is_some() {
        shared
            .control
            .start(&shared.upstream)
            .await
            .context("starting the managed Doltgres")?;
        tokio::spawn(control::supervise(shared.clone(), shutdown.clone()));
    }
    let admin = tokio::spawn(admin::serve(admin, shared.clone(), shutdown.clone()));
    server::run(listener, shared.clone(), shutdown).await?;
    if let Some(managed) = shared.control.managed() {
        tracing::info!("stopping the managed Doltgres");
        managed
            .stop()
            .await
            .context("stopping the managed Doltgres")?;
    }
    admin.await??;
    Ok(())
}

/// SIGHUP: reload the configuration. A reload that fails is logged; the process runs on with
/// what it had.
async fn reload_on_hangup(shared: Arc<Shared>, mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        if let Err(e) = reload::reload(&shared).await {
            tracing::error!(error = %e, "reload failed: the running configuration is unchanged");
        }
    }
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
