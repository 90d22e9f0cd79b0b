//! Loading a project: the project file (`project.yaml`, or dbt's
//! `dbt_project.yml`), its properties files, and every model, seed, macro and
//! test file it holds, into one typed [`Project`].
//!
//! Everything a user wrote is checked here, before anything runs: unknown
//! keys, properties for models that do not exist, config paths that match no
//! folder, two nodes with the same name. Each problem is a [`Diagnostic`]
//! with the file and line, and all of them are reported at once.

mod data_tests;
mod discovery;
mod packages;
pub use packages::{Installed, Package};
mod exposures;
mod profiles;
mod project_file;
mod properties;
mod settings;
pub use exposures::Exposure;
mod snapshots;
mod unit_tests;
pub use unit_tests::{Given, Input, Overrides, Rows, UnitTest, csv_lines};
pub mod yaml;
pub use discovery::*;
mod selectors;
pub use selectors::*;
mod sources;
pub use sources::*;
mod target;
pub use target::*;
mod tree;
use tree::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use url::Url;

use crate::config::RawConfig;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::parallel;
pub use data_tests::{DataTest, TestKind, TestTarget};
use project_file::{ConfigTree, DbtProjectFile, EtlProjectFile, TargetSpec};
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
    /// `--profiles-dir`: where dbt projects' `profiles.yml` is.
    pub profiles_dir: Option<PathBuf>,
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
    /// `unit_tests:` of the properties files.
    pub unit_tests: Vec<UnitTest>,
    /// `exposures:` of the properties files.
    pub exposures: Vec<Exposure>,
    /// Named selections from `selectors.yml`.
    pub selectors: Vec<SelectorDefinition>,
    /// What the project's files set that etl accepts but does not act on.
    pub warnings: Vec<Diagnostic>,
    /// dbt's `dispatch:`: for a macro namespace, the packages searched for
    /// its implementations, in order.
    pub dispatch: BTreeMap<String, Vec<String>>,
    /// The dbt packages installed (or `local:`), each with its macros.
    pub packages: Vec<Package>,
    /// `on-run-start` and `on-run-end`.
    pub run_hooks: RunHooks,
}

/// A file read from the project, with its project-relative path.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// The snapshot block it is, when its file holds several.
    pub block: Option<String>,
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
    /// A model, or a snapshot (built as one, then merged as SCD type 2).
    pub resource_type: crate::config::ResourceType,
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

impl Model {
    fn new(file: SourceFile, fqn: Vec<String>, config: RawConfig) -> Model {
        Model {
            name: fqn.last().cloned().unwrap_or_default(),
            file,
            fqn,
            config,
            description: String::new(),
            columns: Vec::new(),
            properties_file: None,
            resource_type: crate::config::ResourceType::Model,
        }
    }
}

impl Seed {
    fn new(path: PathBuf, fqn: Vec<String>, config: RawConfig) -> Seed {
        Seed {
            name: fqn.last().cloned().unwrap_or_default(),
            path,
            fqn,
            config,
            description: String::new(),
            columns: Vec::new(),
        }
    }
}

type Diagnostics = Vec<Diagnostic>;

/// Where a model's (or snapshot's) properties go.
fn model_slot(m: &mut Model) -> PropsTarget<'_> {
    (
        &mut m.config,
        &mut m.description,
        &mut m.columns,
        Some(&mut m.properties_file),
    )
}

/// Loads the project at `dir`.
/// The project's name and target alone, when its project file reads:
/// whom a build that cannot load the rest of the project tells.
pub fn load_target(dir: &Path, options: &LoadOptions) -> Option<(String, Target)> {
    let root = absolute(dir);
    let header = read_project_file(&root).ok()?;
    let vars = merge_cli_vars(header.vars.clone(), options.vars.as_deref()).ok()?;
    let target = resolve_target(&root, &header, &vars, options, &mut Vec::new()).ok()?;
    Some((header.name, target))
}

pub fn load(dir: &Path, options: &LoadOptions) -> Result<Project, Diagnostics> {
    let root = absolute(dir);
    let mut header = read_project_file(&root)?;
    let mut errors = Vec::new();
    let mut warnings = std::mem::take(&mut header.warnings);

    let vars = match merge_cli_vars(header.vars.clone(), options.vars.as_deref()) {
        Ok(vars) => vars,
        Err(e) => return Err(vec![e]),
    };
    let target = match resolve_target(&root, &header, &vars, options, &mut warnings) {
        Ok(t) => t,
        Err(e) => return Err(vec![e]),
    };

    let model_files = discover(&root, &header.model_paths, &["sql"], &mut errors);
    let seed_files = discover(&root, &header.seed_paths, &["csv"], &mut errors);
    let snapshot_files = discover(&root, &header.snapshot_paths, &["sql"], &mut errors);
    let mut macro_files = discover(&root, &header.macro_paths, &["sql"], &mut errors);
    // dbt keeps custom generic tests (`{% test %}` blocks) in
    // `tests/generic/`: those files are macros, not singular tests.
    let (generic_files, test_files): (Vec<PathBuf>, Vec<PathBuf>) =
        discover(&root, &header.test_paths, &["sql"], &mut errors)
            .into_iter()
            .partition(|p| is_generic_test_file(&header.test_paths, p));
    macro_files.extend(generic_files);
    let packages = match packages::load(&root, &header.install_path) {
        Ok(packages) => packages,
        Err(diags) => {
            errors.extend(diags);
            Vec::new()
        }
    };
    let mut yml_dirs = header.model_paths.clone();
    yml_dirs.extend(header.seed_paths.iter().cloned());
    yml_dirs.extend(header.macro_paths.iter().cloned());
    yml_dirs.extend(header.snapshot_paths.iter().cloned());
    for package in &packages {
        yml_dirs.extend(package.model_dirs.iter().cloned());
        yml_dirs.extend(package.seed_dirs.iter().cloned());
        yml_dirs.extend(package.snapshot_dirs.iter().cloned());
    }
    let properties_files = discover(&root, &yml_dirs, &["yml", "yaml"], &mut errors);

    let mut models = Vec::new();
    for (path, text) in read_all(&root, model_files, &mut errors) {
        let fqn = fqn_of(&header.name, &header.model_paths, &path);
        let config = tree_config(header.models.as_ref(), &header, &fqn);
        models.push(Model::new(
            SourceFile {
                path,
                text,
                block: None,
            },
            fqn,
            config,
        ));
    }
    let files = read_all(&root, snapshot_files, &mut errors);
    let config = |fqn: &[String]| tree_config(header.snapshots.as_ref(), &header, fqn);
    models.extend(snapshots::of_files(
        files,
        &header.name,
        &header.snapshot_paths,
        config,
        &mut errors,
    ));
    let mut seeds = Vec::new();
    for path in seed_files {
        let fqn = fqn_of(&header.name, &header.seed_paths, &path);
        let config = tree_config(header.seeds.as_ref(), &header, &fqn);
        seeds.push(Seed::new(path, fqn, config));
    }

    // A package's models and seeds: its own trees' config, under the
    // project's (`models: {<package>: ...}`).
    for package in &packages {
        let files = discover(&root, &package.model_dirs, &["sql"], &mut errors);
        for (path, text) in read_all(&root, files, &mut errors) {
            let fqn = fqn_of(&package.name, &package.model_dirs, &path);
            let mut config = tree_config_at(package.models.as_ref(), &package.file, &package.name, &fqn);
            config.merge(tree_config(header.models.as_ref(), &header, &fqn));
            models.push(Model::new(
                SourceFile {
                    path,
                    text,
                    block: None,
                },
                fqn,
                config,
            ));
        }
        let files = discover(&root, &package.snapshot_dirs, &["sql"], &mut errors);
        let files = read_all(&root, files, &mut errors);
        let config = |fqn: &[String]| {
            let mut config = tree_config_at(package.snapshots.as_ref(), &package.file, &package.name, fqn);
            config.merge(tree_config(header.snapshots.as_ref(), &header, fqn));
            config
        };
        models.extend(snapshots::of_files(
            files,
            &package.name,
            &package.snapshot_dirs,
            config,
            &mut errors,
        ));
        for path in discover(&root, &package.seed_dirs, &["csv"], &mut errors) {
            let fqn = fqn_of(&package.name, &package.seed_dirs, &path);
            let mut config = tree_config_at(package.seeds.as_ref(), &package.file, &package.name, &fqn);
            config.merge(tree_config(header.seeds.as_ref(), &header, &fqn));
            seeds.push(Seed::new(path, fqn, config));
        }
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
    let mut all_unit_tests = Vec::new();
    let mut all_exposures = Vec::new();
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
        // A package's properties file declares the package's sources and
        // tests, named under it as in dbt.
        let package = packages.iter().find(|p| path.starts_with(&p.root));
        let owner = Owner {
            name: package.map_or(header.name.as_str(), |p| p.name.as_str()),
            model_dirs: package.map_or(&header.model_paths, |p| &p.model_dirs),
        };
        for (key, what, value) in [
            ("analyses", "analyses are not compiled by etl yet", &file.analyses),
            ("metrics", "metrics are not read by etl", &file.metrics),
            (
                "semantic_models",
                "semantic models are not read by etl",
                &file.semantic_models,
            ),
            (
                "saved_queries",
                "saved queries are not read by etl",
                &file.saved_queries,
            ),
        ] {
            if let Some(value) = present(value) {
                warnings.push(
                    Diagnostic::warning(Code::Unsupported, format!("`{key}`: {what}"))
                        .with_span(yaml::span(&path, &value.referenced)),
                );
            }
        }
        for props in &file.models {
            for (key, what, value) in [
                ("versions", "model versions are not built by etl yet", &props.versions),
                (
                    "constraints",
                    "constraints are not enforced by etl yet",
                    &props.constraints,
                ),
            ] {
                if let Some(value) = present(value) {
                    warnings.push(
                        Diagnostic::warning(
                            Code::Unsupported,
                            format!("model `{}`: `{key}`: {what}", props.name.value),
                        )
                        .with_span(yaml::span(&path, &value.referenced)),
                    );
                }
            }
        }
        for mut props in file.models {
            if let Some(relation) = &props.relation {
                errors.push(
                    Diagnostic::error(
                        Code::InvalidConfig,
                        format!("model `{}`: `relation` belongs to a snapshot", props.name.value),
                    )
                    .with_span(yaml::span(&path, &relation.referenced))
                    .with_help("list it under `snapshots:` to snapshot that relation"),
                );
            }
            let target = TestTarget::Model(props.name.value.clone());
            data_tests.extend(node_tests(&owner, &path, &target, &mut props, &mut errors));
            let index = model_index
                .get(&props.name.value)
                .filter(|&&i| models[i].resource_type == crate::config::ResourceType::Model);
            match index {
                Some(&i) => apply_properties(&path, props, model_slot(&mut models[i]), &mut errors),
                None => errors.push(unknown_node(
                    &path,
                    &props,
                    "model",
                    models.iter().map(|m| m.name.as_str()),
                )),
            }
        }
        for props in file.exposures {
            all_exposures.extend(exposures::exposure(
                owner.name,
                &path,
                props,
                &mut errors,
                &mut warnings,
            ));
        }
        for props in file.unit_tests {
            // A package's fixtures are under its own test paths.
            let test_paths = package.map_or(&header.test_paths, |p| &p.test_dirs);
            let mut folders = fqn_with(owner.name, &yml_dirs, &path, "");
            folders.pop();
            folders.remove(0);
            let test = unit_tests::unit_test(&root, test_paths, owner.name, &folders, &path, props, &mut errors);
            all_unit_tests.extend(test);
        }
        for mut props in file.snapshots {
            // dbt 1.9: a snapshot defined by its properties.
            if let Some(relation) = props.relation.take() {
                let fqn = fqn_with(owner.name, &yml_dirs, &path, &props.name.value);
                let config = tree_config(header.snapshots.as_ref(), &header, &fqn);
                let line = yaml::span(&path, &relation.referenced).map_or(1, |s| s.line);
                models.push(snapshots::from_relation(&path, &relation.value, line, fqn, config));
            }
            let target = TestTarget::Model(props.name.value.clone());
            data_tests.extend(node_tests(&owner, &path, &target, &mut props, &mut errors));
            let is_snapshot = |m: &Model| m.resource_type == crate::config::ResourceType::Snapshot;
            match models
                .iter()
                .rposition(|m| is_snapshot(m) && m.name == props.name.value)
            {
                Some(i) => apply_properties(&path, props, model_slot(&mut models[i]), &mut errors),
                None => errors.push(unknown_node(
                    &path,
                    &props,
                    "snapshot",
                    models.iter().filter(|m| is_snapshot(m)).map(|m| m.name.as_str()),
                )),
            }
        }
        for mut props in file.seeds {
            let target = TestTarget::Seed(props.name.value.clone());
            data_tests.extend(node_tests(&owner, &path, &target, &mut props, &mut errors));
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
                owner.name,
                &scope,
                &path,
                source,
                &mut data_tests,
                &mut errors,
            ));
        }
    }

    // The project file's `sources:` tree, under each source table's own
    // config (`sources: {project: {source: {table: {+enabled: false}}}}`).
    check_tree_paths(
        header.sources.as_ref(),
        &header,
        sources.iter().map(|s| s.fqn.as_slice()),
        &mut errors,
    );
    for source in &mut sources {
        let mut config = tree_config(header.sources.as_ref(), &header, &source.fqn);
        config.merge(std::mem::take(&mut source.config));
        source.config = config;
    }

    let macro_files = macro_files
        .into_iter()
        .filter_map(|path| {
            read(&root, &path, &mut errors).map(|text| SourceFile {
                path,
                text,
                block: None,
            })
        })
        .collect();
    for path in test_files {
        if let Some(text) = read(&root, &path, &mut errors) {
            data_tests.push(data_tests::singular_test(
                &header.name,
                &header.test_paths,
                SourceFile {
                    path,
                    text,
                    block: None,
                },
            ));
        }
    }
    // The project file's `unit_tests:` tree, under each unit test's own.
    check_tree_paths(
        header.unit_tests.as_ref(),
        &header,
        all_unit_tests.iter().map(|t: &UnitTest| t.fqn.as_slice()),
        &mut errors,
    );
    for test in &mut all_unit_tests {
        let mut config = tree_config(header.unit_tests.as_ref(), &header, &test.fqn);
        config.merge(std::mem::take(&mut test.config));
        test.config = config;
    }
    // The project file's `tests:` tree, under each test's own config.
    for test in &mut data_tests {
        let mut config = tree_config(header.tests.as_ref(), &header, &test.fqn);
        config.merge(std::mem::take(&mut test.config));
        test.config = config;
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
        unit_tests: all_unit_tests,
        exposures: all_exposures,
        selectors,
        warnings,
        dispatch: header.dispatch,
        packages,
        run_hooks: header.run_hooks,
    })
}

/// `etl deps`: installs the git packages of the project at `dir`.
pub fn install_packages(dir: &Path) -> Result<Vec<Installed>, Diagnostics> {
    let root = absolute(dir);
    let header = read_project_file(&root)?;
    packages::install(&root, &header.install_path)
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
/// The project or package a properties file belongs to.
struct Owner<'a> {
    name: &'a str,
    model_dirs: &'a [String],
}

fn node_tests(
    owner: &Owner<'_>,
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
        owner.name,
        file,
        owner.model_dirs,
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

    #[test]
    fn sql_dialect_of_an_etl_project_is_checked_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("project.yaml", "name: shop\nsql_dialect: duckdb\n")]);
        let project = load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(project.target.dialect, Dialect::DuckDb);
        write(dir.path(), &[("project.yaml", "name: shop\nsql_dialect: duckbd\n")]);
        let errs = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert_eq!(errs[0].message, "unknown `sql_dialect` `duckbd`");
        assert_eq!(errs[0].span.as_ref().unwrap().line, 2);
        assert_eq!(errs[0].help, vec!["did you mean `duckdb`?".to_owned()]);
    }
}
