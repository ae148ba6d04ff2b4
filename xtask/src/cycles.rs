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
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use syn::spanned::Spanned;
use syn::visit::Visit;

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

/// Walks one file: records its modules, their items and `use`s, and every path.
struct Collector<'m> {
    file: usize,
    /// The module path of the innermost module being walked.
    scope: Vec<Vec<String>>,
    /// The directory of child module files, per scope.
    dirs: Vec<PathBuf>,
    modules: &'m mut BTreeMap<Vec<String>, Module>,
    refs: Vec<PathRef>,
    /// Out-of-line child modules (`mod x;`): their path and the directory to look in.
    outlined: Vec<(Vec<String>, PathBuf)>,
}

impl Collector<'_> {
    fn current(&self) -> Vec<String> {
        self.scope.last().cloned().unwrap_or_default()
    }

    fn enter(&mut self, path: &[String]) {
        let file = self.file;
        self.modules.entry(path.to_vec()).or_default().file = file;
    }

    fn record(&mut self, segments: Vec<String>, line: usize) {
        if segments.is_empty() {
            return;
        }
        let module = self.current();
        self.refs.push(PathRef {
            module,
            segments,
            line,
        });
    }

    /// Records the names bound and the paths named by a `use` tree.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut full = prefix.clone();
                if name != "self" {
                    full.push(name.clone());
                }
                let bound = if name == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    name
                };
                self.bind(bound, &full);
                self.record(full, line);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.bind(r.rename.to_string(), &full);
                self.record(full, line);
            }
            syn::UseTree::Glob(_) => {
                let module = self.current();
                self.modules
                    .entry(module)
                    .or_default()
                    .globs
                    .push(prefix.clone());
                self.record(prefix.clone(), line);
            }
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item, line);
                }
            }
        }
    }

    /// Binds `name` in the current module to `path` (as written).
    fn bind(&mut self, name: String, path: &[String]) {
        let module = self.current();
        self.modules
            .entry(module)
            .or_default()
            .uses
            .insert(name, path.to_vec());
    }

    fn item_name(&mut self, ident: &syn::Ident) {
        let module = self.current();
        self.modules
            .entry(module)
            .or_default()
            .items
            .insert(ident.to_string());
    }

    /// Paths inside a macro's tokens: `crate::a::b`, `super::a`, `self::a`.
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let flat: Vec<proc_macro2::TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < flat.len() {
            match &flat[i] {
                proc_macro2::TokenTree::Group(g) => self.tokens(g.stream()),
                proc_macro2::TokenTree::Ident(id)
                    if matches!(id.to_string().as_str(), "crate" | "super" | "self") =>
                {
                    let line = id.span().start().line;
                    let mut segments = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (
                        Some(proc_macro2::TokenTree::Punct(a)),
                        Some(proc_macro2::TokenTree::Punct(b)),
                        Some(proc_macro2::TokenTree::Ident(next)),
                    ) = (flat.get(j), flat.get(j + 1), flat.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.record(segments, line);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// True for `#[cfg(test)]` (and `#[cfg(all(test, ...))]`): code compiled only for tests.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                let text = l.tokens.to_string();
                text == "test" || text.starts_with("all (test") || text.starts_with("all(test")
            })
    })
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Union(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if is_test_only(attrs) {
            return;
        }
        match item {
            syn::Item::Const(i) => self.item_name(&i.ident),
            syn::Item::Enum(i) => self.item_name(&i.ident),
            syn::Item::Fn(i) => self.item_name(&i.sig.ident),
            syn::Item::Macro(i) => {
                if let Some(ident) = &i.ident {
                    self.item_name(ident);
                }
            }
            syn::Item::Static(i) => self.item_name(&i.ident),
            syn::Item::Struct(i) => self.item_name(&i.ident),
            syn::Item::Trait(i) => self.item_name(&i.ident),
            syn::Item::Type(i) => self.item_name(&i.ident),
            syn::Item::Union(i) => self.item_name(&i.ident),
            _ => {}
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let name = item.ident.to_string();
        let parent = self.current();
        let mut path = parent.clone();
        path.push(name.clone());
        self.modules
            .entry(parent)
            .or_default()
            .children
            .insert(name.clone(), path.clone());
        let dir = self.dirs.last().cloned().unwrap_or_default();
        match &item.content {
            None => self.outlined.push((path, dir)),
            Some((_, items)) => {
                self.enter(&path);
                self.scope.push(path);
                self.dirs.push(dir.join(&name));
                for item in items {
                    self.visit_item(item);
                }
                self.dirs.pop();
                self.scope.pop();
            }
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let line = item.span().start().line;
        let mut prefix = Vec::new();
        self.use_tree(&mut prefix, &item.tree, line);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 || matches!(segments[0].as_str(), "crate" | "super" | "self") {
            self.record(segments, path.span().start().line);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.tokens(mac.tokens.clone());
    }

    fn visit_attribute(&mut self, _attr: &'ast syn::Attribute) {
        // Doc comments and attributes name no imports.
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_stmt(&mut self, stmt: &'ast syn::Stmt) {
        // Items inside function bodies (a `use` in a block) belong to an anonymous scope;
        // their paths still count for the file, resolved from the enclosing module.
        syn::visit::visit_stmt(self, stmt);
    }
}

#[cfg(test)]
mod tests {
    use super::Graph;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    fn graph(files: &[(&str, &str)]) -> Graph {
        let map: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        Graph::load(Path::new("src/lib.rs"), &|p: &Path| map.get(p).cloned()).unwrap()
    }

    fn names(g: &Graph) -> Vec<Vec<String>> {
        g.cycles()
            .iter()
            .map(|c| {
                c.iter()
                    .map(|&i| g.files[i].display().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn finds_a_cycle_through_use_and_through_a_path_in_code() {
        let g = graph(&[
            ("src/lib.rs", "mod a; mod b; mod c;"),
            ("src/a.rs", "use crate::b::B; pub struct A;"),
            ("src/b.rs", "pub struct B; fn f() { crate::a::A; }"),
            ("src/c.rs", "use crate::a::A;"),
        ]);
        assert_eq!(names(&g), vec![vec!["src/a.rs", "src/b.rs"]]);
        let report = g.describe(&g.cycles()[0]);
        assert!(report.contains("src/a.rs:1 uses src/b.rs"), "{report}");
        assert!(report.contains("src/b.rs:1 uses src/a.rs"), "{report}");
    }

    #[test]
    fn follows_re_exports_of_the_root_and_use_groups() {
        let g = graph(&[
            ("src/lib.rs", "mod a; mod b; pub use a::A; pub use b::*;"),
            ("src/a.rs", "use crate::{B, x::y}; pub struct A;"),
            ("src/b.rs", "use crate::A; pub struct B;"),
        ]);
        assert_eq!(names(&g), vec![vec!["src/a.rs", "src/b.rs"]]);
    }

    #[test]
    fn parents_children_tests_and_external_crates_make_no_cycle() {
        let g = graph(&[
            ("src/lib.rs", "mod a; mod b;"),
            ("src/a.rs", "mod child; use child::C; pub struct A;"),
            ("src/a/child.rs", "use super::A; pub struct C;"),
            (
                "src/b.rs",
                "use crate::a::A; use std::io; use b::a::x; \
                 #[cfg(test)] mod tests { use crate::b; }",
            ),
        ]);
        assert!(names(&g).is_empty(), "{:?}", names(&g));
        // b -> a only; a does not use b: no cycle.
        let g = graph(&[
            ("src/lib.rs", "mod a; mod b;"),
            (
                "src/a.rs",
                "pub struct A; #[cfg(test)] mod tests { use crate::b::B; }",
            ),
            ("src/b.rs", "use crate::a::A; pub struct B;"),
        ]);
        assert!(names(&g).is_empty());
    }

    #[test]
    fn submodule_files_are_nodes_and_super_paths_resolve() {
        let g = graph(&[
            ("src/lib.rs", "mod s;"),
            ("src/s/mod.rs", "mod x; mod y;"),
            ("src/s/x.rs", "use super::y::Y; pub struct X;"),
            (
                "src/s/y.rs",
                "pub struct Y; fn f() { let _ = format!(\"{:?}\", super::x::X); }",
            ),
        ]);
        assert_eq!(names(&g), vec![vec!["src/s/x.rs", "src/s/y.rs"]]);
    }

    #[test]
    fn a_missing_module_file_is_an_error() {
        let map: HashMap<PathBuf, String> =
            [(PathBuf::from("src/lib.rs"), "mod gone;".to_string())].into();
        let err = Graph::load(Path::new("src/lib.rs"), &|p: &Path| map.get(p).cloned())
            .err()
            .expect("an error");
        assert!(err.to_string().contains("module gone has no file"), "{err}");
    }
}
