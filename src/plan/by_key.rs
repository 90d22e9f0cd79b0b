//! Whether a query's rows each come from the rows of one key value: a
//! reconciliation test that joins orders to the sum of their lines on
//! `order_id` finds a failing order from that order's rows alone. When
//! such a test passed with no failing row and its tables since changed
//! only the rows of some keys, only those keys' rows can fail now, and
//! the test reads them alone (see `materialize::added_rows`).
//!
//! The check walks the optimized logical plan and tracks, for every
//! operator, which of its output columns hold the key of the rows each
//! output row came from. Scans of the tables hold it in the key column;
//! filters, projections and sorts keep it; a group by, a window's
//! partition or a join's equality must include it; a global aggregate, a
//! limit, a cross join, a null-aware `not in`, a subquery left in an
//! expression, a volatile function or anything not listed here ends it.
//! A `None` is only ever a missed chance: the test then reads everything.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, TableReference};
use datafusion::logical_expr::{Distinct, Expr, JoinType, LogicalPlan, Volatility};

/// The first of `candidates` (column names) by which `plan` is keyed, as
/// [`keyed_by`] judges it.
pub fn key_of<'a>(
    plan: &LogicalPlan,
    candidates: impl IntoIterator<Item = &'a str>,
    reads: &dyn Fn(&TableReference) -> bool,
) -> Option<String> {
    candidates
        .into_iter()
        .find(|key| keyed_by(plan, key, reads))
        .map(str::to_owned)
}

/// Whether every output row of `plan` comes from the rows sharing one
/// value of column `key` in the tables `reads` accepts (the only tables
/// it may scan): its rows for a key are the same whatever the rows of the
/// other keys are.
pub fn keyed_by(plan: &LogicalPlan, key: &str, reads: &dyn Fn(&TableReference) -> bool) -> bool {
    key_columns(plan, key, reads).is_some()
}

/// The output columns of `plan` that hold the key of the rows each output
/// row came from; `None` when an output row can come from several keys'
/// rows, or when no output column holds its key.
fn key_columns(plan: &LogicalPlan, key: &str, reads: &dyn Fn(&TableReference) -> bool) -> Option<Vec<usize>> {
    if !plan.expressions().iter().all(row_local) {
        return None;
    }
    let columns = match plan {
        LogicalPlan::TableScan(scan) => {
            if !reads(&scan.table_name) || scan.fetch.is_some() {
                return None;
            }
            vec![
                scan.projected_schema
                    .index_of_column_by_name(Some(&scan.table_name), key)?,
            ]
        }
        LogicalPlan::Filter(filter) => key_columns(&filter.input, key, reads)?,
        LogicalPlan::SubqueryAlias(alias) => key_columns(&alias.input, key, reads)?,
        LogicalPlan::Repartition(repartition) => key_columns(&repartition.input, key, reads)?,
        LogicalPlan::Distinct(Distinct::All(input)) => key_columns(input, key, reads)?,
        LogicalPlan::Sort(sort) if sort.fetch.is_none() => key_columns(&sort.input, key, reads)?,
        LogicalPlan::Projection(projection) => {
            let held = key_columns(&projection.input, key, reads)?;
            passed_through(&projection.expr, projection.input.schema(), &held)
        }
        LogicalPlan::Aggregate(aggregate) => {
            let held = key_columns(&aggregate.input, key, reads)?;
            passed_through(&aggregate.group_expr, aggregate.input.schema(), &held)
        }
        LogicalPlan::Window(window) => {
            let held = key_columns(&window.input, key, reads)?;
            let schema = window.input.schema();
            let partitioned = window
                .window_expr
                .iter()
                .all(|e| match e.clone().unalias_nested().data {
                    Expr::WindowFunction(f) => !passed_through(&f.params.partition_by, schema, &held).is_empty(),
                    _ => false,
                });
            if !partitioned {
                return None;
            }
            held
        }
        LogicalPlan::Join(join) => {
            let left = key_columns(&join.left, key, reads)?;
            let right = key_columns(&join.right, key, reads)?;
            let on_key = join
                .on
                .iter()
                .any(|(l, r)| held_at(l, join.left.schema(), &left) && held_at(r, join.right.schema(), &right));
            // A null-aware `not in` returns nothing when the other side has
            // a null anywhere: its rows depend on every key's rows.
            if !on_key || join.null_aware {
                return None;
            }
            let width = join.left.schema().fields().len();
            let shifted = right.iter().map(|i| i + width);
            match join.join_type {
                JoinType::Inner => left.iter().copied().chain(shifted).collect(),
                // The other side's columns are null where nothing matched.
                JoinType::Left => left,
                JoinType::Right => shifted.collect(),
                JoinType::LeftSemi | JoinType::LeftAnti => left,
                JoinType::RightSemi | JoinType::RightAnti => right,
                // A full join's key is either side's; a mark join's mark is
                // null when the other side has a null anywhere.
                JoinType::Full | JoinType::LeftMark | JoinType::RightMark => return None,
            }
        }
        LogicalPlan::Union(union) => {
            let mut inputs = union.inputs.iter();
            let mut common = key_columns(inputs.next()?, key, reads)?;
            for input in inputs {
                let held = key_columns(input, key, reads)?;
                common.retain(|i| held.contains(i));
            }
            common
        }
        _ => return None,
    };
    (!columns.is_empty()).then_some(columns)
}

/// The positions in `exprs` that are (possibly renamed) key columns of an
/// input with `schema`.
fn passed_through(exprs: &[Expr], schema: &DFSchema, held: &[usize]) -> Vec<usize> {
    exprs
        .iter()
        .enumerate()
        .filter(|(_, e)| held_at(e, schema, held))
        .map(|(i, _)| i)
        .collect()
}

/// Whether `expr` is one of the `held` columns of an input with `schema`.
fn held_at(expr: &Expr, schema: &DFSchema, held: &[usize]) -> bool {
    let mut expr = expr;
    while let Expr::Alias(alias) = expr {
        expr = &alias.expr;
    }
    let Expr::Column(column) = expr else {
        return false;
    };
    index_of(schema, column).is_some_and(|i| held.contains(&i))
}

fn index_of(schema: &DFSchema, column: &Column) -> Option<usize> {
    schema.index_of_column_by_name(column.relation.as_ref(), &column.name)
}

/// Whether `plan` gives the same rows from the same data on any day: it
/// calls only immutable functions, in its subqueries too (`now()`,
/// `current_date` and `today()` are stable, `random()` volatile). Judge the
/// plan before optimization, which folds `now()` into a literal.
pub fn same_every_run(plan: &LogicalPlan) -> bool {
    let mut same = true;
    let _ = plan.apply_with_subqueries(|node| {
        same = node.expressions().iter().all(immutable);
        Ok(if same {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    same
}

fn immutable(expr: &Expr) -> bool {
    !expr
        .exists(|e| {
            Ok(match e {
                Expr::ScalarFunction(f) => f.func.signature().volatility != Volatility::Immutable,
                Expr::AggregateFunction(f) => f.func.signature().volatility != Volatility::Immutable,
                Expr::ScalarVariable(..) | Expr::Placeholder(_) => true,
                _ => false,
            })
        })
        .unwrap_or(false)
}

/// An expression computed from its row alone, the same on every run.
fn row_local(expr: &Expr) -> bool {
    !expr.is_volatile()
        && !expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::OuterReferenceColumn(..)
                        | Expr::SetComparison(..)
                ))
            })
            .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// The optimized plan of `sql` over `orders(order_id, customer_id,
    /// total)` and `lines(order_id, customer_id, revenue)`.
    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        for (name, value) in [("orders", "total"), ("lines", "revenue")] {
            let schema = Arc::new(Schema::new(vec![
                Field::new("order_id", DataType::Int64, true),
                Field::new("customer_id", DataType::Int64, true),
                Field::new(value, DataType::Float64, true),
            ]));
            let table = MemTable::try_new(schema, vec![vec![]]).unwrap();
            ctx.register_table(name, Arc::new(table)).unwrap();
        }
        let plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
        ctx.state().optimize(&plan).unwrap()
    }

    async fn key(sql: &str) -> Option<String> {
        let plan = plan(sql).await;
        key_of(&plan, ["customer_id", "order_id"], &|t| {
            ["orders", "lines"].contains(&t.table())
        })
    }

    const RECONCILE: &str = "with items as (select order_id, sum(revenue) as items_total from lines group by order_id) \
         select o.order_id, o.total, i.items_total from orders o left join items i on i.order_id = o.order_id \
         where round(o.total, 2) is distinct from round(i.items_total, 2)";

    #[tokio::test]
    async fn a_reconciliation_joined_and_grouped_on_its_key_is_keyed_by_it() {
        assert_eq!(key(RECONCILE).await.as_deref(), Some("order_id"));
    }

    #[tokio::test]
    async fn row_tests_windows_and_unions_keep_the_key() {
        assert_eq!(
            key("select * from orders where total < 0").await.as_deref(),
            Some("customer_id")
        );
        assert_eq!(
            key("select order_id as id from orders where total < 0")
                .await
                .as_deref(),
            Some("order_id")
        );
        assert_eq!(
            key("select * from (select order_id, row_number() over (partition by order_id order by total) as n from orders) where n > 1")
                .await
                .as_deref(),
            Some("order_id")
        );
        assert_eq!(
            key("select order_id from orders except select order_id from lines")
                .await
                .as_deref(),
            Some("order_id")
        );
        assert_eq!(
            key("select customer_id, total from orders union all select customer_id, revenue from lines")
                .await
                .as_deref(),
            Some("customer_id")
        );
    }

    #[tokio::test]
    async fn rows_made_from_several_orders_are_not_keyed_by_order() {
        for sql in [
            // A global aggregate: one row from every key.
            "select sum(total) from orders having sum(total) < 0",
            // Joined on the customer: an order's row depends on other orders'.
            "select o.order_id from orders o join lines l on l.customer_id = o.customer_id where o.total > l.revenue",
            // A window over everything.
            "select * from (select order_id, rank() over (order by total) as r from orders) where r = 1",
            // The top rows: which they are depends on every row.
            "select * from orders order by total desc limit 3",
            // A subquery over the whole table.
            "select * from orders where total > (select avg(total) from orders)",
            // `not in` is empty when the list holds a null anywhere.
            "select * from orders where order_id not in (select order_id from lines)",
            // Not the same on every run.
            "select * from orders where total > random()",
            // Keys from different columns in one output column.
            "select order_id from orders union all select customer_id from lines",
        ] {
            let plan = plan(sql).await;
            assert!(!keyed_by(&plan, "order_id", &|_| true), "{sql}");
        }
    }

    #[tokio::test]
    async fn a_plan_calling_the_clock_or_chance_is_not_the_same_every_run() {
        let unoptimized = |sql: &'static str| async move {
            let ctx = SessionContext::new();
            ctx.sql(sql).await.unwrap().into_unoptimized_plan()
        };
        assert!(same_every_run(
            &unoptimized("select to_date('2024-01-02') > date '2024-01-01'").await
        ));
        for sql in [
            "select current_date > date '2024-01-01'",
            "select today() > date '2024-01-01'",
            "select now () > timestamp '2024-01-01 00:00:00'",
            "select random() > 0.5",
            "select 1 where exists (select 1 where now() > timestamp '2024-01-01 00:00:00')",
        ] {
            assert!(!same_every_run(&unoptimized(sql).await), "{sql}");
        }
    }

    #[tokio::test]
    async fn a_table_it_may_not_read_ends_the_key() {
        let plan = plan(RECONCILE).await;
        assert!(!keyed_by(&plan, "order_id", &|t| t.table() == "orders"));
        assert!(keyed_by(&plan, "order_id", &|_| true));
    }
}
