//! The layout docs/architecture.md describes, kept: shared leaves import no
//! component, and no module imports one above it in src/lib.rs's order (so
//! there are no import circles); inside each folder, no sibling modules
//! import each other in a circle. Reads the sources; needs no root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Top-level modules in src/lib.rs order, each with whether it is a leaf.
fn modules() -> Vec<(String, bool)> {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    let mut leaves = false;
    let mut out = Vec::new();
    for line in lib.lines() {
        if line.starts_with("// Shared leaves") {
            leaves = true;
        }
        let decl = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "));
        if let Some(rest) = decl {
            let name = rest.split(';').next().unwrap().trim().to_string();
            out.push((name, leaves));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `crate::NAME` paths a module's files use, by top-level module.
fn imports(names: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        let mut files = Vec::new();
        let dir = Path::new(SRC).join(name);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let file = Path::new(SRC).join(format!("{name}.rs"));
        if file.exists() {
            files.push(file);
        }
        let mut used = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for other in names.iter().filter(|o| *o != name) {
                let direct = format!("crate::{other}::");
                let grouped = format!("crate::{{{other}");
                if text.contains(&direct) || text.contains(&grouped) {
                    used.push(other.clone());
                }
            }
        }
        used.sort();
        used.dedup();
        map.insert(name.clone(), used);
    }
    map
}

#[test]
fn arrows_point_down_and_leaves_import_no_component() {
    let mods = modules();
    assert!(mods.len() > 20, "src/lib.rs lists the modules: {mods:?}");
    let names: Vec<String> = mods.iter().map(|(n, _)| n.clone()).collect();
    let rank = |n: &str| names.iter().position(|x| x == n).unwrap();
    let graph = imports(&names);
    let mut wrong = Vec::new();
    for (name, leaf) in &mods {
        for used in &graph[name] {
            let used_is_leaf = mods.iter().any(|(n, l)| n == used && *l);
            if *leaf && !used_is_leaf {
                wrong.push(format!("leaf {name} imports component {used}"));
            } else if !*leaf && !used_is_leaf && rank(used) < rank(name) {
                wrong.push(format!("{name} imports {used}, which is above it"));
            } else if *leaf && used_is_leaf && rank(used) < rank(name) && graph[used].contains(name)
            {
                wrong.push(format!("leaves {name} and {used} import each other"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Sibling modules of one folder: `name.rs` files and `name/mod.rs` folders.
fn siblings(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        let module = (p.is_dir() && p.join("mod.rs").exists())
            || (p.extension().is_some_and(|x| x == "rs")
                && !["mod", "lib", "main"].contains(&name.as_str()));
        if module {
            out.insert(name, p);
        }
    }
    out
}

/// Which siblings each sibling of `dir` names, by `super::` (as many as its
/// depth needs) or by its path from the crate root.
fn sibling_graph(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let sibs = siblings(dir);
    let rel = dir
        .strip_prefix(SRC)
        .unwrap()
        .to_string_lossy()
        .replace('/', "::");
    let mut graph = BTreeMap::new();
    for (name, path) in &sibs {
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(path, &mut files);
        } else {
            files.push(path.clone());
        }
        let mut used = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let inner = f.strip_prefix(dir).unwrap().components().count();
            let depth = if f.ends_with("mod.rs") {
                inner - 1
            } else {
                inner
            };
            let up = "super::".repeat(depth);
            for other in sibs.keys().filter(|o| *o != name) {
                let mut prefixes = vec![format!("crate::{rel}::")];
                if !up.is_empty() {
                    prefixes.push(up.clone());
                }
                let hit = prefixes.iter().any(|p| {
                    [":", ";", ",", "}"]
                        .iter()
                        .any(|end| text.contains(&format!("{p}{other}{end}")))
                        || text.contains(&format!("{p}{{{other}"))
                });
                if hit {
                    used.push(other.clone());
                }
            }
        }
        graph.insert(name.clone(), used);
    }
    graph
}

#[test]
fn no_import_circle_inside_a_folder() {
    let mut dirs = Vec::new();
    let mut stack = vec![PathBuf::from(SRC)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
                dirs.push(e.path());
            }
        }
    }
    assert!(dirs.len() > 10, "found the component folders: {dirs:?}");
    let mut wrong = Vec::new();
    for dir in dirs {
        let graph = sibling_graph(&dir);
        for start in graph.keys() {
            // Depth-first from `start`; a path back to it is a circle.
            let mut stack = vec![vec![start.clone()]];
            while let Some(path) = stack.pop() {
                for next in &graph[path.last().unwrap()] {
                    if next == start {
                        wrong.push(format!(
                            "{}: {} -> {start}",
                            dir.display(),
                            path.join(" -> ")
                        ));
                    } else if !path.contains(next) && next > start {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push(p);
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "import circles:\n{}", wrong.join("\n"));
}
