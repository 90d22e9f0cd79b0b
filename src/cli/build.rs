//! `etl build`, `etl run`, `etl seed`, `etl test`: arguments in, the
//! library's [`etl::build()`] run, its progress and results printed, an
//! exit code out.

use std::collections::BTreeSet;

use etl::{BuildOptions, Mode, Progress};

use super::{Global, Output, invocation_id};

pub async fn run(global: &Global, out: &Output, mode: Mode) -> u8 {
    run_only(global, out, mode, None).await
}

/// Builds the selection, or with `only`, just the nodes with those
/// unique_ids (what `etl retry` re-runs).
pub async fn run_only(global: &Global, out: &Output, mode: Mode, only: Option<&BTreeSet<String>>) -> u8 {
    let prepared = match global.prepare(out, &invocation_id()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    let mut selecting = global.selecting();
    selecting.only = only.cloned();
    let defer = match global.defer() {
        Ok(defer) => defer,
        Err(diag) => {
            out.fatal(&[diag], Some(&root));
            return 2;
        }
    };
    let options = BuildOptions {
        defer,
        empty: global.empty,
        mode,
        selecting,
        threads: global.threads,
        memory_limit: global.memory_limit.clone(),
        full_refresh: global.full_refresh,
        force: global.force,
        event_time_start: global.event_time_start,
        event_time_end: global.event_time_end,
    };
    let outcome = etl::build(prepared, &options, |progress| match progress {
        Progress::Warnings(warnings) => out.warnings(warnings, &root),
        Progress::Started {
            project,
            nodes,
            threads,
        } => {
            if !out.json() {
                out.line(&format!(
                    "etl {} `{}`: {nodes} node{} selected, target `{}` at {}, {threads} thread{}",
                    mode.name(),
                    project.name,
                    if nodes == 1 { "" } else { "s" },
                    project.target.name,
                    project.target.lake,
                    if threads == 1 { "" } else { "s" }
                ));
            }
        }
        Progress::Node { result, done, total } => out.node(result, done, total),
    })
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(diags) => {
            out.fatal(&diags, Some(&root));
            return 2;
        }
    };
    out.diagnostics(&outcome.problems, Some(&outcome.root));
    out.summary(&outcome.results, &outcome.rejected, &outcome.root);
    if global.timings {
        out.timings(&outcome.timings, &outcome.results, outcome.threads);
    }
    if outcome.failed() { 1 } else { 0 }
}
