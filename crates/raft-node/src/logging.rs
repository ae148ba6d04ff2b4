//! Logging set-up: a `tracing-subscriber` formatter behind a reloadable filter, so that
//! `log_filter` can change at run time (hot reload); lines as text or, with
//! `log_format = "json"`, one JSON object per line for log shippers.

use crate::config::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

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

/// The JSON formatter: one object per event with `timestamp`, `level`, `target`, `fields`
/// (`message` and the event's fields), and the current `span` and the list of `spans` when
/// the event happened inside spans.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

/// Installs the global subscriber (stderr, with targets) filtered by `filter`, writing
/// lines in `format`.
pub fn init(filter: &str, format: LogFormat) -> Result<LogHandle, String> {
    let f = EnvFilter::try_new(filter).map_err(|e| format!("log_filter `{filter}`: {e}"))?;
    let (layer, handle) = reload::Layer::new(f);
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            ),
            None,
        ),
        LogFormat::Json => (None, Some(json_layer(std::io::stderr))),
    };
    tracing_subscriber::registry()
        .with(layer)
        .with(text)
        .with(json)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(LogHandle { handle })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> fmt::MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_parse_with_level_target_message_fields_and_spans() {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(json_layer(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("apply", node_id = 3);
            let _in = span.enter();
            tracing::warn!(index = 42, "slow \"fsync\"");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
        assert_eq!(v["level"], "WARN", "{v}");
        assert_eq!(v["target"], module_path!(), "{v}");
        assert_eq!(v["fields"]["message"], "slow \"fsync\"", "{v}");
        assert_eq!(v["fields"]["index"], 42, "{v}");
        assert_eq!(v["span"]["name"], "apply", "{v}");
        assert_eq!(v["span"]["node_id"], 3, "{v}");
        assert_eq!(v["spans"][0]["name"], "apply", "{v}");
        assert!(
            v["timestamp"].as_str().is_some_and(|t| t.contains('T')),
            "{v}"
        );
    }
}
