//! Progress of the local commands' long steps, on stderr: a bar on a terminal, a plain line per
//! quarter otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Runs blocking work that reports bytes done, showing progress.
pub async fn run_with_progress<F>(what: &'static str, total: u64, work: F) -> Result<(), String>
where
    F: FnOnce(&mut dyn FnMut(u64)) -> Result<(), String> + Send + 'static,
{
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        work(&mut |n| {
            let _ = sender.send(n);
        })
    });
    let mut bar = progress_bar(what, total);
    let mut task = std::pin::pin!(task);
    let result = loop {
        tokio::select! {
            Some(n) = receiver.recv() => bar.tick(n),
            done = &mut task => {
                while let Ok(n) = receiver.try_recv() {
                    bar.tick(n);
                }
                break done.map_err(|e| e.to_string()).and_then(|r| r);
            }
        }
    };
    bar.finish();
    result
}

/// Progress of one step, on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    done: u64,
    quarter: u64,
}

pub fn progress_bar(what: &'static str, total: u64) -> Progress {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    Progress {
        bar,
        what,
        total,
        done: 0,
        quarter: 0,
    }
}

impl Progress {
    pub fn tick(&mut self, bytes: u64) {
        self.done += bytes;
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None => {
                let quarter = (self.done * 4).checked_div(self.total).unwrap_or(4).min(4);
                if quarter > self.quarter {
                    self.quarter = quarter;
                    eprintln!(
                        "{}: {}% ({} of {} bytes)",
                        self.what,
                        quarter * 25,
                        self.done,
                        self.total
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
