//! Rewrites of a planned model that change what it reads, not what its SQL
//! says: the scans of a relation pointed at another provider (the files an
//! incremental model has not consumed yet), or narrowed to a time window
//! (one batch of a microbatch model). Working on the plan rather than the
//! SQL text reaches the scans of inlined ephemeral models too.

use std::sync::Arc;

use chrono::NaiveDateTime;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, NullEquality, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::logical_expr::expr_fn::scalar_subquery;
use datafusion::logical_expr::{Filter, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{Expr, col, lit};

use crate::lake::Relation;

fn scans(name: &TableReference, relation: &Relation) -> bool {
    name.table() == relation.identifier && name.schema() == Some(relation.schema.as_str())
}

/// `plan` with every scan of `relation` reading `provider` instead, which
/// must have the same schema.
pub fn replace_scans(
    plan: LogicalPlan,
    relation: &Relation,
    provider: Arc<dyn TableProvider>,
) -> Result<LogicalPlan, DataFusionError> {
    let source = provider_as_source(provider);
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::TableScan(mut scan) if scans(&scan.table_name, relation) => {
            scan.source = source.clone();
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// `plan` with every scan (of a ref, a source, `this`, in subqueries too)
/// reading no rows: dbt's `--empty`, which checks a model's SQL and the
/// schema it writes without its data.
pub fn without_rows(plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
    plan.transform_up_with_subqueries(|node| match node {
        scan @ LogicalPlan::TableScan(_) => {
            let limited = LogicalPlanBuilder::from(scan).limit(0, Some(0))?.build()?;
            Ok(Transformed::yes(limited))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// `plan` with every scan of `relation` keeping only the rows that share
/// `keys` (nulls equal) with a row of `other`, which has those columns: a
/// semi join, planned with the rest of the query.
pub fn semi_join_scans(
    plan: LogicalPlan,
    relation: &Relation,
    keys: &[String],
    other: Arc<dyn TableProvider>,
) -> Result<LogicalPlan, DataFusionError> {
    let source = provider_as_source(other);
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::TableScan(scan) if scans(&scan.table_name, relation) => {
            let alias = TableReference::bare("__etl_keys");
            let own: Vec<Column> = keys
                .iter()
                .map(|k| Column::new(Some(scan.table_name.clone()), k.as_str()))
                .collect();
            let theirs: Vec<Column> = keys
                .iter()
                .map(|k| Column::new(Some(alias.clone()), k.as_str()))
                .collect();
            let keys_plan = LogicalPlanBuilder::scan(alias.clone(), source.clone(), None)?
                .project(theirs.iter().cloned().map(Expr::Column))?
                .distinct()?
                .build()?;
            // A join's own filter reaches the scan only as a per-partition
            // hash test, which file statistics cannot prune by; the keys'
            // range, as scalar subqueries, skips every file outside it.
            let mut bound: Option<Expr> = None;
            for (own, theirs) in own.iter().zip(&theirs) {
                let extreme = |f: fn(Expr) -> Expr| -> Result<Expr, DataFusionError> {
                    let plan = LogicalPlanBuilder::scan(alias.clone(), source.clone(), None)?
                        .aggregate(Vec::<Expr>::new(), vec![f(Expr::Column(theirs.clone()))])?
                        .build()?;
                    Ok(scalar_subquery(Arc::new(plan)))
                };
                let key = Expr::Column(own.clone());
                let within = key
                    .clone()
                    .is_null()
                    .or(key.clone().gt_eq(extreme(min)?).and(key.lt_eq(extreme(max)?)));
                bound = Some(match bound {
                    None => within,
                    Some(b) => b.and(within),
                });
            }
            let mut scanned = LogicalPlanBuilder::from(LogicalPlan::TableScan(scan));
            if let Some(bound) = bound {
                scanned = scanned.filter(bound)?;
            }
            let joined = scanned
                .join_detailed(
                    keys_plan,
                    JoinType::LeftSemi,
                    (own, theirs),
                    None,
                    NullEquality::NullEqualsNull,
                )?
                .build()?;
            Ok(Transformed::yes(joined))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// A half-open time window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

/// `plan` with every scan of `relation` keeping only the rows whose
/// `column` falls in `window`.
pub fn filter_scans(
    plan: LogicalPlan,
    relation: &Relation,
    column: &str,
    window: Window,
) -> Result<LogicalPlan, DataFusionError> {
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::TableScan(scan) if scans(&scan.table_name, relation) => {
            let field = scan
                .projected_schema
                .qualified_field_with_unqualified_name(column)
                .map_err(|_| {
                    DataFusionError::Plan(format!(
                        "its event_time column `{column}` is not a column of {}",
                        relation.sql()
                    ))
                })?
                .1
                .clone();
            let target = col(Column::new(Some(scan.table_name.clone()), column));
            let predicate = window_predicate(target, field.data_type(), window)?;
            let filter = Filter::try_new(predicate, Arc::new(LogicalPlan::TableScan(scan)))?;
            Ok(Transformed::yes(LogicalPlan::Filter(filter)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// `target >= start AND target < end`, with the bounds typed as the
/// column is so that file statistics can prune.
pub fn window_predicate(target: Expr, data_type: &DataType, window: Window) -> Result<Expr, DataFusionError> {
    let bound = |t: NaiveDateTime| -> Result<Expr, DataFusionError> {
        let utc = t.and_utc();
        Ok(match data_type {
            DataType::Timestamp(unit, tz) => lit(match unit {
                TimeUnit::Second => ScalarValue::TimestampSecond(Some(utc.timestamp()), tz.clone()),
                TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(utc.timestamp_millis()), tz.clone()),
                TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(utc.timestamp_micros()), tz.clone()),
                TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(utc.timestamp_nanos_opt(), tz.clone()),
            }),
            DataType::Date32 => {
                let days = t
                    .date()
                    .signed_duration_since(chrono::DateTime::UNIX_EPOCH.date_naive())
                    .num_days();
                lit(ScalarValue::Date32(Some(days as i32)))
            }
            DataType::Date64 => lit(ScalarValue::Date64(Some(utc.timestamp_millis()))),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                return Err(DataFusionError::Plan(
                    "an event_time column must be a date or a timestamp, not a string: cast it in the model".into(),
                ));
            }
            other => {
                return Err(DataFusionError::Plan(format!(
                    "an event_time column must be a date or a timestamp, not {other}"
                )));
            }
        })
    };
    // A date column holds whole days: a window inside one day has none.
    if matches!(data_type, DataType::Date32 | DataType::Date64)
        && (window.start.time() != chrono::NaiveTime::MIN || window.end.time() != chrono::NaiveTime::MIN)
    {
        return Err(DataFusionError::Plan(
            "a date event_time cannot be cut into hourly batches: use a timestamp, or `batch_size: day`".into(),
        ));
    }
    Ok(target
        .clone()
        .gt_eq(bound(window.start)?)
        .and(target.lt(bound(window.end)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
    use datafusion::prelude::ParquetReadOptions;

    use crate::plan::{SessionOptions, new_session};

    fn ids(values: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
    }

    /// Rows the Parquet scans of `plan` produced.
    fn parquet_rows(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let own = if displayable(plan.as_ref()).one_line().to_string().contains(".parquet") {
            plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0)
        } else {
            0
        };
        own + plan.children().into_iter().map(parquet_rows).sum::<usize>()
    }

    #[tokio::test]
    async fn a_semi_join_on_keys_skips_the_files_outside_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = new_session(&SessionOptions::default()).unwrap();
        // Two files in key order: 1..=100, then 101..=200 and a null key.
        let files = [
            ("a", (1..=100).map(Some).collect::<Vec<_>>()),
            ("b", (101..=200).map(Some).chain([None]).collect()),
        ];
        for (name, values) in files {
            let path = dir.path().join(format!("{name}.parquet"));
            ctx.read_batch(ids(values))
                .unwrap()
                .write_parquet(path.to_str().unwrap(), DataFrameWriteOptions::new(), None)
                .await
                .unwrap();
        }
        ctx.sql("create schema silver").await.unwrap();
        let table = format!("{}/", dir.path().display());
        ctx.register_parquet("silver.t", &table, ParquetReadOptions::default())
            .await
            .unwrap();
        let gained = ids(vec![Some(150), None]);
        let keys = Arc::new(MemTable::try_new(gained.schema(), vec![vec![gained]]).unwrap());
        let relation = Relation {
            schema: "silver".into(),
            identifier: "t".into(),
            ephemeral: false,
        };

        let plan = ctx
            .sql("select id from silver.t order by id nulls first")
            .await
            .unwrap()
            .into_unoptimized_plan();
        let plan = semi_join_scans(plan, &relation, &["id".to_string()], keys).unwrap();
        let physical = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = collect(physical.clone(), ctx.task_ctx()).await.unwrap();

        // The rows sharing a key, the null one included (nulls are equal).
        let found: Vec<Option<i64>> = batches
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                (0..a.len())
                    .map(|i| a.is_valid(i).then(|| a.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(found, vec![None, Some(150)]);
        // Only the second file was read: the first's ids lie below the
        // gained keys and it has no null.
        assert_eq!(parquet_rows(&physical), 101);
    }
}
