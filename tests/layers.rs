//! The library's top-level modules form layers, each using only the ones
//! below it: foundations (`diagnostic`, `parallel`, `lake`), then the
//! stages in pipeline order. A `crate::<module>` path in a module that
//! points back up the stack makes a circle, and this test names it.
//! See: issue 27.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's top-level modules, from the `mod` lines of `lib.rs`.
fn top_modules(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches("pub ");
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.to_owned())
        })
        .collect()
}

/// Which top-level modules each one names with `crate::<module>`.
fn uses(src: &Path, modules: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for module in modules {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        let mut used = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `use crate::{a, b}` names several.
                let names: Vec<String> = if rest.starts_with('{') {
                    let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
                    group
                        .split(',')
                        .map(|part| part.trim().split("::").next().unwrap_or("").to_owned())
                        .collect()
                } else {
                    vec![name]
                };
                for name in names {
                    if name != *module && modules.contains(&name) {
                        used.insert(name);
                    }
                }
            }
        }
        out.insert(module.clone(), used);
    }
    out
}

/// A circle through `start`, if there is one: the modules in order.
fn circle(uses: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        uses: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &uses[at] {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(uses, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(uses, start, start, &mut path, &mut BTreeSet::new()).then(|| {
        path.push(start.to_owned());
        path
    })
}

#[test]
fn top_level_modules_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_modules(&src);
    assert!(modules.len() >= 9, "lib.rs declares too few modules: {modules:?}");
    let uses = uses(&src, &modules);
    let circles: Vec<String> = modules
        .iter()
        .filter_map(|m| circle(&uses, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "modules that use each other:\n{}",
        circles.join("\n")
    );
}

#[test]
fn foundations_use_no_stage() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let uses = uses(&src, &top_modules(&src));
    let foundations = ["diagnostic", "parallel", "lake"];
    for module in foundations {
        let above: Vec<_> = uses[module]
            .iter()
            .filter(|m| !foundations.contains(&m.as_str()))
            .collect();
        assert!(above.is_empty(), "`{module}` is a foundation but uses {above:?}");
    }
}

/// Which sibling modules each submodule of the stage `stage` names
/// (`super::x`, `crate::<stage>::x`), in code outside `#[cfg(test)]`.
/// Uses through `use super::*` are not seen.
fn sibling_uses(src: &Path, stage: &str) -> BTreeMap<String, BTreeSet<String>> {
    let dir = src.join(stage);
    let mut children: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || (path.is_file() && path.extension().is_none_or(|e| e != "rs")) {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
        children.insert(name, files);
    }
    let names: Vec<String> = children.keys().cloned().collect();
    let mut out = BTreeMap::new();
    for (name, files) in &children {
        let mut used = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            // `super::` is the stage in its direct children (x.rs, x/mod.rs),
            // `super::super::` one level further down.
            let nested = file.parent() != Some(dir.as_path()) && file.file_name().is_some_and(|f| f != "mod.rs");
            let to_stage = if nested { "super::super::" } else { "super::" };
            let crate_path = format!("crate::{stage}::");
            for prefix in [to_stage, crate_path.as_str()] {
                for (at, _) in code.match_indices(prefix) {
                    if prefix == "super::" && code[..at].ends_with("super::") {
                        continue;
                    }
                    let rest = &code[at + prefix.len()..];
                    let found: Vec<String> = if rest.starts_with('{') {
                        rest[1..rest.find('}').unwrap_or(rest.len())]
                            .split(',')
                            .map(|p| p.trim().split("::").next().unwrap_or("").to_owned())
                            .collect()
                    } else {
                        vec![
                            rest.chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect(),
                        ]
                    };
                    used.extend(found.into_iter().filter(|f| f != name && names.contains(f)));
                }
            }
        }
        out.insert(name.clone(), used);
    }
    out
}

#[test]
fn the_files_of_a_stage_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut circles = Vec::new();
    for stage in ["materialize", "plan", "project", "graph", "render", "lake", "config"] {
        let uses = sibling_uses(&src, stage);
        assert!(!uses.is_empty(), "`{stage}` has no files");
        for module in uses.keys() {
            if let Some(c) = circle(&uses, module) {
                circles.push(format!("{stage}: {}", c.join(" -> ")));
            }
        }
    }
    assert!(circles.is_empty(), "files that use each other:\n{}", circles.join("\n"));
}

#[test]
fn the_circle_check_finds_a_circle() {
    let uses: BTreeMap<String, BTreeSet<String>> = [
        ("graph", vec!["plan"]),
        ("plan", vec!["graph", "lake"]),
        ("lake", vec![]),
    ]
    .into_iter()
    .map(|(m, used)| (m.to_owned(), used.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(circle(&uses, "graph").unwrap(), ["graph", "plan", "graph"]);
    assert_eq!(circle(&uses, "lake"), None);
}

#[test]
fn the_file_check_sees_uses_between_files_and_not_in_tests() {
    let dir = tempfile::tempdir().unwrap();
    let stage = dir.path().join("stage");
    std::fs::create_dir_all(stage.join("c")).unwrap();
    std::fs::write(stage.join("mod.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(stage.join("a.rs"), "use super::{b::X, c};\n").unwrap();
    std::fs::write(
        stage.join("b.rs"),
        "fn f() { crate::stage::a::g() }\n#[cfg(test)]\nuse super::c;\n",
    )
    .unwrap();
    std::fs::write(stage.join("c/mod.rs"), "mod d;\n").unwrap();
    std::fs::write(stage.join("c/d.rs"), "use super::super::b;\n").unwrap();
    let uses = sibling_uses(dir.path(), "stage");
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(uses["a"], set(&["b", "c"]));
    assert_eq!(uses["b"], set(&["a"]));
    assert_eq!(uses["c"], set(&["b"]));
    assert_eq!(circle(&uses, "a").unwrap(), ["a", "b", "a"]);
}
