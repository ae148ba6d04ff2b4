//! [`AuthError`]: etcd's authentication errors. They sit below the rest of the crate (the
//! crate's [`Error`](crate::Error) wraps them), so they depend on nothing in it.

/// etcd's authentication errors, with etcd's messages (`rpctypes`) and gRPC codes
/// ([`code`](Self::code)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `AuthEnable` without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// `AuthEnable` while the `root` user lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// `UserAdd` of a name that exists.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// A request without a user name (or, with auth on, without a token or certificate).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// A user name that does not exist.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// `RoleAdd` of a name that exists.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// A role name that does not exist.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// A request without a role name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// `Authenticate` with an unknown user or a wrong password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The caller may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// `UserRevokeRole` of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// `RoleRevokePermission` of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// `Authenticate` while authentication is off.
    #[error("etcdserver: authentication is not enabled")]
    NotEnabled,
    /// A token that this member does not know (never issued, expired, or its user changed).
    #[error("etcdserver: invalid auth token")]
    InvalidToken,
    /// A change that would lock everyone out (deleting `root`, or its `root` role, while
    /// authentication is on), or a malformed auth request.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The auth state changed between the permission check and the apply.
    #[error("etcdserver: revision of auth store is old")]
    OldRevision,
}

impl AuthError {
    /// The gRPC status code etcd answers this error with.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            AuthError::RootUserNotExist
            | AuthError::RootRoleNotExist
            | AuthError::UserAlreadyExist
            | AuthError::UserNotFound
            | AuthError::RoleAlreadyExist
            | AuthError::RoleNotFound
            | AuthError::RoleNotGranted
            | AuthError::PermissionNotGranted
            | AuthError::NotEnabled => Code::FailedPrecondition,
            AuthError::UserEmpty
            | AuthError::RoleEmpty
            | AuthError::AuthFailed
            | AuthError::InvalidAuthMgmt
            | AuthError::OldRevision => Code::InvalidArgument,
            AuthError::PermissionDenied => Code::PermissionDenied,
            AuthError::InvalidToken => Code::Unauthenticated,
        }
    }
}
