//! Which keys a watch covers ([`WatchRange`]) and an index from keys to the watchers that
//! cover them ([`KeyIndex`]): exact keys and prefixes by hash lookup, other ranges by a scan.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

/// The keys one watch covers, from etcd's `key` / `range_end` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WatchRange {
    /// Exactly this key (`range_end` empty).
    Key(Bytes),
    /// Every key starting with these bytes (`range_end` is the prefix's end, as
    /// `etcdctl watch --prefix` and the clients' `WithPrefix` send).
    Prefix(Bytes),
    /// `[start, end)`; `end == None`: every key >= `start` (`range_end` `"\0"`).
    Span {
        /// First key, inclusive.
        start: Bytes,
        /// End, exclusive; `None` for unbounded.
        end: Option<Bytes>,
    },
}

impl WatchRange {
    /// Interprets a create request's `key` and `range_end` as etcd does (an empty key is
    /// `"\0"`); `None` when the range holds no key (`range_end <= key`), which etcd refuses
    /// with "mvcc: watcher range is empty".
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> Option<Self> {
        let key = if key.is_empty() {
            Bytes::from_static(b"\0")
        } else {
            Bytes::copy_from_slice(key)
        };
        if range_end.is_empty() {
            return Some(WatchRange::Key(key));
        }
        if range_end == [0] {
            return Some(WatchRange::Span {
                start: key,
                end: None,
            });
        }
        if range_end <= key.as_ref() {
            return None;
        }
        if prefix_end(&key).as_deref() == Some(range_end) {
            return Some(WatchRange::Prefix(key));
        }
        Some(WatchRange::Span {
            start: key,
            end: Some(Bytes::copy_from_slice(range_end)),
        })
    }

    /// True when `key` is in the range.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match self {
            WatchRange::Key(k) => k.as_ref() == key,
            WatchRange::Prefix(p) => key.starts_with(p),
            WatchRange::Span { start, end } => {
                key >= start.as_ref() && end.as_ref().is_none_or(|e| key < e.as_ref())
            }
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`); `None` when there is none (the prefix is empty or all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|b| *b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// From keys to the watchers (by their hub key) that cover them.
///
/// Exact keys and prefixes are found by hash lookups (one per distinct prefix length in
/// use), so thousands of single-key or prefix watchers cost a few lookups per event; other
/// ranges are scanned.
#[derive(Default, Debug)]
pub(crate) struct KeyIndex {
    exact: HashMap<Bytes, Vec<u64>>,
    prefixes: HashMap<Bytes, Vec<u64>>,
    /// Prefix length -> how many entries of `prefixes` have it.
    prefix_lens: BTreeMap<usize, usize>,
    spans: BTreeMap<u64, (Bytes, Option<Bytes>)>,
    len: usize,
}

fn remove_id(map: &mut HashMap<Bytes, Vec<u64>>, key: &Bytes, id: u64) -> (bool, bool) {
    let Some(ids) = map.get_mut(key) else {
        return (false, false);
    };
    let Some(pos) = ids.iter().position(|x| *x == id) else {
        return (false, false);
    };
    ids.swap_remove(pos);
    let emptied = ids.is_empty();
    if emptied {
        map.remove(key);
    }
    (true, emptied)
}

impl KeyIndex {
    /// Adds watcher `id` covering `range`.
    pub(crate) fn insert(&mut self, id: u64, range: &WatchRange) {
        match range {
            WatchRange::Key(k) => self.exact.entry(k.clone()).or_default().push(id),
            WatchRange::Prefix(p) => {
                let ids = self.prefixes.entry(p.clone()).or_default();
                if ids.is_empty() {
                    *self.prefix_lens.entry(p.len()).or_default() += 1;
                }
                ids.push(id);
            }
            WatchRange::Span { start, end } => {
                self.spans.insert(id, (start.clone(), end.clone()));
            }
        }
        self.len += 1;
    }

    /// Removes watcher `id` (added with the same `range`); false when it was not there.
    pub(crate) fn remove(&mut self, id: u64, range: &WatchRange) -> bool {
        let removed = match range {
            WatchRange::Key(k) => remove_id(&mut self.exact, k, id).0,
            WatchRange::Prefix(p) => {
                let (removed, emptied) = remove_id(&mut self.prefixes, p, id);
                if emptied && let Some(n) = self.prefix_lens.get_mut(&p.len()) {
                    *n -= 1;
                    if *n == 0 {
                        self.prefix_lens.remove(&p.len());
                    }
                }
                removed
            }
            WatchRange::Span { .. } => self.spans.remove(&id).is_some(),
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// How many watchers the index holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Calls `f` with every watcher that covers `key` (each once).
    pub(crate) fn for_each_match(&self, key: &[u8], mut f: impl FnMut(u64)) {
        if let Some(ids) = self.exact.get(key) {
            ids.iter().for_each(|id| f(*id));
        }
        for len in self.prefix_lens.keys() {
            if *len > key.len() {
                break;
            }
            if let Some(ids) = self.prefixes.get(&key[..*len]) {
                ids.iter().for_each(|id| f(*id));
            }
        }
        for (id, (start, end)) in &self.spans {
            if key >= start.as_ref() && end.as_ref().is_none_or(|e| key < e.as_ref()) {
                f(*id);
            }
        }
    }

    /// True when some watcher covers `key`.
    pub(crate) fn any_match(&self, key: &[u8]) -> bool {
        let mut any = false;
        self.for_each_match(key, |_| any = true);
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, end: &str) -> WatchRange {
        WatchRange::new(key.as_bytes(), end.as_bytes()).unwrap()
    }

    #[test]
    fn ranges_as_etcd_reads_them() {
        assert_eq!(r("a", ""), WatchRange::Key(Bytes::from_static(b"a")));
        assert_eq!(r("", ""), WatchRange::Key(Bytes::from_static(b"\0")));
        assert_eq!(r("ab", "ac"), WatchRange::Prefix(Bytes::from_static(b"ab")));
        assert!(matches!(r("a", "\0"), WatchRange::Span { end: None, .. }));
        assert!(matches!(r("a", "c"), WatchRange::Span { end: Some(_), .. }));
        assert_eq!(WatchRange::new(b"b", b"a"), None);
        assert_eq!(WatchRange::new(b"b", b"b"), None);
        // An all-0xff prefix has no end: etcd's clients send "\0" (from the key on).
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(vec![b'b']));
        let p = r("ab", "ac");
        assert!(p.contains(b"ab") && p.contains(b"abz") && !p.contains(b"ac") && !p.contains(b"a"));
        let s = r("b", "d");
        assert!(s.contains(b"b") && s.contains(b"czz") && !s.contains(b"d") && !s.contains(b"a"));
        let all = r("\0", "\0");
        assert!(all.contains(b"a") && all.contains(&[0xff]));
    }

    #[test]
    fn index_finds_every_cover_once_and_forgets_removed() {
        let mut ix = KeyIndex::default();
        let ranges = [
            (1, r("k", "")),
            (2, r("k", "")),
            (3, r("", "\0")),
            (4, r("k", "l")),
            (5, r("", "\u{1}")),
            (6, r("a", "m")),
            (7, r("ka", "")),
            (8, r("kb", "kc")),
        ];
        for (id, range) in &ranges {
            ix.insert(*id, range);
        }
        assert_eq!(ix.len(), 8);
        let matches = |ix: &KeyIndex, key: &[u8]| {
            let mut v = Vec::new();
            ix.for_each_match(key, |id| v.push(id));
            v.sort();
            v
        };
        for key in [&b"k"[..], b"ka", b"kb", b"kbz", b"z", b"\0x"] {
            let want: Vec<u64> = ranges
                .iter()
                .filter(|(_, r)| r.contains(key))
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(matches(&ix, key), want, "key {key:?}");
        }
        assert!(ix.remove(1, &ranges[0].1));
        assert!(!ix.remove(1, &ranges[0].1));
        assert!(ix.remove(4, &ranges[3].1));
        assert!(ix.remove(8, &ranges[7].1));
        assert_eq!(matches(&ix, b"kbz"), vec![3, 6]);
        assert_eq!(matches(&ix, b"k"), vec![2, 3, 6]);
        assert!(ix.any_match(b"z"));
        assert!(ix.remove(3, &ranges[2].1));
        assert!(!ix.any_match(b"z"));
        assert_eq!(ix.len(), 4);
        // Only the "\0" prefix is left: one prefix length to look up.
        assert_eq!(ix.prefix_lens.iter().collect::<Vec<_>>(), vec![(&1, &1)]);
    }
}
