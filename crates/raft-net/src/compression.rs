//! The payload codecs (zstd, snappy, none), with bounded decompression.
//!
//! Decompression never allocates more than the caller's limit: the declared length is
//! checked first and the codecs are told the capacity, so a small frame cannot expand into
//! an unbounded buffer.

use crate::config::Codec;
use crate::error::{Error, Result};
use std::cell::RefCell;

thread_local! {
    /// A reusable zstd compression context per thread (creating one per call is costly).
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// A reusable zstd decompression context per thread.
    static UNZSTD: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn codec_err(codec: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Codec {
        codec,
        reason: e.to_string(),
    }
}

/// Compresses `data` with `codec` (for [`Codec::None`], returns a copy).
pub fn compress(codec: Codec, data: &[u8]) -> Result<Vec<u8>> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| codec_err("snappy", e)),
        Codec::Zstd { level } => ZSTD.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                let c = zstd::bulk::Compressor::new(level).map_err(|e| codec_err("zstd", e))?;
                *slot = Some((level, c));
            }
            let (_, c) = slot.as_mut().expect("just set");
            c.compress(data).map_err(|e| codec_err("zstd", e))
        }),
    }
}

/// Decompresses `data`, which must expand to exactly `raw_len` bytes; `raw_len` must not
/// exceed `limit`.
pub fn decompress(codec: Codec, data: &[u8], raw_len: usize, limit: usize) -> Result<Vec<u8>> {
    if raw_len > limit {
        return Err(Error::TooLarge {
            size: raw_len as u64,
            limit: limit as u64,
        });
    }
    let out = match codec {
        Codec::None => data.to_vec(),
        Codec::Snappy => {
            let len = snap::raw::decompress_len(data).map_err(|e| codec_err("snappy", e))?;
            if len != raw_len {
                return Err(codec_err(
                    "snappy",
                    format!("declares {len} bytes, frame says {raw_len}"),
                ));
            }
            snap::raw::Decoder::new()
                .decompress_vec(data)
                .map_err(|e| codec_err("snappy", e))?
        }
        Codec::Zstd { .. } => UNZSTD.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| codec_err("zstd", e))?);
            }
            let d = slot.as_mut().expect("just set");
            d.decompress(data, raw_len)
                .map_err(|e| codec_err("zstd", e))
        })?,
    };
    if out.len() != raw_len {
        return Err(Error::Malformed(format!(
            "payload expands to {} bytes, frame says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_like(n: usize) -> Vec<u8> {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                r#"{{"id":{i},"user":"user-{}","op":"put","key":"/registry/pods/ns-{}/pod-{i}","ok":true}},"#,
                i % 97,
                i % 13
            ));
            i += 1;
        }
        s.truncate(n);
        s.into_bytes()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = json_like(100_000);
        for codec in [
            Codec::None,
            Codec::Snappy,
            Codec::Zstd { level: 1 },
            Codec::Zstd { level: 9 },
        ] {
            let c = compress(codec, &data).unwrap();
            if codec != Codec::None {
                assert!(c.len() < data.len() / 3, "{codec:?} ratio too low");
            }
            let d = decompress(codec, &c, data.len(), 1 << 20).unwrap();
            assert_eq!(d, data, "{codec:?}");
        }
    }

    #[test]
    fn decompression_is_bounded_and_checked() {
        let data = json_like(100_000);
        for codec in [Codec::Snappy, Codec::Zstd { level: 3 }] {
            let c = compress(codec, &data).unwrap();
            // Limit below the declared size.
            assert!(matches!(
                decompress(codec, &c, data.len(), 1000),
                Err(Error::TooLarge { .. })
            ));
            // A lie about the size.
            assert!(decompress(codec, &c, 10, 1 << 20).is_err());
            // Garbage.
            assert!(decompress(codec, b"\xff\xfe garbage", 100, 1 << 20).is_err());
        }
    }
}
