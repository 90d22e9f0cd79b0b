//! Write-audit-publish (`audit: true`): a model's new data is written to a
//! staging table, its tests run against what the table would become, and
//! only if none fails is it committed. A failed audit leaves the published
//! version as it was, for a full rebuild and for an incremental change
//! alike.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DFResult;
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use petgraph::graph::NodeIndex;
use url::Url;

use super::data_tests::added_rows::Increment;
use super::write::{commit_metadata, execution_error, lake_error};
use super::{Build, NodeRun};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::ResourceType;
use crate::lake::{self, Written};

/// Whether the model publishes only audited data.
pub fn audits(build: &Build, index: NodeIndex) -> bool {
    let node = build.dag.node(index);
    node.config.audit
}

/// A model's new data, written to its staging table.
pub struct Staged {
    pub location: Url,
    pub provider: Arc<dyn TableProvider>,
}

impl Staged {
    /// Reads the staged rows.
    pub fn plan(&self, build: &Build) -> Result<LogicalPlan, Diagnostic> {
        let node_error = |e: datafusion::error::DataFusionError| Diagnostic::error(Code::Lake, e.to_string());
        Ok(build
            .registry
            .ctx
            .read_table(self.provider.clone())
            .map_err(node_error)?
            .into_unoptimized_plan())
    }

    pub async fn remove(self, build: &Build) {
        let _ = lake::remove_prefix(&build.registry.ctx, &self.location).await;
    }
}

/// Writes the result of `plan` to the model's staging table (replacing
/// whatever a killed build left there).
pub async fn stage(build: &Build, run: &NodeRun, plan: LogicalPlan) -> Result<Staged, Diagnostic> {
    let node = build.dag.node(run.index);
    let registry = &build.registry;
    let ctx = &run.session;
    let location = lake::staging_location(&registry.lake, &node.relation);
    lake::remove_prefix(ctx, &location)
        .await
        .map_err(|e| lake_error(node, "clearing the staging table of", e))?;
    lake::overwrite_table(ctx, &location, plan, commit_metadata(build, run))
        .await
        .map_err(|e| execution_error(node, e))?;
    let provider = lake::delta_provider(ctx, &location)
        .await
        .map_err(|e| lake_error(node, "reading the staged data of", e))?;
    Ok(Staged { location, provider })
}

/// What the table would become, as `plan` computes it: a table whose
/// scans a test's reads can point elsewhere. (A view would be inlined into
/// each test's plan, its scans of the published and staged tables no
/// longer scans of the model's relation.) Its plan is optimized on its
/// own and read as a leaf.
pub fn candidate_table(plan: LogicalPlan) -> Arc<dyn TableProvider> {
    Arc::new(Candidate(ViewTable::new(plan, None)))
}

#[derive(Debug)]
struct Candidate(ViewTable);

#[async_trait]
impl TableProvider for Candidate {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let planned = self.0.scan(state, projection, filters, limit).await?;
        Ok(lake::leaf(planned))
    }
}

/// Runs the model's audit tests with its relation reading `candidate`
/// (what the table would become). A test that passed on the published
/// version reads only where `increment` (what an incremental change adds,
/// when it does not rewrite the table) can make it fail. On failure the
/// relation reads the published table again, the staging table is
/// removed, and the error lists the failed tests.
pub async fn audit(
    build: &Build,
    index: NodeIndex,
    candidate: Arc<dyn TableProvider>,
    increment: Option<&Increment>,
    staged: &Staged,
) -> Result<(), Diagnostic> {
    let node = build.dag.node(index);
    let registry = &build.registry;
    registry
        .register(index, &node.relation, candidate)
        .map_err(|e| lake_error(node, "registering", e))?;
    let mut failed = Vec::new();
    let mut cause = None;
    for test in audit_tests(build, index) {
        let parsed = build.dag.node(test).rendered(&build.models, &build.tests);
        if parsed.introspects {
            // It would render again as it runs, and ask the published
            // table, not the candidate it audits.
            return Err(Diagnostic::error(
                Code::Unsupported,
                format!(
                    "test `{}` reads `execute` or asks the lake (`run_query`, `adapter.get_columns_in_relation`, \
                     ...): it cannot audit `{}` before it is published yet",
                    parsed.name, node.name
                ),
            )
            .with_span(Some(Span::file(&parsed.path)))
            .with_help("run it after the model instead: leave `audit` off"));
        }
        if build.without_rewrites(index) {
            // The model runs again without etl's rewrites: so do its tests.
            build.plain.lock().expect("plain nodes poisoned").insert(test);
        }
        let narrowed = match increment {
            Some(_) if build.without_rewrites(index) => None,
            Some(increment) => super::data_tests::added_rows::in_audit(build, test, increment).await,
            None => None,
        };
        let result = super::data_tests::run_narrowed(build, test, narrowed).await;
        if !result.status.lets_dependents_run() {
            cause = cause.or(result.diagnostic.as_ref().and_then(|d| d.cause));
            failed.push(format!(
                "`{}`: {}",
                result.name,
                result.message.lines().next().unwrap_or_default()
            ));
        }
        build
            .audited
            .lock()
            .expect("audit results poisoned")
            .insert(test, result);
    }
    if failed.is_empty() {
        return Ok(());
    }
    // Readers see the published version again, if there is one.
    let location = registry.location(&node.relation);
    registry.unregister(index, &node.relation);
    if let Ok(published) = lake::delta_provider(&registry.ctx, &location).await {
        let _ = registry.register(index, &node.relation, published);
    }
    let _ = lake::remove_prefix(&registry.ctx, &staged.location).await;
    let mut diag = Diagnostic::error(
        Code::Audit,
        format!(
            "`{}` failed its audit: {} test{} failed on the new data",
            node.name,
            failed.len(),
            if failed.len() == 1 { "" } else { "s" }
        ),
    )
    .with_span(Some(Span::file(&node.path)));
    for f in failed {
        diag = diag.with_note(f);
    }
    Err(diag
        .with_note("nothing was published: the table keeps its previous version")
        .with_cause(cause))
}

/// Write-audit-publish of a whole table: staged, audited, then written to
/// the model's table as `how` says, in one commit. The caller registers
/// the published table.
pub async fn audited_write(
    build: &Build,
    run: &NodeRun,
    plan: LogicalPlan,
    how: lake::TableWrite,
    layout: &lake::Layout,
    commit: lake::Commit,
) -> Result<Written, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let staged = stage(build, run, plan).await?;
    audit(build, index, staged.provider.clone(), None, &staged).await?;
    let registry = &build.registry;
    let location = registry.location(&node.relation);
    let written = lake::write_table(&registry.ctx, &location, staged.plan(build)?, how, layout, commit)
        .await
        .map_err(|e| execution_error(node, e))?;
    lake::remove_prefix(&registry.ctx, &staged.location)
        .await
        .map_err(|e| lake_error(node, "removing the staging table of", e))?;
    Ok(written)
}

/// The tests an audit runs: those on the model that read nothing it does
/// not already depend on.
fn audit_tests(build: &Build, index: NodeIndex) -> Vec<NodeIndex> {
    let dag = &build.dag;
    let ancestors = dag.ancestors(index);
    dag.children(index)
        .filter(|&c| dag.node(c).resource_type == ResourceType::Test)
        .filter(|&c| dag.parents(c).all(|p| p == index || ancestors.contains(&p)))
        .collect()
}
