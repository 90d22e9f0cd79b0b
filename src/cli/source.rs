//! `etl source freshness`: how old the newest row of each source is,
//! against its `warn_after` / `error_after`, as `dbt source freshness`
//! reports it (and `target/sources.json` in dbt's shape).

use clap::Subcommand;
use serde_json::json;

use etl::artifacts;
use etl::diagnostic::{Code, Diagnostic};
use etl::materialize::{FreshnessStatus, check_freshness};
use etl::plan::Registry;

use super::{Global, Output, invocation_id};

#[derive(Subcommand, Debug)]
pub enum SourceCommand {
    /// Check the freshness of the selected sources (`-s source:bronze`).
    Freshness,
}

pub async fn run(global: &Global, command: &SourceCommand, out: &Output) -> u8 {
    let SourceCommand::Freshness = command;
    let invocation = invocation_id();
    let prepared = match global.prepare(out, &invocation) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    let selection = match global.selection(&prepared, out) {
        Ok(nodes) => nodes,
        Err(code) => return code,
    };
    let ctx = match global.session(&prepared.project, out) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let registry = Registry::new(ctx, prepared.project.target.lake.clone());
    let results = check_freshness(&registry, &prepared.project, &prepared.dag, &selection).await;
    if results.is_empty() {
        out.diagnostics(
            &[
                Diagnostic::warning(Code::NoFreshness, "no selected source declares a `freshness`").with_help(
                    "give a source `loaded_at_field` and `freshness: {warn_after: {count: 1, period: day}}`",
                ),
            ],
            Some(&root),
        );
    }
    for (i, r) in results.iter().enumerate() {
        if out.json() {
            out.event(json!({"event": "freshness", "result": r}));
            continue;
        }
        let label = match r.status {
            FreshnessStatus::Pass => "PASS",
            FreshnessStatus::Warn => "WARN",
            FreshnessStatus::Error => "ERROR STALE",
            FreshnessStatus::RuntimeError => "ERROR",
        };
        out.line(&format!(
            "{:>w$}/{} {label:<11} freshness of {:<36} {}",
            i + 1,
            results.len(),
            r.name,
            r.message,
            w = results.len().to_string().len()
        ));
    }
    let diagnostics: Vec<Diagnostic> = results.iter().filter_map(|r| r.diagnostic.clone()).collect();
    out.diagnostics(&diagnostics, Some(&root));
    let sources = json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json",
            "generator": "etl",
            "etl_version": env!("CARGO_PKG_VERSION"),
            "invocation_id": invocation,
        },
        "results": results,
    });
    if let Err(e) = artifacts::write_json(&prepared.project, "sources.json", &sources) {
        out.fatal(
            &[Diagnostic::error(
                Code::Io,
                format!("cannot write target/sources.json: {e}"),
            )],
            Some(&root),
        );
        return 2;
    }
    let failed = results
        .iter()
        .any(|r| matches!(r.status, FreshnessStatus::Error | FreshnessStatus::RuntimeError));
    if failed { 1 } else { 0 }
}
