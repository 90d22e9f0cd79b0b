//! `export`: files a model's table is also written to after each build
//! (CSV, Parquet or JSON lines), for tools that read files, not tables.

use serde_json::Value;

use super::Checker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Parquet,
    Json,
}

impl ExportFormat {
    pub fn parse(name: &str) -> Option<ExportFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "csv" => ExportFormat::Csv,
            "parquet" => ExportFormat::Parquet,
            "json" | "ndjson" | "jsonl" => ExportFormat::Json,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Json => "jsonl",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    pub format: ExportFormat,
    /// Relative to the lake root, or a URL; `exports/<alias>.<ext>` when
    /// not given.
    pub location: Option<String>,
    /// SQL `order by` expressions.
    pub order_by: Option<String>,
    /// A relative location is relative to the project's folder, not the
    /// lake's (dbt-duckdb's `external` models).
    pub project_relative: bool,
    /// Also a copy per build day beside the file:
    /// `exports/kpis_produit/2024-01-31.csv` beside `exports/kpis_produit.csv`.
    pub dated: bool,
}

/// The exports `export` asks for: `csv`, `[csv, parquet]`, or
/// `{format: csv, location: exports/x.csv, order_by: "day", dated: true}`
/// (or a list).
pub(super) fn exports(c: &mut Checker<'_>) -> Option<Vec<ExportConfig>> {
    let value = match c.raw.value("export") {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(value) => value.clone(),
    };
    let help = "write `export: csv`, `export: [csv, parquet]` or `export: {format: csv, location: exports/x.csv, order_by: day, dated: true}`";
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let parsed = export(item);
        match parsed {
            Ok(export) => out.push(export),
            Err(message) => {
                c.fail_with_help("export", message, help);
                return None;
            }
        }
    }
    Some(out)
}

fn export(item: &Value) -> Result<ExportConfig, String> {
    let (format_name, location, order_by, dated) = match item {
        Value::String(f) => (f.clone(), None, None, false),
        Value::Object(map) => {
            if let Some(key) = map
                .keys()
                .find(|k| !matches!(k.as_str(), "format" | "location" | "order_by" | "dated"))
            {
                return Err(format!(
                    "unknown key `{key}` in `export` (its keys: format, location, order_by, dated)"
                ));
            }
            let dated = match map.get("dated") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => return Err(format!("`dated` must be true or false, not `{other}`")),
            };
            let text = |key: &str| match map.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("`{key}` must be a string, not `{other}`")),
            };
            let format = text("format")?.unwrap_or_else(|| "csv".into());
            (format, text("location")?, text("order_by")?, dated)
        }
        other => return Err(format!("`export` cannot be `{other}`")),
    };
    let format = ExportFormat::parse(&format_name)
        .ok_or_else(|| format!("unknown export format `{format_name}`; use csv, parquet or json"))?;
    Ok(ExportConfig {
        format,
        location,
        order_by,
        project_relative: false,
        dated,
    })
}

/// dbt-duckdb's `external` materialization: the model's rows written to
/// `location` (relative to the project, as dbt runs from there; else
/// `<name>.<format>` in the lake, dbt-duckdb's `external_root`), as
/// `format` (else the location's extension, else parquet; csv when a
/// `delimiter` is set).
pub(super) fn external_model(c: &mut Checker<'_>) -> Option<ExportConfig> {
    let location = c.string("location")?;
    let format_name = c.string("format")?;
    let delimiter = c.string("delimiter")?;
    if delimiter.as_deref().is_some_and(|d| d != ",") {
        c.fail(
            "delimiter",
            format!("model `{}`: etl writes external CSV files with `,` only", c.name),
        );
        return None;
    }
    if c.raw
        .value("options")
        .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        c.fail(
            "options",
            format!(
                "model `{}`: the write `options` of an external model are not taken by etl yet",
                c.name
            ),
        );
        return None;
    }
    let from_location = location
        .as_deref()
        .and_then(|l| l.rsplit_once('.'))
        .and_then(|(_, ext)| ExportFormat::parse(ext));
    let format = match format_name.as_deref() {
        Some(name) => match ExportFormat::parse(name) {
            Some(f) => f,
            None => {
                c.fail(
                    "format",
                    format!("unknown external format `{name}`; use csv, parquet or json"),
                );
                return None;
            }
        },
        None if delimiter.is_some() => ExportFormat::Csv,
        None => from_location.unwrap_or(ExportFormat::Parquet),
    };
    let project_relative = location.is_some();
    Some(ExportConfig {
        format,
        location: Some(location.unwrap_or_else(|| {
            format!(
                "{}.{}",
                c.name,
                format_name.as_deref().unwrap_or(match format {
                    ExportFormat::Csv => "csv",
                    ExportFormat::Parquet => "parquet",
                    ExportFormat::Json => "json",
                })
            )
        })),
        order_by: None,
        project_relative,
        dated: false,
    })
}
