//! Loading: the TOML file, then the command-line overrides (`--set key=value` and the
//! flags that stand for one key), then validation.

use super::{ConfigError, NodeConfig, err};
use std::path::Path;

impl NodeConfig {
    /// Reads `file` (when given), applies `overrides` (`key.path` = value, in order) and
    /// validates the result.
    pub fn load(
        file: Option<&Path>,
        overrides: &[(String, toml::Value)],
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).or_else(|e| {
                    err(format!(
                        "cannot read the config file {}: {e}",
                        path.display()
                    ))
                })?;
                text.parse::<toml::Table>()
                    .or_else(|e| err(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in overrides {
            set_key(&mut table, key, value.clone())?;
        }
        let config = Self::from_table(table, file)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .or_else(|e| err(e.to_string()))?;
        let config = Self::from_table(table, None)?;
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table, file: Option<&Path>) -> Result<Self, ConfigError> {
        // Re-rendered so that deserialisation errors point at the offending key's line.
        let text = toml::to_string(&table).or_else(|e| err(e.to_string()))?;
        toml::from_str(&text).or_else(|e: toml::de::Error| {
            let place = file.map_or("flags".to_string(), |f| {
                format!("{} (with flags)", f.display())
            });
            err(format!("{place}: {}", e.to_string().trim_end()))
        })
    }
}

/// Sets `key` (dotted path) in `table` to `value`, creating sub-tables as needed.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return err(format!("`{key}` is not a configuration key"));
    }
    let (last, path) = parts.split_last().expect("split yields at least one part");
    let mut cur = table;
    for p in path {
        let entry = cur
            .entry((*p).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return err(format!("`{key}`: `{p}` is not a section")),
        };
    }
    cur.insert((*last).to_string(), value);
    Ok(())
}

/// Parses a `--set key=value` override: the value is read as TOML (`5`, `true`, `"x"`) and
/// otherwise taken as a string (`100ms`, `1=127.0.0.1:2380`).
pub fn parse_override(s: &str) -> Result<(String, toml::Value), ConfigError> {
    let Some((key, value)) = s.split_once('=') else {
        return err(format!("--set `{s}`: expected key=value"));
    };
    let key = key.trim().to_string();
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key, parsed))
}
