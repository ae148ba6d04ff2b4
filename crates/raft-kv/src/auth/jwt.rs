//! etcd's JWT tokens (`--auth-token jwt,...`): signed, stateless tokens any member verifies
//! with the public key alone, without the log.
//!
//! A token carries etcd's claims: `username`, `revision` (the auth revision the password was
//! checked at) and, with a time to live, `exp` (seconds since the epoch). Like etcd, a
//! token whose `revision` is older than the member's auth revision is refused with
//! "revision of auth store is old" (every change of users, roles or permissions voids the
//! tokens issued before it: clients authenticate again), one that does not verify or has
//! expired with "invalid auth token". Asymmetric methods (`RS*`, `PS*`, `ES256`, `ES384`,
//! `EdDSA`) sign with the private key and verify with the public key; a member given only
//! the public key verifies but cannot issue. The `HS*` methods use one shared secret (the
//! private key file's bytes) for both, as etcd does.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::str::FromStr;
use std::time::Duration;

/// etcd's default time to live of a JWT token (`ttl=` in `--auth-token`).
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

/// Why a JWT configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JwtConfigError(pub String);

/// The claims of a token, etcd's names.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    exp: Option<u64>,
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The user.
    pub user: String,
    /// The auth revision it was issued at.
    pub revision: u64,
}

/// A member's JWT keys: the verifying key always, the signing key when it may issue tokens.
pub struct JwtTokens {
    algorithm: Algorithm,
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The sign methods this build accepts (etcd's, less `ES512`, which the JWT crate lacks).
pub const SIGN_METHODS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

impl JwtTokens {
    /// Keys for `sign_method` from PEM files' contents (`public_pem` for asymmetric methods;
    /// for `HS*`, `private_pem` is the shared secret and `public_pem` is not used). `ttl`
    /// zero: tokens without `exp`, valid until the auth revision moves. Errors name what is
    /// wrong with which key.
    pub fn new(
        sign_method: &str,
        public_pem: Option<&[u8]>,
        private_pem: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Self, JwtConfigError> {
        let bad = |s: String| JwtConfigError(s);
        let algorithm = Algorithm::from_str(sign_method)
            .ok()
            .filter(|_| SIGN_METHODS.contains(&sign_method))
            .ok_or_else(|| {
                bad(format!(
                    "unknown JWT sign-method {sign_method:?} (one of {})",
                    SIGN_METHODS.join(", ")
                ))
            })?;
        use Algorithm as A;
        let (signing, verifying) = match algorithm {
            A::HS256 | A::HS384 | A::HS512 => {
                let secret = private_pem.filter(|s| !s.is_empty()).ok_or_else(|| {
                    bad(format!("{sign_method} needs priv-key (the shared secret)"))
                })?;
                (
                    Some(EncodingKey::from_secret(secret)),
                    DecodingKey::from_secret(secret),
                )
            }
            _ => {
                let public = public_pem
                    .ok_or_else(|| bad(format!("{sign_method} needs pub-key to verify tokens")))?;
                let verifying = match algorithm {
                    A::ES256 | A::ES384 => DecodingKey::from_ec_pem(public),
                    A::EdDSA => DecodingKey::from_ed_pem(public),
                    _ => DecodingKey::from_rsa_pem(public),
                }
                .map_err(|e| {
                    bad(format!(
                        "pub-key is not a {sign_method} public key in PEM: {e}"
                    ))
                })?;
                let signing = private_pem
                    .map(|p| match algorithm {
                        A::ES256 | A::ES384 => EncodingKey::from_ec_pem(p),
                        A::EdDSA => EncodingKey::from_ed_pem(p),
                        _ => EncodingKey::from_rsa_pem(p),
                    })
                    .transpose()
                    .map_err(|e| {
                        bad(format!(
                            "priv-key is not a {sign_method} private key in PEM: {e}"
                        ))
                    })?;
                (signing, verifying)
            }
        };
        let mut validation = Validation::new(algorithm);
        // etcd's tokens carry no audience or issuer; `exp` only with a time to live.
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.set_required_spec_claims::<&str>(if ttl.is_zero() { &[] } else { &["exp"] });
        let tokens = JwtTokens {
            algorithm,
            signing,
            verifying,
            validation,
            ttl,
        };
        // The two keys must belong together: a token signed here must verify here.
        if tokens.signing.is_some() {
            let probe = tokens
                .sign("probe", 1)
                .map_err(|e| bad(format!("signing with priv-key failed: {e}")))?;
            if tokens.verify(&probe).is_none() {
                return Err(bad(
                    "pub-key does not verify what priv-key signs: the two keys are not a pair"
                        .into(),
                ));
            }
        }
        Ok(tokens)
    }

    /// Whether this member can issue tokens (it has the signing key).
    pub fn can_sign(&self) -> bool {
        self.signing.is_some()
    }

    /// The tokens' time to live (zero: no `exp`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user` at auth revision `revision`, expiring after the time to live.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, String> {
        let key = self
            .signing
            .as_ref()
            .ok_or_else(|| "this member has no JWT signing key (priv-key)".to_string())?;
        let exp = (!self.ttl.is_zero()).then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            now.saturating_add(self.ttl.as_secs().max(1))
        });
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())
    }

    /// What `token` says, when its signature verifies with this member's key and method and
    /// it has not expired; `None` otherwise (a forged, foreign, malformed or expired token).
    pub fn verify(&self, token: &str) -> Option<JwtIdentity> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &self.validation).ok()?;
        let c = data.claims;
        if c.username.is_empty() || c.revision == 0 {
            return None;
        }
        Some(JwtIdentity {
            user: c.username,
            revision: c.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh P-256 pair: (private key PKCS#8 PEM, public key PEM).
    fn ec_pair() -> (Vec<u8>, Vec<u8>) {
        let k = rcgen::KeyPair::generate().unwrap();
        (
            k.serialize_pem().into_bytes(),
            k.public_key_pem().into_bytes(),
        )
    }

    fn b64(data: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    #[test]
    fn sign_verify_expire_and_forge() {
        let (private, public) = ec_pair();
        let ttl = Duration::from_secs(60);
        let t = JwtTokens::new("ES256", Some(&public), Some(&private), ttl).unwrap();
        assert!(t.can_sign());
        let tok = t.sign("alice", 7).unwrap();
        assert_eq!(
            t.verify(&tok),
            Some(JwtIdentity {
                user: "alice".into(),
                revision: 7
            })
        );
        // etcd's claims.
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tok.split('.').nth(1).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(claims["username"], "alice");
        assert_eq!(claims["revision"], 7);
        assert!(claims["exp"].as_u64().unwrap() > 0);
        // A member with the public key alone verifies, and cannot issue.
        let v = JwtTokens::new("ES256", Some(&public), None, ttl).unwrap();
        assert!(!v.can_sign());
        assert!(v.verify(&tok).is_some());
        assert!(v.sign("alice", 7).is_err());
        // Another user in the payload under the old signature: refused.
        let parts: Vec<&str> = tok.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(br#"{"username":"root","revision":7,"exp":99999999999}"#),
            parts[2]
        );
        assert!(t.verify(&forged).is_none());
        // Signed by another key of the same kind: refused.
        let (other_private, other_public) = ec_pair();
        let other =
            JwtTokens::new("ES256", Some(&other_public), Some(&other_private), ttl).unwrap();
        assert!(t.verify(&other.sign("root", 7).unwrap()).is_none());
        // HS256 with the public key as the secret (the classic confusion): refused, the
        // method is pinned.
        let hs = JwtTokens::new("HS256", None, Some(&public), ttl).unwrap();
        assert!(t.verify(&hs.sign("root", 7).unwrap()).is_none());
        // An unsigned token ("alg": "none").
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(br#"{"username":"root","revision":7}"#)
        );
        assert!(t.verify(&none).is_none());
        assert!(t.verify("not.a.token").is_none());
        // Expired: a token past its exp.
        let short = JwtTokens::new(
            "ES256",
            Some(&public),
            Some(&private),
            Duration::from_secs(1),
        )
        .unwrap();
        let tok = short.sign("alice", 7).unwrap();
        assert!(short.verify(&tok).is_some());
        std::thread::sleep(Duration::from_millis(2100));
        assert!(short.verify(&tok).is_none(), "expired");
    }

    #[test]
    fn bad_configurations_are_named() {
        let (private, public) = ec_pair();
        let ttl = DEFAULT_JWT_TTL;
        let e = JwtTokens::new("ES512", Some(&public), None, ttl).unwrap_err();
        assert!(e.0.contains("unknown JWT sign-method"), "{e}");
        let e = JwtTokens::new("RS256", None, None, ttl).unwrap_err();
        assert!(e.0.contains("needs pub-key"), "{e}");
        let e = JwtTokens::new("RS256", Some(&public), None, ttl).unwrap_err();
        assert!(e.0.contains("pub-key is not a RS256 public key"), "{e}");
        let e = JwtTokens::new("ES256", Some(b"garbage"), None, ttl).unwrap_err();
        assert!(e.0.contains("pub-key is not a ES256 public key"), "{e}");
        let e = JwtTokens::new("ES256", Some(&public), Some(b"garbage"), ttl).unwrap_err();
        assert!(e.0.contains("priv-key is not a ES256 private key"), "{e}");
        let (_, other_public) = ec_pair();
        let e = JwtTokens::new("ES256", Some(&other_public), Some(&private), ttl).unwrap_err();
        assert!(e.0.contains("not a pair"), "{e}");
        let e = JwtTokens::new("HS256", None, None, ttl).unwrap_err();
        assert!(e.0.contains("shared secret"), "{e}");
    }
}
