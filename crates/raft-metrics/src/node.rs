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

/// Counter, label `method` (the full gRPC path, e.g. `/etcdserverpb.KV/Range`, or
/// `unimplemented` for calls answered Unimplemented): client API calls on the client port,
/// counted when they end.
pub const GRPC_REQUESTS: &str = "raftd_grpc_requests_total";

/// Counter, labels `method` and `code` (the gRPC status code as grpc-go names it, e.g.
/// `NotFound`, `Canceled` when the client went away): client API calls that ended with a
/// status other than OK.
pub const GRPC_ERRORS: &str = "raftd_grpc_errors_total";

/// Histogram, label `method`: how long client API calls took, from the request's arrival
/// to the response's end (for streams, Watch and LeaseKeepAlive, the stream's lifetime).
pub const GRPC_REQUEST_SECONDS: &str = "raftd_grpc_request_duration_seconds";

/// Gauge: watches open on this member's client streams (etcd's Watch).
pub const WATCH_WATCHERS: &str = "raftd_watch_watchers";

/// Gauge: of them, watches catching up from history (an old start revision, a client that
/// fell behind); the rest get events live.
pub const WATCH_UNSYNCED: &str = "raftd_watch_unsynced";

/// Gauge: open watch streams.
pub const WATCH_STREAMS: &str = "raftd_watch_streams";

/// Counter, label `result` (`ok`, `mismatch`, `error`): corruption check rounds run by the
/// leader (`corrupt_check_interval`); `mismatch` means a member's `HashKV` differed and the
/// CORRUPT alarm was raised, `error` that the round could not run.
pub const CORRUPTION_CHECKS: &str = "raftd_corruption_checks_total";

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
        name: GRPC_REQUESTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Client API calls (gRPC), by method",
    },
    MetricInfo {
        name: GRPC_ERRORS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Client API calls (gRPC) that failed, by method and status code",
    },
    MetricInfo {
        name: GRPC_REQUEST_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Duration of client API calls (gRPC), by method; for streams their lifetime",
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
    MetricInfo {
        name: CORRUPTION_CHECKS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Corruption check rounds of the leader, by result",
    },
];
