//! The stored form of one key's current version: etcd's revisions, version, lease and value.

use crate::error::{Error, Result};
use crate::pb::mvccpb::KeyValue;
use prost::bytes::Bytes;

/// One key's current version (etcd's `KeyValue` without the key).
///
/// Invariants: `version >= 1`, `0 < create_revision <= mod_revision`.
///
/// Encoding (the value under `b'k' ++ key`, and a snapshot record's value): a format byte
/// `1`, then `create_revision`, `mod_revision`, `version`, `lease` as LEB128 varints (the
/// two's-complement `u64` of each `i64`), then the value bytes to the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
    /// Writes since creation; 1 after the creating write.
    pub version: i64,
    /// Lease id; always 0 (leases are not served).
    pub lease: i64,
    /// The value.
    pub value: Bytes,
}

const RECORD_FORMAT: u8 = 1;

impl Record {
    /// Encodes the record (see the type's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(1 + 4 * 10 + self.value.len());
        buf.push(RECORD_FORMAT);
        for n in [
            self.create_revision,
            self.mod_revision,
            self.version,
            self.lease,
        ] {
            prost::encoding::encode_varint(n as u64, &mut buf);
        }
        buf.extend_from_slice(&self.value);
        buf
    }

    /// Decodes a record; a malformed one is [`Error::Corrupt`].
    pub fn decode(mut data: &[u8]) -> Result<Self> {
        let bad = |what: &str| Error::corrupt(format!("key record: {what}"));
        let (&format, rest) = data.split_first().ok_or_else(|| bad("empty"))?;
        if format != RECORD_FORMAT {
            return Err(bad("unknown format"));
        }
        data = rest;
        let mut n = [0i64; 4];
        for slot in &mut n {
            *slot =
                prost::encoding::decode_varint(&mut data).map_err(|_| bad("bad varint"))? as i64;
        }
        Ok(Record {
            create_revision: n[0],
            mod_revision: n[1],
            version: n[2],
            lease: n[3],
            value: Bytes::copy_from_slice(data),
        })
    }

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
            lease: 0,
            value: Bytes::from_static(b"hello"),
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        let empty = Record::default();
        assert_eq!(Record::decode(&empty.encode()).unwrap(), empty);
        assert!(Record::decode(&[]).is_err());
        assert!(Record::decode(&[2, 0, 0, 0, 0]).is_err());
        assert!(Record::decode(&[1, 0xff]).is_err());
        let kv = r.to_key_value(b"k");
        assert_eq!(kv.key.as_ref(), b"k");
        assert_eq!(kv.version, 7);
    }
}
