//! The log filter a `log_level` setting stands for, checked when the configuration is validated
//! and installed by the `logging` module.

use tracing_subscriber::EnvFilter;

/// Libraries whose debug and trace output carries secrets: ureq logs request headers (the admin
/// token), tokio-postgres logs query parameters. Whatever the filter says, they log at info at
/// most.
pub const SECRET_BEARING: &[&str] = &["ureq=info", "ureq_proto=info", "tokio_postgres=info"];

/// The filter for `directives` (`EnvFilter` syntax: `info`, `warn,doltgres_sidecar=debug`, …),
/// with [`SECRET_BEARING`] capped. An empty or malformed directive is an error.
pub fn filter(directives: &str) -> Result<EnvFilter, String> {
    if directives.trim().is_empty() {
        return Err("no directive: use a level such as info, or target=level pairs".into());
    }
    let mut filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| format!("{directives:?}: {e}"))?;
    for directive in SECRET_BEARING {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    Ok(filter)
}
