//! `[limits]`: what one connection or one client may take from a node.

use super::{ByteSize, ConfigError, err};
use serde::{Deserialize, Serialize};

/// `[limits]`: what one connection or one client may take from a node.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// HTTP/2 streams (concurrent calls, watches included) one client connection may open
    /// (etcd `--max-concurrent-streams`; default 1024).
    pub max_concurrent_streams: u32,
    /// Connections one client address (IP) may hold to the client port at once; 0 is
    /// unlimited (default 1024).
    pub max_connections_per_client: usize,
    /// The largest Range response: a Range that would return more key and value bytes is
    /// refused with `RESOURCE_EXHAUSTED` before they are gathered (ask with a `limit`, or
    /// a smaller range). Default 64MiB.
    pub max_range_response_bytes: ByteSize,
    /// Inbound peer connections that may be waiting to show their lane or finish their TLS
    /// handshake at once (default 256).
    pub peer_max_pending_connections: usize,
    /// HTTP/2 streams one peer connection may open (default 16; the transport uses one or
    /// two).
    pub peer_max_concurrent_streams: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 1024,
            max_connections_per_client: 1024,
            max_range_response_bytes: ByteSize::mib(64),
            peer_max_pending_connections: 256,
            peer_max_concurrent_streams: 16,
        }
    }
}

impl LimitsSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            (
                "limits.max_concurrent_streams",
                u64::from(self.max_concurrent_streams),
            ),
            (
                "limits.peer_max_pending_connections",
                self.peer_max_pending_connections as u64,
            ),
            (
                "limits.peer_max_concurrent_streams",
                u64::from(self.peer_max_concurrent_streams),
            ),
        ] {
            if v == 0 {
                return err(format!("{key} must be at least 1"));
            }
        }
        if self.max_range_response_bytes.get() < 1024 {
            return err(format!(
                "limits.max_range_response_bytes ({}) must be at least 1KiB",
                self.max_range_response_bytes
            ));
        }
        Ok(())
    }
}
