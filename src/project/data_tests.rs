//! Data tests as the project declares them: generic tests listed under
//! `tests:` / `data_tests:` in properties files (on a model, seed, source
//! table or column) and singular tests, the `.sql` files of the test paths.
//!
//! Generic tests are named as dbt names them (`unique_orders_order_id`,
//! `accepted_values_orders_status__paid__shipped`), so that `etl ls` and
//! `dbt ls` list the same names for the same project.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::{SourceFile, yaml};
use crate::config::RawConfig;
use crate::diagnostic::{Code, Diagnostic, Span};

/// Keys of a test entry that configure the test rather than being arguments
/// of its macro.
pub const TEST_CONFIG_KEYS: &[&str] = &[
    "severity",
    "tags",
    "enabled",
    "where",
    "limit",
    "warn_if",
    "error_if",
    "fail_calc",
    "store_failures",
    "store_failures_as",
    "meta",
    "database",
    "schema",
    "alias",
];

/// What a generic test is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestTarget {
    Model(String),
    Seed(String),
    Source(String, String),
}

impl TestTarget {
    /// The name dbt uses inside a test's name: the model, or
    /// `source_table` for a source table.
    fn name_part(&self) -> String {
        match self {
            TestTarget::Model(n) | TestTarget::Seed(n) => n.clone(),
            TestTarget::Source(s, t) => format!("{s}_{t}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum TestKind {
    Generic {
        /// The test's name without namespace: its macro is `test_<name>`.
        test_name: String,
        /// `dbt_utils` in `dbt_utils.accepted_range`.
        namespace: Option<String>,
        target: TestTarget,
        column_name: Option<String>,
        /// The macro's arguments, `column_name` and `model` excluded.
        kwargs: Map<String, Value>,
    },
    Singular {
        file: SourceFile,
    },
}

#[derive(Debug, Clone)]
pub struct DataTest {
    /// dbt's name: unique in the project (`unique_orders_order_id`).
    pub name: String,
    /// The name of its files and of its failures table: the name, or when
    /// that is 64 characters or more, dbt's shortened form with an MD5.
    pub alias: String,
    pub kind: TestKind,
    /// severity, where, limit, warn_if, error_if, fail_calc, store_failures,
    /// tags, enabled, meta.
    pub config: RawConfig,
    pub fqn: Vec<String>,
    /// The properties file (generic) or the SQL file (singular).
    pub path: PathBuf,
    /// Where the test is declared.
    pub span: Option<Span>,
    pub description: String,
}

impl DataTest {
    pub fn is_generic(&self) -> bool {
        matches!(self.kind, TestKind::Generic { .. })
    }

    pub fn target(&self) -> Option<&TestTarget> {
        match &self.kind {
            TestKind::Generic { target, .. } => Some(target),
            TestKind::Singular { .. } => None,
        }
    }

    pub fn column_name(&self) -> Option<&str> {
        match &self.kind {
            TestKind::Generic { column_name, .. } => column_name.as_deref(),
            TestKind::Singular { .. } => None,
        }
    }
}

/// The tests of one properties-file entry (a model, seed or source table)
/// and of its columns.
pub fn generic_tests(
    project: &str,
    file: &Path,
    fqn_dirs: &[String],
    target: &TestTarget,
    node_tests: impl IntoIterator<Item = Spanned<Value>>,
    columns: &mut [super::ColumnProperties],
    errors: &mut Vec<Diagnostic>,
) -> Vec<DataTest> {
    let parse = |entry: Spanned<Value>, column: Option<String>, errors: &mut Vec<Diagnostic>| match parse_entry(
        project, file, fqn_dirs, target, column, entry,
    ) {
        Ok(test) => test,
        Err(diag) => {
            errors.push(diag);
            None
        }
    };
    let mut out: Vec<DataTest> = node_tests.into_iter().filter_map(|e| parse(e, None, errors)).collect();
    for column in columns.iter_mut() {
        let entries: Vec<_> = std::mem::take(&mut column.tests)
            .into_iter()
            .chain(std::mem::take(&mut column.data_tests))
            .collect();
        for entry in entries {
            let Some(mut test) = parse(entry, Some(column.name.clone()), errors) else {
                continue;
            };
            // A column's tags go to its tests, as in dbt.
            if let Some(tags) = &column.tags {
                let mut tagged = RawConfig::default();
                tagged.insert("tags", tags.clone(), test.span.clone());
                test.config.merge(tagged);
            }
            out.push(test);
        }
    }
    out
}

/// One entry of a `tests:` list: `unique`, `{accepted_values: {...}}`, or
/// `{name: ..., test_name: ..., ...}`. A disabled test yields `None`.
fn parse_entry(
    project: &str,
    file: &Path,
    fqn_dirs: &[String],
    target: &TestTarget,
    column_name: Option<String>,
    entry: Spanned<Value>,
) -> Result<Option<DataTest>, Diagnostic> {
    let span = yaml::span(file, &entry.referenced);
    let invalid = |message: String| {
        Diagnostic::error(Code::InvalidTest, message)
            .with_span(span.clone())
            .with_help("write `- unique`, or `- accepted_values: {values: [a, b]}` with the test's arguments")
    };
    let (full_test_name, body, custom_name) = match entry.value {
        Value::String(name) => (name, Map::new(), None),
        Value::Object(mut map) => {
            if let Some(test_name) = map.remove("test_name") {
                let Value::String(test_name) = test_name else {
                    return Err(invalid("`test_name` must be a string".into()));
                };
                let custom = map.remove("name").and_then(|v| v.as_str().map(str::to_owned));
                (test_name, map, custom)
            } else if map.len() == 1 {
                let (name, value) = map.into_iter().next().expect("one entry");
                let body = match value {
                    Value::Object(m) => m,
                    Value::Null => Map::new(),
                    other => {
                        return Err(invalid(format!(
                            "the arguments of test `{name}` must be a mapping, not `{other}`"
                        )));
                    }
                };
                (name, body, None)
            } else {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                return Err(invalid(format!(
                    "a test entry names one test, this one has {} keys: {}",
                    keys.len(),
                    keys.join(", ")
                )));
            }
        }
        other => return Err(invalid(format!("a test is a name or a mapping, not `{other}`"))),
    };
    let (namespace, test_name) = match full_test_name.rsplit_once('.') {
        Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
        None => (None, full_test_name.clone()),
    };

    let mut config = Map::new();
    let mut kwargs = Map::new();
    let mut custom_name = custom_name;
    let mut description = String::new();
    for (key, value) in body {
        match key.as_str() {
            "config" => match value {
                Value::Object(m) => config.extend(m),
                _ => {
                    return Err(invalid(format!(
                        "`config` of test `{full_test_name}` must be a mapping"
                    )));
                }
            },
            "arguments" => match value {
                Value::Object(m) => kwargs.extend(m),
                _ => {
                    return Err(invalid(format!(
                        "`arguments` of test `{full_test_name}` must be a mapping"
                    )));
                }
            },
            "name" => custom_name = value.as_str().map(str::to_owned),
            "description" => description = value.as_str().unwrap_or_default().to_owned(),
            "column_name" => {}
            k if TEST_CONFIG_KEYS.contains(&k) => {
                config.insert(key, value);
            }
            _ => {
                kwargs.insert(key, value);
            }
        }
    }
    if let Some(key) = kwargs.keys().find(|k| !is_identifier(k)) {
        return Err(invalid(format!("`{key}` is not a valid argument name")));
    }
    let config = RawConfig::from_values(config, |_| span.clone());
    if !config.enabled() {
        return Ok(None);
    }

    let mut name_prefix = test_name.clone();
    if matches!(target, TestTarget::Source(..)) {
        name_prefix = format!("source_{name_prefix}");
    }
    if let Some(ns) = &namespace {
        name_prefix = format!("{ns}_{name_prefix}");
    }
    let mut name_args = kwargs.clone();
    if let Some(c) = &column_name {
        name_args.insert("column_name".into(), Value::from(c.clone()));
    }
    let (alias, name) = match custom_name {
        Some(custom) => (custom.clone(), custom),
        None => synthesize_name(&name_prefix, &target.name_part(), &name_args),
    };
    let fqn = super::fqn_with(project, fqn_dirs, file, &name);
    Ok(Some(DataTest {
        name,
        alias,
        kind: TestKind::Generic {
            test_name,
            namespace,
            target: target.clone(),
            column_name,
            kwargs,
        },
        config,
        fqn,
        path: file.to_path_buf(),
        span,
        description,
    }))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// dbt's `synthesize_generic_test_names`: `<test>_<target>_<args>`, with
/// the arguments flattened in key order and every run of characters other
/// than letters, digits and `_` turned into `_`; names of 64 characters or
/// more are shortened, for file and table names, to the first 30
/// characters of `<test>_<target>` and an MD5. Returns `(short, full)`.
pub fn synthesize_name(test: &str, target: &str, args: &Map<String, Value>) -> (String, String) {
    let mut keys: Vec<&String> = args.keys().collect();
    keys.sort();
    let mut flat = Vec::new();
    for key in keys {
        match &args[key] {
            Value::Object(map) => flat.extend(map.values().map(python_str)),
            Value::Array(items) => flat.extend(items.iter().map(python_str)),
            other => flat.push(python_str(other)),
        }
    }
    let clean: Vec<String> = flat.iter().map(|s| clean_name_part(s)).collect();
    let identifier = format!("{test}_{target}");
    let full = format!("{identifier}_{}", clean.join("__"));
    if full.len() >= 64 {
        use md5::Digest;
        let digest = md5::Md5::digest(full.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let prefix: String = identifier.chars().take(30).collect();
        (format!("{prefix}_{hex}"), full)
    } else {
        (full.clone(), full)
    }
}

/// How Python's `str()` prints a YAML value, which dbt's names are made of.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("'{k}': {}", python_repr(v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn python_repr(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        other => python_str(other),
    }
}

fn clean_name_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// A singular test: a `.sql` file of the test paths, named after the file.
pub fn singular_test(project: &str, test_dirs: &[String], file: SourceFile) -> DataTest {
    let name = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let fqn = super::fqn_with(project, test_dirs, &file.path, &name);
    DataTest {
        alias: name.clone(),
        name,
        path: file.path.clone(),
        span: Some(Span::file(&file.path)),
        kind: TestKind::Singular { file },
        config: RawConfig::default(),
        fqn,
        description: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn generic_test_names_match_dbt() {
        let full = |t: &str, m: &str, a: Value| synthesize_name(t, m, &args(a)).1;
        assert_eq!(
            full("unique", "orders", json!({"column_name": "order_id"})),
            "unique_orders_order_id"
        );
        assert_eq!(
            full(
                "accepted_values",
                "orders",
                json!({"column_name": "status", "values": ["placed", "shipped", "completed"]})
            ),
            "accepted_values_orders_status__placed__shipped__completed"
        );
        assert_eq!(
            full(
                "relationships",
                "orders",
                json!({"column_name": "customer_id", "to": "ref('customers')", "field": "id"})
            ),
            "relationships_orders_customer_id__id__ref_customers_"
        );
        assert_eq!(
            full("source_not_null", "jaffle_shop_orders", json!({"column_name": "id"})),
            "source_not_null_jaffle_shop_orders_id"
        );
    }

    #[test]
    fn long_test_names_are_shortened_with_a_hash_for_files() {
        let (name, full) = synthesize_name(
            "accepted_values",
            "order_events_clean",
            &args(json!({"column_name": "event_type", "values": ["ORDER_CREATED", "ORDER_PAID", "ORDER_SHIPPED"]})),
        );
        assert!(name.starts_with("accepted_values_order_events_c_"), "{name}");
        assert_eq!(name.len(), 30 + 1 + 32);
        assert_eq!(
            full,
            "accepted_values_order_events_clean_event_type__ORDER_CREATED__ORDER_PAID__ORDER_SHIPPED"
        );
    }

    #[test]
    fn python_str_prints_values_as_dbt_sees_them() {
        assert_eq!(python_str(&json!(true)), "True");
        assert_eq!(python_str(&json!(["a", 1])), "['a', 1]");
        assert_eq!(clean_name_part("a > 0 and b"), "a_0_and_b");
    }
}
