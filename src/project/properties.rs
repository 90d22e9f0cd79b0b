//! Properties files (`models/**/*.yml`) in dbt's `version: 2` format:
//! models, seeds and sources with their descriptions, columns, config and
//! data tests. Unknown keys are errors: a typo here is otherwise silently
//! ignored, which is the complaint dbt users voice most.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

// Every key dbt accepts is declared, so that unknown keys can be errors;
// some are read by later stages only.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertiesFile {
    #[serde(default)]
    pub version: Option<Value>,
    #[serde(default)]
    pub models: Vec<ModelProperties>,
    #[serde(default)]
    pub seeds: Vec<ModelProperties>,
    #[serde(default)]
    pub sources: Vec<SourceProperties>,
    // Accepted for dbt compatibility; etl has no use for them yet.
    #[serde(default)]
    pub macros: Option<Value>,
    #[serde(default)]
    pub snapshots: Vec<ModelProperties>,
    #[serde(default)]
    pub analyses: Option<Spanned<Value>>,
    #[serde(default)]
    pub exposures: Vec<ExposureProperties>,
    #[serde(default)]
    pub metrics: Option<Spanned<Value>>,
    #[serde(default)]
    pub semantic_models: Option<Spanned<Value>>,
    #[serde(default)]
    pub saved_queries: Option<Spanned<Value>>,
    #[serde(default)]
    pub groups: Option<Value>,
    #[serde(default)]
    pub unit_tests: Vec<UnitTestProperties>,
    #[serde(default)]
    pub data_tests: Option<Value>,
    #[serde(default)]
    pub functions: Option<Value>,
}

/// Config written in YAML: each key keeps its position for typo errors.
pub type ConfigMap = BTreeMap<String, Spanned<Value>>;

/// A model's (or a seed's) entry in a properties file.
// Every key dbt accepts is declared, so that unknown keys can be errors;
// some are read by later stages only.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProperties {
    pub name: Spanned<String>,
    /// A snapshot's: the `ref()` or `source()` it snapshots (dbt 1.9).
    #[serde(default)]
    pub relation: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub columns: Vec<ColumnProperties>,
    #[serde(default)]
    pub tests: Vec<Spanned<Value>>,
    #[serde(default)]
    pub data_tests: Vec<Spanned<Value>>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub docs: Option<Value>,
    #[serde(default)]
    pub access: Option<Value>,
    #[serde(default)]
    pub group: Option<Value>,
    #[serde(default)]
    pub latest_version: Option<Value>,
    #[serde(default)]
    pub versions: Option<Spanned<Value>>,
    #[serde(default)]
    pub constraints: Option<Spanned<Value>>,
    #[serde(default)]
    pub deprecation_date: Option<Value>,
    #[serde(default)]
    pub time_spine: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnProperties {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub data_type: Option<String>,
    /// Moved into the project's data tests when the project loads.
    #[serde(default, skip_serializing)]
    pub tests: Vec<Spanned<Value>>,
    #[serde(default, skip_serializing)]
    pub data_tests: Vec<Spanned<Value>>,
    #[serde(default)]
    pub constraints: Option<Value>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub tags: Option<Value>,
    #[serde(default)]
    pub quote: Option<Value>,
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub granularity: Option<Value>,
    #[serde(default)]
    pub policy_tags: Option<Value>,
}

/// A source: a group of external tables. `location`, `format` and
/// `options` set here are defaults for its tables.
// Every key dbt accepts is declared, so that unknown keys can be errors;
// some are read by later stages only.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceProperties {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub database: Option<Value>,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub loader: Option<Value>,
    #[serde(default)]
    pub loaded_at_field: Option<Value>,
    #[serde(default)]
    pub freshness: Option<Value>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub tags: Option<Value>,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub quoting: Option<Value>,
    #[serde(default)]
    pub overrides: Option<Value>,
    /// A folder (path or URL) under which each table is a sub-folder named
    /// after it, unless the table gives its own location.
    #[serde(default)]
    pub location: Option<Spanned<String>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    #[serde(default)]
    pub tables: Vec<SourceTableProperties>,
}

// Every key dbt accepts is declared, so that unknown keys can be errors;
// some are read by later stages only.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTableProperties {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub loaded_at_field: Option<Value>,
    /// `Some(Null)` when written `freshness: null`, which turns off the
    /// source's freshness for this table.
    #[serde(default, deserialize_with = "present")]
    pub freshness: Option<Value>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub tags: Option<Value>,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub quoting: Option<Value>,
    #[serde(default)]
    pub columns: Vec<ColumnProperties>,
    #[serde(default)]
    pub tests: Vec<Spanned<Value>>,
    #[serde(default)]
    pub data_tests: Vec<Spanned<Value>>,
    /// Path or URL of the files, globs allowed (`lake/bronze/orders/*.jsonl`).
    #[serde(default)]
    pub location: Option<Spanned<String>>,
    /// `parquet`, `csv`, `json` (newline-delimited) or `delta`.
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    /// dbt-external-tables' spelling of the same three settings.
    #[serde(default)]
    pub external: Option<ExternalProperties>,
}

// Every key dbt accepts is declared, so that unknown keys can be errors;
// some are read by later stages only.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalProperties {
    #[serde(default)]
    pub location: Option<Spanned<String>>,
    #[serde(default)]
    pub file_format: Option<Spanned<String>>,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    #[serde(default)]
    pub partitions: Option<Value>,
}

/// A key that is present, even with a null value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A unit test's entry, as written.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitTestProperties {
    pub name: Spanned<String>,
    pub model: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Required, as in dbt (`given: []` for a model that reads nothing).
    pub given: Vec<GivenProperties>,
    pub expect: RowsProperties,
    #[serde(default)]
    pub overrides: Option<OverridesProperties>,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub versions: Option<Spanned<Value>>,
}

/// A `given` entry: an input and its rows (the keys of
/// [`RowsProperties`], written out: serde's `flatten` cannot deny unknown
/// keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GivenProperties {
    pub input: Spanned<String>,
    #[serde(default)]
    pub rows: Option<Spanned<Value>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub fixture: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsProperties {
    #[serde(default)]
    pub rows: Option<Spanned<Value>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub fixture: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridesProperties {
    #[serde(default)]
    pub macros: Map<String, Value>,
    #[serde(default)]
    pub vars: Map<String, Value>,
    #[serde(default)]
    pub env_vars: Map<String, Value>,
}

/// An exposure's entry, as written.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureProperties {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub owner: Spanned<Value>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub maturity: Option<Spanned<String>>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub tags: Option<Value>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub config: ConfigMap,
}
