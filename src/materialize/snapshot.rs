//! Snapshots: dbt's slowly changing dimensions of type 2. A snapshot's
//! query gives each entity's state now; its table keeps every state it was
//! seen in, each row valid from `dbt_valid_from` to `dbt_valid_to` (null
//! while current), named by `dbt_scd_id`.
//!
//! The first run writes the query's rows as current. Each later run
//! stages, against the current rows, the new versions (a new key, or a
//! changed row: a later `updated_at`, or a differing checked column) and
//! the current versions they close (and, with `hard_deletes`, those of
//! keys gone from the query), then applies them in one Delta MERGE: the
//! run lands whole or not at all. Values and names follow dbt-core 1.11's
//! snapshot materialization, so that the rows equal dbt-duckdb's (the
//! scd ids too: a timestamp is hashed as DuckDB writes it as text).

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::datasource::ViewTable;
use std::sync::Arc;

use super::planning::planned;
use super::write::{commit_of, execution_error, register_written};
use super::{Build, NodeRun, Outcome};
use crate::config::{CheckColumns, HardDeletes, MetaColumns, Snapshot, SnapshotStrategy};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::lake;

const CHANGE_TYPE: &str = "dbt_change_type";

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL of `expr` (of type `data_type`) as DuckDB casts it to text,
/// which dbt hashes into `dbt_scd_id`: timestamps as `2024-01-31
/// 10:00:00.5` (DataFusion writes `2024-01-31T10:00:00.500`).
fn as_text(expr: &str, data_type: Option<&DataType>) -> String {
    match data_type {
        Some(DataType::Timestamp(_, tz)) => {
            let text = format!(r"regexp_replace(to_char({expr}, '%Y-%m-%d %H:%M:%S%.6f'), '\.?0+$', '')");
            match tz {
                Some(_) => format!("({text} || '+00')"),
                None => text,
            }
        }
        _ => format!("cast({expr} as varchar)"),
    }
}

/// `md5` of the parts' text joined by `|`, nulls as empty text, as dbt's
/// `snapshot_hash_arguments`.
fn hash(parts: &[String]) -> String {
    let joined: Vec<String> = parts.iter().map(|p| format!("coalesce({p}, '')")).collect();
    format!("md5({})", joined.join(" || '|' || "))
}

/// What the staging SQL is written from.
struct Staging<'a> {
    settings: &'a Snapshot,
    columns: &'a MetaColumns,
    /// The query's columns, with their types.
    query: &'a Schema,
    /// The table's columns; `None` on the first run.
    table: Option<&'a Schema>,
    /// When this run happens, as SQL: the time of hard deletes, and of
    /// every change under the `check` strategy.
    now: String,
}

impl Staging<'_> {
    fn type_of(&self, column: &str) -> Option<&DataType> {
        self.query
            .fields()
            .iter()
            .find(|f| f.name() == column)
            .map(|f| f.data_type())
    }

    /// The `updated_at` of a row of `alias` (the query's rows), as SQL.
    fn updated_at(&self, alias: &str) -> String {
        match &self.settings.strategy {
            SnapshotStrategy::Timestamp { updated_at } => format!("{alias}.{}", quoted(updated_at)),
            SnapshotStrategy::Check {
                updated_at: Some(updated_at),
                ..
            } => format!("{alias}.{}", quoted(updated_at)),
            SnapshotStrategy::Check { updated_at: None, .. } => self.now.clone(),
        }
    }

    fn updated_at_type(&self) -> Option<&DataType> {
        match &self.settings.strategy {
            SnapshotStrategy::Timestamp { updated_at }
            | SnapshotStrategy::Check {
                updated_at: Some(updated_at),
                ..
            } => self.type_of(updated_at),
            SnapshotStrategy::Check { updated_at: None, .. } => Some(&DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                None,
            )),
        }
    }

    /// `dbt_scd_id` of a row of `alias`: its keys and `updated_at`.
    fn scd_id(&self, alias: &str) -> String {
        let mut parts: Vec<String> = self
            .settings
            .unique_key
            .iter()
            .map(|k| as_text(&format!("{alias}.{}", quoted(k)), self.type_of(k)))
            .collect();
        parts.push(as_text(&self.updated_at(alias), self.updated_at_type()));
        hash(&parts)
    }

    /// What a current row holds in `dbt_valid_to`, typed as `updated_at`.
    fn valid_to_current(&self, alias: &str) -> String {
        let updated_at = self.updated_at(alias);
        let current = self.settings.valid_to_current.as_deref().unwrap_or("null");
        format!("coalesce(nullif({updated_at}, {updated_at}), {current})")
    }

    fn keys_join(&self, left: &str, right: &str) -> String {
        self.settings
            .unique_key
            .iter()
            .map(|k| format!("{left}.{k} = {right}.{k}", k = quoted(k)))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn new_record(&self) -> bool {
        self.settings.hard_deletes == HardDeletes::NewRecord
    }

    /// The first run: the query's rows, each current.
    fn first(&self, query: &str) -> String {
        let c = self.columns;
        let mut sql = format!(
            "select s.*, {scd} as {scd_col}, {u} as {updated}, {u} as {from}, {to} as {to_col}",
            scd = self.scd_id("s"),
            scd_col = quoted(&c.scd_id),
            u = self.updated_at("s"),
            updated = quoted(&c.updated_at),
            from = quoted(&c.valid_from),
            to = self.valid_to_current("s"),
            to_col = quoted(&c.valid_to),
        );
        if self.new_record() {
            sql.push_str(&format!(", 'False' as {}", quoted(&c.is_deleted)));
        }
        sql.push_str(&format!(" from {query} as s"));
        sql
    }

    /// Whether a query row `s` differs from its current version `t`.
    fn row_changed(&self) -> String {
        let c = self.columns;
        let changed = match &self.settings.strategy {
            SnapshotStrategy::Timestamp { updated_at } => {
                format!("(t.{} < s.{})", quoted(&c.valid_from), quoted(updated_at))
            }
            SnapshotStrategy::Check { columns, .. } => {
                let table = self.table.expect("a later run has a table");
                let in_table = |name: &str| table.fields().iter().any(|f| f.name() == name);
                let checked: Vec<String> = match columns {
                    CheckColumns::All => self.query.fields().iter().map(|f| f.name().clone()).collect(),
                    CheckColumns::Listed(list) => list.clone(),
                };
                // A checked column the table lacks is new: every row changed.
                if checked.iter().any(|name| !in_table(name)) {
                    "true".to_owned()
                } else {
                    let each: Vec<String> = checked
                        .iter()
                        .map(|name| format!("(t.{n} is distinct from s.{n})", n = quoted(name)))
                        .collect();
                    format!("({})", each.join(" or "))
                }
            }
        };
        if self.new_record() {
            format!("({changed} or t.{} = 'True')", quoted(&c.is_deleted))
        } else {
            changed
        }
    }

    /// A later run: the rows to insert and the current versions to close,
    /// each with its `dbt_change_type`.
    fn later(&self, query: &str, table: &str) -> String {
        let c = self.columns;
        let t_schema = self.table.expect("a later run has a table");
        let key = quoted(&self.settings.unique_key[0]);
        let current = match &self.settings.valid_to_current {
            Some(expr) => format!("({to} = {expr} or {to} is null)", to = quoted(&c.valid_to)),
            None => format!("{} is null", quoted(&c.valid_to)),
        };
        let query_columns: Vec<String> = self.query.fields().iter().map(|f| f.name().clone()).collect();
        // Every staged row has the same columns: the query's, then the
        // snapshot's own.
        let row = |change: &str, values: &[String], scd: &str, updated: &str, from: &str, to: &str, deleted: &str| {
            let mut cols = vec![format!("'{change}' as {}", quoted(CHANGE_TYPE))];
            for (name, value) in query_columns.iter().zip(values) {
                cols.push(format!("{value} as {}", quoted(name)));
            }
            cols.push(format!("{scd} as {}", quoted(&c.scd_id)));
            cols.push(format!("{updated} as {}", quoted(&c.updated_at)));
            cols.push(format!("{from} as {}", quoted(&c.valid_from)));
            cols.push(format!("{to} as {}", quoted(&c.valid_to)));
            if self.new_record() {
                cols.push(format!("{deleted} as {}", quoted(&c.is_deleted)));
            }
            cols.join(", ")
        };
        let from_query: Vec<String> = query_columns.iter().map(|n| format!("s.{}", quoted(n))).collect();
        // Untyped: a union takes a null of any type (a list or a struct
        // column too); the first branch's columns give the types.
        let nulls: Vec<String> = query_columns.iter().map(|_| "null".to_owned()).collect();
        let u = self.updated_at("s");
        let mut parts = Vec::new();
        // New keys, and new versions of changed rows.
        parts.push(format!(
            "select {} from {query} as s left join current_rows as t on {join} where t.{key} is null or {changed}",
            row(
                "insert",
                &from_query,
                &self.scd_id("s"),
                &u,
                &u,
                &self.valid_to_current("s"),
                "'False'"
            ),
            join = self.keys_join("s", "t"),
            changed = self.row_changed(),
        ));
        // The current versions they replace, closed when the new one starts.
        parts.push(format!(
            "select {} from {query} as s join current_rows as t on {join} where {changed}",
            row(
                "update",
                &nulls,
                &format!("t.{}", quoted(&c.scd_id)),
                &u,
                &u,
                &u,
                "null"
            ),
            join = self.keys_join("s", "t"),
            changed = self.row_changed(),
        ));
        if self.settings.hard_deletes != HardDeletes::Ignore {
            let marked = if self.new_record() {
                format!(" and not coalesce(t.{} = 'True', false)", quoted(&c.is_deleted))
            } else {
                String::new()
            };
            let gone = format!(
                "from current_rows as t left join {query} as s on {join} where s.{key} is null{marked}",
                join = self.keys_join("t", "s"),
            );
            // Closed now.
            parts.push(format!(
                "select {} {gone}",
                row(
                    "delete",
                    &nulls,
                    &format!("t.{}", quoted(&c.scd_id)),
                    &self.now,
                    &self.now,
                    &self.now,
                    "null"
                ),
            ));
            if self.new_record() {
                // And a current version marked deleted, with its last values.
                let kept: Vec<String> = query_columns
                    .iter()
                    .zip(&nulls)
                    .map(|(n, null)| {
                        if t_schema.fields().iter().any(|f| f.name() == n) {
                            format!("t.{}", quoted(n))
                        } else {
                            null.clone()
                        }
                    })
                    .collect();
                let scd = hash(&[
                    as_text(&format!("t.{}", quoted(&c.scd_id)), None),
                    as_text(
                        &self.now,
                        Some(&DataType::Timestamp(
                            datafusion::arrow::datatypes::TimeUnit::Microsecond,
                            None,
                        )),
                    ),
                ]);
                parts.push(format!(
                    "select {} {gone}",
                    row(
                        "insert",
                        &kept,
                        &scd,
                        &self.now,
                        &self.now,
                        &format!("t.{}", quoted(&c.valid_to)),
                        "'True'"
                    ),
                ));
            }
        }
        format!(
            "with current_rows as (select * from {table} where {current}) {}",
            parts.join(" union all ")
        )
    }
}

/// Checks that the columns the settings name are the query's.
fn check_columns(node: &crate::graph::Node, settings: &Snapshot, query: &Schema) -> Result<(), Diagnostic> {
    let has = |name: &str| query.fields().iter().any(|f| f.name() == name);
    let mut named: Vec<(&str, &str)> = settings.unique_key.iter().map(|k| ("unique_key", k.as_str())).collect();
    match &settings.strategy {
        SnapshotStrategy::Timestamp { updated_at } => named.push(("updated_at", updated_at)),
        SnapshotStrategy::Check { columns, updated_at } => {
            if let Some(u) = updated_at {
                named.push(("updated_at", u));
            }
            if let CheckColumns::Listed(list) = columns {
                named.extend(list.iter().map(|c| ("check_cols", c.as_str())));
            }
        }
    }
    for (key, column) in named {
        if !has(column) {
            let columns: Vec<&str> = query.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Diagnostic::error(
                Code::InvalidConfig,
                format!(
                    "snapshot `{}`: `{key}` names `{column}`, which is not a column of its query",
                    node.name
                ),
            )
            .with_span(Some(
                node.config
                    .raw()
                    .span(key)
                    .cloned()
                    .unwrap_or_else(|| Span::file(&node.path)),
            ))
            .with_note(format!("its query's columns: {}", columns.join(", ")))
            .with_suggestion(column, columns.iter().copied()));
        }
    }
    Ok(())
}

/// Builds the snapshot at `run`: its table's first version, or one commit
/// with this run's changes.
pub(super) async fn snapshot(build: &Build, run: &mut NodeRun) -> Result<Outcome, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let settings = node.config.snapshot.as_ref().expect("a snapshot has snapshot settings");
    let mut stored = super::fingerprint::stored(build, index).await?;
    super::write::expect_version(build, index, &mut stored);
    if !stored.missing.is_empty() {
        return Err(Diagnostic::error(
            Code::MissingDataFiles,
            format!(
                "snapshot `{}`: {} data file(s) of its table are gone: its history cannot be read",
                node.name,
                stored.missing.len()
            ),
        )
        .with_span(Some(Span::file(&node.path)))
        .with_help("restore them from a backup: a snapshot's history cannot be built again from its query"));
    }
    let (plan, _) = planned(build, run).await?;
    let query_schema: Schema = plan.schema().as_arrow().clone();
    check_columns(node, settings, &query_schema)?;
    // `--empty` reads no rows: the query is checked (planned), and an
    // existing history kept as it is (an empty query would close every
    // current row).
    if let (true, lake::Expected::Version(version)) = (build.options.empty, stored.version) {
        register_written(build, index).await?;
        return Ok(Outcome {
            rows: Some(0),
            version: Some(version),
            message: "snapshot: kept as it is under `--empty`".into(),
            up_to_date: false,
            warnings: Vec::new(),
        });
    }
    let ctx = run.session.clone();
    let url = build.registry.location(&node.relation);
    // dbt-duckdb's `now()::timestamp`: the local time of the machine.
    let now = chrono::Local::now()
        .naive_local()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    let now = format!("to_timestamp_micros('{now}')");
    let engine_failed = |e: datafusion::error::DataFusionError| {
        Diagnostic::error(
            Code::Execution,
            format!("building snapshot `{}` failed: {}", node.name, e.find_root()),
        )
        .with_span(Some(Span::file(&node.path)))
        .with_note("the table keeps its previous version")
    };
    let names = (
        format!("__etl_snapshot_query_{}", index.index()),
        format!("__etl_snapshot_table_{}", index.index()),
    );
    ctx.register_table(names.0.as_str(), Arc::new(ViewTable::new(plan, None)))
        .map_err(engine_failed)?;
    let result = async {
        match stored.version {
            lake::Expected::Version(before) => {
                let provider = lake::delta_provider(&ctx, &url)
                    .await
                    .map_err(|e| super::write::lake_error(node, "reading", e))?;
                let table_schema = provider.schema();
                ctx.register_table(names.1.as_str(), provider).map_err(engine_failed)?;
                let staging = Staging {
                    settings,
                    columns: &settings.columns,
                    query: &query_schema,
                    table: Some(&table_schema),
                    now,
                };
                let sql = staging.later(&quoted(&names.0), &quoted(&names.1));
                let staged = ctx.sql(&sql).await.map_err(engine_failed)?;
                let staged = cast_to(staged, &table_schema).map_err(engine_failed)?;
                let insert_columns: Vec<String> = staged
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .filter(|n| n != CHANGE_TYPE)
                    .collect();
                let c = &settings.columns;
                let merge = lake::SnapshotMerge {
                    change_type: CHANGE_TYPE,
                    scd_id: &c.scd_id,
                    valid_to: &c.valid_to,
                    valid_to_current: settings.valid_to_current.as_deref(),
                    insert_columns: &insert_columns,
                };
                let written =
                    lake::merge_snapshot(&ctx, &url, staged, &merge, &node.config.layout, commit_of(build, run))
                        .await
                        .map_err(|e| execution_error(node, e))?;
                // Nothing staged: Delta commits nothing, and no row changed.
                if written.version == before {
                    return Ok((
                        lake::Written {
                            rows: 0,
                            version: before,
                        },
                        "snapshot (no change)",
                    ));
                }
                Ok((written, "snapshot"))
            }
            _ => {
                let staging = Staging {
                    settings,
                    columns: &settings.columns,
                    query: &query_schema,
                    table: None,
                    now,
                };
                let sql = staging.first(&quoted(&names.0));
                let plan = ctx.sql(&sql).await.map_err(engine_failed)?.into_unoptimized_plan();
                let how = lake::TableWrite::Overwrite {
                    partition_by: Vec::new(),
                };
                let written = lake::write_table(&ctx, &url, plan, how, &node.config.layout, commit_of(build, run))
                    .await
                    .map_err(|e| execution_error(node, e))?;
                Ok((written, "snapshot (first run)"))
            }
        }
    }
    .await;
    let _ = ctx.deregister_table(names.0.as_str());
    let _ = ctx.deregister_table(names.1.as_str());
    let (written, what) = result?;
    register_written(build, index).await?;
    Ok(Outcome {
        rows: Some(written.rows),
        version: Some(written.version),
        message: format!("{what}: {}", super::rows_text(written.rows)),
        up_to_date: false,
        warnings: Vec::new(),
    })
}

/// `staged` with each column the table has cast to the table's type.
fn cast_to(
    staged: datafusion::prelude::DataFrame,
    table: &Schema,
) -> datafusion::error::Result<datafusion::prelude::DataFrame> {
    use datafusion::prelude::{cast, col};
    let exprs: Vec<_> = staged
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let column = col(datafusion::common::Column::new_unqualified(f.name()));
            match table.field_with_name(f.name()) {
                Ok(t) if t.data_type() != f.data_type() => cast(column, t.data_type().clone()).alias(f.name()),
                _ => column,
            }
        })
        .collect();
    staged.select(exprs)
}
