//! `[auth]`: etcd's authentication (users, roles, tokens; see `raft_kv::auth` and
//! docs/security.md): which tokens are served (`token`, etcd's `--auth-token`: simple or
//! JWT), how long a simple token lives without use and how hard password hashes are.

use super::{ConfigError, err};
use raft_kv::auth::jwt::{DEFAULT_JWT_TTL, JwtTokens};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `[auth]`: etcd's authentication settings (a restart applies a change). Turning
/// authentication on and off, users and roles are not configuration: they are replicated
/// state, changed with `etcdctl auth`, `user` and `role`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Which tokens `Authenticate` issues, etcd's `--auth-token` syntax: `simple` (the
    /// default: tokens issued through the log, each member's copy expiring `token_ttl`
    /// after its last use) or `jwt,pub-key=FILE,priv-key=FILE,sign-method=METHOD,ttl=5m`
    /// (signed tokens any member verifies with the public key; see docs/security.md).
    pub token: String,
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
            token: "simple".into(),
            token_ttl: raft_kv::auth::token::DEFAULT_TOKEN_TTL,
            bcrypt_cost: raft_kv::service::DEFAULT_BCRYPT_COST,
        }
    }
}

impl AuthSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // Key files are read here too, so `--check-config` and a start refuse a bad one.
        self.jwt_tokens()?;
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

    /// `token` parsed.
    pub fn token_kind(&self) -> Result<TokenKind, ConfigError> {
        TokenKind::parse(&self.token)
            .map_err(|e| ConfigError(format!("auth.token ({:?}): {e}", self.token)))
    }

    /// The JWT keys when `token` asks for JWT tokens, read from their files (`None` for
    /// simple tokens). A missing or unusable key file is an error naming it.
    pub fn jwt_tokens(&self) -> Result<Option<Arc<JwtTokens>>, ConfigError> {
        let TokenKind::Jwt(jwt) = self.token_kind()? else {
            return Ok(None);
        };
        let read = |name: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
            p.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| {
                        ConfigError(format!("auth.token {name} ({}): {e}", p.display()))
                    })
                })
                .transpose()
        };
        let public = read("pub-key", &jwt.pub_key)?;
        let private = read("priv-key", &jwt.priv_key)?;
        JwtTokens::new(
            &jwt.sign_method,
            public.as_deref(),
            private.as_deref(),
            jwt.ttl,
        )
        .map(|t| Some(Arc::new(t)))
        .map_err(|e| ConfigError(format!("auth.token: {e}")))
    }

    /// The Auth service's options.
    pub fn options(&self) -> raft_kv::service::AuthOptions {
        raft_kv::service::AuthOptions {
            bcrypt_cost: self.bcrypt_cost,
        }
    }
}

/// Which tokens a member issues and accepts (`auth.token`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// etcd's simple tokens, issued through the log.
    Simple,
    /// etcd's JWT tokens.
    Jwt(JwtSettings),
}

/// The parts of `jwt,...` (etcd's option names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    /// `pub-key`: the PEM public key that verifies tokens (not for `HS*`).
    pub pub_key: Option<PathBuf>,
    /// `priv-key`: the PEM private key that signs them (for `HS*`, the shared secret); a
    /// member without it verifies tokens but cannot issue them.
    pub priv_key: Option<PathBuf>,
    /// `sign-method`: RS256, ES256, EdDSA, HS256, ... (required).
    pub sign_method: String,
    /// `ttl`: how long a token is valid after it is issued (etcd's default 5m).
    pub ttl: Duration,
}

impl TokenKind {
    /// Parses etcd's `--auth-token` value.
    pub fn parse(s: &str) -> Result<TokenKind, String> {
        let mut parts = s.split(',');
        match parts.next().map(str::trim) {
            Some("simple") => {
                if parts.next().is_some() {
                    return Err("simple tokens take no options".into());
                }
                Ok(TokenKind::Simple)
            }
            Some("jwt") => {
                let mut j = JwtSettings {
                    pub_key: None,
                    priv_key: None,
                    sign_method: String::new(),
                    ttl: DEFAULT_JWT_TTL,
                };
                for opt in parts {
                    let (k, v) = opt
                        .split_once('=')
                        .ok_or_else(|| format!("{opt:?} is not key=value"))?;
                    match k.trim() {
                        "pub-key" => j.pub_key = Some(PathBuf::from(v.trim())),
                        "priv-key" => j.priv_key = Some(PathBuf::from(v.trim())),
                        "sign-method" => j.sign_method = v.trim().to_string(),
                        "ttl" => {
                            j.ttl = humantime::parse_duration(v.trim())
                                .map_err(|e| format!("ttl {v:?}: {e}"))?;
                        }
                        other => {
                            return Err(format!(
                                "unknown JWT option {other:?} (pub-key, priv-key, sign-method, ttl)"
                            ));
                        }
                    }
                }
                if j.sign_method.is_empty() {
                    return Err("jwt needs sign-method (e.g. sign-method=RS256)".into());
                }
                if j.pub_key.is_none() && j.priv_key.is_none() {
                    return Err("jwt needs pub-key (and priv-key to issue tokens)".into());
                }
                Ok(TokenKind::Jwt(j))
            }
            _ => Err(
                "expected simple or jwt,pub-key=FILE,priv-key=FILE,sign-method=METHOD[,ttl=5m]"
                    .into(),
            ),
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

    #[test]
    fn token_kinds_in_etcds_syntax() {
        assert_eq!(TokenKind::parse("simple"), Ok(TokenKind::Simple));
        assert_eq!(
            TokenKind::parse("jwt,pub-key=a.pub,priv-key=a.key,sign-method=RS256,ttl=10m"),
            Ok(TokenKind::Jwt(JwtSettings {
                pub_key: Some("a.pub".into()),
                priv_key: Some("a.key".into()),
                sign_method: "RS256".into(),
                ttl: Duration::from_secs(600),
            }))
        );
        let j = TokenKind::parse("jwt,pub-key=a.pub,sign-method=ES256").unwrap();
        assert!(
            matches!(j, TokenKind::Jwt(JwtSettings { ttl, priv_key: None, .. }) if ttl == DEFAULT_JWT_TTL)
        );
        for (bad, why) in [
            ("jwt,pub-key=a.pub", "sign-method"),
            ("jwt,sign-method=RS256", "pub-key"),
            (
                "jwt,pub-key=a,sign-method=RS256,colour=red",
                "unknown JWT option",
            ),
            ("jwt,pub-key=a,sign-method=RS256,ttl=soon", "ttl"),
            ("simple,ttl=1s", "no options"),
            ("oauth", "expected simple or jwt"),
        ] {
            let e = TokenKind::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn jwt_key_files_are_read_and_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let k = rcgen::KeyPair::generate().unwrap();
        let (private, public) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
        std::fs::write(&private, k.serialize_pem()).unwrap();
        std::fs::write(&public, k.public_key_pem()).unwrap();
        let with = |token: String| AuthSection {
            token,
            ..AuthSection::default()
        };
        let good = with(format!(
            "jwt,pub-key={},priv-key={},sign-method=ES256,ttl=1m",
            public.display(),
            private.display()
        ));
        assert!(good.validate().is_ok());
        let t = good.jwt_tokens().unwrap().unwrap();
        assert!(t.can_sign());
        assert_eq!(t.ttl(), Duration::from_secs(60));
        assert!(AuthSection::default().jwt_tokens().unwrap().is_none());
        // A missing file, a file that is no key, a key of the wrong kind: named errors.
        let e = with(format!(
            "jwt,pub-key={}/nope.pub,sign-method=ES256",
            dir.path().display()
        ))
        .jwt_tokens()
        .unwrap_err();
        assert!(
            e.0.contains("auth.token pub-key") && e.0.contains("nope.pub"),
            "{e}"
        );
        let e = with(format!(
            "jwt,pub-key={},sign-method=ES256",
            private.display()
        ))
        .jwt_tokens()
        .unwrap_err();
        assert!(e.0.contains("pub-key is not a ES256 public key"), "{e}");
        let e = with(format!(
            "jwt,pub-key={},sign-method=RS256",
            public.display()
        ))
        .jwt_tokens()
        .unwrap_err();
        assert!(e.0.contains("pub-key is not a RS256 public key"), "{e}");
    }
}
