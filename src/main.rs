use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

use doltgres_sidecar::config::secrets;
use doltgres_sidecar::logging::{self, LogControl, LogFormat};
use doltgres_sidecar::{admin, handover, local, manual};
use std::io::Write as _;
use std::os::fd::AsFd;

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
            // Each cause once; a URL given with credentials (restore --from, verify) is not
            // echoed with them.
            eprintln!("error: {}", doltgres_sidecar::errors::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    // The proxy logs its work as configured; the other commands print their result and log only
    // problems, as text. `RUST_LOG`, when set, wins in both.
    let logs = match &cli.command {
        Command::Run(args) => {
            let (format, level) = args.source.log_settings();
            logging::init(format, &level)
        }
        _ => logging::init(LogFormat::Text, "warn"),
    };
    match cli.command {
        Command::Run(args) => {
            let config = args.source.resolve()?;
            let runtime = proxy_runtime(config.worker_threads)?;
            runtime.block_on(run(config, args, logs))
        }
        Command::CheckConfig(args) => {
            let config = args.resolve()?;
            let text = secrets::masked_toml(&config).context("showing the configuration")?;
            write!(std::io::stdout(), "{text}")?;
            Ok(())
        }
        Command::Completions { shell } => {
            // Generated whole first: clap_complete panics on a failed write (a closed pipe).
            let mut command = Cli::command();
            let name = command.get_name().to_string();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, name, &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(())
        }
        Command::Keygen { out } => {
            let (identity, recipient) = doltgres_sidecar::offsite::seal::keygen();
            match out {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut file = std::fs::File::options()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    file.write_all(identity.as_bytes())?;
                    file.sync_all()?;
                    eprintln!("identity written to {}", path.display());
                }
                None => std::io::stdout().write_all(identity.as_bytes())?,
            }
            eprintln!("public key: {recipient}");
            Ok(())
        }
        Command::Man { dir: None } => {
            std::io::stdout().write_all(&manual::manual()?)?;
            Ok(())
        }
        Command::Man { dir: Some(dir) } => {
            let written = manual::write_pages(&dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            writeln!(
                std::io::stdout(),
                "{} pages written into {} (read one with: man -l {})",
                written.len(),
                dir.display(),
                dir.join("doltgres-sidecar.1").display()
            )?;
            Ok(())
        }
        Command::Status(c) => call(&c, "GET", "/status", client::status_text),
        Command::Reload(c) => call(&c, "POST", "/reload", client::reload_text),
        Command::Backup {
            client: c,
            action: Some(action),
        } => call(&c, "POST", &format!("/backups?action={action}"), |w| {
            client::window_line(w) + "\n"
        }),
        Command::Backup {
            client: c,
            action: None,
        } => {
            // One window per configured action; --json prints their records as one array.
            let records = client::backup_configured(&AdminClient::new(&c.admin))?;
            let mut out = std::io::stdout().lock();
            if c.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
            }
            for record in records.iter().filter(|_| !c.json) {
                writeln!(out, "{}", client::window_line(record))?;
            }
            Ok(())
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
            command: BackupsCommand::List(args),
        } => match &args.repo {
            Some(repo) => local_command(local::list_repository(repo)),
            None => call(&args.client, "GET", "/backups", client::backups_text),
        },
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
    let value = AdminClient::new(&args.admin).call(method, path)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write!(out, "{}", text(&value))?;
    }
    Ok(())
}

/// Runs the proxy until a signal stops it (or a successor takes over with `upgrade`: this
/// process then takes over from the running one). `logs` replaces the log filter while it runs.
async fn run(
    mut config: doltgres_sidecar::config::Config,
    args: RunArgs,
    logs: LogControl,
) -> anyhow::Result<()> {
    tracing::info!(version = doltgres_sidecar::cli::VERSION, log_filter = %logs.current(), "starting");
    // Before any socket is opened: the open-file limit shared out, raised if it must be.
    // A connection before its startup packet holds one descriptor, a session two.
    doltgres_sidecar::descriptors::plan(
        config.max_client_connections + config.max_startup_connections.div_ceil(2),
    );
    // Signals first: a take-over or a managed server's start can take a while, and SIGHUP's
    // default action would end the process.
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let handover_path = handover::socket_path(&config);
    let (listener, admin, mut predecessor) = if args.upgrade {
        let (listener, admin, taken) = handover::take_over(&config)
            .await
            .context("cannot take over from the running sidecar")?;
        if let Some(server) = &taken.server {
            // The adopted server keeps the port it runs on.
            if let Some(managed) = config.server.control.managed_mut() {
                managed.port = server.port;
            }
            config.upstream = format!("127.0.0.1:{}", server.port);
        }
        (listener, admin, Some(taken))
    } else {
        let (listener, admin) = bind(&config, &handover_path).await?;
        (listener, admin, None)
    };
    // Kept for a successor: the same sockets, handed over on upgrade.
    let listener_fds = [
        listener.as_fd().try_clone_to_owned()?,
        admin.as_fd().try_clone_to_owned()?,
    ];
    let endpoint = match predecessor {
        None => handover::Endpoint::bind(&handover_path),
        Some(_) => handover::Endpoint::bind_beside(&handover_path),
    };
    let mut endpoint = endpoint
        .inspect_err(|e| {
            tracing::warn!(socket = %handover_path.display(), error = %e, "upgrades cannot hand over to a successor: the hand-over socket is unavailable")
        })
        .ok();
    // Removes the socket's path on every way out, unless a successor's replaced it.
    let mut remover = endpoint.as_ref().map(handover::Endpoint::remover);
    let shared = Shared::new(config).context("setting up TLS, authentication and the upstream")?;
    shared.set_config_source(Box::new(move |running| args.source.resolve_again(running)));
    shared.set_log_control(logs);
    tokio::spawn(reload_on_hangup(shared.clone(), hangup));
    // A successor runs no window until its predecessor is gone; nothing else can hold the slot
    // yet, so this cannot wait.
    let pause = match &predecessor {
        Some(taken) => Some(
            shared
                .windows
                .pause(
                    format!(
                        "the previous process ({}) is still letting its sessions finish",
                        taken.predecessor
                    ),
                    std::time::Duration::from_secs(1),
                )
                .await
                .context("holding off backup windows")?,
        ),
        None => None,
    };
    if let Some(managed) = shared.control.managed() {
        match predecessor.as_mut().and_then(|taken| taken.server.take()) {
            Some(server) => managed
                .adopt(server.pid, server.outputs)
                .context("adopting the managed Doltgres")?,
            None => shared
                .control
                .start(&shared.upstream)
                .await
                .context("starting the managed Doltgres")?,
        }
        tokio::spawn(doltgres_sidecar::supervise::supervise(
            shared.clone(),
            shutdown.clone(),
        ));
    }
    if let (Some(taken), Some(pause)) = (predecessor, pause) {
        taken.offered.add_to(&shared.metrics);
        taken
            .accepting(shared.clone(), pause, &shutdown)
            .await
            .context("the running sidecar did not confirm the hand-over")?;
        if let Some(endpoint) = &mut endpoint {
            match endpoint.publish(&handover_path) {
                Ok(()) => remover = Some(endpoint.remover()),
                Err(e) => {
                    tracing::warn!(socket = %handover_path.display(), error = %e, "cannot move the hand-over socket into place")
                }
            }
        }
    }
    // The admin API stops with the proxy, or when a successor takes its listener over.
    let admin_stop = CancellationToken::new();
    tokio::spawn({
        let (shared, shutdown, admin_stop) = (shared.clone(), shutdown.clone(), admin_stop.clone());
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = shared.handover.handed_over() => {}
            }
            admin_stop.cancel();
        }
    });
    let admin = tokio::spawn(admin::serve(admin, shared.clone(), admin_stop));
    match endpoint {
        Some(endpoint) => {
            tokio::spawn(handover::serve(
                endpoint,
                shared.clone(),
                listener_fds,
                shutdown.child_token(),
            ));
        }
        // Nobody to hand over to: the listeners close as soon as the accept loop stops.
        None => drop(listener_fds),
    }
    server::run(listener, shared.clone(), shutdown).await?;
    handover::finish(&shared.handover, &shared.metrics).await;
    // The admin API stopped with the accept loop: its connections are closed within a second;
    // a window an operator started through it runs to its end first, before the server stops.
    let admin = admin.await;
    if let Some(managed) = shared.control.managed()
        && !shared.handover.is_handed_over()
    {
        tracing::info!("stopping the managed Doltgres");
        managed
            .stop()
            .await
            .context("stopping the managed Doltgres")?;
    }
    admin??;
    drop(remover);
    Ok(())
}

/// Binds the client and admin listeners; a port in use by a running sidecar (its hand-over
/// socket answers) says how to replace it.
async fn bind(
    config: &doltgres_sidecar::config::Config,
    handover_path: &std::path::Path,
) -> anyhow::Result<(tokio::net::TcpListener, tokio::net::TcpListener)> {
    let bind_one = |addr: String, what: &'static str| async move {
        tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
            let running = e.kind() == std::io::ErrorKind::AddrInUse
                && std::os::unix::net::UnixStream::connect(handover_path).is_ok();
            let hint = if running {
                ": a doltgres-sidecar runs there; to replace it without dropping clients, start \
                 this one with --upgrade"
            } else {
                ""
            };
            anyhow::Error::new(e).context(format!("cannot listen on {addr}{what}{hint}"))
        })
    };
    let listener = bind_one(config.listen.clone(), "").await?;
    let admin = bind_one(config.admin_listen.clone(), " (admin API)").await?;
    Ok((listener, admin))
}

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
