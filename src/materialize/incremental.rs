//! Incremental models: the first build (or `--full-refresh`) writes the
//! whole table; later builds apply the model's new rows with its
//! `incremental_strategy`, each in one Delta commit:
//!
//! - `append`: add the rows;
//! - `merge` (the default with a `unique_key`): update the rows whose key
//!   matches, insert the others (Delta MERGE);
//! - `delete+insert`: replace every row whose key is among the new rows'
//!   keys with the new rows;
//! - `insert_overwrite`: replace the partitions (`partition_by`) the new
//!   rows fall in.
//!
//! `on_schema_change` says what happens when the query's columns differ
//! from the table's: `ignore` (the default: new columns are left out,
//! missing ones written as null), `fail`, or `append_new_columns`.

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{LogicalPlan, cast, lit};
use datafusion::prelude::{DataFrame, Expr, col, concat_ws, in_list};
use serde_json::Value;

use super::Build;
use crate::diagnostic::{Diagnostic, Span};
use crate::graph::{Materialization, Node};
use crate::lake::{self, TableWrite, Written};

/// The incremental models of `prepared` that this run updates in place:
/// their table exists, and the run does not rebuild them in full
/// (`--full-refresh`, unless the model sets `full_refresh: false`).
pub async fn incremental_models(prepared: &crate::Prepared, full_refresh: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let lake = &prepared.project.target.lake;
    for &i in &prepared.dag.order {
        let node = prepared.dag.node(i);
        if node.materialized != Materialization::Incremental {
            continue;
        }
        let refuses = node.config.get("full_refresh").and_then(Value::as_bool) == Some(false);
        if full_refresh && !refuses {
            continue;
        }
        let url = lake::relation_location(lake, &node.relation);
        if matches!(lake::open_table(&url).await, Ok(Some(_))) {
            out.insert(node.name.clone());
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Append,
    Merge,
    DeleteInsert,
    InsertOverwrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnSchemaChange {
    Ignore,
    Fail,
    AppendNewColumns,
}

struct IncrementalConfig {
    strategy: Strategy,
    unique_key: Vec<String>,
    partition_by: Vec<String>,
    on_schema_change: OnSchemaChange,
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        // dbt-spark's spelling: {field: day, data_type: date}.
        Some(Value::Object(map)) => map
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn config_of(node: &Node) -> Result<IncrementalConfig, Diagnostic> {
    let invalid = |m: String| Diagnostic::error("invalid-config", m).with_span(Some(Span::file(&node.path)));
    let unique_key = string_list(node.config.get("unique_key"));
    let partition_by = string_list(node.config.get("partition_by"));
    let strategy = match node.config.get("incremental_strategy").and_then(Value::as_str) {
        None if unique_key.is_empty() => Strategy::Append,
        None => Strategy::Merge,
        Some("append") => Strategy::Append,
        Some("merge") => Strategy::Merge,
        Some("delete+insert") => Strategy::DeleteInsert,
        Some("insert_overwrite") => Strategy::InsertOverwrite,
        Some("microbatch") => {
            return Err(invalid(format!(
                "model `{}`: the `microbatch` strategy is not supported yet",
                node.name
            ))
            .with_help("use `insert_overwrite` with `partition_by` on the event day meanwhile"));
        }
        Some(other) => {
            return Err(
                invalid(format!("unknown incremental_strategy `{other}`")).with_suggestion(
                    other,
                    ["append", "merge", "delete+insert", "insert_overwrite", "microbatch"].into_iter(),
                ),
            );
        }
    };
    if matches!(strategy, Strategy::Merge | Strategy::DeleteInsert) && unique_key.is_empty() {
        return Err(invalid(format!(
            "model `{}`: the `{}` strategy needs a `unique_key`",
            node.name,
            if strategy == Strategy::Merge {
                "merge"
            } else {
                "delete+insert"
            }
        )));
    }
    if strategy == Strategy::InsertOverwrite && partition_by.is_empty() {
        return Err(invalid(format!(
            "model `{}`: `insert_overwrite` replaces partitions and needs `partition_by`",
            node.name
        )));
    }
    let on_schema_change = match node.config.get("on_schema_change").and_then(Value::as_str) {
        None | Some("ignore") => OnSchemaChange::Ignore,
        Some("fail") => OnSchemaChange::Fail,
        Some("append_new_columns") => OnSchemaChange::AppendNewColumns,
        Some("sync_all_columns") => {
            return Err(invalid(format!(
                "model `{}`: `on_schema_change: sync_all_columns` is not supported yet",
                node.name
            ))
            .with_help("use `append_new_columns`, or rebuild with --full-refresh"));
        }
        Some(other) => {
            return Err(invalid(format!("unknown on_schema_change `{other}`")).with_suggestion(
                other,
                ["ignore", "fail", "append_new_columns", "sync_all_columns"].into_iter(),
            ));
        }
    };
    Ok(IncrementalConfig {
        strategy,
        unique_key,
        partition_by,
        on_schema_change,
    })
}

/// What an incremental model's build wrote.
pub struct Applied {
    pub written: Written,
    pub message: String,
}

/// Builds an incremental model: in full the first time, else with its
/// strategy.
pub async fn build_incremental(
    build: &Build,
    index: petgraph::graph::NodeIndex,
    plan: LogicalPlan,
    metadata: lake::Commit,
) -> Result<Applied, Diagnostic> {
    let node = build.dag.node(index);
    let config = config_of(node)?;
    let registry = &build.registry;
    let ctx = &registry.ctx;
    let url = registry.location(&node.relation);
    let failed = |e: String| {
        Diagnostic::error("execution", format!("building `{}` failed: {e}", node.name))
            .with_span(Some(Span::file(&node.path)))
            .with_note("the table keeps its previous version")
    };

    if !build.options.incremental.contains(&node.name) {
        let how = TableWrite::Overwrite {
            partition_by: config.partition_by.clone(),
        };
        let written = lake::write_table(ctx, &url, plan, how, metadata)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let why = if build.options.full_refresh {
            "full refresh"
        } else {
            "first build"
        };
        return Ok(Applied {
            message: format!("incremental ({why}): {} rows", written.rows),
            written,
        });
    }

    let table_schema = lake::delta_provider(ctx, &url)
        .await
        .map_err(|e| failed(format!("cannot read the table: {e}")))?
        .schema();
    let new_schema = plan.schema().as_arrow().clone();
    let (plan, merge_schema) = conform(node, &config, plan, &table_schema, &new_schema, ctx)?;
    let refused = build.options.full_refresh;

    let written = match config.strategy {
        Strategy::Append => lake::write_table(ctx, &url, plan, TableWrite::Append { merge_schema }, metadata)
            .await
            .map_err(|e| failed(e.to_string()))?,
        Strategy::Merge => {
            let source = DataFrame::new(ctx.state(), plan);
            lake::merge_into(ctx, &url, source, &config.unique_key, merge_schema, metadata)
                .await
                .map_err(|e| failed(e.to_string()))?
        }
        Strategy::DeleteInsert | Strategy::InsertOverwrite => {
            let keys = if config.strategy == Strategy::DeleteInsert {
                &config.unique_key
            } else {
                &config.partition_by
            };
            // The new rows are computed once: their keys make the predicate
            // of the rows they replace, and they are what is written.
            let batches = DataFrame::new(ctx.state(), plan)
                .collect()
                .await
                .map_err(|e| failed(e.find_root().to_string()))?;
            let predicate = key_predicate(keys, &batches).map_err(failed)?;
            let Some(predicate) = predicate else {
                return Ok(Applied {
                    written: Written {
                        rows: 0,
                        version: lake::open_table(&url)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|t| t.version())
                            .unwrap_or_default() as i64,
                    },
                    message: "incremental: no new rows".into(),
                });
            };
            let memory = ctx
                .read_batches(batches)
                .map_err(|e| failed(e.to_string()))?
                .into_unoptimized_plan();
            let how = TableWrite::ReplaceWhere {
                predicate,
                merge_schema,
            };
            lake::write_table(ctx, &url, memory, how, metadata)
                .await
                .map_err(|e| failed(e.to_string()))?
        }
    };
    let name = match config.strategy {
        Strategy::Append => "append",
        Strategy::Merge => "merge",
        Strategy::DeleteInsert => "delete+insert",
        Strategy::InsertOverwrite => "insert_overwrite",
    };
    let mut message = format!("incremental ({name}): {} rows", written.rows);
    if refused {
        message.push_str("; `full_refresh: false` kept it from being rebuilt");
    }
    Ok(Applied { written, message })
}

/// Applies `on_schema_change`: the new rows as the table will take them,
/// and whether the table's schema grows.
fn conform(
    node: &Node,
    config: &IncrementalConfig,
    plan: LogicalPlan,
    table: &Schema,
    new: &Schema,
    ctx: &datafusion::prelude::SessionContext,
) -> Result<(LogicalPlan, bool), Diagnostic> {
    let added: Vec<&str> = new
        .fields()
        .iter()
        .filter(|f| table.field_with_name(f.name()).is_err())
        .map(|f| f.name().as_str())
        .collect();
    let missing: Vec<&str> = table
        .fields()
        .iter()
        .filter(|f| new.field_with_name(f.name()).is_err())
        .map(|f| f.name().as_str())
        .collect();
    if added.is_empty() && missing.is_empty() {
        // Same columns: cast to the table's types (a literal typed
        // differently on a later run must not fail the write).
        return project(ctx, plan, table, new, &[]).map(|p| (p, false));
    }
    match config.on_schema_change {
        OnSchemaChange::Fail => {
            let mut d = Diagnostic::error(
                "schema-change",
                format!("the columns of incremental model `{}` changed", node.name),
            )
            .with_span(Some(Span::file(&node.path)))
            .with_help("set `on_schema_change: append_new_columns`, or rebuild with --full-refresh")
            .with_note("nothing was written: the table keeps its previous version");
            if !added.is_empty() {
                d = d.with_note(format!("new in the query: {}", added.join(", ")));
            }
            if !missing.is_empty() {
                d = d.with_note(format!("no longer in the query: {}", missing.join(", ")));
            }
            Err(d)
        }
        OnSchemaChange::Ignore => project(ctx, plan, table, new, &[]).map(|p| (p, false)),
        OnSchemaChange::AppendNewColumns => project(ctx, plan, table, new, &added).map(|p| (p, true)),
    }
}

/// The new rows with the table's columns (missing ones as null, cast to the
/// table's types) followed by the `extra` new columns.
fn project(
    ctx: &datafusion::prelude::SessionContext,
    plan: LogicalPlan,
    table: &Schema,
    new: &Schema,
    extra: &[&str],
) -> Result<LogicalPlan, Diagnostic> {
    let mut exprs: Vec<Expr> = Vec::new();
    for field in table.fields() {
        let expr = if new.field_with_name(field.name()).is_ok() {
            cast(col(Column::from_name(field.name())), field.data_type().clone())
        } else {
            cast(lit(ScalarValue::Null), field.data_type().clone())
        };
        exprs.push(expr.alias(field.name()));
    }
    for name in extra {
        exprs.push(col(Column::from_name(*name)));
    }
    DataFrame::new(ctx.state(), plan)
        .select(exprs)
        .map(DataFrame::into_unoptimized_plan)
        .map_err(|e| Diagnostic::error("execution", e.find_root().to_string()))
}

/// `key IN (...)` over the distinct keys of `batches` (several keys are
/// joined into one string); `None` when there are no rows.
fn key_predicate(
    keys: &[String],
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> Result<Option<Expr>, String> {
    let mut values: BTreeSet<String> = BTreeSet::new();
    let mut scalars: Vec<ScalarValue> = Vec::new();
    for batch in batches {
        let columns: Vec<_> = keys
            .iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .cloned()
                    .ok_or_else(|| format!("the key column `{k}` is not in the model's result"))
            })
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            let parts: Vec<ScalarValue> = columns
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            if keys.len() == 1 {
                if values.insert(parts[0].to_string()) {
                    scalars.push(parts[0].clone());
                }
            } else {
                let joined = parts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\u{1f}");
                if values.insert(joined.clone()) {
                    scalars.push(ScalarValue::Utf8(Some(joined)));
                }
            }
        }
    }
    if scalars.is_empty() {
        return Ok(None);
    }
    let target = if keys.len() == 1 {
        col(Column::from_name(keys[0].as_str()))
    } else {
        concat_ws(
            lit("\u{1f}"),
            keys.iter()
                .map(|k| cast(col(Column::from_name(k.as_str())), DataType::Utf8))
                .collect(),
        )
    };
    Ok(Some(in_list(target, scalars.into_iter().map(lit).collect(), false)))
}
