//! The cluster's member list as the state machine keeps it (for `Cluster.MemberList`).

use crate::error::{Error, Result};
use crate::pb::etcdserverpb::{self as pb, MemberListResponse};
use prost::Message;

/// One cluster member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// The member's Raft node id.
    pub id: u64,
    /// Human-readable name; empty until the member publishes it.
    pub name: String,
    /// URLs the peers reach it on.
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on; empty until the member publishes them.
    pub client_urls: Vec<String>,
    /// A learner receives the log but does not vote.
    pub is_learner: bool,
}

impl From<&Member> for pb::Member {
    fn from(m: &Member) -> Self {
        pb::Member {
            id: m.id,
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: m.client_urls.clone(),
            is_learner: m.is_learner,
        }
    }
}

impl From<pb::Member> for Member {
    fn from(m: pb::Member) -> Self {
        Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_ur_ls,
            client_urls: m.client_ur_ls,
            is_learner: m.is_learner,
        }
    }
}

/// Encodes a member list (stored under `m/members`, and the snapshot record of that name):
/// a prost `etcdserverpb.MemberListResponse` with only `members` set, ordered by id.
pub(crate) fn encode_members<'a>(members: impl IntoIterator<Item = &'a Member>) -> Vec<u8> {
    MemberListResponse {
        header: None,
        members: members.into_iter().map(pb::Member::from).collect(),
    }
    .encode_to_vec()
}

/// Decodes [`encode_members`]'s output.
pub(crate) fn decode_members(data: &[u8]) -> Result<Vec<Member>> {
    let list = MemberListResponse::decode(data)
        .map_err(|e| Error::corrupt(format!("member list: {e}")))?;
    Ok(list.members.into_iter().map(Member::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = vec![
            Member {
                id: 1,
                name: "a".into(),
                peer_urls: vec!["http://a:2380".into()],
                client_urls: vec![],
                is_learner: false,
            },
            Member {
                id: 2,
                is_learner: true,
                ..Default::default()
            },
        ];
        assert_eq!(decode_members(&encode_members(&ms)).unwrap(), ms);
        assert!(decode_members(&[0xff, 0xff]).is_err());
    }
}
