//! `raftctl`: the command-line client of raftd, over the etcd v3 gRPC API.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use raft_kv::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, MemberAddRequest, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest, MoveLeaderRequest, PutRequest, RangeRequest, RequestOp, StatusRequest,
    StatusResponse, TxnRequest, compare, request_op, response_op,
};
use raft_node::client::{Client, prefix_end};
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
    /// A table of every member: id, name, role, term, raft index, applied index, revision.
    Status,
    /// Hands leadership to the member TARGET (id).
    MoveLeader {
        /// The new leader's id.
        target: u64,
    },
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
    let client = Client::new(args.endpoints.clone()).with_timeout(args.timeout);
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
        Cmd::MoveLeader { target } => return move_leader(&client, target).await,
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

/// One member's row in `raftctl status`.
struct Row {
    id: u64,
    name: String,
    endpoint: String,
    status: Result<StatusResponse, String>,
}

async fn member_statuses(client: &Client) -> Result<Vec<Row>> {
    let list = client
        .cluster(|mut c| async move {
            c.member_list(MemberListRequest {
                linearizable: false,
            })
            .await
            .map(|r| r.into_inner())
        })
        .await?;
    let mut rows = Vec::new();
    for m in list.members {
        let endpoint = m.client_ur_ls.first().cloned().unwrap_or_default();
        let status = if endpoint.is_empty() {
            Err("no client URL published".to_string())
        } else {
            client
                .only(&endpoint)
                .maintenance(|mut c| async move {
                    c.status(StatusRequest {}).await.map(|r| r.into_inner())
                })
                .await
                .map_err(|e| e.to_string())
        };
        rows.push(Row {
            id: m.id,
            name: m.name,
            endpoint,
            status,
        });
    }
    Ok(rows)
}

async fn status(client: &Client) -> Result<i32> {
    let rows = member_statuses(client).await?;
    let mut table = vec![
        [
            "ID", "NAME", "ENDPOINT", "ROLE", "TERM", "INDEX", "APPLIED", "REVISION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut errors = Vec::new();
    for r in &rows {
        match &r.status {
            Ok(s) => {
                let member = s.header.as_ref().map(|h| h.member_id).unwrap_or(r.id);
                let role = if s.is_learner {
                    "learner"
                } else if s.leader == member && member != 0 {
                    "leader"
                } else {
                    "follower"
                };
                table.push(vec![
                    r.id.to_string(),
                    r.name.clone(),
                    r.endpoint.clone(),
                    role.to_string(),
                    s.raft_term.to_string(),
                    s.raft_index.to_string(),
                    s.raft_applied_index.to_string(),
                    s.header
                        .as_ref()
                        .map(|h| h.revision.to_string())
                        .unwrap_or_default(),
                ]);
                errors.extend(s.errors.iter().map(|e| format!("{}: {e}", r.id)));
            }
            Err(e) => {
                table.push(vec![
                    r.id.to_string(),
                    r.name.clone(),
                    r.endpoint.clone(),
                    "unreachable".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                errors.push(format!("{}: {e}", r.id));
            }
        }
    }
    print_table(&table);
    for e in &errors {
        println!("error: {e}");
    }
    Ok(if rows.iter().any(|r| r.status.is_err()) {
        1
    } else {
        0
    })
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
    let rows = member_statuses(client).await?;
    let leader = rows.iter().find_map(|r| {
        let s = r.status.as_ref().ok()?;
        let member = s.header.as_ref()?.member_id;
        (s.leader == member).then(|| (member, r.endpoint.clone()))
    });
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
