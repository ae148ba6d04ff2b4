//! `raftctl`: the command-line client of raftd, over the etcd v3 gRPC API.
//!
//! Size: past the house's ~700 lines (certs and backup commands joined); one module per
//! command family is left for issue 24, which thins the binaries.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use raft_kv::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, MemberAddRequest, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest, MoveLeaderRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    compare, request_op, response_op,
};
use raft_node::client::{Client, ClientError, prefix_end};
use raft_node::pb::admin::{
    ClusterStatusRequest, ClusterStatusResponse, SnapshotRequest, admin_client::AdminClient,
};
use std::time::Duration;

/// raftctl: talk to a raftd cluster (or any etcd v3 server).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Client endpoints, comma separated; tried in order until one answers.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        env = "RAFTCTL_ENDPOINTS"
    )]
    endpoints: Vec<String>,
    /// Timeout of each call (e.g. 5s, 500ms).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Dial with TLS, trusting the CA in this PEM file (etcdctl's `--cacert`).
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        global = true,
        value_name = "FILE",
        env = "RAFTCTL_CACERT"
    )]
    cacert: Option<std::path::PathBuf>,
    /// A client certificate, PEM, for servers that ask for one (etcdctl's `--cert`).
    #[arg(
        long = "cert",
        id = "tls_cert",
        global = true,
        value_name = "FILE",
        env = "RAFTCTL_CERT"
    )]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's key, PEM (etcdctl's `--key`).
    #[arg(
        long = "key",
        id = "tls_key",
        global = true,
        value_name = "FILE",
        env = "RAFTCTL_KEY"
    )]
    key: Option<std::path::PathBuf>,
    /// Authenticate as NAME:PASSWORD (etcd authentication; etcdctl's `--user`): every call
    /// then carries the user's token.
    #[arg(
        long = "user",
        global = true,
        value_name = "NAME:PASSWORD",
        env = "RAFTCTL_USER"
    )]
    user: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Writes a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Print the previous value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Reads a key, or every key under a prefix.
    Get {
        /// The key (or prefix).
        key: String,
        /// Read every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// At most this many keys (0: no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Serve from the contacted node without a quorum round (may be stale).
        #[arg(long)]
        serializable: bool,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
        /// Print only the number of keys.
        #[arg(long)]
        count_only: bool,
    },
    /// Deletes a key, or every key under a prefix; prints how many were deleted.
    Del {
        /// The key (or prefix).
        key: String,
        /// Delete every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Print the deleted pairs.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Compare-and-swap: writes VALUE only if KEY currently matches the expectation.
    /// Prints OK, or FAILED (exit code 1) with the current value.
    Cas {
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// Expect this current value.
        #[arg(long, group = "expect")]
        expect_value: Option<String>,
        /// Expect this current version (0: the key does not exist).
        #[arg(long, group = "expect")]
        expect_version: Option<i64>,
        /// Expect the key not to exist (same as --expect-version 0).
        #[arg(long, group = "expect")]
        expect_absent: bool,
    },
    /// Cluster membership.
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// A table of every member (from Admin/ClusterStatus on each member): id, name,
    /// endpoint, role, the leader it knows, term, commit and applied index, and its lag
    /// behind the leader's last index (as the leader sees it).
    Status,
    /// A summary of one node's metrics (proposals, commit latency, fsyncs, elections,
    /// leader changes, traffic), read from its /metrics endpoint.
    Metrics {
        /// The node's metrics address (its `listen_metrics`).
        #[arg(
            long,
            default_value = "127.0.0.1:9090",
            env = "RAFTCTL_METRICS_ADDRESS"
        )]
        address: String,
    },
    /// Takes a snapshot on the first endpoint that answers and compacts its log
    /// (Admin/Snapshot); prints the snapshot's id, index, term, kind and size.
    Snapshot,
    /// Hands leadership to the member TARGET (id).
    MoveLeader {
        /// The new leader's id.
        target: u64,
    },
    /// Node configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Writes a new CA and the certificates of a TLS cluster into a directory: ca.pem,
    /// server.pem (client ports), client.pem (common name root), `member-<id>.pem` (peers,
    /// binding the member id), each with its .key. Talks to no server.
    Certs {
        /// Where to write them (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
        /// The member ids, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        members: Vec<u64>,
        /// The cluster name in the member URIs (raftd's `tls.peer_cert_cluster`).
        #[arg(long, default_value = raft_node::config::DEFAULT_PEER_CERT_CLUSTER)]
        cluster_name: String,
        /// Host names and IP addresses the server and member certificates are valid for.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        hosts: Vec<String>,
        /// How long the certificates are valid (e.g. 90d, 1y).
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Backups in an object store (`backup.url`).
    Backup {
        #[command(subcommand)]
        cmd: BackupCmd,
    },
}

#[derive(Subcommand, Debug)]
enum BackupCmd {
    /// Restore points: snapshots, each member's archived WAL (index ranges and times) and
    /// the range `raftd restore --from URL` can reach.
    List(raft_node::backup_report::BackupArgs),
    /// Reads every object a restore needs and checks its checksums; exits 1 on damage.
    Verify(raft_node::backup_report::BackupArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Makes every endpoint re-read its configuration file and apply the settings that
    /// may change at run time; prints the changed keys per endpoint. Exits 1 when an
    /// endpoint refused (invalid file, or a setting that needs a restart).
    Reload,
}

#[derive(Subcommand, Debug)]
enum MemberCmd {
    /// Lists the members.
    List,
    /// Adds a member at PEER_URL (as a learner with --learner); prints its id.
    Add {
        /// The new member's peer address (host:port or http://host:port).
        peer_url: String,
        /// Add it as a learner (receives the log, does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Removes the member ID.
    Remove {
        /// The member id.
        id: u64,
    },
    /// Promotes the learner ID to a voter.
    Promote {
        /// The member id.
        id: u64,
    },
}

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn range_end(key: &str, prefix: bool) -> Bytes {
    if prefix {
        Bytes::from(prefix_end(key.as_bytes()))
    } else {
        Bytes::new()
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn run(args: Args) -> Result<i32> {
    let mut client = Client::new(args.endpoints.clone()).with_timeout(args.timeout);
    if args.cacert.is_some() || args.cert.is_some() {
        let tls = raft_node::client::tls_from_files(
            args.cacert.as_deref(),
            args.cert.as_deref(),
            args.key.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        client = client.with_tls(tls);
    }
    if let Some(user) = &args.user {
        let (name, password) = user
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--user takes NAME:PASSWORD"))?;
        client = client.authenticate(name, password).await?;
    }
    match args.cmd {
        Cmd::Put {
            key,
            value,
            prev_kv,
        } => {
            let req = PutRequest {
                key: Bytes::from(key),
                value: Bytes::from(value),
                prev_kv,
                ..Default::default()
            };
            let resp = client
                .kv(|mut c| {
                    let req = req.clone();
                    async move { c.put(req).await.map(|r| r.into_inner()) }
                })
                .await?;
            println!("OK");
            if let Some(kv) = resp.prev_kv {
                println!("{}\n{}", show(&kv.key), show(&kv.value));
            }
        }
        Cmd::Get {
            key,
            prefix,
            limit,
            serializable,
            keys_only,
            count_only,
        } => {
            let req = RangeRequest {
                range_end: range_end(&key, prefix),
                key: Bytes::from(key),
                limit,
                serializable,
                keys_only,
                count_only,
                ..Default::default()
            };
            let resp = client
                .kv(|mut c| {
                    let req = req.clone();
                    async move { c.range(req).await.map(|r| r.into_inner()) }
                })
                .await?;
            if count_only {
                println!("{}", resp.count);
            }
            for kv in resp.kvs {
                println!("{}", show(&kv.key));
                if !keys_only {
                    println!("{}", show(&kv.value));
                }
            }
        }
        Cmd::Del {
            key,
            prefix,
            prev_kv,
        } => {
            let req = DeleteRangeRequest {
                range_end: range_end(&key, prefix),
                key: Bytes::from(key),
                prev_kv,
            };
            let resp = client
                .kv(|mut c| {
                    let req = req.clone();
                    async move { c.delete_range(req).await.map(|r| r.into_inner()) }
                })
                .await?;
            println!("{}", resp.deleted);
            for kv in resp.prev_kvs {
                println!("{}\n{}", show(&kv.key), show(&kv.value));
            }
        }
        Cmd::Cas {
            key,
            value,
            expect_value,
            expect_version,
            expect_absent,
        } => {
            let (target, union) = match (expect_value, expect_version, expect_absent) {
                (Some(v), _, _) => (
                    compare::CompareTarget::Value,
                    compare::TargetUnion::Value(Bytes::from(v)),
                ),
                (None, Some(n), _) => (
                    compare::CompareTarget::Version,
                    compare::TargetUnion::Version(n),
                ),
                (None, None, true) => (
                    compare::CompareTarget::Version,
                    compare::TargetUnion::Version(0),
                ),
                (None, None, false) => {
                    bail!("cas needs --expect-value, --expect-version or --expect-absent")
                }
            };
            let key = Bytes::from(key);
            let req = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: target as i32,
                    key: key.clone(),
                    target_union: Some(union),
                    range_end: Bytes::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone(),
                        value: Bytes::from(value),
                        ..Default::default()
                    })),
                }],
                failure: vec![RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key,
                        ..Default::default()
                    })),
                }],
            };
            let resp = client
                .kv(|mut c| {
                    let req = req.clone();
                    async move { c.txn(req).await.map(|r| r.into_inner()) }
                })
                .await?;
            if resp.succeeded {
                println!("OK");
            } else {
                println!("FAILED");
                let current = resp.responses.into_iter().find_map(|r| match r.response {
                    Some(response_op::Response::ResponseRange(rr)) => rr.kvs.into_iter().next(),
                    _ => None,
                });
                match current {
                    Some(kv) => println!(
                        "current value: {} (version {})",
                        show(&kv.value),
                        kv.version
                    ),
                    None => println!("current value: <absent>"),
                }
                return Ok(1);
            }
        }
        Cmd::Member { cmd } => return member(&client, cmd).await,
        Cmd::Status => return status(&client).await,
        Cmd::Metrics { address } => return metrics_summary(&address, args.timeout).await,
        Cmd::Backup { cmd } => {
            use raft_node::backup_report::{list, verify};
            return tokio::task::spawn_blocking(move || -> Result<i32> {
                match cmd {
                    BackupCmd::List(a) => {
                        print!("{}", list(&*a.open()?)?);
                        Ok(0)
                    }
                    BackupCmd::Verify(a) => {
                        let (report, ok) = verify(&*a.open()?)?;
                        print!("{report}");
                        Ok(if ok { 0 } else { 1 })
                    }
                }
            })
            .await?;
        }
        Cmd::MoveLeader { target } => return move_leader(&client, target).await,
        Cmd::Snapshot => {
            let r = client
                .call(|ch| async move {
                    AdminClient::new(ch)
                        .snapshot(SnapshotRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            println!(
                "snapshot {} index {} term {} {} {} bytes",
                r.id, r.index, r.term, r.kind, r.size_bytes
            );
        }
        Cmd::Config {
            cmd: ConfigCmd::Reload,
        } => return config_reload(&client).await,
        Cmd::Certs {
            dir,
            members,
            cluster_name,
            hosts,
            valid_for,
        } => {
            let certs = raft_node::certs::write_cluster_certs(
                &dir,
                &cluster_name,
                &members,
                &hosts,
                valid_for,
            )?;
            println!("CA: {}", certs.ca.display());
            println!("client port: {}", certs.server.0.display());
            println!("client (CN root): {}", certs.client.0.display());
            for (id, cert, _) in &certs.members {
                println!("member {id}: {}", cert.display());
            }
        }
    }
    Ok(0)
}

async fn member(client: &Client, cmd: MemberCmd) -> Result<i32> {
    match cmd {
        MemberCmd::List => {
            let resp = client
                .cluster(|mut c| async move {
                    c.member_list(MemberListRequest { linearizable: true })
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            for m in resp.members {
                let started = if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                };
                println!(
                    "{}, {}, {}, {}, {}, {}",
                    m.id,
                    started,
                    m.name,
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner
                );
            }
        }
        MemberCmd::Add { peer_url, learner } => {
            let url = raft_node::client::endpoint_url(&peer_url);
            let req = MemberAddRequest {
                peer_ur_ls: vec![url.clone()],
                is_learner: learner,
            };
            let resp = client
                .cluster(|mut c| {
                    let req = req.clone();
                    async move { c.member_add(req).await.map(|r| r.into_inner()) }
                })
                .await?;
            let m = resp
                .member
                .context("the server did not return the new member")?;
            let cluster = resp.header.map(|h| h.cluster_id).unwrap_or_default();
            println!(
                "Member {} added to cluster {cluster:x}{}",
                m.id,
                if learner { " as a learner" } else { "" }
            );
            let initial: Vec<String> = resp
                .members
                .iter()
                .flat_map(|m| m.peer_ur_ls.first().map(|u| format!("{}={u}", m.id)))
                .collect();
            println!();
            println!(
                "start it with: raftd --id {} --join --listen-peer {} --initial-cluster {}",
                m.id,
                raft_node::config::strip_scheme(&url),
                initial.join(",")
            );
        }
        MemberCmd::Remove { id } => {
            let resp = client
                .cluster(|mut c| async move {
                    c.member_remove(MemberRemoveRequest { id })
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            let cluster = resp.header.map(|h| h.cluster_id).unwrap_or_default();
            println!("Member {id} removed from cluster {cluster:x}");
        }
        MemberCmd::Promote { id } => {
            let resp = client
                .cluster(|mut c| async move {
                    c.member_promote(MemberPromoteRequest { id })
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            let cluster = resp.header.map(|h| h.cluster_id).unwrap_or_default();
            println!("Member {id} promoted in cluster {cluster:x}");
        }
    }
    Ok(0)
}

/// One member and what its Admin/ClusterStatus answered.
struct MemberStatus {
    id: u64,
    name: String,
    endpoint: String,
    status: Result<ClusterStatusResponse, String>,
}

async fn cluster_statuses(client: &Client) -> Result<Vec<MemberStatus>> {
    // Linearizable first: a follower's own view may lag a member's published client URL.
    // A node cut off from its quorum cannot answer that, and then its own view is what
    // the operator needs to see.
    let list = |linearizable| {
        client.cluster(move |mut c| async move {
            c.member_list(MemberListRequest { linearizable })
                .await
                .map(|r| r.into_inner())
        })
    };
    let list = match list(true).await {
        Ok(l) => l,
        // Nothing answered: asking again for the node's own view would only wait again.
        Err(e @ ClientError::Unreachable(_)) => return Err(e.into()),
        Err(e) => {
            eprintln!("raftctl: no linearizable member list ({e}); showing the node's own view");
            list(false).await?
        }
    };
    let mut rows = Vec::new();
    for m in list.members {
        let endpoint = m.client_ur_ls.first().cloned().unwrap_or_default();
        let status = if endpoint.is_empty() {
            Err("no client URL published".to_string())
        } else {
            client
                .only(&endpoint)
                .call(|ch| async move {
                    AdminClient::new(ch)
                        .cluster_status(ClusterStatusRequest {})
                        .await
                        .map(|r| r.into_inner())
                })
                .await
                .map_err(|e| e.to_string())
        };
        rows.push(MemberStatus {
            id: m.id,
            name: m.name,
            endpoint,
            status,
        });
    }
    Ok(rows)
}

async fn status(client: &Client) -> Result<i32> {
    let rows = cluster_statuses(client).await?;
    // The leader with the highest term is the one whose progress counts.
    let leader = rows
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term);
    let mut table = vec![
        [
            "ID", "NAME", "ENDPOINT", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "LAG",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut errors = Vec::new();
    for r in &rows {
        match &r.status {
            Ok(s) => {
                let lag = leader
                    .and_then(|l| l.peers.iter().find(|p| p.id == r.id))
                    .map_or("-".to_string(), |p| p.lag.to_string());
                table.push(vec![
                    r.id.to_string(),
                    r.name.clone(),
                    r.endpoint.clone(),
                    s.role.clone(),
                    if s.leader == 0 {
                        "-".to_string()
                    } else {
                        s.leader.to_string()
                    },
                    s.term.to_string(),
                    s.commit_index.to_string(),
                    s.applied_index.to_string(),
                    lag,
                ]);
            }
            Err(e) => {
                let mut row = vec![
                    r.id.to_string(),
                    r.name.clone(),
                    r.endpoint.clone(),
                    "unreachable".into(),
                ];
                row.extend(std::iter::repeat_n("-".to_string(), 5));
                table.push(row);
                errors.push(format!("{}: {e}", r.id));
            }
        }
    }
    print_table(&table);
    match leader {
        Some(l) => println!("leader: {} (term {})", l.member_id, l.term),
        None => println!("leader: none known"),
    }
    for e in &errors {
        println!("error: {e}");
    }
    Ok(if rows.iter().any(|r| r.status.is_err()) {
        1
    } else {
        0
    })
}

/// Prints a few key figures of one node's metrics.
async fn metrics_summary(address: &str, timeout: Duration) -> Result<i32> {
    use raft_metrics::{net, runtime, wal};
    let text = raft_node::scrape::http_get(address, "/metrics", timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    let e = raft_node::scrape::parse(&text);
    let count = |name: &str| e.sum(name).map_or("-".to_string(), |v| format!("{v:.0}"));
    let ms = |name: &str, q: f64| {
        e.quantile(name, q)
            .map_or("-".to_string(), |v| format!("{:.3} ms", v * 1e3))
    };
    let latency = |name: &str| {
        format!(
            "p50 {}  p99 {}  (n={})",
            ms(name, 0.5),
            ms(name, 0.99),
            count(&format!("{name}_count"))
        )
    };
    let before = e.sum(net::BYTES_BEFORE_COMPRESSION);
    let after = e.sum(net::BYTES_AFTER_COMPRESSION);
    let wire = match (before, after) {
        (Some(b), Some(a)) if a > 0.0 => format!("{b:.0} -> {a:.0} bytes ({:.2}x)", b / a),
        _ => "-".to_string(),
    };
    let rows: Vec<(&str, String)> = vec![
        (
            "role",
            match e.sum(runtime::IS_LEADER) {
                Some(v) if v > 0.0 => "leader".to_string(),
                Some(_) => "not leader".to_string(),
                None => "-".to_string(),
            },
        ),
        ("term", count(runtime::TERM)),
        ("commit index", count(runtime::COMMIT_INDEX)),
        ("applied index", count(runtime::APPLIED_INDEX)),
        (
            "proposals",
            format!(
                "{} ({} failed)",
                count(runtime::PROPOSALS),
                e.sum(runtime::PROPOSALS_FAILED)
                    .map_or("0".to_string(), |v| format!("{v:.0}"))
            ),
        ),
        (
            "propose -> commit",
            latency(runtime::PROPOSE_TO_COMMIT_SECONDS),
        ),
        (
            "propose -> apply",
            latency(runtime::PROPOSE_TO_APPLY_SECONDS),
        ),
        ("fsyncs", latency(wal::FSYNC_SECONDS)),
        ("elections started", count(runtime::ELECTIONS)),
        ("elections won", count(runtime::ELECTIONS_WON)),
        ("leader changes", count(runtime::LEADER_CHANGES)),
        (
            "heartbeats sent/recv",
            format!(
                "{}/{}",
                e.sum_where(runtime::MESSAGES_SENT, "kind", "heartbeat")
                    .map_or("-".to_string(), |v| format!("{v:.0}")),
                e.sum_where(runtime::MESSAGES_RECEIVED, "kind", "heartbeat")
                    .map_or("-".to_string(), |v| format!("{v:.0}"))
            ),
        ),
        ("wire compression", wire),
        ("frames rejected", count(net::FRAMES_REJECTED)),
    ];
    for (k, v) in rows {
        println!("{k:<22}{v}");
    }
    Ok(0)
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

async fn move_leader(client: &Client, target: u64) -> Result<i32> {
    // MoveLeader must reach the leader: find it through the members' status.
    let rows = cluster_statuses(client).await?;
    let leader = rows
        .iter()
        .filter_map(|r| Some((r.status.as_ref().ok()?, r)))
        .filter(|(s, _)| s.role == "leader")
        .max_by_key(|(s, _)| s.term)
        .map(|(s, r)| (s.member_id, r.endpoint.clone()));
    let Some((leader, endpoint)) = leader else {
        bail!("no member reports being the leader");
    };
    if leader == target {
        println!("Member {target} is already the leader");
        return Ok(0);
    }
    client
        .only(&endpoint)
        .maintenance(|mut c| async move {
            c.move_leader(MoveLeaderRequest { target_id: target })
                .await
                .map(|r| r.into_inner())
        })
        .await?;
    println!("Leadership transferred from {leader} to {target}");
    Ok(0)
}

async fn config_reload(client: &Client) -> Result<i32> {
    use raft_node::pb::admin::{ReloadConfigRequest, admin_client::AdminClient};
    let mut code = 0;
    for ep in client.endpoints() {
        let answer = client
            .only(ep)
            .call(|ch| async move {
                AdminClient::new(ch)
                    .reload_config(ReloadConfigRequest {})
                    .await
                    .map(|r| r.into_inner())
            })
            .await;
        match answer {
            Ok(r) if r.changed.is_empty() => println!("{ep}: reloaded, nothing changed"),
            Ok(r) => println!("{ep}: reloaded, changed: {}", r.changed.join(", ")),
            Err(e) => {
                eprintln!("{ep}: reload refused: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
