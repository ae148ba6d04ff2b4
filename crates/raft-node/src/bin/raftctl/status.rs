//! `raftctl status`: every member's view of the cluster, as a table.

use anyhow::Result;
use raft_kv::pb::etcdserverpb::MemberListRequest;
use raft_node::client::{Client, ClientError};
use raft_node::pb::admin::{
    ClusterStatusRequest, ClusterStatusResponse, admin_client::AdminClient,
};

/// One member and what its Admin/ClusterStatus answered.
pub(super) struct MemberStatus {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) endpoint: String,
    pub(super) status: Result<ClusterStatusResponse, String>,
}

pub(super) async fn cluster_statuses(client: &Client) -> Result<Vec<MemberStatus>> {
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

pub(super) async fn status(client: &Client) -> Result<i32> {
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

pub(super) fn print_table(rows: &[Vec<String>]) {
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
