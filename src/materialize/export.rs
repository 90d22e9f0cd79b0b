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

use datafusion::config::{CsvOptions, TableParquetOptions};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;
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
) -> Result<Vec<Url>, (Export, String)> {
    let mut files = Vec::new();
    let mut urls = Vec::new();
    for export in exports {
        let url = write_export(ctx, lake, table, export)
            .await
            .map_err(|e| (export.clone(), e))?;
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
/// (committed at `committed_at`), and each file is still the one written.
pub async fn up_to_date(
    ctx: &SessionContext,
    lake: &Url,
    unique_id: &str,
    exports: &[Export],
    version: i64,
    committed_at: Option<i64>,
) -> bool {
    let Some(kept) = crate::lake::read_document(ctx, lake, STATE_KIND, unique_id)
        .await
        .and_then(|v| serde_json::from_value::<Exported>(v).ok())
    else {
        return false;
    };
    if kept.version != version || kept.committed_at != committed_at || kept.files.len() != exports.len() {
        return false;
    }
    for (export, file) in exports.iter().zip(&kept.files) {
        let Ok(url) = export_url(lake, export) else {
            return false;
        };
        if url.as_str() != file.url {
            return false;
        }
        match crate::lake::object_size(ctx, &url).await {
            Ok(Some(size)) if size == file.size => {}
            _ => return false,
        }
    }
    true
}

/// Writes `table` (a registered relation, as SQL) to the export's file and
/// returns its URL.
pub async fn write_export(ctx: &SessionContext, lake: &Url, table: &str, export: &Export) -> Result<Url, String> {
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
    let order = export
        .order_by
        .as_ref()
        .map(|o| format!(" order by {o}"))
        .unwrap_or_default();
    let df = ctx
        .sql(&format!("select * from {table}{order}"))
        .await
        .map_err(|e| e.to_string())?;
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
