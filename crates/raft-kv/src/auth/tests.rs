//! Permission checks (keys, ranges, prefixes, txns) and the auth commands applied to a store,
//! with the apply-time recheck.

use super::*;
use crate::pb::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
    AuthUserDeleteRequest, AuthUserGrantRoleRequest, Compare, DeleteRangeRequest, PutRequest,
    compare,
};
use crate::pb::kvauth::{Authenticate, UserAdd};
use crate::{Command, KvStore, Outcome, Response};
use prost::bytes::Bytes;

pub(crate) fn perm(t: PermType, key: &[u8], end: &[u8]) -> Permission {
    Permission {
        perm_type: t as i32,
        key: Bytes::copy_from_slice(key),
        range_end: Bytes::copy_from_slice(end),
    }
}

fn state_with(perms: Vec<Permission>) -> AuthState {
    let mut s = AuthState {
        enabled: true,
        revision: 5,
        ..Default::default()
    };
    for (name, roles) in [("root", vec!["root"]), ("alice", vec!["r1", "r2"])] {
        s.users.insert(
            name.into(),
            User {
                name: Bytes::from(name),
                roles: roles.into_iter().map(String::from).collect(),
                ..Default::default()
            },
        );
    }
    let (a, b) = perms.split_at(perms.len() / 2);
    for (name, p) in [("r1", a), ("r2", b)] {
        s.roles.insert(
            name.into(),
            Role {
                name: Bytes::from(name),
                key_permission: p.to_vec(),
            },
        );
    }
    s
}

#[test]
fn keys_ranges_and_prefixes() {
    let s = state_with(vec![
        perm(PermType::Read, b"a", b""),
        perm(PermType::Readwrite, b"app/", b"app0"),
        perm(PermType::Write, b"logs/", b"\0"),
        perm(PermType::Read, b"m", b"p"),
    ]);
    let ok = |k: &[u8], e: &[u8], a| s.check_range("alice", k, e, a).is_ok();
    // One key.
    assert!(ok(b"a", b"", Access::Read));
    assert!(!ok(b"a", b"", Access::Write));
    assert!(!ok(b"ab", b"", Access::Read));
    // A prefix and what it covers.
    assert!(ok(b"app/x", b"", Access::Write));
    assert!(ok(b"app/", b"app0", Access::Read));
    assert!(ok(b"app/a", b"app/b", Access::Read));
    assert!(
        !ok(b"app", b"app0", Access::Read),
        "starts below the prefix"
    );
    assert!(!ok(b"app/", b"app1", Access::Read), "ends above it");
    // Open-ended ("\0" range end).
    assert!(ok(b"logs/1", b"", Access::Write));
    assert!(ok(b"logs/", b"\0", Access::Write));
    assert!(ok(b"zzz", b"", Access::Write));
    assert!(!ok(b"logs/1", b"", Access::Read));
    assert!(!ok(b"a", b"\0", Access::Read));
    // A range inside one, and a range over two adjacent or overlapping grants.
    assert!(ok(b"n", b"o", Access::Read));
    assert!(!ok(b"l", b"o", Access::Read));
    // Every key: nobody but root.
    assert!(!ok(b"\0", b"\0", Access::Read));
    assert!(s.check_range("root", b"\0", b"\0", Access::Write).is_ok());
    // Unknown users and no user.
    assert_eq!(
        s.check_range("mallory", b"a", b"", Access::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        s.check_range("", b"a", b"", Access::Read),
        Err(AuthError::UserEmpty)
    );
    // Off: anything goes.
    let mut off = s.clone();
    off.enabled = false;
    assert!(off.check_range("", b"x", b"\0", Access::Write).is_ok());
}

#[test]
fn unions_of_roles_cover_a_range() {
    let s = state_with(vec![
        perm(PermType::Read, b"a", b"c"),
        perm(PermType::Readwrite, b"c", b"e"),
    ]);
    assert!(s.check_range("alice", b"b", b"d", Access::Read).is_ok());
    assert!(s.check_range("alice", b"a", b"e", Access::Read).is_ok());
    assert!(s.check_range("alice", b"a", b"e\0", Access::Read).is_err());
    assert!(s.check_range("alice", b"b", b"d", Access::Write).is_err());
}

fn put(key: &str, prev_kv: bool) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            prev_kv,
            ..Default::default()
        })),
    }
}

fn range(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            ..Default::default()
        })),
    }
}

#[test]
fn every_part_of_a_txn_is_checked() {
    let s = state_with(vec![
        perm(PermType::Readwrite, b"ok/", b"ok0"),
        perm(PermType::Write, b"w/", b"w0"),
    ]);
    let cmp = |key: &str| Compare {
        key: Bytes::copy_from_slice(key.as_bytes()),
        target: compare::CompareTarget::Version as i32,
        target_union: Some(compare::TargetUnion::Version(0)),
        ..Default::default()
    };
    let good = TxnRequest {
        compare: vec![cmp("ok/a")],
        success: vec![put("ok/a", true), put("w/x", false)],
        failure: vec![range("ok/b")],
    };
    assert!(s.check_txn("alice", &good).is_ok());
    // One forbidden op in the failure branch.
    let mut bad = good.clone();
    bad.failure.push(put("secret", false));
    assert_eq!(s.check_txn("alice", &bad), Err(AuthError::PermissionDenied));
    // A compare outside: compares are reads.
    let mut bad = good.clone();
    bad.compare.push(cmp("w/x"));
    assert!(s.check_txn("alice", &bad).is_err());
    // prev_kv on a write-only key needs read.
    let mut bad = good.clone();
    bad.success.push(put("w/y", true));
    assert!(s.check_txn("alice", &bad).is_err());
    // A nested txn with a forbidden op.
    let mut bad = good.clone();
    bad.success.push(RequestOp {
        request: Some(request_op::Request::RequestTxn(TxnRequest {
            failure: vec![range("w/z")],
            ..Default::default()
        })),
    });
    assert!(s.check_txn("alice", &bad).is_err());
    assert!(s.check_txn("root", &bad).is_ok());
}

#[test]
fn admin_rules() {
    let s = state_with(vec![]);
    assert!(s.check_admin("root").is_ok());
    assert_eq!(s.check_admin("alice"), Err(AuthError::PermissionDenied));
    assert_eq!(s.check_admin(""), Err(AuthError::UserEmpty));
    assert!(
        s.check_op("alice", &Op::Compact(Default::default()))
            .is_err()
    );
    assert!(
        s.check_op("alice", &Op::LeaseGrant(Default::default()))
            .is_ok()
    );
}

#[test]
fn etcd_messages_and_codes() {
    let st: tonic::Status = crate::Error::Auth(AuthError::UserNotFound).into();
    assert_eq!(st.code(), tonic::Code::FailedPrecondition);
    assert_eq!(st.message(), "etcdserver: user name not found");
    let st: tonic::Status = AuthError::AuthFailed.into();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        st.message(),
        "etcdserver: authentication failed, invalid user ID or password"
    );
    assert_eq!(
        AuthError::PermissionDenied.code(),
        tonic::Code::PermissionDenied
    );
    assert_eq!(AuthError::InvalidToken.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        AuthError::OldRevision.to_string(),
        "etcdserver: revision of auth store is old"
    );
    assert!(crate::Error::Auth(AuthError::OldRevision).is_request_error());
}

// ---- Applied to a store ----

pub(crate) fn auth_cmd(op: auth_command::Op) -> Op {
    Op::Auth(AuthCommand { op: Some(op) })
}

pub(crate) struct Applier {
    pub(crate) store: KvStore,
    pub(crate) index: u64,
}

impl Applier {
    fn new() -> Self {
        Applier {
            store: KvStore::open_temporary().unwrap(),
            index: 0,
        }
    }

    pub(crate) fn apply(&mut self, cmd: Command) -> Outcome {
        self.index += 1;
        self.store.apply(self.index, 1, &cmd).unwrap().outcome
    }

    /// Applies `op` as `user` checked at the current auth revision.
    pub(crate) fn as_user(&mut self, user: &str, op: Op) -> Outcome {
        let caller = self.store.auth_state().caller(user);
        self.apply(Command::new(1, op).with_caller(Some(caller)))
    }

    pub(crate) fn ok(&mut self, user: &str, op: Op) -> Response {
        match self.as_user(user, op) {
            Outcome::Response(r) => r,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    pub(crate) fn err(&mut self, user: &str, op: Op) -> AuthError {
        match self.as_user(user, op) {
            Outcome::Rejected(crate::Error::Auth(e)) => e,
            other => panic!("expected an auth error, got {other:?}"),
        }
    }
}

fn user_add(name: &str) -> Op {
    auth_cmd(auth_command::Op::UserAdd(UserAdd {
        name: name.into(),
        password_hash: Bytes::from_static(b"$2b$04$hash"),
        options: None,
    }))
}

fn grant_role(user: &str, role: &str) -> Op {
    auth_cmd(auth_command::Op::UserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    }))
}

pub(crate) fn grant(role: &str, p: Permission) -> Op {
    auth_cmd(auth_command::Op::RoleGrantPermission(
        AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(p),
        },
    ))
}

fn put_op(key: &str) -> Op {
    Op::Put(PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"v"),
        ..Default::default()
    })
}

fn enable() -> Op {
    auth_cmd(auth_command::Op::Enable(Default::default()))
}

/// root (with the root role), alice with role "app" (readwrite on app/), auth on.
pub(crate) fn set_up() -> Applier {
    let mut a = Applier::new();
    assert_eq!(a.err("", enable()), AuthError::RootUserNotExist);
    a.ok("", user_add("root"));
    assert_eq!(a.err("", enable()), AuthError::RootRoleNotExist);
    a.ok("", grant_role("root", "root"));
    a.ok("", user_add("alice"));
    a.ok(
        "",
        auth_cmd(auth_command::Op::RoleAdd(AuthRoleAddRequest {
            name: "app".into(),
        })),
    );
    assert_eq!(
        a.err("", grant_role("alice", "nope")),
        AuthError::RoleNotFound
    );
    a.ok("", grant_role("alice", "app"));
    a.ok(
        "",
        grant("app", perm(PermType::Readwrite, b"app/", b"app0")),
    );
    a.ok("", enable());
    a
}

#[test]
fn auth_commands_follow_etcds_rules_and_are_stored() {
    let mut a = set_up();
    let st = a.store.auth_state();
    assert!(st.enabled());
    assert_eq!(st.revision(), 7, "seven changes");
    assert_eq!(st.user_names(), ["alice", "root"]);
    assert_eq!(st.user("alice").unwrap().roles, ["app"]);
    assert_eq!(
        a.err("root", user_add("alice")),
        AuthError::UserAlreadyExist
    );
    assert_eq!(a.err("root", user_add("")), AuthError::UserEmpty);
    // Management needs root once auth is on.
    assert_eq!(a.err("alice", user_add("bob")), AuthError::PermissionDenied);
    // root cannot be locked out.
    assert_eq!(
        a.err(
            "root",
            auth_cmd(auth_command::Op::UserDelete(AuthUserDeleteRequest {
                name: "root".into()
            }))
        ),
        AuthError::InvalidAuthMgmt
    );
    assert_eq!(
        a.err(
            "root",
            auth_cmd(auth_command::Op::RoleRevokePermission(
                AuthRoleRevokePermissionRequest {
                    role: "app".into(),
                    key: Bytes::from_static(b"x"),
                    range_end: Bytes::new(),
                }
            ))
        ),
        AuthError::PermissionNotGranted
    );
    // The state survives a reopen of the records (what a snapshot carries).
    let reloaded = record::load(&a.store.shared.tree).unwrap();
    assert_eq!(&reloaded, &*a.store.auth_state());
    // Every auth record passes snapshot validation.
    for item in a.store.shared.tree.scan_prefix([crate::layout::INTERNAL]) {
        let (k, v) = item.unwrap();
        assert!(crate::internal::validate(&k, &v), "{k:?}");
    }
}

#[test]
fn writes_are_checked_again_at_apply() {
    let mut a = set_up();
    assert!(matches!(a.ok("alice", put_op("app/1")), Response::Put(_)));
    assert_eq!(a.err("alice", put_op("other")), AuthError::PermissionDenied);
    assert!(matches!(a.ok("root", put_op("other")), Response::Put(_)));
    // A write checked at revision r, then the permission is revoked before it applies:
    // refused on apply (etcd's ErrAuthOldRevision), whatever the proposer thought.
    let checked = a.store.auth_state().caller("alice");
    a.ok(
        "root",
        auth_cmd(auth_command::Op::RoleRevokePermission(
            AuthRoleRevokePermissionRequest {
                role: "app".into(),
                key: Bytes::from_static(b"app/"),
                range_end: Bytes::from_static(b"app0"),
            },
        )),
    );
    let before = a.store.revision();
    match a.apply(Command::new(9, put_op("app/2")).with_caller(Some(checked))) {
        Outcome::Rejected(crate::Error::Auth(AuthError::OldRevision)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(a.store.revision(), before, "nothing was written");
    // Checked again at the new revision: no permission any more.
    assert_eq!(a.err("alice", put_op("app/2")), AuthError::PermissionDenied);
    // A delete with prev_kv needs read as well.
    a.ok(
        "root",
        grant("app", perm(PermType::Write, b"app/", b"app0")),
    );
    assert_eq!(
        a.err(
            "alice",
            Op::DeleteRange(DeleteRangeRequest {
                key: Bytes::from_static(b"app/1"),
                range_end: Bytes::new(),
                prev_kv: true,
            })
        ),
        AuthError::PermissionDenied
    );
    // The node's own commands (no caller) are not checked.
    assert!(matches!(
        a.apply(Command::new(0, put_op("internal"))),
        Outcome::Response(_)
    ));
}

#[test]
fn tokens_are_issued_by_apply_and_voided_with_their_user() {
    let mut a = set_up();
    let auth = |name: &str| {
        auth_cmd(auth_command::Op::Authenticate(Authenticate {
            name: name.into(),
            prefix: "abc".into(),
            issued_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        }))
    };
    let Response::Auth(ans) = a.ok("", auth("alice")) else {
        panic!()
    };
    let token = ans.token.unwrap();
    assert_eq!(token, format!("abc.{}", a.index));
    assert_eq!(token_index(&token), Some(a.index));
    assert_eq!(a.store.auth_token_user(&token).as_deref(), Some("alice"));
    assert_eq!(a.err("", auth("nobody")), AuthError::AuthFailed);
    a.ok(
        "root",
        auth_cmd(auth_command::Op::UserDelete(AuthUserDeleteRequest {
            name: "alice".into(),
        })),
    );
    assert_eq!(a.store.auth_token_user(&token), None);
    // Auth off: no tokens.
    a.ok(
        "root",
        auth_cmd(auth_command::Op::Disable(Default::default())),
    );
    assert_eq!(a.err("", auth("root")), AuthError::NotEnabled);
}

#[test]
fn random_token_prefixes() {
    let a = token_prefix();
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, token_prefix());
}

#[test]
fn a_lease_revoke_needs_write_on_every_attached_key() {
    use crate::pb::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
    let mut a = set_up();
    a.ok(
        "alice",
        Op::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 }),
    );
    a.ok("root", Op::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 8 }));
    let with_lease = |key: &str, lease: i64| {
        Op::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            lease,
            ..Default::default()
        })
    };
    a.ok("alice", with_lease("app/1", 7));
    a.ok("root", with_lease("app/2", 8));
    a.ok("root", with_lease("secret", 8));
    // Lease 8 holds a key outside alice's role.
    assert_eq!(
        a.err("alice", Op::LeaseRevoke(LeaseRevokeRequest { id: 8 })),
        AuthError::PermissionDenied
    );
    assert!(matches!(
        a.ok("alice", Op::LeaseRevoke(LeaseRevokeRequest { id: 7 })),
        Response::LeaseRevoke(_)
    ));
    assert!(matches!(
        a.ok("root", Op::LeaseRevoke(LeaseRevokeRequest { id: 8 })),
        Response::LeaseRevoke(_)
    ));
    // Granting needs a known user.
    assert_eq!(
        a.err("", Op::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 9 })),
        AuthError::UserEmpty
    );
}

#[test]
fn lease_time_to_live_with_keys_needs_read_on_every_attached_key() {
    use crate::pb::etcdserverpb::LeaseGrantRequest;
    let mut a = set_up();
    a.ok("root", Op::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 8 }));
    let with_lease = |key: &str| {
        Op::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            lease: 8,
            ..Default::default()
        })
    };
    a.ok("root", with_lease("app/1"));
    let st = a.store.auth_state();
    let keys = a.store.lease_keys(8).unwrap();
    assert_eq!(keys, [Bytes::from_static(b"app/1")]);
    assert_eq!(st.check_keys_readable("alice", &keys), Ok(()));
    // A second key outside alice's role: the whole answer is refused.
    a.ok("root", with_lease("secret"));
    let st = a.store.auth_state();
    let keys = a.store.lease_keys(8).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        st.check_keys_readable("alice", &keys),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(st.check_keys_readable("root", &keys), Ok(()));
    // Read is what counts: a write-only grant does not do.
    a.ok("root", grant("app", perm(PermType::Write, b"secret", b"")));
    let st = a.store.auth_state();
    assert_eq!(
        st.check_keys_readable("alice", &keys),
        Err(AuthError::PermissionDenied)
    );
    a.ok("root", grant("app", perm(PermType::Read, b"secret", b"")));
    let st = a.store.auth_state();
    assert_eq!(st.check_keys_readable("alice", &keys), Ok(()));
    // No user at all (no token): etcd's "user name is empty", even for a lease without keys.
    assert_eq!(
        st.check_keys_readable::<Bytes>("", &[]),
        Err(AuthError::UserEmpty)
    );
    // Authentication off: anyone.
    assert_eq!(AuthState::default().check_keys_readable("", &keys), Ok(()));
}

#[test]
fn snapshots_carry_the_auth_state_and_a_restore_enforces_it() {
    use crate::CaptureKind;
    let mut a = set_up();
    a.ok("root", user_add("bob"));
    let cap = a.store.capture(CaptureKind::Full).unwrap();
    let index = cap.info.index;
    let recs: Vec<_> = cap.records.collect();
    let copy = KvStore::open_temporary().unwrap();
    copy.restore_full(index, 1, recs).unwrap();
    assert_eq!(&*copy.auth_state(), &*a.store.auth_state());
    // The restored member refuses what the original refuses.
    let mut b = Applier { store: copy, index };
    assert_eq!(b.err("alice", put_op("other")), AuthError::PermissionDenied);
    assert!(matches!(b.ok("alice", put_op("app/1")), Response::Put(_)));
    // A restore over a store with other users replaces them (bob is gone from the copy
    // of an older snapshot).
    let older = Applier::new();
    let recs: Vec<_> = older
        .store
        .capture(CaptureKind::Full)
        .unwrap()
        .records
        .collect();
    b.store.restore_full(b.index + 1, 1, recs).unwrap();
    assert!(!b.store.auth_state().enabled());
    assert!(b.store.auth_state().user("bob").is_none());
}
