//! Logging set-up: a `tracing-subscriber` formatter behind a reloadable filter, so that
//! `log_filter` can change at run time (hot reload).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

/// Changes the filter of the installed subscriber.
#[derive(Clone, Debug)]
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    /// Replaces the filter (`RUST_LOG` syntax).
    pub fn set_filter(&self, filter: &str) -> Result<(), String> {
        let f = EnvFilter::try_new(filter).map_err(|e| format!("log_filter `{filter}`: {e}"))?;
        self.handle.reload(f).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber (stderr, with targets) filtered by `filter`.
pub fn init(filter: &str) -> Result<LogHandle, String> {
    let f = EnvFilter::try_new(filter).map_err(|e| format!("log_filter `{filter}`: {e}"))?;
    let (layer, handle) = reload::Layer::new(f);
    tracing_subscriber::registry()
        .with(layer)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(LogHandle { handle })
}
