//! Node config. What the project file's trees, properties files and
//! `{{ config(...) }}` calls set is merged in that order into a
//! [`RawConfig`] (each key with the place that set it last), then checked
//! once, when the DAG is built, into the typed [`Config`] every later stage
//! reads. A wrong key or value is an error at the line that set it, so
//! `etl compile` and `etl ls` report it as well as `etl build`.
//!
//! A foundation below the stages: it uses only [`crate::diagnostic`] and
//! [`crate::lake`].

mod data_test;
mod export;
mod incremental;
mod notify;
mod raw;
mod snapshot;

use std::collections::BTreeMap;

use deltalake::parquet::basic::Compression;
use serde_json::Value;

pub use data_test::{TestConfig, Threshold};
pub use export::{ExportConfig, ExportFormat};
pub use incremental::{BatchSize, Incremental, MergeSettings, MicrobatchConfig, OnSchemaChange, Strategy, parse_time};
pub use notify::{Channel, ChannelKind, Email, Event, Figure, Notify, Secret, Tls, Webhook, parse_notify};
pub use raw::{RawConfig, string_list};
pub use snapshot::{CheckColumns, HardDeletes, MetaColumns, Snapshot, SnapshotStrategy};

use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::lake::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Seed,
    Source,
    Model,
    Test,
    Snapshot,
    #[serde(rename = "unit_test")]
    UnitTest,
    Exposure,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Seed => "seed",
            ResourceType::Source => "source",
            ResourceType::Model => "model",
            ResourceType::Test => "test",
            ResourceType::Snapshot => "snapshot",
            ResourceType::UnitTest => "unit_test",
            ResourceType::Exposure => "exposure",
        }
    }
}

/// How a node is written to the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Materialization {
    Table,
    View,
    Ephemeral,
    Incremental,
    Seed,
    /// Sources are read, never written.
    External,
    /// Data tests: queried, written only to store their failures.
    Test,
    /// Snapshots: each run adds the query's changed rows as new versions.
    Snapshot,
    /// Unit tests: a model's SQL run on mocked rows, in memory.
    Unit,
    /// Exposures: what reads the project from outside; never built.
    Exposure,
}

impl Materialization {
    pub const MODEL_NAMES: &[&str] = &["table", "view", "ephemeral", "incremental"];

    pub fn as_str(self) -> &'static str {
        match self {
            Materialization::Table => "table",
            Materialization::View => "view",
            Materialization::Ephemeral => "ephemeral",
            Materialization::Incremental => "incremental",
            Materialization::Seed => "seed",
            Materialization::External => "external",
            Materialization::Test => "test",
            Materialization::Snapshot => "snapshot",
            Materialization::Unit => "unit",
            Materialization::Exposure => "exposure",
        }
    }

    fn of_model(name: &str) -> Option<Materialization> {
        Some(match name {
            "table" => Materialization::Table,
            "view" => Materialization::View,
            "ephemeral" => Materialization::Ephemeral,
            "incremental" => Materialization::Incremental,
            _ => return None,
        })
    }
}

/// `ingest`: which of a file source's files an incremental model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// The files no earlier build ingested (the default).
    NewFiles,
    /// Every file, every build (`ingest: all_files`).
    AllFiles,
}

/// A source's `freshness`, with its periods in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub warn_after: Option<f64>,
    pub error_after: Option<f64>,
    /// `filter`: a SQL condition on the rows whose newest counts.
    pub filter: Option<String>,
    /// As written, for `sources.json`.
    pub criteria: Value,
}

/// A model's hooks, as rendered SQL is later made of them: each a template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hooks {
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre.is_empty() && self.post.is_empty()
    }
}

/// A node's config, checked.
#[derive(Debug, Clone)]
pub struct Config {
    raw: RawConfig,
    pub materialized: Materialization,
    pub tags: Vec<String>,
    /// `full_refresh: false` keeps an incremental model's table through
    /// `--full-refresh`.
    pub full_refresh: Option<bool>,
    /// Set for incremental models.
    pub incremental: Option<Incremental>,
    /// `target_file_size` and `parquet_compression`.
    pub layout: Layout,
    /// The column that places each row in time, for microbatch models
    /// reading this node.
    pub event_time: Option<String>,
    pub contract_enforced: bool,
    pub sql_header: Option<String>,
    /// A seed's `column_types`: column name to SQL type.
    pub column_types: BTreeMap<String, String>,
    pub exports: Vec<ExportConfig>,
    pub reject_reason_column: Option<String>,
    pub ingest: IngestMode,
    /// `audit: true`: write, test, then publish.
    pub audit: bool,
    /// Set for data tests.
    pub test: Option<TestConfig>,
    /// Set for snapshots.
    pub snapshot: Option<Snapshot>,
    /// Set for sources that declare one.
    pub freshness: Option<Freshness>,
    /// `pre_hook`/`post_hook` (or `pre-hook`/`post-hook`): SQL run before
    /// and after the model is built, rendered with the model's context.
    pub hooks: Hooks,
    pub loaded_at_field: Option<String>,
    /// dbt keys set here that etl accepts but does not act on, each at
    /// its key.
    pub warnings: Vec<Diagnostic>,
}

/// What a config is checked for.
pub struct Scope<'a> {
    pub resource: ResourceType,
    pub name: &'a str,
    /// Where an error about a key goes when the key's own place is not
    /// known.
    pub fallback: Span,
    /// A generic test (with a tested relation to take percentages of).
    pub generic_test: bool,
    /// The strategy of an incremental model with a `unique_key` and none
    /// named: `merge`, or `delete+insert` as dbt-duckdb has it.
    pub keyed_default: Strategy,
}

impl Config {
    /// Checks `raw` for a node. Every problem is reported, each at the key
    /// that caused it.
    pub fn check(raw: RawConfig, scope: &Scope<'_>) -> Result<Config, Vec<Diagnostic>> {
        let mut c = Checker {
            raw: &raw,
            name: scope.name,
            fallback: scope.fallback.clone(),
            errors: Vec::new(),
            warnings: Vec::new(),
            keyed_default: scope.keyed_default.clone(),
        };
        c.unsupported();
        let materialized = match scope.resource {
            ResourceType::Seed => Some(Materialization::Seed),
            ResourceType::Source => Some(Materialization::External),
            ResourceType::Test => Some(Materialization::Test),
            ResourceType::Snapshot => Some(Materialization::Snapshot),
            ResourceType::UnitTest => Some(Materialization::Unit),
            ResourceType::Exposure => Some(Materialization::Exposure),
            ResourceType::Model => c.materialization(),
        };
        let tags = c.key_list("tags");
        let full_refresh = c.flag("full_refresh");
        let incremental = match materialized {
            Some(Materialization::Incremental) => incremental::incremental(&mut c).map(Some),
            _ => {
                c.merge_keys_unused("it is not an incremental model");
                Some(None)
            }
        };
        let layout = c.layout();
        let event_time = c.string("event_time");
        let contract_enforced = c.contract();
        let sql_header = c.sql_header(materialized);
        let column_types = c.column_types();
        let external = c.raw.value("materialized").and_then(Value::as_str) == Some("external")
            && scope.resource == ResourceType::Model;
        let exports = match (export::exports(&mut c), external) {
            (Some(mut exports), true) => export::external_model(&mut c).map(|e| {
                exports.push(e);
                exports
            }),
            (exports, _) => exports,
        };
        let reject_reason_column = c.string("reject_reason_column");
        let ingest = match c.choice("ingest", &["new_files", "all_files"]) {
            Some(Some("all_files")) => Some(IngestMode::AllFiles),
            Some(_) => Some(IngestMode::NewFiles),
            None => None,
        };
        let audit = c.flag("audit");
        let test = match scope.resource {
            ResourceType::Test => data_test::test_config(&mut c, scope.generic_test).map(Some),
            _ => Some(None),
        };
        let snapshot = match scope.resource {
            ResourceType::Snapshot => snapshot::snapshot(&mut c).map(Some),
            _ => Some(None),
        };
        let freshness = c.freshness();
        let loaded_at_field = c.string("loaded_at_field");
        let hooks = c.hooks(scope.resource);
        let (errors, warnings) = (c.errors, c.warnings);
        // Each part is `None` only when it recorded why; problems that leave
        // every value readable (a refused key) stop the node too.
        let config = (move || {
            Some(Config {
                raw,
                materialized: materialized?,
                tags: tags?,
                full_refresh: full_refresh?,
                incremental: incremental?,
                layout: layout?,
                event_time: event_time?,
                contract_enforced: contract_enforced?,
                sql_header: sql_header?,
                column_types: column_types?,
                exports: exports?,
                reject_reason_column: reject_reason_column?,
                ingest: ingest?,
                audit: audit?.unwrap_or(false),
                test: test?,
                snapshot: snapshot?,
                freshness: freshness?,
                loaded_at_field: loaded_at_field?,
                hooks: hooks?,
                warnings,
            })
        })();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(errors),
        }
    }

    /// The config as written: for the manifest, `config.get()` in
    /// templates and `config.<key>:` selectors.
    pub fn raw(&self) -> &RawConfig {
        &self.raw
    }

    /// The config as the manifest shows it (and state comparison reads
    /// it): as written, with the materialization it resolved to.
    pub fn manifest_value(&self) -> Value {
        let mut values = self.raw.values().clone();
        values.insert("materialized".into(), Value::from(self.materialized.as_str()));
        // Hooks as dbt lists them: `{sql, transaction, index}` under
        // `pre-hook`/`post-hook`, whichever spelling set them.
        let hooks = |list: &[String]| {
            Value::Array(
                list.iter()
                    .enumerate()
                    .map(|(i, sql)| serde_json::json!({"sql": sql, "transaction": true, "index": i}))
                    .collect(),
            )
        };
        for key in ["pre_hook", "post_hook", "pre-hook", "post-hook"] {
            values.remove(key);
        }
        values.insert("pre-hook".into(), hooks(&self.hooks.pre));
        values.insert("post-hook".into(), hooks(&self.hooks.post));
        values.insert("enabled".into(), Value::Bool(true));
        values.insert("tags".into(), serde_json::json!(self.tags));
        Value::Object(values)
    }
}

/// Reads keys of one raw config, recording each problem at its key.
pub(crate) struct Checker<'a> {
    pub(super) raw: &'a RawConfig,
    name: &'a str,
    fallback: Span,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    keyed_default: Strategy,
}

/// dbt-duckdb's own merge keys, which change what a merge writes: etl does
/// not take them yet, so they are errors rather than custom keys.
const REFUSED_KEYS: &[&str] = &[
    "merge_update_condition",
    "merge_insert_condition",
    "merge_update_set_expressions",
    "merge_on_using_columns",
    "merge_clauses",
    "merge_returning_columns",
];

/// Keys of the merge strategy: on a model that is not an incremental
/// merge they do nothing, said as a warning at the key (dbt ignores them).
const MERGE_KEYS: [&str; 3] = [
    "incremental_predicates",
    "merge_update_columns",
    "merge_exclude_columns",
];

/// dbt config keys that change nothing in a lake etl writes: said once, at
/// the key.
const IGNORED_KEYS: &[(&str, &str)] = &[
    ("grants", "a lake has no grants: `grants` is ignored"),
    (
        "persist_docs",
        "descriptions are kept in the manifest; `persist_docs` is ignored",
    ),
    ("database", "etl writes one lake: `database` is ignored"),
    ("target_database", "etl writes one lake: `target_database` is ignored"),
    ("quoting", "etl quotes every name it writes: `quoting` is ignored"),
];

impl Checker<'_> {
    /// dbt's keys that etl refuses or ignores, each said at its key.
    fn unsupported(&mut self) {
        let set = |key: &str| {
            self.raw
                .value(key)
                .is_some_and(|v| !v.is_null() && v != &Value::Array(vec![]))
        };
        let refused: Vec<_> = REFUSED_KEYS.iter().filter(|k| set(k)).collect();
        let ignored: Vec<_> = IGNORED_KEYS.iter().filter(|(k, _)| set(k)).collect();
        for key in refused {
            let diag = Diagnostic::error(
                Code::Unsupported,
                format!("`{key}` (dbt-duckdb's merge) is not supported by etl yet"),
            )
            .with_span(Some(self.span(key)))
            .with_help(
                "etl's merge takes `unique_key`, `merge_update_columns`, `merge_exclude_columns` and \
                 `incremental_predicates`",
            );
            self.errors.push(diag);
        }
        for (key, why) in ignored {
            let diag = Diagnostic::warning(Code::Unsupported, why.to_string()).with_span(Some(self.span(key)));
            self.warnings.push(diag);
        }
    }

    fn span(&self, key: &str) -> Span {
        self.raw.span(key).cloned().unwrap_or_else(|| self.fallback.clone())
    }

    /// A warning at each merge key set on a model that does not merge.
    fn merge_keys_unused(&mut self, why: &str) {
        for key in MERGE_KEYS {
            if self.raw.value(key).is_some_and(|v| !v.is_null()) {
                let diag = Diagnostic::warning(Code::Unsupported, format!("`{key}` does nothing here: {why}"))
                    .with_span(Some(self.span(key)));
                self.warnings.push(diag);
            }
        }
    }

    fn fail(&mut self, key: &str, message: String) {
        let diag = Diagnostic::error(Code::InvalidConfig, message).with_span(Some(self.span(key)));
        self.errors.push(diag);
    }

    fn fail_with_help(&mut self, key: &str, message: String, help: &str) {
        let diag = Diagnostic::error(Code::InvalidConfig, message)
            .with_span(Some(self.span(key)))
            .with_help(help);
        self.errors.push(diag);
    }

    /// A string, if set. `None` when it is set to something else.
    fn string(&mut self, key: &str) -> Option<Option<String>> {
        match self.raw.value(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(other) => {
                let message = format!("`{key}` must be a string, not `{other}`");
                self.fail(key, message);
                None
            }
        }
    }

    /// A scalar as text (`warn_if: 10` is `10`).
    fn text(&mut self, key: &str) -> Option<Option<String>> {
        match self.raw.value(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(Some(v.to_string())),
            Some(other) => {
                let message = format!("`{key}` must be a single value, not `{other}`");
                self.fail(key, message);
                None
            }
        }
    }

    fn flag(&mut self, key: &str) -> Option<Option<bool>> {
        match self.raw.value(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::Bool(b)) => Some(Some(*b)),
            Some(other) => {
                let message = format!("`{key}` is true or false, not `{other}`");
                self.fail(key, message);
                None
            }
        }
    }

    fn whole_number(&mut self, key: &str) -> Option<Option<u64>> {
        match self.raw.value(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => match v.as_u64() {
                Some(n) => Some(Some(n)),
                None => {
                    let message = format!("`{key}` must be a whole number, not `{v}`");
                    self.fail(key, message);
                    None
                }
            },
        }
    }

    /// One of `choices`, if set.
    fn choice(&mut self, key: &str, choices: &[&'static str]) -> Option<Option<&'static str>> {
        let text = self.string(key)?;
        let Some(text) = text else { return Some(None) };
        if let Some(found) = choices.iter().find(|c| **c == text) {
            return Some(Some(*found));
        }
        let mut diag = Diagnostic::error(Code::InvalidConfig, format!("unknown {key} `{text}`"))
            .with_span(Some(self.span(key)))
            .with_note(format!("`{key}` is one of: {}", choices.join(", ")));
        if let Some(best) = did_you_mean(&text, choices.iter().copied()) {
            diag = diag.with_help(format!("did you mean `{best}`?"));
        }
        self.errors.push(diag);
        None
    }

    /// A list of names (columns, tags): a string or a list of strings.
    fn key_list(&mut self, key: &str) -> Option<Vec<String>> {
        match self.raw.value(key) {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(value) => match incremental::key_list(value) {
                Ok(list) => Some(list),
                Err(problem) => {
                    let message = format!("`{key}` {problem}");
                    self.fail(key, message);
                    None
                }
            },
        }
    }

    /// `pre_hook` and `post_hook`: each a SQL template, a list of them, or
    /// `{sql: ..., transaction: ...}` as dbt also takes them.
    fn hooks(&mut self, resource: ResourceType) -> Option<Hooks> {
        let mut hooks = Hooks::default();
        for key in ["pre_hook", "post_hook"] {
            let items = match self.raw.value(key) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) => items.clone(),
                Some(other) => vec![other.clone()],
            };
            if !matches!(
                resource,
                ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
            ) {
                let message = format!(
                    "`{key}`: etl runs hooks around models, snapshots and seeds, not {}s",
                    resource.as_str()
                );
                self.fail(key, message);
                return None;
            }
            for item in items {
                let sql = match &item {
                    Value::String(sql) => Some(sql.clone()),
                    Value::Object(map) => map.get("sql").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                };
                let Some(sql) = sql else {
                    self.fail(
                        key,
                        format!("`{key}` is SQL, a list of SQL, or `{{sql: ...}}`; got {item}"),
                    );
                    return None;
                };
                if sql.trim().is_empty() {
                    continue;
                }
                if key == "pre_hook" {
                    &mut hooks.pre
                } else {
                    &mut hooks.post
                }
                .push(sql);
            }
        }
        Some(hooks)
    }

    fn materialization(&mut self) -> Option<Materialization> {
        let name = self.string("materialized")?.unwrap_or_else(|| "view".into());
        if let Some(m) = Materialization::of_model(&name) {
            return Some(m);
        }
        // dbt-duckdb's `external`: a table whose rows are also written to
        // a file (see `export::external_model`).
        if name == "external" {
            return Some(Materialization::Table);
        }
        let model = self.name;
        let diag = Diagnostic::error(
            Code::UnknownMaterialization,
            format!("unknown materialization `{name}` for model `{model}`"),
        )
        .with_span(Some(self.span("materialized")))
        .with_suggestion(&name, Materialization::MODEL_NAMES.iter().copied())
        .with_note("materializations: table, view, ephemeral, incremental, external (dbt-duckdb's)");
        self.errors.push(diag);
        None
    }

    /// `target_file_size` (bytes, or a size such as `'8MiB'`) and
    /// `parquet_compression`.
    fn layout(&mut self) -> Option<Layout> {
        let name = self.name;
        let compression = match self.raw.value("parquet_compression") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => match compression(text) {
                Ok(c) => Some(c),
                Err(problem) => {
                    self.fail("parquet_compression", format!("model `{name}`: {problem}"));
                    return None;
                }
            },
            Some(other) => {
                let message = format!("model `{name}`: `parquet_compression` must be a string, not {other}");
                self.fail("parquet_compression", message);
                return None;
            }
        };
        let text = match self.raw.value("target_file_size") {
            None | Some(Value::Null) => {
                return Some(Layout {
                    file_size: None,
                    compression,
                });
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let file_size = match parse_size(&text) {
            Ok(bytes) => std::num::NonZeroU64::new(bytes as u64),
            Err(e) => {
                self.fail("target_file_size", format!("model `{name}`: `target_file_size`: {e}"));
                return None;
            }
        };
        if file_size.is_none() {
            let message = format!("model `{name}`: `target_file_size` must be more than 0 bytes");
            self.fail("target_file_size", message);
            return None;
        }
        Some(Layout { file_size, compression })
    }

    /// `contract: {enforced: true}` (or `contract: true`).
    fn contract(&mut self) -> Option<bool> {
        match self.raw.value("contract") {
            None | Some(Value::Null) => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::Object(c)) => match c.get("enforced") {
                None | Some(Value::Null) => Some(false),
                Some(Value::Bool(b)) => Some(*b),
                Some(other) => {
                    let message = format!("`contract.enforced` is true or false, not `{other}`");
                    self.fail("contract", message);
                    None
                }
            },
            Some(other) => {
                let message = format!("`contract` is `{{enforced: true}}` or `{{enforced: false}}`, not `{other}`");
                self.fail("contract", message);
                None
            }
        }
    }

    /// `sql_header`: only a table's or incremental model's own query has
    /// one to apply to.
    fn sql_header(&mut self, materialized: Option<Materialization>) -> Option<Option<String>> {
        let header = self.string("sql_header")?;
        match (header, materialized) {
            (Some(_), Some(m)) if !matches!(m, Materialization::Table | Materialization::Incremental) => {
                let message = format!(
                    "model `{}`: `sql_header` applies to the query of a table or incremental model; a {} has \
                     none of its own (the models reading it plan its SQL)",
                    self.name,
                    m.as_str()
                );
                self.fail("sql_header", message);
                None
            }
            (header, _) => Some(header),
        }
    }

    fn column_types(&mut self) -> Option<BTreeMap<String, String>> {
        match self.raw.value("column_types") {
            None | Some(Value::Null) => Some(BTreeMap::new()),
            Some(Value::Object(map)) => {
                let types: Option<BTreeMap<String, String>> = map
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect();
                if types.is_none() {
                    self.fail(
                        "column_types",
                        "`column_types` must map column names to SQL types".into(),
                    );
                }
                types
            }
            Some(_) => {
                self.fail(
                    "column_types",
                    "`column_types` must map column names to SQL types".into(),
                );
                None
            }
        }
    }

    /// `freshness: {warn_after: {count: 12, period: hour}, error_after: …,
    /// filter: …}`; `freshness: null` turns it off.
    fn freshness(&mut self) -> Option<Option<Freshness>> {
        let value = match self.raw.value("freshness") {
            None | Some(Value::Null) => return Some(None),
            Some(value) => value.clone(),
        };
        let period = |key: &str| -> Result<Option<f64>, String> {
            let Some(value) = value.get(key).filter(|v| !v.is_null()) else {
                return Ok(None);
            };
            let count = value
                .get("count")
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("`{key}`: `{value}` needs a numeric `count`"))?;
            let unit = match value.get("period").and_then(Value::as_str) {
                Some("minute") => 60.0,
                Some("hour") => 3600.0,
                Some("day") => 86400.0,
                other => {
                    return Err(format!(
                        "`{key}`: `period` is minute, hour or day, not `{}`",
                        other.unwrap_or("missing")
                    ));
                }
            };
            Ok(Some(count * unit))
        };
        let checked = (|| {
            let warn_after = period("warn_after")?;
            let error_after = period("error_after")?;
            if warn_after.is_none() && error_after.is_none() {
                return Err("`freshness` sets neither `warn_after` nor `error_after`".to_owned());
            }
            let filter = match value.get("filter") {
                None | Some(Value::Null) => None,
                Some(Value::String(f)) => Some(f.clone()),
                Some(other) => return Err(format!("`freshness.filter` must be a string, not `{other}`")),
            };
            Ok(Freshness {
                warn_after,
                error_after,
                filter,
                criteria: value.clone(),
            })
        })();
        match checked {
            Ok(freshness) => Some(Some(freshness)),
            Err(problem) => {
                let message = format!("source `{}`: {problem}", self.name);
                self.fail("freshness", message);
                None
            }
        }
    }
}

/// A string or a list of strings; anything else is named in the error.
fn string_or_list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("must list names, and `{other}` is not one")),
            })
            .collect(),
        other => Err(format!("must be a name or a list of names, not `{other}`")),
    }
}

/// The codecs `parquet_compression` takes.
const CODECS: &[&str] = &["snappy", "lz4", "zstd", "gzip", "none"];

/// `parquet_compression`: `snappy` (Delta's default), `lz4` (Parquet's
/// LZ4_RAW), `zstd` or `zstd(1..22)`, `gzip` or `gzip(0..9)`, `none`.
fn compression(text: &str) -> Result<Compression, String> {
    let text = text.trim().to_lowercase();
    let (codec, level) = match text.split_once('(') {
        Some((codec, rest)) => (codec.trim(), Some(rest.trim_end_matches(')').trim())),
        None => (text.as_str(), None),
    };
    Ok(match (codec, level) {
        ("snappy", None) => Compression::SNAPPY,
        ("lz4" | "lz4_raw", None) => Compression::LZ4_RAW,
        ("none" | "uncompressed", None) => Compression::UNCOMPRESSED,
        ("zstd", None) => Compression::ZSTD(Default::default()),
        ("gzip", None) => Compression::GZIP(Default::default()),
        ("zstd" | "gzip", Some(level)) => format!("{}({level})", codec.to_uppercase())
            .parse()
            .map_err(|e| format!("`parquet_compression` `{text}`: {e}"))?,
        _ => {
            let hint = did_you_mean(codec, CODECS.iter().copied())
                .map(|best| format!(" (did you mean `{best}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "unknown `parquet_compression` `{text}`{hint}; use one of {}",
                CODECS.join(", ")
            ));
        }
    })
}

/// A size as users write one: `2GiB`, `512MiB`, `1.5GB`, or bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as `2GiB`"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit `{other}` in `{text}`; use KiB, MiB, GiB")),
    };
    Ok((number * factor) as usize)
}

/// Whether a config key is one etl knows (with or without dbt's `+`).
pub fn is_known_key(key: &str) -> bool {
    KNOWN_KEYS.contains(&key.trim_start_matches('+'))
}

/// A diagnostic when `key` is not a known config key but is close to one.
pub fn key_typo(key: &str) -> Option<Diagnostic> {
    let bare = key.trim_start_matches('+');
    if KNOWN_KEYS.contains(&bare) {
        return None;
    }
    let best = did_you_mean(bare, KNOWN_KEYS.iter().copied()).filter(|best| strsim::levenshtein(bare, best) <= 2)?;
    Some(
        Diagnostic::error(Code::UnknownConfig, format!("unknown config key `{bare}`"))
            .with_help(format!("did you mean `{best}`?")),
    )
}

/// Config keys etl knows. Other keys are allowed (dbt lets projects carry
/// their own), but a key one typo away from a known one is an error.
const KNOWN_KEYS: &[&str] = &[
    "materialized",
    "schema",
    "alias",
    "database",
    "tags",
    "enabled",
    "meta",
    "docs",
    "persist_docs",
    "full_refresh",
    "unique_key",
    "incremental_strategy",
    "on_schema_change",
    "partition_by",
    "cluster_by",
    "target_file_size",
    "parquet_compression",
    "event_time",
    "batch_size",
    "begin",
    "lookback",
    "concurrent_batches",
    "contract",
    "grants",
    "pre-hook",
    "post-hook",
    "pre_hook",
    "post_hook",
    "column_types",
    "quote_columns",
    "delimiter",
    "sql_header",
    "access",
    "group",
    "export",
    "reject_reason_column",
    "ingest",
    "severity",
    "store_failures",
    "where",
    "limit",
    "warn_if",
    "error_if",
    "fail_calc",
    "loaded_at_field",
    "freshness",
    "quoting",
    "file_format",
    "location",
    "audit",
    "source_files",
    "external_location",
    "incremental_predicates",
    "merge_update_columns",
    "merge_exclude_columns",
    "merge_update_condition",
    "merge_insert_condition",
    "merge_update_set_expressions",
    "merge_on_using_columns",
    "merge_clauses",
    "merge_returning_columns",
    "format",
    "delimiter",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(resource: ResourceType) -> Scope<'static> {
        Scope {
            resource,
            name: "m",
            fallback: Span::file("models/m.sql"),
            generic_test: true,
            keyed_default: Strategy::Merge,
        }
    }

    fn raw(json: serde_json::Value) -> RawConfig {
        let Value::Object(map) = json else { panic!("an object") };
        RawConfig::from_values(map, |k| Some(Span::new("models/m.sql", 1, k.len(), k.len())))
    }

    #[test]
    fn a_misspelt_strategy_is_an_error_at_its_key() {
        let errors = Config::check(
            raw(serde_json::json!({"materialized": "incremental", "incremental_strategy": "merg", "unique_key": "id"})),
            &scope(ResourceType::Model),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "unknown incremental_strategy `merg`");
        assert_eq!(errors[0].help, ["did you mean `merge`?"]);
        assert_eq!(
            errors[0].span.as_ref().map(|s| s.col),
            Some("incremental_strategy".len())
        );
    }

    #[test]
    fn a_key_list_with_a_number_is_an_error_not_a_shorter_list() {
        let errors = Config::check(
            raw(serde_json::json!({"materialized": "incremental", "unique_key": ["a", 1]})),
            &scope(ResourceType::Model),
        )
        .unwrap_err();
        assert_eq!(errors[0].message, "`unique_key` must list names, and `1` is not one");
    }

    #[test]
    fn every_wrong_key_is_reported_at_once() {
        let errors = Config::check(
            raw(serde_json::json!({"materialized": "tabel", "audit": "yes", "export": "xlsx"})),
            &scope(ResourceType::Model),
        )
        .unwrap_err();
        let codes: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            codes,
            [
                "unknown materialization `tabel` for model `m`",
                "unknown export format `xlsx`; use csv, parquet or json",
                "`audit` is true or false, not `\"yes\"`",
            ]
        );
    }

    #[test]
    fn a_microbatch_model_gets_its_windows_typed() {
        let config = Config::check(
            raw(serde_json::json!({
                "materialized": "incremental", "incremental_strategy": "microbatch",
                "event_time": "at", "batch_size": "day", "begin": "2024-01-01", "lookback": 2
            })),
            &scope(ResourceType::Model),
        )
        .unwrap();
        let Some(Incremental {
            strategy: Strategy::Microbatch(batch),
            ..
        }) = config.incremental
        else {
            panic!("a microbatch strategy: {:?}", config.incremental);
        };
        assert_eq!(batch.batch_size, BatchSize::Day);
        assert_eq!(batch.lookback, 2);
        assert_eq!(batch.begin.to_string(), "2024-01-01 00:00:00");
    }

    #[test]
    fn incremental_settings_are_not_required_of_a_table() {
        let config = Config::check(
            raw(serde_json::json!({"materialized": "table", "incremental_strategy": "merge"})),
            &scope(ResourceType::Model),
        )
        .unwrap();
        assert_eq!(config.materialized, Materialization::Table);
        assert_eq!(config.incremental, None);
    }

    #[test]
    fn hooks_accumulate_from_every_level_in_both_spellings() {
        let mut config = raw(serde_json::json!({"materialized": "table", "pre-hook": "select 1"}));
        config.merge(raw(
            serde_json::json!({"pre_hook": ["select 2", {"sql": "select 3", "transaction": false}]}),
        ));
        config.merge(raw(serde_json::json!({"post-hook": "delete from t"})));
        let config = Config::check(config, &scope(ResourceType::Model)).unwrap();
        assert_eq!(config.hooks.pre, ["select 1", "select 2", "select 3"]);
        assert_eq!(config.hooks.post, ["delete from t"]);
        let errors = Config::check(raw(serde_json::json!({"pre_hook": 3})), &scope(ResourceType::Model)).unwrap_err();
        assert_eq!(
            errors[0].message,
            "`pre_hook` is SQL, a list of SQL, or `{sql: ...}`; got 3"
        );
    }

    #[test]
    fn merge_keys_are_checked_and_said_where_they_do_nothing() {
        let merge = |extra: serde_json::Value| {
            let mut values = serde_json::json!({"materialized": "incremental", "unique_key": "id"});
            values
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            Config::check(raw(values), &scope(ResourceType::Model))
        };
        let config = merge(serde_json::json!({
            "merge_update_columns": ["status"],
            "incremental_predicates": "DBT_INTERNAL_DEST.day > '2024-01-01'"
        }))
        .unwrap();
        let settings = &config.incremental.as_ref().unwrap().merge;
        assert_eq!(settings.update_columns, ["status"]);
        assert_eq!(settings.predicates, ["DBT_INTERNAL_DEST.day > '2024-01-01'"]);
        let errors =
            merge(serde_json::json!({"merge_update_columns": ["a"], "merge_exclude_columns": ["b"]})).unwrap_err();
        assert_eq!(
            errors[0].message,
            "model `m`: set `merge_update_columns` or `merge_exclude_columns`, not both"
        );
        let errors =
            merge(serde_json::json!({"incremental_strategy": "delete+insert", "incremental_predicates": ["x > 1"]}))
                .unwrap_err();
        assert_eq!(
            errors[0].message,
            "model `m`: etl takes `incremental_predicates` with the `merge` strategy only, not `delete+insert`"
        );
        let errors = merge(serde_json::json!({"merge_update_condition": "x > 1"})).unwrap_err();
        assert_eq!(
            errors[0].message,
            "`merge_update_condition` (dbt-duckdb's merge) is not supported by etl yet"
        );
        let config = Config::check(
            raw(serde_json::json!({"materialized": "table", "merge_update_columns": ["a"], "grants": {"select": ["bi"]}})),
            &scope(ResourceType::Model),
        )
        .unwrap();
        let warnings: Vec<&str> = config.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            warnings,
            [
                "a lake has no grants: `grants` is ignored",
                "`merge_update_columns` does nothing here: it is not an incremental model"
            ]
        );
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert!(parse_size("lots").is_err());
    }
}
