//! External files as DataFusion tables: sources (Parquet, CSV, NDJSON,
//! Delta) and seed CSVs, read through the session's object stores.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use serde_json::Value;

use super::row_counts::{self, CountingFormat, RowCounts};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::project::{Source, SourceFormat};

const CSV_OPTIONS: &[&str] = &[
    "header",
    "delimiter",
    "quote",
    "escape",
    "comment",
    "null_regex",
    "compression",
    "file_extension",
    "schema_infer_max_records",
];
const JSON_OPTIONS: &[&str] = &["compression", "file_extension", "schema_infer_max_records"];
const PARQUET_OPTIONS: &[&str] = &["file_extension"];

/// A table provider for a source table, after checking that its location
/// holds files.
pub async fn source_provider(
    ctx: &SessionContext,
    counts: &RowCounts,
    source: &Source,
) -> Result<Arc<dyn TableProvider>, Diagnostic> {
    source_provider_of(ctx, counts, source, None).await
}

/// A provider for just `files` of a file source (the ones an incremental
/// model has not consumed yet), with the source's schema.
pub async fn source_files_provider(
    ctx: &SessionContext,
    counts: &RowCounts,
    source: &Source,
    files: &[object_store::ObjectMeta],
) -> Result<Arc<dyn TableProvider>, Diagnostic> {
    source_provider_of(ctx, counts, source, Some(files)).await
}

async fn source_provider_of(
    ctx: &SessionContext,
    counts: &RowCounts,
    source: &Source,
    only: Option<&[object_store::ObjectMeta]>,
) -> Result<Arc<dyn TableProvider>, Diagnostic> {
    let span = source.span.clone();
    let fail = |code: Code, message: String| Diagnostic::error(code, message).with_span(span.clone());
    if source.format == SourceFormat::Delta {
        let url =
            crate::lake::parse_location(&source.location).map_err(|e| fail(Code::InvalidLocation, e.to_string()))?;
        return crate::lake::delta_provider(ctx, &url).await.map_err(|e| {
            let diag = fail(
                Code::MissingSource,
                format!("source `{}.{}`: {e}", source.source_name, source.name),
            );
            match &source.in_lake {
                Some((schema, identifier)) => diag.with_help(format!(
                    "with no `location`, a source is the lake's table `{schema}.{identifier}`: load it first (a \
                     seed or model with that schema and name), or give the source a `location:`"
                )),
                None => diag,
            }
        });
    }
    let allowed = match source.format {
        SourceFormat::Csv => CSV_OPTIONS,
        SourceFormat::Json => JSON_OPTIONS,
        _ => PARQUET_OPTIONS,
    };
    for key in source.options.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(fail(
                Code::UnknownOption,
                format!("unknown option `{key}` for a {:?} source", source.format).to_lowercase(),
            )
            .with_suggestion(key, allowed.iter().copied())
            .with_note(format!("options: {}", allowed.join(", "))));
        }
    }
    let opt_str = |k: &str| {
        source.options.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let byte = |k: &str| -> Result<Option<u8>, Diagnostic> {
        match opt_str(k) {
            None => Ok(None),
            Some(s) if s.len() == 1 => Ok(Some(s.as_bytes()[0])),
            Some(s) if s == "\\t" => Ok(Some(b'\t')),
            Some(s) => Err(fail(
                Code::InvalidOption,
                format!("option `{k}` must be one character, not `{s}`"),
            )),
        }
    };
    let compression = match opt_str("compression") {
        None => compression_of(&source.location),
        Some(c) => c.parse::<FileCompressionType>().map_err(|_| {
            fail(
                Code::InvalidOption,
                format!("unknown compression `{c}`; use gzip, bzip2, xz, zstd or uncompressed"),
            )
        })?,
    };
    let infer_records = opt_str("schema_infer_max_records")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let location = listing_location(&source.location);
    let has_glob = location.contains(['*', '?', '[']);
    let (format, default_ext): (Arc<dyn FileFormat>, &str) = match source.format {
        SourceFormat::Csv => {
            let header = source
                .options
                .get("header")
                .map_or(true, |v| v.as_bool().unwrap_or_else(|| v.as_str() == Some("true")));
            let mut csv = CsvFormat::default()
                .with_has_header(header)
                .with_schema_infer_max_rec(infer_records)
                .with_file_compression_type(compression);
            if let Some(d) = byte("delimiter")? {
                csv = csv.with_delimiter(d);
            }
            if let Some(q) = byte("quote")? {
                csv = csv.with_quote(q);
            }
            csv = csv.with_escape(byte("escape")?).with_comment(byte("comment")?);
            if let Some(n) = opt_str("null_regex") {
                csv = csv.with_null_regex(Some(n));
            }
            (Arc::new(csv), ".csv")
        }
        SourceFormat::Json => (
            Arc::new(
                JsonFormat::default()
                    .with_schema_infer_max_rec(infer_records)
                    .with_file_compression_type(compression),
            ),
            "",
        ),
        _ => (Arc::new(ParquetFormat::default()), ".parquet"),
    };
    // Parquet states its row counts; CSV and JSON files are counted as
    // they are read.
    let format: Arc<dyn FileFormat> = if source.format == SourceFormat::Parquet {
        format
    } else {
        Arc::new(CountingFormat::new(format, counts_of(ctx, counts, source).await))
    };
    let ext = opt_str("file_extension").unwrap_or_else(|| {
        if has_glob {
            String::new()
        } else {
            default_ext.to_owned()
        }
    });
    let url = listing_url(&location).map_err(|e| fail(Code::InvalidLocation, format!("`{}`: {e}", source.location)))?;
    let options = ListingOptions::new(format).with_file_extension(ext.clone());

    let state = ctx.state();
    let store = state.runtime_env().object_store(url.object_store()).map_err(|e| {
        fail(
            Code::ObjectStore,
            format!("no object store for `{}`: {e}", source.location),
        )
    })?;
    let files = list_source_files(ctx, source).await?;
    if files.is_empty() {
        return Err(fail(
            Code::MissingSource,
            format!(
                "source `{}.{}`: no files match `{}`",
                source.source_name, source.name, source.location
            ),
        )
        .with_help("check the `location` (globs such as `orders/*.jsonl` are allowed) and that the files exist"));
    }

    let header = source
        .options
        .get("header")
        .is_none_or(|v| v.as_bool() != Some(false) && v.as_str() != Some("false"));
    let format_for_header = options.format.clone();
    let store_url = url.object_store();
    let mut config = ListingTableConfig::new(url).with_listing_options(options);
    config = match declared_schema(ctx, source).await? {
        Some(schema) => {
            // CSV columns are read by position: the declared names must be
            // the header's, or every column would be silently shifted.
            if source.format == SourceFormat::Csv && header {
                let found = format_for_header
                    .infer_schema(&state, &store, &files[..1])
                    .await
                    .map_err(|e| {
                        fail(
                            Code::SourceSchema,
                            format!("cannot read the header of `{}`: {}", files[0].location, e.find_root()),
                        )
                    })?;
                let declared: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let in_file: Vec<&str> = found.fields().iter().map(|f| f.name().as_str()).collect();
                if declared != in_file {
                    return Err(fail(
                        Code::SourceColumns,
                        format!(
                            "the declared columns of `{}.{}` do not match the header of `{}`",
                            source.source_name, source.name, files[0].location
                        ),
                    )
                    .with_note(format!("declared: {}", declared.join(", ")))
                    .with_note(format!("header:   {}", in_file.join(", ")))
                    .with_help("declare the CSV's columns in the order of its header"));
                }
            }
            config.with_schema(schema)
        }
        None => match config.infer_schema(&state).await {
            Ok(config) => config,
            Err(e) => {
                let mut diag = fail(
                    Code::SourceSchema,
                    format!("cannot read the schema of `{}`: {}", source.location, e.find_root()),
                );
                // Name the file: infer each one alone until one fails.
                for file in &files {
                    if let Err(e) = format_for_header
                        .infer_schema(&state, &store, std::slice::from_ref(file))
                        .await
                    {
                        diag = diag.with_note(format!(
                            "the unreadable file is `/{}`: {}",
                            file.location,
                            e.find_root()
                        ));
                        break;
                    }
                }
                return Err(diag);
            }
        },
    };
    if let Some(only) = only {
        let schema = config
            .file_schema
            .clone()
            .ok_or_else(|| fail(Code::SourceSchema, format!("no schema for `{}`", source.location)))?;
        if only.is_empty() {
            let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])
                .map_err(|e| fail(Code::Source, e.to_string()))?;
            return Ok(Arc::new(empty));
        }
        let paths = only
            .iter()
            .map(|f| ListingTableUrl::parse(format!("{}{}", store_url.as_str(), f.location)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(Code::InvalidLocation, e.to_string()))?;
        let listing = config
            .options
            .clone()
            .ok_or_else(|| fail(Code::Source, format!("no listing options for `{}`", source.location)))?;
        let files_config = ListingTableConfig::new_with_multi_paths(paths)
            .with_listing_options(listing.with_file_extension(""))
            .with_schema(schema);
        let table =
            ListingTable::try_new(files_config).map_err(|e| fail(Code::Source, format!("{}: {e}", source.location)))?;
        return Ok(Arc::new(table));
    }
    let table = ListingTable::try_new(config).map_err(|e| fail(Code::Source, format!("{}: {e}", source.location)))?;
    Ok(Arc::new(table))
}

/// The row count of each of `files` of a CSV or JSON source, where a scan
/// that read it whole learnt it (see `row_counts`); `None` for the others,
/// and for the files of Parquet sources (whose footers say).
pub async fn known_row_counts(
    ctx: &SessionContext,
    counts: &RowCounts,
    source: &Source,
    files: &[object_store::ObjectMeta],
) -> Vec<Option<u64>> {
    if matches!(source.format, SourceFormat::Parquet | SourceFormat::Delta) {
        return vec![None; files.len()];
    }
    let counts = counts_of(ctx, counts, source).await;
    files.iter().map(|f| counts.rows(f)).collect()
}

/// The row counts of a CSV or JSON source's files, keyed under the folder
/// they are listed from.
async fn counts_of(ctx: &SessionContext, counts: &RowCounts, source: &Source) -> Arc<row_counts::SourceCounts> {
    let name = format!("{}.{}", source.source_name, source.name);
    let reading = row_counts::reading(&format!("{:?}", source.format), &source.options);
    let folder = listing_url(&listing_location(&source.location))
        .map(|url| url.prefix().to_string())
        .unwrap_or_default();
    counts.of_source(ctx, &name, &reading, &folder).await
}

/// The files a (non-Delta) source's location matches now, sorted by path.
pub async fn list_source_files(
    ctx: &SessionContext,
    source: &Source,
) -> Result<Vec<object_store::ObjectMeta>, Diagnostic> {
    let fail = |code: Code, message: String| Diagnostic::error(code, message).with_span(source.span.clone());
    let location = listing_location(&source.location);
    let has_glob = location.contains(['*', '?', '[']);
    let default_ext = match source.format {
        SourceFormat::Csv => ".csv",
        SourceFormat::Parquet => ".parquet",
        _ => "",
    };
    let ext = match source.options.get("file_extension") {
        Some(Value::String(e)) => e.clone(),
        _ if has_glob => String::new(),
        _ => default_ext.to_owned(),
    };
    let url = listing_url(&location).map_err(|e| fail(Code::InvalidLocation, format!("`{}`: {e}", source.location)))?;
    let state = ctx.state();
    let store = state.runtime_env().object_store(url.object_store()).map_err(|e| {
        fail(
            Code::ObjectStore,
            format!("no object store for `{}`: {e}", source.location),
        )
    })?;
    let mut files: Vec<_> = url
        .list_all_files(&state, store.as_ref(), &ext)
        .await
        .map_err(|e| {
            let cause = crate::lake::with_root_cause(&e);
            fail(
                Code::MissingSource,
                format!("cannot list `{}`: {cause}", source.location),
            )
        })?
        .try_collect()
        .await
        .map_err(|e| {
            let cause = crate::lake::with_root_cause(&e);
            fail(
                Code::MissingSource,
                format!("cannot list `{}`: {cause}", source.location),
            )
        })?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(files)
}

/// Where a (non-Delta) source's files are, in its store: the fixed part of
/// its location, before any glob (`lake/bronze/orders` for
/// `lake/bronze/orders/*.jsonl.gz`). Files are known by their path under
/// it, which stays the same when the lake or the project is moved.
pub fn source_root(source: &Source) -> Result<object_store::path::Path, Diagnostic> {
    let url = listing_url(&listing_location(&source.location)).map_err(|e| {
        Diagnostic::error(Code::InvalidLocation, format!("`{}`: {e}", source.location)).with_span(source.span.clone())
    })?;
    Ok(url.prefix().clone())
}

/// A file of `source` as the user knows it: a path on local disk, a URL
/// in a bucket.
pub fn shown_file(source: &Source, file: &object_store::path::Path) -> String {
    match url::Url::parse(&source.location) {
        Ok(url) if url.scheme() != "file" => format!("{}/{file}", &url[..url::Position::BeforePath]),
        _ => format!("/{file}"),
    }
}

/// The compression a location's file suffix says: `orders/*.jsonl.gz` is
/// gzip. Without a suffix, files are read as they are.
fn compression_of(location: &str) -> FileCompressionType {
    let lower = location.to_ascii_lowercase();
    if lower.ends_with(".gz") {
        FileCompressionType::GZIP
    } else if lower.ends_with(".bz2") {
        FileCompressionType::BZIP2
    } else if lower.ends_with(".xz") {
        FileCompressionType::XZ
    } else if lower.ends_with(".zst") {
        FileCompressionType::ZSTD
    } else {
        FileCompressionType::UNCOMPRESSED
    }
}

/// When every declared column has a `data_type`, the source is read with
/// exactly that schema (no inference; CSV columns in file order).
async fn declared_schema(ctx: &SessionContext, source: &Source) -> Result<Option<Arc<Schema>>, Diagnostic> {
    if source.columns.is_empty()
        || source.columns.iter().any(|c| c.data_type.is_none())
        || source.format == SourceFormat::Parquet
    {
        return Ok(None);
    }
    let mut fields = Vec::with_capacity(source.columns.len());
    for column in &source.columns {
        let type_name = column.data_type.as_deref().unwrap_or_default();
        let data_type = sql_type(ctx, type_name).await.map_err(|e| {
            Diagnostic::error(
                Code::InvalidType,
                format!(
                    "column `{}` of `{}.{}`: {e}",
                    column.name, source.source_name, source.name
                ),
            )
            .with_span(source.span.clone())
        })?;
        fields.push(Field::new(&column.name, data_type, true));
    }
    Ok(Some(Arc::new(Schema::new(fields))))
}

/// The Arrow type DataFusion gives a SQL type name (`decimal(10,2)`, `varchar`).
pub async fn sql_type(ctx: &SessionContext, name: &str) -> Result<DataType, UnknownType> {
    if name.contains([';', '(']) && !name.trim_end().ends_with(')') {
        return Err(UnknownType(name.to_owned()));
    }
    let df = ctx
        .sql(&format!("select cast(null as {name}) as t"))
        .await
        .map_err(|_| UnknownType(name.to_owned()))?;
    Ok(df.schema().field(0).data_type().clone())
}

/// A declared column type DataFusion does not know.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a SQL type DataFusion knows")]
pub struct UnknownType(pub String);

/// Registers a local CSV file (a seed) under `name`, types inferred.
/// The query that reads a seed's CSV, registered as `temp`, with its
/// `column_types` applied.
pub fn seed_select(columns: &[String], types: &std::collections::BTreeMap<String, String>, temp: &str) -> String {
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            let q = format!("\"{}\"", c.replace('"', "\"\""));
            match types.get(c) {
                Some(t) => format!("cast({q} as {t}) as {q}"),
                None => q,
            }
        })
        .collect();
    format!("select {} from \"{temp}\"", select.join(", "))
}

pub async fn register_csv_file(
    ctx: &SessionContext,
    name: &str,
    path: &std::path::Path,
    span: Span,
) -> Result<(), Diagnostic> {
    let options = datafusion::prelude::CsvReadOptions::new()
        .has_header(true)
        .schema_infer_max_records(100_000);
    ctx.register_csv(name, path.to_string_lossy().as_ref(), options)
        .await
        .map_err(|e| {
            let message = e.find_root().to_string();
            // The CSV reader names the line of a malformed row: point at it.
            let line = message
                .split("at line ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok());
            let span = match line {
                Some(line) => Span::new(span.file.clone(), line, 1, 1),
                None => span,
            };
            Diagnostic::error(Code::Seed, format!("cannot read seed: {message}")).with_span(Some(span))
        })
}

/// A location DataFusion can list: an existing local directory gets its
/// trailing `/`, so that it is read as a folder of files.
/// The listing of a location: a path or a URL, either one with a glob in
/// its last segments (`s3://lake/bronze/orders/*.jsonl.gz`). DataFusion
/// splits globs off paths only, so URLs are split here.
fn listing_url(location: &str) -> datafusion::common::Result<ListingTableUrl> {
    use datafusion::common::DataFusionError;
    let Some((_, rest)) = location.split_once("://") else {
        return ListingTableUrl::parse(location);
    };
    let path_start = location.len() - rest.len() + rest.find('/').unwrap_or(rest.len());
    let glob_start = location[path_start..].find(['*', '?', '[']).map(|i| path_start + i);
    let Some(glob_start) = glob_start else {
        return ListingTableUrl::parse(location);
    };
    let split = location[..glob_start].rfind('/').map_or(glob_start, |i| i + 1);
    let prefix = url::Url::parse(&location[..split]).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let glob = glob::Pattern::new(&location[split..]).map_err(|e| DataFusionError::External(Box::new(e)))?;
    ListingTableUrl::try_new(prefix, Some(glob))
}

fn listing_location(location: &str) -> String {
    if !location.contains("://") && std::path::Path::new(location).is_dir() && !location.ends_with('/') {
        format!("{location}/")
    } else {
        location.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_locations_split_their_glob_off() {
        let url = listing_url("s3://lake/bronze/orders/*.jsonl.gz").unwrap();
        assert_eq!(url.as_str(), "s3://lake/bronze/orders/");
        assert!(url.contains(
            &object_store::path::Path::from("bronze/orders/2024-01-01.jsonl.gz"),
            false
        ));
        assert!(!url.contains(&object_store::path::Path::from("bronze/orders/2024-01-01.csv"), false));
        let deep = listing_url("gs://lake/bronze/2024-*/orders.parquet").unwrap();
        assert_eq!(deep.as_str(), "gs://lake/bronze/");
        assert!(deep.contains(&object_store::path::Path::from("bronze/2024-01/orders.parquet"), false));
        let plain = listing_url("s3://lake/bronze/orders/").unwrap();
        assert_eq!(plain.as_str(), "s3://lake/bronze/orders/");
    }
}
