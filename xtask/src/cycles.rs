//! `cargo xtask cycles`: no import cycles between the source files of a crate.
//!
//! For every crate root of the workspace (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`) the
//! checker parses the module tree with `syn` and builds a graph whose nodes are the source
//! files. Every file is a node of its own, submodule files included, so a cycle between two
//! files of one directory (`store/exec.rs` and `store/query.rs`) is found as well as one
//! between two top-level modules. An edge `a.rs -> b.rs` means that code in `a.rs` names an
//! item of a module that lives in `b.rs`: through a `use` (`use crate::b::X`,
//! `use super::b`), a path in code or in a macro's tokens (`crate::b::f()`), or a name
//! re-exported by another module (`use crate::X` where the crate root says `pub use b::X`
//! follows the re-export to `b.rs`).
//!
//! Three kinds of edge are left out, because they are the module tree itself rather than an
//! import between separate parts:
//! - edges between a file and its ancestors or descendants (`node.rs` using its child
//!   `node/ready.rs`, or `node/ready.rs` using `super::Node`): a module and its submodules
//!   are one unit to the rest of the crate;
//! - edges out of the crate root (`lib.rs`, `main.rs`), which declares modules and
//!   re-exports their items; names reached through the root are followed to the file that
//!   defines them;
//! - code under `#[cfg(test)]` (test modules, inline or in their own files): tests sit on
//!   top of what they test and may use any part of the crate.
//!
//! A cycle is a strongly connected component of more than one file; the report lists its
//! files, one cycle through them, and every edge inside the component with the line that
//! makes it (each such edge closes a cycle: its target reaches its source). There is no
//! allow-list.

use anyhow::{Context, Result, bail};
use collect::Collector;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use syn::visit::Visit;

mod collect;
#[cfg(test)]
mod tests;

/// Checks every crate of the workspace (under `crates/`, plus `xtask` and `bench`) and fails
/// when one has a cycle.
pub fn run() -> Result<()> {
    let mut roots = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("crates")
        .context("reading crates/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.push(PathBuf::from("xtask"));
    dirs.push(PathBuf::from("bench"));
    dirs.sort();
    for dir in dirs {
        roots.extend(crate_roots(&dir)?);
    }
    let mut report = String::new();
    let mut cycles = 0;
    for root in &roots {
        let graph = Graph::load(root, &|p: &Path| std::fs::read_to_string(p).ok())?;
        let found = graph.cycles();
        cycles += found.len();
        for cycle in &found {
            report.push_str(&graph.describe(cycle));
        }
    }
    if cycles > 0 {
        bail!(
            "cycles: {cycles} import cycle(s) between files of a crate (move the shared \
             items down into a module both use):\n{report}"
        );
    }
    eprintln!(
        "xtask: cycles ok: no import cycle between the files of {} crate roots",
        roots.len()
    );
    Ok(())
}

/// The crate roots of a package directory: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs` and
/// `src/bin/*/main.rs`.
fn crate_roots(dir: &Path) -> Result<Vec<PathBuf>> {
    let src = dir.join("src");
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(entries) = std::fs::read_dir(src.join("bin")) {
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "rs") {
                roots.push(path);
            } else if path.join("main.rs").is_file() {
                roots.push(path.join("main.rs"));
            }
        }
    }
    roots.sort();
    Ok(roots)
}

/// A module of the crate: where it lives and what it names.
#[derive(Default)]
struct Module {
    /// Index of the file that holds it (inline modules share their parent's file).
    file: usize,
    /// Child modules by name.
    children: BTreeMap<String, Vec<String>>,
    /// Items defined here (functions, types, traits, constants, macros...).
    items: BTreeSet<String>,
    /// `use` bindings: the name they bind -> the path they name, as written.
    uses: BTreeMap<String, Vec<String>>,
    /// Modules glob-imported here (`use a::*`), as written.
    globs: Vec<Vec<String>>,
}

/// A path met in a file, with the module it appears in and its line.
struct PathRef {
    /// The module whose code holds the path.
    module: Vec<String>,
    /// The path's segments as written.
    segments: Vec<String>,
    /// Line of the path in its file.
    line: usize,
}

/// The file graph of one crate root.
struct Graph {
    /// The files, the root first (paths as read).
    files: Vec<PathBuf>,
    /// Edges with the line of their first occurrence in the source file.
    edges: BTreeMap<(usize, usize), usize>,
}

impl Graph {
    /// Parses the module tree under `root`, reading files through `read`.
    fn load(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Result<Graph> {
        let mut files = Vec::new();
        let mut modules: BTreeMap<Vec<String>, Module> = BTreeMap::new();
        let mut refs: Vec<(usize, PathRef)> = Vec::new();
        // (module path, file, directory of its child module files)
        let root_dir = root.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut queue = vec![(Vec::new(), root.to_path_buf(), root_dir)];
        while let Some((path, file, dir)) = queue.pop() {
            let text = read(&file).with_context(|| format!("reading {}", file.display()))?;
            let ast =
                syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
            let index = files.len();
            files.push(file.clone());
            let mut collector = Collector {
                file: index,
                scope: vec![path.clone()],
                dirs: vec![dir],
                modules: &mut modules,
                refs: Vec::new(),
                outlined: Vec::new(),
            };
            collector.enter(&path);
            collector.visit_file(&ast);
            for (child_path, child_dir) in collector.outlined {
                let name = child_path.last().cloned().unwrap_or_default();
                let candidates = [
                    child_dir.join(format!("{name}.rs")),
                    child_dir.join(&name).join("mod.rs"),
                ];
                let Some(found) = candidates.iter().find(|p| read(p).is_some()) else {
                    bail!(
                        "{}: module {name} has no file ({} or {})",
                        file.display(),
                        candidates[0].display(),
                        candidates[1].display()
                    );
                };
                let mod_rs = found.ends_with("mod.rs");
                queue.push((child_path, found.clone(), dir_of(found, mod_rs)));
            }
            refs.extend(collector.refs.into_iter().map(|r| (index, r)));
        }
        // The outermost module of each file.
        let mut file_modules: Vec<Option<Vec<String>>> = vec![None; files.len()];
        for (path, module) in &modules {
            let slot = &mut file_modules[module.file];
            if slot.as_ref().is_none_or(|p| p.len() > path.len()) {
                *slot = Some(path.clone());
            }
        }
        let file_modules: Vec<Vec<String>> = file_modules
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let mut edges = BTreeMap::new();
        for (from, r) in refs {
            let Some(target) = resolve(&modules, &r.module, &r.segments) else {
                continue;
            };
            let Some(to_module) = modules.get(&target) else {
                continue;
            };
            let to = to_module.file;
            if from == 0 || to == 0 || from == to {
                continue;
            }
            let (from_module, to_module) = (&file_modules[from], &file_modules[to]);
            if to_module.starts_with(from_module) || from_module.starts_with(to_module) {
                continue;
            }
            edges.entry((from, to)).or_insert(r.line);
        }
        Ok(Graph { files, edges })
    }

    /// The strongly connected components of more than one file (Tarjan's algorithm).
    fn cycles(&self) -> Vec<Vec<usize>> {
        let n = self.files.len();
        let mut adjacency = vec![Vec::new(); n];
        for &(a, b) in self.edges.keys() {
            adjacency[a].push(b);
        }
        let mut tarjan = Tarjan {
            adjacency: &adjacency,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            components: Vec::new(),
        };
        for v in 0..n {
            if tarjan.index[v].is_none() {
                tarjan.connect(v);
            }
        }
        let mut found: Vec<Vec<usize>> = tarjan
            .components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|mut c| {
                c.sort_by(|a, b| self.files[*a].cmp(&self.files[*b]));
                c
            })
            .collect();
        found.sort_by(|a, b| self.files[a[0]].cmp(&self.files[b[0]]));
        found
    }

    /// One cycle's report: its files, one cycle through them and the edges inside it.
    fn describe(&self, component: &[usize]) -> String {
        let name = |i: usize| self.files[i].display().to_string();
        let inside: BTreeSet<usize> = component.iter().copied().collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cycle between {}:",
            component
                .iter()
                .map(|&i| name(i))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(path) = self.cycle_through(component[0], &inside) {
            let _ = writeln!(
                out,
                "  e.g. {}",
                path.iter()
                    .map(|&i| name(i))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            );
        }
        let mut lines: Vec<(String, usize, String)> = self
            .edges
            .iter()
            .filter(|((a, b), _)| inside.contains(a) && inside.contains(b))
            .map(|(&(a, b), &line)| (name(a), line, name(b)))
            .collect();
        lines.sort();
        for (from, line, to) in lines {
            let _ = writeln!(out, "  {from}:{line} uses {to}");
        }
        out
    }

    /// A shortest cycle from `start` back to itself inside `inside` (breadth-first).
    fn cycle_through(&self, start: usize, inside: &BTreeSet<usize>) -> Option<Vec<usize>> {
        let mut previous: HashMap<usize, usize> = HashMap::new();
        let mut frontier = vec![start];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for &v in &frontier {
                for &(_, b) in self.edges.range((v, 0)..=(v, usize::MAX)).map(|(k, _)| k) {
                    if !inside.contains(&b) {
                        continue;
                    }
                    if b == start {
                        let mut path = vec![v];
                        while let Some(&p) = previous.get(path.last()?) {
                            path.push(p);
                        }
                        if path.last() != Some(&start) {
                            path.push(start);
                        }
                        path.reverse();
                        path.push(start);
                        return Some(path);
                    }
                    if b != start && !previous.contains_key(&b) {
                        previous.insert(b, v);
                        next.push(b);
                    }
                }
            }
            frontier = next;
        }
        None
    }
}

/// Tarjan's strongly connected components.
struct Tarjan<'a> {
    adjacency: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn connect(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.adjacency[v] {
            match self.index[w] {
                None => {
                    self.connect(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(index) if self.on_stack[w] => self.low[v] = self.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// The directory holding the child module files of a module file: its own directory for
/// `mod.rs`, else `a/` for `a.rs`.
fn dir_of(file: &Path, mod_rs: bool) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new("")).to_path_buf();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some(stem) if !mod_rs => parent.join(stem),
        _ => parent,
    }
}

/// The module a path written in `module` points into: the deepest module named by its
/// leading segments, following `use` bindings and re-exports; `None` for paths outside the
/// crate.
fn resolve(
    modules: &BTreeMap<Vec<String>, Module>,
    module: &[String],
    segments: &[String],
) -> Option<Vec<String>> {
    resolve_depth(modules, module, segments, 0)
}

/// Bounds the `use` chains followed (a `use` cycle is a compile error, but be safe).
const MAX_DEPTH: usize = 16;

fn resolve_depth(
    modules: &BTreeMap<Vec<String>, Module>,
    module: &[String],
    segments: &[String],
    depth: usize,
) -> Option<Vec<String>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (mut at, rest) = absolute_start(modules, module, segments, depth)?;
    for (i, segment) in rest.iter().enumerate() {
        let here = modules.get(&at)?;
        if here.children.contains_key(segment) {
            at.push(segment.clone());
            continue;
        }
        if here.items.contains(segment) {
            return Some(at);
        }
        if let Some(target) = here.uses.get(segment) {
            let mut path = target.clone();
            path.extend(rest[i + 1..].iter().cloned());
            return resolve_depth(modules, &at, &path, depth + 1).or(Some(at));
        }
        for glob in &here.globs {
            let mut path = glob.clone();
            path.extend(rest[i..].iter().cloned());
            if let Some(found) = resolve_depth(modules, &at, &path, depth + 1)
                && found != at
            {
                return Some(found);
            }
        }
        return Some(at);
    }
    Some(at)
}

/// Where a path written in `module` starts: the absolute module of its first segment(s)
/// and the segments left to walk; `None` when it names an external crate or a name that is
/// not the crate's (a local variable, a type parameter, a prelude item).
fn absolute_start<'a>(
    modules: &BTreeMap<Vec<String>, Module>,
    module: &[String],
    segments: &'a [String],
    depth: usize,
) -> Option<(Vec<String>, std::borrow::Cow<'a, [String]>)> {
    let first = segments.first()?;
    match first.as_str() {
        "crate" => Some((Vec::new(), segments[1..].into())),
        "self" | "super" => {
            let mut at = module.to_vec();
            let mut i = usize::from(first == "self");
            while segments.get(i).is_some_and(|s| s == "super") {
                at.pop()?;
                i += 1;
            }
            Some((at, segments[i..].into()))
        }
        _ => {
            // A name in scope: a child module, an item or a `use` binding of this module.
            let here = modules.get(module)?;
            if here.children.contains_key(first) || here.items.contains(first) {
                return Some((module.to_vec(), segments.into()));
            }
            let bound = here.uses.get(first)?;
            if depth > MAX_DEPTH || bound.first() == Some(first) {
                return None;
            }
            let mut path = bound.clone();
            path.extend(segments[1..].iter().cloned());
            let (start, rest) = absolute_start(modules, module, &path, depth + 1)?;
            Some((start, rest.into_owned().into()))
        }
    }
}
