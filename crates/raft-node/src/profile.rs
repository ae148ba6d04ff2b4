//! CPU profiles of the running process for `/debug/pprof/profile`: sampled with the
//! `pprof` crate (SIGPROF at [`FREQUENCY_HZ`]), answered in pprof's protobuf format
//! (gzip-compressed, as `go tool pprof` and `pprof` read it) or as an SVG flame graph.

use crate::http::{Body, query_param, reply, reply_text};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// Samples per second while a profile is taken.
pub const FREQUENCY_HZ: i32 = 100;

/// Longest profile one request may ask for, in seconds.
pub const MAX_SECONDS: u64 = 60;

/// Length of a profile when the request names none, in seconds.
pub const DEFAULT_SECONDS: u64 = 30;

/// Takes CPU profiles, one at a time per process.
#[derive(Clone, Default)]
pub struct Profiler {
    busy: Arc<AtomicBool>,
}

/// Clears the busy flag when the profile ends (also when it fails).
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One stack (root first) and how many samples saw it.
pub type Stacks = BTreeMap<Vec<String>, u64>;

/// The output format of a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Pprof,
    Svg,
}

impl Profiler {
    /// Answers `/debug/pprof/profile?seconds=N[&format=svg]`.
    pub async fn serve(&self, query: &str) -> Response<Body> {
        let seconds = match query_param(query, "seconds") {
            None => DEFAULT_SECONDS,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=MAX_SECONDS).contains(&n) => n,
                _ => {
                    return reply_text(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "seconds must be a whole number from 1 to {MAX_SECONDS}, not `{v}`"
                        ),
                    );
                }
            },
        };
        let format = match query_param(query, "format") {
            None | Some("") | Some("pprof") | Some("proto") => Format::Pprof,
            Some("svg") => Format::Svg,
            Some(other) => {
                return reply_text(
                    StatusCode::BAD_REQUEST,
                    &format!("format must be `pprof` (the default) or `svg`, not `{other}`"),
                );
            }
        };
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return reply_text(
                StatusCode::CONFLICT,
                "a profile is already being taken; retry when it is done",
            );
        }
        let busy = Busy(self.busy.clone());
        let taken = tokio::task::spawn_blocking(move || {
            let _busy = busy;
            take(Duration::from_secs(seconds))
        })
        .await;
        let profile = match taken {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return reply_text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("profiling failed: {e}"),
                );
            }
            Err(e) => {
                return reply_text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("profiling failed: {e}"),
                );
            }
        };
        match format {
            Format::Pprof => match gzip(&encode_pprof(&profile).encode_to_vec()) {
                Ok(bytes) => {
                    let mut r = reply(StatusCode::OK, "application/octet-stream", bytes);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_DISPOSITION,
                        hyper::header::HeaderValue::from_static(
                            "attachment; filename=\"profile.pb.gz\"",
                        ),
                    );
                    r
                }
                Err(e) => reply_text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("compressing the profile: {e}"),
                ),
            },
            Format::Svg => reply(
                StatusCode::OK,
                "image/svg+xml",
                flame_graph(&profile.stacks, "raftd CPU profile"),
            ),
        }
    }
}

/// A finished CPU profile.
pub struct CpuProfile {
    /// Sampled stacks (root first, one frame name per element) and their sample counts.
    pub stacks: Stacks,
    /// When sampling started, in nanoseconds since the Unix epoch.
    pub start_nanos: i64,
    /// How long it sampled.
    pub duration: Duration,
    /// Samples per second.
    pub frequency: i32,
}

/// Samples this process's CPU for `duration` (blocking the calling thread).
fn take(duration: Duration) -> Result<CpuProfile, pprof::Error> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        // Unwinding through these while a signal interrupts them can deadlock.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()?;
    std::thread::sleep(duration);
    let report = guard.report().build()?;
    let mut stacks = Stacks::new();
    for (frames, count) in &report.data {
        let mut stack = Vec::new();
        for frame in frames.frames.iter().rev() {
            for symbol in frame.iter().rev() {
                stack.push(readable(&symbol.name()));
            }
        }
        // The leaf end holds the profiler's own unwinding frames: drop them.
        while stack.last().is_some_and(|f| is_profiler_frame(f)) {
            stack.pop();
        }
        // Nothing left when the sample interrupted code the unwinder skips (the libraries
        // in the blocklist above): count it, under a name, rather than as an empty stack.
        if stack.is_empty() {
            stack.push(UNKNOWN_FRAME.to_string());
        }
        *stacks.entry(stack).or_default() += (*count).max(0) as u64;
    }
    Ok(CpuProfile {
        stacks,
        start_nanos: report
            .timing
            .start_time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0),
        duration: report.timing.duration,
        frequency: report.timing.frequency.max(1),
    })
}

/// The frame of a sample whose stack could not be unwound (perf's name for it).
const UNKNOWN_FRAME: &str = "[unknown]";

/// True for the frames the sampler itself adds at the leaf of every stack.
fn is_profiler_frame(name: &str) -> bool {
    name.starts_with("backtrace::")
        || name.starts_with("pprof::")
        || name.contains("perf_signal_handler")
        || name == "__restore_rt"
}

/// `<Type as Trait>::method` becomes `Type::method` (and `<Type>::f` becomes `Type::f`):
/// pprof drops everything between angle brackets when it shortens names, which would leave
/// `::method`.
pub fn readable(name: &str) -> String {
    if !name.starts_with('<') {
        return name.to_string();
    }
    let mut depth = 0usize;
    let mut end = None;
    for (i, c) in name.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(end) = end else {
        return name.to_string();
    };
    let inner = &name[1..end];
    let mut depth = 0usize;
    let mut ty = inner;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 && inner[i..].starts_with(" as ") => {
                ty = &inner[..i];
                break;
            }
            _ => {}
        }
    }
    format!("{}{}", readable(ty), &name[end + 1..])
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)?;
    enc.finish()
}

/// The pprof profile format (`profile.proto` of github.com/google/pprof), the messages and
/// fields this endpoint writes.
pub mod proto {
    /// A profile.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        /// What each value of a sample measures.
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        /// The samples.
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        /// Code locations referenced by the samples.
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        /// Functions referenced by the locations.
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        /// Every string of the profile; entry 0 is "".
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        /// When the profile was taken (nanoseconds since the Unix epoch).
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        /// How long it sampled (nanoseconds).
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        /// What `period` measures.
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        /// The sampling period.
        #[prost(int64, tag = "12")]
        pub period: i64,
    }

    /// A value's type and unit (indexes into the string table).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        /// E.g. "cpu".
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        /// E.g. "nanoseconds".
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// One stack and its values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Location ids, leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        /// One value per sample type.
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    /// A code location.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        /// Its id (not 0).
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// The function(s) at this location.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    /// A function at a location.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        /// The function's id.
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        /// The source line (0 when unknown).
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    /// A function.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        /// Its id (not 0).
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Its (demangled) name, an index into the string table.
        #[prost(int64, tag = "2")]
        pub name: i64,
        /// Its system name, an index into the string table.
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        /// Its source file, an index into the string table.
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// Interns strings into a profile's string table.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Self::default();
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Encodes a profile: sample types `samples/count` and `cpu/nanoseconds`, one function and
/// one location per frame name.
pub fn encode_pprof(p: &CpuProfile) -> proto::Profile {
    let mut strings = Strings::new();
    let period = 1_000_000_000 / i64::from(p.frequency);
    let samples = proto::ValueType {
        r#type: strings.id("samples"),
        unit: strings.id("count"),
    };
    let cpu = proto::ValueType {
        r#type: strings.id("cpu"),
        unit: strings.id("nanoseconds"),
    };
    let mut locations: HashMap<String, u64> = HashMap::new();
    let mut function = Vec::new();
    let mut location = Vec::new();
    let mut sample = Vec::new();
    for (stack, &count) in &p.stacks {
        let mut ids = Vec::with_capacity(stack.len());
        for name in stack.iter().rev() {
            let id = match locations.get(name) {
                Some(&id) => id,
                None => {
                    let id = locations.len() as u64 + 1;
                    let n = strings.id(name);
                    function.push(proto::Function {
                        id,
                        name: n,
                        system_name: n,
                        filename: 0,
                    });
                    location.push(proto::Location {
                        id,
                        line: vec![proto::Line {
                            function_id: id,
                            line: 0,
                        }],
                    });
                    locations.insert(name.clone(), id);
                    id
                }
            };
            ids.push(id);
        }
        sample.push(proto::Sample {
            location_id: ids,
            value: vec![count as i64, count as i64 * period],
        });
    }
    proto::Profile {
        sample_type: vec![samples, cpu.clone()],
        sample,
        location,
        function,
        string_table: strings.table,
        time_nanos: p.start_nanos,
        duration_nanos: p.duration.as_nanos() as i64,
        period_type: Some(cpu),
        period,
    }
}

/// One frame of the flame graph: its samples and its callees by name.
#[derive(Default)]
struct Node {
    count: u64,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn depth(&self) -> usize {
        1 + self.children.values().map(Node::depth).max().unwrap_or(0)
    }
}

const WIDTH: f64 = 1200.0;
const ROW: f64 = 16.0;
const TOP: f64 = 36.0;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A warm colour chosen from the name, so a function keeps its colour between graphs.
fn colour(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let r = 205 + (h % 50);
    let g = 80 + ((h >> 8) % 150);
    let b = (h >> 16) % 55;
    format!("rgb({r},{g},{b})")
}

/// Renders `stacks` (root first) as an SVG flame graph: the root at the bottom, each
/// frame as wide as its share of the samples, its callees above it.
pub fn flame_graph(stacks: &Stacks, title: &str) -> String {
    let mut root = Node::default();
    for (stack, &count) in stacks {
        root.count += count;
        let mut node = &mut root;
        for name in stack {
            node = node.children.entry(name.clone()).or_default();
            node.count += count;
        }
    }
    let depth = root.depth();
    let height = TOP + depth as f64 * ROW + 10.0;
    let mut svg = format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"{WIDTH}\" height=\"{height}\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"monospace\" font-size=\"11\">\n\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#f8f8f8\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">{} ({} samples)</text>\n",
        WIDTH / 2.0,
        escape(title),
        root.count
    );
    if root.count == 0 {
        svg.push_str("<text x=\"10\" y=\"50\">no samples: the process was idle</text>\n");
    } else {
        let scale = (WIDTH - 20.0) / root.count as f64;
        let base = height - 10.0 - ROW;
        draw(&mut svg, "all", &root, 10.0, base, scale, root.count);
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw(svg: &mut String, name: &str, node: &Node, x: f64, y: f64, scale: f64, total: u64) {
    let w = node.count as f64 * scale;
    if w < 0.1 {
        return;
    }
    let pct = 100.0 * node.count as f64 / total as f64;
    let label = escape(name);
    svg.push_str(&format!(
        "<g><title>{label} ({} samples, {pct:.2}%)</title>\
         <rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{:.0}\" fill=\"{}\" rx=\"2\"/>",
        node.count,
        ROW - 1.0,
        colour(name)
    ));
    // About 7 px per character at font size 11.
    let fits = ((w - 6.0) / 7.0).floor().max(0.0) as usize;
    if fits >= 3 {
        let shown: String = if name.chars().count() > fits {
            let mut s: String = name.chars().take(fits.saturating_sub(2)).collect();
            s.push_str("..");
            s
        } else {
            name.to_string()
        };
        svg.push_str(&format!(
            "<text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
            x + 3.0,
            y + ROW - 4.0,
            escape(&shown)
        ));
    }
    svg.push_str("</g>\n");
    let mut cx = x;
    for (child_name, child) in &node.children {
        draw(svg, child_name, child, cx, y - ROW, scale, total);
        cx += child.count as f64 * scale;
    }
}

/// Decodes a profile as served (gzip-compressed or plain protobuf).
pub fn decode(bytes: &[u8]) -> Result<proto::Profile, String> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
            .map_err(|e| format!("gunzip: {e}"))?;
        out
    } else {
        bytes.to_vec()
    };
    proto::Profile::decode(Bytes::from(raw)).map_err(|e| format!("protobuf: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CpuProfile {
        let mut stacks = Stacks::new();
        stacks.insert(vec!["main".into(), "run".into(), "fsync".into()], 3);
        stacks.insert(vec!["main".into(), "run".into(), "<encode>&".into()], 1);
        stacks.insert(vec!["main".into(), "idle".into()], 2);
        CpuProfile {
            stacks,
            start_nanos: 1,
            duration: Duration::from_secs(1),
            frequency: 100,
        }
    }

    #[test]
    fn pprof_encoding_round_trips_with_leaf_first_locations() {
        let bytes = gzip(&encode_pprof(&sample()).encode_to_vec()).unwrap();
        let p = decode(&bytes).unwrap();
        assert_eq!(p.string_table[0], "");
        assert_eq!(p.period, 10_000_000);
        assert_eq!(p.sample.len(), 3);
        assert_eq!(p.function.len(), 5, "one function per distinct name");
        let name = |loc: u64| {
            let f = p.function.iter().find(|f| f.id == loc).unwrap();
            p.string_table[f.name as usize].clone()
        };
        let fsync = p
            .sample
            .iter()
            .find(|s| name(s.location_id[0]) == "fsync")
            .expect("the fsync stack");
        let names: Vec<String> = fsync.location_id.iter().map(|&l| name(l)).collect();
        assert_eq!(names, ["fsync", "run", "main"]);
        assert_eq!(fsync.value, vec![3, 30_000_000]);
    }

    #[test]
    fn trait_impl_names_keep_their_type() {
        assert_eq!(
            readable("<raft_kv::KvStore as raft_runtime::StateMachine>::apply"),
            "raft_kv::KvStore::apply"
        );
        assert_eq!(
            readable("<alloc::vec::Vec<u8> as core::clone::Clone>::clone"),
            "alloc::vec::Vec<u8>::clone"
        );
        assert_eq!(readable("<T>::f::{{closure}}"), "T::f::{{closure}}");
        assert_eq!(readable("plain::path"), "plain::path");
        assert_eq!(readable("<unbalanced"), "<unbalanced");
        assert!(is_profiler_frame("backtrace::backtrace::libunwind::trace"));
        assert!(!is_profiler_frame("raft_log::writer::Writer::commit"));
    }

    #[test]
    fn flame_graph_widths_follow_sample_counts_and_names_are_escaped() {
        let svg = flame_graph(&sample().stacks, "t");
        assert!(svg.contains("(6 samples)"), "{svg}");
        assert!(
            svg.contains("<title>run (4 samples, 66.67%)</title>"),
            "{svg}"
        );
        assert!(svg.contains("&lt;encode&gt;&amp;"), "{svg}");
        assert!(!svg.contains("<encode>"), "{svg}");
        let empty = flame_graph(&Stacks::new(), "t");
        assert!(empty.contains("no samples"));
    }
}
