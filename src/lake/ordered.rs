//! Writing a model's rows in the order its `ORDER BY` gives. delta-rs plans
//! its writer above the model's plan, and DataFusion's optimizer then drops
//! the sort: nothing above it asks for the order (and a round-robin
//! repartition for the writers would scatter it anyway). So a sorted model
//! is planned on its own, where the sort is the root and stays, and handed
//! to delta-rs as a leaf the writer's optimizer cannot see into. The data
//! files then hold consecutive runs of the sort keys, and their min/max
//! statistics let merges and filters on those keys skip most of them.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, TableType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::SessionContext;

/// Whether `plan` ends with an ORDER BY (under its select list's
/// projection), without a LIMIT.
pub fn ends_sorted(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(sort) => sort.fetch.is_none(),
        LogicalPlan::Projection(p) => ends_sorted(&p.input),
        LogicalPlan::SubqueryAlias(a) => ends_sorted(&a.input),
        _ => false,
    }
}

/// `plan` planned now, in `ctx`, and wrapped as a table whose one scan
/// runs it: a logical plan that reads it keeps its order.
pub async fn planned(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan> {
    let physical = ctx.state().create_physical_plan(&plan).await?;
    let table = Arc::new(Planned {
        leaf: Arc::new(Leaf::new(physical)),
    });
    datafusion::logical_expr::LogicalPlanBuilder::scan(
        "sorted_model",
        datafusion::datasource::provider_as_source(table),
        None,
    )?
    .build()
}

#[derive(Debug)]
struct Planned {
    leaf: Arc<Leaf>,
}

#[async_trait]
impl TableProvider for Planned {
    fn schema(&self) -> SchemaRef {
        self.leaf.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let leaf: Arc<dyn ExecutionPlan> = self.leaf.clone();
        match projection {
            Some(columns)
                if columns.len() != self.schema().fields().len()
                    || columns.iter().enumerate().any(|(i, c)| i != *c) =>
            {
                let schema = self.schema();
                let exprs: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> = columns
                    .iter()
                    .map(|&i| {
                        let name = schema.field(i).name().clone();
                        let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
                            Arc::new(datafusion::physical_expr::expressions::Column::new(&name, i));
                        (column, name)
                    })
                    .collect();
                Ok(Arc::new(ProjectionExec::try_new(exprs, leaf)?))
            }
            _ => Ok(leaf),
        }
    }
}

/// `plan`, already optimized, as a leaf of a plan optimized later: that
/// optimizer's rules see no children to rewrite (DataFusion's rules fail
/// on a join they have already planned dynamic filters for).
pub fn leaf(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    Arc::new(Leaf::new(plan))
}

/// A planned plan as a leaf: optimizer rules see no children to rewrite.
#[derive(Debug)]
struct Leaf {
    inner: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl Leaf {
    fn new(inner: Arc<dyn ExecutionPlan>) -> Leaf {
        let properties = inner.properties().clone();
        Leaf { inner, properties }
    }
}

impl DisplayAs for Leaf {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PlannedLeaf: {}", self.inner.name())
    }
}

impl ExecutionPlan for Leaf {
    fn name(&self) -> &str {
        "PlannedLeaf"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // Its expressions belong to the planned plan, out of reach.
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }
}
