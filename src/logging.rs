//! The process's log: text for people or one JSON object per line for machines, on stderr, with a
//! filter that can be replaced while the proxy runs ([`LogControl::set_level`]). Whatever the
//! filter says, the libraries whose debug output carries secrets log at info at most.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub use crate::config::modes::LogFormat;

pub use crate::config::log_filter::{SECRET_BEARING, filter};

/// Replaces the log filter of a running process. Clones control the same filter.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("filter", &self.current())
            .finish()
    }
}

impl LogControl {
    /// A reloadable filter layer starting at `initial`, and its control.
    pub fn new(initial: EnvFilter) -> (reload::Layer<EnvFilter, Registry>, LogControl) {
        let (layer, handle) = reload::Layer::new(initial);
        (layer, LogControl { handle })
    }

    /// Validates `directives` and makes them the filter, the secret-bearing libraries capped
    /// again. A directive that does not parse leaves the current filter in place.
    pub fn set_level(&self, directives: &str) -> Result<(), String> {
        let filter = filter(directives)?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("cannot replace the log filter: {e}"))
    }

    /// The filter in force, as directives.
    pub fn current(&self) -> String {
        self.handle
            .with_current(|f| f.to_string())
            .unwrap_or_default()
    }
}

/// Installs the process's logger on stderr: `RUST_LOG` when it is set and valid, else `level`
/// (else `info`, when `level` does not parse either; `run` reports a bad `log_level` itself).
pub fn init(format: LogFormat, level: &str) -> LogControl {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| filter(&directives).ok());
    let initial = from_env
        .or_else(|| filter(level).ok())
        .unwrap_or_else(|| filter("info").expect("a valid directive"));
    let (filter_layer, control) = LogControl::new(initial);
    let registry = tracing_subscriber::registry().with(filter_layer);
    match format {
        LogFormat::Text => {
            use std::io::IsTerminal;
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::stderr().is_terminal()),
                )
                .init();
        }
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    control
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bearing_libraries_stay_capped() {
        for directives in ["trace", "ureq=trace,tokio_postgres=debug", "warn"] {
            let text = filter(directives).unwrap().to_string();
            for cap in SECRET_BEARING {
                assert!(text.contains(cap), "{directives}: {text}");
            }
            assert!(!text.contains("ureq=trace"), "{text}");
            assert!(!text.contains("tokio_postgres=debug"), "{text}");
        }
    }

    #[test]
    fn an_invalid_directive_is_refused_and_the_filter_kept() {
        let (layer, control) = LogControl::new(filter("info").unwrap());
        // The handle only works while its layer is alive, as it is inside a subscriber.
        let _subscriber = tracing_subscriber::registry().with(layer);
        control.set_level("warn,doltgres_sidecar=debug").unwrap();
        let before = control.current();
        assert!(before.contains("doltgres_sidecar=debug"), "{before}");
        for bad in ["doltgres_sidecar=loud", "[unclosed", "", "  "] {
            assert!(control.set_level(bad).is_err(), "{bad:?} was accepted");
            assert_eq!(control.current(), before);
        }
        control.set_level("error").unwrap();
        let after = control.current();
        assert!(
            after.contains("error") && !after.contains("debug"),
            "{after}"
        );
        assert!(after.contains("ureq=info"), "{after}");
    }

    #[test]
    fn a_clone_controls_the_same_filter() {
        let (layer, control) = LogControl::new(filter("info").unwrap());
        let _subscriber = tracing_subscriber::registry().with(layer);
        control.clone().set_level("trace").unwrap();
        let current = control.current();
        assert!(current.split(',').any(|d| d == "trace"), "{current}");
    }
}
