//! The key-value state machine every simulated node applies, and its command encoding.
//!
//! Commands carry the issuing client and its sequence number; the state machine applies
//! each (client, seq) at most once (a session table, as a real KV service keeps), since the
//! network may duplicate a forwarded proposal. Reads do not go through the log: they are
//! served from the state machine after a ReadIndex round.

use crate::linearizability::{KvInput, KvOutput};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;

/// A write command as it travels in a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvCommand {
    /// The issuing client.
    pub client: u64,
    /// The client's sequence number (strictly increasing per client).
    pub seq: u64,
    /// The key written.
    pub key: u64,
    /// `Put` or `Cas` (never `Get`).
    pub input: KvInput,
}

const TAG_PUT: u8 = 1;
const TAG_CAS: u8 = 2;
const TAG_CAS_ABSENT: u8 = 3;

impl KvCommand {
    /// Encodes the command. Format (little endian): u8 tag (1 put, 2 cas, 3 cas-if-absent),
    /// u64 client, u64 seq, u64 key, u64 value, and for tag 2 a u64 expected value.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(41);
        let (tag, value, expected) = match self.input {
            KvInput::Put(v) => (TAG_PUT, v, None),
            KvInput::Cas {
                expected: Some(e),
                new,
            } => (TAG_CAS, new, Some(e)),
            KvInput::Cas {
                expected: None,
                new,
            } => (TAG_CAS_ABSENT, new, None),
            KvInput::Get => panic!("reads are never proposed"),
        };
        b.put_u8(tag);
        b.put_u64_le(self.client);
        b.put_u64_le(self.seq);
        b.put_u64_le(self.key);
        b.put_u64_le(value);
        if let Some(e) = expected {
            b.put_u64_le(e);
        }
        b.freeze()
    }

    /// Decodes what [`encode`](Self::encode) wrote; `None` for anything else (e.g. the
    /// empty no-op entry of a new leader).
    pub fn decode(mut data: &[u8]) -> Option<Self> {
        if data.len() < 33 {
            return None;
        }
        let tag = data.get_u8();
        let client = data.get_u64_le();
        let seq = data.get_u64_le();
        let key = data.get_u64_le();
        let value = data.get_u64_le();
        let input = match tag {
            TAG_PUT => KvInput::Put(value),
            TAG_CAS if data.len() >= 8 => KvInput::Cas {
                expected: Some(data.get_u64_le()),
                new: value,
            },
            TAG_CAS_ABSENT => KvInput::Cas {
                expected: None,
                new: value,
            },
            _ => return None,
        };
        Some(Self {
            client,
            seq,
            key,
            input,
        })
    }
}

/// The replicated key-value state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    /// The data.
    pub data: BTreeMap<u64, u64>,
    /// Per client: the last sequence number applied and its output.
    pub sessions: BTreeMap<u64, (u64, KvOutput)>,
    /// The index of the last entry applied.
    pub applied: u64,
}

impl KvState {
    /// Applies the entry at `index` carrying `data` (a [`KvCommand`], or anything else,
    /// which is a no-op). Returns the command and its output when it was a command.
    ///
    /// Invariant: called with consecutive indexes (the caller checks).
    pub fn apply(&mut self, index: u64, data: &[u8]) -> Option<(KvCommand, KvOutput)> {
        self.applied = index;
        let cmd = KvCommand::decode(data)?;
        if let Some((seq, out)) = self.sessions.get(&cmd.client)
            && cmd.seq <= *seq
        {
            // A duplicate (or an older retry): already applied, never again.
            return (cmd.seq == *seq).then_some((cmd, *out));
        }
        let out = match cmd.input {
            KvInput::Put(v) => {
                self.data.insert(cmd.key, v);
                KvOutput::PutOk
            }
            KvInput::Cas { expected, new } => {
                let ok = self.data.get(&cmd.key).copied() == expected;
                if ok {
                    self.data.insert(cmd.key, new);
                }
                KvOutput::Cas(ok)
            }
            KvInput::Get => KvOutput::Get(self.data.get(&cmd.key).copied()),
        };
        self.sessions.insert(cmd.client, (cmd.seq, out));
        Some((cmd, out))
    }

    /// Reads a key.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.data.get(&key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        for input in [
            KvInput::Put(7),
            KvInput::Cas {
                expected: Some(3),
                new: 4,
            },
            KvInput::Cas {
                expected: None,
                new: 9,
            },
        ] {
            let c = KvCommand {
                client: 1,
                seq: 2,
                key: 3,
                input,
            };
            assert_eq!(KvCommand::decode(&c.encode()), Some(c));
        }
        assert_eq!(KvCommand::decode(b""), None);
    }

    #[test]
    fn apply_semantics_and_dedup() {
        let mut s = KvState::default();
        let put = |client, seq, v| {
            KvCommand {
                client,
                seq,
                key: 1,
                input: KvInput::Put(v),
            }
            .encode()
        };
        assert_eq!(s.apply(1, &[]), None);
        assert_eq!(
            s.apply(2, &put(1, 1, 10)).map(|r| r.1),
            Some(KvOutput::PutOk)
        );
        assert_eq!(s.get(1), Some(10));
        assert_eq!(
            s.apply(3, &put(2, 1, 20)).map(|r| r.1),
            Some(KvOutput::PutOk)
        );
        // A duplicate of client 1's write does not take effect again.
        assert_eq!(
            s.apply(4, &put(1, 1, 10)).map(|r| r.1),
            Some(KvOutput::PutOk)
        );
        assert_eq!(s.get(1), Some(20));
        let cas = KvCommand {
            client: 1,
            seq: 2,
            key: 1,
            input: KvInput::Cas {
                expected: Some(20),
                new: 30,
            },
        };
        assert_eq!(
            s.apply(5, &cas.encode()).map(|r| r.1),
            Some(KvOutput::Cas(true))
        );
        let cas2 = KvCommand { seq: 3, ..cas };
        assert_eq!(
            s.apply(6, &cas2.encode()).map(|r| r.1),
            Some(KvOutput::Cas(false))
        );
        assert_eq!(s.get(1), Some(30));
        assert_eq!(s.applied, 6);
    }
}
