//! `raftctl member ...`: list, add, remove and promote members.

use super::args::MemberCmd;
use anyhow::{Context, Result};
use raft_kv::pb::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
};
use raft_node::client::Client;

pub(super) async fn member(client: &Client, cmd: MemberCmd) -> Result<i32> {
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
