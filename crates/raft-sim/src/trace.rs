//! The readable event log of a run and its hash, used to prove determinism.
//!
//! Every event the simulator decides (a message sent, dropped or delivered, a crash, a
//! client operation, ...) becomes one line `"<time> <what>"`. Each line is folded into a
//! 64-bit FNV-1a hash as it is written, so two runs of one seed can be compared by hash
//! without keeping their traces. Lines themselves are kept only as asked: all of them
//! (replaying one seed), or the most recent ones (a failure report shows the tail).

use std::collections::VecDeque;
use std::fmt::{self, Write as _};

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

/// FNV-1a over `bytes`, continuing from `hash`.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// How many trace lines to keep in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKeep {
    /// Write nothing, not even the hash (sweeps: a failing seed is run again with a trace,
    /// which the trace does not change).
    Off,
    /// Keep only the hash (and count) of lines.
    None,
    /// Keep the last `n` lines (for failure reports).
    Tail(usize),
    /// Keep every line (for replaying one seed).
    All,
}

/// A run's event log.
#[derive(Debug)]
pub struct Trace {
    keep: TraceKeep,
    hash: u64,
    lines_written: u64,
    lines: VecDeque<String>,
    buf: String,
}

impl Trace {
    /// An empty trace keeping lines as `keep` says.
    pub fn new(keep: TraceKeep) -> Self {
        Self {
            keep,
            hash: FNV_OFFSET,
            lines_written: 0,
            lines: VecDeque::new(),
            buf: String::with_capacity(128),
        }
    }

    /// Records one event at simulated time `time`.
    pub fn record(&mut self, time: u64, what: fmt::Arguments<'_>) {
        if self.keep == TraceKeep::Off {
            self.lines_written += 1;
            return;
        }
        self.buf.clear();
        // Writing into a String cannot fail.
        let _ = write!(self.buf, "{time:>9} ");
        let _ = self.buf.write_fmt(what);
        self.hash = fnv1a(self.hash, self.buf.as_bytes());
        self.hash = fnv1a(self.hash, b"\n");
        self.lines_written += 1;
        match self.keep {
            TraceKeep::Off | TraceKeep::None => {}
            TraceKeep::Tail(n) => {
                if n > 0 {
                    // Reuse the oldest line's allocation once the ring is full.
                    let mut line = if self.lines.len() == n {
                        self.lines.pop_front().unwrap_or_default()
                    } else {
                        String::with_capacity(self.buf.len())
                    };
                    line.clear();
                    line.push_str(&self.buf);
                    self.lines.push_back(line);
                }
            }
            TraceKeep::All => self.lines.push_back(self.buf.clone()),
        }
    }

    /// The hash of every line written so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many lines were written (kept or not).
    pub fn lines_written(&self) -> u64 {
        self.lines_written
    }

    /// The lines kept in memory, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// The kept lines joined with newlines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// Records a trace line: `trace!(trace, time, "format", args...)`.
#[macro_export]
macro_rules! trace_line {
    ($trace:expr, $time:expr, $($arg:tt)*) => {
        $trace.record($time, format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn hash_ignores_keeping_and_depends_on_content() {
        let mut a = Trace::new(TraceKeep::None);
        let mut b = Trace::new(TraceKeep::All);
        let mut c = Trace::new(TraceKeep::Tail(1));
        for t in [&mut a, &mut b, &mut c] {
            trace_line!(t, 1, "send {} -> {}", 1, 2);
            trace_line!(t, 2, "crash n{}", 3);
        }
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash(), c.hash());
        assert_eq!(b.lines().count(), 2);
        assert_eq!(c.lines().collect::<Vec<_>>(), vec!["        2 crash n3"]);
        let mut d = Trace::new(TraceKeep::None);
        trace_line!(d, 1, "send {} -> {}", 1, 2);
        trace_line!(d, 2, "crash n{}", 4);
        assert_ne!(a.hash(), d.hash());
        assert_eq!(a.lines_written(), 2);
    }
}
