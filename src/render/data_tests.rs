//! Rendering data tests into the SQL that selects their failing rows.
//!
//! A generic test calls its `test_<name>` macro with `model` (the tested
//! relation, narrowed by the `where` config as dbt does) and the arguments
//! from YAML; an argument written as `ref('x')` or `source('s', 't')` is
//! evaluated, so that `relationships`' `to:` is a relation and a dependency.
//! A singular test renders like a model.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minijinja::{Environment, Value};

use super::context::{self, Globals, Recorded, Scope};
use super::macros::Macros;
use super::{Call, RenderedModel, find_call, relation_of, render_one};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::project::{DataTest, Model, Project, TestKind, TestTarget};

/// Where failing rows go when `store_failures` is set: dbt's audit schema.
pub fn audit_schema(target_schema: &str) -> String {
    format!("{target_schema}_dbt_test__audit")
}

pub(super) fn render_test(
    env: &Environment<'static>,
    test: &DataTest,
    globals: &Arc<Globals>,
    macros: &Macros,
    project: &Project,
) -> Result<RenderedModel, Diagnostic> {
    let schema = audit_schema(&project.target.schema);
    match &test.kind {
        TestKind::Singular { file } => {
            let model = Model {
                name: test.name.clone(),
                file: file.clone(),
                fqn: test.fqn.clone(),
                config: test.config.clone(),
                description: String::new(),
                columns: Vec::new(),
                properties_file: None,
                resource_type: crate::config::ResourceType::Test,
            };
            let this = relation_of(&test.name, &test.config, &project.target.schema);
            let (sql, recorded) = render_one(env, &model, this, globals, macros, project)?;
            let mut config = test.config.clone();
            let mut own = recorded.config.clone();
            own.locate(|key| super::context::config_span(&file.path, &file.text, key));
            config.merge(own);
            let refs = calls(&recorded, |name| find_call(&file.path, &file.text, "ref", name));
            Ok(RenderedModel {
                name: test.name.clone(),
                path: file.path.clone(),
                template: file.text.clone(),
                sql,
                refs,
                sources: dedup(recorded.sources),
                relation: relation_of(&test.alias, &config, &schema),
                config,
                uses_is_incremental: false,
                logs: recorded.logs,
                pre_hooks: Vec::new(),
                post_hooks: Vec::new(),
                introspects: recorded.introspects,
                macros: recorded.macros.iter().cloned().collect(),
            })
        }
        TestKind::Generic {
            test_name,
            namespace,
            target,
            column_name,
            kwargs,
        } => render_generic(
            env,
            test,
            GenericCall {
                test_name,
                namespace: namespace.as_deref(),
                target,
                column_name: column_name.as_deref(),
                kwargs,
            },
            globals,
            macros,
            project,
            &schema,
        ),
    }
}

struct GenericCall<'a> {
    test_name: &'a str,
    namespace: Option<&'a str>,
    target: &'a TestTarget,
    column_name: Option<&'a str>,
    kwargs: &'a serde_json::Map<String, serde_json::Value>,
}

fn render_generic(
    env: &Environment<'static>,
    test: &DataTest,
    call: GenericCall<'_>,
    globals: &Arc<Globals>,
    macros: &Macros,
    project: &Project,
    audit_schema: &str,
) -> Result<RenderedModel, Diagnostic> {
    let fail = |code: Code, message: String| Diagnostic::error(code, message).with_span(test.span.clone());
    let test_macro = format!("test_{}", call.test_name);
    // `dbt_utils.accepted_range` is the package's own test when it is
    // installed, else the test of that name etl provides.
    let macro_name = match call.namespace {
        Some(ns) if macros.defines(Some(ns), &test_macro) => format!("{ns}.{test_macro}"),
        _ => test_macro.clone(),
    };
    if !macro_name.contains('.') && !macros.defines(None, &test_macro) {
        let names = macros.names();
        let known: Vec<&str> = names.iter().filter_map(|n| n.strip_prefix("test_")).collect();
        let mut diag = fail(Code::UnknownTest, format!("unknown generic test `{}`", call.test_name))
            .with_note(format!("generic tests: {}", known.join(", ")));
        if let Some(best) = did_you_mean(call.test_name, known.iter().copied()) {
            diag = diag.with_help(format!("did you mean `{best}`?"));
        } else {
            diag =
                diag.with_help("define it in a macro file as `{% test name(model, column_name) %} ... {% endtest %}`");
        }
        return Err(diag);
    }

    let mut recorded = Recorded::default();
    let relation = match call.target {
        TestTarget::Model(name) | TestTarget::Seed(name) => {
            let Some(rel) = globals.models.get(name) else {
                return Err(fail(
                    Code::UnknownNode,
                    format!("test on `{name}`, which is not a model or seed"),
                ));
            };
            recorded.refs.push((None, name.clone(), rel.sql()));
            rel.clone()
        }
        TestTarget::Source(source, table) => {
            let key = (source.clone(), table.clone());
            let Some(rel) = globals.sources.get(&key) else {
                return Err(fail(
                    Code::UnknownSource,
                    format!("test on unknown source `{source}.{table}`"),
                ));
            };
            recorded.sources.push(key);
            rel.clone()
        }
    };
    let model_value = match test.config.filter() {
        Some(filter) => Value::from(format!(
            "(select * from {} where {filter}) dbt_subquery",
            relation.sql()
        )),
        None => context::relation_value(relation),
    };
    let scope = Arc::new(Scope {
        globals: globals.clone(),
        this: None,
        is_incremental: false,
        base_config: test.config.clone(),
        recorded: Mutex::new(recorded),
        macros: Default::default(),
    });
    let mut extra: BTreeMap<&'static str, Value> = BTreeMap::new();
    extra.insert("model", model_value);
    let base = context::render_context_with(scope.clone(), extra.clone());

    // Arguments written as Jinja (`ref('customers')`, `{{ var('x') }}`)
    // are evaluated with the test's context.
    let mut args: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in call.kwargs {
        let evaluated = match value.as_str() {
            Some(text) if is_relation_call(text) || single_expression(text).is_some() => env
                .compile_expression(single_expression(text).unwrap_or(text))
                .and_then(|expr| expr.eval(&base))
                .map_err(|e| macros.diagnostic(&e, project).with_span(test.span.clone()))?,
            Some(text) if text.contains("{{") || text.contains("{%") => env
                .render_str(text, &base)
                .map(Value::from)
                .map_err(|e| macros.diagnostic(&e, project).with_span(test.span.clone()))?,
            _ => Value::from(minijinja::value::Serde(value)),
        };
        args.insert(key.clone(), evaluated);
    }
    if let Some(c) = call.column_name {
        args.insert("column_name".into(), Value::from(c));
    }
    let arg_list: Vec<String> = args.keys().map(|k| format!("{k}=__etl_test_args__.{k}")).collect();
    let source = format!(
        "{}{{{{ {macro_name}(model=model{}{}) }}}}",
        macros.import,
        if arg_list.is_empty() { "" } else { ", " },
        arg_list.join(", ")
    );
    extra.insert("__etl_test_args__", Value::from(args));
    let ctx = context::render_context_with(scope.clone(), extra);
    let sql = env
        .render_named_str(&test.name, &source, ctx)
        .map_err(|e| {
            let diag = macros.diagnostic(&e, project);
            // Errors inside the test's macro keep the macro's position;
            // errors of the call itself belong to the YAML entry.
            if diag.span.is_some() {
                diag.with_note(format!("while rendering test `{}`", test.name))
            } else {
                diag.with_span(test.span.clone())
            }
        })?
        .trim()
        .to_owned();
    let recorded = scope.recorded.lock().expect("render scope poisoned").clone();
    let mut config = test.config.clone();
    config.merge(recorded.config.clone());
    let refs = calls(&recorded, |_| test.span.clone());
    Ok(RenderedModel {
        name: test.name.clone(),
        path: test.path.clone(),
        template: String::new(),
        sql,
        refs,
        sources: dedup(recorded.sources),
        relation: relation_of(&test.alias, &config, audit_schema),
        config,
        uses_is_incremental: false,
        logs: recorded.logs,
        pre_hooks: Vec::new(),
        post_hooks: Vec::new(),
        introspects: recorded.introspects,
        macros: recorded.macros.iter().cloned().collect(),
    })
}

/// The expression of an argument that is exactly one `{{ ... }}`: it is
/// evaluated to its value (a list stays a list), as dbt renders test
/// arguments natively.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

/// The `ref()` calls a render recorded, each placed by `span`.
fn calls(recorded: &Recorded, span: impl Fn(&str) -> Option<crate::diagnostic::Span>) -> Vec<Call> {
    recorded
        .refs
        .iter()
        .map(|(package, name, _)| Call {
            package: package.clone(),
            name: name.clone(),
            span: span(name),
        })
        .collect()
}

/// `ref('x')`, `ref("pkg", "x")`, `source('s', 't')`.
fn is_relation_call(text: &str) -> bool {
    let t = text.trim();
    (t.starts_with("ref(") || t.starts_with("source(")) && t.ends_with(')')
}

fn dedup(items: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
