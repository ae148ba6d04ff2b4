//! Apply of the auth commands ([`Op::Auth`](crate::Op::Auth)) and the apply-time check of a
//! client command's caller: users, roles, the enabled flag and tokens change in a copy of the
//! auth state that the batch writes (`crate::auth::record`) and publishes once written.

use super::Batch;
use crate::auth::token::TokenEvent;
use crate::auth::{Access, AuthError, AuthState, ROOT, record, sort_permissions};
use crate::command::Op;
use crate::error::{Error, Result};
use crate::pb::authpb::{Permission, Role, User, permission::Type as PermType};
use crate::pb::kvauth::{AuthCommand, Caller, auth_command::Op as A};
use prost::bytes::Bytes;
use std::sync::Arc;

/// What a batch did to the auth state, before it is written.
#[derive(Debug, Default)]
pub(crate) struct AuthBatch {
    /// The state before the batch.
    pub(crate) base: Arc<AuthState>,
    /// The state after the batch's auth commands, once one changed it.
    pub(crate) next: Option<AuthState>,
    /// The token changes, in log order (for the member's token table).
    pub(crate) tokens: Vec<TokenEvent>,
}

impl AuthBatch {
    /// A batch over the state `base`.
    pub(crate) fn new(base: Arc<AuthState>) -> Self {
        AuthBatch {
            base,
            next: None,
            tokens: Vec::new(),
        }
    }

    /// The state as of the batch's pending changes.
    pub(crate) fn current(&self) -> &AuthState {
        self.next.as_ref().unwrap_or(&self.base)
    }

    fn edit(&mut self) -> &mut AuthState {
        self.next.get_or_insert_with(|| (*self.base).clone())
    }

    /// Adds the batch's auth records to the sled batch.
    pub(crate) fn write_to(&self, b: &mut sled::Batch) {
        if let Some(next) = &self.next {
            record::write_diff(&self.base, next, b);
        }
    }
}

/// The answer to an applied auth command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthAnswer {
    /// The auth revision after the command.
    pub auth_revision: u64,
    /// The new token, for `Authenticate`.
    pub token: Option<String>,
}

fn denied(e: AuthError) -> Error {
    Error::Auth(e)
}

impl Batch<'_> {
    /// The apply-time check of a client command: the auth state must still be at the
    /// revision the caller was checked at, and (with authentication on) the caller must be
    /// allowed the operation under it. A lease revoke also needs write permission on every
    /// key attached to the lease.
    pub(crate) fn check_caller(&self, caller: &Caller, op: &Op) -> Result<()> {
        let state = self.auth.current();
        if caller.revision < state.revision {
            return Err(denied(AuthError::OldRevision));
        }
        state.check_op(&caller.user, op).map_err(denied)?;
        if let Op::LeaseRevoke(r) = op
            && state.enabled
            && !state.has_role(&caller.user, ROOT)
        {
            for key in self.attached_keys(r.id)? {
                state
                    .check_range(&caller.user, &key, &[], Access::Write)
                    .map_err(denied)?;
            }
        }
        Ok(())
    }

    /// Applies one auth command (etcd's rules for each).
    pub(super) fn auth(&mut self, cmd: &AuthCommand) -> Result<AuthAnswer> {
        let op = cmd
            .op
            .as_ref()
            .ok_or(Error::Auth(AuthError::InvalidAuthMgmt))?;
        let mut token = None;
        let changed = self.auth_change(op, &mut token).map_err(denied)?;
        if changed {
            self.auth.edit().revision += 1;
        }
        Ok(AuthAnswer {
            auth_revision: self.auth.current().revision,
            token,
        })
    }

    /// Applies `op` to the batch's auth state; returns whether it changed (then the
    /// revision moves).
    fn auth_change(
        &mut self,
        op: &A,
        token: &mut Option<String>,
    ) -> std::result::Result<bool, AuthError> {
        let cur = self.auth.current();
        match op {
            A::Enable(_) => {
                if cur.enabled {
                    return Ok(false);
                }
                if !cur.users.contains_key(ROOT) {
                    return Err(AuthError::RootUserNotExist);
                }
                if !cur.has_role(ROOT, ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.auth.edit().enabled = true;
                Ok(true)
            }
            A::Disable(_) => {
                if !cur.enabled {
                    return Ok(false);
                }
                self.auth.edit().enabled = false;
                self.auth.tokens.push(TokenEvent::Cleared);
                Ok(true)
            }
            A::Authenticate(a) => {
                if !cur.enabled {
                    return Err(AuthError::NotEnabled);
                }
                if !cur.users.contains_key(&a.name) {
                    return Err(AuthError::AuthFailed);
                }
                let t = format!("{}.{}", a.prefix, self.index);
                self.auth.tokens.push(TokenEvent::Issued {
                    token: t.clone(),
                    user: a.name.clone(),
                    issued_unix_ms: a.issued_unix_ms,
                });
                *token = Some(t);
                Ok(false)
            }
            A::UserAdd(u) => {
                if u.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if cur.users.contains_key(&u.name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                self.auth.edit().users.insert(
                    u.name.clone(),
                    User {
                        name: Bytes::from(u.name.clone().into_bytes()),
                        password: u.password_hash.clone(),
                        roles: Vec::new(),
                        options: u.options,
                    },
                );
                Ok(true)
            }
            A::UserDelete(d) => {
                if cur.enabled && d.name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if !cur.users.contains_key(&d.name) {
                    return Err(AuthError::UserNotFound);
                }
                self.auth.edit().users.remove(&d.name);
                self.auth
                    .tokens
                    .push(TokenEvent::UserInvalidated(d.name.clone()));
                Ok(true)
            }
            A::UserChangePassword(c) => {
                let Some(u) = self.auth.edit().users.get_mut(&c.name) else {
                    return Err(AuthError::UserNotFound);
                };
                u.password = c.password_hash.clone();
                self.auth
                    .tokens
                    .push(TokenEvent::UserInvalidated(c.name.clone()));
                Ok(true)
            }
            A::UserGrantRole(g) => {
                let Some(u) = cur.users.get(&g.user) else {
                    return Err(AuthError::UserNotFound);
                };
                if g.role != ROOT && !cur.roles.contains_key(&g.role) {
                    return Err(AuthError::RoleNotFound);
                }
                if u.roles.contains(&g.role) {
                    return Ok(false);
                }
                let u = self.auth.edit().users.get_mut(&g.user).expect("checked");
                u.roles.push(g.role.clone());
                u.roles.sort();
                Ok(true)
            }
            A::UserRevokeRole(r) => {
                if cur.enabled && r.name == ROOT && r.role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let Some(u) = cur.users.get(&r.name) else {
                    return Err(AuthError::UserNotFound);
                };
                if !u.roles.contains(&r.role) {
                    return Err(AuthError::RoleNotGranted);
                }
                let u = self.auth.edit().users.get_mut(&r.name).expect("checked");
                u.roles.retain(|x| *x != r.role);
                Ok(true)
            }
            A::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if cur.roles.contains_key(&r.name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.auth.edit().roles.insert(
                    r.name.clone(),
                    Role {
                        name: Bytes::from(r.name.clone().into_bytes()),
                        key_permission: Vec::new(),
                    },
                );
                Ok(true)
            }
            A::RoleDelete(r) => {
                if cur.enabled && r.role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if !cur.roles.contains_key(&r.role) {
                    return Err(AuthError::RoleNotFound);
                }
                let st = self.auth.edit();
                st.roles.remove(&r.role);
                for u in st.users.values_mut() {
                    u.roles.retain(|x| *x != r.role);
                }
                Ok(true)
            }
            A::RoleGrantPermission(g) => {
                let Some(perm) = &g.perm else {
                    return Err(AuthError::InvalidAuthMgmt);
                };
                if PermType::try_from(perm.perm_type).is_err() || perm.key.is_empty() {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let Some(role) = self.auth.edit().roles.get_mut(&g.name) else {
                    return Err(AuthError::RoleNotFound);
                };
                match role
                    .key_permission
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(p) if p.perm_type == perm.perm_type => return Ok(false),
                    Some(p) => p.perm_type = perm.perm_type,
                    None => {
                        role.key_permission.push(Permission {
                            perm_type: perm.perm_type,
                            key: perm.key.clone(),
                            range_end: perm.range_end.clone(),
                        });
                        sort_permissions(&mut role.key_permission);
                    }
                }
                Ok(true)
            }
            A::RoleRevokePermission(r) => {
                let Some(role) = cur.roles.get(&r.role) else {
                    return Err(AuthError::RoleNotFound);
                };
                let Some(at) = role
                    .key_permission
                    .iter()
                    .position(|p| p.key == r.key && p.range_end == r.range_end)
                else {
                    return Err(AuthError::PermissionNotGranted);
                };
                self.auth
                    .edit()
                    .roles
                    .get_mut(&r.role)
                    .expect("checked")
                    .key_permission
                    .remove(at);
                Ok(true)
            }
        }
    }
}
