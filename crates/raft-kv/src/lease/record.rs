//! The stored form of leases: one record per lease in the internal key space, and the
//! attachment index (`b'l'`) from a lease to the keys attached to it.
//!
//! Records:
//! - `b'i' ++ b"lease/" ++ id (i64 as u64 BE)` -> prost `kvlease.LeaseRecord` (id, granted
//!   TTL, the remaining TTL of the last checkpoint): written by apply (grant, checkpoint),
//!   removed by revoke; carried by every snapshot (full and delta: a snapshot holds every
//!   internal record) and counted in `Hash`.
//! - `b'l' ++ id (i64 as u64 BE) ++ user key` -> empty: the key's current version is attached
//!   to the lease. Invariant: present exactly for the live keys whose current entry has
//!   `lease == id != 0`. Written in the same sled batch as the data it indexes; never in a
//!   snapshot (a restore rebuilds it from the data records it writes).

use crate::error::{Error, Result};
use crate::layout::{ATTACH, INTERNAL};
use crate::pb::kvlease::LeaseRecord;
use prost::Message;

/// The name prefix of lease records in the internal space.
pub(crate) const LEASE: &[u8] = b"lease/";

/// The sled key of lease `id`'s record.
pub(crate) fn record_key(id: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + LEASE.len() + 8);
    k.push(INTERNAL);
    k.extend_from_slice(LEASE);
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

/// The prefix of every lease record.
pub(crate) fn records_prefix() -> Vec<u8> {
    let mut k = vec![INTERNAL];
    k.extend_from_slice(LEASE);
    k
}

/// The value of a lease record.
pub(crate) fn encode(rec: &LeaseRecord) -> Vec<u8> {
    rec.encode_to_vec()
}

/// Decodes a lease record.
pub(crate) fn decode(value: &[u8]) -> Result<LeaseRecord> {
    LeaseRecord::decode(value).map_err(|e| Error::corrupt(format!("lease record: {e}")))
}

/// Every lease record of `tree`, by id.
pub(crate) fn load_all(tree: &sled::Tree) -> Result<Vec<LeaseRecord>> {
    let mut out = Vec::new();
    for item in tree.scan_prefix(records_prefix()) {
        let (_, v) = item?;
        out.push(decode(&v)?);
    }
    Ok(out)
}

/// Checks a snapshot record of the internal space whose name starts with [`LEASE`]: the id in
/// the key is the record's.
pub(crate) fn validate(name_after_prefix: &[u8], value: &[u8]) -> bool {
    let Ok(id) = <[u8; 8]>::try_from(name_after_prefix) else {
        return false;
    };
    LeaseRecord::decode(value).is_ok_and(|r| r.id as u64 == u64::from_be_bytes(id))
}

/// The prefix of lease `id`'s attachments.
pub(crate) fn attach_prefix(id: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ATTACH;
    k[1..].copy_from_slice(&(id as u64).to_be_bytes());
    k
}

/// The sled key of the attachment of `key` to lease `id`.
pub(crate) fn attach_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.extend_from_slice(&attach_prefix(id));
    k.extend_from_slice(key);
    k
}

/// The user keys attached to lease `id` in `tree`, in key order.
pub(crate) fn attached(tree: &sled::Tree, id: i64) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for item in tree.scan_prefix(attach_prefix(id)) {
        let (k, _) = item?;
        out.push(k[9..].to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_records() {
        let rec = LeaseRecord {
            id: 0x1234,
            ttl: 10,
            remaining_ttl: 0,
        };
        let k = record_key(rec.id);
        assert!(k.starts_with(&records_prefix()));
        assert!(validate(&k[1 + LEASE.len()..], &encode(&rec)));
        // The id in the key must be the record's.
        assert!(!validate(&record_key(7)[1 + LEASE.len()..], &encode(&rec)));
        assert!(!validate(b"short", &encode(&rec)));
        assert_eq!(decode(&encode(&rec)).unwrap(), rec);
        // Attachments of one lease sort together, by key.
        assert!(attach_key(1, b"b") > attach_key(1, b"a"));
        assert!(attach_key(2, b"") > attach_key(1, b"\xff\xff"));
        assert!(attach_key(1, b"a").starts_with(&attach_prefix(1)));
    }
}
