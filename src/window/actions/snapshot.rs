//! `snapshot`: the operator's command (an EBS/LVM/fsfreeze script, say), run while every session
//! is held, within its own timeout.

use std::fmt::Write as _;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::ActionError;
use crate::config::backup::SnapshotConfig;

/// Runs the command, telling it the window, the action and the upstream (`host:port`).
pub async fn run(
    upstream: &str,
    cfg: &SnapshotConfig,
    window_id: u64,
) -> Result<Value, ActionError> {
    let (program, args) = cfg
        .command
        .split_first()
        .ok_or(ActionError::NotConfigured("snapshot"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("DOLTGRES_SIDECAR_WINDOW_ID", window_id.to_string())
        .env("DOLTGRES_SIDECAR_ACTION", "snapshot")
        .env("DOLTGRES_SIDECAR_UPSTREAM", upstream)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ActionError::Command(format!("cannot start {program}: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let run = async {
        let (mut out, mut err) = (String::new(), String::new());
        let (status, _, _) = tokio::join!(
            child.wait(),
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        (status, out, err)
    };
    let (status, out, err) = tokio::time::timeout(cfg.timeout, run).await.map_err(|_| {
        ActionError::Command(format!("{program} did not finish within {:?}", cfg.timeout))
    })?;
    let status = status.map_err(|e| ActionError::Command(e.to_string()))?;
    if !status.success() {
        let mut text = format!("{program} exited with {status}");
        let tail: String = err
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let _ = write!(text, ": {}", tail.trim());
        return Err(ActionError::Command(text));
    }
    Ok(json!({ "command": program, "output": out.trim() }))
}
