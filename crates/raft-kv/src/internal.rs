//! The node's internal records: the `b'i'` key space, which no client request can name
//! (client keys live under `b'k'`), replicated through the log and carried by snapshots.
//!
//! Records:
//! - `b'i' ++ b"peer/" ++ member id (u64 BE)` -> prost `kvcmd.MemberPeerUrls`: the peer URLs
//!   of a member, written by [`Op::SetPeerUrls`](crate::Op::SetPeerUrls) before the
//!   configuration change that adds it.
//! - `b'i' ++ b"lease/" ++ lease id (u64 BE)` -> prost `kvlease.LeaseRecord`: a lease (see
//!   `crate::lease::record`).
//! - `b'i' ++ b"auth/" ++ ...` -> users, roles, the enabled flag and the auth revision (see
//!   `crate::auth::record`).

use crate::error::{Error, Result};
use crate::layout::INTERNAL;
use crate::pb::kvcmd::MemberPeerUrls;
use prost::Message;
use std::collections::BTreeMap;

/// The name prefix of peer URL records.
const PEER: &[u8] = b"peer/";

/// The sled key of member `id`'s peer URL record.
pub(crate) fn peer_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + PEER.len() + 8);
    k.push(INTERNAL);
    k.extend_from_slice(PEER);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The value of a peer URL record.
pub(crate) fn encode_peer_urls(urls: &MemberPeerUrls) -> Vec<u8> {
    urls.encode_to_vec()
}

/// Every peer URL record of `tree`, by member id.
pub(crate) fn peer_urls(tree: &sled::Tree) -> Result<BTreeMap<u64, Vec<String>>> {
    let mut out = BTreeMap::new();
    let mut prefix = vec![INTERNAL];
    prefix.extend_from_slice(PEER);
    for item in tree.scan_prefix(&prefix) {
        let (_, v) = item?;
        let urls = MemberPeerUrls::decode(v.as_ref())
            .map_err(|e| Error::corrupt(format!("peer URL record: {e}")))?;
        out.insert(urls.id, urls.peer_urls);
    }
    Ok(out)
}

/// Checks a snapshot record of the internal space.
pub(crate) fn validate(key: &[u8], value: &[u8]) -> bool {
    let Some(name) = key.get(1..) else {
        return false;
    };
    if let Some(id) = name.strip_prefix(crate::lease::record::LEASE) {
        return crate::lease::record::validate(id, value);
    }
    if let Some(rest) = name.strip_prefix(crate::auth::record::AUTH) {
        return crate::auth::record::validate(rest, value);
    }
    match name.strip_prefix(PEER) {
        Some(id) => id.len() == 8 && MemberPeerUrls::decode(value).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_records() {
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap();
        let urls = MemberPeerUrls {
            id: 7,
            peer_urls: vec!["http://h:7".into()],
        };
        let v = encode_peer_urls(&urls);
        assert!(validate(&peer_key(7), &v));
        assert!(!validate(&peer_key(7)[..5], &v));
        tree.insert(peer_key(7), v).unwrap();
        assert_eq!(peer_urls(&tree).unwrap()[&7], ["http://h:7"]);
    }
}
