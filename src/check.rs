//! The static check `etl compile` runs: every selected model planned with
//! DataFusion against the schemas of its inputs, reading no data. Sources
//! give their schema from their files (one file's header or footer), seeds
//! from the lake or their CSV header and `column_types`, models from their
//! own planned output (so a change is checked against its parents'
//! changes), tables not planned here from their Delta schema. The engine
//! that checks is the engine that runs: a model that plans here fails at
//! run time only for a reason its data decides.
//!
//! Every model that does not plan is reported, each at its template's
//! line and column; a model whose input does not plan is not checked (its
//! input's error says why).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::empty::EmptyTable;
use datafusion::prelude::SessionContext;
use petgraph::graph::NodeIndex;

use crate::Prepared;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::{Materialization, ResourceType};
use crate::plan::lineage::{self, Lineage, Tables};
use crate::plan::{Registry, compile, plan_model, register_csv_file};

/// What the check found: the models that do not plan, and how many it
/// planned.
#[derive(Debug, Default)]
pub struct Checked {
    pub errors: Vec<Diagnostic>,
    pub planned: usize,
    /// Selected models not checked, each with why: they read the lake as
    /// they render (`execute`), or an input that cannot be read or planned.
    pub skipped: Vec<String>,
    /// The column lineage of each model planned.
    pub lineage: HashMap<NodeIndex, Lineage>,
}

/// Plans the models of `selection` (and the models they read) in `ctx`.
pub async fn check(prepared: &Prepared, selection: &[NodeIndex], ctx: SessionContext) -> Checked {
    let dag = &prepared.dag;
    let project = &prepared.project;
    let registry = Registry::new(ctx, project.target.lake.clone());
    // The selection and everything it reads.
    let selected: HashSet<NodeIndex> = selection.iter().copied().collect();
    let mut needed: BTreeSet<NodeIndex> = BTreeSet::new();
    for &i in selection {
        let node = dag.node(i);
        if matches!(node.resource_type, ResourceType::Model | ResourceType::Snapshot) {
            needed.insert(i);
            needed.extend(dag.ancestors(i));
        }
    }
    let mut out = Checked::default();
    let tables = Arc::new(tables(dag));
    // Each node that could not be planned or read, with why, for what
    // reads it.
    let mut failed: HashMap<NodeIndex, String> = HashMap::new();
    // Layers of the DAG: the models of one are planned at once, on every
    // core (planning is most of the check), once the layer before is
    // registered.
    let mut depth: HashMap<NodeIndex, usize> = HashMap::new();
    let mut layers: BTreeMap<usize, Vec<NodeIndex>> = BTreeMap::new();
    for &i in dag.order.iter().filter(|i| needed.contains(i)) {
        let d = dag.parents(i).filter_map(|p| depth.get(&p)).max().map_or(0, |d| d + 1);
        depth.insert(i, d);
        layers.entry(d).or_default().push(i);
    }
    for layer in layers.into_values() {
        let mut to_plan = Vec::new();
        for i in layer {
            let node = dag.node(i);
            if let Some(why) = dag.parents(i).find_map(|p| failed.get(&p).cloned()) {
                if selected.contains(&i) && matches!(node.resource_type, ResourceType::Model | ResourceType::Snapshot) {
                    out.skipped.push(format!("`{}` ({why})", node.name));
                }
                failed.insert(i, why);
                continue;
            }
            let result = match node.resource_type {
                // A source that is the lake's table a seed or model writes
                // is read with that node's columns.
                ResourceType::Source => match dag.parents(i).next() {
                    Some(writer) => same_columns(&registry, dag, writer, i).await,
                    None => registry.ensure(dag, project, i).await,
                },
                ResourceType::Seed => seed(&registry, prepared, i).await,
                ResourceType::Model | ResourceType::Snapshot => {
                    let rendered = node.rendered(&prepared.rendered.models, &[]);
                    if rendered.introspects {
                        // Rendered as parsed (`execute` false): its SQL is
                        // known when it runs. Its dependents read it from
                        // the lake.
                        let why = format!("`{}` renders as it runs", node.name);
                        if selected.contains(&i) {
                            out.skipped
                                .push(format!("`{}` (it reads the lake as it renders)", node.name));
                        }
                        // Not in the lake yet: what reads it is not checked.
                        if node.materialized == Materialization::Ephemeral
                            || registry.ensure(dag, project, i).await.is_err()
                        {
                            failed.insert(i, why);
                        }
                        continue;
                    }
                    let compiled = compile(dag, i, &prepared.rendered.models);
                    let ctx = registry.ctx.clone();
                    let tables = tables.clone();
                    let planning = tokio::spawn(async move {
                        plan_model(&ctx, &compiled)
                            .await
                            .map(|plan| (plan.schema().as_arrow().clone(), lineage::of_plan(&plan, &tables)))
                    });
                    to_plan.push((i, planning));
                    continue;
                }
                _ => continue,
            };
            if result.is_err() {
                // An input the check cannot read (a source's files not
                // there) is the build's to report: what reads it is not
                // checked, and says why.
                let what = match node.resource_type {
                    ResourceType::Source => format!("source `{}`", node.fqn[1..].join(".")),
                    kind => format!("{} `{}`", kind.as_str(), node.name),
                };
                failed.insert(i, format!("{what} cannot be read: `etl build` says why"));
            }
        }
        for (i, planning) in to_plan {
            let node = dag.node(i);
            let planned = match planning.await {
                Ok(planned) => planned,
                Err(e) => Err(Diagnostic::error(
                    Code::Internal,
                    format!("planning `{}` stopped: {e}", node.name),
                )),
            };
            let registered = planned.and_then(|(schema, lineage)| {
                out.planned += 1;
                out.lineage.insert(i, lineage);
                if node.materialized == Materialization::Ephemeral {
                    return Ok(());
                }
                let schema = output_schema(node, &schema);
                registry
                    .register(i, &node.relation, Arc::new(EmptyTable::new(schema)))
                    .map_err(|e| Diagnostic::error(Code::Register, e))
            });
            // A model's SQL is the check's to report.
            if let Err(diag) = registered {
                failed.insert(i, format!("`{}` does not plan", node.name));
                out.errors.push(diag);
            }
        }
    }
    out
}

/// The node each table a plan scans is: the lake's tables and the
/// sources' (a source that is a node's table is that node).
fn tables(dag: &crate::graph::Dag) -> Tables {
    let mut tables = Tables::new();
    for &i in &dag.order {
        let node = dag.node(i);
        if node.materialized == Materialization::Ephemeral {
            tables.insert((String::new(), format!("__dbt__cte__{}", node.relation.identifier)), i);
            continue;
        }
        let kept = match node.resource_type {
            ResourceType::Model => true,
            ResourceType::Seed | ResourceType::Snapshot => true,
            ResourceType::Source => dag.parents(i).next().is_none(),
            _ => false,
        };
        if kept {
            let key = (
                node.relation.schema.to_lowercase(),
                node.relation.identifier.to_lowercase(),
            );
            tables.entry(key).or_insert(i);
        }
    }
    tables
}

/// Registers `reader`'s relation with the columns of `writer`'s.
async fn same_columns(
    registry: &Registry,
    dag: &crate::graph::Dag,
    writer: NodeIndex,
    reader: NodeIndex,
) -> Result<(), Diagnostic> {
    let relation = &dag.node(writer).relation;
    let df = registry
        .ctx
        .table(datafusion::common::TableReference::partial(
            relation.schema.as_str(),
            relation.identifier.as_str(),
        ))
        .await
        .map_err(|e| Diagnostic::error(Code::Register, e.find_root().to_string()))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let node = dag.node(reader);
    if node.relation == *relation {
        return Ok(());
    }
    registry
        .register(reader, &node.relation, Arc::new(EmptyTable::new(schema)))
        .map_err(|e| Diagnostic::error(Code::Register, e))
}

/// What dependents read of a node: its planned columns, and a snapshot's
/// own after them.
fn output_schema(node: &crate::graph::Node, planned: &Schema) -> SchemaRef {
    let Some(settings) = node.config.snapshot.as_ref() else {
        return Arc::new(planned.clone());
    };
    let time = match &settings.strategy {
        crate::config::SnapshotStrategy::Timestamp { updated_at }
        | crate::config::SnapshotStrategy::Check {
            updated_at: Some(updated_at),
            ..
        } => planned
            .field_with_name(updated_at)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Timestamp(TimeUnit::Microsecond, None)),
        _ => DataType::Timestamp(TimeUnit::Microsecond, None),
    };
    let c = &settings.columns;
    let mut fields: Vec<Field> = planned.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(&c.scd_id, DataType::Utf8, true));
    for name in [&c.updated_at, &c.valid_from, &c.valid_to] {
        fields.push(Field::new(name, time.clone(), true));
    }
    if settings.hard_deletes == crate::config::HardDeletes::NewRecord {
        fields.push(Field::new(&c.is_deleted, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// A seed's columns: its table's in the lake, else its CSV's header with
/// its `column_types`.
async fn seed(registry: &Registry, prepared: &Prepared, index: NodeIndex) -> Result<(), Diagnostic> {
    let (dag, project) = (&prepared.dag, &prepared.project);
    if registry.ensure(dag, project, index).await.is_ok() {
        return Ok(());
    }
    let node = dag.node(index);
    let seed = node.seed(project);
    let temp = format!("__etl_check_seed_{}", node.name);
    let ctx = &registry.ctx;
    register_csv_file(ctx, &temp, &project.root.join(&seed.path), Span::file(&seed.path)).await?;
    let failed = |e: datafusion::error::DataFusionError| {
        Diagnostic::error(Code::Seed, format!("seed `{}`: {}", node.name, e.find_root()))
            .with_span(Some(Span::file(&seed.path)))
    };
    let df = ctx.table(temp.as_str()).await.map_err(failed)?;
    let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    let sql = crate::plan::seed_select(&columns, &node.config.column_types, &temp);
    let plan = ctx.sql(&sql).await.map_err(failed)?.into_unoptimized_plan();
    let _ = ctx.deregister_table(temp.as_str());
    let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    registry
        .register(index, &node.relation, Arc::new(EmptyTable::new(schema)))
        .map_err(|e| Diagnostic::error(Code::Register, e))
}
