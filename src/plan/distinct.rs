//! One optimizer rule: a plain `count` beside a `count(distinct x)` becomes
//! a `sum`, and a `FILTER (WHERE p)` on the aggregates beside it becomes a
//! `CASE` in their argument, so that DataFusion's own single-distinct
//! rewrite applies.
//!
//! DataFusion runs `count(distinct x)` as one hash set of `x` per group. A
//! set cannot spill, so `count(distinct customer_id)` over tens of millions
//! of customers fails under `--memory-limit` however the pool is shared.
//! DataFusion's `SingleDistinctToGroupBy` turns such an aggregate into two
//! plain group-bys (by the groups and `x`, then by the groups), which spill
//! like any other, but only when every other aggregate is a sum, min or
//! max. A cohort report nearly always has a `count(*)` beside its distinct
//! count, which kept the rewrite off. A count is the sum of ones over the
//! counted rows, with 0 instead of NULL for no rows, so this rule writes it
//! that way and lets DataFusion's rule do the rest. A filtered aggregate
//! (`count(*) filter (where page_type = 'product')`, which also kept the
//! rewrite off) reads its argument only where the filter holds: `sum(x)
//! filter (where p)` is `sum(case when p then x end)`, and the same for
//! `min` and `max`; a filtered count sums `case when p then 1 else 0 end`.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{Aggregate, LogicalPlan, Projection, when};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::prelude::{Expr, lit};

/// The name of DataFusion's rule this one must run before.
pub(crate) const SINGLE_DISTINCT_RULE: &str = "single_distinct_aggregation_to_group_by";

#[derive(Debug, Default)]
pub(crate) struct CountBesideDistinct;

/// The rule's name, in DataFusion's list of rules and in etl's warnings.
pub(crate) const COUNT_BESIDE_DISTINCT_RULE: &str = "count_beside_distinct_to_sum";

impl OptimizerRule for CountBesideDistinct {
    fn name(&self) -> &str {
        COUNT_BESIDE_DISTINCT_RULE
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        if !applies(&aggregate) {
            return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
        }
        let Aggregate {
            input,
            group_expr,
            aggr_expr,
            schema,
            ..
        } = aggregate;
        let groups = group_expr.len();
        let mut counts = Vec::new();
        let original_aggr_expr = aggr_expr.clone();
        let aggr_expr = aggr_expr
            .into_iter()
            .enumerate()
            .map(|(i, expr)| {
                // The simplifier may have named an aggregate (a filter's
                // literal cast): DataFusion's rule takes only unnamed ones,
                // and the projection above gives back every name.
                let expr = match expr {
                    Expr::Alias(alias) => *alias.expr,
                    expr => expr,
                };
                match expr {
                    Expr::AggregateFunction(function) if is_count(&function) => {
                        counts.push(groups + i);
                        count_as_sum(function)
                    }
                    Expr::AggregateFunction(function) if function.params.filter.is_some() => {
                        Ok(filter_in_argument(function))
                    }
                    other => Ok(other),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut names = std::collections::HashSet::new();
        if !aggr_expr.iter().all(|e| names.insert(e.schema_name().to_string())) {
            // Two aggregates that only their names told apart: left as they were.
            let original = Aggregate::try_new_with_schema(input, group_expr, original_aggr_expr, schema)?;
            return Ok(Transformed::no(LogicalPlan::Aggregate(original)));
        }
        let rewritten = Aggregate::try_new(input, group_expr, aggr_expr)?;
        // Above it, the columns the original aggregate had, under its names:
        // a summed count is 0 where the sum of no rows is NULL.
        let columns = rewritten
            .schema
            .iter()
            .zip(schema.iter())
            .enumerate()
            .map(|(i, ((qualifier, field), (old_qualifier, old_field)))| {
                let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                let value = if counts.contains(&i) {
                    coalesce(vec![column, lit(0i64)])
                } else {
                    column
                };
                value.alias_qualified(old_qualifier.cloned(), old_field.name())
            })
            .collect();
        let projection = Projection::try_new(columns, Arc::new(LogicalPlan::Aggregate(rewritten)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// Whether `aggregate` has one distinct argument (unfiltered), at least one
/// count or filtered aggregate beside it, and otherwise only what
/// DataFusion's single-distinct rewrite takes.
fn applies(aggregate: &Aggregate) -> bool {
    if matches!(aggregate.group_expr.first(), Some(Expr::GroupingSet(_))) {
        return false;
    }
    let mut distinct_args = Vec::new();
    let mut rewritten = 0;
    for expr in &aggregate.aggr_expr {
        let expr = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            expr => expr,
        };
        let Expr::AggregateFunction(function) = expr else {
            return false;
        };
        let params = &function.params;
        if !params.order_by.is_empty() {
            return false;
        }
        if params.distinct {
            if params.filter.is_some() {
                return false;
            }
            for arg in &params.args {
                if !distinct_args.contains(arg) {
                    distinct_args.push(arg.clone());
                }
            }
        } else if is_count(function) {
            rewritten += 1;
        } else if !matches!(function.func.name().to_lowercase().as_str(), "sum" | "min" | "max") {
            return false;
        } else if params.filter.is_some() {
            rewritten += 1;
        }
    }
    distinct_args.len() == 1 && rewritten > 0
}

/// A count that is not distinct, filtered or not.
fn is_count(function: &AggregateFunction) -> bool {
    function.func.name() == "count" && !function.params.distinct && function.params.order_by.is_empty()
}

/// `count(a, b)` as `sum(case when a is not null and b is not null then 1
/// else 0 end)`; `count(*)` (a count of a literal) as `sum(1)`; with
/// `FILTER (WHERE p)`, `p` joins the condition (a NULL `p` counts 0, as
/// the filter drops the row).
fn count_as_sum(function: AggregateFunction) -> Result<Expr> {
    let AggregateFunctionParams {
        args,
        null_treatment,
        filter,
        ..
    } = function.params;
    let counted = filter
        .map(|filter| *filter)
        .into_iter()
        .chain(
            args.into_iter()
                .filter(|arg| !matches!(arg, Expr::Literal(value, _) if !value.is_null()))
                .map(|arg| arg.is_not_null()),
        )
        .reduce(Expr::and);
    let one = match counted {
        None => lit(1i64),
        Some(condition) => when(condition, lit(1i64)).otherwise(lit(0i64))?,
    };
    Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
        sum_udaf(),
        vec![one],
        false,
        None,
        vec![],
        null_treatment,
    )))
}

/// `sum(x) filter (where p)` as `sum(case when p then x end)` (and the
/// same for `min` and `max`): a row the filter drops gives NULL, which
/// they skip, and no row left gives NULL either way.
fn filter_in_argument(function: AggregateFunction) -> Expr {
    let AggregateFunctionParams {
        args,
        null_treatment,
        filter,
        ..
    } = function.params;
    let args = match filter {
        Some(filter) => args
            .into_iter()
            .map(|arg| {
                Expr::Case(datafusion::logical_expr::Case::new(
                    None,
                    vec![(filter.clone(), Box::new(arg))],
                    None,
                ))
            })
            .collect(),
        None => args,
    };
    Expr::AggregateFunction(AggregateFunction::new_udf(
        function.func,
        args,
        false,
        None,
        vec![],
        null_treatment,
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use crate::plan::{SessionOptions, new_session};

    async fn session() -> SessionContext {
        let ctx = new_session(&SessionOptions::default()).unwrap();
        ctx.sql(
            "create table t (g varchar, x int, y int) as values \
             ('a', 1, 10), ('a', 1, null), ('a', 2, 30), ('a', null, 40), ('b', 3, null)",
        )
        .await
        .unwrap();
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> String {
        let df = ctx.sql(sql).await.unwrap();
        df.into_optimized_plan().unwrap().display_indent().to_string()
    }

    #[tokio::test]
    async fn counts_beside_a_distinct_count_give_the_same_rows_without_a_distinct_set() {
        let ctx = session().await;
        let sql = "select g, count(distinct x) as xs, count(*) as n, count(y) as ys, count(x, y) as both, \
                   sum(y) as total from t group by g order by g";
        let plan = plan(&ctx, sql).await;
        assert!(!plan.contains("DISTINCT"), "the distinct count is still a set:\n{plan}");
        assert_eq!(
            rows(&ctx, sql).await,
            "+---+----+---+----+------+-------+\n\
             | g | xs | n | ys | both | total |\n\
             +---+----+---+----+------+-------+\n\
             | a | 2  | 4 | 3  | 2    | 80    |\n\
             | b | 1  | 1 | 0  | 0    |       |\n\
             +---+----+---+----+------+-------+"
        );
    }

    #[tokio::test]
    async fn filtered_aggregates_beside_a_distinct_count_give_the_same_rows_without_a_distinct_set() {
        let ctx = session().await;
        let sql = "select g, count(distinct x) as xs, count(*) filter (where y > 15) as big, \
                   count(y) filter (where x = 1) as ys1, sum(y) filter (where x is not null) as s, \
                   min(y) filter (where x = 2) as lo, max(y) filter (where x > 5) as hi \
                   from t group by g order by g";
        let plan = plan(&ctx, sql).await;
        assert!(!plan.contains("DISTINCT"), "the distinct count is still a set:\n{plan}");
        assert!(!plan.contains("FILTER"), "a filter is left:\n{plan}");
        assert_eq!(
            rows(&ctx, sql).await,
            "+---+----+-----+-----+----+----+----+\n\
             | g | xs | big | ys1 | s  | lo | hi |\n\
             +---+----+-----+-----+----+----+----+\n\
             | a | 2  | 2   | 1   | 40 | 30 |    |\n\
             | b | 1  | 0   | 0   |    |    |    |\n\
             +---+----+-----+-----+----+----+----+"
        );
    }

    #[tokio::test]
    async fn a_filtered_distinct_count_is_left_as_it_is() {
        let ctx = session().await;
        let sql = "select g, count(distinct x) filter (where y > 15) as xs, count(*) as n from t group by g order by g";
        assert!(plan(&ctx, sql).await.contains("count(DISTINCT t.x) FILTER"));
        assert_eq!(
            rows(&ctx, sql).await,
            "+---+----+---+\n| g | xs | n |\n+---+----+---+\n| a | 1  | 4 |\n| b | 0  | 1 |\n+---+----+---+"
        );
    }

    #[tokio::test]
    async fn a_count_over_no_rows_is_zero_not_null() {
        let ctx = session().await;
        let sql = "select count(distinct x) as xs, count(*) as n from t where g = 'none'";
        assert_eq!(
            rows(&ctx, sql).await,
            "+----+---+\n| xs | n |\n+----+---+\n| 0  | 0 |\n+----+---+"
        );
        let schema = ctx.sql(sql).await.unwrap().schema().as_arrow().clone();
        assert!(!schema.field_with_name("n").unwrap().is_nullable());
    }

    #[tokio::test]
    async fn an_aggregate_it_cannot_split_is_left_as_it_is() {
        let ctx = session().await;
        let sql = "select g, count(distinct x) as xs, count(*) as n, avg(y) as mean from t group by g order by g";
        assert!(plan(&ctx, sql).await.contains("count(DISTINCT t.x)"));
        assert_eq!(
            rows(&ctx, sql).await,
            "+---+----+---+--------------------+\n\
             | g | xs | n | mean               |\n\
             +---+----+---+--------------------+\n\
             | a | 2  | 4 | 26.666666666666668 |\n\
             | b | 1  | 1 |                    |\n\
             +---+----+---+--------------------+"
        );
    }
}
