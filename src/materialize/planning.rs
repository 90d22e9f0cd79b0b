//! Planning a model against its inputs: its SQL compiled with its
//! ephemeral parents, its parents made readable, the new files an
//! incremental model ingests swapped in, `--empty`'s scans of no rows, and
//! its contract checked.

use std::time::Instant;

use super::{Build, NodeRun};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::plan::{check_contract, compile_with, plan_model, replace_scans};

pub(super) async fn planned(
    build: &Build,
    run: &mut NodeRun,
) -> Result<(datafusion::logical_expr::LogicalPlan, String), Diagnostic> {
    let started = Instant::now();
    let planned = plan_with_inputs(build, run).await;
    run.plan_seconds += started.elapsed().as_secs_f64();
    planned
}

async fn plan_with_inputs(
    build: &Build,
    run: &mut NodeRun,
) -> Result<(datafusion::logical_expr::LogicalPlan, String), Diagnostic> {
    let index = run.index;
    let compiled = compile_with(&build.dag, index, &build.models, &build.rendered_now(index));
    build.registry.ensure_parents(&build.dag, &build.project, index).await?;
    let node = build.dag.node(index);
    // Under `--empty` nothing is read, so no file is counted as ingested.
    let prepared = if build.options.empty {
        None
    } else {
        super::ingest::prepare(build, index).await?
    };
    let new_files = match prepared {
        Some((ingest, readers)) => {
            run.ingest = Some(ingest);
            readers
        }
        None => Vec::new(),
    };
    if build.options.incremental.contains(&node.name) {
        // `{{ this }}`: an incremental model reads its own current table.
        build.registry.ensure(&build.dag, &build.project, index).await?;
    }
    let session = &run.session;
    let mut plan = plan_model(session, &compiled).await?;
    for files in new_files {
        plan = replace_scans(plan, &files.source, files.provider).map_err(|e| {
            Diagnostic::error(
                Code::Plan,
                format!("reading the new files of {}: {e}", files.source.sql()),
            )
            .with_span(Some(Span::file(&node.path)))
        })?;
    }
    if build.options.empty {
        plan = crate::plan::without_rows(plan).map_err(|e| {
            Diagnostic::error(Code::Plan, format!("`--empty`: {e}")).with_span(Some(Span::file(&node.path)))
        })?;
    }
    if node.config.contract_enforced {
        check_contract(session, node.model(&build.project), plan.schema()).await?;
    }
    Ok((plan, compiled.sql))
}
