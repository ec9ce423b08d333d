//! The layout docs/architecture.md describes, kept: shared leaves import no
//! component, and no module imports one above it in src/lib.rs's order (so
//! there are no import circles). Reads the sources; needs no root.

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
