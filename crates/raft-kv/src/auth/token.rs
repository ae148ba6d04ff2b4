//! A member's simple tokens: token -> user, each expiring after the time to live without
//! use (every use starts it again), as etcd's simple tokens do.
//!
//! Tokens are issued through the log (an `Authenticate` command, proposed after the
//! receiving member checked the password): every member applies it and learns the token,
//! which is its random prefix and the entry's log index. The table itself is in memory only:
//! a restarted member has forgotten its tokens and clients authenticate again (etcd's
//! clients do so on "invalid auth token").

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// etcd's default time to live of a simple token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// A change of the token table, in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenEvent {
    /// A token for `user`, issued at `issued_unix_ms` by the proposing member.
    Issued {
        token: String,
        user: String,
        issued_unix_ms: u64,
    },
    /// Every token of `user` is void (user deleted, password changed).
    UserInvalidated(String),
    /// Every token is void (authentication turned off).
    Cleared,
}

#[derive(Debug)]
struct Entry {
    user: String,
    expires: Instant,
}

/// The tokens a member knows.
#[derive(Debug)]
pub(crate) struct TokenTable {
    ttl: Duration,
    tokens: HashMap<String, Entry>,
}

impl Default for TokenTable {
    fn default() -> Self {
        TokenTable {
            ttl: DEFAULT_TOKEN_TTL,
            tokens: HashMap::new(),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl TokenTable {
    /// Sets the time to live of tokens issued or used from now on.
    pub(crate) fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// The time to live.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Applies the events of an applied batch. A token issued longer than the time to live
    /// ago (by the proposer's clock; a member applying late) is not taken in; one issued
    /// "in the future" (clock skew) lives one time to live from now.
    pub(crate) fn apply(&mut self, events: &[TokenEvent], now: Instant) {
        self.apply_at(events, now, unix_ms());
    }

    fn apply_at(&mut self, events: &[TokenEvent], now: Instant, now_unix_ms: u64) {
        self.tokens.retain(|_, e| e.expires > now);
        for ev in events {
            match ev {
                TokenEvent::Issued {
                    token,
                    user,
                    issued_unix_ms,
                } => {
                    let age = Duration::from_millis(now_unix_ms.saturating_sub(*issued_unix_ms));
                    if age >= self.ttl {
                        continue;
                    }
                    self.tokens.insert(
                        token.clone(),
                        Entry {
                            user: user.clone(),
                            expires: now + (self.ttl - age),
                        },
                    );
                }
                TokenEvent::UserInvalidated(user) => self.tokens.retain(|_, e| e.user != *user),
                TokenEvent::Cleared => self.tokens.clear(),
            }
        }
    }

    /// The user of `token`, when it is known and has not expired; a use starts its time to
    /// live again.
    pub(crate) fn user(&mut self, token: &str, now: Instant) -> Option<String> {
        let e = self.tokens.get_mut(token)?;
        if e.expires <= now {
            self.tokens.remove(token);
            return None;
        }
        e.expires = now + self.ttl;
        Some(e.user.clone())
    }

    /// How many tokens are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(token: &str, user: &str, at: u64) -> TokenEvent {
        TokenEvent::Issued {
            token: token.into(),
            user: user.into(),
            issued_unix_ms: at,
        }
    }

    #[test]
    fn tokens_expire_without_use_and_live_on_with_use() {
        let mut t = TokenTable::default();
        t.set_ttl(Duration::from_secs(10));
        let now = Instant::now();
        t.apply_at(&[issued("a.1", "alice", 1_000_000)], now, 1_000_000);
        assert_eq!(
            t.user("a.1", now + Duration::from_secs(9)).as_deref(),
            Some("alice")
        );
        // The use at 9 s started the time to live again.
        assert_eq!(
            t.user("a.1", now + Duration::from_secs(18)).as_deref(),
            Some("alice")
        );
        assert_eq!(t.user("a.1", now + Duration::from_secs(29)), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.user("unknown.3", now), None);
    }

    #[test]
    fn late_applies_count_from_the_issue_time() {
        let mut t = TokenTable::default();
        t.set_ttl(Duration::from_secs(10));
        let now = Instant::now();
        // Applied 4 s after it was issued: 6 s left.
        t.apply_at(&[issued("a.1", "alice", 1_000_000)], now, 1_004_000);
        assert!(t.user("a.1", now + Duration::from_millis(5_900)).is_some());
        let mut t2 = TokenTable::default();
        t2.set_ttl(Duration::from_secs(10));
        t2.apply_at(&[issued("b.2", "bob", 1_000_000)], now, 1_000_000 + 10_000);
        assert_eq!(t2.user("b.2", now), None, "issued a whole TTL ago");
        // Issued "in the future" (skew): one TTL from now.
        t2.apply_at(&[issued("c.3", "carol", 2_000_000)], now, 1_000_000);
        assert!(t2.user("c.3", now + Duration::from_millis(9_900)).is_some());
    }

    #[test]
    fn invalidation() {
        let mut t = TokenTable::default();
        let now = Instant::now();
        let ms = unix_ms();
        t.apply_at(
            &[
                issued("a.1", "alice", ms),
                issued("b.2", "bob", ms),
                issued("a.3", "alice", ms),
            ],
            now,
            ms,
        );
        t.apply_at(&[TokenEvent::UserInvalidated("alice".into())], now, ms);
        assert_eq!(t.user("a.1", now), None);
        assert_eq!(t.user("a.3", now), None);
        assert_eq!(t.user("b.2", now).as_deref(), Some("bob"));
        t.apply_at(&[TokenEvent::Cleared], now, ms);
        assert_eq!(t.user("b.2", now), None);
    }
}
