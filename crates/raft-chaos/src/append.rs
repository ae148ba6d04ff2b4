//! The append-list check, in the manner of Elle (Kingsbury & Alvaro, "Elle: Inferring
//! Isolation Anomalies from Experimental Observations", VLDB 2020): transactions append unique
//! elements to lists and read lists, so every read reveals the whole order of the appends it
//! saw, and from those orders the dependencies between transactions can be inferred and
//! searched for cycles.
//!
//! What is checked, on the transactions that completed `ok` (and, for what others read of
//! them, the `unknown` ones):
//! - every element read was appended by a transaction that did not fail (a `fail`ed one:
//!   an aborted read, G1a; nobody: a garbage read), and no list holds an element twice;
//! - the version order of each list is its longest read, and every read of the list is a
//!   prefix of it (else the orders are incompatible: two histories of one key);
//! - no two committed transactions read the same version of a list and both appended to it
//!   (a lost update: one append overwrote the other);
//! - real time (strict serializability): a read in a transaction that started after an `ok`
//!   append to that list completed contains the element (else a stale read or a lost append);
//! - the dependency graph between transactions has no cycle. Edges, per list with version
//!   order `x1, x2, ...`: ww from the writer of `xi` to the writer of `x(i+1)`; wr from the
//!   writer of a read's last element to the reader; rw from a reader of `x1..xi` to the
//!   writer of `x(i+1)` (the reader did not see it). Strongly connected components (Tarjan)
//!   are searched for a shortest cycle of each class: G0 (ww edges only), G1c (ww and wr,
//!   at least one wr), G-single (exactly one rw), G2 (two or more rw).
//!
//! Over 700 lines on purpose: the inference of list orders, the dependency graph and the
//! cycle search are one algorithm, tested together below it.

use crate::Verdict;
use crate::history::{AppendOp, ListMop, Outcome};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The kinds of dependency edge, as bits.
const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;

/// How many edges of one class a component's cycle search starts from before it gives up.
const SEARCH_STARTS: usize = 200;

/// One read of a list by an `ok` transaction.
struct Read<'a> {
    txn: usize,
    key: u64,
    list: &'a [u64],
    /// The transaction also appended to this list (right after reading it).
    then_appended: bool,
}

/// The dependency graph: for each ordered pair of transactions the kinds of edge between
/// them and, per kind, a list that induced it.
#[derive(Default)]
struct Graph {
    edges: HashMap<(usize, usize), (u8, [u64; 3])>,
}

impl Graph {
    fn add(&mut self, from: usize, to: usize, kind: u8, key: u64) {
        if from == to {
            return;
        }
        let e = self.edges.entry((from, to)).or_insert((0, [0; 3]));
        if e.0 & kind == 0 {
            e.0 |= kind;
            e.1[kind.trailing_zeros() as usize] = key;
        }
    }

    fn adjacency(&self, n: usize) -> Vec<Vec<(usize, u8)>> {
        let mut adj = vec![Vec::new(); n];
        for (&(a, b), &(kinds, _)) in &self.edges {
            adj[a].push((b, kinds));
        }
        for out in &mut adj {
            out.sort_unstable();
        }
        adj
    }
}

/// Checks the append-list history.
pub fn check(ops: &[AppendOp]) -> Verdict {
    let mut found = Found::default();
    let (mut ok, mut failed, mut unknown) = (0usize, 0usize, 0usize);
    for op in ops {
        match op.outcome {
            Outcome::Ok => ok += 1,
            Outcome::Fail => failed += 1,
            Outcome::Unknown => unknown += 1,
        }
    }
    let describe = |i: usize| describe_txn(i, &ops[i]);

    // Who appended what.
    let mut writer: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        for m in &op.mops {
            if let ListMop::Append { key, value } = *m
                && let Some(first) = writer.insert((key, value), i)
            {
                found.add(
                    Rank::ClientBug,
                    format!(
                        "element {value} of list {key} appended twice: by {} and {} (a client bug)",
                        describe(first),
                        describe(i)
                    ),
                );
            }
        }
    }

    // The reads of the `ok` transactions, and element-level anomalies.
    let mut reads: Vec<Read<'_>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.outcome != Outcome::Ok {
            continue;
        }
        for (j, m) in op.mops.iter().enumerate() {
            let ListMop::Read { key, value } = m else {
                continue;
            };
            let Some(list) = value else {
                found.add(
                    Rank::ClientBug,
                    format!(
                        "{}: a read of list {key} without its value (a client bug)",
                        describe(i)
                    ),
                );
                continue;
            };
            let then_appended = op.mops[j + 1..]
                .iter()
                .any(|n| matches!(n, ListMop::Append { key: k, .. } if k == key));
            let mut seen = std::collections::HashSet::new();
            for &v in list {
                if !seen.insert(v) {
                    found.add(
                        Rank::Duplicated,
                        format!(
                            "duplicated element: {} read list {key} as {}, which holds {v} \
                         twice",
                            describe(i),
                            short(list)
                        ),
                    );
                }
                match writer.get(&(*key, v)) {
                    None => found.add(Rank::Garbage, format!(
                        "garbage read: {} read {v} in list {key}, which no transaction appended",
                        describe(i)
                    )),
                    Some(&w) if ops[w].outcome == Outcome::Fail => found.add(Rank::Aborted, format!(
                        "aborted read (G1a): {} read {v} in list {key}, appended by {}, which \
                         failed",
                        describe(i),
                        describe(w)
                    )),
                    Some(_) => {}
                }
            }
            reads.push(Read {
                txn: i,
                key: *key,
                list,
                then_appended,
            });
        }
    }

    // The version order of each list: its longest read; every read must be a prefix of it.
    let mut order: BTreeMap<u64, &[u64]> = BTreeMap::new();
    for r in &reads {
        let o = order.entry(r.key).or_insert(r.list);
        if r.list.len() > o.len() {
            *o = r.list;
        }
    }
    let mut compatible = vec![true; reads.len()];
    let mut incompatible_keys = BTreeMap::new();
    for (n, r) in reads.iter().enumerate() {
        let o = order[&r.key];
        if !o.starts_with(r.list) {
            compatible[n] = false;
            incompatible_keys.entry(r.key).or_insert_with(|| {
                let at = o.iter().zip(r.list).take_while(|(a, b)| a == b).count();
                format!(
                    "incompatible order of list {}: {} read {}, which is not a prefix of the \
                     longest read {}: they part at index {at}",
                    r.key,
                    describe(r.txn),
                    short(r.list),
                    short(o)
                )
            });
        }
    }
    for p in incompatible_keys.into_values() {
        found.add(Rank::Incompatible, p);
    }

    // Lost updates: two committed transactions that read one version and both appended.
    let mut read_then_append: BTreeMap<(u64, &[u64]), Vec<usize>> = BTreeMap::new();
    for r in reads.iter().filter(|r| r.then_appended) {
        read_then_append
            .entry((r.key, r.list))
            .or_default()
            .push(r.txn);
    }
    for ((key, list), txns) in &read_then_append {
        if txns.len() > 1 {
            found.add(
                Rank::LostUpdate,
                format!(
                    "lost update: {} transactions read list {key} as {} and appended to it: {}",
                    txns.len(),
                    short(list),
                    txns.iter()
                        .take(3)
                        .map(|&t| describe(t))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            );
        }
    }

    // Real time: an acknowledged append is in every read that starts after it completed.
    let mut acked: HashMap<u64, Vec<(u64, u64, usize)>> = HashMap::new();
    for ((key, value), &w) in &writer {
        if ops[w].outcome == Outcome::Ok {
            acked
                .entry(*key)
                .or_default()
                .push((ops[w].complete_us, *value, w));
        }
    }
    for list in acked.values_mut() {
        list.sort_unstable();
    }
    for r in &reads {
        let Some(appends) = acked.get(&r.key) else {
            continue;
        };
        let invoked = ops[r.txn].invoke_us;
        for &(done, value, w) in appends.iter().take_while(|a| a.0 < invoked) {
            if !r.list.contains(&value) {
                found.add(
                    Rank::Stale,
                    format!(
                        "stale read or lost append: {} read list {} as {}, without {value}, \
                         which {} appended and was acknowledged at {:.3}s, before the read began",
                        describe(r.txn),
                        r.key,
                        short(r.list),
                        describe(w),
                        done as f64 / 1e6
                    ),
                );
                break;
            }
        }
    }

    // The dependency graph, from the orders and the compatible reads.
    let mut graph = Graph::default();
    for (&key, o) in &order {
        for pair in o.windows(2) {
            if let (Some(&a), Some(&b)) = (writer.get(&(key, pair[0])), writer.get(&(key, pair[1])))
            {
                graph.add(a, b, WW, key);
            }
        }
    }
    for (n, r) in reads.iter().enumerate() {
        if !compatible[n] {
            continue;
        }
        if let Some(last) = r.list.last()
            && let Some(&w) = writer.get(&(r.key, *last))
        {
            graph.add(w, r.txn, WR, r.key);
        }
        let o = order[&r.key];
        if let Some(next) = o.get(r.list.len())
            && let Some(&w) = writer.get(&(r.key, *next))
        {
            graph.add(r.txn, w, RW, r.key);
        }
    }
    let cycles = find_cycles(&graph, ops.len());
    let n_cycles = cycles.len();
    for (class, cycle) in cycles {
        found.add(
            Rank::Cycle,
            format!("{class} cycle: {}", render_cycle(&cycle, &graph, ops)),
        );
    }

    let longest = order.values().map(|o| o.len()).max().unwrap_or(0);
    let summary = format!(
        "{} transactions: {ok} ok, {failed} failed, {unknown} unknown; {} reads of {} lists \
         (longest {longest}); {} dependency edges, {n_cycles} cycles",
        ops.len(),
        reads.len(),
        order.len(),
        graph.edges.len()
    );
    let mut verdict = Verdict::from_problems(
        "append: list appends strict-serializable (no G0/G1/G-single/G2 cycle, lost update or \
         stale read)",
        summary,
        found.into_problems(),
    );
    if reads.iter().all(|r| r.list.is_empty()) {
        verdict.ok = false;
        verdict
            .problems
            .push("no transaction read a non-empty list: nothing was checked".into());
    }
    verdict
}

/// What the check found, by kind, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Cycle,
    LostUpdate,
    Aborted,
    Garbage,
    Duplicated,
    Stale,
    Incompatible,
    ClientBug,
}

/// How many problems of one kind are listed in full.
const LISTED_PER_KIND: usize = 4;

/// The problems found: a few of each kind in full, the rest counted.
#[derive(Default)]
struct Found {
    by_rank: BTreeMap<Rank, (Vec<String>, usize)>,
}

impl Found {
    fn add(&mut self, rank: Rank, problem: String) {
        let (listed, count) = self.by_rank.entry(rank).or_default();
        *count += 1;
        if listed.len() < LISTED_PER_KIND {
            listed.push(problem);
        }
    }

    fn into_problems(self) -> Vec<String> {
        let mut out = Vec::new();
        for (rank, (listed, count)) in self.by_rank {
            let more = count - listed.len();
            out.extend(listed);
            if more > 0 {
                out.push(format!("... and {more} more of kind {rank:?}"));
            }
        }
        out
    }
}

/// A list for a message: in full when short, else its ends and its length.
fn short(list: &[u64]) -> String {
    if list.len() <= 6 {
        return format!("{list:?}");
    }
    let head: Vec<String> = list[..2].iter().map(u64::to_string).collect();
    let tail: Vec<String> = list[list.len() - 3..].iter().map(u64::to_string).collect();
    format!(
        "[{}, ... {}] ({} elements)",
        head.join(", "),
        tail.join(", "),
        list.len()
    )
}

fn describe_txn(i: usize, op: &AppendOp) -> String {
    let mops: Vec<String> = op
        .mops
        .iter()
        .map(|m| match m {
            ListMop::Read {
                key,
                value: Some(v),
            } => format!("r {key} {}", short(v)),
            ListMop::Read { key, value: None } => format!("r {key} ?"),
            ListMop::Append { key, value } => format!("append {key} {value}"),
        })
        .collect();
    format!(
        "T{i} (process {}, [{}], {:?}, {:.3}-{:.3}s{})",
        op.process,
        mops.join(", "),
        op.outcome,
        op.invoke_us as f64 / 1e6,
        op.complete_us as f64 / 1e6,
        op.revision
            .map_or(String::new(), |r| format!(", revision {r}"))
    )
}

fn render_cycle(cycle: &[(usize, u8)], graph: &Graph, ops: &[AppendOp]) -> String {
    // `cycle[i]` is a transaction and the kind of the edge to `cycle[i + 1]` (wrapping).
    let mut s = String::new();
    for (n, &(t, kind)) in cycle.iter().enumerate() {
        let next = cycle[(n + 1) % cycle.len()].0;
        let key = graph.edges[&(t, next)].1[kind.trailing_zeros() as usize];
        let name = match kind {
            WW => "ww",
            WR => "wr",
            _ => "rw",
        };
        s.push_str(&format!(
            "{} -{name} (list {key})-> ",
            describe_txn(t, &ops[t])
        ));
    }
    s.push_str(&format!("T{}", cycle[0].0));
    s
}

/// Strongly connected components of size two or more (Tarjan's algorithm, iterative).
fn components(adj: &[Vec<(usize, u8)>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX || adj[root].is_empty() {
            continue;
        }
        // (node, position in its adjacency list)
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = call.last_mut() {
            if let Some(&(w, _)) = adj[v].get(*pos) {
                *pos += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 {
                        comp.sort_unstable();
                        out.push(comp);
                    }
                }
            }
        }
    }
    out
}

/// A shortest path from `from` to `to` inside `members` over edges of the kinds in `mask`
/// (each step labelled with the kind it uses, preferring `mask`'s lowest bit), or `None`.
fn path(
    adj: &[Vec<(usize, u8)>],
    member: &[bool],
    from: usize,
    to: usize,
    mask: u8,
) -> Option<Vec<(usize, u8)>> {
    let mut prev: HashMap<usize, (usize, u8)> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = std::collections::HashSet::from([from]);
    while let Some(v) = queue.pop_front() {
        for &(w, kinds) in &adj[v] {
            let k = kinds & mask;
            if k == 0 || !member[w] || !seen.insert(w) {
                continue;
            }
            prev.insert(w, (v, 1 << k.trailing_zeros()));
            if w == to {
                let mut steps = Vec::new();
                let mut at = to;
                while at != from {
                    let (p, kind) = prev[&at];
                    steps.push((p, kind));
                    at = p;
                }
                steps.reverse();
                return Some(steps);
            }
            queue.push_back(w);
        }
    }
    None
}

/// A shortest cycle per class in each component: `(class, [(txn, kind of its out-edge)])`.
fn find_cycles(graph: &Graph, n: usize) -> Vec<(&'static str, Vec<(usize, u8)>)> {
    let adj = graph.adjacency(n);
    let mut out = Vec::new();
    for comp in components(&adj) {
        let mut member = vec![false; n];
        for &v in &comp {
            member[v] = true;
        }
        let edges: Vec<(usize, usize, u8)> = comp
            .iter()
            .flat_map(|&a| {
                adj[a]
                    .iter()
                    .filter(|(b, _)| member[*b])
                    .map(move |&(b, k)| (a, b, k))
            })
            .collect();
        // A shortest cycle that starts with an edge of kind `first` and returns over `rest`.
        let shortest = |first: u8, rest: u8| {
            edges
                .iter()
                .filter(|e| e.2 & first != 0)
                .take(SEARCH_STARTS)
                .filter_map(|&(a, b, _)| {
                    let back = if b == a {
                        Some(Vec::new())
                    } else {
                        path(&adj, &member, b, a, rest)
                    }?;
                    let mut cycle = vec![(a, first)];
                    cycle.extend(back);
                    Some(cycle)
                })
                .min_by_key(Vec::len)
        };
        let mut found = false;
        for (class, first, rest) in [
            ("G0 (write cycle)", WW, WW),
            ("G1c (circular information flow)", WR, WW | WR),
            ("G-single (read skew)", RW, WW | WR),
        ] {
            if let Some(c) = shortest(first, rest) {
                out.push((class, c));
                found = true;
            }
        }
        if !found && let Some(c) = shortest(RW, WW | WR | RW) {
            out.push(("G2 (anti-dependency cycle)", c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: u64, list: &[u64]) -> ListMop {
        ListMop::Read {
            key,
            value: Some(list.to_vec()),
        }
    }

    fn a(key: u64, value: u64) -> ListMop {
        ListMop::Append { key, value }
    }

    fn txn(process: u64, t: u64, mops: Vec<ListMop>) -> AppendOp {
        AppendOp::new(process, mops, t, t + 5, Outcome::Ok)
    }

    fn problems(v: &Verdict) -> String {
        v.render()
    }

    #[test]
    fn a_serial_history_passes() {
        let ops = vec![
            txn(1, 0, vec![r(1, &[]), a(1, 10)]),
            txn(2, 10, vec![r(1, &[10]), a(1, 20), r(2, &[])]),
            txn(3, 20, vec![r(2, &[]), a(2, 30)]),
            AppendOp::new(1, vec![r(1, &[]), a(1, 40)], 25, 28, Outcome::Fail),
            txn(1, 30, vec![r(1, &[10, 20]), r(2, &[30])]),
            AppendOp::new(
                2,
                vec![r(2, &[]), a(2, 50)],
                35,
                2_000_000,
                Outcome::Unknown,
            ),
            txn(3, 40, vec![r(2, &[30, 50])]),
        ];
        let v = check(&ops);
        assert!(v.ok, "{}", problems(&v));
        assert!(v.summary.contains("0 cycles"), "{}", v.summary);
    }

    #[test]
    fn concurrent_transactions_in_either_order_pass() {
        // T0 and T1 overlap in time; T1's append is ordered first: fine.
        let ops = vec![
            AppendOp::new(1, vec![r(1, &[]), a(1, 1)], 0, 100, Outcome::Unknown),
            AppendOp::new(2, vec![r(1, &[]), a(1, 2)], 10, 20, Outcome::Ok),
            txn(3, 200, vec![r(1, &[2])]),
        ];
        let v = check(&ops);
        assert!(v.ok, "{}", problems(&v));
    }

    #[test]
    fn a_lost_update_fails() {
        // Both read [1] and appended: the second write replaced the first's list.
        let ops = vec![
            txn(1, 0, vec![r(1, &[]), a(1, 1)]),
            txn(2, 10, vec![r(1, &[1]), a(1, 2)]),
            txn(3, 10, vec![r(1, &[1]), a(1, 3)]),
            txn(4, 30, vec![r(1, &[1, 3])]),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        let text = problems(&v);
        assert!(text.contains("lost update: 2 transactions"), "{text}");
        // And the acknowledged 2 is missing from a later read.
        assert!(text.contains("stale read or lost append"), "{text}");
    }

    #[test]
    fn incompatible_orders_fail() {
        let ops = vec![
            txn(1, 0, vec![a(1, 1)]),
            txn(2, 0, vec![a(1, 2)]),
            txn(3, 10, vec![r(1, &[1, 2])]),
            txn(4, 10, vec![r(1, &[2, 1])]),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        assert!(
            problems(&v).contains("incompatible order of list 1"),
            "{}",
            problems(&v)
        );
    }

    #[test]
    fn aborted_garbage_and_duplicated_elements_fail() {
        let ops = vec![
            AppendOp::new(1, vec![a(1, 1)], 0, 5, Outcome::Fail),
            txn(2, 10, vec![r(1, &[1])]),
            txn(3, 10, vec![r(2, &[7])]),
            txn(4, 0, vec![a(3, 5)]),
            txn(4, 10, vec![r(3, &[5, 5])]),
        ];
        let text = problems(&check(&ops));
        assert!(text.contains("aborted read (G1a)"), "{text}");
        assert!(text.contains("garbage read"), "{text}");
        assert!(text.contains("duplicated element"), "{text}");
    }

    #[test]
    fn a_write_cycle_is_g0() {
        // List 1 orders T0 before T1, list 2 orders T1 before T0.
        let ops = vec![
            txn(1, 0, vec![a(1, 1), a(2, 2)]),
            txn(2, 0, vec![a(1, 3), a(2, 4)]),
            txn(3, 10, vec![r(1, &[1, 3]), r(2, &[4, 2])]),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        let text = problems(&v);
        assert!(text.contains("G0 (write cycle) cycle: T0"), "{text}");
    }

    #[test]
    fn circular_information_flow_is_g1c() {
        // T0 reads T1's append and T1 reads T0's.
        let ops = vec![
            txn(1, 0, vec![a(1, 1), r(2, &[2])]),
            txn(2, 0, vec![a(2, 2), r(1, &[1])]),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        let text = problems(&v);
        assert!(text.contains("G1c"), "{text}");
        assert!(!text.contains("G0 (write cycle)"), "{text}");
    }

    #[test]
    fn read_skew_is_g_single() {
        // T1 appended to both lists after T0. T2 saw T1's element in list 1 (T1 -wr-> T2) but
        // not in list 2 (T2 -rw-> T1): a cycle with exactly one rw edge.
        let ops = vec![
            txn(1, 0, vec![a(1, 1), a(2, 1)]),
            txn(2, 10, vec![a(1, 2), a(2, 2)]),
            txn(3, 10, vec![r(1, &[1, 2]), r(2, &[1])]),
            txn(4, 30, vec![r(2, &[1, 2])]),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        let text = problems(&v);
        assert!(text.contains("G-single (read skew) cycle: T"), "{text}");
        assert!(!text.contains("G1c (circular"), "{text}");
    }

    #[test]
    fn write_skew_is_g2() {
        // Each read the other's list empty and appended to its own: two rw edges.
        let ops = vec![
            txn(1, 0, vec![r(2, &[]), a(1, 1)]),
            txn(2, 0, vec![r(1, &[]), a(2, 2)]),
            txn(3, 10, vec![r(1, &[1]), r(2, &[2])]),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        let text = problems(&v);
        assert!(text.contains("G2 (anti-dependency cycle)"), "{text}");
    }

    #[test]
    fn a_stale_read_fails() {
        let ops = vec![
            txn(1, 0, vec![a(1, 1)]),
            txn(2, 10, vec![a(1, 2)]),
            txn(3, 20, vec![r(1, &[1])]),
            txn(3, 30, vec![r(1, &[1, 2])]),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        assert!(problems(&v).contains("stale read"), "{}", problems(&v));
    }

    #[test]
    fn nothing_read_is_not_a_pass() {
        let v = check(&[txn(1, 0, vec![a(1, 1)])]);
        assert!(!v.ok);
    }

    #[test]
    fn components_find_only_cycles() {
        let mut g = Graph::default();
        g.add(0, 1, WW, 1);
        g.add(1, 2, WW, 1);
        g.add(2, 0, RW, 1);
        g.add(3, 4, WR, 2);
        let comps = components(&g.adjacency(5));
        assert_eq!(comps, vec![vec![0, 1, 2]]);
        let cycles = find_cycles(&g, 5);
        assert_eq!(cycles.len(), 1);
        assert!(cycles[0].0.starts_with("G-single"));
        assert_eq!(cycles[0].1.len(), 3);
    }
}
