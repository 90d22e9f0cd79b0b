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
use datafusion::logical_expr::{Filter, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{Expr, col, lit};

use crate::render::Relation;

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
            let joined = LogicalPlanBuilder::from(LogicalPlan::TableScan(scan))
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
