//! Exports: a copy of a table as one CSV, Parquet or NDJSON file for tools
//! that do not read Delta (Looker Studio, Metabase, a spreadsheet), written
//! after the table's commit. The model asks for it in its config:
//!
//! ```yaml
//! +export: csv                       # <lake>/exports/<name>.csv
//! +export: [csv, parquet]
//! +export: {format: csv, location: exports/bi/kpis.csv, order_by: "revenue desc"}
//! ```
//!
//! A table keeps no row order (its files are written in parallel), so an
//! export that must be sorted says how with `order_by`.
//!
//! The file is written through object_store, whose puts are atomic: a
//! reader sees the previous export or the new one, never half a file.
//!
//! An export is part of its model's build: which table version it was
//! made from is kept in the lake (`_etl/exports/<model>.json`), and a
//! model whose table is up to date writes its exports again when they do
//! not match it (a build killed between the table's commit and its
//! export, an export file deleted or replaced since).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::{CsvOptions, TableParquetOptions};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::ExportFormat;
use crate::graph::Node;

/// An export of a model, with its file's place settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub format: ExportFormat,
    /// Relative to the lake root, or a URL.
    pub location: String,
    /// SQL `order by` expressions.
    pub order_by: Option<String>,
    /// Also a copy for the build's day, in a folder named after the file.
    pub dated: bool,
}

/// The exports a node's config asks for, each file at the place it names
/// or at `exports/<alias>.<ext>`.
pub fn exports_of(node: &Node, project_root: &std::path::Path) -> Vec<Export> {
    node.config
        .exports
        .iter()
        .map(|e| {
            let location = e
                .location
                .clone()
                .unwrap_or_else(|| format!("exports/{}.{}", node.relation.identifier, e.format.extension()));
            // A path relative to the project, as a file URL.
            let location = match Url::parse(&location) {
                Err(_) if e.project_relative => {
                    let path = project_root.join(&location);
                    Url::from_file_path(&path).map_or(location, |u| u.to_string())
                }
                _ => location,
            };
            Export {
                format: e.format,
                location,
                order_by: e.order_by.clone(),
                dated: e.dated,
            }
        })
        .collect()
}

/// Where an export's file goes.
fn export_url(lake: &Url, export: &Export) -> Result<Url, String> {
    match Url::parse(&export.location) {
        Ok(url) if url.scheme().len() > 1 => Ok(url),
        _ => lake
            .join(&export.location)
            .map_err(|e| format!("`{}`: {e}", export.location)),
    }
}

/// Where the copy of an export for `day` (`2024-01-31`) goes: in a folder
/// named after the file, beside it (`exports/kpis_produit.csv` ->
/// `exports/kpis_produit/2024-01-31.csv`).
fn dated_url(url: &Url, day: &str) -> Result<Url, String> {
    let name = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("`{url}` names no file"))?;
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, Some(extension)),
        _ => (name, None),
    };
    let file = match extension {
        Some(extension) => format!("{stem}/{day}.{extension}"),
        None => format!("{stem}/{day}"),
    };
    url.join(&file).map_err(|e| format!("`{url}`: {e}"))
}

/// Every file an export writes for a build on `day`: its own, then its
/// copy for the day when it is dated.
fn export_urls(lake: &Url, export: &Export, day: &str) -> Result<Vec<Url>, String> {
    let url = export_url(lake, export)?;
    let mut urls = vec![url.clone()];
    if export.dated {
        urls.push(dated_url(&url, day)?);
    }
    Ok(urls)
}

/// What a model's exports were made from, as kept in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// The table's version, and the time of its commit (a table deleted
    /// and built again counts its versions from 0 anew).
    pub version: i64,
    pub committed_at: Option<i64>,
    /// Each file written, and its size then.
    pub files: Vec<ExportedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    pub url: String,
    pub size: u64,
}

const STATE_KIND: &str = "exports";

/// Writes every export of a model from its table at `version`, then keeps
/// what they were made from. Returns the URLs written.
pub async fn write_all(
    ctx: &SessionContext,
    lake: &Url,
    unique_id: &str,
    table: &str,
    exports: &[Export],
    version: i64,
    committed_at: Option<i64>,
    day: &str,
) -> Result<Vec<Url>, (Export, String)> {
    let mut files = Vec::new();
    let mut urls = Vec::new();
    let mut sorted = Sorted::default();
    for (i, export) in exports.iter().enumerate() {
        // Another export to come in the same order: the table is sorted
        // once for both, when its rows fit in the session's memory.
        let shared = export.order_by.is_some() && exports[i + 1..].iter().any(|e| e.order_by == export.order_by);
        let url = match sorted.frame(ctx, table, export, shared).await {
            Some(df) => write_frame(ctx, lake, export, df).await,
            None => write_export(ctx, lake, table, export).await,
        }
        .map_err(|e| (export.clone(), e))?;
        let mut written = vec![url.clone()];
        // The day's copy is the file just written, copied by the store
        // (a hard link on local disk, which the next export's atomic
        // replace leaves alone; a server-side copy on S3).
        for dated in export_urls(lake, export, day)
            .map_err(|e| (export.clone(), e))?
            .into_iter()
            .skip(1)
        {
            crate::lake::copy_object(ctx, &url, &dated)
                .await
                .map_err(|e| (export.clone(), e.to_string()))?;
            written.push(dated);
        }
        for url in written {
            let size = crate::lake::object_size(ctx, &url)
                .await
                .map_err(|e| (export.clone(), e.to_string()))?
                .unwrap_or_default();
            files.push(ExportedFile {
                url: url.to_string(),
                size,
            });
            urls.push(url);
        }
    }
    let exported = Exported {
        version,
        committed_at,
        files,
    };
    let value = serde_json::to_value(&exported).map_err(|e| (exports[0].clone(), e.to_string()))?;
    crate::lake::write_document(ctx, lake, STATE_KIND, unique_id, &value)
        .await
        .map_err(|e| (exports[0].clone(), e.to_string()))?;
    Ok(urls)
}

/// Whether the exports of a model were made from its table at `version`
/// (committed at `committed_at`), and each file is still the one written,
/// the copies for `day` of the dated ones included: `None` when they are,
/// else why not.
pub async fn not_up_to_date(
    ctx: &SessionContext,
    lake: &Url,
    unique_id: &str,
    exports: &[Export],
    version: i64,
    committed_at: Option<i64>,
    day: &str,
) -> Option<String> {
    let Some(kept) = crate::lake::read_document(ctx, lake, STATE_KIND, unique_id)
        .await
        .and_then(|v| serde_json::from_value::<Exported>(v).ok())
    else {
        return Some("no record of what it was made from".into());
    };
    if kept.version != version || kept.committed_at != committed_at {
        return Some(format!("made from version {}", kept.version));
    }
    let mut urls = Vec::new();
    for export in exports {
        match export_urls(lake, export, day) {
            Ok(more) => urls.extend(more.into_iter().enumerate().map(|(i, url)| (url, i > 0))),
            Err(e) => return Some(e),
        }
    }
    for (url, is_dated) in &urls {
        let Some(file) = kept.files.iter().find(|f| f.url == url.as_str()) else {
            return Some(if *is_dated {
                format!("no copy for {day} yet")
            } else {
                format!("`{url}` not made from it")
            });
        };
        match crate::lake::object_size(ctx, url).await {
            Ok(Some(size)) if size == file.size => {}
            Ok(None) => return Some(format!("`{url}` deleted since")),
            _ => return Some(format!("`{url}` changed since")),
        }
    }
    None
}

/// Writes `table` (a registered relation, as SQL) to the export's file and
/// returns its URL.
pub async fn write_export(ctx: &SessionContext, lake: &Url, table: &str, export: &Export) -> Result<Url, String> {
    let order = export
        .order_by
        .as_ref()
        .map(|o| format!(" order by {o}"))
        .unwrap_or_default();
    let df = ctx
        .sql(&format!("select * from {table}{order}"))
        .await
        .map_err(|e| e.to_string())?;
    write_frame(ctx, lake, export, df).await
}

/// A table's rows sorted for an export, kept in memory for the next
/// export in the same order.
#[derive(Default)]
struct Sorted {
    order_by: Option<String>,
    rows: Option<(Arc<MemTable>, Vec<SortExpr>, MemoryReservation)>,
}

impl Sorted {
    /// The sorted rows of `table` for `export`, from memory when an export
    /// before it in the same order left them there, or collected now when
    /// `shared` (an export after it wants them) and they fit the memory
    /// pool. `None`: the export runs its own query.
    async fn frame(&mut self, ctx: &SessionContext, table: &str, export: &Export, shared: bool) -> Option<DataFrame> {
        let order_by = export.order_by.as_ref()?;
        if self.order_by.as_ref() != Some(order_by) {
            *self = Sorted::default();
            if !shared {
                return None;
            }
            self.order_by = Some(order_by.clone());
            self.rows = collect_sorted(ctx, table, order_by).await;
        }
        let (rows, order, _) = self.rows.as_ref()?;
        // The rows are declared sorted, so the sort below costs nothing;
        // it keeps them in order through whatever the writer's plan does.
        ctx.read_table(rows.clone()).ok()?.sort(order.clone()).ok()
    }
}

/// `select * from table order by <order_by>`, collected under a
/// reservation of the session's memory pool; `None` when the rows do not
/// fit it, or the query fails (the export's own query then reports why).
async fn collect_sorted(
    ctx: &SessionContext,
    table: &str,
    order_by: &str,
) -> Option<(Arc<MemTable>, Vec<SortExpr>, MemoryReservation)> {
    let df = ctx
        .sql(&format!("select * from {table} order by {order_by}"))
        .await
        .ok()?;
    let LogicalPlan::Sort(sort) = df.logical_plan() else {
        return None;
    };
    // The sort's columns, unqualified: the rows in memory are no table's.
    let order: Vec<SortExpr> = sort
        .expr
        .iter()
        .map(|s| {
            let expr = s
                .expr
                .clone()
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                        e => Transformed::no(e),
                    })
                })
                .map(|t| t.data);
            expr.map(|expr| SortExpr { expr, ..s.clone() })
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let reservation = MemoryConsumer::new("sorted export rows").register(&ctx.runtime_env().memory_pool);
    let mut stream = df.execute_stream().await.ok()?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.ok()?;
        reservation.try_grow(batch.get_array_memory_size()).ok()?;
        batches.push(batch);
    }
    // As many partitions as the session plans for, each a run of the
    // sorted batches: a single one would be split by the planner, losing
    // its declared order (DataFusion 55), and sorted again.
    let partitions = ctx.state().config().target_partitions().clamp(1, batches.len().max(1));
    let per = batches.len().div_ceil(partitions).max(1);
    let mut runs: Vec<Vec<RecordBatch>> = Vec::with_capacity(partitions);
    let mut batches = batches.into_iter().peekable();
    while batches.peek().is_some() {
        runs.push(batches.by_ref().take(per).collect());
    }
    if runs.is_empty() {
        runs.push(Vec::new());
    }
    let table = MemTable::try_new(schema, runs)
        .ok()?
        .with_sort_order(vec![order.clone()]);
    Some((Arc::new(table), order, reservation))
}

/// Writes the rows of `df`, in their order, to the export's file.
async fn write_frame(ctx: &SessionContext, lake: &Url, export: &Export, df: DataFrame) -> Result<Url, String> {
    let url = export_url(lake, export)?;
    crate::lake::ensure_store(ctx, &url).map_err(|e| e.to_string())?;
    if url.scheme() == "file" {
        if let Some(parent) = url
            .to_file_path()
            .ok()
            .and_then(|p| p.parent().map(|p| p.to_path_buf()))
        {
            std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
    }
    let options = DataFrameWriteOptions::new().with_single_file_output(true);
    let path = url.as_str();
    let result = match export.format {
        ExportFormat::Csv => df
            .write_csv(path, options, Some(CsvOptions::default().with_has_header(true)))
            .await
            .map(drop),
        ExportFormat::Parquet => df
            .write_parquet(path, options, Some(TableParquetOptions::default()))
            .await
            .map(drop),
        ExportFormat::Json => df.write_json(path, options, None).await.map(drop),
    };
    result.map_err(|e| e.find_root().to_string())?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::plan::{SessionOptions, new_session};

    /// A session with a table `t` of 40,000 rows (`n` from 0, a `label` of
    /// 100 characters), shuffled, in two partitions (one under a limit).
    fn session_with_rows(memory_limit: Option<usize>) -> SessionContext {
        let ctx = new_session(&SessionOptions {
            memory_limit,
            // One partition (and one below): two sorts' merges under a
            // small pool would each wait for the other's memory.
            target_partitions: memory_limit.map(|_| 1),
            ..SessionOptions::default()
        })
        .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("label", DataType::Utf8, false),
        ]));
        // Batches of 1,000 rows, so that a sort can spill under a small pool.
        let partition = |odd: i64| {
            let n: Vec<i64> = (0..20_000).rev().map(|i| i * 2 + odd).collect();
            n.chunks(1000)
                .map(|n| {
                    let label: Vec<String> = n.iter().map(|n| format!("row {n:0>96}")).collect();
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(Int64Array::from(n.to_vec())),
                            Arc::new(StringArray::from(label)),
                        ],
                    )
                    .unwrap()
                })
                .collect::<Vec<_>>()
        };
        let partitions = match memory_limit {
            Some(_) => vec![[partition(1), partition(0)].concat()],
            None => vec![partition(1), partition(0)],
        };
        let table = MemTable::try_new(schema.clone(), partitions).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    fn export(format: ExportFormat, name: &str) -> Export {
        Export {
            format,
            location: format!("exports/{name}"),
            order_by: Some("n desc".to_owned()),
            dated: false,
        }
    }

    /// Writes a CSV export of `t` ordered by `n desc` and another one in
    /// `second`'s format, and checks both files hold every row in that
    /// order.
    async fn both_exports_sorted(ctx: &SessionContext, second: ExportFormat) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Url::from_directory_path(dir.path()).unwrap();
        let name = format!("t.{}", second.extension());
        let exports = [export(ExportFormat::Csv, "t.csv"), export(second, &name)];
        write_all(ctx, &lake, "model.p.t", "t", &exports, 1, None, "2024-01-31")
            .await
            .unwrap();
        let csv = std::fs::read_to_string(dir.path().join("exports/t.csv")).unwrap();
        let expected: Vec<String> = (0..40_000).rev().map(|n| format!("{n},row {n:0>96}")).collect();
        assert_eq!(csv.lines().next(), Some("n,label"));
        assert!(csv.lines().skip(1).eq(expected.iter().map(String::as_str)));
        let path = dir.path().join("exports").join(&name);
        let n: Vec<i64> = match second {
            ExportFormat::Parquet => ctx
                .read_parquet(path.to_str().unwrap(), Default::default())
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect(),
            _ => std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                        .as_i64()
                        .unwrap()
                })
                .collect(),
        };
        assert!(n.iter().copied().eq((0..40_000).rev()));
    }

    #[tokio::test]
    async fn two_exports_in_one_order_sort_the_table_once_when_it_fits_in_memory() {
        let ctx = session_with_rows(None);
        let mut sorted = Sorted::default();
        let first = export(ExportFormat::Csv, "t.csv");
        assert!(sorted.frame(&ctx, "t", &first, true).await.is_some());
        assert!(sorted.rows.is_some(), "the sorted rows are kept for the next export");
        // The next export reads them in memory: its plan sorts nothing.
        let df = sorted
            .frame(&ctx, "t", &export(ExportFormat::Parquet, "t.parquet"), false)
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(!shown.contains("SortExec"), "{shown}");
        both_exports_sorted(&ctx, ExportFormat::Parquet).await;
    }

    #[tokio::test]
    async fn exports_whose_rows_do_not_fit_in_memory_each_sort_the_table() {
        // 2 MiB: the sort spills, and 40,000 sorted rows (4 MB) are not kept.
        let ctx = session_with_rows(Some(2 * 1024 * 1024));
        let mut sorted = Sorted::default();
        assert!(
            sorted
                .frame(&ctx, "t", &export(ExportFormat::Csv, "t.csv"), true)
                .await
                .is_none()
        );
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
        // JSON: a Parquet export buffers a row group of 1M rows, more than
        // the pool.
        both_exports_sorted(&ctx, ExportFormat::Json).await;
    }

    #[test]
    fn a_days_copy_goes_in_a_folder_named_after_the_file() {
        let dated = |url: &str| dated_url(&Url::parse(url).unwrap(), "2024-01-31").map(|u| u.to_string());
        assert_eq!(
            dated("file:///lake/exports/kpis_produit.csv").unwrap(),
            "file:///lake/exports/kpis_produit/2024-01-31.csv"
        );
        assert_eq!(
            dated("s3://bucket/bi/sales.by.day.parquet").unwrap(),
            "s3://bucket/bi/sales.by.day/2024-01-31.parquet"
        );
        assert_eq!(
            dated("file:///lake/exports/kpis").unwrap(),
            "file:///lake/exports/kpis/2024-01-31"
        );
        assert_eq!(
            dated("file:///lake/exports/.hidden").unwrap(),
            "file:///lake/exports/.hidden/2024-01-31"
        );
        assert!(dated("file:///lake/exports/").is_err());
    }
}
