//! A linearizability checker (Wing & Gong's search with Lowe's memoization, as in porcupine)
//! and the key-value model the simulator's clients use.
//!
//! A history is a set of operations, each with an invocation time and, unless it is
//! *indeterminate* (the client timed out: it may or may not have taken effect), a response
//! time and an output. The history is linearizable when the operations can be put in one
//! sequential order that respects real time (an operation that returned before another was
//! invoked comes first) and in which every output is what the sequential model produces.
//!
//! The search walks the history's call/return events in time order, tentatively
//! linearizing any operation whose call has been seen, and backtracks when it reaches the
//! return of an operation that it has not linearized. A cache of (set of linearized
//! operations, model state) pairs already explored keeps it from repeating work, which makes
//! histories of hundreds of concurrent operations per key cheap. Indeterminate operations
//! have no return event: the search may linearize them anywhere after their call, or never.
//! Key-value histories are split per key first (linearizability is compositional), so each
//! search only sees one key's operations.

use crate::fxhash::FxBuildHasher;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;

/// A sequential specification the checker tests histories against.
pub trait Model {
    /// The model's state. Equal states must behave identically (the cache relies on it).
    type State: Clone + Eq + Hash + fmt::Debug;
    /// What an operation asks.
    type Input: fmt::Debug;
    /// What an operation answered.
    type Output: fmt::Debug;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// Applies `input` to `state`. With `Some(output)`, returns the next state when the
    /// model would answer `output`, or `None` when it could not; with `None` (an
    /// indeterminate operation), returns the state as if the operation took effect.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that issued it (for reports only).
    pub client: u64,
    /// What it asked.
    pub input: I,
    /// Invocation time.
    pub call: u64,
    /// Response time and output; `None` when indeterminate (response time = infinity).
    /// Invariant: the response time is `>= call`.
    pub ret: Option<(u64, O)>,
}

/// The verdict on one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A valid linearization exists.
    Linearizable,
    /// No linearization exists. `stuck_at` is the operation (an index into the history)
    /// whose response the deepest search could not get past.
    NotLinearizable {
        /// Index of the blocking operation.
        stuck_at: usize,
    },
    /// The search gave up after its step budget; nothing is known.
    Unknown,
}

const NONE: usize = usize::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return node (NONE when indeterminate).
    matched: usize,
    prev: usize,
    next: usize,
}

/// The set of linearized operations, kept as a 128-bit Zobrist hash: each operation has
/// a fixed random key and the set's hash is the XOR of its members' keys, updated in O(1)
/// when an operation is linearized or undone. Two different sets collide with
/// probability 2^-128, so the memo table can store the hash instead of the set.
struct Zobrist {
    keys: Vec<u128>,
    hash: u128,
}

impl Zobrist {
    fn new(n: usize) -> Self {
        let mut g = crate::rng::SplitMix64::new(0x5EED_0F11_7EA2);
        let keys = (0..n)
            .map(|_| (u128::from(g.next_u64()) << 64) | u128::from(g.next_u64()))
            .collect();
        Self { keys, hash: 0 }
    }
    fn toggle(&mut self, i: usize) {
        self.hash ^= self.keys[i];
    }
}

/// Checks one history (of one partition) against `model`, giving up after `max_steps`
/// search steps (`Verdict::Unknown`).
pub fn check_operations<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Verdict {
    if ops.is_empty() {
        return Verdict::Linearizable;
    }
    // Events in time order; at equal times calls come first, so operations that touch at
    // one instant count as concurrent (never a false alarm from clock granularity).
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 0, i));
        if let Some((t, _)) = &op.ret {
            events.push((*t, 1, i));
        }
    }
    events.sort_unstable();
    // Node 0 is the head sentinel; event k is node k + 1.
    let mut nodes: Vec<Node> = Vec::with_capacity(events.len() + 1);
    nodes.push(Node {
        op: NONE,
        is_call: false,
        matched: NONE,
        prev: NONE,
        next: 1,
    });
    let mut call_node = vec![NONE; ops.len()];
    for (k, &(_, kind, op)) in events.iter().enumerate() {
        let id = k + 1;
        let next = if k + 1 == events.len() { NONE } else { id + 1 };
        nodes.push(Node {
            op,
            is_call: kind == 0,
            matched: NONE,
            prev: id - 1,
            next,
        });
        if kind == 0 {
            call_node[op] = id;
        } else {
            nodes[call_node[op]].matched = id;
        }
    }
    let unlink = |nodes: &mut Vec<Node>, id: usize| {
        let Node { prev, next, .. } = nodes[id];
        nodes[prev].next = next;
        if next != NONE {
            nodes[next].prev = prev;
        }
    };
    let relink = |nodes: &mut Vec<Node>, id: usize| {
        let Node { prev, next, .. } = nodes[id];
        nodes[prev].next = id;
        if next != NONE {
            nodes[next].prev = id;
        }
    };

    let mut remaining = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut linearized = Zobrist::new(ops.len());
    let mut cache: HashSet<(u128, M::State), FxBuildHasher> = HashSet::default();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut cursor = nodes[0].next;
    let mut steps = 0u64;
    let mut deepest = (0usize, 0usize);
    while remaining > 0 {
        steps += 1;
        if steps > max_steps {
            return Verdict::Unknown;
        }
        let node = nodes[cursor];
        if node.is_call {
            let op = &ops[node.op];
            let output = op.ret.as_ref().map(|(_, o)| o);
            if let Some(next_state) = model.step(&state, &op.input, output) {
                linearized.toggle(node.op);
                if cache.insert((linearized.hash, next_state.clone())) {
                    stack.push((cursor, std::mem::replace(&mut state, next_state)));
                    unlink(&mut nodes, cursor);
                    if node.matched != NONE {
                        unlink(&mut nodes, node.matched);
                        remaining -= 1;
                    }
                    cursor = nodes[0].next;
                    continue;
                }
                linearized.toggle(node.op);
            }
            cursor = node.next;
        } else {
            // The response of an operation not yet linearized: backtrack.
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), node.op);
            }
            let Some((call, prev_state)) = stack.pop() else {
                return Verdict::NotLinearizable {
                    stuck_at: deepest.1,
                };
            };
            let call_n = nodes[call];
            if call_n.matched != NONE {
                relink(&mut nodes, call_n.matched);
                remaining += 1;
            }
            relink(&mut nodes, call);
            linearized.toggle(call_n.op);
            state = prev_state;
            cursor = call_n.next;
        }
        // A cursor at the end of the list with determinate operations left cannot happen:
        // their returns are still in the list, after the cursor.
        debug_assert!(cursor != NONE);
    }
    Verdict::Linearizable
}

/// A key-value operation's request (the key is carried by [`KvOp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Set the key to `value`.
    Put(u64),
    /// Read the key.
    Get,
    /// Set the key to `new` if it currently holds `expected` (`None`: absent).
    Cas {
        /// The value the key must hold.
        expected: Option<u64>,
        /// The value to set.
        new: u64,
    },
}

/// A key-value operation's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The put was done.
    PutOk,
    /// The value read (`None`: absent).
    Get(Option<u64>),
    /// Whether the compare-and-set matched and wrote.
    Cas(bool),
}

/// The sequential specification of one key of the key-value store.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = Option<u64>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(
        &self,
        state: &Option<u64>,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Option<u64>> {
        match (input, output) {
            (KvInput::Put(v), None | Some(KvOutput::PutOk)) => Some(Some(*v)),
            (KvInput::Get, None) => Some(*state),
            (KvInput::Get, Some(KvOutput::Get(seen))) => (seen == state).then_some(*state),
            (KvInput::Cas { expected, new }, None) => Some(if state == expected {
                Some(*new)
            } else {
                *state
            }),
            (KvInput::Cas { expected, new }, Some(KvOutput::Cas(ok))) => {
                let matches = state == expected;
                (matches == *ok).then_some(if matches { Some(*new) } else { *state })
            }
            _ => None,
        }
    }
}

/// One operation of a key-value history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    /// The key it touched.
    pub key: u64,
    /// The operation itself.
    pub op: Operation<KvInput, KvOutput>,
}

/// The result of checking a whole key-value history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCheck {
    /// Keys whose sub-history is not linearizable, with the blocking operation (an index
    /// into the full history).
    pub violations: Vec<(u64, usize)>,
    /// Keys whose search ran out of budget.
    pub unknown: Vec<u64>,
    /// Operations checked (after dropping those that cannot matter).
    pub ops_checked: usize,
}

impl KvCheck {
    /// True when no key is known to be non-linearizable.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks a key-value history key by key, with a step budget per key.
///
/// Before searching, operations that cannot change the verdict are dropped: indeterminate
/// reads (no effect, nothing observed), and, on keys without a failed compare-and-set,
/// indeterminate writes whose value no operation ever observed (linearizing such a write
/// could only be undone by a later write before anyone reads, so leaving it out never
/// hides a linearization).
pub fn check_kv_history(history: &[KvOp], max_steps_per_key: u64) -> KvCheck {
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        by_key.entry(op.key).or_default().push(i);
    }
    let mut result = KvCheck {
        violations: Vec::new(),
        unknown: Vec::new(),
        ops_checked: 0,
    };
    for (key, idxs) in by_key {
        let observed: HashSet<u64, FxBuildHasher> = idxs
            .iter()
            .filter_map(|&i| match (&history[i].op.input, &history[i].op.ret) {
                (_, Some((_, KvOutput::Get(Some(v))))) => Some(*v),
                (
                    KvInput::Cas {
                        expected: Some(v), ..
                    },
                    _,
                ) => Some(*v),
                _ => None,
            })
            .collect();
        let failed_cas = idxs
            .iter()
            .any(|&i| matches!(history[i].op.ret, Some((_, KvOutput::Cas(false)))));
        let kept: Vec<usize> = idxs
            .into_iter()
            .filter(|&i| {
                let op = &history[i].op;
                if op.ret.is_some() {
                    return true;
                }
                match op.input {
                    KvInput::Get => false,
                    KvInput::Put(v) | KvInput::Cas { new: v, .. } => {
                        failed_cas || observed.contains(&v)
                    }
                }
            })
            .collect();
        let ops: Vec<Operation<KvInput, KvOutput>> =
            kept.iter().map(|&i| history[i].op.clone()).collect();
        result.ops_checked += ops.len();
        match check_operations(&KvModel, &ops, max_steps_per_key) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { stuck_at } => result.violations.push((key, kept[stuck_at])),
            Verdict::Unknown => result.unknown.push(key),
        }
    }
    result
}

#[cfg(test)]
mod tests;
