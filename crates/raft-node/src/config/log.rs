//! `log_format`: how raftd writes its log lines to stderr.

use serde::{Deserialize, Serialize};

/// The format of raftd's log lines (`log_format`; a restart applies a change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event: time, level, target, message, fields (the
    /// default; coloured when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log shippers: `timestamp`, `level`, `target`,
    /// `fields` (with `message` and the event's own fields), and `span`/`spans` when the
    /// event happened inside spans.
    Json,
}

#[cfg(test)]
mod tests {
    use super::super::NodeConfig;
    use super::LogFormat;

    #[test]
    fn log_format_is_text_or_json() {
        let base = "id = 1\n";
        assert_eq!(
            NodeConfig::from_toml(base).unwrap().log_format,
            LogFormat::Text
        );
        let json = NodeConfig::from_toml(&format!("{base}log_format = \"json\"\n")).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        let e = NodeConfig::from_toml(&format!("{base}log_format = \"xml\"\n")).unwrap_err();
        assert!(e.to_string().contains("log_format"), "{e}");
        let mut other = json.clone();
        other.log_format = LogFormat::Text;
        assert_eq!(json.static_changes(&other).unwrap(), ["log_format"]);
    }
}
