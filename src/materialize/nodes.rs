//! One node's build, per materialization.

use std::time::Instant;

use petgraph::graph::NodeIndex;
use serde_json::{Map, Value};

use super::{Build, NodeResult, Status};
use crate::diagnostic::{Diagnostic, Span};
use crate::graph::{Materialization, Node};
use crate::lake::{self, ViewDefinition, Written};
use crate::plan::{compile, plan_model, register_csv_file};

/// What a successful build produced.
struct Outcome {
    rows: Option<u64>,
    version: Option<i64>,
    message: String,
}

pub async fn build_node(build: &Build, index: NodeIndex) -> NodeResult {
    let started = Instant::now();
    let node = build.dag.node(index);
    let outcome = match node.materialized {
        Materialization::Seed => seed(build, index).await,
        Materialization::Table | Materialization::Incremental => table(build, index).await,
        Materialization::View => view(build, index).await,
        Materialization::Ephemeral => ephemeral(build, index).await,
        Materialization::Test => return super::data_tests::run_test(build, index).await,
        Materialization::External => Ok(Outcome {
            rows: None,
            version: None,
            message: "source".into(),
        }),
    };
    let elapsed = started.elapsed().as_secs_f64();
    match outcome {
        Ok(outcome) => NodeResult {
            unique_id: node.unique_id.clone(),
            name: node.name.clone(),
            resource_type: node.resource_type,
            materialized: node.materialized,
            status: Status::Success,
            execution_time: elapsed,
            rows_affected: outcome.rows,
            failures: None,
            message: outcome.message,
            location: (node.materialized != Materialization::Ephemeral)
                .then(|| build.registry.location(&node.relation).to_string()),
            relation: node.relation.sql(),
            version: outcome.version,
            diagnostic: None,
        },
        Err(diag) => error_result(node, diag, elapsed),
    }
}

pub fn error_result(node: &Node, diag: Diagnostic, elapsed: f64) -> NodeResult {
    NodeResult {
        unique_id: node.unique_id.clone(),
        name: node.name.clone(),
        resource_type: node.resource_type,
        materialized: node.materialized,
        status: Status::Error,
        execution_time: elapsed,
        rows_affected: None,
        failures: None,
        message: diag.to_string(),
        location: None,
        relation: node.relation.sql(),
        version: None,
        diagnostic: Some(diag),
    }
}

fn commit_metadata(build: &Build, node: &Node) -> Map<String, Value> {
    let mut etl = Map::new();
    etl.insert("unique_id".into(), Value::from(node.unique_id.clone()));
    etl.insert("invocation_id".into(), Value::from(build.options.invocation_id.clone()));
    etl.insert("materialized".into(), Value::from(node.materialized.as_str()));
    let mut map = Map::new();
    map.insert("etl".into(), Value::Object(etl));
    map
}

fn lake_error(node: &Node, what: &str, err: impl std::fmt::Display) -> Diagnostic {
    Diagnostic::error("lake", format!("{what} `{}` failed: {err}", node.name)).with_span(Some(Span::file(&node.path)))
}

async fn write_and_register(
    build: &Build,
    index: NodeIndex,
    plan: datafusion::logical_expr::LogicalPlan,
) -> Result<Written, Diagnostic> {
    let node = build.dag.node(index);
    let registry = &build.registry;
    let location = registry.location(&node.relation);
    let written = lake::overwrite_table(&registry.ctx, &location, plan, commit_metadata(build, node))
        .await
        .map_err(|e| execution_error(node, e))?;
    lake::remove_view(&registry.ctx, &location)
        .await
        .map_err(|e| lake_error(node, "cleaning the old view of", e))?;
    let provider = lake::delta_provider(&registry.ctx, &location)
        .await
        .map_err(|e| lake_error(node, "reading back", e))?;
    registry
        .register(index, &node.relation, provider)
        .map_err(|e| lake_error(node, "registering", e))?;
    Ok(written)
}

/// Errors while executing a plan: DataFusion's message, on the model file.
fn execution_error(node: &Node, err: deltalake::DeltaTableError) -> Diagnostic {
    let text = match &err {
        deltalake::DeltaTableError::Arrow { source } => source.to_string(),
        deltalake::DeltaTableError::GenericError { source } => source.to_string(),
        other => other.to_string(),
    };
    Diagnostic::error("execution", format!("building `{}` failed: {text}", node.name))
        .with_span(Some(Span::file(&node.path)))
        .with_note("the table keeps its previous version")
}

async fn seed(build: &Build, index: NodeIndex) -> Result<Outcome, Diagnostic> {
    let node = build.dag.node(index);
    let project = &build.project;
    let seed = &project.seeds[node.index];
    let ctx = &build.registry.ctx;
    let temp = format!("__etl_seed_{}", node.name);
    register_csv_file(ctx, &temp, &project.root.join(&seed.path), Span::file(&seed.path)).await?;
    let result = async {
        let df = ctx
            .table(temp.as_str())
            .await
            .map_err(|e| Diagnostic::error("seed", e.to_string()))?;
        let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let types: Map<String, Value> = match seed.config.get("column_types") {
            Some(Value::Object(map)) => map.clone(),
            Some(_) => {
                return Err(
                    Diagnostic::error("invalid-config", "`column_types` must map column names to SQL types")
                        .with_span(Some(Span::file(&seed.path))),
                );
            }
            None => Map::new(),
        };
        for name in types.keys() {
            if !columns.contains(name) {
                return Err(Diagnostic::error(
                    "unknown-column",
                    format!(
                        "`column_types` names `{name}`, which seed `{}` does not have",
                        node.name
                    ),
                )
                .with_span(Some(Span::file(&seed.path)))
                .with_suggestion(name, columns.iter().map(String::as_str))
                .with_note(format!("its columns: {}", columns.join(", "))));
            }
        }
        let select: Vec<String> = columns
            .iter()
            .map(|c| {
                let q = format!("\"{}\"", c.replace('"', "\"\""));
                match types.get(c).and_then(Value::as_str) {
                    Some(t) => format!("cast({q} as {t}) as {q}"),
                    None => q,
                }
            })
            .collect();
        let sql = format!("select {} from \"{temp}\"", select.join(", "));
        let plan = ctx
            .sql(&sql)
            .await
            .map_err(|e| {
                Diagnostic::error("seed", format!("seed `{}`: {}", node.name, e.find_root()))
                    .with_span(Some(Span::file(&seed.path)))
            })?
            .into_unoptimized_plan();
        write_and_register(build, index, plan).await
    }
    .await;
    let _ = ctx.deregister_table(temp.as_str());
    let written = result?;
    Ok(Outcome {
        rows: Some(written.rows),
        version: Some(written.version),
        message: format!("seed: {} rows", written.rows),
    })
}

async fn planned(
    build: &Build,
    index: NodeIndex,
) -> Result<(datafusion::logical_expr::LogicalPlan, String), Diagnostic> {
    let compiled = compile(&build.dag, index, &build.models);
    build.registry.ensure_parents(&build.dag, &build.project, index).await?;
    let plan = plan_model(&build.registry.ctx, &compiled).await?;
    Ok((plan, compiled.sql))
}

async fn table(build: &Build, index: NodeIndex) -> Result<Outcome, Diagnostic> {
    let node = build.dag.node(index);
    // Checked first: a bad `export` config must not leave a new version.
    let exports = super::export::exports_of(node)?;
    let (plan, _) = planned(build, index).await?;
    let written = write_and_register(build, index, plan).await?;
    let mut message = format!("table: {} rows", written.rows);
    if node.materialized == Materialization::Incremental {
        message.push_str(" (incremental models are rebuilt in full for now)");
    }
    for export in &exports {
        let registry = &build.registry;
        let url = super::export::write_export(&registry.ctx, &registry.lake, &node.relation.sql(), export)
            .await
            .map_err(|e| {
                Diagnostic::error("export", format!("exporting `{}` to `{}` failed: {e}", node.name, export.location))
                    .with_span(Some(Span::file(&node.path)))
                    .with_note(format!("the table itself was written (version {})", written.version))
            })?;
        message.push_str(&format!(", exported to {url}"));
    }
    Ok(Outcome {
        rows: Some(written.rows),
        version: Some(written.version),
        message,
    })
}

async fn view(build: &Build, index: NodeIndex) -> Result<Outcome, Diagnostic> {
    let node = build.dag.node(index);
    let (plan, sql) = planned(build, index).await?;
    let registry = &build.registry;
    let definition = ViewDefinition {
        unique_id: node.unique_id.clone(),
        sql: sql.clone(),
        parents: build
            .dag
            .parents(index)
            .map(|p| build.dag.node(p).unique_id.clone())
            .collect(),
    };
    let location = registry.location(&node.relation);
    lake::write_view(&registry.ctx, &location, &definition)
        .await
        .map_err(|e| lake_error(node, "storing the view", e))?;
    registry
        .register_view(index, &node.relation, plan, sql)
        .map_err(|e| lake_error(node, "registering", e))?;
    Ok(Outcome {
        rows: None,
        version: None,
        message: "view".into(),
    })
}

async fn ephemeral(build: &Build, index: NodeIndex) -> Result<Outcome, Diagnostic> {
    // Nothing is written: planning checks the SQL before dependents inline it.
    planned(build, index).await?;
    Ok(Outcome {
        rows: None,
        version: None,
        message: "ephemeral: checked, inlined into its dependents".into(),
    })
}
