//! Source tables declared in properties files: where their files are,
//! in which format, with which options, columns, tests and freshness.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Parquet,
    Csv,
    Json,
    Delta,
}

impl SourceFormat {
    const NAMES: &[&str] = &["parquet", "csv", "json", "ndjson", "jsonl", "delta"];

    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "parquet" => SourceFormat::Parquet,
            "csv" => SourceFormat::Csv,
            "json" | "ndjson" | "jsonl" => SourceFormat::Json,
            "delta" => SourceFormat::Delta,
            _ => return None,
        })
    }
}

/// An external table declared under `sources:`.
#[derive(Debug, Clone)]
pub struct Source {
    pub source_name: String,
    pub name: String,
    /// A URL, or an absolute path; globs allowed.
    pub location: String,
    pub format: SourceFormat,
    pub options: BTreeMap<String, Value>,
    pub columns: Vec<ColumnProperties>,
    pub description: String,
    pub config: RawConfig,
    pub fqn: Vec<String>,
    /// Where it is declared: the `name:` of the table in its properties file.
    pub span: Option<Span>,
    pub properties_file: PathBuf,
    /// `(schema, identifier)` when it names no location and is read from
    /// the lake's relation of that name: a seed or model of the project
    /// loaded there, or a Delta table another tool wrote.
    pub in_lake: Option<(String, String)>,
}

pub(super) fn load_source(
    root: &Path,
    header: &Header,
    owner: &str,
    scope: &settings::SettingScope,
    file: &Path,
    source: SourceProperties,
    data_tests: &mut Vec<DataTest>,
    errors: &mut Diagnostics,
) -> Vec<Source> {
    // The project or package that declares it: the first part of its fqn.
    let project = owner;
    let source_external = source
        .config
        .get("external_location")
        .and_then(|v| v.value.as_str())
        .or_else(|| {
            source
                .meta
                .as_ref()
                .and_then(|m| m.get("external_location"))
                .and_then(Value::as_str)
        })
        .map(str::to_owned);
    let source_config = check_config(file, source.config, errors).unwrap_or_default();
    let mut out = Vec::new();
    for mut table in source.tables {
        let span = yaml::span_of(file, &table.name);
        let target = TestTarget::Source(source.name.value.clone(), table.name.value.clone());
        let node_tests: Vec<_> = std::mem::take(&mut table.tests)
            .into_iter()
            .chain(std::mem::take(&mut table.data_tests))
            .collect();
        data_tests.extend(data_tests::generic_tests(
            project,
            file,
            &header.model_paths,
            &target,
            node_tests,
            &mut table.columns,
            errors,
        ));
        let external = table.external;
        let written = table
            .location
            .or_else(|| external.as_ref().and_then(|e| e.location.clone()));
        let location_span = written.as_ref().and_then(|l| yaml::span_of(file, l));
        let location = written.map(|l| l.value).or_else(|| {
            let identifier = table.identifier.clone().unwrap_or_else(|| table.name.value.clone());
            source
                .location
                .as_ref()
                .map(|base| format!("{}/{identifier}", base.value.trim_end_matches('/')))
        });
        let location = match location.map(|l| settings::render(&l, scope)).transpose() {
            Ok(location) => location,
            Err(message) => {
                errors.push(
                    Diagnostic::error(Code::InvalidLocation, message)
                        .with_span(location_span.or(span))
                        .with_help(
                            "a location may use `{{ target.lake }}`, `{{ env_var('NAME') }}` and `{{ var('name') }}`",
                        ),
                );
                continue;
            }
        };
        let identifier = table.identifier.clone().unwrap_or_else(|| table.name.value.clone());
        // As dbt-duckdb reads a source with no location: its
        // `external_location`, else the relation of the same schema and
        // name in the lake.
        let mut in_lake = None;
        // `read_csv('data/{name}.csv', header = true)`: the reader's format
        // and options, as dbt-duckdb runs it.
        let mut reader: Option<Reader> = None;
        let location = match location {
            Some(location) => location,
            None => match external_location(
                &table.config,
                table.meta.as_ref(),
                &table.name.value,
                &identifier,
                source_external.as_deref(),
            ) {
                Some(location) => match reader_call(&location) {
                    None => location,
                    Some(Ok(call)) => {
                        let location = call.location.clone();
                        reader = Some(call);
                        location
                    }
                    Some(Err(message)) => {
                        errors.push(
                            Diagnostic::error(
                                Code::InvalidLocation,
                                format!(
                                    "source table `{}.{}`: `external_location` `{location}`: {message}",
                                    source.name.value, table.name.value
                                ),
                            )
                            .with_span(span.clone())
                            .with_help(
                                "etl reads `read_csv`, `read_parquet`, `read_json` and `delta_scan` calls with one \
                                 path (globs allowed), or a plain path",
                            ),
                        );
                        continue;
                    }
                },
                None => {
                    let schema = match &source.schema {
                        Some(Value::String(schema)) => schema.clone(),
                        _ => source.name.value.clone(),
                    };
                    let lake = scope.target.map(|(_, lake)| lake).unwrap_or_default();
                    let location = format!("{lake}warehouse/{schema}/{identifier}/");
                    in_lake = Some((schema, identifier.clone()));
                    location
                }
            },
        };
        if in_lake.is_some() {
            let given = table.format.as_ref().or(source.format.as_ref());
            if let Some(f) = given.filter(|f| SourceFormat::parse(&f.value) != Some(SourceFormat::Delta)) {
                errors.push(
                    Diagnostic::error(
                        Code::MissingLocation,
                        format!(
                            "source table `{}.{}` is `{}` files but has no `location`",
                            source.name.value, table.name.value, f.value
                        ),
                    )
                    .with_span(yaml::span_of(file, f).or(span))
                    .with_help(
                        "give it a `location:` path or URL (globs allowed); without one a source is the lake's \
                         table of the same schema and name",
                    ),
                );
                continue;
            }
        }
        let format_value = table
            .format
            .or_else(|| external.as_ref().and_then(|e| e.file_format.clone()))
            .or_else(|| source.format.clone());
        let format = match &format_value {
            _ if in_lake.is_some() => SourceFormat::Delta,
            None if reader.is_some() => reader.as_ref().map(|r| r.format).expect("a reader"),
            Some(f) => match SourceFormat::parse(&f.value) {
                Some(format) => format,
                None => {
                    errors.push(
                        Diagnostic::error(Code::UnknownFormat, format!("unknown source format `{}`", f.value))
                            .with_span(yaml::span_of(file, f))
                            .with_suggestion(&f.value, SourceFormat::NAMES.iter().copied())
                            .with_note("formats: parquet, csv, json (newline-delimited), delta"),
                    );
                    continue;
                }
            },
            None => match guess_format(&location) {
                Some(format) => format,
                None => {
                    errors.push(
                        Diagnostic::error(
                            Code::MissingFormat,
                            format!(
                                "cannot tell the format of source table `{}.{}`",
                                source.name.value, table.name.value
                            ),
                        )
                        .with_span(span)
                        .with_help("add `format: parquet|csv|json|delta`"),
                    );
                    continue;
                }
            },
        };
        let mut options = source.options.clone();
        if let Some(e) = &external {
            options.extend(e.options.clone());
        }
        if let Some(r) = reader {
            options.extend(r.options);
        }
        options.extend(table.options);
        let mut config = source_config.clone();
        if let Some(c) = check_config(file, table.config, errors) {
            config.merge(c);
        }
        // Tags written on the source and on the table apply to the table.
        for tags in [&source.tags, &table.tags].into_iter().flatten() {
            let mut tagged = RawConfig::default();
            tagged.insert("tags", tags.clone(), span.clone());
            config.merge(tagged);
        }
        // Freshness is written beside the tables (dbt's older spelling) or
        // in their config; a table's own setting wins, `freshness: null`
        // turns it off.
        for (key, source_value, table_value) in [
            ("loaded_at_field", &source.loaded_at_field, &table.loaded_at_field),
            ("freshness", &source.freshness, &table.freshness),
        ] {
            if let Some(v) = table_value.as_ref().or(source_value.as_ref()) {
                if !config.contains(key) || table_value.is_some() {
                    config.insert(key, v.clone(), span.clone());
                }
            }
        }
        out.push(Source {
            source_name: source.name.value.clone(),
            name: table.name.value.clone(),
            location: resolve_location(root, &location),
            format,
            options,
            columns: table.columns,
            description: table.description.unwrap_or_default(),
            config,
            fqn: vec![project.to_owned(), source.name.value.clone(), table.name.value.clone()],
            span,
            properties_file: file.to_path_buf(),
            in_lake,
        });
    }
    out
}

/// dbt-duckdb's `external_location`, in the table's config or meta, else
/// its source's (`of_source`), with `{name}` and `{identifier}` filled in.
fn external_location(
    config: &ConfigMap,
    meta: Option<&Value>,
    name: &str,
    identifier: &str,
    of_source: Option<&str>,
) -> Option<String> {
    let found = config
        .get("external_location")
        .and_then(|v| v.value.as_str())
        .or_else(|| meta.and_then(|m| m.get("external_location")).and_then(Value::as_str))
        .or(of_source)?;
    Some(found.replace("{name}", name).replace("{identifier}", identifier))
}

/// A DuckDB reader call in an `external_location`.
struct Reader {
    location: String,
    format: SourceFormat,
    options: BTreeMap<String, Value>,
}

/// `read_csv('path', header = true, delim = ';')` and the like, as
/// dbt-duckdb's `external_location` holds them: `None` when `text` is not
/// a call; an error for a call etl cannot read as it would run.
fn reader_call(text: &str) -> Option<Result<Reader, String>> {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value as SqlValue, ValueWithSpan,
    };
    use datafusion::sql::sqlparser::dialect::DuckDbDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let trimmed = text.trim();
    if !trimmed.ends_with(')') || !trimmed.contains('(') {
        return None;
    }
    let expr = Parser::new(&DuckDbDialect {})
        .try_with_sql(trimmed)
        .and_then(|mut p| p.parse_expr())
        .ok()?;
    let Expr::Function(call) = expr else {
        return None;
    };
    let name = call.name.to_string().to_ascii_lowercase();
    let format = match name.as_str() {
        "read_csv" | "read_csv_auto" => SourceFormat::Csv,
        "read_parquet" | "parquet_scan" => SourceFormat::Parquet,
        "read_json" | "read_json_auto" | "read_ndjson" | "read_ndjson_auto" => SourceFormat::Json,
        "delta_scan" => SourceFormat::Delta,
        other => return Some(Err(format!("`{other}` is not a reader etl knows"))),
    };
    let FunctionArguments::List(list) = call.args else {
        return Some(Err("a reader takes the path to read".into()));
    };
    let literal = |e: &Expr| -> Option<Value> {
        match e {
            Expr::Value(ValueWithSpan { value, .. }) => match value {
                SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => Some(Value::String(s.clone())),
                SqlValue::Boolean(b) => Some(Value::Bool(*b)),
                SqlValue::Number(n, _) => n.parse::<i64>().ok().map(Value::from),
                _ => None,
            },
            _ => None,
        }
    };
    let mut location = None;
    let mut options = BTreeMap::new();
    for arg in &list.args {
        let (key, value) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if location.is_none() => match literal(e) {
                Some(Value::String(path)) => {
                    location = Some(path);
                    continue;
                }
                _ => return Some(Err(format!("`{e}`: etl reads one path (globs allowed), not a list"))),
            },
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => (name.value.to_ascii_lowercase(), e),
            FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg: FunctionArgExpr::Expr(e),
                ..
            } => (name.value.to_ascii_lowercase(), e),
            other => return Some(Err(format!("`{other}` is not an option etl reads"))),
        };
        let Some(value) = literal(value) else {
            return Some(Err(format!("option `{key}`: `{value}` is not a value etl reads")));
        };
        let ours = match (format, key.as_str()) {
            (SourceFormat::Csv, "header") => "header",
            (SourceFormat::Csv, "delim" | "sep" | "delimiter") => "delimiter",
            (SourceFormat::Csv, "quote") => "quote",
            (SourceFormat::Csv, "escape") => "escape",
            (SourceFormat::Csv, "comment") => "comment",
            (SourceFormat::Csv | SourceFormat::Json, "compression") => "compression",
            // Detection is what etl does anyway.
            (_, "auto_detect") if value == Value::Bool(true) => continue,
            (SourceFormat::Json, "format") if value == Value::String("newline_delimited".into()) => continue,
            _ => return Some(Err(format!("`{name}`'s option `{key}` is not taken by etl yet"))),
        };
        options.insert(ours.to_owned(), value);
    }
    let Some(location) = location else {
        return Some(Err(format!("`{name}` needs the path to read")));
    };
    Some(Ok(Reader {
        location,
        format,
        options,
    }))
}

pub(super) fn guess_format(location: &str) -> Option<SourceFormat> {
    let lower = location.to_ascii_lowercase();
    // `orders/*.jsonl.gz`: the format is before the compression suffix.
    let lower = [".gz", ".bz2", ".xz", ".zst"]
        .iter()
        .find_map(|ext| lower.strip_suffix(ext))
        .unwrap_or(&lower);
    let ext = lower.rsplit('.').next()?;
    SourceFormat::parse(ext)
}
