//! Names and descriptions of raftd's own metrics (recorded by `raft-node`).

use crate::{Kind, MetricInfo};
use metrics::Unit;

/// Counter, label `trigger` (`sighup`, `file`, `rpc`): configuration reloads that were
/// applied (from SIGHUP, a file change or `raftctl config reload`), including those that
/// changed nothing.
pub const CONFIG_RELOADS: &str = "raftd_config_reloads_total";

/// Counter, labels `trigger` and `reason` (`no_file`, `invalid`, `fixed_key`, `refused`):
/// configuration reloads refused (an invalid file, or a change to a setting that cannot
/// change at run time); the old configuration stays in force.
pub const CONFIG_RELOAD_FAILURES: &str = "raftd_config_reload_failures_total";

/// Counter, label `endpoint` (`metrics`, `health`, `ready`, `status`, `pprof_profile`,
/// `pprof_heap`, `not_found`): requests served by the HTTP endpoint on `listen_metrics`.
pub const HTTP_REQUESTS: &str = "raftd_http_requests_total";

/// Gauge: watches open on this member's client streams (etcd's Watch).
pub const WATCH_WATCHERS: &str = "raftd_watch_watchers";

/// Gauge: of them, watches catching up from history (an old start revision, a client that
/// fell behind); the rest get events live.
pub const WATCH_UNSYNCED: &str = "raftd_watch_unsynced";

/// Gauge: open watch streams.
pub const WATCH_STREAMS: &str = "raftd_watch_streams";

/// Every metric of this module, with its kind, unit and help text.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: CONFIG_RELOADS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Configuration reloads applied",
    },
    MetricInfo {
        name: CONFIG_RELOAD_FAILURES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Configuration reloads refused (the old configuration stays in force)",
    },
    MetricInfo {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Requests to the HTTP endpoint of listen_metrics, by endpoint",
    },
    MetricInfo {
        name: WATCH_WATCHERS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Watches open on this member",
    },
    MetricInfo {
        name: WATCH_UNSYNCED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Watches catching up from history instead of getting events live",
    },
    MetricInfo {
        name: WATCH_STREAMS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Open watch streams",
    },
];
