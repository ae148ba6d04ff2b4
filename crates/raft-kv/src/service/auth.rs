//! The etcd `Auth` service (users, roles, permissions, tokens) and how every service learns
//! who calls ([`Who`]): the `token` gRPC metadata, else the client certificate's common
//! name ([`CertUser`], put into the request by the server that ended TLS), else nobody.
//!
//! Passwords are hashed (bcrypt, [`AuthOptions::bcrypt_cost`]) or checked on the member that
//! receives the request, off the async threads, before anything is proposed: the log carries
//! only hashes and tokens. Reads (`UserGet`, `UserList`, `RoleGet`, `RoleList`,
//! `AuthStatus`) wait for a ReadIndex barrier and answer from the local applied state.

use super::{EtcdService, kv_status};
use crate::Response as KvResponse;
use crate::auth::jwt::JwtTokens;
use crate::auth::{AuthError, AuthState, ROOT, token_index, token_prefix};
use crate::command::{Command, Op};
use crate::pb::etcdserverpb::{self as pb, auth_server};
use crate::pb::kvauth::{self as kvauth, AuthCommand, Caller, auth_command::Op as A};
use prost::bytes::Bytes;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// etcd's default bcrypt cost.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// How many times a request is checked and proposed again when the auth state moved
/// between its check and its apply.
const AUTH_ATTEMPTS: usize = 3;

/// How the Auth service hashes passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthOptions {
    /// The bcrypt cost of new password hashes (4 to 31; etcd's default 10).
    pub bcrypt_cost: u32,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            bcrypt_cost: DEFAULT_BCRYPT_COST,
        }
    }
}

/// The user name of a verified client certificate (its common name), as the server that
/// ended TLS puts it into a request's extensions. With authentication on, a request without
/// a token acts as this user (etcd's `--client-cert-auth` behaviour).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertUser(pub String);

/// The caller of a request and the auth state its permissions are checked under.
#[derive(Clone, Debug)]
pub struct Who {
    /// The auth state when the caller was resolved.
    pub state: Arc<AuthState>,
    /// The user (empty: none, or authentication is off).
    pub user: String,
    /// The auth revision a JWT token was issued at (`None`: a simple token, a certificate or
    /// nobody). Such a caller may act only while the auth revision has not moved past it
    /// (etcd's rule for JWT tokens).
    pub token_revision: Option<u64>,
}

impl Who {
    /// The caller record proposed commands carry.
    pub fn caller(&self) -> Caller {
        self.state.caller(&self.user)
    }

    /// Whether the caller may manage users, roles and the cluster (see
    /// [`AuthState::check_admin`]).
    pub fn admin(&self) -> Result<(), Status> {
        self.state.check_admin(&self.user).map_err(Status::from)
    }

    /// `state` (newer than the one the caller was resolved under) as the state to check
    /// under, unless the caller's JWT token is older than it: then etcd's "revision of auth
    /// store is old", and the client authenticates again.
    pub fn under(&self, state: Arc<AuthState>) -> Result<Arc<AuthState>, AuthError> {
        match self.token_revision {
            Some(r) if state.enabled() && r < state.revision() => Err(AuthError::OldRevision),
            _ => Ok(state),
        }
    }
}

/// The gRPC metadata keys a token may come in (etcd's clients send `token`; its gateway
/// `authorization`).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

impl EtcdService {
    /// Who calls with this request's metadata and extensions. With authentication on, an
    /// unknown or expired token is refused (`Unauthenticated`, "invalid auth token"); a
    /// token issued at an index this member has not applied yet waits for a ReadIndex
    /// barrier first (it was issued through the log, so the barrier brings it).
    pub async fn who<T>(&self, req: &Request<T>) -> Result<Who, Status> {
        self.who_from(req.metadata(), req.extensions()).await
    }

    /// [`who`](Self::who) from the parts of a request.
    pub async fn who_from(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        extensions: &tonic::Extensions,
    ) -> Result<Who, Status> {
        let store = &self.ctx.store;
        let mut state = store.auth_state();
        let token = TOKEN_KEYS
            .iter()
            .find_map(|k| metadata.get(*k).and_then(|v| v.to_str().ok()));
        if !state.enabled() {
            // A token issued after this member's state (authentication was turned on, and
            // the token issued, by entries it has not applied yet): catch up first, or the
            // request would run as nobody under a state that is already gone.
            let ahead = token.is_some_and(|t| match store.jwt_tokens() {
                Some(jwt) => jwt
                    .verify(t)
                    .is_some_and(|id| id.revision > state.revision()),
                None => token_index(t).is_some_and(|i| i > store.applied_index()),
            });
            if ahead {
                self.read_barrier(false).await?;
                state = store.auth_state();
            }
        }
        if !state.enabled() {
            return Ok(Who {
                state,
                user: String::new(),
                token_revision: None,
            });
        }
        if let (Some(token), Some(jwt)) = (token, store.jwt_tokens()) {
            return self.who_jwt(&jwt, token, state).await;
        }
        if let Some(token) = token {
            let user = match store.auth_token_user(token) {
                Some(u) => u,
                None => match token_index(token) {
                    Some(i) if i > store.applied_index() => {
                        self.read_barrier(false).await?;
                        store
                            .auth_token_user(token)
                            .ok_or(AuthError::InvalidToken)?
                    }
                    _ => return Err(AuthError::InvalidToken.into()),
                },
            };
            return Ok(Who {
                state: store.auth_state(),
                user,
                token_revision: None,
            });
        }
        let user = extensions
            .get::<CertUser>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        Ok(Who {
            state,
            user,
            token_revision: None,
        })
    }

    /// The caller of a JWT token (etcd's rules): a token that does not verify or has
    /// expired is "invalid auth token"; one issued before the current auth revision is
    /// "revision of auth store is old"; one issued at a revision this member has not applied
    /// yet waits for a ReadIndex barrier (it cannot be newer than the cluster's state).
    async fn who_jwt(
        &self,
        jwt: &JwtTokens,
        token: &str,
        mut state: Arc<AuthState>,
    ) -> Result<Who, Status> {
        let id = jwt.verify(token).ok_or(AuthError::InvalidToken)?;
        if id.revision > state.revision() {
            self.read_barrier(false).await?;
            state = self.ctx.store.auth_state();
            if id.revision > state.revision() {
                return Err(AuthError::InvalidToken.into());
            }
        }
        let who = Who {
            state: state.clone(),
            user: id.user,
            token_revision: Some(id.revision),
        };
        who.under(state)?;
        Ok(who)
    }

    /// Fails unless the caller of `req` may manage the cluster (always with authentication
    /// off; the `root` role with it on).
    pub async fn require_admin<T>(&self, req: &Request<T>) -> Result<Who, Status> {
        let who = self.who(req).await?;
        who.admin()?;
        Ok(who)
    }

    /// Checks `op` for `who` and proposes it carrying the caller, so apply checks it again at
    /// the auth revision it was checked at. A refusal is decided under the auth state of a
    /// ReadIndex barrier (a member that lags behind a grant does not refuse what the
    /// cluster allows). When the auth state moved in between (etcd's
    /// "revision of auth store is old"), checks and proposes again under the new state, a
    /// few times, before giving up with that error.
    pub(crate) async fn propose_as(&self, op: Op, who: &Who) -> Result<KvResponse, Status> {
        let mut who = who.clone();
        let mut attempt = 1;
        let mut cmd = Command::new(0, op);
        let mut synced = false;
        let mut space_checked = false;
        loop {
            match who.state.check_op(&who.user, &cmd.op) {
                Ok(()) => {}
                // This member may not have applied a grant yet: refuse only under the state
                // of a ReadIndex barrier.
                Err(AuthError::PermissionDenied) if !synced => {
                    synced = true;
                    self.read_barrier(false).await?;
                    who.state = who.under(self.ctx.store.auth_state())?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if attempt == 1 && !space_checked {
                // Only for a caller who may write: a refused one never raises the alarm.
                self.check_space(&cmd.op).await?;
                space_checked = true;
            }
            cmd.caller = Some(who.caller());
            match self.propose_command(&cmd).await? {
                Err(crate::Error::Auth(AuthError::OldRevision)) if attempt < AUTH_ATTEMPTS => {
                    attempt += 1;
                    who.state = who.under(self.ctx.store.auth_state())?;
                }
                Err(e) => return Err(kv_status(e)),
                Ok(r) => return Ok(r),
            }
        }
    }

    /// Proposes an auth command for `who` (see [`propose_as`](Self::propose_as)).
    async fn propose_auth(&self, op: A, who: &Who) -> Result<crate::AuthAnswer, Status> {
        match self
            .propose_as(Op::Auth(AuthCommand { op: Some(op) }), who)
            .await?
        {
            KvResponse::Auth(a) => Ok(a),
            _ => Err(super::unexpected("an auth command")),
        }
    }

    /// A response header at the store's revision.
    fn auth_header(&self) -> Option<pb::ResponseHeader> {
        self.header(self.ctx.store.revision())
    }

    /// A bcrypt hash of `password`, computed off the async threads.
    async fn hash_password(&self, password: String) -> Result<Bytes, Status> {
        let cost = self.auth.bcrypt_cost;
        let hashed = tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(format!("password hashing stopped: {e}")))?
            .map_err(|e| Status::internal(format!("password hashing failed: {e}")))?;
        Ok(Bytes::from(hashed.into_bytes()))
    }

    /// etcd's `Authenticate` with JWT tokens: the password is checked under the auth state
    /// of a ReadIndex barrier, and the token signed here with that state's revision; nothing
    /// goes through the log (any member verifies the token with the public key).
    async fn authenticate_jwt(
        &self,
        jwt: &JwtTokens,
        req: pb::AuthenticateRequest,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        self.read_barrier(false).await?;
        let state = self.ctx.store.auth_state();
        if !state.enabled() {
            return Err(AuthError::NotEnabled.into());
        }
        let (st, name, pw) = (state.clone(), req.name.clone(), req.password);
        let ok = tokio::task::spawn_blocking(move || st.check_password(&name, &pw))
            .await
            .map_err(|e| Status::internal(format!("password check stopped: {e}")))?;
        if !ok {
            tracing::debug!(user = %req.name, "authentication failed");
            return Err(AuthError::AuthFailed.into());
        }
        let token = jwt.sign(&req.name, state.revision()).map_err(|e| {
            Status::failed_precondition(format!("etcdserver: cannot issue a JWT token: {e}"))
        })?;
        Ok(Response::new(pb::AuthenticateResponse {
            header: self.auth_header(),
            token,
        }))
    }

    /// Reads the applied auth state after a ReadIndex barrier, with the caller resolved.
    async fn read_auth<T>(&self, req: &Request<T>) -> Result<Who, Status> {
        self.read_barrier(false).await?;
        self.who(req).await
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[tonic::async_trait]
impl auth_server::Auth for EtcdService {
    async fn auth_enable(
        &self,
        req: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::Enable(req.into_inner()), &who).await?;
        Ok(Response::new(pb::AuthEnableResponse {
            header: self.auth_header(),
        }))
    }

    async fn auth_disable(
        &self,
        req: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::Disable(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthDisableResponse {
            header: self.auth_header(),
        }))
    }

    async fn auth_status(
        &self,
        _req: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        self.read_barrier(false).await?;
        let state = self.ctx.store.auth_state();
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.auth_header(),
            enabled: state.enabled(),
            auth_revision: state.revision(),
        }))
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let req = req.into_inner();
        if let Some(jwt) = self.ctx.store.jwt_tokens() {
            return self.authenticate_jwt(&jwt, req).await;
        }
        let password = Arc::new(req.password);
        for _ in 0..AUTH_ATTEMPTS {
            let state = self.ctx.store.auth_state();
            if !state.enabled() {
                return Err(AuthError::NotEnabled.into());
            }
            let (pw, st, name) = (password.clone(), state.clone(), req.name.clone());
            let ok = tokio::task::spawn_blocking(move || st.check_password(&name, &pw))
                .await
                .map_err(|e| Status::internal(format!("password check stopped: {e}")))?;
            if !ok {
                tracing::debug!(user = %req.name, "authentication failed");
                return Err(AuthError::AuthFailed.into());
            }
            let cmd = Command::new(
                0,
                Op::Auth(AuthCommand {
                    op: Some(A::Authenticate(kvauth::Authenticate {
                        name: req.name.clone(),
                        prefix: token_prefix(),
                        issued_unix_ms: unix_ms(),
                    })),
                }),
            )
            .with_caller(Some(state.caller(&req.name)));
            match self.propose_command(&cmd).await? {
                Ok(KvResponse::Auth(crate::AuthAnswer {
                    token: Some(token), ..
                })) => {
                    return Ok(Response::new(pb::AuthenticateResponse {
                        header: self.auth_header(),
                        token,
                    }));
                }
                Ok(_) => return Err(super::unexpected("authenticate")),
                // The password may have changed meanwhile: check it again.
                Err(crate::Error::Auth(AuthError::OldRevision)) => {}
                Err(e) => return Err(kv_status(e)),
            }
        }
        Err(AuthError::OldRevision.into())
    }

    async fn user_add(
        &self,
        req: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let who = self.require_admin(&req).await?;
        let req = req.into_inner();
        if req.name.is_empty() {
            return Err(AuthError::UserEmpty.into());
        }
        let no_password = req.options.is_some_and(|o| o.no_password);
        let password_hash = if no_password {
            Bytes::new()
        } else {
            self.hash_password(req.password).await?
        };
        self.propose_auth(
            A::UserAdd(kvauth::UserAdd {
                name: req.name,
                password_hash,
                options: req.options,
            }),
            &who,
        )
        .await?;
        Ok(Response::new(pb::AuthUserAddResponse {
            header: self.auth_header(),
        }))
    }

    async fn user_get(
        &self,
        req: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let who = self.read_auth(&req).await?;
        let name = req.into_inner().name;
        // Anyone may read their own user; the rest needs root.
        if who.user != name {
            who.admin()?;
        }
        let user = who.state.user(&name).ok_or(AuthError::UserNotFound)?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: self.auth_header(),
            roles: user.roles.clone(),
        }))
    }

    async fn user_list(
        &self,
        req: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        let who = self.read_auth(&req).await?;
        who.admin()?;
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.auth_header(),
            users: who.state.user_names(),
        }))
    }

    async fn user_delete(
        &self,
        req: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::UserDelete(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthUserDeleteResponse {
            header: self.auth_header(),
        }))
    }

    async fn user_change_password(
        &self,
        req: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let who = self.require_admin(&req).await?;
        let req = req.into_inner();
        if who.state.user(&req.name).is_none() {
            return Err(AuthError::UserNotFound.into());
        }
        let password_hash = self.hash_password(req.password).await?;
        self.propose_auth(
            A::UserChangePassword(kvauth::UserChangePassword {
                name: req.name,
                password_hash,
            }),
            &who,
        )
        .await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse {
            header: self.auth_header(),
        }))
    }

    async fn user_grant_role(
        &self,
        req: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::UserGrantRole(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse {
            header: self.auth_header(),
        }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::UserRevokeRole(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse {
            header: self.auth_header(),
        }))
    }

    async fn role_add(
        &self,
        req: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::RoleAdd(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthRoleAddResponse {
            header: self.auth_header(),
        }))
    }

    async fn role_get(
        &self,
        req: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let who = self.read_auth(&req).await?;
        let name = req.into_inner().role;
        // A user may read the roles it has; the rest needs root.
        if !who.state.has_role(&who.user, &name) {
            who.admin()?;
        }
        let role = who.state.role(&name).ok_or(AuthError::RoleNotFound)?;
        Ok(Response::new(pb::AuthRoleGetResponse {
            header: self.auth_header(),
            perm: role.key_permission.clone(),
        }))
    }

    async fn role_list(
        &self,
        req: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        let who = self.read_auth(&req).await?;
        who.admin()?;
        Ok(Response::new(pb::AuthRoleListResponse {
            header: self.auth_header(),
            roles: who.state.role_names(),
        }))
    }

    async fn role_delete(
        &self,
        req: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::RoleDelete(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse {
            header: self.auth_header(),
        }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::RoleGrantPermission(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header: self.auth_header(),
        }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let who = self.require_admin(&req).await?;
        self.propose_auth(A::RoleRevokePermission(req.into_inner()), &who)
            .await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header: self.auth_header(),
        }))
    }
}

/// Whether `who` is `root` (for callers that let root past other gates).
pub fn is_root(who: &Who) -> bool {
    who.state.enabled() && who.state.has_role(&who.user, ROOT)
}
