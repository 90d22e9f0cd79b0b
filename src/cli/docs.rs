//! `etl docs generate`: target/manifest.json and target/catalog.json (each
//! built relation's columns and types, read from the lake), as dbt's docs
//! generate writes them for the tools that read them.

use clap::Subcommand;
use etl::artifacts;
use etl::diagnostic::{Code, Diagnostic};

use super::{Global, Output, invocation_id};

#[derive(Subcommand, Debug)]
pub enum DocsCommand {
    /// Write target/manifest.json and target/catalog.json.
    Generate,
}

pub async fn run(global: &Global, command: &DocsCommand, out: &Output) -> u8 {
    let DocsCommand::Generate = command;
    let invocation = invocation_id();
    let prepared = match global.prepare(out, &invocation) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    // Only a session that cannot start fails it (bad storage options).
    let catalog = match etl::catalog(&prepared, global.memory_limit.as_deref()).await {
        Ok(c) => c,
        Err(diag) => {
            out.fatal(&[diag], Some(&root));
            return 2;
        }
    };
    let manifest = artifacts::manifest(&prepared.project, &prepared.dag, &prepared.rendered, &invocation);
    let written = artifacts::write_json(&prepared.project, "manifest.json", &manifest)
        .and_then(|_| artifacts::write_json(&prepared.project, "catalog.json", &catalog));
    if let Err(e) = written {
        out.fatal(
            &[Diagnostic::error(Code::Io, format!("cannot write target/: {e}"))],
            Some(&root),
        );
        return 2;
    }
    let count = |key: &str| catalog[key].as_object().map_or(0, |m| m.len());
    out.line(&format!(
        "Catalog of {} relations and {} sources written to target/catalog.json",
        count("nodes"),
        count("sources")
    ));
    if let Some(errors) = catalog["errors"].as_array() {
        for e in errors {
            out.line(&format!("warning: {}", e.as_str().unwrap_or_default()));
        }
    }
    0
}
