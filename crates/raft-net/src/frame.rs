//! Building frames from raft messages (merging and compression) and opening received frames
//! (limits, decompression, decoding, consistency checks).

use crate::compression::{compress, decompress};
use crate::config::{Codec, CompressionConfig};
use crate::convert::{message_from_pb, message_to_pb};
use crate::error::{Error, Result};
use crate::pb;
use bytes::Bytes;
use metrics::counter;
use prost::Message as _;
use raft_core::{Message, NodeId};
use raft_metrics::net as m;

/// Builds the frame carrying `msgs` (all from `from` to `to`), compressing the encoded batch
/// when it is at least `compression.threshold` bytes long.
pub(crate) fn build_frame(
    cluster_id: u64,
    from: NodeId,
    to: NodeId,
    seq: u64,
    msgs: &[Message],
    compression: &CompressionConfig,
) -> Result<pb::Frame> {
    let term = msgs.iter().map(|m| m.term).max().unwrap_or(0);
    let batch = pb::MessageBatch {
        messages: msgs.iter().map(message_to_pb).collect(),
    };
    let raw_len = batch.encoded_len();
    let mut frame = pb::Frame {
        cluster_id,
        from,
        to,
        term,
        seq,
        compression: pb::Compression::None as i32,
        raw_len: raw_len as u64,
        payload: None,
    };
    if compression.codec == Codec::None || raw_len < compression.threshold {
        counter!(m::BYTES_BEFORE_COMPRESSION, "codec" => "none").increment(raw_len as u64);
        counter!(m::BYTES_AFTER_COMPRESSION, "codec" => "none").increment(raw_len as u64);
        frame.payload = Some(pb::frame::Payload::Batch(batch));
        return Ok(frame);
    }
    let encoded = batch.encode_to_vec();
    let compressed = compress(compression.codec, &encoded)?;
    let name = compression.codec.name();
    counter!(m::BYTES_BEFORE_COMPRESSION, "codec" => name).increment(raw_len as u64);
    counter!(m::BYTES_AFTER_COMPRESSION, "codec" => name).increment(compressed.len() as u64);
    frame.compression = codec_to_pb(compression.codec) as i32;
    frame.payload = Some(pb::frame::Payload::Compressed(Bytes::from(compressed)));
    Ok(frame)
}

/// The wire marker of a codec.
pub(crate) fn codec_to_pb(codec: Codec) -> pb::Compression {
    match codec {
        Codec::None => pb::Compression::None,
        Codec::Snappy => pb::Compression::Snappy,
        Codec::Zstd { .. } => pb::Compression::Zstd,
    }
}

/// The codec a wire marker names (the zstd level does not matter for decoding).
pub(crate) fn codec_from_pb(value: i32) -> Result<Codec> {
    match pb::Compression::try_from(value) {
        Ok(pb::Compression::None) => Ok(Codec::None),
        Ok(pb::Compression::Snappy) => Ok(Codec::Snappy),
        Ok(pb::Compression::Zstd) => Ok(Codec::Zstd { level: 0 }),
        Err(_) => Err(Error::Malformed(format!("unknown compression {value}"))),
    }
}

/// Opens a frame whose header (cluster, sender, receiver) was already checked: decompresses
/// within `limit`, decodes, and checks that every message has the frame's sender and
/// receiver.
pub(crate) fn open_frame(frame: pb::Frame, limit: usize) -> Result<Vec<Message>> {
    let codec = codec_from_pb(frame.compression)?;
    let batch = match frame.payload {
        None => return Err(Error::Malformed("frame without payload".into())),
        Some(pb::frame::Payload::Batch(batch)) => {
            if codec != Codec::None {
                return Err(Error::Malformed("inline batch marked compressed".into()));
            }
            batch
        }
        Some(pb::frame::Payload::Compressed(data)) => {
            let raw_len = usize::try_from(frame.raw_len).unwrap_or(usize::MAX);
            let raw = if codec == Codec::None {
                data
            } else {
                Bytes::from(decompress(codec, &data, raw_len, limit)?)
            };
            pb::MessageBatch::decode(raw)
                .map_err(|e| Error::Malformed(format!("undecodable batch: {e}")))?
        }
    };
    if batch.messages.is_empty() {
        return Err(Error::Malformed("empty frame".into()));
    }
    batch
        .messages
        .into_iter()
        .map(|msg| {
            let msg = message_from_pb(msg)?;
            if msg.from != frame.from || msg.to != frame.to {
                return Err(Error::Malformed(format!(
                    "message {}->{} inside frame {}->{}",
                    msg.from, msg.to, frame.from, frame.to
                )));
            }
            Ok(msg)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Append, Entry, EntryKind, MessageBody};

    fn append(n: usize, size: usize) -> Message {
        Message {
            from: 1,
            to: 2,
            term: 5,
            body: MessageBody::Append(Append {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: (0..n)
                    .map(|i| Entry {
                        index: i as u64 + 1,
                        term: 5,
                        kind: EntryKind::Normal,
                        data: Bytes::from(
                            format!("{{\"k\":\"key-{i}\",\"v\":\"value\"}}").repeat(size / 24 + 1),
                        ),
                    })
                    .collect(),
                commit: 0,
            }),
        }
    }

    #[test]
    fn small_frames_stay_inline_and_big_ones_compress() {
        for codec in [Codec::None, Codec::Snappy, Codec::Zstd { level: 3 }] {
            let cfg = CompressionConfig {
                codec,
                threshold: 4096,
            };
            let small = vec![append(1, 100)];
            let f = build_frame(9, 1, 2, 1, &small, &cfg).unwrap();
            assert!(matches!(f.payload, Some(pb::frame::Payload::Batch(_))));
            assert_eq!(open_frame(f, 1 << 20).unwrap(), small);

            let big = vec![append(20, 1000), append(3, 10)];
            let f = build_frame(9, 1, 2, 2, &big, &cfg).unwrap();
            assert_eq!(f.term, 5);
            if codec == Codec::None {
                assert!(matches!(f.payload, Some(pb::frame::Payload::Batch(_))));
            } else {
                let Some(pb::frame::Payload::Compressed(c)) = &f.payload else {
                    panic!("not compressed")
                };
                assert!((c.len() as u64) < f.raw_len / 4);
            }
            assert_eq!(open_frame(f, 1 << 20).unwrap(), big);
        }
    }

    #[test]
    fn limits_and_mismatches_are_refused() {
        let cfg = CompressionConfig {
            codec: Codec::Snappy,
            threshold: 0,
        };
        let f = build_frame(9, 1, 2, 1, &[append(20, 1000)], &cfg).unwrap();
        assert!(matches!(open_frame(f, 1000), Err(Error::TooLarge { .. })));

        let mut f = build_frame(9, 1, 2, 1, &[append(1, 10)], &cfg).unwrap();
        f.from = 3;
        assert!(matches!(open_frame(f, 1 << 20), Err(Error::Malformed(_))));

        let mut f = build_frame(9, 1, 2, 1, &[append(1, 10)], &cfg).unwrap();
        f.payload = Some(pb::frame::Payload::Compressed(Bytes::from_static(b"junk")));
        assert!(open_frame(f, 1 << 20).is_err());

        let mut f = build_frame(9, 1, 2, 1, &[append(1, 10)], &cfg).unwrap();
        f.compression = 42;
        assert!(matches!(open_frame(f, 1 << 20), Err(Error::Malformed(_))));
    }
}
