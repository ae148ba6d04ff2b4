//! etcd's authentication and roles: the replicated auth state ([`AuthState`]: users, roles,
//! the enabled flag and the auth revision), the permission checks every service makes before
//! proposing and apply makes again, etcd's auth errors ([`AuthError`]) and the members'
//! tokens (`token`).
//!
//! The state changes only by applying [`Op::Auth`] commands, so every
//! member holds the same state at the same log index; it lives in the internal key space
//! (`record`), so snapshots carry it. Every change moves the auth revision up by one. A client
//! command carries the caller and the auth revision its permissions were checked at
//! ([`Caller`]); apply refuses it with [`AuthError::OldRevision`] when the revision moved
//! since, and checks its permissions again otherwise, so a permission revoked between the
//! check and the apply is enforced identically on every member.
//!
//! Permission model (etcd's): a user has roles; a role has permissions, each `READ`, `WRITE`
//! or `READWRITE` on one key (empty `range_end`), a range `[key, range_end)`, or every key
//! from `key` on (`range_end` = `"\0"`). A request on a key range is allowed when the union of
//! the matching permissions of all the user's roles covers the whole range. A user with the
//! `root` role may do everything, and only it may manage users, roles and the cluster.

mod error;
pub mod jwt;
pub(crate) mod record;
pub mod token;

pub use error::AuthError;

use crate::command::Op;
use crate::pb::authpb::{Permission, Role, User, permission::Type as PermType};
use crate::pb::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};
use crate::pb::kvauth::{AuthCommand, Caller, auth_command};
use std::collections::BTreeMap;

/// The name of the user and of the role that may do everything.
pub const ROOT: &str = "root";

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

/// What a request does to a key range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads it (`READ` or `READWRITE` allow it).
    Read,
    /// Writes it (`WRITE` or `READWRITE` allow it).
    Write,
}

/// The replicated authentication state, as of some applied index.
///
/// Invariants: `users` and `roles` are keyed by their names; every user's `roles` are sorted
/// and name roles that exist (or `root`); every role's permissions are sorted by key and
/// range end, with no two on the same key and range end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthState {
    pub(crate) enabled: bool,
    pub(crate) revision: u64,
    pub(crate) users: BTreeMap<String, User>,
    pub(crate) roles: BTreeMap<String, Role>,
}

impl AuthState {
    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: one more with every change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user name, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every role name, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// Whether `password` is user `name`'s (false for an unknown user or one without a
    /// password). Blocking: bcrypt takes milliseconds at the default cost; call it off the
    /// async threads.
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        let Some(u) = self.users.get(name) else {
            return false;
        };
        if u.options.is_some_and(|o| o.no_password) || u.password.is_empty() {
            return false;
        }
        std::str::from_utf8(&u.password).is_ok_and(|h| bcrypt::verify(password, h).unwrap_or(false))
    }

    /// Whether user `name` exists and has role `role`.
    pub fn has_role(&self, name: &str, role: &str) -> bool {
        self.users
            .get(name)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// The [`Caller`] record for a command proposed by `user` under this state.
    pub fn caller(&self, user: &str) -> Caller {
        Caller {
            user: user.to_string(),
            revision: self.revision,
        }
    }

    /// Whether `user` may manage users, roles and the cluster: always while authentication
    /// is off; with it on, only a user with the `root` role.
    pub fn check_admin(&self, user: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.has_role(user, ROOT) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `user` is a known user (any user may do what needs only authentication, such
    /// as granting a lease). Always true while authentication is off.
    pub fn check_authenticated(&self, user: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `user` may `access` the keys `[key, range_end)` (etcd's range conventions:
    /// an empty `range_end` is the key alone, `"\0"` every key from `key` on).
    pub fn check_range(
        &self,
        user: &str,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let Some(u) = self.users.get(user) else {
            return Err(AuthError::PermissionDenied);
        };
        if u.roles.iter().any(|r| r == ROOT) {
            return Ok(());
        }
        let mut granted: Vec<Interval> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter())
            .filter(|p| allows(p.perm_type(), access))
            .map(|p| Interval::of(&p.key, &p.range_end))
            .collect();
        if covers(&mut granted, &Interval::of(key, range_end)) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `user` may read every key of `keys` (what `LeaseTimeToLive` with `keys` set
    /// needs for the keys attached to the lease, as etcd 3.5 checks it). With authentication
    /// on and no user: [`AuthError::UserEmpty`], even for no keys.
    pub fn check_keys_readable<K: AsRef<[u8]>>(
        &self,
        user: &str,
        keys: &[K],
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        keys.iter()
            .try_for_each(|k| self.check_range(user, k.as_ref(), &[], Access::Read))
    }

    /// Checks a `Range` request (read of its range).
    pub fn check_range_request(&self, user: &str, r: &RangeRequest) -> Result<(), AuthError> {
        self.check_range(user, &r.key, &r.range_end, Access::Read)
    }

    /// Checks a txn: every compare (a read of its key or range) and every operation of both
    /// branches, nested txns included.
    pub fn check_txn(&self, user: &str, t: &TxnRequest) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        for c in &t.compare {
            self.check_range(user, &c.key, &c.range_end, Access::Read)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            self.check_request_op(user, op)?;
        }
        Ok(())
    }

    fn check_request_op(&self, user: &str, op: &RequestOp) -> Result<(), AuthError> {
        match &op.request {
            None => Ok(()),
            Some(request_op::Request::RequestRange(r)) => self.check_range_request(user, r),
            Some(request_op::Request::RequestPut(p)) => self.check_put(user, p),
            Some(request_op::Request::RequestDeleteRange(d)) => self.check_delete(user, d),
            Some(request_op::Request::RequestTxn(t)) => self.check_txn(user, t),
        }
    }

    /// A put writes its key, and reads it too with `prev_kv`.
    fn check_put(&self, user: &str, p: &PutRequest) -> Result<(), AuthError> {
        self.check_range(user, &p.key, &[], Access::Write)?;
        if p.prev_kv {
            self.check_range(user, &p.key, &[], Access::Read)?;
        }
        Ok(())
    }

    /// A delete writes its range, and reads it too with `prev_kv`.
    fn check_delete(&self, user: &str, d: &DeleteRangeRequest) -> Result<(), AuthError> {
        self.check_range(user, &d.key, &d.range_end, Access::Write)?;
        if d.prev_kv {
            self.check_range(user, &d.key, &d.range_end, Access::Read)?;
        }
        Ok(())
    }

    /// Checks a command's operation for `user` (what apply checks again): key writes against
    /// the user's permissions, compaction, alarms, member and auth management for `root`, lease
    /// grants for any user. A lease revoke is checked here for authentication only; the
    /// write permission on its keys is checked where they are known (the service before
    /// proposing, and apply).
    pub fn check_op(&self, user: &str, op: &Op) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        match op {
            Op::Put(p) => self.check_put(user, p),
            Op::DeleteRange(d) => self.check_delete(user, d),
            Op::Txn(t) => self.check_txn(user, t),
            Op::LeaseGrant(_) | Op::LeaseRevoke(_) => self.check_authenticated(user),
            Op::Compact(_)
            | Op::PublishMember(_)
            | Op::SetPeerUrls(_)
            | Op::LeaseCheckpoint(_)
            | Op::Alarm(_) => self.check_admin(user),
            Op::Auth(a) => self.check_auth_command(user, a),
        }
    }

    /// Auth management needs `root` (while authentication is on); `Authenticate` needs
    /// nothing (the proposing member checked the password).
    fn check_auth_command(&self, user: &str, a: &AuthCommand) -> Result<(), AuthError> {
        match &a.op {
            Some(auth_command::Op::Authenticate(_)) => Ok(()),
            _ => self.check_admin(user),
        }
    }
}

/// Whether a permission of type `t` allows `access`.
fn allows(t: PermType, access: Access) -> bool {
    matches!(
        (t, access),
        (PermType::Readwrite, _)
            | (PermType::Read, Access::Read)
            | (PermType::Write, Access::Write)
    )
}

/// A key interval `[start, end)`; `end == None` is unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// The keys a request or permission names: the key alone for an empty `range_end`,
    /// every key from `key` on for `"\0"`, else `[key, range_end)` (an end at or below
    /// the key names the key alone: never more than the request said).
    fn of(key: &[u8], range_end: &[u8]) -> Self {
        let single = || {
            let mut end = key.to_vec();
            end.push(0);
            Some(end)
        };
        let end = match range_end {
            [] => single(),
            [0] => None,
            e if e <= key => single(),
            e => Some(e.to_vec()),
        };
        Interval {
            start: key.to_vec(),
            end,
        }
    }
}

/// Whether the union of `granted` covers all of `want`.
fn covers(granted: &mut [Interval], want: &Interval) -> bool {
    granted.sort_by(|a, b| a.start.cmp(&b.start));
    // Everything below `reached` (from want.start) is covered; None: everything is.
    let mut reached: Option<Vec<u8>> = Some(want.start.clone());
    for g in granted.iter() {
        let Some(r) = &reached else {
            return true;
        };
        if let Some(end) = &want.end
            && r >= end
        {
            return true;
        }
        if g.start > *r {
            return false;
        }
        match &g.end {
            None => reached = None,
            Some(e) if e > r => reached = Some(e.clone()),
            Some(_) => {}
        }
    }
    match (&reached, &want.end) {
        (None, _) => true,
        (Some(r), Some(end)) => r >= end,
        (Some(_), None) => false,
    }
}

/// The random part of a new token: 16 letters and digits.
pub(crate) fn token_prefix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        // No OS randomness: fall back on the clock and a counter, never a fixed string.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        raw.copy_from_slice(&t.to_le_bytes()[..16]);
    }
    raw.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The log index a token was issued at (its part after the last `.`).
pub fn token_index(token: &str) -> Option<u64> {
    token.rsplit_once('.').and_then(|(_, i)| i.parse().ok())
}

/// Sorts a role's permissions the way the state keeps them.
pub(crate) fn sort_permissions(perms: &mut [Permission]) {
    perms.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
}

#[cfg(test)]
pub(crate) mod tests;
