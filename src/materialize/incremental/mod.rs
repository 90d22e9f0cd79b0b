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
//!   rows fall in;
//! - `microbatch`: one commit per time window (see `microbatch`).
//!
//! `on_schema_change` says what happens when the query's columns differ
//! from the table's: `ignore` (the default: new columns are left out,
//! missing ones written as null), `fail`, `append_new_columns`, or
//! `sync_all_columns` (the table takes the query's columns and types:
//! rewritten in the same one commit as the change).
//!
//! With `audit: true` the new rows are staged and the model's tests run on
//! what the table would become before anything is committed.

pub(super) mod microbatch;

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::logical_expr::{LogicalPlan, cast, lit};
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, concat_ws, in_list};

use super::audit;
use super::data_tests::added_rows::Increment;
use super::{Build, NodeRun};
use crate::config::{Incremental, MicrobatchConfig, OnSchemaChange, Strategy};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::{Materialization, Node};
use crate::lake::{self, TableWrite, Written};
use crate::plan::{Window, window_predicate};

/// The incremental models of `prepared` that this run updates in place:
/// their table exists, and the run does not rebuild them in full
/// (`--full-refresh`, unless the model sets `full_refresh: false`).
pub async fn incremental_models(
    ctx: &SessionContext,
    prepared: &crate::Prepared,
    full_refresh: bool,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let lake = &prepared.project.target.lake;
    for &i in &prepared.dag.order {
        let node = prepared.dag.node(i);
        if node.materialized != Materialization::Incremental {
            continue;
        }
        let refuses = node.config.full_refresh == Some(false);
        if full_refresh && !refuses {
            continue;
        }
        let url = lake::relation_location(lake, &node.relation);
        let Ok(Some(table)) = lake::open_table(ctx, &url).await else {
            continue;
        };
        // A table another materialization wrote (a `table` model made
        // incremental) is built in full once: it records no files ingested
        // and no watermark, and reading it as a base would double its rows.
        if lake::last_commit_materialized(&table)
            .await
            .is_none_or(|m| m == "incremental")
        {
            out.insert(node.name.clone());
        }
    }
    out
}

/// An incremental model's settings and how its files are laid out.
pub struct IncrementalConfig {
    pub settings: Incremental,
    pub layout: lake::Layout,
}

impl IncrementalConfig {
    /// The settings of the incremental model `node`.
    pub fn of(node: &Node) -> Result<IncrementalConfig, Diagnostic> {
        let settings = node.config.incremental.clone().ok_or_else(|| {
            Diagnostic::error(Code::Internal, format!("`{}` is not an incremental model", node.name))
                .with_span(Some(Span::file(&node.path)))
        })?;
        Ok(IncrementalConfig {
            settings,
            layout: node.config.layout.clone(),
        })
    }

    pub fn microbatch(&self) -> Option<&MicrobatchConfig> {
        match &self.settings.strategy {
            Strategy::Microbatch(batch) => Some(batch),
            _ => None,
        }
    }
}

/// What an incremental model's build wrote.
pub struct Applied {
    pub written: Written,
    pub message: String,
}

/// How a build changes an incremental model's table.
#[derive(Debug, Clone)]
pub enum Change {
    /// Replace the whole table (first build, full refresh).
    Replace,
    Append,
    /// Replace the rows whose `keys` equal a new row's: with Delta MERGE
    /// (`merge`), or by deleting them and inserting the new rows.
    Upsert {
        keys: Vec<String>,
        merge: bool,
    },
    /// Replace the rows whose `column` falls in `window`.
    Window {
        column: String,
        window: Window,
    },
}

/// Builds an incremental model other than a microbatch: in full the first
/// time, else with its strategy.
pub async fn build_incremental(
    build: &Build,
    run: &NodeRun,
    config: &IncrementalConfig,
    plan: LogicalPlan,
    commit: lake::Commit,
) -> Result<Applied, Diagnostic> {
    let node = build.dag.node(run.index);
    if !build.options.incremental.contains(&node.name) {
        let written = apply(build, run, config, plan, Change::Replace, commit).await?;
        let why = if build.options.full_refresh {
            "full refresh"
        } else {
            "first build"
        };
        return Ok(Applied {
            message: format!("incremental ({why}): {}", super::rows_text(written.rows)),
            written,
        });
    }
    let settings = &config.settings;
    let change = match settings.strategy {
        Strategy::Append => Change::Append,
        Strategy::Merge => Change::Upsert {
            keys: settings.unique_key.clone(),
            merge: true,
        },
        Strategy::DeleteInsert => Change::Upsert {
            keys: settings.unique_key.clone(),
            merge: false,
        },
        Strategy::InsertOverwrite => Change::Upsert {
            keys: settings.partition_by.clone(),
            merge: false,
        },
        Strategy::Microbatch(_) => unreachable!("microbatch models are built batch by batch"),
    };
    let written = apply(build, run, config, plan, change, commit).await?;
    let mut message = format!(
        "incremental ({}): {}",
        settings.strategy.as_str(),
        super::rows_text(written.rows)
    );
    if build.options.full_refresh {
        message.push_str("; `full_refresh: false` kept it from being rebuilt");
    }
    Ok(Applied { written, message })
}

/// Applies `change` with the rows of `plan` to the model's table in one
/// commit, after an audit when the model asks for one.
pub async fn apply(
    build: &Build,
    run: &NodeRun,
    config: &IncrementalConfig,
    plan: LogicalPlan,
    change: Change,
    commit: lake::Commit,
) -> Result<Written, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let registry = &build.registry;
    let ctx = &run.session;
    let url = registry.location(&node.relation);
    let failed = |e: String| {
        Diagnostic::error(Code::Execution, format!("building `{}` failed: {e}", node.name))
            .with_span(Some(Span::file(&node.path)))
            .with_note("the table keeps its previous version")
    };
    let engine_failed = |e: datafusion::error::DataFusionError| {
        failed(e.find_root().to_string()).with_cause(crate::diagnostic::Cause::of(&e))
    };
    let write_failed = |e: deltalake::DeltaTableError| failed(lake::describe_error(&e)).with_cause(lake::cause_of(&e));
    let audits = audit::audits(build, index);
    if let Change::Replace = change {
        let how = TableWrite::Overwrite {
            partition_by: config.settings.partition_by.clone(),
        };
        if audits {
            return audit::audited_write(build, run, plan, how, &config.layout, commit).await;
        }
        return lake::write_table(ctx, &url, plan, how, &config.layout, commit)
            .await
            .map_err(write_failed);
    }

    let published = lake::delta_provider(ctx, &url)
        .await
        .map_err(|e| failed(format!("cannot read the table: {e}")))?;
    let (plan, shape) = conform(node, config, plan, &published.schema(), ctx)?;
    // A merge that updates some columns, or matches some rows only, is
    // the merge's own: an audit's candidate table and a rewrite for new
    // columns are made without it.
    let merge_settings = config.settings.merge != crate::config::MergeSettings::default();
    if merge_settings && matches!(change, Change::Upsert { merge: true, .. }) && (audits || shape == Shape::Rewrite) {
        let why = if audits {
            "an audit"
        } else {
            "a change of its columns that rewrites the table"
        };
        return Err(failed(format!(
            "`merge_update_columns`, `merge_exclude_columns` and `incremental_predicates` cannot be kept through {why} yet"
        )));
    }
    // Staged: what an audit checks, and what delete+insert reads twice
    // (for the keys it replaces, then to write them) without holding the
    // new rows in memory.
    let stages = audits || matches!(change, Change::Upsert { merge: false, .. });
    let started = std::time::Instant::now();
    let staged = if stages {
        let staged = audit::stage(build, run, plan.clone()).await?;
        tracing::debug!(node = %node.name, seconds = started.elapsed().as_secs_f64(), "new rows staged");
        Some(staged)
    } else {
        None
    };
    let plan = match &staged {
        Some(s) => s.plan(build)?,
        None => plan,
    };
    let df = |p: LogicalPlan| DataFrame::new(ctx.state(), p);
    let published_df = || ctx.read_table(published.clone()).map_err(engine_failed);
    if let (true, Some(staged)) = (audits, &staged) {
        let candidate = post_state(published_df()?, df(plan.clone()), &change).map_err(engine_failed)?;
        let view = audit::candidate_table(candidate.into_unoptimized_plan());
        // Every row of the table after the change is one of the published
        // rows or a staged one, unless the table is rewritten. An upsert
        // replaces every published row sharing its keys with a staged row;
        // a window's staged rows may fall outside it, replacing nothing.
        let increment = match (&shape, &change) {
            (Shape::Same, Change::Append | Change::Window { .. }) => Some(Vec::new()),
            (Shape::Same, Change::Upsert { keys, .. }) => Some(keys.clone()),
            _ => None,
        }
        .map(|replaces_by| Increment {
            model: index,
            rows: staged.provider.clone(),
            replaces_by,
        });
        let started = std::time::Instant::now();
        audit::audit(build, index, view, increment.as_ref(), staged).await?;
        tracing::debug!(node = %node.name, seconds = started.elapsed().as_secs_f64(), "audited");
    }
    let started = std::time::Instant::now();

    let result = match (&shape, &change) {
        (Shape::Rewrite, _) => {
            let table = post_state(published_df()?, df(plan), &change).map_err(engine_failed)?;
            let how = TableWrite::Overwrite {
                partition_by: config.settings.partition_by.clone(),
            };
            lake::write_table(ctx, &url, table.into_unoptimized_plan(), how, &config.layout, commit).await
        }
        (_, Change::Replace) => unreachable!("handled above"),
        (_, Change::Append) => {
            let how = TableWrite::Append {
                merge_schema: shape == Shape::Grow,
            };
            lake::write_table(ctx, &url, plan, how, &config.layout, commit).await
        }
        (_, Change::Upsert { keys, merge: true }) => {
            let settings = &config.settings.merge;
            let merge = lake::Merge {
                keys,
                update_columns: &settings.update_columns,
                exclude_columns: &settings.exclude_columns,
                predicates: &settings.predicates,
            };
            lake::merge_into(
                ctx,
                &url,
                df(plan),
                &merge,
                shape == Shape::Grow,
                &config.layout,
                commit,
            )
            .await
        }
        (_, Change::Upsert { keys, merge: false }) => {
            let columns: Vec<Expr> = keys.iter().map(|k| col(Column::from_name(k.as_str()))).collect();
            let distinct = df(plan.clone())
                .select(columns)
                .and_then(DataFrame::distinct)
                .map_err(engine_failed)?
                .collect()
                .await
                .map_err(engine_failed)?;
            match key_predicate(keys, &distinct).map_err(failed)? {
                Some(predicate) => {
                    let how = TableWrite::ReplaceWhere {
                        predicate,
                        merge_schema: shape == Shape::Grow,
                    };
                    lake::write_table(ctx, &url, plan, how, &config.layout, commit).await
                }
                None => {
                    // No new rows: nothing to replace, no commit.
                    if let Some(staged) = staged {
                        staged.remove(build).await;
                    }
                    let version = lake::current_version(&build.registry.ctx, &url).await;
                    return Ok(Written {
                        rows: 0,
                        version: version.unwrap_or_default() as i64,
                    });
                }
            }
        }
        (_, Change::Window { column, window }) => {
            let data_type = plan
                .schema()
                .field_with_unqualified_name(column)
                .map(|f| f.data_type().clone())
                .map_err(|_| {
                    failed(format!(
                        "its event_time column `{column}` is not a column of its result"
                    ))
                })?;
            let predicate = window_predicate(col(Column::from_name(column.as_str())), &data_type, *window)
                .map_err(|e| failed(e.to_string()))?;
            let how = TableWrite::ReplaceWhere {
                predicate,
                merge_schema: shape == Shape::Grow,
            };
            lake::write_table(ctx, &url, plan, how, &config.layout, commit).await
        }
    };
    tracing::debug!(node = %node.name, seconds = started.elapsed().as_secs_f64(), "written");
    if let Some(staged) = staged {
        staged.remove(build).await;
    }
    result.map_err(write_failed)
}

/// The table `change` leaves: `published` (the rows now) changed by
/// `increment` (the new rows, whose columns the result has).
fn post_state(
    published: DataFrame,
    increment: DataFrame,
    change: &Change,
) -> Result<DataFrame, datafusion::error::DataFusionError> {
    let fields: Vec<Field> = increment.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let published = reshape(published, &fields)?;
    match change {
        Change::Replace => Ok(increment),
        Change::Append => published.union(increment),
        Change::Upsert { keys, .. } => {
            let key_col = |alias: &str, k: &str| col(Column::new(Some(alias), k));
            let columns: Vec<Expr> = keys.iter().map(|k| col(Column::from_name(k.as_str()))).collect();
            let replaced = increment.clone().select(columns)?.distinct()?.alias("__etl_new")?;
            let on: Vec<Expr> = keys
                .iter()
                .map(|k| key_col("__etl_published", k).eq(key_col("__etl_new", k)))
                .collect();
            published
                .alias("__etl_published")?
                .join_on(replaced, JoinType::LeftAnti, on)?
                .union(increment)
        }
        Change::Window { column, window } => {
            let data_type = fields
                .iter()
                .find(|f| f.name() == column)
                .map(|f| f.data_type().clone())
                .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("no event_time column `{column}`")))?;
            let inside = window_predicate(col(Column::from_name(column.as_str())), &data_type, *window)?;
            published.filter(Expr::IsNotTrue(Box::new(inside)))?.union(increment)
        }
    }
}

/// `df` with exactly `fields`, by name: its own columns cast to their
/// types, the others null.
fn reshape(df: DataFrame, fields: &[Field]) -> Result<DataFrame, datafusion::error::DataFusionError> {
    let exprs: Vec<Expr> = fields
        .iter()
        .map(|field| {
            let expr = if df.schema().field_with_unqualified_name(field.name()).is_ok() {
                cast(col(Column::from_name(field.name())), field.data_type().clone())
            } else {
                cast(lit(ScalarValue::Null), field.data_type().clone())
            };
            expr.alias(field.name())
        })
        .collect();
    df.select(exprs)
}

/// How the new rows' columns meet the table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The table's columns (new ones dropped, missing ones null).
    Same,
    /// The table's columns followed by new ones (`append_new_columns`).
    Grow,
    /// The query's columns and types replace the table's
    /// (`sync_all_columns`): the table is rewritten.
    Rewrite,
}

/// Two types the same once string and binary encodings are set aside (a
/// Delta table reads strings back as views).
fn same_type(a: &DataType, b: &DataType) -> bool {
    let plain = |t: &DataType| match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    };
    plain(a) == plain(b)
}

/// Applies `on_schema_change`: the new rows as the table will take them.
fn conform(
    node: &Node,
    config: &IncrementalConfig,
    plan: LogicalPlan,
    table: &Schema,
    ctx: &SessionContext,
) -> Result<(LogicalPlan, Shape), Diagnostic> {
    let new = plan.schema().as_arrow().clone();
    let added: Vec<&Field> = new
        .fields()
        .iter()
        .filter(|f| table.field_with_name(f.name()).is_err())
        .map(|f| f.as_ref())
        .collect();
    let missing: Vec<&str> = table
        .fields()
        .iter()
        .filter(|f| new.field_with_name(f.name()).is_err())
        .map(|f| f.name().as_str())
        .collect();
    let retyped: Vec<String> = new
        .fields()
        .iter()
        .filter_map(|f| {
            let old = table.field_with_name(f.name()).ok()?;
            (!same_type(old.data_type(), f.data_type()))
                .then(|| format!("{} ({} -> {})", f.name(), old.data_type(), f.data_type()))
        })
        .collect();
    let shaped = |fields: Vec<Field>| {
        reshape(DataFrame::new(ctx.state(), plan.clone()), &fields)
            .map(DataFrame::into_unoptimized_plan)
            .map_err(|e| Diagnostic::error(Code::Execution, e.find_root().to_string()))
    };
    let table_fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    if config.settings.on_schema_change == OnSchemaChange::SyncAllColumns
        && !(added.is_empty() && missing.is_empty() && retyped.is_empty())
    {
        return Ok((plan, Shape::Rewrite));
    }
    if added.is_empty() && missing.is_empty() {
        // Same columns: cast to the table's types (a literal typed
        // differently on a later run must not fail the write).
        return shaped(table_fields).map(|p| (p, Shape::Same));
    }
    match config.settings.on_schema_change {
        OnSchemaChange::Fail => {
            let mut d = Diagnostic::error(
                Code::SchemaChange,
                format!("the columns of incremental model `{}` changed", node.name),
            )
            .with_span(Some(Span::file(&node.path)))
            .with_help(
                "set `on_schema_change: append_new_columns` or `sync_all_columns`, or rebuild with --full-refresh",
            )
            .with_note("nothing was written: the table keeps its previous version");
            if !added.is_empty() {
                let names: Vec<&str> = added.iter().map(|f| f.name().as_str()).collect();
                d = d.with_note(format!("new in the query: {}", names.join(", ")));
            }
            if !missing.is_empty() {
                d = d.with_note(format!("no longer in the query: {}", missing.join(", ")));
            }
            Err(d)
        }
        OnSchemaChange::Ignore | OnSchemaChange::SyncAllColumns => shaped(table_fields).map(|p| (p, Shape::Same)),
        OnSchemaChange::AppendNewColumns => {
            let mut fields = table_fields;
            fields.extend(added.into_iter().cloned());
            shaped(fields).map(|p| (p, Shape::Grow))
        }
    }
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
