//! Snapshot identity and metadata: ids, kinds, and the per-snapshot record kept in the manifest.

use raft_core::{Membership, SnapshotMeta};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A snapshot's identity: unique within a store and, with overwhelming probability, across
/// the nodes of a cluster (a follower installs its leader's snapshots under their own ids).
///
/// Layout: the high 64 bits are the last included log index, the low 64 bits a per-store
/// pseudo-random nonce, so ids sort by index. Displayed as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SnapshotId(pub u128);

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        SnapshotId::parse(&s).ok_or_else(|| format!("invalid snapshot id {s:?}"))
    }
}

impl SnapshotId {
    /// Makes an id from an index and a nonce.
    pub fn new(index: u64, nonce: u64) -> Self {
        SnapshotId(((index as u128) << 64) | nonce as u128)
    }

    /// The log index encoded in the id.
    pub fn index(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// Parses the 32-hex-digit form produced by `Display`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(SnapshotId)
    }

    /// The snapshot's file name in a store or object store.
    pub fn file_name(self) -> String {
        format!("{self}.snap")
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Full (a base) or incremental (a delta against its parent).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Every record of the state at the snapshot's index.
    Full,
    /// Records changed and keys deleted since the parent snapshot.
    Delta,
}

impl SnapshotKind {
    /// The byte used in the file header.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            SnapshotKind::Full => 0,
            SnapshotKind::Delta => 1,
        }
    }

    /// Inverse of [`to_byte`](Self::to_byte).
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(SnapshotKind::Full),
            1 => Some(SnapshotKind::Delta),
            _ => None,
        }
    }
}

/// A membership in a serializable form (raft-core's type carries no serde derives).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// Voters of the incoming (or only) configuration.
    pub voters: Vec<u64>,
    /// Voters of the outgoing configuration while joint.
    pub voters_outgoing: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// Outgoing voters that become learners when the joint configuration is left.
    pub learners_next: Vec<u64>,
    /// Leave the joint configuration automatically.
    pub auto_leave: bool,
}

impl From<&Membership> for MembershipRecord {
    fn from(m: &Membership) -> Self {
        MembershipRecord {
            voters: m.voters.iter().copied().collect(),
            voters_outgoing: m.voters_outgoing.iter().copied().collect(),
            learners: m.learners.iter().copied().collect(),
            learners_next: m.learners_next.iter().copied().collect(),
            auto_leave: m.auto_leave,
        }
    }
}

impl From<&MembershipRecord> for Membership {
    fn from(m: &MembershipRecord) -> Self {
        Membership {
            voters: m.voters.iter().copied().collect(),
            voters_outgoing: m.voters_outgoing.iter().copied().collect(),
            learners: m.learners.iter().copied().collect(),
            learners_next: m.learners_next.iter().copied().collect(),
            auto_leave: m.auto_leave,
        }
    }
}

/// Everything known about one finished snapshot: what the manifest stores per snapshot and
/// what is uploaded next to the file in an object store.
///
/// Invariants: `kind == Full` iff `parent.is_none()`; a delta's parent has an index `<=`
/// this snapshot's `index`; `size` and `checksum` describe the whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// This snapshot's id.
    pub id: SnapshotId,
    /// The snapshot this delta applies on top of; `None` for a full snapshot.
    pub parent: Option<SnapshotId>,
    /// Full or delta.
    pub kind: SnapshotKind,
    /// Last included log index.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Membership at `index`.
    pub membership: MembershipRecord,
    /// Creation time, unix milliseconds (given by the caller).
    pub created_ms: u64,
    /// File size in bytes.
    pub size: u64,
    /// CRC32C of the whole file.
    pub checksum: u32,
    /// Number of put records.
    pub puts: u64,
    /// Number of delete records.
    pub deletes: u64,
}

impl SnapshotInfo {
    /// The raft-core view of what this snapshot covers.
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            index: self.index,
            term: self.term,
            membership: Membership::from(&self.membership),
        }
    }
}
