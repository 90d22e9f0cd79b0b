//! Running a data test: count its failing rows, judge the count against
//! `warn_if` / `error_if` under its `severity`, and keep the failing rows in
//! a Delta table when `store_failures` asks for it.
//!
//! As in dbt, the count is `fail_calc` (default `count(*)`) over the test's
//! SQL, limited by `limit`. Thresholds are comparisons (`>10`, `!=0`), or
//! percentages of the tested relation's rows (`>5%`), which is how a reject
//! rate is written.
//!
//! `source_files: new` points the test's file sources at the files the
//! build ingests (see `ingest::files_to_ingest`): a reject rate then judges
//! what arrived, not the whole history again.

pub(super) mod added_rows;

use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use petgraph::graph::NodeIndex;
use serde_json::Value;

use super::ingest::NewFiles;
use super::{Build, NodeResult, Phases, Status, thousands};
use crate::config::Threshold;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::lake;
use crate::plan::{CompiledSql, compile_with, replace_scans, semi_join_scans, sql_diagnostic};
use crate::project::{DataTest, TestTarget};
use added_rows::Narrowed;

/// What a finished test reports.
pub struct TestOutcome {
    pub status: Status,
    pub failures: u64,
    /// The rows a percent threshold is taken of.
    pub tested_rows: Option<u64>,
    pub message: String,
    pub location: Option<String>,
}

/// Runs a test, unless it passed (or warned) on exactly the data it would
/// read now: same compiled SQL and config, same versions of the tables it
/// reads. Its last result is kept in the lake (`_etl/tests/`).
pub async fn run_test_unless_up_to_date(build: &Build, index: NodeIndex) -> NodeResult {
    let started = Instant::now();
    let node = build.dag.node(index);
    let skips = !(build.options.full_refresh || build.options.force);
    let fingerprint = super::fingerprint::fingerprint_and_inputs(build, index).await.ok();
    let last = match (skips, &fingerprint) {
        (true, Some(_)) => {
            let lake = &build.registry.lake;
            lake::read_document(&build.registry.ctx, lake, "tests", &node.unique_id).await
        }
        _ => None,
    };
    if let (Some((fp, _)), Some(last)) = (&fingerprint, &last) {
        let status = match last["status"].as_str() {
            Some("pass") => Some(Status::Pass),
            Some("warn") => Some(Status::Warn),
            _ => None,
        };
        if let (true, Some(status)) = (last["fingerprint"].as_str() == Some(fp.as_str()), status) {
            return NodeResult {
                unique_id: node.unique_id.clone(),
                name: node.name.clone(),
                resource_type: node.resource_type,
                materialized: node.materialized,
                status,
                execution_time: started.elapsed().as_secs_f64(),
                rows_affected: None,
                failures: last["failures"].as_u64(),
                tested_rows: last["tested_rows"].as_u64(),
                up_to_date: true,
                message: format!(
                    "up to date: {} on the same data ({})",
                    if status == Status::Pass { "passed" } else { "warned" },
                    last["message"].as_str().unwrap_or_default()
                ),
                location: last["location"].as_str().map(str::to_owned),
                relation: node.relation.sql(),
                version: None,
                phases: Phases::default(),
                diagnostic: None,
                warnings: Vec::new(),
            };
        }
    }
    // Same test on a model that only gained rows since it passed: only
    // what it gained is read (the failing rows are the same).
    let narrowed = match &last {
        Some(_) if build.without_rewrites(index) => None,
        Some(last) => added_rows::since_last_pass(build, index, last).await,
        None => None,
    };
    let result = run_narrowed(build, index, narrowed).await;
    if let Some((fp, inputs)) = fingerprint {
        store_result(build, index, &fp, &inputs, &result).await;
    }
    result
}

/// Keeps the result of a test that ran during an audit, now that the data
/// it ran on is published.
pub async fn remember(build: &Build, index: NodeIndex, result: &NodeResult) {
    if let Ok((fp, inputs)) = super::fingerprint::fingerprint_and_inputs(build, index).await {
        store_result(build, index, &fp, &inputs, result).await;
    }
}

async fn store_result(
    build: &Build,
    index: NodeIndex,
    fingerprint: &str,
    inputs: &std::collections::BTreeMap<String, Value>,
    result: &NodeResult,
) {
    let status = match result.status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        _ => return,
    };
    let node = build.dag.node(index);
    let state = serde_json::json!({
        "fingerprint": fingerprint,
        "status": status,
        "failures": result.failures,
        "tested_rows": result.tested_rows,
        "message": result.message,
        "location": result.location,
        "invocation_id": build.options.invocation_id,
        // The versions it ran on: the next build reads what they gained.
        "inputs": inputs,
        "definition": definition(build, index),
    });
    // Losing this record only costs running the test again next time.
    let _ = lake::write_document(
        &build.registry.ctx,
        &build.registry.lake,
        "tests",
        &node.unique_id,
        &state,
    )
    .await;
}

pub async fn run_test(build: &Build, index: NodeIndex) -> NodeResult {
    run_test_reading(build, index, None).await
}

/// Runs the test reading only what `narrowed` points it at, or in full
/// without it. An error on the narrowed path is retried in full.
pub async fn run_narrowed(build: &Build, index: NodeIndex, narrowed: Option<Narrowed>) -> NodeResult {
    let Some(narrowed) = narrowed else {
        return run_test(build, index).await;
    };
    match run_test_reading(build, index, Some(narrowed)).await {
        r if r.status == Status::Error => {
            let why = r.diagnostic.as_ref().map(|d| d.message.clone()).unwrap_or_default();
            let mut full = run_test(build, index).await;
            // Reading less is etl's rewrite of the test: when it fails and
            // the test itself does not, the rewrite is at fault, and says so.
            if full.status != Status::Error {
                full.warnings.push(
                    Diagnostic::warning(
                        Code::RewriteFailed,
                        format!(
                            "`{}`: reading only what its tables gained (etl's `narrowed read`) failed: {why}",
                            build.dag.node(index).name
                        ),
                    )
                    .with_note("the test ran again in full: its result is the full test's"),
                );
            }
            full
        }
        r => r,
    }
}

/// The test's SQL and config, without the data: what must not have changed
/// for a test to read only what its model gained.
pub fn definition(build: &Build, index: NodeIndex) -> String {
    let node = build.dag.node(index);
    let sql = compile_with(&build.dag, index, &build.models, &build.rendered_now(index)).sql;
    let whole = serde_json::json!({"sql": sql, "config": node.config.raw()});
    use md5::Digest;
    md5::Md5::digest(whole.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs the test, reading what `narrowed` (see `added_rows`) says in place
/// of the tables it stands for.
async fn run_test_reading(build: &Build, index: NodeIndex, narrowed: Option<Narrowed>) -> NodeResult {
    let started = Instant::now();
    let node = build.dag.node(index);
    let outcome = test(build, index, narrowed).await;
    let elapsed = started.elapsed().as_secs_f64();
    match outcome {
        Ok(outcome) => NodeResult {
            unique_id: node.unique_id.clone(),
            name: node.name.clone(),
            resource_type: node.resource_type,
            materialized: node.materialized,
            status: outcome.status,
            execution_time: elapsed,
            rows_affected: None,
            failures: Some(outcome.failures),
            tested_rows: outcome.tested_rows,
            up_to_date: false,
            message: outcome.message,
            location: outcome.location,
            relation: node.relation.sql(),
            version: None,
            phases: Phases::default(),
            diagnostic: None,
            warnings: Vec::new(),
        },
        Err(diag) => NodeResult::error(node, super::probe::name_the_file(build, index, diag).await, elapsed),
    }
}

async fn test(build: &Build, index: NodeIndex, narrowed: Option<Narrowed>) -> Result<TestOutcome, Diagnostic> {
    let node = build.dag.node(index);
    let test = node.test(&build.project);
    let rendered = build.rendered_now(index);
    let config = node
        .config
        .test
        .as_ref()
        .ok_or_else(|| Diagnostic::error(Code::Internal, format!("test `{}` has no test config", test.name)))?;
    let compiled = compile_with(&build.dag, index, &build.models, &rendered);
    build.registry.ensure_parents(&build.dag, &build.project, index).await?;
    let readers = if config.new_files_only {
        let readers = super::ingest::new_file_readers(build, index).await?;
        if readers.is_empty() {
            return Err(Diagnostic::error(
                Code::InvalidTestConfig,
                format!(
                    "test `{}` has `source_files: new` but reads no file source, directly or through ephemeral models",
                    test.name
                ),
            )
            .with_span(test.span.clone()));
        }
        readers
    } else {
        Vec::new()
    };
    let (narrowed, what) = match narrowed {
        Some(n) => (n.readers, Some(n.what)),
        None => (Vec::new(), None),
    };
    let readers: Vec<NewFiles> = readers.into_iter().chain(narrowed).collect();

    let limit = config.limit.map(|n| format!("\nlimit {n}")).unwrap_or_default();
    let failing_sql = format!("{}{limit}", compiled.sql.trim_end().trim_end_matches(';'));
    let count_sql = format!(
        "select {} as failures from (\n{failing_sql}\n) dbt_internal_test",
        config.fail_calc
    );
    let failures = scalar(&build.base_session(index), &count_sql, &readers, &compiled, test).await?;

    let total = if config.warn_if.percent || config.error_if.percent {
        let relation = tested_relation(build, test)
            .ok_or_else(|| Diagnostic::error(Code::Internal, format!("test `{}` has no tested relation", test.name)))?;
        let filter = config
            .filter
            .as_ref()
            .map(|w| format!(" where {w}"))
            .unwrap_or_default();
        let sql = format!("select count(*) from {relation}{filter}");
        Some(scalar(&build.base_session(index), &sql, &readers, &compiled, test).await?)
    } else {
        None
    };

    let location = if config.store_failures {
        Some(store_failures(build, index, &failing_sql, &readers, &compiled, test).await?)
    } else {
        None
    };

    let should_error = config.error_if.crossed(failures, total);
    let should_warn = config.warn_if.crossed(failures, total);
    let status = if config.severity_error && should_error {
        Status::Fail
    } else if should_warn {
        Status::Warn
    } else {
        Status::Pass
    };
    let count = failures.max(0.0).round() as u64;
    let share = total
        .filter(|t| *t > 0.0)
        .map(|t| format!(" ({:.2}% of {} rows)", failures * 100.0 / t, thousands(t as u64)))
        .unwrap_or_default();
    let rows = if count == 1 { "row" } else { "rows" };
    let shown = thousands(count);
    let message = match status {
        Status::Pass if count == 0 => "no failing rows".to_owned(),
        Status::Pass => format!(
            "{shown} failing {rows}{share}, within `warn_if {}`",
            threshold_text(&config.warn_if)
        ),
        Status::Warn => format!(
            "{shown} failing {rows}{share}, over `warn_if {}`",
            threshold_text(&config.warn_if)
        ),
        _ => format!(
            "{shown} failing {rows}{share}, over `error_if {}`",
            threshold_text(&config.error_if)
        ),
    };
    let message = if config.new_files_only {
        let files: usize = readers.iter().map(|r| r.files).sum();
        format!(
            "{message}; read the {files} new file{} only",
            if files == 1 { "" } else { "s" }
        )
    } else {
        message
    };
    let message = match what {
        Some(what) => format!("{message}; read only {what}"),
        None => message,
    };
    Ok(TestOutcome {
        status,
        failures: count,
        tested_rows: total.map(|t| t.max(0.0).round() as u64),
        message,
        location,
    })
}

fn threshold_text(t: &Threshold) -> String {
    format!("{}{}{}", t.op, t.value, if t.percent { "%" } else { "" })
}

/// The SQL of the relation a generic test is attached to: its table, or
/// for an ephemeral model, its compiled query as a subquery.
fn tested_relation(build: &Build, test: &DataTest) -> Option<String> {
    let name = match test.target()? {
        TestTarget::Model(n) | TestTarget::Seed(n) => n.clone(),
        TestTarget::Source(s, t) => format!("{s}.{t}"),
    };
    let index = build.dag.find(&name)?;
    let node = build.dag.node(index);
    if node.materialized == crate::graph::Materialization::Ephemeral {
        let compiled = crate::plan::compile(&build.dag, index, &build.models);
        return Some(format!("(\n{}\n) as {}", compiled.sql.trim_end(), node.relation.sql()));
    }
    Some(node.relation.sql())
}

/// The logical plan of a test's query, reading `readers` in place of
/// their sources.
async fn test_plan(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    readers: &[NewFiles],
    compiled: &CompiledSql,
    test: &DataTest,
) -> Result<LogicalPlan, Diagnostic> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let mut plan = crate::plan::plan_sql(&ctx.state(), sql)
        .await
        .and_then(|plan| options.verify_plan(&plan).map(|()| plan))
        .map_err(|e| test_sql_error(&e, compiled, test))?;
    for reader in readers {
        plan = if reader.keys.is_empty() {
            replace_scans(plan, &reader.source, reader.provider.clone())
        } else {
            semi_join_scans(plan, &reader.source, &reader.keys, reader.provider.clone())
        }
        .map_err(|e| test_sql_error(&e, compiled, test))?;
    }
    Ok(plan)
}

/// Runs `sql`, which returns one row with one number.
async fn scalar(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    readers: &[NewFiles],
    compiled: &CompiledSql,
    test: &DataTest,
) -> Result<f64, Diagnostic> {
    let plan = test_plan(ctx, sql, readers, compiled, test).await?;
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| test_sql_error(&e, compiled, test))?;
    let batches = df.collect().await.map_err(|e| test_sql_error(&e, compiled, test))?;
    let Some(column) = batches.iter().find(|b| b.num_rows() > 0).map(|b| b.column(0).clone()) else {
        return Ok(0.0);
    };
    if column.is_null(0) {
        return Ok(0.0);
    }
    let as_float = datafusion::arrow::compute::cast(&column, &DataType::Float64).map_err(|e| {
        Diagnostic::error(
            Code::Test,
            format!("test `{}`: `fail_calc` is not a number: {e}", test.name),
        )
        .with_span(test.span.clone())
    })?;
    Ok(as_float.as_primitive::<Float64Type>().value(0))
}

/// A SQL error in a test: generic tests point at their YAML entry (their
/// SQL comes from a macro), singular tests at their file.
fn test_sql_error(err: &datafusion::error::DataFusionError, compiled: &CompiledSql, test: &DataTest) -> Diagnostic {
    let mut diag = sql_diagnostic(err, compiled).with_cause(crate::diagnostic::Cause::of(err));
    diag.message = format!("test `{}`: {}", test.name, diag.message);
    if test.is_generic() {
        diag.span = test.span.clone();
        diag = diag.with_note(format!("compiled SQL:\n{}", compiled.sql.trim()));
    }
    diag
}

/// Writes the failing rows to the test's audit table; returns its URL.
async fn store_failures(
    build: &Build,
    index: NodeIndex,
    failing_sql: &str,
    readers: &[NewFiles],
    compiled: &CompiledSql,
    test: &DataTest,
) -> Result<String, Diagnostic> {
    let node = build.dag.node(index);
    let ctx = &build.base_session(index);
    let plan = test_plan(ctx, failing_sql, readers, compiled, test).await?;
    let location = build.registry.location(&node.relation);
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "etl".into(),
        serde_json::json!({"unique_id": node.unique_id, "invocation_id": build.options.invocation_id}),
    );
    lake::overwrite_table(ctx, &location, plan, metadata)
        .await
        .map_err(|e| {
            Diagnostic::error(
                Code::Lake,
                format!("storing the failures of `{}` failed: {e}", test.name),
            )
            .with_span(test.span.clone().or_else(|| Some(Span::file(&test.path))))
        })?;
    Ok(location.to_string())
}
