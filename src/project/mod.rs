//! Loading a project: the project file (`project.yaml`, or dbt's
//! `dbt_project.yml`), its properties files, and every model, seed, macro and
//! test file it holds, into one typed [`Project`].
//!
//! Everything a user wrote is checked here, before anything runs: unknown
//! keys, properties for models that do not exist, config paths that match no
//! folder, two nodes with the same name. Each problem is a [`Diagnostic`]
//! with the file and line, and all of them are reported at once.

mod config;
mod data_tests;
mod properties;
mod settings;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use url::Url;

use crate::config::RawConfig;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::parallel;
use config::{ConfigTree, DbtProjectFile, EtlProjectFile, TargetSpec};
pub use data_tests::{DataTest, TestKind, TestTarget};
pub use properties::ColumnProperties;
use properties::{ConfigMap, ModelProperties, PropertiesFile, SourceProperties};

/// Which project file the project was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Etl,
    Dbt,
}

/// What the command line adds to the project files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub target: Option<String>,
    /// `--vars`: a YAML mapping that overrides the project's vars.
    pub vars: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub name: String,
    pub flavor: Flavor,
    pub target: Target,
    pub vars: Map<String, Value>,
    pub models: Vec<Model>,
    pub seeds: Vec<Seed>,
    pub sources: Vec<Source>,
    pub macro_files: Vec<SourceFile>,
    /// Generic tests from properties files, then singular tests.
    pub data_tests: Vec<DataTest>,
    /// Named selections from `selectors.yml`.
    pub selectors: Vec<SelectorDefinition>,
}

/// One entry of `selectors.yml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Used when no `--select` is given.
    #[serde(default)]
    pub default: bool,
    pub definition: Value,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorsFile {
    #[serde(default)]
    selectors: Vec<SelectorDefinition>,
}

fn read_selectors(root: &Path, errors: &mut Diagnostics) -> Vec<SelectorDefinition> {
    let path = PathBuf::from("selectors.yml");
    if !root.join(&path).exists() {
        return Vec::new();
    }
    let Some(text) = read(root, &path, errors) else {
        return Vec::new();
    };
    match yaml::parse::<SelectorsFile>(&path, &text) {
        Ok(file) => {
            if file.selectors.iter().filter(|s| s.default).count() > 1 {
                errors.push(
                    Diagnostic::error(Code::InvalidSelector, "more than one selector sets `default: true`")
                        .with_span(Some(Span::file(&path))),
                );
            }
            file.selectors
        }
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

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
}

/// A file read from the project, with its project-relative path.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub file: SourceFile,
    /// dbt's fully qualified name: project, folders, model.
    pub fqn: Vec<String>,
    /// Config from the project file and properties; `config()` calls in the
    /// SQL are merged over it when the model is rendered.
    pub config: RawConfig,
    pub description: String,
    pub columns: Vec<ColumnProperties>,
    pub properties_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Seed {
    pub name: String,
    pub path: PathBuf,
    pub fqn: Vec<String>,
    pub config: RawConfig,
    pub description: String,
    pub columns: Vec<ColumnProperties>,
}

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
}

type Diagnostics = Vec<Diagnostic>;

/// Loads the project at `dir`.
pub fn load(dir: &Path, options: &LoadOptions) -> Result<Project, Diagnostics> {
    let root = absolute(dir);
    let header = read_project_file(&root)?;
    let mut errors = Vec::new();

    let vars = match merge_cli_vars(header.vars.clone(), options.vars.as_deref()) {
        Ok(vars) => vars,
        Err(e) => return Err(vec![e]),
    };
    let target = match resolve_target(&root, &header, &vars, options.target.as_deref()) {
        Ok(t) => t,
        Err(e) => return Err(vec![e]),
    };

    let model_files = discover(&root, &header.model_paths, &["sql"], &mut errors);
    let seed_files = discover(&root, &header.seed_paths, &["csv"], &mut errors);
    let mut macro_files = discover(&root, &header.macro_paths, &["sql"], &mut errors);
    // dbt keeps custom generic tests (`{% test %}` blocks) in
    // `tests/generic/`: those files are macros, not singular tests.
    let (generic_files, test_files): (Vec<PathBuf>, Vec<PathBuf>) =
        discover(&root, &header.test_paths, &["sql"], &mut errors)
            .into_iter()
            .partition(|p| is_generic_test_file(&header.test_paths, p));
    macro_files.extend(generic_files);
    let mut yml_dirs = header.model_paths.clone();
    yml_dirs.extend(header.seed_paths.iter().cloned());
    yml_dirs.extend(header.macro_paths.iter().cloned());
    let properties_files = discover(&root, &yml_dirs, &["yml", "yaml"], &mut errors);

    let mut models = Vec::new();
    for (path, text) in read_all(&root, model_files, &mut errors) {
        let fqn = fqn_of(&header.name, &header.model_paths, &path);
        let name = fqn.last().cloned().unwrap_or_default();
        let config = tree_config(header.models.as_ref(), &header, &fqn);
        models.push(Model {
            name,
            file: SourceFile { path, text },
            fqn,
            config,
            description: String::new(),
            columns: Vec::new(),
            properties_file: None,
        });
    }
    let mut seeds = Vec::new();
    for path in seed_files {
        let fqn = fqn_of(&header.name, &header.seed_paths, &path);
        let name = fqn.last().cloned().unwrap_or_default();
        let config = tree_config(header.seeds.as_ref(), &header, &fqn);
        seeds.push(Seed {
            name,
            path,
            fqn,
            config,
            description: String::new(),
            columns: Vec::new(),
        });
    }

    check_tree_paths(
        header.models.as_ref(),
        &header,
        models.iter().map(|m| m.fqn.as_slice()),
        &mut errors,
    );
    check_tree_paths(
        header.seeds.as_ref(),
        &header,
        seeds.iter().map(|s| s.fqn.as_slice()),
        &mut errors,
    );

    // Properties find their node by name; with thousands of models a scan
    // per properties entry was the bulk of `etl ls`.
    let model_index = first_index(models.iter().map(|m| m.name.as_str()));
    let seed_index = first_index(seeds.iter().map(|s| s.name.as_str()));
    let mut sources = Vec::new();
    let mut data_tests = Vec::new();
    let parsed = parallel::chunks(properties_files.len(), 1, |range| {
        properties_files[range]
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(root.join(path)).map_err(|e| io_error(path, &e))?;
                yaml::parse::<PropertiesFile>(path, &text).map(|file| (path.clone(), file))
            })
            .collect::<Vec<_>>()
    });
    for file in parsed.into_iter().flatten() {
        let (path, file) = match file {
            Ok(f) => f,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for mut props in file.models {
            let target = TestTarget::Model(props.name.value.clone());
            data_tests.extend(node_tests(&header, &path, &target, &mut props, &mut errors));
            match model_index.get(&props.name.value) {
                Some(&i) => {
                    let m = &mut models[i];
                    let slot = (
                        &mut m.config,
                        &mut m.description,
                        &mut m.columns,
                        Some(&mut m.properties_file),
                    );
                    apply_properties(&path, props, slot, &mut errors);
                }
                None => errors.push(unknown_node(
                    &path,
                    &props,
                    "model",
                    models.iter().map(|m| m.name.as_str()),
                )),
            }
        }
        for mut props in file.seeds {
            let target = TestTarget::Seed(props.name.value.clone());
            data_tests.extend(node_tests(&header, &path, &target, &mut props, &mut errors));
            match seed_index.get(&props.name.value) {
                Some(&i) => {
                    let s = &mut seeds[i];
                    apply_properties(
                        &path,
                        props,
                        (&mut s.config, &mut s.description, &mut s.columns, None),
                        &mut errors,
                    );
                }
                None => errors.push(unknown_node(
                    &path,
                    &props,
                    "seed",
                    seeds.iter().map(|s| s.name.as_str()),
                )),
            }
        }
        let scope = settings::SettingScope {
            vars: &vars,
            target: Some((&target.name, target.lake.as_str())),
        };
        for source in file.sources {
            sources.extend(load_source(
                &root,
                &header,
                &scope,
                &path,
                source,
                &mut data_tests,
                &mut errors,
            ));
        }
    }

    let macro_files = macro_files
        .into_iter()
        .filter_map(|path| read(&root, &path, &mut errors).map(|text| SourceFile { path, text }))
        .collect();
    for path in test_files {
        if let Some(text) = read(&root, &path, &mut errors) {
            data_tests.push(data_tests::singular_test(
                &header.name,
                &header.test_paths,
                SourceFile { path, text },
            ));
        }
    }
    check_unique_tests(&data_tests, &mut errors);
    let selectors = read_selectors(&root, &mut errors);

    check_unique_names(&models, &seeds, &sources, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Project {
        root,
        name: header.name,
        flavor: header.flavor,
        target,
        vars,
        models,
        seeds,
        sources,
        macro_files,
        data_tests,
        selectors,
    })
}

/// What both project file formats boil down to.
struct Header {
    name: String,
    flavor: Flavor,
    file: PathBuf,
    model_paths: Vec<String>,
    seed_paths: Vec<String>,
    macro_paths: Vec<String>,
    test_paths: Vec<String>,
    default_target: Option<Spanned<String>>,
    targets: BTreeMap<String, Spanned<TargetSpec>>,
    vars: Map<String, Value>,
    models: Option<ConfigTree>,
    seeds: Option<ConfigTree>,
}

fn read_project_file(root: &Path) -> Result<Header, Diagnostics> {
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
            default_target: file.target,
            targets: file.targets,
            vars: file.vars,
            models: file.models,
            seeds: file.seeds,
        });
    }
    if dbt.exists() {
        let rel = PathBuf::from("dbt_project.yml");
        let text = std::fs::read_to_string(&dbt).map_err(|e| vec![io_error(&rel, &e)])?;
        let file: DbtProjectFile = yaml::parse(&rel, &text).map_err(|e| vec![e])?;
        let name = file.name.value;
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
            default_target: None,
            targets: BTreeMap::new(),
            vars,
            models: file.models,
            seeds: file.seeds,
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

fn resolve_target(
    root: &Path,
    header: &Header,
    vars: &Map<String, Value>,
    requested: Option<&str>,
) -> Result<Target, Diagnostic> {
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
        .and_then(|lake| crate::lake::folder_url(&resolve_location(root, &lake)))
        .map_err(|message| Diagnostic::error(Code::InvalidLake, message).with_span(span.clone()))?;
    let mut options = BTreeMap::new();
    for (key, value) in spec.options {
        let value = settings::render(&value, &scope)
            .and_then(|value| crate::lake::check_option(&lake, &key).map(|()| value))
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
    Ok(Target {
        name,
        lake,
        schema: spec.schema.unwrap_or_else(|| "main".to_owned()),
        threads: spec.threads,
        memory_limit: spec.memory_limit,
        options,
    })
}

/// Resolves a location from a properties file: URLs stay as they are,
/// paths are made absolute from the project root.
pub fn resolve_location(root: &Path, location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else {
        normalize(&root.join(location)).to_string_lossy().into_owned()
    }
}

fn merge_cli_vars(mut vars: Map<String, Value>, cli: Option<&str>) -> Result<Map<String, Value>, Diagnostic> {
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

/// Files under `dirs` with one of `exts`, as project-relative paths, sorted.
fn discover(root: &Path, dirs: &[String], exts: &[&str], errors: &mut Diagnostics) -> Vec<PathBuf> {
    let mut found = BTreeSet::new();
    for dir in dirs {
        let abs = root.join(dir);
        if !abs.exists() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&abs).sort_by_file_name() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(Diagnostic::error(
                        Code::Io,
                        format!("cannot read `{}`: {e}", abs.display()),
                    ));
                    continue;
                }
            };
            let path = entry.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            let ext_ok = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e));
            if entry.file_type().is_file() && ext_ok && !hidden {
                if let Ok(rel) = path.strip_prefix(root) {
                    found.insert(rel.to_path_buf());
                }
            }
        }
    }
    found.into_iter().collect()
}

fn read(root: &Path, path: &Path, errors: &mut Diagnostics) -> Option<String> {
    match std::fs::read_to_string(root.join(path)) {
        Ok(text) => Some(text),
        Err(e) => {
            errors.push(io_error(path, &e));
            None
        }
    }
}

/// Reads `paths` on every core; a file that cannot be read is an error
/// and is left out.
fn read_all(root: &Path, paths: Vec<PathBuf>, errors: &mut Diagnostics) -> Vec<(PathBuf, String)> {
    let texts = parallel::chunks(paths.len(), 64, |range| {
        paths[range]
            .iter()
            .map(|path| std::fs::read_to_string(root.join(path)).map_err(|e| io_error(path, &e)))
            .collect::<Vec<_>>()
    });
    let mut files = Vec::with_capacity(paths.len());
    for (path, text) in paths.into_iter().zip(texts.into_iter().flatten()) {
        match text {
            Ok(text) => files.push((path, text)),
            Err(e) => errors.push(e),
        }
    }
    files
}

fn io_error(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error(Code::Io, format!("cannot read `{}`: {e}", path.display())).with_span(Some(Span::file(path)))
}

/// `[project, folder..., name]` for a file under one of `dirs`.
fn fqn_of(project: &str, dirs: &[String], path: &Path) -> Vec<String> {
    let rel = dirs
        .iter()
        .find_map(|d| path.strip_prefix(normalize(Path::new(d))).ok())
        .unwrap_or(path);
    let mut fqn = vec![project.to_owned()];
    if let Some(parent) = rel.parent() {
        fqn.extend(
            parent
                .components()
                .filter_map(|c| c.as_os_str().to_str().map(str::to_owned)),
        );
    }
    fqn.push(rel.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned());
    fqn
}

/// The config the project file gives the node at `fqn`, merged from the
/// root of the tree down to the node itself.
fn tree_config(tree: Option<&ConfigTree>, header: &Header, fqn: &[String]) -> RawConfig {
    let mut config = RawConfig::default();
    let Some(mut level) = tree else { return config };
    let file = header.file.as_path();
    config.merge(level.config(file));
    // dbt roots the tree at the project name; etl at the model folder,
    // optionally under the project name too.
    let path = &fqn[1..];
    if let Some(project_level) = level.folder(&header.name) {
        if header.flavor == Flavor::Dbt || !path.first().is_some_and(|p| p == &header.name) {
            level = project_level;
            config.merge(level.config(file));
        }
    }
    for part in path {
        match level.folder(part) {
            Some(next) => {
                level = next;
                config.merge(level.config(file));
            }
            None => break,
        }
    }
    config
}

/// Every folder named in a config tree must exist: a misspelt folder would
/// otherwise silently configure nothing.
fn check_tree_paths<'a>(
    tree: Option<&ConfigTree>,
    header: &Header,
    fqns: impl Iterator<Item = &'a [String]>,
    errors: &mut Diagnostics,
) {
    let Some(tree) = tree else { return };
    let mut prefixes: BTreeSet<Vec<String>> = BTreeSet::new();
    for fqn in fqns {
        for i in 1..=fqn.len() - 1 {
            prefixes.insert(fqn[1..=i].to_vec());
        }
    }
    fn walk(
        tree: &ConfigTree,
        path: &mut Vec<String>,
        prefixes: &BTreeSet<Vec<String>>,
        file: &Path,
        errors: &mut Diagnostics,
    ) {
        for (name, location, sub) in tree.folders() {
            path.push(name.to_owned());
            if prefixes.contains(path) {
                walk(sub, path, prefixes, file, errors);
            } else {
                let siblings: Vec<&str> = prefixes
                    .iter()
                    .filter(|p| p.len() == path.len() && p[..p.len() - 1] == path[..path.len() - 1])
                    .map(|p| p[p.len() - 1].as_str())
                    .collect();
                let span = yaml::span(file, location).map(|mut s| {
                    s.len = name.chars().count();
                    s
                });
                errors.push(
                    Diagnostic::error(
                        Code::UnknownConfigPath,
                        format!("`{}` matches no folder or file", path.join(".")),
                    )
                    .with_span(span)
                    .with_label("configures nothing")
                    .with_suggestion(name, siblings.iter().copied())
                    .with_note("keys without `+` name folders, unless they are config keys"),
                );
            }
            path.pop();
        }
    }
    let mut path = Vec::new();
    match tree.folder(&header.name) {
        Some(project_level) => {
            walk(project_level, &mut path, &prefixes, &header.file, errors);
            let rest = ConfigTree {
                entries: tree
                    .entries
                    .iter()
                    .filter(|(k, _, _)| k != &header.name)
                    .cloned()
                    .collect(),
            };
            walk(&rest, &mut path, &prefixes, &header.file, errors);
        }
        None => walk(tree, &mut path, &prefixes, &header.file, errors),
    }
}

/// Where a properties entry lands on its node: config, description,
/// columns and (models only) the properties file that described it.
type PropsTarget<'a> = (
    &'a mut RawConfig,
    &'a mut String,
    &'a mut Vec<ColumnProperties>,
    Option<&'a mut Option<PathBuf>>,
);

/// Each name's first position: duplicates are reported by
/// `check_unique_names`, and properties apply to the first node.
fn first_index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut index = HashMap::new();
    for (i, name) in names.enumerate() {
        index.entry(name.to_owned()).or_insert(i);
    }
    index
}

fn unknown_node<'a>(
    file: &Path,
    props: &ModelProperties,
    kind: &str,
    names: impl Iterator<Item = &'a str>,
) -> Diagnostic {
    Diagnostic::error(
        Code::UnknownNode,
        format!(
            "properties for {kind} `{}`, but the project has no {kind} of that name",
            props.name.value
        ),
    )
    .with_span(yaml::span_of(file, &props.name))
    .with_suggestion(&props.name.value, names)
}

fn apply_properties(file: &Path, props: ModelProperties, target: PropsTarget<'_>, errors: &mut Diagnostics) {
    let (config, description, columns, properties_file) = target;
    if let Some(config_map) = check_config(file, props.config, errors) {
        config.merge(config_map);
    }
    if let Some(d) = props.description {
        *description = d;
    }
    *columns = props.columns;
    if let Some(slot) = properties_file {
        *slot = Some(file.to_path_buf());
    }
}

/// Turns a YAML config block into config, each key at its line,
/// rejecting keys that are one typo away from a key etl knows.
fn check_config(file: &Path, config: ConfigMap, errors: &mut Diagnostics) -> Option<RawConfig> {
    let mut out = RawConfig::default();
    let mut ok = true;
    for (key, value) in config {
        let span = yaml::span(file, &value.referenced);
        if let Some(diag) = crate::config::key_typo(&key) {
            errors.push(diag.with_span(span.clone()));
            ok = false;
        }
        out.insert(key, value.value, span);
    }
    ok.then_some(out)
}

fn load_source(
    root: &Path,
    header: &Header,
    scope: &settings::SettingScope,
    file: &Path,
    source: SourceProperties,
    data_tests: &mut Vec<DataTest>,
    errors: &mut Diagnostics,
) -> Vec<Source> {
    let project = header.name.as_str();
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
        let Some(location) = location else {
            errors.push(
                Diagnostic::error(
                    Code::MissingLocation,
                    format!(
                        "source table `{}.{}` has no `location`",
                        source.name.value, table.name.value
                    ),
                )
                .with_span(span)
                .with_help("give the table (or its source) a `location:` path or URL, globs allowed"),
            );
            continue;
        };
        let format_value = table
            .format
            .or_else(|| external.as_ref().and_then(|e| e.file_format.clone()))
            .or_else(|| source.format.clone());
        let format = match &format_value {
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
        });
    }
    out
}

fn guess_format(location: &str) -> Option<SourceFormat> {
    let lower = location.to_ascii_lowercase();
    // `orders/*.jsonl.gz`: the format is before the compression suffix.
    let lower = [".gz", ".bz2", ".xz", ".zst"]
        .iter()
        .find_map(|ext| lower.strip_suffix(ext))
        .unwrap_or(&lower);
    let ext = lower.rsplit('.').next()?;
    SourceFormat::parse(ext)
}

fn check_unique_names(models: &[Model], seeds: &[Seed], sources: &[Source], errors: &mut Diagnostics) {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    let nodes = models
        .iter()
        .map(|m| (m.name.as_str(), m.file.path.as_path()))
        .chain(seeds.iter().map(|s| (s.name.as_str(), s.path.as_path())));
    for (name, path) in nodes {
        if let Some(first) = seen.insert(name, path) {
            errors.push(
                Diagnostic::error(Code::DuplicateName, format!("two nodes are named `{name}`"))
                    .with_span(Some(Span::file(path)))
                    .with_note(format!("`{}` has the same name", first.display()))
                    .with_help("`ref()` needs names to be unique: rename one of the files"),
            );
        }
    }
    let mut seen_sources = BTreeSet::new();
    for s in sources {
        if !seen_sources.insert((&s.source_name, &s.name)) {
            errors.push(
                Diagnostic::error(
                    Code::DuplicateSource,
                    format!("source table `{}.{}` is declared twice", s.source_name, s.name),
                )
                .with_span(s.span.clone()),
            );
        }
    }
}

/// The generic tests of a model's or seed's properties and of its columns.
fn node_tests(
    header: &Header,
    file: &Path,
    target: &TestTarget,
    props: &mut ModelProperties,
    errors: &mut Diagnostics,
) -> Vec<DataTest> {
    let entries: Vec<_> = std::mem::take(&mut props.tests)
        .into_iter()
        .chain(std::mem::take(&mut props.data_tests))
        .collect();
    data_tests::generic_tests(
        &header.name,
        file,
        &header.model_paths,
        target,
        entries,
        &mut props.columns,
        errors,
    )
}

fn check_unique_tests(tests: &[DataTest], errors: &mut Diagnostics) {
    let mut seen: BTreeMap<&str, &DataTest> = BTreeMap::new();
    for test in tests {
        if let Some(first) = seen.insert(&test.name, test) {
            errors.push(
                Diagnostic::error(Code::DuplicateTest, format!("two data tests are named `{}`", test.name))
                    .with_span(test.span.clone())
                    .with_note(format!(
                        "the other is declared in `{}`",
                        first
                            .span
                            .as_ref()
                            .map_or_else(|| first.path.display().to_string(), |s| s.to_string())
                    ))
                    .with_help("remove the duplicate, or give one of them a `name:`"),
            );
        }
    }
}

/// `tests/generic/**.sql` under a test path.
fn is_generic_test_file(test_paths: &[String], path: &Path) -> bool {
    test_paths
        .iter()
        .any(|d| path.starts_with(normalize(&Path::new(d).join("generic"))))
}

fn absolute(dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    };
    normalize(&abs)
}

/// Removes `.` and resolves `..` without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    #[test]
    fn folder_config_applies_down_the_tree_and_tags_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "project.yaml",
                    "name: shop\nmodels:\n  +tags: [all]\n  silver:\n    +materialized: table\n    +tags: [silver]\n",
                ),
                ("models/silver/a.sql", "select 1"),
                ("models/b.sql", "select 1"),
            ],
        );
        let p = load(dir.path(), &LoadOptions::default()).unwrap();
        let a = p.models.iter().find(|m| m.name == "a").unwrap();
        assert_eq!(a.fqn, vec!["shop", "silver", "a"]);
        assert_eq!(a.config.materialized(), Some("table"));
        assert_eq!(a.config.value("tags"), Some(&serde_json::json!(["all", "silver"])));
        let b = p.models.iter().find(|m| m.name == "b").unwrap();
        assert_eq!(b.config.materialized(), None);
        assert_eq!(p.target.name, "dev");
        assert!(p.target.lake.as_str().ends_with("/lake/"));
    }

    #[test]
    fn misspelt_folder_in_config_is_an_error_with_suggestion() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "project.yaml",
                    "name: shop\nmodels:\n  silvr:\n    +materialized: table\n",
                ),
                ("models/silver/a.sql", "select 1"),
            ],
        );
        let errs = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert_eq!(errs[0].code, Code::UnknownConfigPath);
        assert_eq!(errs[0].span.as_ref().unwrap().line, 3);
        assert_eq!(errs[0].help, vec!["did you mean `silver`?".to_owned()]);
    }

    #[test]
    fn dbt_project_vars_scoped_by_project_are_flattened() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "dbt_project.yml",
                    "name: jaffle\nconfig-version: 2\nprofile: jaffle\nvars:\n  jaffle:\n    x: 1\n  y: 2\nmodels:\n  jaffle:\n    +materialized: table\n",
                ),
                ("models/m.sql", "select 1"),
            ],
        );
        let p = load(
            dir.path(),
            &LoadOptions {
                vars: Some("{y: 3}".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.flavor, Flavor::Dbt);
        assert_eq!(p.vars["x"], 1);
        assert_eq!(p.vars["y"], 3);
        assert_eq!(p.models[0].config.materialized(), Some("table"));
    }

    #[test]
    fn config_typo_in_properties_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("project.yaml", "name: shop\n"),
                ("models/m.sql", "select 1"),
                (
                    "models/props.yml",
                    "version: 2\nmodels:\n  - name: m\n    config:\n      materalized: table\n",
                ),
            ],
        );
        let errs = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert_eq!(errs[0].code, Code::UnknownConfig);
        assert_eq!(errs[0].span.as_ref().unwrap().line, 5);
    }

    #[test]
    fn unknown_target_names_the_defined_ones() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[(
                "project.yaml",
                "name: shop\ntargets:\n  dev:\n    lake: ./lake\n  prod:\n    lake: s3://b/p\n",
            )],
        );
        let errs = load(
            dir.path(),
            &LoadOptions {
                target: Some("prd".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(errs[0].code, Code::UnknownTarget);
        assert_eq!(errs[0].help, vec!["did you mean `prod`?".to_owned()]);
    }
}
