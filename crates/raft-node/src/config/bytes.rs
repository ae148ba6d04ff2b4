//! [`ByteSize`]: a size in bytes written as an integer or a string with a unit ("1.5MiB").

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A number of bytes. In the configuration file it is an integer (`4096`) or a string with
/// an optional binary or decimal unit: `"4KiB"`, `"1.5 MiB"`, `"64MB"`, `"512B"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n << 10)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    /// The size in bytes.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The size as a `usize` (saturating on 32-bit targets).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            let div = 1u64 << shift;
            if n >= div && n.is_multiple_of(div) {
                return write!(f, "{}{unit}", n / div);
            }
            if n >= div && (n * 10).is_multiple_of(div) {
                let tenths = n * 10 / div;
                return write!(f, "{}.{}{unit}", tenths / 10, tenths % 10);
            }
        }
        write!(f, "{n}B")
    }
}

/// Parsing is the `parse-size` crate's (fractions, spaces, `_` digit groups, units up to
/// exabytes, `KB` = 1000 and `KiB` = 1024), with one adaptation kept from raftd's own
/// parser: a bare one-letter unit (`2G`, `512k`) is binary, as in `ulimit` and most server
/// configuration, where `parse-size` would read it as decimal. `parse-size` offers either
/// all-binary or all-decimal conventional units, not this mix, hence the rewrite below
/// before handing the text over.
impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let unit_at = s
            .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
            .map_or(0, |i| i + 1);
        let unit = &s[unit_at..];
        let binary_letter = matches!(unit, "k" | "K" | "m" | "M" | "g" | "G" | "t" | "T");
        let text = if binary_letter {
            format!("{s}i")
        } else {
            s.to_string()
        };
        parse_size::parse_size(&text)
            .map(ByteSize)
            .map_err(|e| format!("`{s}` is not a size (e.g. 4096, \"64KiB\", \"1.5MiB\"): {e}"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: an integer number of bytes or a string like \"64KiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("4096"), Ok(4096));
        assert_eq!(p("4KiB"), Ok(4096));
        assert_eq!(p("1.5 MiB"), Ok(1_572_864));
        assert_eq!(p("64mb"), Ok(64_000_000));
        assert_eq!(p("2G"), Ok(2 << 30));
        assert!(p("12 parsecs").is_err());
        assert!(p("MiB").is_err());
        assert!(p("1.2.3MiB").is_err());
        assert_eq!(p("512k"), Ok(512 << 10));
        assert_eq!(p("1.5GB"), Ok(1_500_000_000));
        assert_eq!(p("64 KiB"), Ok(64 << 10));
        assert_eq!(p("1_048_576"), Ok(1 << 20));
        assert!(p("-1MiB").is_err());
        assert!(p("").is_err());
        let e = p("12 parsecs").unwrap_err();
        assert!(e.contains("is not a size"), "{e}");
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(ByteSize(1_572_864).to_string(), "1.5MiB");
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        for n in [0, 1, 4096, 1_572_864, 3 << 30, 123_456_789] {
            let b = ByteSize(n);
            if b.to_string().contains('.') {
                continue;
            }
            assert_eq!(b.to_string().parse::<ByteSize>(), Ok(b));
        }
    }
}
