//! `raftctl backup list`, `verify` and `prune`: what a backup in an object store can
//! restore (snapshots, each member's archived WAL ranges and times, the restore range), a
//! check that reads every object a restore needs and verifies its checksums, and the
//! retention policy applied on demand (or listed with `--dry-run`).

use crate::node::NodeError;
use raft_log::archive::ArchiveReplay;
use raft_snapshot::{ArchivedSegment, ObjectStore, ObjectStoreConfig, SnapshotInfo};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Where the backup is (the flags of `raftctl backup`; credentials come from the
/// environment as for raftd, or from `--option`).
#[derive(clap::Args, Debug, Clone)]
pub struct BackupArgs {
    /// The backup's URL (`backup.url`): `s3://bucket/prefix`, `gs://`, `az://`, `file:///path`.
    #[arg(long)]
    pub url: String,
    /// Endpoint of an S3-compatible service.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The region (S3).
    #[arg(long)]
    pub region: Option<String>,
    /// Path-style requests (S3-compatible services).
    #[arg(long)]
    pub path_style: bool,
    /// A key of the `object_store` crate, `KEY=VALUE` (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
}

impl BackupArgs {
    /// The object store the flags name.
    pub fn open(&self) -> Result<std::sync::Arc<dyn ObjectStore>, NodeError> {
        let mut c = ObjectStoreConfig::new(self.url.clone());
        c.endpoint = self.endpoint.clone();
        c.region = self.region.clone();
        c.path_style = self.path_style;
        for o in &self.options {
            let (k, v) = o.split_once('=').ok_or_else(|| NodeError::Io {
                what: format!("--option `{o}`: expected KEY=VALUE"),
                source: std::io::Error::other("bad flag"),
            })?;
            c.options.insert(k.to_string(), v.to_string());
        }
        Ok(raft_snapshot::open_object_store(&c)?)
    }
}

/// `raftctl backup prune`: the store and the policy.
#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    /// Where the backup is.
    #[command(flatten)]
    pub store: BackupArgs,
    /// Keep every restore point created within this long before now (e.g. 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keep_for: Option<std::time::Duration>,
    /// Keep the restore points of the chains of the newest N base snapshot indexes (the
    /// copies of a base that several members uploaded count once).
    #[arg(long)]
    pub keep_bases: Option<usize>,
    /// List what would be kept and deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Plans the retention `args` asks for and, unless it is a dry run, carries it out; the
/// report lists every snapshot kept and deleted, the WAL floor, and every archived WAL
/// segment deleted with its index range and why. A policy with neither bound is refused
/// (it would keep everything: almost certainly a forgotten flag).
pub fn prune(args: &PruneArgs) -> Result<String, NodeError> {
    let policy = raft_snapshot::RetentionPolicy {
        keep_for: args.keep_for,
        keep_bases: args.keep_bases,
    };
    if !policy.is_active() {
        return Err(NodeError::Io {
            what: "raftctl backup prune: give --keep-for and/or --keep-bases".into(),
            source: std::io::Error::other("no retention policy"),
        });
    }
    let obj = args.store.open()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let plan = raft_snapshot::plan_retention(&*obj, &policy, now_ms)?;
    let mut out = String::new();
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for (what, list) in [("keep", &plan.keep), (verb, &plan.delete)] {
        let _ = writeln!(out, "{} ({})", what.to_uppercase(), list.len());
        for s in list {
            let _ = writeln!(
                out,
                "{}  index {:<8}  {:<5}  {}",
                s.id,
                s.index,
                if s.parent.is_some() { "delta" } else { "full" },
                time(s.created_ms)
            );
        }
    }
    if !plan.delete_incomplete.is_empty() {
        let _ = writeln!(
            out,
            "{} {} unfinished upload(s) older than every kept base",
            verb,
            plan.delete_incomplete.len()
        );
    }
    let _ = writeln!(
        out,
        "WAL floor: {}",
        match plan.wal_floor {
            Some(f) => format!(
                "index {f} (the oldest kept snapshot: every restore point is at or above it, \
                 segments before the one that wrote it are not read)"
            ),
            None => "none (no segment is deleted for its range)".into(),
        }
    );
    let _ = writeln!(
        out,
        "WAL SEGMENTS: keep {}, {verb} {}",
        plan.keep_segments,
        plan.delete_segments.len()
    );
    for (seg, why) in &plan.delete_segments {
        let _ = writeln!(
            out,
            "member {:<4}  seq {:<6}  {:<7}  started at {:<8}  indexes {:<18}  commit {:<8}  {}",
            seg.node,
            seg.seq,
            if seg.partial { "partial" } else { "closed" },
            seg.meta.first_index,
            seg.meta
                .entries
                .map_or_else(|| "-".to_string(), |(lo, hi)| format!("{lo}..={hi}")),
            seg.meta.commit,
            match why {
                raft_snapshot::SegmentDeletion::BelowFloor => "below the WAL floor",
                raft_snapshot::SegmentDeletion::SupersededPartial =>
                    "partial object superseded by a closed segment",
            }
        );
    }
    if args.dry_run {
        let _ = writeln!(out, "dry run: nothing deleted");
    } else {
        let n = raft_snapshot::apply_retention(&*obj, &plan)?;
        let _ = writeln!(
            out,
            "{} snapshot(s) deleted, {} WAL segment(s) deleted",
            n.snapshots, n.segments
        );
    }
    Ok(out)
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// One member's archived segments, closed ones and a newer partial tail.
fn members(all: Vec<ArchivedSegment>) -> BTreeMap<u64, Vec<ArchivedSegment>> {
    let mut out: BTreeMap<u64, Vec<ArchivedSegment>> = BTreeMap::new();
    for s in all {
        out.entry(s.node).or_default().push(s);
    }
    for segs in out.values_mut() {
        let last_closed = segs.iter().filter(|s| !s.partial).map(|s| s.seq).max();
        segs.retain(|s| !s.partial || last_closed.is_none_or(|c| s.seq > c));
    }
    out
}

/// The runs of consecutive sequence numbers of `segs` (sorted): `(first, last)` positions.
fn runs(segs: &[ArchivedSegment]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (k, s) in segs.iter().enumerate() {
        match out.last_mut() {
            Some((_, last)) if segs[*last].seq + 1 == s.seq => *last = k,
            _ => out.push((k, k)),
        }
    }
    out
}

/// The restore points a backup holds, as text.
pub fn list(obj: &dyn ObjectStore) -> Result<String, NodeError> {
    let (snaps, incomplete) = raft_snapshot::list_snapshots(obj)?;
    let wal = members(raft_snapshot::list_wal_archive(obj)?);
    let mut out = String::new();
    let _ = writeln!(out, "SNAPSHOTS ({})", snaps.len());
    let _ = writeln!(
        out,
        "ID                                INDEX     TERM  KIND   CREATED                   SIZE"
    );
    for s in &snaps {
        let _ = writeln!(
            out,
            "{}  {:<8}  {:<4}  {:<5}  {}  {}",
            s.id,
            s.index,
            s.term,
            if s.parent.is_some() { "delta" } else { "full" },
            time(s.created_ms),
            s.size
        );
    }
    if !incomplete.is_empty() {
        let _ = writeln!(
            out,
            "incomplete uploads (no metadata): {}",
            incomplete.len()
        );
    }
    let _ = writeln!(out, "WAL ARCHIVE");
    let _ = writeln!(
        out,
        "MEMBER  SEGMENTS  INDEXES             COMMIT    WRITTEN"
    );
    let mut reach = 0;
    for (node, segs) in &wal {
        for (a, b) in runs(segs) {
            let run = &segs[a..=b];
            let lo = run.iter().filter_map(|s| s.meta.entries.map(|e| e.0)).min();
            let hi = run.iter().filter_map(|s| s.meta.entries.map(|e| e.1)).max();
            let commit = run.iter().map(|s| s.meta.commit).max().unwrap_or(0);
            let t0 = run.iter().filter_map(|s| s.meta.times.map(|t| t.0)).min();
            let t1 = run.iter().filter_map(|s| s.meta.times.map(|t| t.1)).max();
            reach = reach.max(commit);
            let _ = writeln!(
                out,
                "{node:<6}  {:<8}  {:<18}  {commit:<8}  {}",
                run.len(),
                match (lo, hi) {
                    (Some(l), Some(h)) => format!("{l}..={h}"),
                    _ => "-".into(),
                },
                match (t0, t1) {
                    (Some(a), Some(b)) => format!("{} .. {}", time(a), time(b)),
                    _ => "-".into(),
                }
            );
        }
    }
    let floor = snaps.first().map_or(0, |s| s.index);
    let _ = writeln!(
        out,
        "restore range: index {floor} (the oldest snapshot{}) to {} (--index, --time within \
         the times above; --latest)",
        if snaps.is_empty() {
            ": none, the archive from index 1"
        } else {
            ""
        },
        reach.max(snaps.last().map_or(0, |s| s.index))
    );
    Ok(out)
}

/// Reads every object a restore needs and checks it: each snapshot file record by record
/// against its metadata, each archived segment's CRC32C and every record in it, replayed
/// per member in order. Returns the report and whether everything passed.
pub fn verify(obj: &dyn ObjectStore) -> Result<(String, bool), NodeError> {
    let (snaps, _) = raft_snapshot::list_snapshots(obj)?;
    let mut out = String::new();
    let mut ok = true;
    let by_id: BTreeMap<_, &SnapshotInfo> = snaps.iter().map(|s| (s.id, s)).collect();
    for s in &snaps {
        let parent_ok = s.parent.is_none_or(|p| by_id.contains_key(&p));
        match raft_snapshot::verify_uploaded(obj, s) {
            Ok(()) if parent_ok => {
                let _ = writeln!(out, "ok      snapshot {} (index {})", s.id, s.index);
            }
            Ok(()) => {
                ok = false;
                let _ = writeln!(out, "FAILED  snapshot {}: its parent is missing", s.id);
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "FAILED  snapshot {}: {e}", s.id);
            }
        }
    }
    for (node, segs) in members(raft_snapshot::list_wal_archive(obj)?) {
        for (a, b) in runs(&segs) {
            let mut replay = ArchiveReplay::new();
            let mut failed = None;
            for s in &segs[a..=b] {
                let r = raft_snapshot::download_segment(obj, s)
                    .map_err(|e| e.to_string())
                    .and_then(|data| replay.push(&data).map_err(|e| e.to_string()));
                if let Err(e) = r {
                    failed = Some(format!("segment {}: {e}", s.seq));
                    break;
                }
            }
            let (first, last) = (segs[a].seq, segs[b].seq);
            match failed {
                None => {
                    let _ = writeln!(
                        out,
                        "ok      member {node} segments {first}..={last} (commit {})",
                        replay.commit()
                    );
                }
                Some(e) => {
                    ok = false;
                    let _ = writeln!(out, "FAILED  member {node} segments {first}..={last}: {e}");
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if ok {
            "backup verified"
        } else {
            "backup has damage"
        }
    );
    Ok((out, ok))
}
