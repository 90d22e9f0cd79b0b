//! `etl show <node>`: rows of a built model or seed, a view evaluated, an
//! ephemeral model or a source queried, printed as a table; `etl show
//! --inline "select ..."`: a query of the project's relations (with `ref`,
//! `source`, vars and macros), run against the lake.

use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use etl::diagnostic::{Code, Diagnostic};
use etl::graph::Materialization;
use etl::plan::{Registry, compile, plan_model};

use super::{Global, Output, invocation_id};

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// A model or seed name, or `source_name.table`.
    #[arg(required_unless_present = "inline", conflicts_with = "inline")]
    node: Option<String>,
    /// A query to run instead, as a model's SQL is written:
    /// `--inline "select * from {{ ref('orders') }} where amount > 100"`.
    #[arg(long)]
    inline: Option<String>,
    /// Rows to print.
    #[arg(long, default_value_t = 10)]
    limit: usize,
}

pub async fn run(global: &Global, args: &ShowArgs, out: &Output) -> u8 {
    let prepared = match global.prepare(out, &invocation_id()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    if let Some(text) = &args.inline {
        // A query that does not render or plan is the user's input: 2.
        let (ctx, plan) = match etl::inline_query(prepared, text, global.memory_limit.as_deref()).await {
            Ok(planned) => planned,
            Err(diag) => {
                out.fatal(&[diag], Some(&root));
                return 2;
            }
        };
        let df = datafusion::dataframe::DataFrame::new(ctx.state(), plan);
        return print(df, args.limit, "inline query".to_owned(), "inline", &root, out).await;
    }
    let dag = &prepared.dag;
    let ctx = match global.session(&prepared.project, out) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let registry = Registry::new(ctx, prepared.project.target.lake.clone());
    let name = args.node.as_deref().unwrap_or_default();
    let Some(index) = dag.find(name) else {
        let names: Vec<String> = dag.order.iter().map(|&i| dag.node(i).name.clone()).collect();
        let diag = Diagnostic::error(
            Code::UnknownNode,
            format!("`{name}` is not a model, seed or source of this project"),
        )
        .with_suggestion(name, names.iter().map(String::as_str));
        out.fatal(&[diag], Some(&root));
        return 2;
    };
    let node = dag.node(index);
    let df = async {
        let plan = if node.materialized == Materialization::Ephemeral {
            registry.ensure_parents(dag, &prepared.project, index).await?;
            let compiled = compile(dag, index, &prepared.rendered.models);
            plan_model(&registry.ctx, &compiled).await?
        } else {
            registry.ensure(dag, &prepared.project, index).await?;
            let sql = format!("select * from {}", node.relation.sql());
            registry
                .ctx
                .sql(&sql)
                .await
                .map_err(|e| Diagnostic::error(Code::Sql, e.to_string()))?
                .into_unoptimized_plan()
        };
        Ok::<_, Diagnostic>(datafusion::dataframe::DataFrame::new(registry.ctx.state(), plan))
    }
    .await;
    let df = match df {
        Ok(df) => df,
        Err(d) => {
            out.fatal(&[d], Some(&root));
            return 1;
        }
    };
    print(
        df,
        args.limit,
        format!("`{}`", node.name),
        node.materialized.as_str(),
        &root,
        out,
    )
    .await
}

/// Prints up to `limit` rows of `df`, as a table or JSON lines.
async fn print(
    df: datafusion::dataframe::DataFrame,
    limit: usize,
    what: String,
    kind: &str,
    root: &std::path::Path,
    out: &Output,
) -> u8 {
    // `explain [analyze] ...` prints its plan whole: a limit cannot sit
    // above it, and the plan reads better as text than in a table.
    let explains = matches!(
        df.logical_plan(),
        datafusion::logical_expr::LogicalPlan::Explain(_) | datafusion::logical_expr::LogicalPlan::Analyze(_)
    );
    if explains && !out.json() {
        return match df.collect().await {
            Ok(batches) => {
                out.line(&explained(&batches));
                0
            }
            Err(e) => {
                out.fatal(
                    &[Diagnostic::error(
                        Code::Execution,
                        format!("explaining {what} failed: {}", e.find_root()),
                    )],
                    Some(root),
                );
                1
            }
        };
    }
    let batches = if explains { Ok(df) } else { df.limit(0, Some(limit)) }.map_err(|e| e.to_string());
    let batches = match batches {
        Ok(df) => df.collect().await.map_err(|e| e.find_root().to_string()),
        Err(e) => Err(e),
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            out.fatal(
                &[Diagnostic::error(
                    Code::Execution,
                    format!("reading {what} failed: {e}"),
                )],
                Some(root),
            );
            return 1;
        }
    };
    let schema = prepared_schema(&batches);
    if out.json() {
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
        let refs: Vec<_> = batches.iter().collect();
        let _ = writer.write_batches(&refs);
        let _ = writer.finish();
        out.line(String::from_utf8_lossy(&writer.into_inner()).trim_end());
        return 0;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(schema);
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = 0;
    for batch in &batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        for row in 0..batch.num_rows() {
            table.add_row(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>());
            rows += 1;
        }
    }
    out.line(&table.to_string());
    out.line(&format!(
        "{rows} row{} of {what} ({kind})",
        if rows == 1 { "" } else { "s" },
    ));
    0
}

/// An `explain`'s rows as text: each plan's kind, then the plan itself,
/// indented as DataFusion prints it.
fn explained(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> String {
    let options = FormatOptions::default();
    let mut text = String::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        for row in 0..batch.num_rows() {
            for (i, f) in formatters.iter().enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                text.push_str(&f.value(row).to_string());
            }
            text.push_str("\n\n");
        }
    }
    text.trim_end().to_owned()
}

fn prepared_schema(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<String> {
    batches
        .first()
        .map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect())
        .unwrap_or_default()
}
