//! The auth state and the members' tokens as [`KvStore`] methods (the state itself and the
//! permission checks are in [`crate::auth`]).

use crate::KvStore;
use crate::auth::AuthState;
use crate::auth::jwt::JwtTokens;

impl KvStore {
    /// The applied auth state (cheap: shared until the next auth change is applied).
    pub fn auth_state(&self) -> std::sync::Arc<AuthState> {
        self.shared.auth.read().clone()
    }

    /// Sets the time to live of this member's tokens (etcd's `--auth-token-ttl`; default
    /// [`DEFAULT_TOKEN_TTL`](crate::auth::token::DEFAULT_TOKEN_TTL)).
    pub fn set_auth_token_ttl(&self, ttl: std::time::Duration) {
        self.shared.tokens.lock().set_ttl(ttl);
    }

    /// The time to live of this member's tokens.
    pub fn auth_token_ttl(&self) -> std::time::Duration {
        self.shared.tokens.lock().ttl()
    }

    /// The user of `token` when this member knows it and it has not expired; the use starts
    /// its time to live again. With JWT tokens: the user of a token that verifies, has not
    /// expired and was issued at the current auth revision.
    pub fn auth_token_user(&self, token: &str) -> Option<String> {
        if let Some(jwt) = self.jwt_tokens() {
            let id = jwt.verify(token)?;
            return (id.revision == self.auth_state().revision).then_some(id.user);
        }
        self.shared
            .tokens
            .lock()
            .user(token, std::time::Instant::now())
    }

    /// Serves JWT tokens with these keys instead of simple tokens (etcd's
    /// `--auth-token jwt,...`); `None`: simple tokens (the default).
    pub fn set_jwt_tokens(&self, jwt: Option<std::sync::Arc<JwtTokens>>) {
        *self.shared.jwt.write() = jwt;
    }

    /// The JWT keys, when this member serves JWT tokens.
    pub fn jwt_tokens(&self) -> Option<std::sync::Arc<JwtTokens>> {
        self.shared.jwt.read().clone()
    }
}
