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
