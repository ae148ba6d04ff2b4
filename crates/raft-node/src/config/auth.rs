//! `[auth]`: etcd's authentication (users, roles, tokens; see `raft_kv::auth` and
//! docs/security.md): how long a token lives without use and how hard password hashes are.

use super::{ConfigError, err};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[auth]`: etcd's authentication settings (a restart applies a change). Turning
/// authentication on and off, users and roles are not configuration: they are replicated
/// state, changed with `etcdctl auth`, `user` and `role`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// How long a simple token stays valid without use on a member (each use starts it
    /// again; etcd's `--auth-token-ttl`, default 300s). Between 1s and 24h.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The bcrypt cost of the password hashes this member makes (etcd's `--bcrypt-cost`,
    /// default 10; 4 to 31). Each step doubles the work of hashing and of checking a
    /// password; hashes made at another cost stay valid.
    pub bcrypt_cost: u32,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            token_ttl: raft_kv::auth::token::DEFAULT_TOKEN_TTL,
            bcrypt_cost: raft_kv::service::DEFAULT_BCRYPT_COST,
        }
    }
}

impl AuthSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.token_ttl < Duration::from_secs(1) || self.token_ttl > Duration::from_secs(86_400) {
            return err(format!(
                "auth.token_ttl ({}) must be between 1s and 24h",
                humantime::format_duration(self.token_ttl)
            ));
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return err(format!(
                "auth.bcrypt_cost ({}) must be between 4 and 31",
                self.bcrypt_cost
            ));
        }
        Ok(())
    }

    /// The Auth service's options.
    pub fn options(&self) -> raft_kv::service::AuthOptions {
        raft_kv::service::AuthOptions {
            bcrypt_cost: self.bcrypt_cost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_etcds_and_bounds_are_checked() {
        let a = AuthSection::default();
        assert_eq!(a.token_ttl, Duration::from_secs(300));
        assert_eq!(a.bcrypt_cost, 10);
        assert!(a.validate().is_ok());
        let bad = AuthSection {
            bcrypt_cost: 3,
            ..a.clone()
        };
        assert!(bad.validate().unwrap_err().0.contains("auth.bcrypt_cost"));
        let bad = AuthSection {
            token_ttl: Duration::from_millis(500),
            ..a
        };
        assert!(bad.validate().unwrap_err().0.contains("auth.token_ttl"));
    }

    #[test]
    fn parsed_from_toml() {
        let a: AuthSection = toml::from_str("token_ttl = \"2s\"\nbcrypt_cost = 4\n").unwrap();
        assert_eq!(a.token_ttl, Duration::from_secs(2));
        assert_eq!(a.bcrypt_cost, 4);
        assert!(toml::from_str::<AuthSection>("ttl = \"2s\"").is_err());
    }
}
