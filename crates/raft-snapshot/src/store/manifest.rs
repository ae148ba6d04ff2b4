//! The chain manifest: which snapshot files exist, how they chain, and which chain is current.

use crate::error::{Error, Result};
use crate::fs::{Fs, StdFs};
use crate::info::{SnapshotId, SnapshotInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// File name of the manifest inside a store directory.
pub const MANIFEST_FILE: &str = "MANIFEST.json";
/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// The chain manifest, stored as `MANIFEST.json` in the store directory.
///
/// Format (JSON): `{"version": 1, "head": "<id>" | null, "snapshots": [SnapshotInfo…]}`
/// where ids are 32 hex digits and each `SnapshotInfo` carries id, parent, kind, index,
/// term, membership, created_ms, size, checksum, puts and deletes. It is replaced
/// atomically: written to `MANIFEST.json.tmp`, fsynced, renamed over the old one, and the
/// directory fsynced. A snapshot file is always durable before the manifest names it, and
/// the manifest stops naming a file before the file is deleted.
///
/// Invariants: every parent named by an entry is an entry; `head`, when set, is an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Tip of the current chain.
    pub head: Option<SnapshotId>,
    /// Every durable snapshot, in the order they were added.
    pub snapshots: Vec<SnapshotInfo>,
}

impl Manifest {
    /// An empty manifest.
    pub fn empty() -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            head: None,
            snapshots: Vec::new(),
        }
    }

    /// Looks a snapshot up.
    pub fn get(&self, id: SnapshotId) -> Option<&SnapshotInfo> {
        self.snapshots.iter().find(|s| s.id == id)
    }

    /// The chain from its base to `tip`.
    pub fn chain(&self, tip: SnapshotId) -> Result<Vec<SnapshotInfo>> {
        let by_id: HashMap<_, _> = self.snapshots.iter().map(|s| (s.id, s)).collect();
        let mut out = Vec::new();
        let mut cur = Some(tip);
        while let Some(id) = cur {
            let s = by_id.get(&id).ok_or(Error::UnknownSnapshot(id))?;
            if out.len() > self.snapshots.len() {
                return Err(Error::Invalid(format!("cycle in the chain of {tip}")));
            }
            out.push((*s).clone());
            cur = s.parent;
        }
        out.reverse();
        Ok(out)
    }

    /// Reads the manifest of `dir` on the real file system; `None` when there is none yet.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        Self::load_with(&StdFs, dir)
    }

    /// Reads the manifest of `dir` on `fs`; `None` when there is none yet.
    pub fn load_with(fs: &dyn Fs, dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST_FILE);
        let text = match crate::fs::read_all(fs, &path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| Error::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if m.version != MANIFEST_VERSION {
            return Err(Error::Manifest {
                path,
                reason: format!("unsupported version {}", m.version),
            });
        }
        m.check()
            .map_err(|reason| Error::Manifest { path, reason })?;
        Ok(Some(m))
    }

    /// Checks the invariants.
    pub fn check(&self) -> std::result::Result<(), String> {
        for s in &self.snapshots {
            if let Some(p) = s.parent
                && self.get(p).is_none()
            {
                return Err(format!("snapshot {} names missing parent {p}", s.id));
            }
        }
        if let Some(h) = self.head
            && self.get(h).is_none()
        {
            return Err(format!("head {h} is not listed"));
        }
        Ok(())
    }

    /// Serializes the manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serializes")
    }
}
