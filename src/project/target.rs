//! The project file read into its header (name, paths, vars, config
//! trees) and the target a build runs against: its lake, schema, threads,
//! memory limit and storage options.

use super::*;

/// The target a build runs against.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// The lake root, always a URL ending in `/`.
    pub lake: Url,
    pub schema: String,
    pub threads: Option<usize>,
    pub memory_limit: Option<String>,
    pub options: BTreeMap<String, String>,
    /// Whose SQL semantics the models are written in.
    pub dialect: Dialect,
    /// `notify:`: who hears of a build, and when.
    pub notify: Option<crate::config::Notify>,
}

/// The SQL semantics models are planned with. A project moved from
/// dbt-duckdb keeps DuckDB's: `/` on two integers gives a fraction, and
/// DuckDB's functions resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    DataFusion,
    DuckDb,
}

impl Dialect {
    pub const NAMES: &[&str] = &["datafusion", "duckdb"];

    pub fn parse(text: &str) -> Option<Dialect> {
        match text {
            "datafusion" => Some(Dialect::DataFusion),
            "duckdb" => Some(Dialect::DuckDb),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::DataFusion => "datafusion",
            Dialect::DuckDb => "duckdb",
        }
    }
}

/// What both project file formats boil down to.
pub(super) struct Header {
    pub(super) name: String,
    pub(super) flavor: Flavor,
    pub(super) file: PathBuf,
    pub(super) model_paths: Vec<String>,
    pub(super) seed_paths: Vec<String>,
    pub(super) macro_paths: Vec<String>,
    pub(super) test_paths: Vec<String>,
    pub(super) snapshot_paths: Vec<String>,
    pub(super) default_target: Option<Spanned<String>>,
    /// dbt's `profile:`: the profile of `profiles.yml` with the targets.
    pub(super) profile: Option<Spanned<String>>,
    /// etl's `sql_dialect:`.
    pub(super) dialect: Option<Spanned<String>>,
    pub(super) targets: BTreeMap<String, Spanned<TargetSpec>>,
    pub(super) vars: Map<String, Value>,
    pub(super) models: Option<ConfigTree>,
    pub(super) seeds: Option<ConfigTree>,
    pub(super) snapshots: Option<ConfigTree>,
    pub(super) unit_tests: Option<ConfigTree>,
    /// Config for data tests, by folder.
    pub(super) tests: Option<ConfigTree>,
    /// Config for source tables: project, source, table.
    pub(super) sources: Option<ConfigTree>,
    /// What the project file sets that etl does not act on.
    pub(super) warnings: Vec<Diagnostic>,
    /// dbt's `dispatch:`: the packages searched for a namespace's macros.
    pub(super) dispatch: BTreeMap<String, Vec<String>>,
    /// Where packages are installed: dbt's `packages-install-path`.
    pub(super) install_path: String,
    pub(super) run_hooks: RunHooks,
}

/// dbt's `on-run-start` and `on-run-end`: SQL templates run before the
/// first node and after the last, each list with the span of its key.
#[derive(Debug, Clone, Default)]
pub struct RunHooks {
    pub start: (Vec<String>, Option<Span>),
    pub end: (Vec<String>, Option<Span>),
}

pub(super) fn read_project_file(root: &Path) -> Result<Header, Diagnostics> {
    let etl = root.join("project.yaml");
    let etl_yml = root.join("project.yml");
    let dbt = root.join("dbt_project.yml");
    let strings = |v: Option<Vec<String>>, default: &str| v.unwrap_or_else(|| vec![default.to_owned()]);
    if etl.exists() || etl_yml.exists() {
        let rel = PathBuf::from(if etl.exists() { "project.yaml" } else { "project.yml" });
        let text = std::fs::read_to_string(root.join(&rel)).map_err(|e| vec![io_error(&rel, &e)])?;
        let file: EtlProjectFile = yaml::parse(&rel, &text).map_err(|e| vec![e])?;
        let paths = file.paths.unwrap_or_default();
        return Ok(Header {
            name: file.name.value,
            flavor: Flavor::Etl,
            file: rel,
            model_paths: strings(paths.models, "models"),
            seed_paths: strings(paths.seeds, "seeds"),
            macro_paths: strings(paths.macros, "macros"),
            test_paths: strings(paths.tests, "tests"),
            snapshot_paths: strings(paths.snapshots, "snapshots"),
            default_target: file.target,
            profile: None,
            dialect: file.sql_dialect,
            targets: file.targets,
            vars: file.vars,
            models: file.models,
            seeds: file.seeds,
            snapshots: file.snapshots,
            unit_tests: None,
            tests: file.tests,
            sources: file.sources,
            warnings: Vec::new(),
            dispatch: BTreeMap::new(),
            run_hooks: RunHooks::default(),
            install_path: "dbt_packages".to_owned(),
        });
    }
    if dbt.exists() {
        let rel = PathBuf::from("dbt_project.yml");
        let text = std::fs::read_to_string(&dbt).map_err(|e| vec![io_error(&rel, &e)])?;
        let file: DbtProjectFile = yaml::parse(&rel, &text).map_err(|e| vec![e])?;
        let profile = Some(file.profile.unwrap_or_else(|| file.name.clone()));
        let name = file.name.value;
        let mut errors = Vec::new();
        let mut run_hooks = RunHooks::default();
        for (key, hooks) in [("on-run-start", &file.on_run_start), ("on-run-end", &file.on_run_end)] {
            let Some(hooks) = present(hooks) else { continue };
            let span = yaml::span(&rel, &hooks.referenced);
            let items = match &hooks.value {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            let mut sql = Vec::new();
            for item in items {
                match item {
                    Value::String(text) if !text.trim().is_empty() => sql.push(text),
                    Value::String(_) => {}
                    other => errors.push(
                        Diagnostic::error(
                            Code::InvalidConfig,
                            format!("`{key}` is SQL or a list of SQL; got {other}"),
                        )
                        .with_span(span.clone()),
                    ),
                }
            }
            if key == "on-run-start" {
                run_hooks.start = (sql, span);
            } else {
                run_hooks.end = (sql, span);
            }
        }
        let dispatch = match &file.dispatch {
            None => BTreeMap::new(),
            Some(value) => dispatch_config(&value.value).unwrap_or_else(|message| {
                errors.push(
                    Diagnostic::error(Code::InvalidConfig, message).with_span(yaml::span(&rel, &value.referenced)),
                );
                BTreeMap::new()
            }),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let warnings = Vec::new();
        // dbt scopes vars by project: `vars: {my_project: {x: 1}}`.
        let mut vars = Map::new();
        for (k, v) in file.vars {
            match v {
                Value::Object(scoped) if k == name => vars.extend(scoped),
                other => {
                    vars.insert(k, other);
                }
            }
        }
        return Ok(Header {
            name,
            flavor: Flavor::Dbt,
            file: rel,
            model_paths: strings(file.model_paths, "models"),
            seed_paths: strings(file.seed_paths, "seeds"),
            macro_paths: strings(file.macro_paths, "macros"),
            test_paths: strings(file.test_paths, "tests"),
            snapshot_paths: strings(file.snapshot_paths, "snapshots"),
            default_target: None,
            profile,
            dialect: None,
            targets: BTreeMap::new(),
            vars,
            models: file.models,
            seeds: file.seeds,
            snapshots: file.snapshots,
            unit_tests: file.unit_tests,
            tests: file.tests,
            sources: file.sources,
            warnings,
            dispatch,
            run_hooks,
            install_path: match &file.packages_install_path {
                Some(Value::String(path)) => path.clone(),
                _ => "dbt_packages".to_owned(),
            },
        });
    }
    Err(vec![
        Diagnostic::error(
            Code::NoProject,
            format!("no `project.yaml` or `dbt_project.yml` in `{}`", root.display()),
        )
        .with_help("run etl from a project directory, or pass `--project-dir DIR`"),
    ])
}

pub(super) fn resolve_target(
    root: &Path,
    header: &Header,
    vars: &Map<String, Value>,
    options: &LoadOptions,
    warnings: &mut Diagnostics,
) -> Result<Target, Diagnostic> {
    let requested = options.target.as_deref();
    if let Some(profile) = &header.profile
        && let Some(file) = profiles::find(root, options.profiles_dir.as_deref())
    {
        return profiles::target(root, &file, profile, &header.file, vars, requested, warnings);
    }
    let dialect = match &header.dialect {
        None => Dialect::DataFusion,
        Some(text) => Dialect::parse(&text.value).ok_or_else(|| {
            Diagnostic::error(Code::InvalidConfig, format!("unknown `sql_dialect` `{}`", text.value))
                .with_span(yaml::span_of(&header.file, text))
                .with_suggestion(&text.value, Dialect::NAMES.iter().copied())
        })?,
    };
    let name = requested
        .map(str::to_owned)
        .or_else(|| header.default_target.as_ref().map(|t| t.value.clone()))
        .unwrap_or_else(|| "dev".to_owned());
    let spec = match header.targets.get(&name) {
        Some(spec) => spec.value.clone(),
        None if name == "dev" && header.targets.is_empty() => TargetSpec {
            lake: "./lake".to_owned(),
            schema: None,
            threads: None,
            memory_limit: None,
            options: BTreeMap::new(),
            notify: None,
        },
        None => {
            let span = header
                .default_target
                .as_ref()
                .filter(|_| requested.is_none())
                .and_then(|t| yaml::span_of(&header.file, t));
            let known: Vec<&str> = header.targets.keys().map(String::as_str).collect();
            let mut diag = Diagnostic::error(Code::UnknownTarget, format!("target `{name}` is not defined"))
                .with_span(span)
                .with_suggestion(&name, known.iter().copied());
            if !known.is_empty() {
                diag = diag.with_note(format!(
                    "the targets of `{}` are: {}",
                    header.file.display(),
                    known.join(", ")
                ));
            }
            return Err(diag);
        }
    };
    let span = header
        .targets
        .get(&name)
        .and_then(|t| yaml::span(&header.file, &t.referenced));
    let scope = settings::SettingScope { vars, target: None };
    let lake = settings::render(&spec.lake, &scope)
        .and_then(|lake| crate::lake::folder_url(&resolve_location(root, &lake)).map_err(|e| e.to_string()))
        .map_err(|message| Diagnostic::error(Code::InvalidLake, message).with_span(span.clone()))?;
    let mut options = BTreeMap::new();
    for (key, value) in spec.options {
        let value = settings::render(&value, &scope)
            .and_then(|value| {
                crate::lake::check_option(&lake, &key)
                    .map(|()| value)
                    .map_err(|e| e.to_string())
            })
            .map_err(|message| {
                Diagnostic::error(Code::InvalidStorageOption, message)
                    .with_span(span.clone())
                    .with_help("see docs/storage.md for the options of each object store")
            })?;
        options.insert(key, value);
    }
    if spec.threads == Some(0) {
        return Err(Diagnostic::error(
            Code::InvalidThreads,
            format!("target `{name}` sets `threads: 0`: a build needs at least one"),
        )
        .with_span(span)
        .with_help("leave `threads` out to use one per core"));
    }
    let notify = match &spec.notify {
        None => None,
        Some(value) => {
            let at = yaml::span(&header.file, &value.referenced).or(span.clone());
            Some(crate::config::parse_notify(&value.value, at, root, &|text| {
                settings::render(text, &scope)
            })?)
        }
    };
    Ok(Target {
        name,
        lake,
        schema: spec.schema.unwrap_or_else(|| "main".to_owned()),
        threads: spec.threads,
        memory_limit: spec.memory_limit,
        options,
        dialect,
        notify,
    })
}

pub(super) fn merge_cli_vars(
    mut vars: Map<String, Value>,
    cli: Option<&str>,
) -> Result<Map<String, Value>, Diagnostic> {
    let Some(text) = cli else { return Ok(vars) };
    let parsed: Map<String, Value> = yaml::parse(Path::new("--vars"), text).map_err(|mut e| {
        e.span = None;
        e.message = format!("`--vars` is not a YAML mapping: {}", e.message);
        e.code = Code::InvalidVars;
        e
    })?;
    vars.extend(parsed);
    Ok(vars)
}

/// A value that says something: not null, not an empty list or mapping.
pub(super) fn present(value: &Option<Spanned<Value>>) -> Option<&Spanned<Value>> {
    value.as_ref().filter(|v| match &v.value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        _ => true,
    })
}

/// The namespaces a dbt project's `dispatch:` sets.
fn dispatch_config(value: &Value) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    let Some(entries) = value.as_array() else {
        return Err("`dispatch` is a list of `{macro_namespace, search_order}`".to_owned());
    };
    for entry in entries {
        let namespace = entry.get("macro_namespace").and_then(|v| v.as_str());
        let order = entry.get("search_order").and_then(|v| v.as_array());
        match (namespace, order) {
            (Some(ns), Some(order)) => {
                let order: Option<Vec<String>> = order.iter().map(|v| v.as_str().map(str::to_owned)).collect();
                let order = order.ok_or_else(|| format!("`search_order` of `{ns}` is a list of package names"))?;
                out.insert(ns.to_owned(), order);
            }
            _ => return Err("each `dispatch` entry has `macro_namespace` and `search_order`".to_owned()),
        }
    }
    Ok(out)
}
