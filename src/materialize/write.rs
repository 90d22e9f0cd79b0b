//! Writing a node's table: the commit that carries etl's metadata and the
//! version the node started from, making what was written the relation's
//! data for the nodes after it, and the errors writes end in.

use petgraph::graph::NodeIndex;
use serde_json::{Map, Value};

use super::fingerprint::Stored;
use super::{Build, NodeRun};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::Node;
use crate::lake::{self, Written};

/// What the node's write commits beside its rows: etl's metadata, the
/// version of its table the node started from, and an application
/// transaction naming the model (`etl/<unique_id>`, numbered by the
/// version it writes), so that another build's commit of the same model
/// since this one read the table refuses it (see `lake::Expected`).
pub(super) fn commit_of(build: &Build, run: &NodeRun) -> lake::Commit {
    let index = run.index;
    let node = build.dag.node(index);
    let expected_version = build
        .expected
        .lock()
        .expect("expected versions poisoned")
        .get(&index)
        .copied()
        .unwrap_or_default();
    let writes = match expected_version {
        lake::Expected::Version(v) => v + 1,
        _ => 0,
    };
    let loaded = build.loaded.lock().expect("loaded tables poisoned").remove(&index);
    lake::Commit {
        expected_version,
        app_transaction: Some((format!("etl/{}", node.unique_id), writes)),
        loaded,
        ..lake::Commit::from(commit_metadata(build, run))
    }
}

/// The version of its table a node's commit will expect to follow, and
/// the table as loaded at it, if it was.
pub(super) fn expect_version(build: &Build, index: NodeIndex, stored: &mut Stored) {
    build
        .expected
        .lock()
        .expect("expected versions poisoned")
        .insert(index, stored.version);
    let mut loaded = build.loaded.lock().expect("loaded tables poisoned");
    match stored.table.take() {
        Some(table) => loaded.insert(index, table),
        None => loaded.remove(&index),
    };
}

/// etl's metadata in a node's commit: which node and build wrote it, how,
/// and the fingerprint it was built with.
pub(super) fn commit_metadata(build: &Build, run: &NodeRun) -> Map<String, Value> {
    let node = build.dag.node(run.index);
    let mut etl = Map::new();
    etl.insert("unique_id".into(), Value::from(node.unique_id.clone()));
    etl.insert("invocation_id".into(), Value::from(build.options.invocation_id.clone()));
    // A table written under `--empty` is not a base to build on: the next
    // build builds it in full (an incremental model's watermark would
    // otherwise be nothing, and its history lost).
    let materialized = if build.options.empty {
        "empty"
    } else {
        node.materialized.as_str()
    };
    etl.insert("materialized".into(), Value::from(materialized));
    if let Some(fp) = &run.fingerprint {
        etl.insert("fingerprint".into(), Value::from(fp.clone()));
    }
    let mut map = Map::new();
    map.insert("etl".into(), Value::Object(etl));
    map
}

pub(super) fn lake_error(node: &Node, what: &str, err: impl std::fmt::Display) -> Diagnostic {
    Diagnostic::error(Code::Lake, format!("{what} `{}` failed: {err}", node.name))
        .with_span(Some(Span::file(&node.path)))
}

pub(super) async fn write_and_register(
    build: &Build,
    run: &NodeRun,
    plan: datafusion::logical_expr::LogicalPlan,
    layout: &lake::Layout,
) -> Result<Written, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let registry = &build.registry;
    let location = registry.location(&node.relation);
    let how = lake::TableWrite::Overwrite {
        partition_by: Vec::new(),
    };
    let (written, table) = lake::write_table_kept(&run.session, &location, plan, how, layout, commit_of(build, run))
        .await
        .map_err(|e| execution_error(node, e))?;
    // Read from the snapshot the commit left, not from its log again.
    let provider = lake::provider_of(&registry.ctx, &table)
        .await
        .map_err(|e| lake_error(node, "reading back", e))?;
    register(build, index, provider).await?;
    Ok(written)
}

/// Makes the table just written the relation's current data.
pub(super) async fn register_written(build: &Build, index: NodeIndex) -> Result<(), Diagnostic> {
    let node = build.dag.node(index);
    let location = build.registry.location(&node.relation);
    let provider = lake::delta_provider(&build.registry.ctx, &location)
        .await
        .map_err(|e| lake_error(node, "reading back", e))?;
    register(build, index, provider).await
}

/// Makes `provider`, the node's table, the relation's current data (and
/// no view of the same name any more).
async fn register(
    build: &Build,
    index: NodeIndex,
    provider: std::sync::Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<(), Diagnostic> {
    let node = build.dag.node(index);
    let registry = &build.registry;
    lake::remove_view(&registry.ctx, &registry.location(&node.relation))
        .await
        .map_err(|e| lake_error(node, "cleaning the old view of", e))?;
    registry
        .register(index, &node.relation, provider)
        .map_err(|e| lake_error(node, "registering", e))
}

/// Errors while executing a plan: DataFusion's message, on the model file.
pub(super) fn execution_error(node: &Node, err: deltalake::DeltaTableError) -> Diagnostic {
    let text = lake::describe_error(&err);
    Diagnostic::error(Code::Execution, format!("building `{}` failed: {text}", node.name))
        .with_span(Some(Span::file(&node.path)))
        .with_note("the table keeps its previous version")
        .with_cause(lake::cause_of(&err))
}
