//! Server control through operator commands, for a Doltgres in another container: `stop` must
//! return once the server is down, `start` once it has been started (readiness is then checked by
//! logging in).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::ControlError;

/// Runs `argv` to completion within `timeout`; its stderr's tail explains a failure.
pub async fn run(what: &str, argv: &[String], timeout: Duration) -> Result<(), ControlError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ControlError::Command(format!("server.{what} is empty")))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ControlError::Command(format!("cannot run {program}: {e}")))?;
    let mut stderr = child.stderr.take().expect("piped");
    let finished = async {
        let mut err = String::new();
        let (status, _) = tokio::join!(child.wait(), stderr.read_to_string(&mut err));
        (status, err)
    };
    let (status, err) = tokio::time::timeout(timeout, finished).await.map_err(|_| {
        ControlError::Command(format!("{program} did not finish within {timeout:?}"))
    })?;
    let status = status.map_err(|e| ControlError::Command(e.to_string()))?;
    if status.success() {
        return Ok(());
    }
    let tail: String = err
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(ControlError::Command(format!(
        "server.{what} ({program}) exited with {status}: {}",
        tail.trim()
    )))
}
