//! The stored forms of a key's versions: [`Record`] (etcd's revisions, version, lease and
//! value) and [`Current`], the entry of a key in the data space (its latest version, or the
//! tombstone of its deletion), with the revision links that make its history walkable.

use crate::error::{Error, Result};
use crate::pb::mvccpb::KeyValue;
use prost::bytes::Bytes;

/// One version of a key (etcd's `KeyValue` without the key).
///
/// Invariants: `version >= 1`, `0 < create_revision <= mod_revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the write that made this version.
    pub mod_revision: i64,
    /// Writes since creation; 1 after the creating write.
    pub version: i64,
    /// Lease id (0: none).
    pub lease: i64,
    /// The value.
    pub value: Bytes,
}

/// A revision of one write: etcd's `(main, sub)`. `main` is the store revision of the write
/// transaction; `sub` numbers the writes inside it from 0, in the order they were made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rev {
    /// The store revision.
    pub main: i64,
    /// The write's number inside its transaction.
    pub sub: u32,
}

impl Rev {
    /// `(main, sub)`.
    pub fn new(main: i64, sub: u32) -> Self {
        Rev { main, sub }
    }
}

/// A key's entry in the data space: what it is at the store revision.
///
/// Both kinds name the revision of the write that made them (`at`, whose history event
/// holds the same entry) and the revision of the key's previous write (`prev`, `None` when
/// this write is the oldest one kept), so the key's history can be walked back from here.
///
/// Encoding (the value under `b'k' ++ key`, the tail of a history event, and a snapshot
/// record's value), all integers LEB128 varints of the two's-complement `u64`:
/// - format `2`, a live version: `create_revision`, `mod_revision`, `version`, `lease`,
///   `sub`, `prev.main` (0: no previous write), `prev.sub`, then the value to the end;
/// - format `3`, a tombstone: `at.main`, `at.sub`, `prev.main`, `prev.sub`;
/// - format `1` (layout 2, read only): `create_revision`, `mod_revision`, `version`, `lease`,
///   then the value: a live version with `sub` 0 and no previous write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Current {
    /// The key exists.
    Live {
        /// The version.
        rec: Record,
        /// Sub-revision of its write (`at` is `(rec.mod_revision, sub)`).
        sub: u32,
        /// The key's previous write.
        prev: Option<Rev>,
    },
    /// The key was deleted at `at`.
    Tombstone {
        /// The deleting write.
        at: Rev,
        /// The write of the version it deleted.
        prev: Option<Rev>,
    },
}

const FORMAT_V2: u8 = 1;
const FORMAT_LIVE: u8 = 2;
/// The format byte of an encoded tombstone.
pub(crate) const FORMAT_TOMBSTONE: u8 = 3;

impl Current {
    /// The revision of the write that made this entry.
    pub fn at(&self) -> Rev {
        match self {
            Current::Live { rec, sub, .. } => Rev::new(rec.mod_revision, *sub),
            Current::Tombstone { at, .. } => *at,
        }
    }

    /// The key's previous write.
    pub fn prev(&self) -> Option<Rev> {
        match self {
            Current::Live { prev, .. } | Current::Tombstone { prev, .. } => *prev,
        }
    }

    /// The live version, if any.
    pub fn live(&self) -> Option<&Record> {
        match self {
            Current::Live { rec, .. } => Some(rec),
            Current::Tombstone { .. } => None,
        }
    }

    /// Consumes the entry into its live version, if any.
    pub fn into_live(self) -> Option<Record> {
        match self {
            Current::Live { rec, .. } => Some(rec),
            Current::Tombstone { .. } => None,
        }
    }

    /// Encodes the entry (see the type's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(1 + 7 * 10 + self.live().map_or(0, |r| r.value.len()));
        self.encode_into(&mut buf);
        buf
    }

    /// Appends the encoding to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let prev = self.prev().unwrap_or_default();
        let put = |n: i64, buf: &mut Vec<u8>| prost::encoding::encode_varint(n as u64, buf);
        match self {
            Current::Live { rec, sub, .. } => {
                buf.push(FORMAT_LIVE);
                for n in [
                    rec.create_revision,
                    rec.mod_revision,
                    rec.version,
                    rec.lease,
                    i64::from(*sub),
                    prev.main,
                    i64::from(prev.sub),
                ] {
                    put(n, buf);
                }
                buf.extend_from_slice(&rec.value);
            }
            Current::Tombstone { at, .. } => {
                buf.push(FORMAT_TOMBSTONE);
                for n in [at.main, i64::from(at.sub), prev.main, i64::from(prev.sub)] {
                    put(n, buf);
                }
            }
        }
    }

    /// Decodes an entry; a malformed one is [`Error::Corrupt`].
    pub fn decode(data: &[u8]) -> Result<Self> {
        let bad = |what: &str| Error::corrupt(format!("key entry: {what}"));
        let (&format, mut data) = data.split_first().ok_or_else(|| bad("empty"))?;
        let next = |data: &mut &[u8]| -> Result<i64> {
            Ok(prost::encoding::decode_varint(data).map_err(|_| bad("bad varint"))? as i64)
        };
        let sub = |n: i64| u32::try_from(n).map_err(|_| bad("sub-revision out of range"));
        let rev = |main: i64, s: i64| -> Result<Option<Rev>> {
            Ok((main != 0).then_some(Rev::new(main, sub(s)?)))
        };
        match format {
            FORMAT_V2 | FORMAT_LIVE => {
                let mut n = [0i64; 4];
                for slot in &mut n {
                    *slot = next(&mut data)?;
                }
                let (s, prev) = if format == FORMAT_LIVE {
                    let (s, pm, ps) = (next(&mut data)?, next(&mut data)?, next(&mut data)?);
                    (sub(s)?, rev(pm, ps)?)
                } else {
                    (0, None)
                };
                Ok(Current::Live {
                    rec: Record {
                        create_revision: n[0],
                        mod_revision: n[1],
                        version: n[2],
                        lease: n[3],
                        value: Bytes::copy_from_slice(data),
                    },
                    sub: s,
                    prev,
                })
            }
            FORMAT_TOMBSTONE => {
                let (m, s) = (next(&mut data)?, next(&mut data)?);
                let (pm, ps) = (next(&mut data)?, next(&mut data)?);
                if !data.is_empty() {
                    return Err(bad("trailing bytes after a tombstone"));
                }
                Ok(Current::Tombstone {
                    at: Rev::new(m, sub(s)?),
                    prev: rev(pm, ps)?,
                })
            }
            _ => Err(bad("unknown format")),
        }
    }

    /// True when `data` is an entry in layout 2's format (format byte 1).
    pub(crate) fn is_layout_2(data: &[u8]) -> bool {
        data.first() == Some(&FORMAT_V2)
    }
}

impl Record {
    /// The etcd `KeyValue` of this record under `key`.
    pub fn to_key_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let r = Record {
            create_revision: 3,
            mod_revision: 1 << 40,
            version: 7,
            lease: 9,
            value: Bytes::from_static(b"hello"),
        };
        let live = Current::Live {
            rec: r.clone(),
            sub: 2,
            prev: Some(Rev::new(3, 0)),
        };
        assert_eq!(Current::decode(&live.encode()).unwrap(), live);
        assert_eq!(live.at(), Rev::new(1 << 40, 2));
        let first = Current::Live {
            rec: Record::default(),
            sub: 0,
            prev: None,
        };
        assert_eq!(Current::decode(&first.encode()).unwrap(), first);
        let tomb = Current::Tombstone {
            at: Rev::new(9, 1),
            prev: Some(Rev::new(4, 0)),
        };
        assert_eq!(Current::decode(&tomb.encode()).unwrap(), tomb);
        assert!(tomb.live().is_none());
        // Layout 2's records read as live versions without links.
        let mut old = vec![1u8];
        for n in [3u64, 5, 2, 0] {
            prost::encoding::encode_varint(n, &mut old);
        }
        old.extend_from_slice(b"v");
        assert!(Current::is_layout_2(&old));
        let back = Current::decode(&old).unwrap();
        assert_eq!(back.at(), Rev::new(5, 0));
        assert_eq!(back.prev(), None);
        assert_eq!(back.live().unwrap().value.as_ref(), b"v");
        assert!(Current::decode(&[]).is_err());
        assert!(Current::decode(&[9, 0, 0, 0, 0]).is_err());
        assert!(Current::decode(&[2, 0xff]).is_err());
        assert!(Current::decode(&[3, 1, 1, 0, 0, 7]).is_err());
        let kv = r.to_key_value(b"k");
        assert_eq!(kv.key.as_ref(), b"k");
        assert_eq!(kv.version, 7);
    }
}
