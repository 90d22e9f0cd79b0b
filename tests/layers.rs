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
