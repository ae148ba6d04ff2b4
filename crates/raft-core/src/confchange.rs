//! Membership changes: computing the next configuration, and the entry payload format.
//!
//! This module only knows [`Membership`]; the progress tracker follows whatever
//! configuration it is handed, so there is no loop between the two.

use crate::entry::NodeId;
use crate::error::DecodeError;
use crate::membership::{ConfChange, ConfChangeOp, ConfChangeTransition, Membership};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeSet;

/// The format version written by [`encode`].
const VERSION: u8 = 1;

/// Encodes a change as the data of an [`EntryKind::ConfChange`](crate::EntryKind) entry.
///
/// Format (little endian):
/// ```text
/// u8  version (1)
/// u8  transition: 0 Auto, 1 JointImplicit, 2 JointExplicit
/// u32 number of operations
/// per operation: u8 tag (1 AddVoter, 2 AddLearner, 3 RemoveNode), u64 node id (non-zero)
/// ```
pub fn encode(cc: &ConfChange) -> Bytes {
    let mut b = BytesMut::with_capacity(6 + cc.ops.len() * 9);
    b.put_u8(VERSION);
    b.put_u8(match cc.transition {
        ConfChangeTransition::Auto => 0,
        ConfChangeTransition::JointImplicit => 1,
        ConfChangeTransition::JointExplicit => 2,
    });
    b.put_u32_le(u32::try_from(cc.ops.len()).expect("fewer than 2^32 operations"));
    for op in &cc.ops {
        let (tag, id) = match *op {
            ConfChangeOp::AddVoter(id) => (1, id),
            ConfChangeOp::AddLearner(id) => (2, id),
            ConfChangeOp::RemoveNode(id) => (3, id),
        };
        b.put_u8(tag);
        b.put_u64_le(id);
    }
    b.freeze()
}

/// Decodes what [`encode`] wrote.
pub fn decode(data: &[u8]) -> Result<ConfChange, DecodeError> {
    let need = |offset: usize, n: usize| -> Result<(), DecodeError> {
        if data.len() < offset + n {
            Err(DecodeError::Truncated {
                offset,
                needed: offset + n - data.len(),
            })
        } else {
            Ok(())
        }
    };
    need(0, 6)?;
    if data[0] != VERSION {
        return Err(DecodeError::UnknownVersion(data[0]));
    }
    let transition = match data[1] {
        0 => ConfChangeTransition::Auto,
        1 => ConfChangeTransition::JointImplicit,
        2 => ConfChangeTransition::JointExplicit,
        t => return Err(DecodeError::UnknownTransition(t)),
    };
    let count = u32::from_le_bytes(data[2..6].try_into().expect("4 bytes")) as usize;
    let mut offset = 6;
    // Do not trust `count` for the allocation: it comes from outside.
    let mut ops = Vec::with_capacity(count.min((data.len() - offset) / 9));
    for _ in 0..count {
        need(offset, 9)?;
        let id = u64::from_le_bytes(data[offset + 1..offset + 9].try_into().expect("8 bytes"));
        if id == 0 {
            return Err(DecodeError::ZeroNodeId(offset));
        }
        ops.push(match data[offset] {
            1 => ConfChangeOp::AddVoter(id),
            2 => ConfChangeOp::AddLearner(id),
            3 => ConfChangeOp::RemoveNode(id),
            tag => return Err(DecodeError::UnknownOp { tag, offset }),
        });
        offset += 9;
    }
    if offset != data.len() {
        return Err(DecodeError::TrailingBytes(data.len() - offset));
    }
    Ok(ConfChange { transition, ops })
}

/// True when the change enters a joint configuration rather than being applied directly.
fn enters_joint(current: &Membership, cc: &ConfChange) -> bool {
    match cc.transition {
        ConfChangeTransition::JointImplicit | ConfChangeTransition::JointExplicit => true,
        ConfChangeTransition::Auto => {
            let mut voters = current.voters.clone();
            for op in &cc.ops {
                match *op {
                    ConfChangeOp::AddVoter(id) => {
                        voters.insert(id);
                    }
                    ConfChangeOp::AddLearner(id) | ConfChangeOp::RemoveNode(id) => {
                        voters.remove(&id);
                    }
                }
            }
            voters.symmetric_difference(&current.voters).count() > 1
        }
    }
}

/// Computes the configuration that results from applying `cc` to `current`, or why the
/// change is unsafe.
///
/// Rules: an empty change leaves a joint configuration (and is refused outside one); a
/// non-empty change is refused while joint; a change that alters more than one voter
/// must go through a joint configuration; no configuration may end up without voters.
pub fn apply(current: &Membership, cc: &ConfChange) -> Result<Membership, String> {
    if cc.ops.is_empty() {
        if !current.is_joint() {
            return Err("not in a joint configuration, nothing to leave".into());
        }
        let mut next = current.clone();
        next.voters_outgoing.clear();
        let demoted = std::mem::take(&mut next.learners_next);
        next.learners.extend(demoted);
        next.auto_leave = false;
        return Ok(next);
    }
    if current.is_joint() {
        return Err("a joint configuration must be left before the next change".into());
    }
    let joint = enters_joint(current, cc);
    let mut next = current.clone();
    if joint {
        next.voters_outgoing = current.voters.clone();
        next.auto_leave = cc.transition != ConfChangeTransition::JointExplicit;
    }
    for op in &cc.ops {
        match *op {
            ConfChangeOp::AddVoter(id) => {
                next.voters.insert(id);
                next.learners.remove(&id);
                next.learners_next.remove(&id);
            }
            ConfChangeOp::AddLearner(id) => {
                next.voters.remove(&id);
                if next.voters_outgoing.contains(&id) {
                    // A voter of C_old keeps voting there until the joint state is left.
                    next.learners_next.insert(id);
                } else {
                    next.learners.insert(id);
                }
            }
            ConfChangeOp::RemoveNode(id) => {
                next.voters.remove(&id);
                next.learners.remove(&id);
                next.learners_next.remove(&id);
            }
        }
    }
    if next.voters.is_empty() {
        return Err("the resulting configuration has no voters".into());
    }
    if !joint && next.voters.symmetric_difference(&current.voters).count() > 1 {
        return Err("more than one voter changes; use a joint configuration".into());
    }
    let all_voters: BTreeSet<NodeId> = next.voters.union(&next.voters_outgoing).copied().collect();
    if next.learners.iter().any(|l| all_voters.contains(l)) {
        return Err("a learner would also be a voter".into());
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(transition: ConfChangeTransition, ops: Vec<ConfChangeOp>) -> ConfChange {
        ConfChange { transition, ops }
    }

    #[test]
    fn encode_decode_round_trip_and_errors() {
        let c = cc(
            ConfChangeTransition::JointExplicit,
            vec![
                ConfChangeOp::AddVoter(4),
                ConfChangeOp::AddLearner(5),
                ConfChangeOp::RemoveNode(1),
            ],
        );
        let bytes = encode(&c);
        assert_eq!(decode(&bytes).unwrap(), c);
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated {
                offset: 24,
                needed: 1
            })
        );
        assert_eq!(
            decode(&[9, 0, 0, 0, 0, 0]),
            Err(DecodeError::UnknownVersion(9))
        );
        assert_eq!(
            decode(&[1, 7, 0, 0, 0, 0]),
            Err(DecodeError::UnknownTransition(7))
        );
        let mut bad = bytes.to_vec();
        bad[6] = 42;
        assert_eq!(
            decode(&bad),
            Err(DecodeError::UnknownOp { tag: 42, offset: 6 })
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(decode(&long), Err(DecodeError::TrailingBytes(1)));
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn single_voter_change_is_direct_and_two_are_joint() {
        let m = Membership::with_voters([1, 2, 3]);
        let one = apply(
            &m,
            &cc(ConfChangeTransition::Auto, vec![ConfChangeOp::AddVoter(4)]),
        )
        .unwrap();
        assert!(!one.is_joint());
        assert_eq!(one.voters, [1, 2, 3, 4].into());
        let two = apply(
            &m,
            &cc(
                ConfChangeTransition::Auto,
                vec![ConfChangeOp::AddVoter(4), ConfChangeOp::RemoveNode(1)],
            ),
        )
        .unwrap();
        assert!(two.is_joint() && two.auto_leave);
        assert_eq!(two.voters_outgoing, [1, 2, 3].into());
        assert_eq!(two.voters, [2, 3, 4].into());
        let left = apply(&two, &ConfChange::default()).unwrap();
        assert_eq!(left, Membership::with_voters([2, 3, 4]));
    }

    #[test]
    fn unsafe_changes_are_rejected() {
        let m = Membership::with_voters([1]);
        assert!(
            apply(
                &m,
                &cc(
                    ConfChangeTransition::Auto,
                    vec![ConfChangeOp::RemoveNode(1)]
                )
            )
            .is_err()
        );
        assert!(apply(&m, &ConfChange::default()).is_err());
        let joint = apply(
            &Membership::with_voters([1, 2, 3]),
            &cc(
                ConfChangeTransition::JointImplicit,
                vec![ConfChangeOp::AddVoter(4)],
            ),
        )
        .unwrap();
        assert!(
            apply(
                &joint,
                &cc(ConfChangeTransition::Auto, vec![ConfChangeOp::AddVoter(5)])
            )
            .is_err()
        );
    }

    #[test]
    fn demoted_voter_becomes_learner_on_leave() {
        let m = Membership::with_voters([1, 2, 3]);
        let joint = apply(
            &m,
            &cc(
                ConfChangeTransition::JointImplicit,
                vec![ConfChangeOp::AddLearner(3)],
            ),
        )
        .unwrap();
        assert_eq!(joint.learners_next, [3].into());
        assert!(joint.is_voter(3));
        let left = apply(&joint, &ConfChange::default()).unwrap();
        assert_eq!(left.learners, [3].into());
        assert_eq!(left.voters, [1, 2].into());
    }
}
