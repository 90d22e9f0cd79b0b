//! One optimizer rule: a plain `count` beside a `count(distinct x)` becomes
//! a `sum`, so that DataFusion's own single-distinct rewrite applies.
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
//! that way and lets DataFusion's rule do the rest.

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
        let aggr_expr = aggr_expr
            .into_iter()
            .enumerate()
            .map(|(i, expr)| match expr {
                Expr::AggregateFunction(function) if is_plain_count(&function) => {
                    counts.push(groups + i);
                    count_as_sum(function)
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>>>()?;
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

/// Whether `aggregate` has one distinct argument, at least one plain count,
/// and otherwise only what DataFusion's single-distinct rewrite takes.
fn applies(aggregate: &Aggregate) -> bool {
    if matches!(aggregate.group_expr.first(), Some(Expr::GroupingSet(_))) {
        return false;
    }
    let mut distinct_args = Vec::new();
    let mut plain_counts = 0;
    for expr in &aggregate.aggr_expr {
        let Expr::AggregateFunction(function) = expr else {
            return false;
        };
        let params = &function.params;
        if params.filter.is_some() || !params.order_by.is_empty() {
            return false;
        }
        if params.distinct {
            for arg in &params.args {
                if !distinct_args.contains(arg) {
                    distinct_args.push(arg.clone());
                }
            }
        } else if is_plain_count(function) {
            plain_counts += 1;
        } else if !matches!(function.func.name().to_lowercase().as_str(), "sum" | "min" | "max") {
            return false;
        }
    }
    distinct_args.len() == 1 && plain_counts > 0
}

fn is_plain_count(function: &AggregateFunction) -> bool {
    function.func.name() == "count"
        && !function.params.distinct
        && function.params.filter.is_none()
        && function.params.order_by.is_empty()
}

/// `count(a, b)` as `sum(case when a is not null and b is not null then 1
/// else 0 end)`; `count(*)` (a count of a literal) as `sum(1)`.
fn count_as_sum(function: AggregateFunction) -> Result<Expr> {
    let AggregateFunctionParams {
        args, null_treatment, ..
    } = function.params;
    let counted = args
        .into_iter()
        .filter(|arg| !matches!(arg, Expr::Literal(value, _) if !value.is_null()))
        .map(|arg| arg.is_not_null())
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
