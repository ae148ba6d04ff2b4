//! `raftctl`: the command-line client of raftd, over the etcd v3 gRPC API.
//!
//! This file runs a command; the command line is `raftctl/args.rs`, and each family of
//! commands beyond the key-value ones has its module: `member`, `status`, `metrics`, and
//! `admin` (move-leader, config reload).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod admin;
mod args;
mod member;
mod metrics;
mod status;

use admin::{config_reload, move_leader};
use args::{Args, BackupCmd, Cmd, ConfigCmd};
use member::member;
use metrics::metrics_summary;
use status::status;

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Parser;
use raft_kv::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    request_op, response_op,
};
use raft_node::client::{Client, prefix_end};
use raft_node::pb::admin::{SnapshotRequest, admin_client::AdminClient};

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
                    BackupCmd::Prune(a) => {
                        print!("{}", raft_node::backup_report::prune(&a)?);
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
