//! The walk over one parsed file: its modules, their items and `use` bindings, and every
//! path that may name a module of the crate.

use super::{Module, PathRef};
use std::collections::BTreeMap;
use std::path::PathBuf;
use syn::spanned::Spanned;
use syn::visit::Visit;

/// Walks one file: records its modules, their items and `use`s, and every path.
pub(super) struct Collector<'m> {
    pub(super) file: usize,
    /// The module path of the innermost module being walked.
    pub(super) scope: Vec<Vec<String>>,
    /// The directory of child module files, per scope.
    pub(super) dirs: Vec<PathBuf>,
    pub(super) modules: &'m mut BTreeMap<Vec<String>, Module>,
    pub(super) refs: Vec<PathRef>,
    /// Out-of-line child modules (`mod x;`): their path and the directory to look in.
    pub(super) outlined: Vec<(Vec<String>, PathBuf)>,
}

impl Collector<'_> {
    fn current(&self) -> Vec<String> {
        self.scope.last().cloned().unwrap_or_default()
    }

    pub(super) fn enter(&mut self, path: &[String]) {
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
