//! Unit tests: a model's SQL run in memory on the rows its test gives for
//! each input, its result compared with the rows the test expects.
//!
//! The model is rendered again with the test's overrides, planned in a
//! session of its own whose only tables are the mocked inputs (each typed
//! as the real input is: its table in the lake, so the input must exist,
//! as in dbt), and its rows, in the columns the test expects, compared as
//! a multiset. Nothing is written; a failing unit test skips its model.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use petgraph::graph::NodeIndex;

use super::{Build, NodeResult, Status};
use crate::diagnostic::{Code, Diagnostic};
use crate::graph::ResourceType;
use crate::project::{Input, Rows, UnitTest, csv_lines};

/// Runs the unit test at `index`.
pub(super) async fn run(build: &Arc<Build>, index: NodeIndex) -> NodeResult {
    let started = Instant::now();
    let node = build.dag.node(index);
    let outcome = check(build, index).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (status, message, diagnostic, failures) = match outcome {
        Ok(None) => (Status::Pass, "unit test: the expected rows".to_owned(), None, Some(0)),
        Ok(Some((differing, diff))) => (
            Status::Fail,
            format!("the model's rows differ from the expected ones\n{diff}"),
            None,
            Some(differing as u64),
        ),
        Err(diag) => (Status::Error, diag.to_string(), Some(diag), None),
    };
    NodeResult {
        failures,
        tested_rows: None,
        diagnostic,
        ..NodeResult::of(node, status, message, elapsed)
    }
}

/// `None` when the model gives the expected rows; else how many rows
/// differ (a changed row counts once, as in dbt), and a table of them.
async fn check(build: &Arc<Build>, index: NodeIndex) -> Result<Option<(usize, String)>, Diagnostic> {
    let node = build.dag.node(index);
    let test = node.unit_test(&build.project);
    let failed = |message: String| {
        Diagnostic::error(Code::UnitTest, format!("unit test `{}`: {message}", test.name)).with_span(test.span.clone())
    };
    let model = build
        .dag
        .order
        .iter()
        .copied()
        .find(|&i| {
            let n = build.dag.node(i);
            n.resource_type == ResourceType::Model && n.name == test.model
        })
        .ok_or_else(|| failed(format!("its model `{}` is not in the build", test.model)))?;
    let model_node = build.dag.node(model);
    let model_index = model_node
        .defined_index()
        .ok_or_else(|| failed("its model has no SQL".into()))?;

    // The model as the test renders it.
    let session = build.base_session(model);
    let lake = super::introspect::lake_warehouse(build, &session);
    let parsed = &build.models[model_index];
    let rendered = tokio::task::block_in_place(|| {
        crate::render::render_for_unit_test(
            &build.project,
            &build.run_render,
            model_index,
            parsed,
            lake,
            &test.overrides,
        )
    })?;
    // A session whose only tables are the mocks (and seeds' own rows).
    let ctx = mock_session(&build.registry.ctx);
    let mut kept = Vec::new();
    let mut given_nodes = Vec::new();
    for given in &test.given {
        let input = match &given.input {
            Input::This => model,
            Input::Ref(name) => build
                .dag
                .parents(index)
                .find(|&p| build.dag.node(p).name == *name && build.dag.node(p).resource_type != ResourceType::Source)
                .ok_or_else(|| failed(format!("`{}` is not an input of `{}`", given.input, test.model)))?,
            Input::Source(source, table) => build
                .dag
                .parents(index)
                .find(|&p| {
                    let n = build.dag.node(p);
                    n.resource_type == ResourceType::Source
                        && n.name == *table
                        && n.fqn.len() >= 2
                        && n.fqn[n.fqn.len() - 2] == *source
                })
                .ok_or_else(|| failed(format!("`{}` is not an input of `{}`", given.input, test.model)))?,
        };
        given_nodes.push(input);
        let node = build.dag.node(input);
        let relation = &node.relation;
        // An ephemeral model given: its SQL rows, under the name the
        // model's SQL reads it by.
        if node.materialized == crate::graph::Materialization::Ephemeral {
            let Rows::Sql(sql) = &given.rows else {
                return Err(failed(format!("`{}`: an ephemeral model's rows are SQL", given.input)));
            };
            let batch = sql_batch(&ctx, sql)
                .await
                .map_err(|e| failed(format!("`given` for `{}`: {e}", given.input)).with_span(given.span.clone()))?;
            register(&ctx, None, &format!("__dbt__cte__{}", relation.identifier), batch)
                .map_err(|e| failed(format!("mocking `{}`: {e}", given.input)))?;
            kept.push(input);
            continue;
        }
        let batch = if matches!(given.rows, Rows::Own) {
            own_rows(build, input)
                .await
                .map_err(|e| failed(format!("the rows of `{}`: {e}", given.input)))?
        } else {
            let schema = input_schema(build, input).await.map_err(|e| {
                failed(format!("the columns of `{}` are not known: {e}", given.input)).with_help(
                    if given.input == Input::This {
                        format!(
                            "a unit test types its mocked rows as the real input: build `{}` once first (`etl build --select {}`)",
                            test.model, test.model
                        )
                    } else {
                        "a unit test types its mocked rows as the real input: build its inputs first".to_owned()
                    },
                )
            })?;
            mock_rows(&ctx, &schema, &given.rows)
                .await
                .map_err(|e| failed(format!("`given` for `{}`: {e}", given.input)).with_span(given.span.clone()))?
        };
        register(&ctx, Some(&relation.schema), &relation.identifier, batch)
            .map_err(|e| failed(format!("mocking `{}`: {e}", given.input)))?;
    }
    // Seeds not given are read as they are, as in dbt.
    for parent in build.dag.parents(index).collect::<Vec<_>>() {
        let node = build.dag.node(parent);
        if node.resource_type == ResourceType::Seed && !given_nodes.contains(&parent) {
            let batch = own_rows(build, parent)
                .await
                .map_err(|e| failed(format!("the rows of seed `{}`: {e}", node.name)))?;
            register(&ctx, Some(&node.relation.schema), &node.relation.identifier, batch)
                .map_err(|e| failed(format!("reading seed `{}`: {e}", node.name)))?;
        }
    }
    let compiled = crate::plan::compile_but(&build.dag, model, &build.models, &rendered, &kept);
    let plan = crate::plan::plan_model(&ctx, &compiled).await.map_err(|mut diag| {
        diag.notes.push(format!(
            "while running `{}` on the rows of unit test `{}`",
            test.model, test.name
        ));
        diag
    })?;
    let actual = datafusion::prelude::DataFrame::new(ctx.state(), plan);
    let actual_schema: Schema = actual.schema().as_arrow().clone();

    // What the test expects, in the model's types, and the model's rows in
    // those columns.
    let mut expected_columns = columns_of(&ctx, &test.expect)
        .await
        .map_err(|e| failed(format!("`expect`: {e}")))?;
    // `rows: []`: no rows, in whatever columns.
    if expected_columns.is_empty() {
        expected_columns = actual_schema.fields().iter().map(|f| f.name().clone()).collect();
    }
    let mut fields = Vec::new();
    for column in &expected_columns {
        match actual_schema.field_with_name(column) {
            Ok(field) => fields.push(field.clone()),
            Err(_) => {
                let columns: Vec<&str> = actual_schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(failed(format!(
                    "`expect` has a column `{column}`, which `{}` does not give",
                    test.model
                ))
                .with_note(format!("its columns: {}", columns.join(", ")))
                .with_suggestion(column, columns.iter().copied()));
            }
        }
    }
    let expected_schema = Arc::new(Schema::new(fields));
    let expected = mock_rows(&ctx, &expected_schema, &test.expect)
        .await
        .map_err(|e| failed(format!("`expect`: {e}")))?;
    let selected: Vec<_> = expected_columns
        .iter()
        .map(|c| datafusion::prelude::col(datafusion::common::Column::new_unqualified(c)))
        .collect();
    let actual = actual
        .select(selected)
        .map_err(|e| failed(format!("selecting the expected columns: {}", e.find_root())))?
        .collect()
        .await
        .map_err(|e| {
            failed(format!(
                "running `{}` on the given rows failed: {}",
                test.model,
                e.find_root()
            ))
        })?;
    let actual_rows = format_rows(&actual).map_err(failed)?;
    let expected_rows = format_rows(std::slice::from_ref(&expected)).map_err(failed)?;
    Ok(compare(test, &expected_columns, expected_rows, actual_rows))
}

/// The rows only one side has, as a table: `-` expected and not given,
/// `+` given and not expected.
fn compare(
    _test: &UnitTest,
    columns: &[String],
    expected: Vec<Vec<String>>,
    actual: Vec<Vec<String>>,
) -> Option<(usize, String)> {
    let mut counts: BTreeMap<&Vec<String>, i64> = BTreeMap::new();
    for row in &expected {
        *counts.entry(row).or_default() -= 1;
    }
    for row in &actual {
        *counts.entry(row).or_default() += 1;
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    let mut header = vec!["+/-".to_owned()];
    header.extend(columns.iter().cloned());
    table.set_header(header);
    let (mut missing, mut extra) = (0, 0);
    for (row, count) in &counts {
        let sign = if *count < 0 { "-" } else { "+" };
        for _ in 0..count.unsigned_abs() {
            let mut cells = vec![sign.to_owned()];
            cells.extend(row.iter().cloned());
            table.add_row(cells);
            if *count < 0 {
                missing += 1;
            } else {
                extra += 1;
            }
        }
    }
    let differing = usize::max(missing, extra);
    (differing > 0).then(|| {
        (
            differing,
            format!("{table}\n(- expected and not given, + given and not expected)"),
        )
    })
}

/// A session with the build's functions and options, and a catalog of
/// its own.
fn mock_session(base: &SessionContext) -> SessionContext {
    let state = SessionStateBuilder::new_from_existing(base.state())
        .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let catalog = Arc::new(MemoryCatalogProvider::new());
    let _ = catalog.register_schema("public", Arc::new(MemorySchemaProvider::new()));
    ctx.register_catalog("datafusion", catalog);
    ctx
}

/// `batch` as the table `schema.name` (or `name` in the default schema).
fn register(ctx: &SessionContext, schema: Option<&str>, name: &str, batch: RecordBatch) -> Result<(), String> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| e.to_string())?;
    let reference = match schema {
        Some(schema) => {
            let catalog = ctx.catalog("datafusion").ok_or("no default catalog")?;
            if catalog.schema(schema).is_none() {
                catalog
                    .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
                    .map_err(|e| e.to_string())?;
            }
            TableReference::partial(schema, name)
        }
        None => TableReference::bare(name),
    };
    ctx.register_table(reference, Arc::new(table))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The rows of a node as the lake has them (a seed a test reads as it is).
async fn own_rows(build: &Build, index: NodeIndex) -> Result<RecordBatch, String> {
    let df = in_lake(build, index).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| e.find_root().to_string())?;
    datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())
}

/// The rows of a SQL query, as one batch.
async fn sql_batch(ctx: &SessionContext, sql: &str) -> Result<RecordBatch, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.find_root().to_string())?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| e.find_root().to_string())?;
    datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())
}

/// The columns of an input, as the lake has them.
async fn input_schema(build: &Build, index: NodeIndex) -> Result<SchemaRef, String> {
    let df = in_lake(build, index).await?;
    Ok(Arc::new(df.schema().as_arrow().clone()))
}

/// A node's relation, read from the lake (found there if this run did
/// not build it).
async fn in_lake(build: &Build, index: NodeIndex) -> Result<datafusion::prelude::DataFrame, String> {
    build
        .registry
        .ensure(&build.dag, &build.project, index)
        .await
        .map_err(|d| d.message)?;
    let relation = &build.dag.node(index).relation;
    build
        .registry
        .ctx
        .table(TableReference::partial(
            relation.schema.as_str(),
            relation.identifier.as_str(),
        ))
        .await
        .map_err(|e| e.find_root().to_string())
}

/// The columns rows name, in order: a mapping's keys, a CSV's header, a
/// query's columns.
async fn columns_of(ctx: &SessionContext, rows: &Rows) -> Result<Vec<String>, String> {
    Ok(match rows {
        Rows::Dict(list) => {
            let mut out: Vec<String> = Vec::new();
            for row in list {
                for key in row.keys() {
                    if !out.contains(key) {
                        out.push(key.clone());
                    }
                }
            }
            out
        }
        Rows::Csv(text) => csv_header(text),
        Rows::Own => Vec::new(),
        Rows::Sql(sql) => {
            let df = ctx.sql(sql).await.map_err(|e| e.find_root().to_string())?;
            df.schema().fields().iter().map(|f| f.name().clone()).collect()
        }
    })
}

fn csv_header(text: &str) -> Vec<String> {
    csv_lines(text)
        .into_iter()
        .next()
        .map(|cells| cells.into_iter().map(Option::unwrap_or_default).collect())
        .unwrap_or_default()
}

/// `rows` as one batch of `schema`: each value cast from its text to the
/// column's type (dates, times and decimals as written in YAML or CSV);
/// the columns the rows do not name are null.
async fn mock_rows(ctx: &SessionContext, schema: &SchemaRef, rows: &Rows) -> Result<RecordBatch, String> {
    let (names, values): (Vec<String>, Vec<Vec<Option<String>>>) = match rows {
        Rows::Dict(list) => {
            let names = columns_of(ctx, rows).await?;
            let values = names
                .iter()
                .map(|name| {
                    list.iter()
                        .map(|row| match row.get(name) {
                            None | Some(serde_json::Value::Null) => None,
                            Some(serde_json::Value::String(s)) => Some(s.clone()),
                            Some(other) => Some(other.to_string()),
                        })
                        .collect()
                })
                .collect();
            (names, values)
        }
        Rows::Csv(text) => {
            let names = csv_header(text);
            let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
            for (n, cells) in csv_lines(text).into_iter().skip(1).enumerate() {
                if cells.len() != names.len() {
                    return Err(format!(
                        "CSV row {} has {} values for {} columns",
                        n + 1,
                        cells.len(),
                        names.len()
                    ));
                }
                for (column, cell) in values.iter_mut().zip(cells) {
                    column.push(cell);
                }
            }
            (names, values)
        }
        Rows::Own => return Err("a seed's own rows are read from the lake, not mocked".into()),
        Rows::Sql(sql) => {
            let batches = ctx
                .sql(sql)
                .await
                .map_err(|e| e.find_root().to_string())?
                .collect()
                .await
                .map_err(|e| e.find_root().to_string())?;
            let Some(first) = batches.first() else {
                return Ok(RecordBatch::new_empty(schema.clone()));
            };
            let names: Vec<String> = first.schema().fields().iter().map(|f| f.name().clone()).collect();
            let options = FormatOptions::default();
            let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
            for batch in &batches {
                for (i, column) in batch.columns().iter().enumerate() {
                    let formatter = ArrayFormatter::try_new(column.as_ref(), &options).map_err(|e| e.to_string())?;
                    for row in 0..column.len() {
                        values[i].push((!column.is_null(row)).then(|| formatter.value(row).to_string()));
                    }
                }
            }
            (names, values)
        }
    };
    for name in &names {
        if schema.field_with_name(name).is_err() {
            let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(format!("`{name}` is not one of its columns ({})", columns.join(", ")));
        }
    }
    let len = values.first().map_or(0, Vec::len);
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        let array: ArrayRef = match names.iter().position(|n| n == field.name()) {
            Some(i) => {
                let text: ArrayRef = Arc::new(StringArray::from(values[i].clone()));
                cast_with_options(&text, field.data_type(), &options)
                    .map_err(|e| format!("column `{}`: {e}", field.name()))?
            }
            None => new_null_array(field.data_type(), len),
        };
        arrays.push(array);
    }
    let nullable: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(nullable)), arrays).map_err(|e| e.to_string())
}

/// Each row's values as text, for comparing rows whatever their types.
fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            out.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    Ok(out)
}
