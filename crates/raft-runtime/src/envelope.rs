//! The envelope around every command the runtime proposes: who proposed it, so that the
//! node holding the client's request recognises the entry when it is applied.
//!
//! Format (little endian), followed by the command bytes:
//! ```text
//! u8  magic 0xE1 (format version 1)
//! u64 origin node id
//! u64 incarnation of the origin's runtime (random per start: request ids never repeat)
//! u64 request id (per incarnation)
//! ```
//! An entry's data that is empty is the no-op a new leader appends; data that is not an
//! envelope (written by another tool) is applied as a command nobody waits for.

use bytes::{BufMut, Bytes, BytesMut};

/// The first byte of an envelope.
pub const MAGIC: u8 = 0xE1;
/// Bytes before the command.
pub const HEADER_LEN: usize = 25;

/// Who proposed a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The node that took the client's request.
    pub node: u64,
    /// That node's runtime incarnation.
    pub incarnation: u64,
    /// The request id within the incarnation.
    pub request: u64,
}

/// Wraps `cmd` (one copy into a new buffer; the entry then shares it to the log and wire).
pub fn wrap(origin: Origin, cmd: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + cmd.len());
    b.put_u8(MAGIC);
    b.put_u64_le(origin.node);
    b.put_u64_le(origin.incarnation);
    b.put_u64_le(origin.request);
    b.put_slice(cmd);
    b.freeze()
}

/// Splits an entry's data into its origin (when it is an envelope) and the command.
pub fn unwrap(data: &Bytes) -> (Option<Origin>, Bytes) {
    if data.len() < HEADER_LEN || data[0] != MAGIC {
        return (None, data.clone());
    }
    let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let origin = Origin {
        node: word(1),
        incarnation: word(9),
        request: word(17),
    };
    (Some(origin), data.slice(HEADER_LEN..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_data() {
        let o = Origin {
            node: 3,
            incarnation: 77,
            request: 9,
        };
        let w = wrap(o, b"put x");
        assert_eq!(w.len(), HEADER_LEN + 5);
        assert_eq!(unwrap(&w), (Some(o), Bytes::from_static(b"put x")));
        let raw = Bytes::from_static(b"plain");
        assert_eq!(unwrap(&raw), (None, raw.clone()));
    }
}
