//! The source tree keeps its shape: lower modules never import higher ones, so the modules
//! form no import cycle. A module depends on every module it names as `crate::…` (outside
//! comments and its tests) and on the modules it declares (a parent uses its children); a
//! cycle in that graph is a failure that names the modules in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`server::http::ws`) → its source, for every `.rs` file under src/.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if !path.extension().is_some_and(|e| e == "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap().with_extension("");
            let mut name = relative.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            if name == "lib" || name == "main" {
                continue;
            }
            found.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    found
}

/// The code of a module without its tests and comments.
fn code(source: &str) -> String {
    let source = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module → the modules it depends on.
fn graph(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, source) in modules {
        let code = code(source);
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            // The longest prefix that is a module.
            let target = (1..=parts.len())
                .rev()
                .map(|k| parts[..k].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = target {
                let is_ancestor = name.starts_with(&format!("{target}::"));
                if target != *name && !is_ancestor {
                    graph.entry(name.clone()).or_default().insert(target);
                }
            }
        }
        if let Some((parent, _)) = name.rsplit_once("::") {
            if modules.contains_key(parent) {
                graph
                    .entry(parent.to_string())
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one (depth-first, the path so far in `path`).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in graph.get(at).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(cycle) = cycle_from(graph, start, next, path, seen) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = modules();
    assert!(modules.contains_key("server::hub"), "the tree was read");
    let graph = graph(&modules);
    let cycles: Vec<String> = modules
        .keys()
        .filter_map(|start| {
            let mut path = vec![start.clone()];
            cycle_from(&graph, start, start, &mut path, &mut BTreeSet::new())
        })
        .map(|cycle| cycle.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The check finds a cycle when there is one.
#[test]
fn a_cycle_is_found() {
    let mut modules = BTreeMap::new();
    modules.insert("a".to_string(), "use crate::b::X;".to_string());
    modules.insert("b".to_string(), "fn f() { crate::a::g() }".to_string());
    modules.insert("c".to_string(), "// crate::a, in a comment".to_string());
    let graph = graph(&modules);
    let mut path = vec!["a".to_string()];
    let cycle = cycle_from(&graph, "a", "a", &mut path, &mut BTreeSet::new());
    assert_eq!(cycle.unwrap().join(" → "), "a → b → a");
    assert!(!graph.contains_key("c"));
}
