//! `[compression]`: how peer messages and snapshot chunks are compressed.

use super::{ByteSize, ConfigError, err};
use serde::{Deserialize, Serialize};

/// The codec names of `compression.codec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CodecKey {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// Zstandard at `compression.level`.
    #[default]
    Zstd,
}

/// `[compression]`: how peer messages and snapshot chunks are compressed.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSection {
    /// `none`, `snappy` or `zstd` (default zstd).
    pub codec: CodecKey,
    /// The zstd level, 1..=22 (default 1).
    pub level: i32,
    /// Payloads below this size go uncompressed (default 4KiB).
    pub threshold: ByteSize,
}

impl Default for CompressionSection {
    fn default() -> Self {
        Self {
            codec: CodecKey::Zstd,
            level: 1,
            threshold: ByteSize::kib(4),
        }
    }
}

impl CompressionSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.codec == CodecKey::Zstd && !(1..=22).contains(&self.level) {
            return err(format!(
                "compression.level ({}) must be between 1 and 22 for zstd",
                self.level
            ));
        }
        Ok(())
    }

    /// The transport's compression settings.
    pub fn to_net(&self) -> raft_net::CompressionConfig {
        raft_net::CompressionConfig {
            codec: match self.codec {
                CodecKey::None => raft_net::Codec::None,
                CodecKey::Snappy => raft_net::Codec::Snappy,
                CodecKey::Zstd => raft_net::Codec::Zstd { level: self.level },
            },
            threshold: self.threshold.as_usize(),
        }
    }
}
