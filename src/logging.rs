//! Where rudder's log goes and how it looks: stderr, filtered by `--log-level` (or `RUST_LOG`),
//! as text or one JSON object per line (`--log-format`). Colour codes only when stderr is a
//! terminal and `NO_COLOR` is unset, so files, pipes and log collectors get plain text. This
//! module sets the global subscriber once, at startup; it decides nothing about what is logged.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The shape of each log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIME LEVEL TARGET: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields, side by side.
    Json,
}

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("--log-level {0:?} is not a log level (error, warn, info, debug, trace, off)")]
    NotALevel(String),
    #[error("--log-level {level:?}: {source}")]
    Filter {
        level: String,
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Sets the global subscriber: `filter` as [`log_filter`] makes it, lines as `format` says.
pub fn init(filter: EnvFilter, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour_wanted()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// Colour codes only for a person at a terminal who did not ask for none (<https://no-color.org>).
fn colour_wanted() -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_colour
}

/// The log filter: `RUST_LOG` when it is set (and valid), else `log_level`: a level (`error`,
/// `warn`, `info`, `debug`, `trace`, `off`) or a filter with targets (`info,rudder::xds=debug`).
pub fn log_filter(rust_log: Option<&str>, log_level: &str) -> Result<EnvFilter, LoggingError> {
    if let Some(value) = rust_log.filter(|value| !value.trim().is_empty()) {
        match EnvFilter::try_new(value) {
            Ok(filter) => return Ok(filter),
            Err(error) => eprintln!("rudder: ignoring RUST_LOG={value:?}: {error}"),
        }
    }
    let level = log_level.trim();
    let is_level = level.eq_ignore_ascii_case("off") || level.parse::<tracing::Level>().is_ok();
    if !is_level && !level.contains(['=', ',']) {
        return Err(LoggingError::NotALevel(log_level.to_string()));
    }
    EnvFilter::try_new(level).map_err(|source| LoggingError::Filter {
        level: log_level.to_string(),
        source,
    })
}
