//! [`AddressBook`]: where each member's peer transport listens, shared by the state machine
//! (which learns addresses from the log) and a transport (which dials them).

use parking_lot::RwLock;
use raft_core::NodeId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `url` without an `http://` or `https://` scheme and without trailing slashes: the
/// `host:port` a transport dials.
pub fn strip_scheme(url: &str) -> &str {
    let s = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    s.trim_end_matches('/')
}

/// Called with a member's id and new address when a known member's address changes.
pub type MoveListener = Arc<dyn Fn(NodeId, &str) + Send + Sync>;

/// Member id → peer address (`host:port`), cheap to clone (shared).
#[derive(Clone, Default)]
pub struct AddressBook {
    inner: Arc<RwLock<BTreeMap<NodeId, String>>>,
    moved: Arc<RwLock<Option<MoveListener>>>,
}

impl std::fmt::Debug for AddressBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressBook")
            .field("inner", &*self.inner.read())
            .finish_non_exhaustive()
    }
}

impl AddressBook {
    /// A book holding `members`.
    pub fn new(members: BTreeMap<NodeId, String>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(members)),
            moved: Arc::default(),
        }
    }

    /// Calls `listener` whenever the address of a member the book knew changes (a
    /// `MemberUpdate` applied), so a transport can dial the new one.
    pub fn on_move(&self, listener: MoveListener) {
        *self.moved.write() = Some(listener);
    }

    /// The address of `id`.
    pub fn get(&self, id: NodeId) -> Option<String> {
        self.inner.read().get(&id).cloned()
    }

    /// Records the address of `id` (a URL's scheme is dropped).
    pub fn set(&self, id: NodeId, addr: &str) {
        let addr = strip_scheme(addr).to_string();
        let old = self.inner.write().insert(id, addr.clone());
        if old.is_some_and(|o| o != addr)
            && let Some(listener) = self.moved.read().clone()
        {
            listener(id, &addr);
        }
    }

    /// Every known member.
    pub fn all(&self) -> BTreeMap<NodeId, String> {
        self.inner.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_dropped() {
        assert_eq!(strip_scheme("http://a:1/"), "a:1");
        assert_eq!(strip_scheme("https://a:1"), "a:1");
        assert_eq!(strip_scheme("a:1"), "a:1");
        let book = AddressBook::default();
        book.set(3, "http://h:3");
        assert_eq!(book.get(3).as_deref(), Some("h:3"));
        assert_eq!(book.all().len(), 1);
    }
}
