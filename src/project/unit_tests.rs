//! Unit tests as dbt 1.8 declares them (`unit_tests:` in a properties
//! file): a model, the rows its inputs are mocked with (`given`), the rows
//! it must give (`expect`), and what the render changes (`overrides`).
//! Rows are written as YAML mappings (`format: dict`), CSV text or SQL, in
//! the entry or in a fixture file (`tests/fixtures/<name>.csv|.sql`).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::properties::{RowsProperties, UnitTestProperties};
use super::{Diagnostics, yaml};
use crate::config::RawConfig;
use crate::diagnostic::{Code, Diagnostic, Span};

/// A unit test, checked.
#[derive(Debug, Clone)]
pub struct UnitTest {
    pub name: String,
    /// The model it tests.
    pub model: String,
    /// The project or package it belongs to.
    pub package: String,
    pub fqn: Vec<String>,
    /// Its properties file, and its name there.
    pub path: PathBuf,
    pub span: Option<Span>,
    pub description: String,
    pub given: Vec<Given>,
    pub expect: Rows,
    pub overrides: Overrides,
    pub config: RawConfig,
}

/// One mocked input.
#[derive(Debug, Clone)]
pub struct Given {
    pub input: Input,
    pub rows: Rows,
    pub span: Option<Span>,
}

/// What a `given` replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Ref(String),
    Source(String, String),
    /// `this`: the model's own table, read by an incremental model.
    This,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Ref(name) => write!(f, "ref('{name}')"),
            Input::Source(s, t) => write!(f, "source('{s}', '{t}')"),
            Input::This => write!(f, "this"),
        }
    }
}

/// Rows, as written: each a mapping of column to value, CSV text (a
/// header, then rows), or a SQL query.
#[derive(Debug, Clone)]
pub enum Rows {
    Dict(Vec<Map<String, Value>>),
    Csv(String),
    Sql(String),
    /// Neither `rows` nor `fixture`: a seed's own rows, as dbt reads them.
    Own,
}

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Whether the test has an `overrides:` entry.
    pub written: bool,
    pub macros: Map<String, Value>,
    pub vars: Map<String, Value>,
    pub env_vars: Map<String, Value>,
}

impl Overrides {
    /// `overrides: {macros: {is_incremental: true}}`.
    pub fn is_incremental(&self) -> bool {
        self.macros
            .get("is_incremental")
            .is_some_and(|v| v.as_bool() == Some(true))
    }
}

/// Checks an entry of `unit_tests:` in `file`.
pub(super) fn unit_test(
    root: &Path,
    test_paths: &[String],
    package: &str,
    folders: &[String],
    file: &Path,
    props: UnitTestProperties,
    errors: &mut Diagnostics,
) -> Option<UnitTest> {
    let name = props.name.value.clone();
    let mut ok = true;
    if let Some(versions) = &props.versions {
        errors.push(
            Diagnostic::error(
                Code::Unsupported,
                format!("unit test `{name}`: `versions` (model versions) are not supported by etl yet"),
            )
            .with_span(yaml::span(file, &versions.referenced)),
        );
        ok = false;
    }
    let mut given = Vec::new();
    for entry in props.given {
        let span = yaml::span_of(file, &entry.input);
        let input = match parse_input(&entry.input.value) {
            Some(input) => input,
            None => {
                errors.push(
                    Diagnostic::error(
                        Code::InvalidConfig,
                        format!(
                            "unit test `{name}`: `input: {}` is not `ref('model')`, `source('source', 'table')` or `this`",
                            entry.input.value
                        ),
                    )
                    .with_span(span),
                );
                ok = false;
                continue;
            }
        };
        let written = RowsProperties {
            rows: entry.rows,
            format: entry.format,
            fixture: entry.fixture,
        };
        match rows(root, test_paths, file, &name, "given", written, errors) {
            Some(rows) => given.push(Given { input, rows, span }),
            None => ok = false,
        }
    }
    let expect = rows(root, test_paths, file, &name, "expect", props.expect, errors);
    let config = super::tree::check_config(file, props.config, errors);
    let written = props.overrides.is_some();
    let overrides = props.overrides.unwrap_or_default();
    Some(UnitTest {
        // As dbt: `[package, folders..., model, test]`.
        fqn: std::iter::once(package.to_owned())
            .chain(folders.iter().cloned())
            .chain([props.model.value.clone(), name.clone()])
            .collect(),
        name,
        model: props.model.value.clone(),
        package: package.to_owned(),
        path: file.to_path_buf(),
        span: yaml::span_of(file, &props.name),
        description: props.description.unwrap_or_default(),
        given,
        expect: expect?,
        overrides: Overrides {
            written,
            macros: overrides.macros,
            vars: overrides.vars,
            env_vars: overrides.env_vars,
        },
        config: config?,
    })
    .filter(|_| ok)
}

pub(super) fn parse_input(text: &str) -> Option<Input> {
    let text = text.trim();
    if text == "this" {
        return Some(Input::This);
    }
    let call = regex::Regex::new(r#"^(ref|source)\s*\(\s*(.*?)\s*\)$"#).expect("a valid pattern");
    let caps = call.captures(text)?;
    // `ref('m', v=2)`: model versions are not supported.
    if caps[2].contains('=') {
        return None;
    }
    let args: Vec<String> = caps[2]
        .split(',')
        .map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    match (&caps[1], args.as_slice()) {
        ("ref", [name]) | ("ref", [_, name]) => Some(Input::Ref(name.clone())),
        ("source", [source, table]) => Some(Input::Source(source.clone(), table.clone())),
        _ => None,
    }
}

/// The rows of a `given` or `expect`: written in the entry, or read from
/// its fixture file.
fn rows(
    root: &Path,
    test_paths: &[String],
    file: &Path,
    test: &str,
    what: &str,
    props: RowsProperties,
    errors: &mut Diagnostics,
) -> Option<Rows> {
    let fail = |errors: &mut Diagnostics, message: String, span: Option<Span>| {
        errors.push(
            Diagnostic::error(Code::InvalidConfig, format!("unit test `{test}`: `{what}`: {message}")).with_span(span),
        );
        None
    };
    let format = props.format.as_ref().map(|f| f.value.as_str()).unwrap_or("dict");
    let format_span = props.format.as_ref().and_then(|f| yaml::span_of(file, f));
    if !matches!(format, "dict" | "csv" | "sql") {
        return fail(
            errors,
            format!("`format: {format}` is not `dict`, `csv` or `sql`"),
            format_span,
        );
    }
    let text = match (props.rows, props.fixture) {
        (Some(_), Some(fixture)) => {
            return fail(
                errors,
                "set `rows` or `fixture`, not both".into(),
                yaml::span_of(file, &fixture),
            );
        }
        (None, Some(fixture)) => {
            if format == "dict" {
                return fail(
                    errors,
                    "a `fixture` file is CSV or SQL: set `format: csv` or `format: sql`".into(),
                    yaml::span_of(file, &fixture),
                );
            }
            let name = format!("{}.{format}", fixture.value);
            let found = test_paths
                .iter()
                .map(|dir| Path::new(dir).join("fixtures").join(&name))
                .find(|path| root.join(path).is_file());
            let Some(path) = found else {
                return fail(
                    errors,
                    format!(
                        "no fixture file `fixtures/{name}` under the test paths ({})",
                        test_paths.join(", ")
                    ),
                    yaml::span_of(file, &fixture),
                );
            };
            match std::fs::read_to_string(root.join(&path)) {
                Ok(text) => Value::String(text),
                Err(e) => return fail(errors, format!("cannot read `{}`: {e}", path.display()), None),
            }
        }
        (Some(rows), None) => rows.value,
        (None, None) if what == "given" => return Some(Rows::Own),
        (None, None) => Value::Array(Vec::new()),
    };
    match (format, text) {
        ("dict", Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::Object(map) => out.push(map),
                    other => {
                        return fail(
                            errors,
                            format!("each row is a mapping of column to value, not `{other}`"),
                            None,
                        );
                    }
                }
            }
            Some(Rows::Dict(out))
        }
        ("csv", Value::String(text)) => Some(Rows::Csv(text)),
        ("sql", Value::String(text)) => Some(Rows::Sql(text)),
        (format, other) => fail(
            errors,
            format!(
                "`rows` in format `{format}` is {}, not `{other}`",
                if format == "dict" { "a list of mappings" } else { "text" }
            ),
            format_span,
        ),
    }
}

/// The lines of CSV rows, each a list of cells: quoted cells (`"Smith,
/// John"`, `""` for a quote) as text, an empty unquoted cell or `null` as
/// null. Blank lines are skipped.
pub fn csv_lines(text: &str) -> Vec<Vec<Option<String>>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(csv_cells)
        .collect()
}

fn csv_cells(line: &str) -> Vec<Option<String>> {
    let finish = |cell: &str, quoted: bool| {
        if quoted {
            return Some(cell.to_owned());
        }
        let cell = cell.trim();
        (!cell.is_empty() && cell != "null").then(|| cell.to_owned())
    };
    let mut cells = Vec::new();
    let mut cell = String::new();
    let (mut inside, mut quoted) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if inside {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                '"' => inside = false,
                _ => cell.push(c),
            }
        } else if c == '"' && cell.trim().is_empty() {
            (inside, quoted) = (true, true);
            cell.clear();
        } else if c == ',' {
            cells.push(finish(&cell, quoted));
            cell.clear();
            quoted = false;
        } else if !quoted {
            cell.push(c);
        }
    }
    cells.push(finish(&cell, quoted));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_may_be_quoted() {
        let lines = csv_lines("id,name,note\n1,\"Smith, John\",\n2, Bo ,\"say \"\"hi\"\"\"\n\n");
        let text = |cells: &[Option<String>]| -> Vec<String> {
            cells
                .iter()
                .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                .collect()
        };
        assert_eq!(text(&lines[0]), ["id", "name", "note"]);
        assert_eq!(text(&lines[1]), ["1", "Smith, John", "NULL"]);
        assert_eq!(text(&lines[2]), ["2", "Bo", "say \"hi\""]);
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn inputs_are_refs_sources_or_this() {
        assert_eq!(parse_input("ref('orders')"), Some(Input::Ref("orders".into())));
        assert_eq!(
            parse_input(r#"ref("pkg", "orders")"#),
            Some(Input::Ref("orders".into()))
        );
        assert_eq!(
            parse_input("source('shop', 'raw_orders')"),
            Some(Input::Source("shop".into(), "raw_orders".into()))
        );
        assert_eq!(parse_input(" this "), Some(Input::This));
        assert_eq!(parse_input("orders"), None);
        assert_eq!(parse_input("source('shop')"), None);
        assert_eq!(parse_input("ref('orders', v=2)"), None);
    }
}
