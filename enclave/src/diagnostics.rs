//! Diagnostic logs of the agent and the launcher (`tracing`): one line per event on stderr, as
//! text or as one JSON object per line (`--log-format json`), filtered by `RUST_LOG`
//! (tracing-subscriber's `EnvFilter` syntax, e.g. `info`, `secllama::request=debug`).
//!
//! What is never logged, at any level: a prompt, an answer, a key or a decrypted request body.
//! Events carry the endpoint, status codes, sizes, times, log indexes and the *title* of a
//! refusal ("Policy", "Replay"); a refusal's detail (which may quote the request) goes only to
//! the client, sealed. Only events of secllama's own targets (`secllama…`) are written, whatever
//! `RUST_LOG` says, so a dependency that logs what it handles (an HTTP library at trace level)
//! never reaches the output. The logging configuration is not measured: it changes what the
//! operator sees, never what the enclave does.

use std::sync::OnceLock;

/// The environment variable the launcher uses to hand its `--log-format` to the agent.
pub const FORMAT_ENV: &str = "SECLLAMA_LOG_FORMAT";
/// The filter's environment variable (tracing-subscriber's `EnvFilter` syntax).
pub const FILTER_ENV: &str = "RUST_LOG";
/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-30T19:32:37.123Z  INFO secllama::request: served endpoint=generate …`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","target":"secllama::request","message":"served",…}`
    Json,
}

impl LogFormat {
    /// The name as given on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong setting up the logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--log-format` or [`FORMAT_ENV`] names no format.
    #[error("log format: expected text or json, found {0:?}")]
    Format(String),
    /// `RUST_LOG` does not parse.
    #[error(
        "{FILTER_ENV}: expected a tracing filter such as info or secllama=debug, found {value:?}: {reason}"
    )]
    Filter {
        /// The variable's value.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Logging was set up already in this process.
    #[error("logging was set up twice")]
    Twice,
}

impl std::str::FromStr for LogFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(Error::Format(other.to_string())),
        }
    }
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format chosen by [`init`]; [`LogFormat::Text`] before it (or without it).
#[must_use]
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// The format named by [`FORMAT_ENV`] (text when unset).
///
/// # Errors
/// [`Error::Format`] for any other value.
pub fn format_from_env() -> Result<LogFormat, Error> {
    match std::env::var(FORMAT_ENV) {
        Ok(v) => v.parse(),
        Err(_) => Ok(LogFormat::Text),
    }
}

/// Sets up the process's logs: `format` lines on stderr, filtered by `RUST_LOG` (default
/// [`DEFAULT_FILTER`]), secllama's own targets only.
///
/// # Errors
/// [`Error::Filter`] when `RUST_LOG` is set but does not parse (refused rather than ignored: an
/// operator who asked for logs should not get silence), [`Error::Twice`] on a second call.
pub fn init(format: LogFormat) -> Result<(), Error> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer, filter};
    let env = match std::env::var(FILTER_ENV) {
        Ok(v) => EnvFilter::builder().parse(&v).map_err(|e| Error::Filter {
            value: v.clone(),
            reason: e.to_string(),
        })?,
        Err(_) => EnvFilter::new(DEFAULT_FILTER),
    };
    let ours = filter::filter_fn(|meta| meta.target().starts_with("secllama"));
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let layer = match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().flatten_event(true).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(ours).with_filter(env));
    tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::Twice)?;
    FORMAT.set(format).map_err(|_| Error::Twice)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn formats_parse_and_print_their_names() {
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.as_str().parse::<LogFormat>().unwrap(), f);
        }
        let e = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert_eq!(e, "log format: expected text or json, found \"yaml\"");
    }
}
