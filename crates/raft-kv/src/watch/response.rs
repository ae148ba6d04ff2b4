//! Queued items as `WatchResponse`s: consecutive events of one watch share a response up to
//! the size limit, and a watch that asked for `fragment` has a larger one split as etcd does
//! (every part but the last flagged `fragment`).

use super::outbox::{EventsItem, Item};
use crate::pb::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::pb::mvccpb::Event;
use prost::Message as _;

/// Most revisions merged into one response (etcd sends at most 1000 per batch too).
const MAX_MERGED_REVISIONS: usize = 1000;

/// The encoded size of `ev` as an element of `events` (tag, length, body).
fn event_len(ev: &Event) -> usize {
    let n = ev.encoded_len();
    1 + prost::encoding::encoded_len_varint(n as u64) + n
}

/// The events of an item as sent: clones share the key and value bytes; the replaced
/// version is left out unless the watch asked for it.
fn events_of(item: &EventsItem) -> impl Iterator<Item = Event> + '_ {
    item.events().map(|ev| {
        let mut ev = ev.clone();
        if !item.prev_kv {
            ev.prev_kv = None;
        }
        ev
    })
}

/// The events response being built.
struct Open {
    watch_id: i64,
    fragment: bool,
    events: Vec<Event>,
    /// Encoded size of `events`.
    len: usize,
    /// Revisions merged.
    revisions: usize,
    /// The last of them.
    revision: i64,
}

/// Builds the responses for `items`, in order. `max_bytes` is the request size limit;
/// `header` makes the header for a revision.
pub(crate) fn responses(
    items: Vec<Item>,
    max_bytes: usize,
    header: &dyn Fn(i64) -> Option<ResponseHeader>,
) -> Vec<WatchResponse> {
    let mut out = Vec::with_capacity(items.len());
    let mut open: Option<Open> = None;
    let flush = |open: &mut Option<Open>, out: &mut Vec<WatchResponse>| {
        if let Some(o) = open.take() {
            let resp = WatchResponse {
                header: header(o.revision),
                watch_id: o.watch_id,
                events: o.events,
                ..Default::default()
            };
            if o.fragment {
                split(resp, max_bytes, out);
            } else {
                out.push(resp);
            }
        }
    };
    for item in items {
        match item {
            Item::Events(e) => {
                let events: Vec<Event> = events_of(&e).collect();
                let size: usize = events.iter().map(event_len).sum();
                let joins = open.as_ref().is_some_and(|o| {
                    o.watch_id == e.watch_id
                        && o.len + size <= max_bytes
                        && o.revisions < MAX_MERGED_REVISIONS
                });
                if !joins {
                    flush(&mut open, &mut out);
                }
                let o = open.get_or_insert_with(|| Open {
                    watch_id: e.watch_id,
                    fragment: e.fragment,
                    events: Vec::new(),
                    len: 0,
                    revisions: 0,
                    revision: 0,
                });
                o.events.extend(events);
                o.len += size;
                o.revisions += 1;
                o.revision = e.rev.revision;
            }
            Item::Created {
                watch_id,
                revision,
                refused,
            } => {
                flush(&mut open, &mut out);
                out.push(WatchResponse {
                    header: header(revision),
                    watch_id,
                    created: true,
                    canceled: refused.is_some(),
                    cancel_reason: refused.unwrap_or_default(),
                    ..Default::default()
                });
            }
            Item::Canceled {
                watch_id,
                revision,
                compact_revision,
                reason,
            } => {
                flush(&mut open, &mut out);
                out.push(WatchResponse {
                    header: header(revision),
                    watch_id,
                    canceled: true,
                    compact_revision,
                    cancel_reason: reason,
                    ..Default::default()
                });
            }
            Item::Progress { watch_id, revision } => {
                flush(&mut open, &mut out);
                out.push(WatchResponse {
                    header: header(revision),
                    watch_id,
                    ..Default::default()
                });
            }
        }
    }
    flush(&mut open, &mut out);
    out
}

/// Splits a response over `max_bytes` into fragments: each holds events while it stays
/// under the limit (at least one), all but the last have `fragment` set.
fn split(resp: WatchResponse, max_bytes: usize, out: &mut Vec<WatchResponse>) {
    if resp.events.len() < 2 || resp.encoded_len() < max_bytes {
        out.push(resp);
        return;
    }
    let base = WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..resp.clone()
    };
    let base_len = base.encoded_len();
    let mut part = base.clone();
    let mut len = base_len;
    for ev in resp.events {
        let n = event_len(&ev);
        if !part.events.is_empty() && len + n >= max_bytes {
            out.push(std::mem::replace(&mut part, base.clone()));
            len = base_len;
        }
        len += n;
        part.events.push(ev);
    }
    part.fragment = false;
    out.push(part);
}

#[cfg(test)]
mod tests {
    use super::super::outbox::Pick;
    use super::*;
    use crate::events::RevisionEvents;
    use crate::pb::mvccpb::KeyValue;
    use bytes::Bytes;
    use std::sync::Arc;

    fn ev(key: &str, value_len: usize, rev: i64) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::from(vec![b'v'; value_len]),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                ..Default::default()
            }),
        }
    }

    fn events(watch_id: i64, rev: i64, evs: Vec<Event>, pick: Pick, fragment: bool) -> Item {
        Item::Events(EventsItem {
            watch_id,
            rev: Arc::new(RevisionEvents {
                revision: rev,
                events: evs,
            }),
            pick,
            prev_kv: false,
            fragment,
            bytes: 0,
        })
    }

    fn header(rev: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: rev,
            cluster_id: 7,
            ..Default::default()
        })
    }

    #[test]
    fn merges_runs_of_one_watch_in_order() {
        let items = vec![
            Item::Created {
                watch_id: 1,
                revision: 4,
                refused: None,
            },
            events(1, 5, vec![ev("a", 1, 5)], Pick::All, false),
            events(
                1,
                6,
                vec![ev("a", 1, 6), ev("b", 1, 6)],
                Pick::Some(Box::new([1])),
                false,
            ),
            events(2, 6, vec![ev("a", 1, 6)], Pick::All, false),
            events(1, 7, vec![ev("a", 1, 7)], Pick::All, false),
            Item::Progress {
                watch_id: -1,
                revision: 7,
            },
        ];
        let out = responses(items, 1 << 20, &header);
        type Shape = (i64, bool, Vec<(String, i64)>, i64);
        let shape: Vec<Shape> = out
            .iter()
            .map(|r| {
                (
                    r.watch_id,
                    r.created,
                    r.events
                        .iter()
                        .map(|e| {
                            let kv = e.kv.as_ref().unwrap();
                            (
                                String::from_utf8_lossy(&kv.key).into_owned(),
                                kv.mod_revision,
                            )
                        })
                        .collect(),
                    r.header.as_ref().unwrap().revision,
                )
            })
            .collect();
        let s = |k: &str, r| (k.to_string(), r);
        assert_eq!(
            shape,
            vec![
                (1, true, vec![], 4),
                (1, false, vec![s("a", 5), s("b", 6)], 6),
                (2, false, vec![s("a", 6)], 6),
                (1, false, vec![s("a", 7)], 7),
                (-1, false, vec![], 7),
            ]
        );
        assert!(
            out[1].events.iter().all(|e| e.prev_kv.is_none()),
            "prev_kv not asked for"
        );
    }

    #[test]
    fn large_runs_split_only_for_fragment_watches() {
        let big = |rev| ev("k", 400, rev);
        let items = |fragment| {
            vec![
                events(
                    1,
                    5,
                    vec![big(5), big(5), big(5), big(5)],
                    Pick::All,
                    fragment,
                ),
                events(1, 6, vec![big(6)], Pick::All, fragment),
            ]
        };
        // Without fragment: revisions are not merged past the limit, a revision stays whole.
        let out = responses(items(false), 1000, &header);
        assert_eq!(
            out.iter().map(|r| r.events.len()).collect::<Vec<_>>(),
            vec![4, 1]
        );
        assert!(out.iter().all(|r| !r.fragment));
        // With it: parts under the limit, flagged but for the last of each response.
        let out = responses(items(true), 1000, &header);
        assert_eq!(
            out.iter().map(|r| r.events.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(
            out.iter().map(|r| r.fragment).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        assert!(out.iter().all(|r| r.encoded_len() < 1000));
        assert!(out.iter().all(|r| r.watch_id == 1 && r.header.is_some()));
    }
}
