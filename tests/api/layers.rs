//! The README's layer rules, read off the source: every `crate::<module>`
//! path outside a test module is an edge between top-level modules. An
//! import that points the wrong way, or a cycle, fails here instead of in
//! review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level module a file under `src/` belongs to.
fn top_module(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// The source up to its test module: tests may reach anywhere.
fn production_part(source: &str) -> &str {
    source
        .find("#[cfg(test)]")
        .map_or(source, |at| &source[..at])
}

/// `crate::name` occurrences, including inside `use crate::{a, b}` groups.
fn referenced_modules(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        found.insert(name);
    }
    found.retain(|name| !name.is_empty() && name.chars().all(|c| !c.is_uppercase()));
    found
}

fn collect(dir: &Path, src: &Path, graph: &mut Graph) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, src, graph);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let relative = path.strip_prefix(src).unwrap();
        let from = top_module(relative);
        if from == "lib" || from == "main" {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let edges = graph.entry(from.clone()).or_default();
        for to in referenced_modules(production_part(&source)) {
            if to != from {
                edges.insert(to);
            }
        }
    }
}

fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    collect(&src, &src, &mut graph);
    graph
}

/// A path `from` → … → `from`, if any.
fn cycle_through(graph: &Graph, from: &str) -> Option<Vec<String>> {
    fn walk(graph: &Graph, at: &str, goal: &str, path: &mut Vec<String>) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == goal {
                path.push(next.clone());
                return true;
            }
            if path.contains(next) {
                continue;
            }
            path.push(next.clone());
            if walk(graph, next, goal, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![from.to_owned()];
    walk(graph, from, from, &mut path).then_some(path)
}

#[test]
fn no_cycle_between_top_level_modules() {
    let graph = module_graph();
    assert!(
        ["http", "store", "accounts"]
            .iter()
            .all(|module| graph.contains_key(*module))
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn lower_layers_import_nothing_above_them() {
    // What each layer may never name (README "Invariants").
    let forbidden: &[(&str, &[&str])] = &[
        (
            "domain",
            &[
                "store", "auth", "accounts", "http", "routes", "server", "state", "app",
                "commands", "config",
            ],
        ),
        (
            "store",
            &[
                "accounts", "http", "routes", "server", "state", "app", "commands", "config",
            ],
        ),
        (
            "auth",
            &[
                "accounts", "http", "routes", "server", "app", "commands", "store",
            ],
        ),
        (
            "accounts",
            &[
                "http", "routes", "server", "state", "app", "commands", "config",
            ],
        ),
        ("http", &["accounts", "routes", "server", "app", "commands"]),
        // Handlers reach storage only through `accounts`.
        ("routes", &["store", "server", "app", "commands"]),
        ("server", &["routes", "app", "commands", "store"]),
    ];
    let graph = module_graph();
    let mut wrong = Vec::new();
    for (module, never) in forbidden {
        for to in graph.get(*module).into_iter().flatten() {
            if never.contains(&to.as_str()) {
                wrong.push(format!("{module} -> {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering: {wrong:?}");
}

/// The storage seam: each backend alone names its driver, so another
/// backend changes nothing above `store`.
#[test]
fn only_each_backend_names_its_driver() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let store = src.join("store");
    // The connection pool crate both backends use.
    let pooled = [store.join("sqlite"), store.join("postgres")];
    let drivers: [(PathBuf, &[&str]); 2] = [
        (store.join("sqlite"), &["rusqlite", "r2d2_sqlite"]),
        (
            store.join("postgres"),
            &[
                "tokio_postgres",
                "r2d2_postgres",
                "use postgres",
                "postgres::Client",
                "postgres::Config",
                "postgres::Error",
                "postgres::error",
                "postgres::types",
                "postgres::NoTls",
            ],
        ),
    ];
    let mut leaks = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let shown = path.strip_prefix(&src).unwrap().display().to_string();
            for (home, names) in &drivers {
                if !path.starts_with(home) && names.iter().any(|name| source.contains(name)) {
                    leaks.push(shown.clone());
                }
            }
            if source.contains("r2d2") && !pooled.iter().any(|home| path.starts_with(home)) {
                leaks.push(shown);
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "driver named outside its backend: {leaks:?}"
    );
}

/// The suite runs against any backend: only `helpers/db.rs` reads or sets
/// stored state directly.
#[test]
fn only_the_store_specific_test_helpers_name_the_driver() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("api");
    let allowed = [suite.join("helpers").join("db.rs"), suite.join("layers.rs")];
    let mut leaks = Vec::new();
    let mut dirs = vec![suite.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if !allowed.contains(&path)
                && std::fs::read_to_string(&path).unwrap().contains("rusqlite")
            {
                leaks.push(path.strip_prefix(&suite).unwrap().display().to_string());
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "the driver named outside helpers/db.rs: {leaks:?}"
    );
}

#[test]
fn the_reader_sees_grouped_and_nested_imports() {
    let source = "use crate::{auth::x, store};\nfn f() { crate::http::y(); }\n\
                  #[cfg(test)]\nmod tests { use crate::routes; }";
    let found = referenced_modules(production_part(source));
    let expected: BTreeSet<String> = ["auth", "store", "http"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(found, expected);
    let mut cyclic = Graph::new();
    cyclic.entry("a".into()).or_default().insert("b".into());
    cyclic.entry("b".into()).or_default().insert("a".into());
    assert_eq!(
        cycle_through(&cyclic, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
