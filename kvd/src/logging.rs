//! Logging: `tracing` to stdout (human-readable) and to rolling files in the log directory.
//!
//! The file writer is non-blocking with `lossy(false)`: when the writer thread falls behind,
//! logging callers wait rather than lose lines, because a log that silently drops lines during an
//! incident is worse than a slower request. The returned guard flushes the file on drop, so
//! `main` keeps it until exit. A panic hook sends panics through `tracing` too.

use std::io::IsTerminal;

use tracing_appender::{non_blocking::WorkerGuard, rolling};
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogConfig, LogFormat, Rotation};

/// The filter when neither --log-level nor RUST_LOG is set: the engine's own info lines
/// (one per keyspace opened) are noise to an operator, and tarpc's per-request info span costs
/// time on every request.
pub const DEFAULT_FILTER: &str = "info,fjall=warn,lsm_tree=warn,tarpc=warn";

/// The prefix of log file names: `kvd.<date>.log`.
pub const FILE_PREFIX: &str = "kvd";

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The directory or file could not be made.
    #[error("cannot open log files in {dir}: {source}")]
    Files {
        /// The log directory.
        dir: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The level directive does not parse.
    #[error("invalid log level {level:?}: {source}")]
    Filter {
        /// The directive.
        level: String,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is already installed.
    #[error("logging is already set up: {0}")]
    AlreadySet(String),
}

/// Installs the global subscriber and the panic hook.
///
/// # Errors
/// When the log directory cannot be created or the level does not parse.
pub fn init(cfg: &LogConfig) -> Result<WorkerGuard, LogError> {
    let filter = match &cfg.level {
        Some(level) => EnvFilter::try_new(level).map_err(|source| LogError::Filter {
            level: level.clone(),
            source,
        })?,
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
        }
    };
    let files_err = |source: Box<dyn std::error::Error + Send + Sync>| LogError::Files {
        dir: cfg.dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&cfg.dir).map_err(|e| files_err(e.into()))?;
    let appender = rolling::Builder::new()
        .rotation(match cfg.rotation {
            Rotation::Minutely => rolling::Rotation::MINUTELY,
            Rotation::Hourly => rolling::Rotation::HOURLY,
            Rotation::Daily => rolling::Rotation::DAILY,
            Rotation::Never => rolling::Rotation::NEVER,
        })
        .filename_prefix(FILE_PREFIX)
        .filename_suffix("log")
        .max_log_files(cfg.max_files)
        .build(&cfg.dir)
        .map_err(|e| files_err(e.into()))?;
    let (file_writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("kvd-log-writer")
        .finish(appender);

    let file_layer = match cfg.format {
        LogFormat::Text => fmt::layer()
            .with_writer(file_writer)
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(file_writer).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(std::io::stdout().is_terminal()),
        )
        .with(file_layer)
        .try_init()
        .map_err(|e| LogError::AlreadySet(e.to_string()))?;

    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string payload)".into());
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        tracing::error!(%location, %thread, "panic: {payload}");
    }));
    Ok(guard)
}
