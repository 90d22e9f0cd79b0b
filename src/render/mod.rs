//! Rendering models: minijinja with dbt's surface, macros from the macro
//! paths callable by name everywhere, and a record of what each model
//! called (`ref`, `source`, `config`) from which the DAG is built.
//!
//! Rendering runs twice, as in dbt: a first pass learns every model's
//! in-file `config()` (which can change another model's schema, alias or
//! materialization, and so what `ref()` renders to); a second pass renders
//! again only the models whose refs rendered differently.

mod builtins;
mod context;
mod data_tests;
mod introspect;
mod macros;
mod modules;
mod mutable;
mod naming;
mod sourcemap;
mod warehouse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior, Value};

use crate::lake::Relation;
use context::{Globals, Recorded, Scope};
use macros::{MACROS, Macros};
use naming::{Naming, NodeRef};
pub use sourcemap::LineMap;
pub use warehouse::{Column as LakeColumn, Table as LakeTable, Warehouse};

use crate::config::RawConfig;
use crate::diagnostic::{Diagnostic, Span};
use crate::parallel;
use crate::project::{Model, Project, SourceFile, TestKind};

#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub full_refresh: bool,
    /// Models for which `is_incremental()` is true: incremental models whose
    /// table exists and that this run does not rebuild in full.
    pub incremental: std::collections::BTreeSet<String>,
    pub run_started_at: DateTime<Utc>,
    pub invocation_id: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            full_refresh: false,
            incremental: Default::default(),
            run_started_at: Utc::now(),
            invocation_id: String::new(),
        }
    }
}

/// A `ref()` or `source()` call and where it is in the template.
#[derive(Debug, Clone)]
pub struct Call {
    pub package: Option<String>,
    pub name: String,
    pub span: Option<Span>,
}

#[derive(Debug, Clone)]
pub struct RenderedModel {
    pub name: String,
    pub path: PathBuf,
    /// The template text, to map SQL positions back to it.
    pub template: String,
    pub sql: String,
    pub refs: Vec<Call>,
    /// `(source, table)` pairs.
    pub sources: Vec<(String, String)>,
    /// Project, properties and in-file config, merged.
    pub config: RawConfig,
    pub relation: Relation,
    pub uses_is_incremental: bool,
    pub logs: Vec<String>,
    /// The model's `pre_hook` and `post_hook`, rendered in its context.
    pub pre_hooks: Vec<String>,
    pub post_hooks: Vec<String>,
    /// Whether its SQL or hooks read `execute` or ask the lake: it renders
    /// again when it runs (see [`render_at_run`]).
    pub introspects: bool,
    /// The macros its template calls, as `macro.<package>.<name>`.
    pub macros: Vec<String>,
}

/// The relations of seeds and sources, which are known without rendering.
#[derive(Debug, Clone, Default)]
pub struct Relations {
    pub seeds: BTreeMap<String, Relation>,
    pub sources: BTreeMap<(String, String), Relation>,
}

pub struct Rendered {
    pub models: Vec<RenderedModel>,
    /// Each seed's `pre_hook` and `post_hook`, rendered, when it has any.
    pub seed_hooks: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// One per `Project::data_tests`, in the same order. A generic test's
    /// `path` is its properties file and its `template` is empty.
    pub tests: Vec<RenderedModel>,
    pub relations: Relations,
    /// What rendering a node again while it runs needs.
    pub run: Arc<RunRender>,
}

/// The macros and relations a node renders with, kept for the nodes that
/// render again when they run.
pub struct RunRender {
    macros: Macros,
    globals: Arc<Globals>,
}

impl RunRender {
    /// Every macro the project can call: `(package, name, file, its
    /// definition as written)`, dbt's built-in ones under `dbt`.
    pub fn macro_definitions(&self) -> impl Iterator<Item = (&str, &str, &Path, &str)> {
        self.macros
            .registry
            .definitions
            .iter()
            .map(|((ns, name), (path, sql))| (ns.as_str(), name.as_str(), path.as_path(), sql.as_str()))
    }
}

impl std::fmt::Debug for RunRender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRender").finish_non_exhaustive()
    }
}

/// Renders every model of the project.
pub fn render_project(project: &Project, options: &RenderOptions) -> Result<Rendered, Vec<Diagnostic>> {
    let macros = Macros::collect(project);
    let mut errors = Vec::new();
    // The macros are compiled into every environment below; check them once
    // here so that an error in them is reported once.
    if let Err(err) = Environment::new().add_template_owned(MACROS, macros.combined.clone()) {
        errors.push(macros.diagnostic(&err, project));
        return Err(errors);
    }

    let mut globals = base_globals(project, options);
    let naming = Naming::new(project, &macros, Arc::new(clone_globals(&globals)))?;
    let mut seeds = BTreeMap::new();
    for seed in &project.seeds {
        let node = NodeRef {
            resource_type: "seed",
            name: &seed.name,
            fqn: &seed.fqn,
            config: &seed.config,
        };
        match naming.relation(&node, &macros, project) {
            Ok(relation) => {
                seeds.insert(seed.name.clone(), relation);
            }
            Err(diag) => errors.push(diag),
        }
    }
    let relations = Relations {
        seeds,
        sources: project
            .sources
            .iter()
            .map(|s| {
                let rel = Relation {
                    schema: s.source_name.clone(),
                    identifier: s.name.clone(),
                    ephemeral: false,
                };
                ((s.source_name.clone(), s.name.clone()), rel)
            })
            .collect(),
    };
    globals.models = relations.seeds.clone();
    globals.sources = relations.sources.clone();
    for model in &project.models {
        match naming.relation(&model_ref(model, &model.config), &macros, project) {
            Ok(relation) => {
                globals.models.insert(model.name.clone(), relation);
            }
            Err(diag) => errors.push(diag),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Pass 1: config from the project files only. Models are compiled and
    // rendered on every core, each thread with an environment of its own
    // holding its share of the templates (an environment's templates can
    // only be added one at a time).
    let first = Arc::new(globals);
    let shares = parallel::chunks(project.models.len(), 16, |range| {
        let models = &project.models[range.clone()];
        let env = environment(&macros, project, models.iter().map(|m| &m.file))?;
        let outputs: Vec<_> = models
            .iter()
            .map(|model| render_one(&env, model, first.models[&model.name].clone(), &first, &macros, project))
            .collect();
        Ok::<_, Vec<Diagnostic>>((range, env, outputs))
    });
    let mut envs = Vec::with_capacity(shares.len());
    let mut outputs: Vec<(String, Recorded)> = Vec::with_capacity(project.models.len());
    let mut render_errors = Vec::new();
    for share in shares {
        match share {
            Ok((range, env, rendered)) => {
                envs.push((range, env));
                for out in rendered {
                    match out {
                        Ok(out) => outputs.push(out),
                        Err(diag) => render_errors.push(diag),
                    }
                }
            }
            Err(diags) => errors.extend(diags),
        }
    }
    // A template that does not compile hides the render errors after it.
    if errors.is_empty() {
        errors = render_errors;
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Final relations, with each model's own config() applied.
    let mut finals = BTreeMap::new();
    let mut configs = Vec::with_capacity(outputs.len());
    for (model, (_, recorded)) in project.models.iter().zip(&outputs) {
        let mut config = model.config.clone();
        let mut own = recorded.config.clone();
        own.locate(|key| context::config_span(&model.file.path, &model.file.text, key));
        config.merge(own);
        match naming.relation(&model_ref(model, &config), &macros, project) {
            Ok(relation) => {
                finals.insert(model.name.clone(), relation);
            }
            Err(diag) => errors.push(diag),
        }
        configs.push(config);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let changed = finals.iter().any(|(name, rel)| first.models.get(name) != Some(rel));
    let second = if changed {
        let mut globals = Globals {
            models: first.models.clone(),
            ..clone_globals(&first)
        };
        globals.models.extend(finals.clone());
        Some(Arc::new(globals))
    } else {
        None
    };

    let mut models = Vec::with_capacity(outputs.len());
    for (i, ((model, (mut sql, mut recorded)), config)) in project.models.iter().zip(outputs).zip(configs).enumerate() {
        if let Some(second) = &second {
            let stale = recorded
                .refs
                .iter()
                .any(|(_, name, text)| second.models.get(name).map(Relation::sql).as_ref() != Some(text));
            if stale {
                let env = envs
                    .iter()
                    .find_map(|(range, env)| range.contains(&i).then_some(env))
                    .expect("every model is in one environment's share");
                match render_one(env, model, second.models[&model.name].clone(), second, &macros, project) {
                    Ok((s, r)) => (sql, recorded) = (s, r),
                    Err(diag) => {
                        errors.push(diag);
                        continue;
                    }
                }
            }
        }
        let refs = recorded
            .refs
            .iter()
            .map(|(package, name, _)| Call {
                package: package.clone(),
                name: name.clone(),
                span: find_call(&model.file.path, &model.file.text, "ref", name),
            })
            .collect();
        let mut sources: Vec<(String, String)> = Vec::new();
        for s in recorded.sources {
            if !sources.contains(&s) {
                sources.push(s);
            }
        }
        let relation = finals[&model.name].clone();
        let globals = second.as_ref().unwrap_or(&first);
        let node = ("model", model.name.as_str(), model.file.path.as_path());
        let (pre_hooks, post_hooks, hooks_introspect) =
            match render_hooks(&envs[0].1, node, &config, &relation, globals, &macros, project) {
                Ok(hooks) => hooks,
                Err(diag) => {
                    errors.push(diag);
                    continue;
                }
            };
        models.push(RenderedModel {
            name: model.name.clone(),
            path: model.file.path.clone(),
            template: model.file.text.clone(),
            relation,
            pre_hooks,
            post_hooks,
            sql,
            refs,
            sources,
            config,
            uses_is_incremental: recorded.uses_is_incremental,
            logs: recorded.logs,
            introspects: recorded.introspects || hooks_introspect,
            macros: recorded.macros.iter().cloned().collect(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let finals = second.unwrap_or(first);
    let singular = project.data_tests.iter().filter_map(|t| match &t.kind {
        TestKind::Singular { file } => Some(file),
        TestKind::Generic { .. } => None,
    });
    let env = environment(&macros, project, singular)?;
    let shares = parallel::chunks(project.data_tests.len(), 64, |range| {
        project.data_tests[range]
            .iter()
            .map(|test| data_tests::render_test(&env, test, &finals, &macros, project))
            .collect::<Vec<_>>()
    });
    let mut tests = Vec::with_capacity(project.data_tests.len());
    for test in shares.into_iter().flatten() {
        match test {
            Ok(t) => tests.push(t),
            Err(diag) => errors.push(diag),
        }
    }
    let mut seed_hooks = BTreeMap::new();
    for seed in &project.seeds {
        let Some(relation) = relations.seeds.get(&seed.name) else {
            continue;
        };
        let node = ("seed", seed.name.as_str(), seed.path.as_path());
        match render_hooks(&env, node, &seed.config, relation, &finals, &macros, project) {
            Ok((_, _, true)) => errors.push(
                Diagnostic::error(
                    crate::diagnostic::Code::Unsupported,
                    format!(
                        "the hooks of seed `{}` read `execute` or ask the lake (`run_query`, ...): etl renders a \
                         seed's hooks once, before the build",
                        seed.name
                    ),
                )
                .with_span(seed.config.span("post_hook").or(seed.config.span("pre_hook")).cloned())
                .with_help("move the query into an `on-run-end` hook or a model's `post_hook`"),
            ),
            Ok((pre, post, _)) if !pre.is_empty() || !post.is_empty() => {
                seed_hooks.insert(seed.name.clone(), (pre, post));
            }
            Ok(_) => {}
            Err(diag) => errors.push(diag),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Rendered {
        models,
        seed_hooks,
        tests,
        relations,
        run: Arc::new(RunRender {
            macros,
            globals: finals,
        }),
    })
}

/// An environment with etl's functions, the macros, and `files` as
/// templates (each importing the macros on its first line).
fn environment<'a>(
    macros: &Macros,
    project: &Project,
    files: impl Iterator<Item = &'a SourceFile>,
) -> Result<Environment<'static>, Vec<Diagnostic>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_recursion_limit(200);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    builtins::install(&mut env);
    macros.install(&mut env);
    context::install(&mut env);
    introspect::install(&mut env);
    env.add_template_owned(MACROS, macros.combined.clone())
        .map_err(|err| vec![macros.diagnostic(&err, project)])?;
    let mut errors = Vec::new();
    for file in files {
        let source = format!("{}{}", macros.prefix(&file.text), mutable::mutable_literals(&file.text));
        if let Err(err) = env.add_template_owned(template_name(file), source) {
            errors.push(macros.diagnostic(&err, project));
        }
    }
    if errors.is_empty() { Ok(env) } else { Err(errors) }
}

/// Every file registered as a template: models, then singular tests.
pub(super) fn template_files(project: &Project) -> impl Iterator<Item = &SourceFile> {
    project
        .models
        .iter()
        .map(|m| &m.file)
        .chain(project.data_tests.iter().filter_map(|t| match &t.kind {
            TestKind::Singular { file } => Some(file),
            TestKind::Generic { .. } => None,
        }))
}

/// What every render sees before any relation is known.
fn base_globals(project: &Project, options: &RenderOptions) -> Globals {
    Globals {
        project: project.name.clone(),
        models: BTreeMap::new(),
        sources: BTreeMap::new(),
        vars: project.vars.clone(),
        target: target_value(project),
        run_started_at: options.run_started_at,
        invocation_id: options.invocation_id.clone(),
        incremental: options.incremental.clone(),
        owners: project
            .models
            .iter()
            .map(|m| (&m.name, &m.fqn))
            .chain(project.seeds.iter().map(|s| (&s.name, &s.fqn)))
            .map(|(name, fqn)| (name.clone(), fqn[0].clone()))
            .collect(),
        warehouse: None,
        overrides: None,
    }
}

fn clone_globals(g: &Globals) -> Globals {
    Globals {
        project: g.project.clone(),
        models: g.models.clone(),
        sources: g.sources.clone(),
        vars: g.vars.clone(),
        target: g.target.clone(),
        run_started_at: g.run_started_at,
        invocation_id: g.invocation_id.clone(),
        incremental: g.incremental.clone(),
        owners: g.owners.clone(),
        warehouse: g.warehouse.clone(),
        overrides: g.overrides.clone(),
    }
}

fn render_one(
    env: &Environment<'static>,
    model: &Model,
    this: Relation,
    globals: &Arc<Globals>,
    macros: &Macros,
    project: &Project,
) -> Result<(String, Recorded), Diagnostic> {
    // Built only for a template (or a macro) that reads it: on 5,000
    // models it was a tenth of `etl ls`.
    let extra = if macros.reads_model || model.file.text.contains("model") {
        let resource_type = if globals.owners.contains_key(&model.name) {
            "model"
        } else {
            "test"
        };
        BTreeMap::from([("model", node_value(model, &this, resource_type))])
    } else {
        BTreeMap::new()
    };
    let scope = Arc::new(Scope {
        globals: globals.clone(),
        this: Some(this),
        is_incremental: globals.incremental.contains(&model.name),
        base_config: model.config.clone(),
        recorded: Mutex::new(Recorded::default()),
        macros: Default::default(),
    });
    // A package's model calls its package's macros first, as in dbt.
    if let Some(package) = model.fqn.first().filter(|p| **p != project.name) {
        scope
            .macros
            .namespaces
            .lock()
            .expect("macro state poisoned")
            .push(package.clone());
    }
    let template = env
        .get_template(&template_name(&model.file))
        .map_err(|e| macros.diagnostic(&e, project))?;
    let sql = template
        .render(context::render_context_with(scope.clone(), extra))
        .map_err(|e| macros.diagnostic(&e, project))?;
    let recorded = scope.recorded.lock().expect("render scope poisoned").clone();
    for line in &recorded.logs {
        tracing::info!(model = %model.name, "{line}");
    }
    Ok((sql, recorded))
}

/// dbt's `model` in a template: the node being rendered, with its
/// config as the project files set it.
fn node_value(model: &Model, this: &Relation, resource_type: &str) -> Value {
    let package = model.fqn.first().cloned().unwrap_or_default();
    let columns: BTreeMap<String, Value> = model
        .columns
        .iter()
        .map(|c| {
            let column = BTreeMap::from([
                ("name", Value::from(c.name.clone())),
                ("description", Value::from(c.description.clone().unwrap_or_default())),
                ("data_type", Value::from(c.data_type.clone())),
            ]);
            (c.name.clone(), Value::from(column))
        })
        .collect();
    let tags = model
        .config
        .value("tags")
        .map(crate::config::string_list)
        .unwrap_or_default();
    Value::from(BTreeMap::from([
        ("name", Value::from(model.name.clone())),
        ("alias", Value::from(this.identifier.clone())),
        ("schema", Value::from(this.schema.clone())),
        ("database", Value::from("lake")),
        (
            "unique_id",
            Value::from(format!("{resource_type}.{package}.{}", model.name)),
        ),
        ("resource_type", Value::from(resource_type)),
        ("package_name", Value::from(package)),
        ("fqn", Value::from(model.fqn.clone())),
        (
            "original_file_path",
            Value::from(model.file.path.to_string_lossy().into_owned()),
        ),
        ("config", Value::from(minijinja::value::Serde(model.config.values()))),
        ("tags", Value::from(tags)),
        ("description", Value::from(model.description.clone())),
        ("columns", Value::from(columns)),
    ]))
}

fn model_ref<'a>(model: &'a Model, config: &'a RawConfig) -> NodeRef<'a> {
    NodeRef {
        resource_type: model.resource_type.as_str(),
        name: &model.name,
        fqn: &model.fqn,
        config,
    }
}

/// Which node [`render_at_run`] renders: a model or a data test, by its
/// index in the project.
#[derive(Debug, Clone, Copy)]
pub enum RunNode {
    Model(usize),
    Test(usize),
}

/// A node that reads `execute` or asks the lake, rendered as it runs:
/// `execute` is true and `lake` answers `run_query` and the adapter.
/// Its config and relation stay those of the parse, as in dbt; a `ref()`
/// it did not call while parsing is an error, since the DAG was built
/// without it.
pub fn render_at_run(
    project: &Project,
    run: &RunRender,
    node: RunNode,
    parsed: &RenderedModel,
    lake: Arc<dyn Warehouse>,
) -> Result<RenderedModel, Diagnostic> {
    let globals = Arc::new(Globals {
        warehouse: Some(lake),
        ..clone_globals(&run.globals)
    });
    let macros = &run.macros;
    let first_error = |mut errors: Vec<Diagnostic>| errors.remove(0);
    let (rendered, recorded_refs, kind) = match node {
        RunNode::Model(i) => {
            let model = &project.models[i];
            let env = environment(macros, project, std::iter::once(&model.file)).map_err(first_error)?;
            let (sql, recorded) = render_one(&env, model, parsed.relation.clone(), &globals, macros, project)?;
            let what = ("model", model.name.as_str(), model.file.path.as_path());
            let (pre_hooks, post_hooks, _) =
                render_hooks(&env, what, &parsed.config, &parsed.relation, &globals, macros, project)?;
            let mut logs = parsed.logs.clone();
            logs.extend(recorded.logs.iter().cloned());
            let rendered = RenderedModel {
                sql,
                pre_hooks,
                post_hooks,
                logs,
                ..parsed.clone()
            };
            (rendered, recorded.refs, "model")
        }
        RunNode::Test(i) => {
            let test = &project.data_tests[i];
            let singular = match &test.kind {
                TestKind::Singular { file } => Some(file),
                TestKind::Generic { .. } => None,
            };
            let env = environment(macros, project, singular.into_iter()).map_err(first_error)?;
            let rendered = data_tests::render_test(&env, test, &globals, macros, project)?;
            let refs = rendered
                .refs
                .iter()
                .map(|c| (c.package.clone(), c.name.clone(), String::new()))
                .collect();
            (rendered, refs, "test")
        }
    };
    for (_, name, _) in &recorded_refs {
        if !parsed.refs.iter().any(|c| &c.name == name) {
            return Err(Diagnostic::error(
                crate::diagnostic::Code::RunTimeRef,
                format!(
                    "{kind} `{}` calls `ref('{name}')` only when it runs: etl, as dbt, learns the DAG while \
                     parsing, when `execute` is false",
                    parsed.name
                ),
            )
            .with_span(Some(Span::file(&parsed.path)))
            .with_help(format!(
                "call it outside the `{{% if execute %}}` block, or add `-- depends_on: {{{{ ref('{name}') }}}}` \
                 at the top of the file"
            )));
        }
    }
    Ok(rendered)
}

/// A model rendered for one of its unit tests: as it runs (`execute`
/// true), with the test's `overrides`: its vars over the project's, its
/// macros answering with their values, its environment variables, and
/// `is_incremental()` true only when it overrides that macro with `true`.
pub fn render_for_unit_test(
    project: &Project,
    run: &RunRender,
    model_index: usize,
    parsed: &RenderedModel,
    lake: Arc<dyn Warehouse>,
    overrides: &crate::project::Overrides,
) -> Result<RenderedModel, Diagnostic> {
    let model = &project.models[model_index];
    let mut globals = Globals {
        warehouse: Some(lake),
        overrides: Some(Arc::new(context::Overrides {
            macros: overrides.macros.clone(),
            env_vars: overrides.env_vars.clone(),
        })),
        ..clone_globals(&run.globals)
    };
    globals.vars.extend(overrides.vars.clone());
    globals.incremental.remove(&model.name);
    if overrides.is_incremental() {
        globals.incremental.insert(model.name.clone());
    }
    let globals = Arc::new(globals);
    let env = environment(&run.macros, project, std::iter::once(&model.file)).map_err(|mut e| e.remove(0))?;
    let (sql, recorded) = render_one(&env, model, parsed.relation.clone(), &globals, &run.macros, project)?;
    for (_, name, _) in &recorded.refs {
        if !parsed.refs.iter().any(|c| &c.name == name) {
            return Err(Diagnostic::error(
                crate::diagnostic::Code::RunTimeRef,
                format!(
                    "model `{}` calls `ref('{name}')` only under its unit test's overrides: etl, as dbt, learns \
                     the DAG from the parse",
                    parsed.name
                ),
            )
            .with_span(Some(Span::file(&parsed.path))));
        }
    }
    Ok(RenderedModel { sql, ..parsed.clone() })
}

/// SQL typed on the command line (`etl show --inline`), rendered as a
/// model of the project is when it runs: `ref`, `source`, vars, macros,
/// and `execute` true with `lake` answering its queries. Its
/// `ref()` and `source()` calls are recorded, for the caller to make
/// readable.
pub fn render_inline(
    project: &Project,
    run: &RunRender,
    text: &str,
    lake: Arc<dyn Warehouse>,
) -> Result<RenderedModel, Diagnostic> {
    let file = SourceFile {
        path: PathBuf::from("<inline>"),
        text: text.to_owned(),
        block: None,
    };
    let model = Model {
        name: "inline".into(),
        file: file.clone(),
        fqn: vec![project.name.clone(), "inline".into()],
        config: RawConfig::default(),
        description: String::new(),
        columns: Vec::new(),
        properties_file: None,
        resource_type: crate::config::ResourceType::Model,
    };
    let env = environment(&run.macros, project, std::iter::once(&file)).map_err(|mut e| e.remove(0))?;
    let this = Relation {
        schema: project.target.schema.clone(),
        identifier: "inline".into(),
        ephemeral: false,
    };
    // As dbt's show: rendered to run, with `execute` true.
    let globals = Arc::new(Globals {
        warehouse: Some(lake),
        ..clone_globals(&run.globals)
    });
    let (sql, recorded) = render_one(&env, &model, this.clone(), &globals, &run.macros, project)?;
    Ok(RenderedModel {
        name: model.name,
        path: file.path,
        template: file.text,
        sql,
        refs: recorded
            .refs
            .iter()
            .map(|(package, name, _)| Call {
                package: package.clone(),
                name: name.clone(),
                span: None,
            })
            .collect(),
        sources: recorded.sources,
        config: RawConfig::default(),
        relation: this,
        uses_is_incremental: false,
        logs: recorded.logs,
        pre_hooks: Vec::new(),
        post_hooks: Vec::new(),
        introspects: recorded.introspects,
        macros: recorded.macros.iter().cloned().collect(),
    })
}

/// Whether `name` is a macro of the project and `args` are argument names.
pub fn check_operation(
    _project: &Project,
    run: &RunRender,
    name: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), Diagnostic> {
    let macros = &run.macros;
    let (namespace, bare) = match name.split_once('.') {
        Some((ns, bare)) => (Some(ns), bare),
        None => (None, name),
    };
    if !macros.defines(namespace, bare) {
        return Err(Diagnostic::error(
            crate::diagnostic::Code::UnknownNode,
            format!("`{name}` is not a macro of this project"),
        )
        .with_suggestion(bare, macros.names()));
    }
    if let Some(key) = args
        .keys()
        .find(|k| k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(Diagnostic::error(
            crate::diagnostic::Code::InvalidArgument,
            format!("`--args` key `{key}` is not an argument name"),
        ));
    }
    Ok(())
}

/// `etl run-operation`: the macro `name` (or `package.name`) called with
/// `args` as keyword arguments, `execute` true and `lake` answering its
/// queries. What it renders, and its log lines.
pub fn render_operation(
    project: &Project,
    run: &RunRender,
    name: &str,
    args: &serde_json::Map<String, serde_json::Value>,
    lake: Arc<dyn Warehouse>,
) -> Result<(String, Vec<String>), Diagnostic> {
    check_operation(project, run, name, args)?;
    let macros = &run.macros;
    let env = environment(macros, project, std::iter::empty()).map_err(|mut e| e.remove(0))?;
    let globals = Arc::new(Globals {
        warehouse: Some(lake),
        ..clone_globals(&run.globals)
    });
    let scope = Arc::new(Scope {
        globals,
        this: None,
        is_incremental: false,
        base_config: RawConfig::default(),
        recorded: Mutex::new(Recorded::default()),
        macros: Default::default(),
    });
    let call: Vec<String> = args.keys().map(|k| format!("{k}=__etl_args__.{k}")).collect();
    let template = format!("{}{{{{ {name}({}) }}}}", macros.import, call.join(", "));
    let extra = BTreeMap::from([("__etl_args__", Value::from(minijinja::value::Serde(args)))]);
    let text = env
        .render_named_str(
            "run-operation",
            &template,
            context::render_context_with(scope.clone(), extra),
        )
        .map_err(|e| {
            macros
                .diagnostic(&e, project)
                .with_note(format!("in `{name}`, run by run-operation"))
        })?;
    let logs = scope.recorded.lock().expect("render scope poisoned").logs.clone();
    Ok((text.trim().to_owned(), logs))
}

/// `on-run-start` or `on-run-end` (`which`) rendered: with `target`,
/// vars, macros and `extra` (`results` and `schemas` for `on-run-end`).
pub fn render_run_hooks(
    project: &Project,
    which: &str,
    templates: &[String],
    span: Option<Span>,
    options: &RenderOptions,
    extra: BTreeMap<&'static str, serde_json::Value>,
    lake: Option<Arc<dyn Warehouse>>,
) -> Result<Vec<String>, Diagnostic> {
    let extra: BTreeMap<&'static str, Value> = extra
        .into_iter()
        .map(|(k, v)| (k, Value::from(minijinja::value::Serde(v))))
        .collect();
    let macros = Macros::collect(project);
    let env = environment(&macros, project, std::iter::empty()).map_err(|mut d| d.remove(0))?;
    let globals = Arc::new(Globals {
        warehouse: lake,
        ..base_globals(project, options)
    });
    let mut rendered = Vec::new();
    for template in templates {
        let scope = Arc::new(Scope {
            globals: globals.clone(),
            this: None,
            is_incremental: false,
            base_config: RawConfig::default(),
            recorded: Mutex::new(Recorded::default()),
            macros: Default::default(),
        });
        let source = format!("{}{}", macros.prefix(template), mutable::mutable_literals(template));
        let sql = env
            .render_named_str(which, &source, context::render_context_with(scope, extra.clone()))
            .map_err(|e| {
                macros
                    .diagnostic(&e, project)
                    .with_span(span.clone())
                    .with_note(format!("in `{which}`"))
            })?;
        rendered.push(sql);
    }
    Ok(rendered)
}

/// A model's hooks, rendered as its SQL is: with `this`, `target`, vars
/// and macros. An error is placed at the hook's config key.
fn render_hooks(
    env: &Environment<'static>,
    (kind, name, path): (&str, &str, &Path),
    config: &RawConfig,
    this: &Relation,
    globals: &Arc<Globals>,
    macros: &Macros,
    project: &Project,
) -> Result<(Vec<String>, Vec<String>, bool), Diagnostic> {
    let mut rendered = (Vec::new(), Vec::new(), false);
    for key in ["pre_hook", "post_hook"] {
        for template in config.hook_templates(key) {
            let scope = Arc::new(Scope {
                globals: globals.clone(),
                this: Some(this.clone()),
                is_incremental: globals.incremental.contains(name),
                base_config: config.clone(),
                recorded: Mutex::new(Recorded::default()),
                macros: Default::default(),
            });
            let source = format!("{}{}", macros.prefix(&template), mutable::mutable_literals(&template));
            let sql = env
                .render_named_str(
                    &format!("{key} of {name}"),
                    &source,
                    context::render_context(scope.clone()),
                )
                .map_err(|e| {
                    let diag = macros.diagnostic(&e, project);
                    let span = config.span(key).cloned().or(Some(Span::file(path)));
                    diag.with_span(span)
                        .with_note(format!("in the `{key}` of {kind} `{name}`"))
                })?;
            rendered.2 |= scope.recorded.lock().expect("render scope poisoned").introspects;
            if key == "pre_hook" {
                &mut rendered.0
            } else {
                &mut rendered.1
            }
            .push(sql);
        }
    }
    Ok(rendered)
}

/// The relation a data test gets from its config: `schema` and `alias`.
fn relation_of(name: &str, config: &RawConfig, default_schema: &str) -> Relation {
    Relation {
        schema: config.schema().unwrap_or(default_schema).to_owned(),
        identifier: config.alias().unwrap_or(name).to_owned(),
        ephemeral: config.materialized() == Some("ephemeral"),
    }
}

fn target_value(project: &Project) -> Value {
    let t = &project.target;
    Value::from(BTreeMap::from([
        ("name", Value::from(t.name.clone())),
        ("schema", Value::from(t.schema.clone())),
        ("type", Value::from("etl")),
        ("database", Value::from("lake")),
        ("lake", Value::from(t.lake.to_string())),
        ("threads", Value::from(t.threads.unwrap_or_else(num_cpus::get))),
        ("profile_name", Value::from(project.name.clone())),
    ]))
}

pub(super) fn template_name(file: &SourceFile) -> String {
    match &file.block {
        Some(block) => format!("{}#{block}", file.path.to_string_lossy()),
        None => file.path.to_string_lossy().into_owned(),
    }
}

/// Where `func('name')` is called in `text`, if it is written literally.
fn find_call(file: &Path, text: &str, func: &str, name: &str) -> Option<Span> {
    let mut from = 0;
    while let Some(i) = text[from..].find(func).map(|i| i + from) {
        let rest = &text[i + func.len()..];
        let trimmed = rest.trim_start();
        if let Some(args) = trimmed.strip_prefix('(') {
            let args = args.trim_start();
            for q in ['\'', '"'] {
                if args.starts_with(q) && args[1..].starts_with(name) && args[1 + name.len()..].starts_with(q) {
                    let end = text[i..].find(')').map_or(text.len(), |e| i + e + 1);
                    return Some(Span::at_offset(file, text, i, text[i..end].chars().count()));
                }
            }
        }
        from = i + func.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Code;
    use crate::project::{LoadOptions, load};

    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let p = load(dir.path(), &LoadOptions::default()).unwrap();
        (dir, p)
    }

    #[test]
    fn dbt_projects_name_schemas_as_dbt_and_etl_projects_as_written() {
        let files = |project_file: (&'static str, &'static str)| {
            [
                project_file,
                (
                    "models/a.sql",
                    "{{ config(schema='finance', alias='ledger') }}select 1 as x",
                ),
                ("models/b.sql", "select * from {{ ref('a') }}"),
                ("seeds/s.csv", "x\n1\n"),
            ]
        };
        let (_d, p) = project(&files(("dbt_project.yml", "name: shop\nconfig-version: 2\n")));
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        assert_eq!(r.models[0].relation.sql(), "\"main_finance\".\"ledger\"");
        assert!(
            r.models[1].sql.contains("\"main_finance\".\"ledger\""),
            "{}",
            r.models[1].sql
        );
        assert_eq!(r.models[1].relation.sql(), "\"main\".\"b\"");
        assert_eq!(r.relations.seeds["s"].sql(), "\"main\".\"s\"");
        let (_d, p) = project(&files(("project.yaml", "name: shop\n")));
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        assert_eq!(r.models[0].relation.sql(), "\"finance\".\"ledger\"");
    }

    #[test]
    fn a_projects_own_generate_schema_name_names_each_node() {
        let macro_text = "{% macro generate_schema_name(custom_schema_name, node) -%}\n\
            {%- if node.resource_type == 'seed' %}{{ custom_schema_name }}\n\
            {%- elif custom_schema_name is none %}{{ target.schema }}_{{ node.fqn[1] }}\n\
            {%- else %}{{ custom_schema_name }}_{{ var('env') }}{% endif -%}\n\
            {%- endmacro %}\n";
        let (_d, p) = project(&[
            (
                "dbt_project.yml",
                "name: shop\nconfig-version: 2\nvars:\n  env: dev\nseeds:\n  shop:\n    +schema: raw\n",
            ),
            ("macros/naming.sql", macro_text),
            ("models/core/a.sql", "{{ config(schema='finance') }}select 1 as x"),
            ("models/core/b.sql", "select * from {{ ref('a') }}"),
            ("seeds/s.csv", "x\n1\n"),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        assert_eq!(r.models[0].relation.schema, "finance_dev");
        assert_eq!(r.models[1].relation.schema, "main_core");
        assert_eq!(r.relations.seeds["s"].schema, "raw");

        // A macro that names nothing is an error, not an empty schema.
        let (_d, p) = project(&[
            ("dbt_project.yml", "name: shop\nconfig-version: 2\n"),
            (
                "macros/naming.sql",
                "{% macro generate_schema_name(custom_schema_name, node) %} {% endmacro %}",
            ),
            ("models/a.sql", "select 1 as x"),
        ]);
        let errors = render_project(&p, &RenderOptions::default()).err().unwrap();
        assert_eq!(
            errors[0].message,
            "the project's `generate_schema_name` gave an empty name for model `a`"
        );
    }

    #[test]
    fn refs_sources_and_config_are_recorded() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            (
                "models/a.sql",
                "{{ config(materialized='table', schema='silver') }}select 1 as x",
            ),
            (
                "models/b.sql",
                "select * from {{ ref('a') }} join {{ source('raw', 't') }} using (x)",
            ),
            (
                "models/src.yml",
                "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: t\n        location: data/t.csv\n",
            ),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        let b = r.models.iter().find(|m| m.name == "b").unwrap();
        // a's in-file schema reaches b's rendered SQL through the second pass.
        assert_eq!(b.sql, "select * from \"silver\".\"a\" join \"raw\".\"t\" using (x)");
        assert_eq!(b.refs[0].name, "a");
        assert_eq!(b.refs[0].span.as_ref().unwrap().col, 18);
        assert_eq!(b.sources, vec![("raw".to_owned(), "t".to_owned())]);
        let a = r.models.iter().find(|m| m.name == "a").unwrap();
        assert_eq!(a.config.materialized(), Some("table"));
        // Where it was set: the key inside the template's `config()` call.
        let span = a.config.span("materialized").unwrap();
        assert_eq!((span.line, span.col, span.len), (1, 11, "materialized".len()));
        assert_eq!(span.file, std::path::Path::new("models/a.sql"));
    }

    #[test]
    fn return_dispatch_and_namespaces_as_dbt_resolves_them() {
        let (_d, p) = project(&[
            ("dbt_project.yml", "name: shop\nconfig-version: 2\n"),
            (
                "macros/m.sql",
                "{% macro pair() %}{{ return([1, 2]) }}not rendered{% endmacro %}\n\
                 {% macro default__hash(field) %}my_hash({{ field }}){% endmacro %}\n\
                 {% macro twice(x) %}{{ return(x * 2) }}{% endmacro %}\n",
            ),
            (
                "models/a.sql",
                "select {{ pair() | sum }} as s, {{ shop.twice(21) }} as t, {{ dbt.hash('x') }} as h, \
                 {{ dbt.date_trunc('day', 'd') }} as d, {{ type_string() }} as ty",
            ),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        // The project's `default__hash` comes before etl's `etl__hash`:
        // dispatch searches the project first.
        assert_eq!(
            r.models[0].sql,
            "select 3 as s, 42 as t, my_hash(x) as h, date_trunc('day', d) as d, varchar as ty"
        );
    }

    #[test]
    fn a_packages_models_ref_with_the_package_and_call_its_macros_first() {
        let files = |model: &'static str| {
            [
                ("dbt_project.yml", "name: shop\nconfig-version: 2\n"),
                ("packages.yml", "packages:\n  - local: vendor/p\n"),
                ("vendor/p/dbt_project.yml", "name: p\nconfig-version: 2\n"),
                ("vendor/p/macros/m.sql", "{% macro label() %}'from p'{% endmacro %}"),
                ("vendor/p/models/base.sql", "select {{ label() }} as l"),
                ("macros/m.sql", "{% macro label() %}'from shop'{% endmacro %}"),
                ("models/top.sql", model),
            ]
        };
        let (_d, p) = project(&files("select {{ label() }} as l from {{ ref('p', 'base') }}"));
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        let sql = |name: &str| r.models.iter().find(|m| m.name == name).unwrap().sql.clone();
        // dbt looks in the calling node's own package first.
        assert_eq!(sql("base"), "select 'from p' as l");
        assert_eq!(sql("top"), "select 'from shop' as l from \"main\".\"base\"");
        for (model, message) in [
            (
                "select * from {{ ref('q', 'base') }}",
                "`ref('q', 'base')` names package `q`, which is not installed",
            ),
            (
                "select * from {{ ref('shop', 'base') }}",
                "`ref('shop', 'base')`: `base` is a node of `p`, not of `shop`",
            ),
        ] {
            let (_d, p) = project(&files(model));
            let errors = render_project(&p, &RenderOptions::default()).err().unwrap();
            assert_eq!(errors[0].message, message);
        }
    }

    #[test]
    fn model_is_the_node_being_rendered() {
        let (_d, p) = project(&[
            (
                "dbt_project.yml",
                "name: shop\nconfig-version: 2\nmodels:\n  shop:\n    +tags: [daily]\n",
            ),
            (
                "models/core/orders.sql",
                "{{ config(materialized='table') }}{{ model.unique_id }}|{{ model.package_name }}|\
                 {{ model.fqn | join('.') }}|{{ model.resource_type }}|{{ model.alias }}|{{ model.tags | join }}|\
                 {{ model.columns.id.description }}|{{ model.original_file_path }}",
            ),
            (
                "models/core/schema.yml",
                "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: id\n        description: the key\n",
            ),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        assert_eq!(
            r.models[0].sql,
            "model.shop.orders|shop|shop.core.orders|model|orders|daily|the key|models/core/orders.sql"
        );
        // Read in a macro only, it is there too.
        let (_d, p) = project(&[
            ("dbt_project.yml", "name: shop\nconfig-version: 2\n"),
            (
                "macros/m.sql",
                "{% macro whoami() %}{{ model.unique_id }}{% endmacro %}",
            ),
            ("models/orders.sql", "select '{{ whoami() }}' as id"),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        assert_eq!(r.models[0].sql, "select 'model.shop.orders' as id");
    }

    #[test]
    fn macro_runtime_errors_name_what_is_missing() {
        let cases = [
            ("{{ return(1) }}", "`return()` outside a macro", None),
            (
                "{{ dbt.date_trnc('day', 'd') }}",
                "`dbt.date_trnc` is not a macro",
                Some("did you mean `date_trunc`?"),
            ),
            (
                "{{ adapter.dispatch('nothing', 'dbt')() }}",
                "`adapter.dispatch('nothing', 'dbt')` found no implementation: tried shop.etl__nothing, \
                 shop.default__nothing, dbt.etl__nothing, dbt.default__nothing",
                None,
            ),
            (
                "{{ env_var('DBT_ENV_SECRET_KEY', 'x') }}",
                "`DBT_ENV_SECRET_KEY` is a secret: secret environment variables are read in profiles.yml and \
                 packages.yml only",
                None,
            ),
            (
                "{{ adapter.drop_relation(this) }}",
                "`adapter.drop_relation` is not available in etl yet",
                None,
            ),
            (
                "{% call statement('x', language='python') %}x{% endcall %}",
                "`statement(language='python')`: etl runs SQL",
                None,
            ),
        ];
        for (template, message, help) in cases {
            let (_d, p) = project(&[
                ("dbt_project.yml", "name: shop\nconfig-version: 2\n"),
                ("models/a.sql", template),
            ]);
            let errors = render_project(&p, &RenderOptions::default()).err().unwrap();
            assert!(
                errors[0].message.ends_with(message),
                "{template}: {}",
                errors[0].message
            );
            assert_eq!(
                errors[0].span.as_ref().unwrap().file,
                Path::new("models/a.sql"),
                "{template}"
            );
            if let Some(help) = help {
                assert_eq!(errors[0].help, [help.to_owned()], "{template}");
            }
        }
    }

    #[test]
    fn macros_call_each_other_across_files_and_see_this() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            (
                "macros/a.sql",
                "{% macro cents(col) %}({{ col }} * {{ factor() }}){% endmacro %}",
            ),
            (
                "macros/b.sql",
                "{% macro factor() %}100{% endmacro %}\n{% test positive(model, column_name) %}select 1{% endtest %}",
            ),
            (
                "models/m.sql",
                "select {{ cents('price') }} as p, '{{ this.identifier }}' as me",
            ),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        assert_eq!(r.models[0].sql, "select (price * 100) as p, 'm' as me");
    }

    #[test]
    fn unknown_ref_points_at_the_call_with_a_suggestion() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            ("models/stg_orders.sql", "select 1"),
            ("models/m.sql", "select *\nfrom {{ ref('stg_order') }}\n"),
        ]);
        let errs = render_project(&p, &RenderOptions::default()).err().unwrap();
        assert_eq!(errs[0].code, Code::UnknownRef);
        let span = errs[0].span.as_ref().unwrap();
        assert_eq!(
            (span.file.to_str().unwrap(), span.line, span.col),
            ("models/m.sql", 2, 9)
        );
        assert_eq!(errs[0].help, vec!["did you mean `stg_orders`?".to_owned()]);
    }

    #[test]
    fn missing_var_and_env_var_are_errors_naming_them() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\nvars:\n  x: 5\n"),
            (
                "models/a.sql",
                "select {{ var('x') }}, {{ var('y', 7) }}, '{{ env_var('ETL_TEST_SURELY_UNSET', 'd') }}'",
            ),
            ("models/b.sql", "select {{ env_var('ETL_TEST_SURELY_UNSET') }}"),
        ]);
        let errs = render_project(&p, &RenderOptions::default()).err().unwrap();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].code, Code::MissingEnvVar);
        assert!(errs[0].message.contains("ETL_TEST_SURELY_UNSET"));
        assert_eq!(errs[0].span.as_ref().unwrap().file, PathBuf::from("models/b.sql"));
    }

    #[test]
    fn raise_compiler_error_inside_a_macro_points_at_the_macro_file() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            (
                "macros/guard.sql",
                "{% macro guard() %}\n{{ exceptions.raise_compiler_error('nope') }}\n{% endmacro %}",
            ),
            ("models/a.sql", "select 1 {{ guard() }}"),
        ]);
        let errs = render_project(&p, &RenderOptions::default()).err().unwrap();
        assert_eq!(errs[0].code, Code::CompilerError);
        assert_eq!(errs[0].message, "nope");
        let span = errs[0].span.as_ref().unwrap();
        assert_eq!((span.file.to_str().unwrap(), span.line), ("macros/guard.sql", 2));
    }

    #[test]
    fn jinja_syntax_error_has_its_line() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            ("models/a.sql", "select 1\n{% if %}\n"),
        ]);
        let errs = render_project(&p, &RenderOptions::default()).err().unwrap();
        assert_eq!(errs[0].code, Code::JinjaSyntax);
        assert_eq!(errs[0].span.as_ref().unwrap().line, 2);
    }

    #[test]
    fn a_misspelt_config_key_points_at_the_key() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            (
                "models/a.sql",
                "-- daily\n{{ config(materialized='table', materialised='view') }}\nselect 1 as x",
            ),
        ]);
        let errs = render_project(&p, &RenderOptions::default()).err().unwrap();
        assert_eq!(errs[0].code, Code::UnknownConfig);
        assert_eq!(errs[0].help, ["did you mean `materialized`?"]);
        let span = errs[0].span.as_ref().unwrap();
        assert_eq!((span.line, span.col, span.len), (2, 33, "materialised".len()));
    }

    #[test]
    fn execute_and_graph_are_empty_while_parsing_and_full_when_the_node_runs() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            (
                "models/a.sql",
                "{% if execute %}select 1 as x{% else %}select 2 as x{% endif %}",
            ),
            ("models/b.sql", "select 3 as x"),
            (
                "models/c.sql",
                "select {{ graph.nodes | length }} as n{% for id, node in graph.nodes.items() %}, \
                 '{{ node.resource_type }} {{ id }}' as node{% endfor %}",
            ),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        assert_eq!(r.models[0].sql, "select 2 as x");
        assert!(r.models[0].introspects);
        assert!(!r.models[1].introspects);
        assert_eq!(r.models[2].sql, "select 0 as n");
        assert!(r.models[2].introspects);
        let lake: Arc<dyn Warehouse> = Arc::new(FakeLake);
        let ran = render_at_run(&p, &r.run, RunNode::Model(0), &r.models[0], lake.clone()).unwrap();
        assert_eq!(ran.sql, "select 1 as x");
        let ran = render_at_run(&p, &r.run, RunNode::Model(2), &r.models[2], lake).unwrap();
        assert_eq!(ran.sql, "select 1 as n, 'model model.shop.orders' as node");
    }

    /// A lake with one table, `main.orders (status varchar, amount
    /// decimal(10,2))`, whose every query gives two statuses.
    #[derive(Debug)]
    struct FakeLake;

    impl Warehouse for FakeLake {
        fn query(&self, sql: &str) -> Result<warehouse::Table, String> {
            if sql.contains("missing") {
                return Err("table 'main.missing' not found".into());
            }
            Ok(warehouse::Table {
                columns: vec![warehouse::Column {
                    name: "status".into(),
                    data_type: "VARCHAR".into(),
                }],
                rows: vec![vec![Value::from("placed")], vec![Value::from("shipped")]],
            })
        }

        fn graph(&self) -> Value {
            Value::from(minijinja::value::Serde(serde_json::json!({
                "nodes": {"model.shop.orders": {"name": "orders", "resource_type": "model"}},
                "sources": {},
            })))
        }

        fn columns(&self, relation: &Relation) -> Result<Option<Vec<warehouse::Column>>, String> {
            Ok((relation.identifier == "orders").then(|| {
                vec![
                    warehouse::Column {
                        name: "status".into(),
                        data_type: "VARCHAR".into(),
                    },
                    warehouse::Column {
                        name: "amount".into(),
                        data_type: "DECIMAL(10,2)".into(),
                    },
                ]
            }))
        }
    }

    #[test]
    fn run_query_statement_and_the_adapter_answer_from_the_lake_when_the_node_runs() {
        let model = "{% set statuses = run_query('select distinct status from ' ~ ref('orders')) %}\n\
             {% if execute %}{% set values = statuses.columns[0].values() %}{% else %}{% set values = [] %}{% endif %}\n\
             {% call statement('n', fetch_result=True) %}select 1{% endcall %}\n\
             {% set cols = adapter.get_columns_in_relation(ref('orders')) %}\n\
             select {% for v in values %}sum(case when status = '{{ v }}' then 1 end) as {{ v }}_count, {% endfor %}\n\
             {{ cols | map(attribute='name') | join('|') }} as names, \
             {% for c in cols if c.is_number() %}{{ c.quoted }}{% endfor %} as numbers, \
             '{{ statuses.rows[1]['status'] if execute }}' as second, \
             {{ load_result('n')['data'] | length if load_result('n') else 'none' }} as fetched, \
             {{ adapter.get_relation(database=none, schema='main', identifier='nope') is none }} as gone, \
             '{{ load_relation(ref('orders')) }}' as found\n\
             from {{ ref('orders') }}";
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            ("models/orders.sql", "select 'placed' as status"),
            ("models/counts.sql", model),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        let counts = r.models.iter().position(|m| m.name == "counts").unwrap();
        let parsed = &r.models[counts];
        assert!(parsed.introspects);
        assert_eq!(parsed.sql.lines().last().unwrap(), "from \"main\".\"orders\"");
        assert!(
            parsed
                .sql
                .contains("\n as names,  as numbers, '' as second, none as fetched, True as gone, 'None' as found"),
            "{}",
            parsed.sql
        );
        let lake: Arc<dyn Warehouse> = Arc::new(FakeLake);
        let ran = render_at_run(&p, &r.run, RunNode::Model(counts), parsed, lake).unwrap();
        assert!(
            ran.sql.contains(
                "select sum(case when status = 'placed' then 1 end) as placed_count, \
                 sum(case when status = 'shipped' then 1 end) as shipped_count, \n\
                 status|amount as names, \"amount\" as numbers, 'shipped' as second, 2 as fetched, True as gone, \
                 '\"main\".\"orders\"' as found"
            ),
            "{}",
            ran.sql
        );
    }

    #[test]
    fn a_ref_called_only_at_run_time_and_a_failing_query_are_errors() {
        let (_d, p) = project(&[
            ("project.yaml", "name: shop\n"),
            ("models/a.sql", "select 1 as x"),
            (
                "models/b.sql",
                "select * from {% if execute %}{{ ref('a') }}{% else %}(select 1 as x){% endif %}",
            ),
            (
                "models/c.sql",
                "{% do run_query('select * from missing') %}select 1 as x",
            ),
        ]);
        let r = render_project(&p, &RenderOptions::default()).unwrap();
        let lake: Arc<dyn Warehouse> = Arc::new(FakeLake);
        let err = render_at_run(&p, &r.run, RunNode::Model(1), &r.models[1], lake.clone()).unwrap_err();
        assert_eq!(err.code, crate::diagnostic::Code::RunTimeRef);
        assert_eq!(
            err.message,
            "model `b` calls `ref('a')` only when it runs: etl, as dbt, learns the DAG while parsing, when \
             `execute` is false"
        );
        let err = render_at_run(&p, &r.run, RunNode::Model(2), &r.models[2], lake).unwrap_err();
        assert_eq!(err.code, crate::diagnostic::Code::Introspection);
        assert_eq!(err.message, "`run_query`: table 'main.missing' not found");
        assert_eq!(
            err.span.as_ref().map(|s| (s.line, s.file.clone())),
            Some((1, "models/c.sql".into()))
        );
    }
}
