//! `raftctl move-leader` and `raftctl config reload`: raftd's admin calls.

use super::status::cluster_statuses;
use anyhow::{Result, bail};
use raft_kv::pb::etcdserverpb::MoveLeaderRequest;
use raft_node::client::Client;

pub(super) async fn move_leader(client: &Client, target: u64) -> Result<i32> {
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

pub(super) async fn config_reload(client: &Client) -> Result<i32> {
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
