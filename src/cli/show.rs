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
    let dag = &prepared.dag;
    let ctx = match global.session(&prepared.project, out) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let registry = Registry::new(ctx, prepared.project.target.lake.clone());
    let (what, kind, df) = if let Some(text) = &args.inline {
        (
            "inline query".to_owned(),
            "inline",
            inline(&prepared, &registry, text).await,
        )
    } else {
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
        (format!("`{}`", node.name), node.materialized.as_str(), df)
    };
    let batches = match df {
        Ok(df) => df.limit(0, Some(args.limit)).map_err(|e| e.to_string()),
        Err(d) => {
            out.fatal(&[d], Some(&root));
            return 1;
        }
    };
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
                Some(&root),
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

/// The `--inline` query, rendered with the project's context, over the
/// relations it names, made readable from the lake.
async fn inline(
    prepared: &etl::Prepared,
    registry: &Registry,
    text: &str,
) -> Result<datafusion::dataframe::DataFrame, Diagnostic> {
    let rendered = etl::render::render_inline(&prepared.project, &prepared.rendered.run, text)?;
    let dag = &prepared.dag;
    let named = rendered
        .refs
        .iter()
        .map(|r| r.name.clone())
        .chain(rendered.sources.iter().map(|(s, t)| format!("{s}.{t}")));
    for name in named {
        let Some(index) = dag.find(&name) else {
            return Err(Diagnostic::error(
                Code::UnknownRef,
                format!("`{name}` is not a node of this project"),
            ));
        };
        if dag.node(index).materialized == Materialization::Ephemeral {
            return Err(Diagnostic::error(
                Code::Unsupported,
                format!("`{name}` is ephemeral: `etl show {name}` shows it; an inline query cannot read it yet"),
            ));
        }
        registry.ensure(dag, &prepared.project, index).await?;
    }
    let plan = etl::plan::plan_sql(&registry.ctx.state(), &rendered.sql)
        .await
        .map_err(|e| Diagnostic::error(Code::Sql, format!("the inline query: {}", e.find_root())))?;
    Ok(datafusion::dataframe::DataFrame::new(registry.ctx.state(), plan))
}

fn prepared_schema(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<String> {
    batches
        .first()
        .map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect())
        .unwrap_or_default()
}
