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
    for export in exports {
        let url = write_export(ctx, lake, table, export)
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

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
