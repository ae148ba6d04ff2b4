//! The stored form of the auth state: records in the internal key space, written by apply
//! with the batch that changed them and carried by every snapshot.
//!
//! Records:
//! - `b'i' ++ b"auth/enabled"` -> one byte, 0 or 1;
//! - `b'i' ++ b"auth/revision"` -> u64 BE, the auth revision;
//! - `b'i' ++ b"auth/user/" ++ name` -> prost `authpb.User` (the password field holds the
//!   bcrypt hash; roles sorted);
//! - `b'i' ++ b"auth/role/" ++ name` -> prost `authpb.Role` (permissions sorted by key).
//!
//! A store without any of them has authentication off, at revision 0, with no users or roles.

use super::AuthState;
use crate::error::{Error, Result};
use crate::layout::INTERNAL;
use crate::pb::authpb::{Role, User};
use prost::Message;

/// The name prefix of every auth record in the internal space.
pub(crate) const AUTH: &[u8] = b"auth/";
const ENABLED: &[u8] = b"enabled";
const REVISION: &[u8] = b"revision";
const USER: &[u8] = b"user/";
const ROLE: &[u8] = b"role/";

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![INTERNAL];
    k.extend_from_slice(AUTH);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The sled key of the enabled flag.
pub(crate) fn enabled_key() -> Vec<u8> {
    key(&[ENABLED])
}

/// The sled key of the auth revision.
pub(crate) fn revision_key() -> Vec<u8> {
    key(&[REVISION])
}

/// The sled key of user `name`.
pub(crate) fn user_key(name: &str) -> Vec<u8> {
    key(&[USER, name.as_bytes()])
}

/// The sled key of role `name`.
pub(crate) fn role_key(name: &str) -> Vec<u8> {
    key(&[ROLE, name.as_bytes()])
}

/// Reads the auth state of `tree`.
pub(crate) fn load(tree: &sled::Tree) -> Result<AuthState> {
    let mut state = AuthState::default();
    if let Some(v) = tree.get(enabled_key())? {
        state.enabled = match v.as_ref() {
            [0] => false,
            [1] => true,
            other => return Err(Error::corrupt(format!("auth enabled flag {other:?}"))),
        };
    }
    if let Some(v) = tree.get(revision_key())? {
        let b: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| Error::corrupt("auth revision is not 8 bytes"))?;
        state.revision = u64::from_be_bytes(b);
    }
    for item in tree.scan_prefix(key(&[USER])) {
        let (_, v) = item?;
        let u = User::decode(v.as_ref()).map_err(|e| Error::corrupt(format!("auth user: {e}")))?;
        let name = String::from_utf8(u.name.to_vec())
            .map_err(|_| Error::corrupt("auth user name is not UTF-8"))?;
        state.users.insert(name, u);
    }
    for item in tree.scan_prefix(key(&[ROLE])) {
        let (_, v) = item?;
        let r = Role::decode(v.as_ref()).map_err(|e| Error::corrupt(format!("auth role: {e}")))?;
        let name = String::from_utf8(r.name.to_vec())
            .map_err(|_| Error::corrupt("auth role name is not UTF-8"))?;
        state.roles.insert(name, r);
    }
    Ok(state)
}

/// Adds to `b` what turns the stored state `old` into `new`.
pub(crate) fn write_diff(old: &AuthState, new: &AuthState, b: &mut sled::Batch) {
    if old.enabled != new.enabled {
        b.insert(enabled_key(), &[u8::from(new.enabled)]);
    }
    if old.revision != new.revision {
        b.insert(revision_key(), &new.revision.to_be_bytes());
    }
    for (name, u) in &new.users {
        if old.users.get(name) != Some(u) {
            b.insert(user_key(name), u.encode_to_vec());
        }
    }
    for name in old.users.keys().filter(|n| !new.users.contains_key(*n)) {
        b.remove(user_key(name));
    }
    for (name, r) in &new.roles {
        if old.roles.get(name) != Some(r) {
            b.insert(role_key(name), r.encode_to_vec());
        }
    }
    for name in old.roles.keys().filter(|n| !new.roles.contains_key(*n)) {
        b.remove(role_key(name));
    }
}

/// Checks a snapshot record of the internal space whose name starts with [`AUTH`]: a known
/// record whose value decodes and whose key names it.
pub(crate) fn validate(name_after_prefix: &[u8], value: &[u8]) -> bool {
    if name_after_prefix == ENABLED {
        return matches!(value, [0] | [1]);
    }
    if name_after_prefix == REVISION {
        return value.len() == 8;
    }
    if let Some(name) = name_after_prefix.strip_prefix(USER) {
        return User::decode(value).is_ok_and(|u| u.name.as_ref() == name && !name.is_empty());
    }
    if let Some(name) = name_after_prefix.strip_prefix(ROLE) {
        return Role::decode(value).is_ok_and(|r| r.name.as_ref() == name && !name.is_empty());
    }
    false
}
