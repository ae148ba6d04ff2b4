//! The node's internal records: the `b'i'` key space, which no client request can name
//! (client keys live under `b'k'`), replicated through the log and carried by snapshots.
//!
//! Records:
//! - `b'i' ++ b"peer/" ++ member id (u64 BE)` -> prost `kvcmd.MemberPeerUrls`: the peer URLs
//!   of a member, written by [`Op::SetPeerUrls`](crate::Op::SetPeerUrls) before the
//!   configuration change that adds it.
//! - `b'i' ++ b"lease/" ++ lease id (u64 BE)` -> prost `kvlease.LeaseRecord`: a lease (see
//!   `crate::lease::record`).
//! - `b'i' ++ b"alarms"` -> prost `etcdserverpb.AlarmResponse` (only `alarms`): the active
//!   alarms, written by [`Op::Alarm`](crate::Op::Alarm) (empty once all are disarmed).
//! - `b'i' ++ b"auth/" ++ ...` -> users, roles, the enabled flag and the auth revision (see
//!   `crate::auth::record`).

use crate::error::{Error, Result};
use crate::layout::INTERNAL;
use crate::pb::etcdserverpb::alarm_request::AlarmAction;
use crate::pb::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use crate::pb::kvcmd::MemberPeerUrls;
use prost::Message;
use std::collections::BTreeMap;

/// The name prefix of peer URL records.
const PEER: &[u8] = b"peer/";

/// The sled key of member `id`'s peer URL record.
pub(crate) fn peer_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + PEER.len() + 8);
    k.push(INTERNAL);
    k.extend_from_slice(PEER);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The value of a peer URL record.
pub(crate) fn encode_peer_urls(urls: &MemberPeerUrls) -> Vec<u8> {
    urls.encode_to_vec()
}

/// Every peer URL record of `tree`, by member id.
pub(crate) fn peer_urls(tree: &sled::Tree) -> Result<BTreeMap<u64, Vec<String>>> {
    let mut out = BTreeMap::new();
    let mut prefix = vec![INTERNAL];
    prefix.extend_from_slice(PEER);
    for item in tree.scan_prefix(&prefix) {
        let (_, v) = item?;
        let urls = MemberPeerUrls::decode(v.as_ref())
            .map_err(|e| Error::corrupt(format!("peer URL record: {e}")))?;
        out.insert(urls.id, urls.peer_urls);
    }
    Ok(out)
}

/// The name of the alarm record.
const ALARMS: &[u8] = b"alarms";

/// The sled key of the alarm record.
pub(crate) fn alarms_key() -> Vec<u8> {
    let mut k = vec![INTERNAL];
    k.extend_from_slice(ALARMS);
    k
}

/// The active alarms (etcd's alarm store): at most one per member and alarm type, in
/// activation order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Alarms {
    pub(crate) list: Vec<AlarmMember>,
}

impl Alarms {
    /// The stored alarms of `tree` (none without a record).
    pub(crate) fn load(tree: &sled::Tree) -> Result<Self> {
        let list = match tree.get(alarms_key())? {
            Some(v) => {
                AlarmResponse::decode(v.as_ref())
                    .map_err(|e| Error::corrupt(format!("alarm record: {e}")))?
                    .alarms
            }
            None => Vec::new(),
        };
        Ok(Alarms { list })
    }

    /// The record's value.
    pub(crate) fn encode(&self) -> Vec<u8> {
        AlarmResponse {
            alarms: self.list.clone(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// Whether a NOSPACE alarm is active (for any member): writes that add data are refused.
    pub(crate) fn no_space(&self) -> bool {
        self.list
            .iter()
            .any(|a| a.alarm == AlarmType::Nospace as i32)
    }

    /// Whether a CORRUPT alarm is active (for any member): the cluster refuses writes.
    pub(crate) fn corrupt(&self) -> bool {
        self.list
            .iter()
            .any(|a| a.alarm == AlarmType::Corrupt as i32)
    }

    /// The alarms of type `alarm` (every type for `NONE`), as etcd's GET answers.
    pub(crate) fn get(&self, alarm: i32) -> Vec<AlarmMember> {
        self.list
            .iter()
            .filter(|a| alarm == AlarmType::None as i32 || a.alarm == alarm)
            .cloned()
            .collect()
    }

    /// Applies an ACTIVATE or DEACTIVATE; returns the alarms it raised or disarmed (an
    /// alarm already active is returned as it is, as etcd does). DEACTIVATE with member 0
    /// disarms the alarm for every member, with type `NONE` every type. GET changes nothing.
    pub(crate) fn apply(&mut self, req: &AlarmRequest) -> Vec<AlarmMember> {
        let member = |a: &AlarmMember| req.member_id == 0 || a.member_id == req.member_id;
        let kind = |a: &AlarmMember| req.alarm == AlarmType::None as i32 || a.alarm == req.alarm;
        match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Activate) => {
                let m = AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                if !self.list.contains(&m) {
                    self.list.push(m);
                }
                vec![m]
            }
            Ok(AlarmAction::Deactivate) => {
                let (gone, kept) = self.list.drain(..).partition(|a| member(a) && kind(a));
                self.list = kept;
                gone
            }
            Ok(AlarmAction::Get) | Err(_) => self.get(req.alarm),
        }
    }
}

/// Checks a snapshot record of the internal space.
pub(crate) fn validate(key: &[u8], value: &[u8]) -> bool {
    let Some(name) = key.get(1..) else {
        return false;
    };
    if name == ALARMS {
        return AlarmResponse::decode(value).is_ok();
    }
    if let Some(id) = name.strip_prefix(crate::lease::record::LEASE) {
        return crate::lease::record::validate(id, value);
    }
    if let Some(rest) = name.strip_prefix(crate::auth::record::AUTH) {
        return crate::auth::record::validate(rest, value);
    }
    match name.strip_prefix(PEER) {
        Some(id) => id.len() == 8 && MemberPeerUrls::decode(value).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_records() {
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap();
        let urls = MemberPeerUrls {
            id: 7,
            peer_urls: vec!["http://h:7".into()],
        };
        let v = encode_peer_urls(&urls);
        assert!(validate(&peer_key(7), &v));
        assert!(!validate(&peer_key(7)[..5], &v));
        tree.insert(peer_key(7), v).unwrap();
        assert_eq!(peer_urls(&tree).unwrap()[&7], ["http://h:7"]);
    }

    #[test]
    fn alarms_activate_and_disarm_as_etcd() {
        let req = |action: AlarmAction, member_id, alarm: AlarmType| AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        };
        let mut a = Alarms::default();
        assert!(!a.no_space());
        a.apply(&req(AlarmAction::Activate, 1, AlarmType::Nospace));
        a.apply(&req(AlarmAction::Activate, 2, AlarmType::Nospace));
        // Twice is once.
        assert_eq!(
            a.apply(&req(AlarmAction::Activate, 2, AlarmType::Nospace))
                .len(),
            1
        );
        a.apply(&req(AlarmAction::Activate, 2, AlarmType::Corrupt));
        assert_eq!(a.list.len(), 3);
        assert!(a.no_space());
        assert_eq!(a.get(AlarmType::Nospace as i32).len(), 2);
        assert_eq!(a.get(AlarmType::None as i32).len(), 3);
        // A record round trip, validated as a snapshot record.
        assert!(validate(&alarms_key(), &a.encode()));
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap();
        tree.insert(alarms_key(), a.encode()).unwrap();
        assert_eq!(Alarms::load(&tree).unwrap(), a);
        // One member's one alarm; then member 0 = every member.
        let gone = a.apply(&req(AlarmAction::Deactivate, 1, AlarmType::Nospace));
        assert_eq!(gone.len(), 1);
        assert!(a.no_space());
        assert!(
            a.apply(&req(AlarmAction::Deactivate, 1, AlarmType::Nospace))
                .is_empty()
        );
        let gone = a.apply(&req(AlarmAction::Deactivate, 0, AlarmType::Nospace));
        assert_eq!(
            gone,
            [AlarmMember {
                member_id: 2,
                alarm: AlarmType::Nospace as i32
            }]
        );
        assert!(!a.no_space());
        assert_eq!(a.list.len(), 1, "CORRUPT stays");
        a.apply(&req(AlarmAction::Deactivate, 0, AlarmType::None));
        assert!(a.list.is_empty());
    }
}
