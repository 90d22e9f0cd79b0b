//! `etl compile`: render every selected model to target/compiled/, run nothing.

use etl::artifacts;
use etl::diagnostic::Diagnostic;
use etl::graph;

use super::{Global, Output, invocation_id};

pub fn run(global: &Global, out: &Output) -> u8 {
    let invocation = invocation_id();
    let prepared = match global.prepare(out, &invocation) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    let selection = graph::select(&prepared.dag, &global.select, &global.exclude);
    out.warnings(&selection.warnings, &root);
    let manifest = artifacts::manifest(&prepared.project, &prepared.dag, &prepared.rendered, &invocation);
    let written = artifacts::write_json(&prepared.project, "manifest.json", &manifest).and_then(|_| {
        artifacts::write_compiled(&prepared.project, &prepared.dag, &selection.nodes, &prepared.rendered)
    });
    match written {
        Ok(count) => {
            if out.json() {
                out.event(serde_json::json!({"event": "compiled", "models": count}));
            } else {
                out.line(&format!("Compiled {count} models to target/compiled/"));
            }
            0
        }
        Err(e) => {
            out.fatal(
                &[Diagnostic::error("io", format!("cannot write target/: {e}"))],
                Some(&root),
            );
            2
        }
    }
}
