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

/// Functions longer than this many lines are named by `functions_stay_short`.
const MAX_FUNCTION_LINES: usize = 60;
/// Files longer than this many lines (tests included) are named by `files_stay_small`.
const MAX_FILE_LINES: usize = 600;

/// Every function (free, method, or nested) with its first line and length.
struct Functions<'a> {
    file: &'a str,
    found: Vec<(String, usize)>,
}

impl<'a> Functions<'a> {
    fn note(&mut self, name: &syn::Ident, block: &syn::Block, start: proc_macro2::Span) {
        let first = start.start().line;
        let last = block.brace_token.span.close().end().line;
        self.found
            .push((format!("{}:{first} {name}", self.file), last + 1 - first));
    }
}

impl<'a, 'ast> syn::visit::Visit<'ast> for Functions<'a> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.note(&f.sig.ident, &f.block, f.sig.fn_token.span);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.note(&f.sig.ident, &f.block, f.sig.fn_token.span);
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // Tests are measured by what they check, not by their length.
        let is_tests = m.attrs.iter().any(|a| {
            a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
        });
        if !is_tests {
            syn::visit::visit_item_mod(self, m);
        }
    }
}

/// The source folders of the workspace: duet, its protocol crate and the page's bindings.
const SOURCES: [&str; 3] = ["src", "transfer/src", "web/src"];

/// Every function of the workspace with its length in lines, longest first.
fn function_lengths() -> Vec<(String, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for file in SOURCES.iter().flat_map(|s| rust_files(&root.join(s))) {
        let text = std::fs::read_to_string(&file).unwrap();
        let tree = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.strip_prefix(root).unwrap().display().to_string();
        let mut visitor = Functions {
            file: &name,
            found: Vec::new(),
        };
        syn::visit::Visit::visit_file(&mut visitor, &tree);
        all.extend(visitor.found);
    }
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn functions_stay_short() {
    let lengths = function_lengths();
    assert!(lengths.len() > 100, "the functions were found");
    let long: Vec<String> = lengths
        .iter()
        .filter(|(_, lines)| *lines > MAX_FUNCTION_LINES)
        .map(|(at, lines)| format!("{lines:4} {at}"))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn files_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let big: Vec<String> = SOURCES
        .iter()
        .flat_map(|s| rust_files(&root.join(s)))
        .map(|f| (std::fs::read_to_string(&f).unwrap().lines().count(), f))
        .filter(|(lines, _)| *lines > MAX_FILE_LINES)
        .map(|(lines, f)| format!("{lines:5} {}", f.strip_prefix(root).unwrap().display()))
        .collect();
    assert!(
        big.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        big.join("\n")
    );
}
