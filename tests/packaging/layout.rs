//! The architecture as the file tree shows it, checked: no module of `src/` or of the
//! emulator's `emulator/src/` reaches back to itself through its imports, `src/runtime/` never
//! imports a kind, and every source file starts with a doc line saying its job
//! (docs/ARCHITECTURE.md draws the same tree).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source trees checked, each a crate of its own (its own `crate`, its own module graph):
/// the operator's `src/` and the emulator's `emulator/src/`.
const CRATES: [&str; 2] = ["src", "emulator/src"];

/// The source tree of one of [`CRATES`].
fn crate_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file (`src/agents/plan.rs` -> `agents::plan`, `src/agents/mod.rs` ->
/// `agents`, `src/lib.rs` -> `crate`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    if parts.is_empty() {
        "crate".into()
    } else {
        parts.join("::")
    }
}

/// The code of a file without comments, string literals and `#[cfg(test)]` modules (a test may
/// import what the code itself must not).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut pending_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let line = strip_strings(line);
        let opens = line.matches('{').count();
        let closes = line.matches('}').count();
        if pending_test && (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ")) {
            pending_test = false;
            if trimmed.ends_with(';') {
                continue;
            }
            skip_depth = Some(depth);
            depth = depth + opens - closes;
            continue;
        }
        pending_test = false;
        depth = (depth + opens).saturating_sub(closes);
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn strip_strings(line: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            continue;
        }
        out.push(c);
    }
    match out.find("//") {
        Some(i) => out[..i].to_string(),
        None => out,
    }
}

/// The modules a file's code names: `crate::a::b`, `super::x` and `use super::{x, y}`, resolved
/// to the deepest module that exists.
fn references(
    module: &str,
    is_mod_file: bool,
    code: &str,
    modules: &BTreeSet<String>,
) -> BTreeSet<String> {
    // The module `super` means here: for `a/b.rs` it is `a`; for `a/b/mod.rs` also `a`.
    let parent = |m: &str| -> String {
        match m.rfind("::") {
            Some(i) => m[..i].to_string(),
            None => "crate".into(),
        }
    };
    let own = module.to_string();
    let sup = parent(&own);
    let _ = is_mod_file;
    let mut out = BTreeSet::new();
    let resolve = |path: &str, out: &mut BTreeSet<String>| {
        // Longest prefix that is a module.
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        for n in (1..=parts.len()).rev() {
            let candidate = parts[..n].join("::");
            if modules.contains(&candidate) {
                if candidate != own {
                    out.insert(candidate);
                }
                return;
            }
        }
    };
    let text = code.replace(char::is_whitespace, " ");
    // Expand `use super::{a, b::c}` and `use crate::x::{a, b}` groups into paths.
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", format!("{sup}::"))] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let head = &rest[..end];
            let base = base.trim_start_matches("crate::").to_string();
            if rest[end..].starts_with('{') {
                // A group: up to its closing brace.
                let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
                for item in rest[end + 1..close].split(',') {
                    let item = item.split(" as ").next().unwrap_or_default().trim();
                    let item = item.trim_start_matches('{');
                    if item.is_empty() || item == "self" {
                        paths.push(format!("{base}{}", head.trim_end_matches("::")));
                    } else {
                        paths.push(format!("{base}{head}{item}"));
                    }
                }
            } else {
                paths.push(format!("{base}{head}"));
            }
        }
    }
    for p in paths {
        resolve(&p, &mut out);
    }
    out
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// The module graph of the crate whose source tree is `src`. `lib.rs` and `main.rs` both
    /// map to `crate`: their edges add up rather than one replacing the other.
    fn load(src: &Path) -> Graph {
        let mut files = Vec::new();
        sources(src, &mut files);
        let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let m = module_of(src, f);
            let text = std::fs::read_to_string(f).expect("read source");
            let is_mod = f.file_name().is_some_and(|n| n == "mod.rs");
            let refs = references(&m, is_mod, &code(&text), &modules);
            edges.entry(m).or_default().extend(refs);
        }
        Graph { edges }
    }

    /// A cycle through `start`, if any.
    fn cycle_from(&self, start: &str) -> Option<Vec<String>> {
        let mut stack = vec![(start.to_string(), vec![start.to_string()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in self.edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.to_string());
                    return Some(cycle);
                }
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
        None
    }
}

#[test]
fn no_module_imports_itself_back() {
    // A parent module declaring its children (`mod x;`) and re-exporting them is not an
    // import of the children's: only the modules a file's code names count, and a
    // `mod.rs` that re-exports a child is an edge to that child like any other.
    let mut report = Vec::new();
    for rel in CRATES {
        let graph = Graph::load(&crate_dir(rel));
        let cycles: BTreeSet<Vec<String>> = graph
            .edges
            .keys()
            .filter_map(|m| graph.cycle_from(m))
            .map(|mut c| {
                // One spelling per cycle: starting from its smallest module.
                c.pop();
                let i = (0..c.len()).min_by_key(|&i| &c[i]).unwrap();
                c.rotate_left(i);
                c
            })
            .collect();
        report.extend(
            cycles
                .iter()
                .map(|c| format!("  {rel}/: {} -> {}", c.join(" -> "), c[0])),
        );
    }
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn the_runtime_imports_no_kind() {
    let graph = Graph::load(&crate_dir("src"));
    let kinds = ["agents", "secret_sets"];
    let leaks: Vec<String> = graph
        .edges
        .iter()
        .filter(|(m, _)| m.as_str() == "runtime" || m.starts_with("runtime::"))
        .flat_map(|(m, refs)| {
            refs.iter()
                .filter(|r| {
                    kinds
                        .iter()
                        .any(|k| r.as_str() == *k || r.starts_with(&format!("{k}::")))
                })
                .map(move |r| format!("{m} -> {r}"))
        })
        .collect();
    assert!(leaks.is_empty(), "src/runtime/ imports a kind: {leaks:?}");
}

#[test]
fn every_source_file_says_its_job_first() {
    let mut missing = Vec::new();
    for rel in CRATES {
        let src = crate_dir(rel);
        let mut files = Vec::new();
        sources(&src, &mut files);
        missing.extend(
            files
                .iter()
                .filter(|f| {
                    let text = std::fs::read_to_string(f).unwrap_or_default();
                    let first = text.lines().next().unwrap_or_default();
                    // Test modules kept in their own file (`plan/tests.rs`) are part of their
                    // parent.
                    !(first.starts_with("//!") || f.ends_with("tests.rs"))
                })
                .map(|f| format!("{rel}/{}", f.strip_prefix(&src).unwrap().display())),
        );
    }
    assert!(
        missing.is_empty(),
        "files without a first doc line: {missing:?}"
    );
}

/// The checker itself: a cycle written on purpose is found, and test modules do not count.
#[test]
fn the_checker_finds_a_cycle() {
    let modules: BTreeSet<String> = ["a", "a::x", "a::y", "b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let x = references(
        "a::x",
        false,
        &code("use super::y::Thing;\nfn f() { crate::b::g(); }"),
        &modules,
    );
    assert_eq!(x, BTreeSet::from(["a::y".to_string(), "b".to_string()]));
    let y = references(
        "a::y",
        false,
        &code("use super::{x, z};\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n"),
        &modules,
    );
    assert_eq!(y, BTreeSet::from(["a::x".to_string(), "a".to_string()]));
    let graph = Graph {
        edges: BTreeMap::from([("a::x".to_string(), x), ("a::y".to_string(), y)]),
    };
    assert!(graph.cycle_from("a::x").is_some());
}
