//! `copy`: stop-and-copy, inside a window. With every session held at a boundary:
//!
//! 1. take the inventory the manifest records (each database's HEAD and working-set hash, rows
//!    per table, the Doltgres version) over the sidecar's own connection;
//! 2. with the server marked unavailable (since the window began: new connections wait before
//!    logging in), detach every session: each closes its upstream connection cleanly and keeps
//!    its client;
//! 3. stop the server; copy its files into a new catalog entry (hard-linking table files the
//!    previous entry holds); start it and wait until it accepts a login;
//! 4. mark it available: waiting connections go on, detached sessions are told (`57P01`) that the
//!    server restarted for a backup.
//!
//! Steps 2–4 run in a task of their own, so that whatever happens to the window (its timeout
//! included) the server is started again. A failed copy removes its partial entry.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};
use tracing::{info, warn};

use super::sql::{column, connect};
use super::{ActionError, After, Context};
use crate::catalog::copy_tree::{self, Previous};
use crate::catalog::journal;
use crate::catalog::manifest::{DatabaseState, FileRecord, Manifest, Timings};
use crate::catalog::{Catalog, Entry, Pending, entry_id};
use crate::config::backup::CopyConfig;
use crate::state::record::Steps;
use crate::upstream::quote_ident;

/// How many times a stopped server is started before the window gives up on it (a managed one
/// is then left to the supervisor's restarts).
const START_ATTEMPTS: usize = 3;

/// A copy made ready before the gate closes: its entry begun, the entry it links from chosen,
/// its journals pre-copied.
pub struct Prepared {
    cfg: CopyConfig,
    pending: Pending,
    previous: Option<Entry>,
    precopied: BTreeMap<String, journal::Precopied>,
    window_id: u64,
}

/// Before the gate closes, with the server running: begins the entry and pre-copies every
/// chunk journal up to its current size (see [`crate::catalog::journal`]), linking what the entry
/// it links from holds. Inside the window only the rest of each journal is left to copy.
pub async fn prepare(
    ctx: &Context,
    cfg: &CopyConfig,
    window_id: u64,
    steps: &mut Steps,
) -> Result<Prepared, ActionError> {
    let sources = ctx
        .control
        .copy_sources()
        .ok_or(ActionError::NotConfigured("copy"))?;
    let start = Instant::now();
    let (catalog_dir, written, cfg) = (cfg.catalog.clone(), ctx.verifications.clone(), cfg.clone());
    let dir = catalog_dir.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let catalog = Catalog::open(&dir)?;
        // Table files and journal segments are linked only from an entry known to be whole:
        // see `Catalog::link_source`.
        let written = |id: &str| written.written(id);
        let previous = catalog.link_source(&written).unwrap_or_else(|why| {
            warn!(%why, "the catalog is not private to the sidecar's user: every file is copied, none linked");
            None
        });
        let pending = catalog.begin(&entry_id(SystemTime::now(), window_id))?;
        let earlier = previous.as_ref().map(|p| Previous {
            entry_dir: &p.dir,
            manifest: &p.manifest,
        });
        let precopied = copy_tree::precopy_journals(&sources, pending.dir(), earlier.as_ref())?;
        Ok::<_, std::io::Error>(Prepared {
            cfg,
            pending,
            previous,
            precopied,
            window_id,
        })
    })
    .await
    .map_err(|e| ActionError::Copy(format!("pre-copy task failed: {e}")))?
    .map_err(|e| ActionError::Copy(format!("pre-copying into {}: {e}", catalog_dir.display())))?;
    steps.record("precopy", None, start);
    Ok(prepared)
}

/// Inside the window: the inventory, then stop, copy and start (see the module's steps). Leaves
/// the new entry to verify and upload.
pub async fn run(
    ctx: &Context,
    prepared: Prepared,
    steps: &mut Steps,
) -> Result<(Value, After), ActionError> {
    let verify = prepared.cfg.verify_after;
    // A task of its own: dropping the window's future (its timeout) cannot leave the server
    // stopped or marked unavailable.
    let task = tokio::spawn(inventory_then_copy(ctx.clone(), prepared));
    let (manifest, whole_journals) = task
        .await
        .map_err(|e| ActionError::Copy(format!("copy task failed: {e}")))??;
    // A journal rewritten since the pre-copy (a GC, a recovery) was copied whole in the window.
    for rel in &whole_journals {
        let database = rel.split('/').nth(1);
        steps.record("journal_copied_whole", database, Instant::now());
    }
    let cut = json!({
        "entry": manifest.id,
        "files": manifest.files.len(),
        "bytes_copied": manifest.bytes_copied,
        "bytes_linked": manifest.bytes_linked,
        "journals_copied_whole": whole_journals,
        "timings": manifest.timings,
    });
    let id = manifest.id;
    Ok((cut, After::Entry { id, verify }))
}

async fn inventory_then_copy(
    ctx: Context,
    prepared: Prepared,
) -> Result<(Manifest, Vec<String>), ActionError> {
    let started = Instant::now();
    let (version, databases) = match inventory(&ctx).await {
        Ok(found) => found,
        Err(e) => {
            ctx.control.set_available(true);
            return Err(e);
        }
    };
    let inventory = started.elapsed().as_secs_f64();
    let started = Instant::now();
    if let Err(e) = collect_large_journals(&ctx, &prepared.cfg, &databases).await {
        ctx.control.set_available(true);
        return Err(e);
    }
    let gc = started.elapsed().as_secs_f64();
    stop_copy_start(&ctx, prepared, version, databases, (inventory, gc)).await
}

/// With `gc_journal_size`, runs `dolt_gc()` on each database whose journal is larger. Inside
/// the window, every session at a boundary: a GC fails the open transactions of other sessions
/// and spares idle ones (`doltgres_journal_facts.rs`).
async fn collect_large_journals(
    ctx: &Context,
    cfg: &CopyConfig,
    databases: &[DatabaseState],
) -> Result<(), ActionError> {
    let (Some(sources), true) = (ctx.control.copy_sources(), cfg.gc_journal_size > 0) else {
        return Ok(());
    };
    for db in databases {
        let journal = sources
            .data_dir
            .join(&db.name)
            .join(".dolt/noms")
            .join("v".repeat(32));
        let size = std::fs::metadata(&journal).map_or(0, |m| m.len());
        if size > cfg.gc_journal_size {
            info!(database = %db.name, size, "journal past gc_journal_size: dolt_gc()");
            let client = connect(ctx, &db.name).await?;
            column(&client, &db.name, "SELECT dolt_gc()").await?;
        }
    }
    Ok(())
}

/// Databases, their HEAD and working-set hashes and table row counts, and the server version.
async fn inventory(ctx: &Context) -> Result<(String, Vec<DatabaseState>), ActionError> {
    let first = ctx
        .config
        .backup
        .databases
        .first()
        .map_or("postgres", String::as_str);
    let client = connect(ctx, first).await?;
    let version = column(&client, first, "SELECT dolt_version()").await?;
    let names = column(
        &client,
        first,
        "SELECT datname FROM pg_database ORDER BY datname",
    )
    .await?;
    let mut databases = Vec::new();
    for name in names {
        let client = connect(ctx, &name).await?;
        let db = name.as_str();
        let head = column(&client, db, "SELECT dolt_hashof('HEAD')").await?;
        let working_set = column(&client, db, "SELECT dolt_hashof_db()").await?;
        let list = "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                    WHERE table_type = 'BASE TABLE' \
                    AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1";
        let mut tables = BTreeMap::new();
        for table in column(&client, db, list).await? {
            let (schema, name) = table.split_once('.').unwrap_or(("public", &table));
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(name)
            );
            let count = column(&client, db, &sql).await?;
            tables.insert(
                table.clone(),
                count.first().and_then(|c| c.parse().ok()).unwrap_or(0),
            );
        }
        databases.push(DatabaseState {
            name,
            head: head.into_iter().next().unwrap_or_default(),
            working_set: working_set.into_iter().next().unwrap_or_default(),
            tables,
        });
    }
    Ok((version.into_iter().next().unwrap_or_default(), databases))
}

async fn stop_copy_start(
    ctx: &Context,
    prepared: Prepared,
    version: String,
    databases: Vec<DatabaseState>,
    (inventory, gc): (f64, f64),
) -> Result<(Manifest, Vec<String>), ActionError> {
    let Prepared {
        cfg,
        pending,
        previous,
        precopied,
        window_id,
    } = prepared;
    let control = &ctx.control;
    let sources = control
        .copy_sources()
        .ok_or(ActionError::NotConfigured("copy"))?;
    let mut timings = Timings {
        inventory,
        gc,
        ..Timings::default()
    };
    let step = Instant::now();
    let detached = control.detach_all();
    if !control.wait_detached(cfg.detach_timeout).await {
        control.set_available(true);
        return Err(ActionError::Copy(format!(
            "{} sessions kept their upstream connection past detach_timeout",
            control.attached()
        )));
    }
    timings.detach = step.elapsed().as_secs_f64();
    let step = Instant::now();
    if let Err(e) = control.stop().await {
        // It may be half-down: bring it back before giving up.
        let _ = restart(ctx).await;
        control.set_available(true);
        return Err(ActionError::Copy(e.to_string()));
    }
    timings.stop = step.elapsed().as_secs_f64();
    let step = Instant::now();
    let id = pending.id();
    let copied = tokio::task::spawn_blocking(move || {
        let earlier = previous.as_ref().map(|p| Previous {
            entry_dir: &p.dir,
            manifest: &p.manifest,
        });
        let copied =
            copy_tree::copy_sources(&sources, pending.dir(), earlier, precopied, &mut |_| {})?;
        Ok::<_, std::io::Error>((pending, copied))
    })
    .await;
    timings.copy = step.elapsed().as_secs_f64();
    let step = Instant::now();
    let started = restart(ctx).await;
    timings.start = step.elapsed().as_secs_f64();
    // A managed server that did not come back is the supervisor's now: it marks the server
    // available once its restarts succeed. Connections wait for that, within hold_timeout.
    control.set_available(started.is_ok() || control.managed().is_none());
    ctx.metrics.server_restarted("copy");
    info!(
        sessions = detached,
        "server back after the copy: detached sessions re-attach or end now"
    );
    let (pending, copied) = match copied {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            return Err(ActionError::Copy(format!(
                "copying into {}: {e}",
                cfg.catalog.display()
            )));
        }
        Err(e) => return Err(ActionError::Copy(format!("copy task failed: {e}"))),
    };
    if let Err(e) = started {
        return Err(ActionError::Copy(e));
    }
    let (bytes_copied, bytes_linked) = copied_and_linked(&copied.records);
    let manifest = Manifest {
        id: id.clone(),
        window_id,
        created_unix: crate::state::record::unix(SystemTime::now()),
        doltgres_version: version,
        databases,
        bytes_copied,
        bytes_linked,
        files: copied.records,
        timings,
    };
    let to_commit = manifest.clone();
    let catalog_dir = cfg.catalog.clone();
    let committed = tokio::task::spawn_blocking(move || {
        pending.commit(&to_commit)?;
        let catalog = Catalog::open(&catalog_dir)?;
        // With an off-site repository, an entry stays until it is uploaded there.
        let repository = cfg.offsite.as_ref().map(|o| o.url.clone());
        let not_uploaded = |e: &crate::catalog::Entry| {
            repository
                .as_deref()
                .is_some_and(|url| !crate::offsite::upload::uploaded_to(e, url))
        };
        Ok::<_, std::io::Error>(catalog.retain(
            cfg.keep_last,
            cfg.max_age,
            SystemTime::now(),
            &not_uploaded,
        ))
    })
    .await
    .map_err(|e| ActionError::Copy(e.to_string()))?
    .map_err(|e| ActionError::Copy(format!("writing the entry: {e}")))?;
    ctx.verifications.mark_written(&manifest.id);
    if !committed.is_empty() {
        info!(removed = ?committed, "retention removed old copies");
    }
    Ok((manifest, copied.whole_journals))
}

/// Bytes an entry copied and bytes it hard-linked, journal segments counted one by one.
fn copied_and_linked(records: &[FileRecord]) -> (u64, u64) {
    let (mut copied, mut linked) = (0, 0);
    for record in records {
        match &record.segments {
            Some(segments) => {
                for segment in segments {
                    *(if segment.linked {
                        &mut linked
                    } else {
                        &mut copied
                    }) += segment.size;
                }
            }
            None => {
                *(if record.linked {
                    &mut linked
                } else {
                    &mut copied
                }) += record.size
            }
        }
    }
    (copied, linked)
}

/// Starts the stopped server, a few times if need be.
async fn restart(ctx: &Context) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=START_ATTEMPTS {
        match ctx.control.start(&ctx.upstream).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                warn!(attempt, error = %e, "starting the server after the copy failed");
                last = e.to_string();
                if let Some(managed) = ctx.control.managed() {
                    let _ = managed.stop().await;
                }
            }
        }
    }
    // Leave a process for a managed server's supervisor to watch and restart with backoff.
    if let Some(managed) = ctx.control.managed() {
        let _ = managed.start().await;
    }
    Err(format!(
        "the server did not come back after the copy: {last}"
    ))
}
