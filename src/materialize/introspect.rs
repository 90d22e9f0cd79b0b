//! Nodes whose templates ask the lake (`run_query`, `statement`,
//! `adapter.get_columns_in_relation`, or just `execute`) render again as
//! they run, once their parents are built: the lake answers them here,
//! through the build's session, as hooks run their SQL.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::prelude::SessionContext;
use minijinja::Value;
use petgraph::graph::NodeIndex;

use super::{Build, hooks};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::{Materialization, ResourceType};
use crate::lake::{self, Relation};
use crate::render::{LakeColumn, LakeTable, RenderedModel, RunNode, Warehouse};

/// The lake as a running node's templates see it.
pub struct LakeWarehouse {
    build: Arc<Build>,
    session: SessionContext,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for LakeWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeWarehouse").finish_non_exhaustive()
    }
}

impl LakeWarehouse {
    pub fn new(build: Arc<Build>, session: SessionContext) -> LakeWarehouse {
        LakeWarehouse {
            build,
            session,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    async fn provider(
        &self,
        relation: &Relation,
    ) -> Result<Option<Arc<dyn datafusion::catalog::TableProvider>>, String> {
        let build = &self.build;
        let ctx = &build.registry.ctx;
        // Registered already: a parent, or a node this build wrote.
        let reference = TableReference::partial(relation.schema.as_str(), relation.identifier.as_str());
        if let Ok(provider) = ctx.table_provider(reference.clone()).await {
            return Ok(Some(provider));
        }
        // A source or a view of the project: made readable as its readers
        // make it. A table is read as it is now, without registering it:
        // it may be building beside this node, and registers its own.
        let node = build.dag.graph.node_indices().find(|&i| {
            let node = build.dag.node(i);
            (node.resource_type == ResourceType::Source || node.materialized == Materialization::View)
                && node.relation.schema == relation.schema
                && node.relation.identifier == relation.identifier
        });
        if let Some(index) = node {
            return match build.registry.ensure(&build.dag, &build.project, index).await {
                Ok(()) => ctx.table_provider(reference).await.map(Some).map_err(|e| e.to_string()),
                Err(diag) if diag.code == Code::NotBuilt => Ok(None),
                Err(diag) => Err(diag.message),
            };
        }
        // A table another tool wrote in the lake.
        let url = build.registry.location(relation);
        match lake::delta_provider(ctx, &url).await {
            Ok(provider) => Ok(Some(provider)),
            Err(lake::LakeError::NoTable(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Warehouse for LakeWarehouse {
    fn query(&self, sql: &str) -> Result<LakeTable, String> {
        let build = &self.build;
        let rows = self.runtime.block_on(hooks::run_statements(
            build,
            &self.session,
            sql,
            &build.project.target.schema,
            None,
        ))?;
        Ok(match rows {
            Some((schema, batches)) => table(&schema, &batches)?,
            None => LakeTable::default(),
        })
    }

    fn graph(&self) -> Value {
        // Converted once per build: a loop over `graph.nodes` on a large
        // project reads it for every node.
        let build = &self.build;
        build
            .graph_value
            .get_or_init(|| Value::from(minijinja::value::Serde(&*build.graph)))
            .clone()
    }

    fn columns(&self, relation: &Relation) -> Result<Option<Vec<LakeColumn>>, String> {
        let provider = self.runtime.block_on(self.provider(relation))?;
        Ok(provider.map(|p| columns(&p.schema())))
    }
}

/// The lake for templates rendered while `build` runs, queried in
/// `session`. They must render outside the runtime's pool
/// (`tokio::task::block_in_place`).
pub fn lake_warehouse(build: &Arc<Build>, session: &SessionContext) -> Arc<dyn Warehouse> {
    Arc::new(LakeWarehouse::new(build.clone(), session.clone()))
}

/// A query written as a model is (`ref()`, `source()`, `var()`, with
/// `execute` true), rendered and planned over the relations it names,
/// each made readable from the lake: `etl show --inline`, and the figures
/// of a notification's summary. Renders outside the runtime's pool.
pub async fn plan_inline(build: &Arc<Build>, text: &str) -> Result<datafusion::logical_expr::LogicalPlan, Diagnostic> {
    let ctx = &build.registry.ctx;
    let lake = lake_warehouse(build, ctx);
    let run = build.run_render.clone();
    let rendered = tokio::task::block_in_place(|| crate::render::render_inline(&build.project, &run, text, lake))?;
    let dag = &build.dag;
    let named = rendered
        .refs
        .iter()
        .map(|r| r.name.clone())
        .chain(rendered.sources.iter().map(|(s, t)| format!("{s}.{t}")));
    for name in named {
        let Some(index) = dag.find(&name) else {
            return Err(Diagnostic::error(
                Code::UnknownRef,
                format!("`{name}` is not a node of this project"),
            ));
        };
        if dag.node(index).materialized == Materialization::Ephemeral {
            return Err(Diagnostic::error(
                Code::Unsupported,
                format!("`{name}` is ephemeral: `etl show {name}` shows it; an inline query cannot read it yet"),
            ));
        }
        build.registry.ensure(dag, &build.project, index).await?;
    }
    crate::plan::plan_sql(&ctx.state(), &rendered.sql)
        .await
        .map_err(|e| Diagnostic::error(Code::Sql, format!("the inline query: {}", e.find_root())))
}

/// Renders the node at `index` again when its templates ask the lake;
/// what it rendered is then the node's SQL and hooks for this build.
pub async fn render_if_asking(
    build: &Arc<Build>,
    index: NodeIndex,
    session: &SessionContext,
) -> Result<(), Diagnostic> {
    let node = build.dag.node(index);
    let (which, parsed) = match node.resource_type {
        ResourceType::Model => match node.defined_index() {
            Some(i) => (RunNode::Model(i), &build.models[i]),
            None => return Ok(()),
        },
        ResourceType::Test => match node.defined_index() {
            Some(i) => (RunNode::Test(i), &build.tests[i]),
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    // Once per build: a node run again (after an engine error, or out of
    // memory) keeps what it rendered, and its queries do not run twice.
    let rendered_already = build
        .run_rendered
        .lock()
        .expect("run renders poisoned")
        .contains_key(&index);
    if !parsed.introspects || rendered_already {
        return Ok(());
    }
    if node.materialized == Materialization::Ephemeral {
        return Err(Diagnostic::error(
            Code::Unsupported,
            format!(
                "ephemeral model `{}` reads `execute` or asks the lake (`run_query`, `adapter.get_columns_in_relation`, \
                 ...): etl inlines ephemeral models as they were parsed",
                node.name
            ),
        )
        .with_span(Some(Span::file(&node.path)))
        .with_help("materialize it as a view or a table"));
    }
    build.registry.ensure_parents(&build.dag, &build.project, index).await?;
    // `{{ this }}`, as an incremental model reads it (`select max(ts) from
    // this`): readable if it exists.
    if node.resource_type == ResourceType::Model {
        match build.registry.ensure(&build.dag, &build.project, index).await {
            Ok(()) => {}
            Err(diag) if diag.code == Code::NotBuilt => {}
            Err(diag) => return Err(diag),
        }
    }
    if tokio::runtime::Handle::current().runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(Diagnostic::error(
            Code::Internal,
            "rendering a node as it runs needs tokio's multi-thread runtime",
        ));
    }
    let lake = lake_warehouse(build, session);
    // The templates call the lake synchronously: this worker leaves the
    // runtime's pool while they render.
    let rendered = tokio::task::block_in_place(|| {
        crate::render::render_at_run(&build.project, &build.run_render, which, parsed, lake)
    })
    .map_err(|mut diag| {
        diag.notes
            .push(format!("while rendering `{}` as it runs (`execute` true)", node.name));
        diag
    })?;
    build
        .run_rendered
        .lock()
        .expect("run renders poisoned")
        .insert(index, Arc::new(rendered));
    Ok(())
}

impl Build {
    /// The node's SQL and hooks for this build: rendered as it ran if its
    /// templates ask the lake, else as parsed.
    pub fn rendered_now(&self, index: NodeIndex) -> RenderedNow<'_> {
        match self.run_rendered.lock().expect("run renders poisoned").get(&index) {
            Some(rendered) => RenderedNow::AtRun(rendered.clone()),
            None => RenderedNow::Parsed(self.dag.node(index).rendered(&self.models, &self.tests)),
        }
    }
}

/// See [`Build::rendered_now`].
pub enum RenderedNow<'a> {
    Parsed(&'a RenderedModel),
    AtRun(Arc<RenderedModel>),
}

impl std::ops::Deref for RenderedNow<'_> {
    type Target = RenderedModel;

    fn deref(&self) -> &RenderedModel {
        match self {
            RenderedNow::Parsed(r) => r,
            RenderedNow::AtRun(r) => r,
        }
    }
}

fn columns(schema: &Schema) -> Vec<LakeColumn> {
    schema
        .fields()
        .iter()
        .map(|f| LakeColumn {
            name: f.name().clone(),
            data_type: sql_type(f.data_type()),
        })
        .collect()
}

/// A column type as dbt-duckdb names it.
pub fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => format!("{}[]", sql_type(f.data_type())),
        DataType::Dictionary(_, value) => sql_type(value),
        other => other.to_string().to_uppercase(),
    }
}

/// The rows of a query as templates see them: numbers, strings, booleans,
/// `none`; dates and timestamps as their ISO text.
fn table(schema: &Schema, batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Result<LakeTable, String> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| cell(column.as_ref(), row))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(values);
        }
    }
    Ok(LakeTable {
        columns: columns(schema),
        rows,
    })
}

fn cell(column: &dyn Array, row: usize) -> Result<Value, String> {
    let scalar = ScalarValue::try_from_array(column, row).map_err(|e| e.to_string())?;
    if scalar.is_null() {
        return Ok(Value::from(()));
    }
    Ok(match scalar {
        ScalarValue::Boolean(Some(b)) => Value::from(b),
        ScalarValue::Int8(Some(v)) => Value::from(v),
        ScalarValue::Int16(Some(v)) => Value::from(v),
        ScalarValue::Int32(Some(v)) => Value::from(v),
        ScalarValue::Int64(Some(v)) => Value::from(v),
        ScalarValue::UInt8(Some(v)) => Value::from(v),
        ScalarValue::UInt16(Some(v)) => Value::from(v),
        ScalarValue::UInt32(Some(v)) => Value::from(v),
        ScalarValue::UInt64(Some(v)) => Value::from(v),
        ScalarValue::Float32(Some(v)) => Value::from(f64::from(v)),
        ScalarValue::Float64(Some(v)) => Value::from(v),
        ScalarValue::Decimal128(Some(v), _, 0) => Value::from(v),
        // A number while a double holds it exactly, else its exact text.
        ScalarValue::Decimal128(Some(v), _, s) if v.unsigned_abs() < 1 << 53 => {
            Value::from(v as f64 / 10f64.powi(i32::from(s)))
        }
        ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v)) | ScalarValue::Utf8View(Some(v)) => Value::from(v),
        other => Value::from(other.to_string()),
    })
}
