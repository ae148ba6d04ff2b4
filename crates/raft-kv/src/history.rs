//! The history space's events: what a write at one revision did to one key.
//!
//! Encoding of the value under `b'h' ++ revision`: the key's length (LEB128 varint), the
//! key, then the key's [`Current`] entry as that write left it (a live version or a
//! tombstone, with the link to the key's previous write).

use crate::error::{Error, Result};
use crate::record::Current;
use prost::bytes::Bytes;

/// Encodes the event of a write that left `key` at `entry`.
pub(crate) fn encode_event(key: &[u8], entry: &Current) -> Vec<u8> {
    let mut buf =
        Vec::with_capacity(10 + key.len() + 80 + entry.live().map_or(0, |r| r.value.len()));
    prost::encoding::encode_varint(key.len() as u64, &mut buf);
    buf.extend_from_slice(key);
    entry.encode_into(&mut buf);
    buf
}

/// Decodes an event into its key and entry.
pub(crate) fn decode_event(mut data: &[u8]) -> Result<(Bytes, Current)> {
    let bad = || Error::corrupt("history event: bad key length");
    let len = usize::try_from(prost::encoding::decode_varint(&mut data).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    if len > data.len() {
        return Err(bad());
    }
    let (key, rest) = data.split_at(len);
    Ok((Bytes::copy_from_slice(key), Current::decode(rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, Rev};

    #[test]
    fn round_trip_and_garbage() {
        let e = Current::Tombstone {
            at: Rev::new(5, 1),
            prev: Some(Rev::new(2, 0)),
        };
        let enc = encode_event(b"key", &e);
        assert_eq!(decode_event(&enc).unwrap(), (Bytes::from_static(b"key"), e));
        let live = Current::Live {
            rec: Record {
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                lease: 0,
                value: Bytes::from_static(b"v"),
            },
            sub: 0,
            prev: None,
        };
        assert_eq!(decode_event(&encode_event(b"", &live)).unwrap().1, live);
        assert!(decode_event(&[5, b'a']).is_err());
        assert!(decode_event(&[]).is_err());
    }
}
