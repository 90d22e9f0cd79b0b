//! The dbt surface seen by templates: `ref`, `source`, `config`, `var`,
//! `env_var`, `this`, `is_incremental()`, `target`, `run_started_at`, `log`,
//! `exceptions`. Every call is recorded in the render's [`Scope`], so that the
//! DAG is built from what the templates actually called.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Map;

use crate::config::RawConfig;
use crate::diagnostic::{Code, did_you_mean};
use crate::lake::Relation;

/// What every render can see: the names of all relations, vars, target.
#[derive(Debug)]
pub struct Globals {
    pub project: String,
    pub models: BTreeMap<String, Relation>,
    pub sources: BTreeMap<(String, String), Relation>,
    pub vars: Map<String, serde_json::Value>,
    pub target: Value,
    pub run_started_at: DateTime<Utc>,
    pub invocation_id: String,
    /// Models that render with `is_incremental()` true.
    pub incremental: std::collections::BTreeSet<String>,
    /// The project or package of each model and seed, by name.
    pub owners: BTreeMap<String, String>,
    /// The lake, when a node renders as it runs; `None` while parsing.
    pub warehouse: Option<Arc<dyn super::warehouse::Warehouse>>,
    /// A unit test's `overrides`: macros that give a value instead of
    /// running, and environment variables.
    pub overrides: Option<Arc<Overrides>>,
}

/// What a unit test's render answers in place of macros and the
/// environment.
#[derive(Debug, Default)]
pub struct Overrides {
    pub macros: serde_json::Map<String, serde_json::Value>,
    pub env_vars: serde_json::Map<String, serde_json::Value>,
}

/// One template render: the node being rendered and what it called.
#[derive(Debug)]
pub struct Scope {
    pub globals: Arc<Globals>,
    pub this: Option<Relation>,
    pub is_incremental: bool,
    /// Config the node has before its own `config()` calls.
    pub base_config: RawConfig,
    pub recorded: Mutex<Recorded>,
    /// The macros this render calls.
    pub macros: MacroState,
}

/// Per render: the macro module, the namespaces of the macros being run,
/// and the value a `return()` gives back.
#[derive(Debug, Default)]
pub struct MacroState {
    pub(super) module: Mutex<Option<Value>>,
    pub(super) namespaces: Mutex<Vec<String>>,
    pub(super) returned: Mutex<Option<Value>>,
}

impl MacroState {
    /// The namespace of the macro running, else the project's.
    pub(super) fn current(&self, root: &str) -> String {
        let namespaces = self.namespaces.lock().expect("macro state poisoned");
        namespaces.last().cloned().unwrap_or_else(|| root.to_owned())
    }
}

#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// `(package, name, rendered text)` of every `ref()`.
    pub refs: Vec<(Option<String>, String, String)>,
    pub sources: Vec<(String, String)>,
    /// What `config()` calls set; placed in the template afterwards
    /// (see `config_span`).
    pub config: RawConfig,
    pub logs: Vec<String>,
    pub uses_is_incremental: bool,
    /// Whether the render read `execute` or asked the lake anything: it
    /// renders again when its node runs.
    pub introspects: bool,
    /// What each `{% call statement('name') %}` gave, for `load_result`.
    pub statements: BTreeMap<String, Value>,
    /// The macros the template called (`macro.<namespace>.<name>`).
    pub macros: std::collections::BTreeSet<String>,
}

/// An error raised by one of the context functions, carried through
/// minijinja so that the template position is kept.
#[derive(Debug, Clone)]
pub struct RenderFailure {
    pub code: Code,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for RenderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RenderFailure {}

pub(super) fn failure(code: Code, message: String, help: Option<String>) -> Error {
    let failure = RenderFailure {
        code,
        message: message.clone(),
        help,
    };
    Error::new(ErrorKind::InvalidOperation, message).with_source(failure)
}

pub const SCOPE_KEY: &str = "__etl_scope__";

pub(super) fn scope(state: &State) -> Result<Arc<Scope>, Error> {
    state
        .lookup(SCOPE_KEY)
        .and_then(|v| v.downcast_object::<Scope>())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "etl render scope missing"))
}

impl Object for Scope {}

/// Registers the context functions on `env`.
pub fn install(env: &mut Environment<'static>) {
    env.add_function("ref", ref_fn);
    env.add_function("source", source_fn);
    env.add_function("var", var_fn);
    env.add_function("env_var", env_var_fn);
    env.add_function("is_incremental", is_incremental_fn);
    env.add_function("log", log_fn);
    env.add_global("exceptions", Value::from_object(Exceptions));
}

/// The values that differ per render.
pub fn render_context(scope: Arc<Scope>) -> Value {
    render_context_with(scope, BTreeMap::new())
}

/// A relation as templates see it: renders as SQL, with dbt's attributes.
pub fn relation_value(relation: Relation) -> Value {
    Value::from_object(RelationValue(relation))
}

/// The per-render values, with `extra` added (and winning).
pub fn render_context_with(scope: Arc<Scope>, extra: BTreeMap<&'static str, Value>) -> Value {
    let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
    let globals = scope.globals.clone();
    ctx.insert("target", globals.target.clone());
    ctx.insert("run_started_at", Value::from_object(Timestamp(globals.run_started_at)));
    ctx.insert("invocation_id", Value::from(globals.invocation_id.clone()));
    ctx.insert("project_name", Value::from(globals.project.clone()));
    if let Some(this) = &scope.this {
        ctx.insert("this", Value::from_object(RelationValue(this.clone())));
        ctx.insert(
            "model",
            Value::from(BTreeMap::from([
                ("name", Value::from(this.identifier.clone())),
                ("schema", Value::from(this.schema.clone())),
            ])),
        );
    }
    ctx.insert("config", Value::from_object(ConfigObject(scope.clone())));
    ctx.insert("execute", Value::from_object(Execute(scope.clone())));
    ctx.insert("graph", Value::from_object(Graph(scope.clone())));
    ctx.insert(SCOPE_KEY, Value::from_dyn_object(scope));
    ctx.extend(extra);
    Value::from(ctx)
}

fn ref_fn(state: &State, args: Rest<String>, kwargs: Kwargs) -> Result<Value, Error> {
    let _version: Option<Value> = kwargs.get("version").ok().or_else(|| kwargs.get("v").ok());
    let scope = scope(state)?;
    let (package, name) = match args.0.as_slice() {
        [name] => (None, name.clone()),
        [package, name] => (Some(package.clone()), name.clone()),
        _ => {
            return Err(failure(
                Code::InvalidRef,
                format!(
                    "`ref()` takes a model name, or a package and a model name; got {} arguments",
                    args.0.len()
                ),
                None,
            ));
        }
    };
    let globals = &scope.globals;
    if let Some(pkg) = &package {
        let known = pkg == &globals.project || globals.owners.values().any(|owner| owner == pkg);
        if !known {
            return Err(failure(
                Code::UnknownPackage,
                format!("`ref('{pkg}', '{name}')` names package `{pkg}`, which is not installed"),
                Some(format!(
                    "this project is `{}`; packages are listed in packages.yml and installed in dbt_packages/",
                    globals.project
                )),
            ));
        }
        if let Some(owner) = globals.owners.get(&name)
            && owner != pkg
        {
            return Err(failure(
                Code::UnknownRef,
                format!("`ref('{pkg}', '{name}')`: `{name}` is a node of `{owner}`, not of `{pkg}`"),
                None,
            ));
        }
    }
    let Some(relation) = globals.models.get(&name) else {
        let help =
            did_you_mean(&name, globals.models.keys().map(String::as_str)).map(|b| format!("did you mean `{b}`?"));
        return Err(failure(
            Code::UnknownRef,
            format!("`ref('{name}')` does not match any model or seed"),
            help,
        ));
    };
    let text = relation.sql();
    scope
        .recorded
        .lock()
        .expect("render scope poisoned")
        .refs
        .push((package, name, text));
    Ok(Value::from_object(RelationValue(relation.clone())))
}

fn source_fn(state: &State, source: String, table: String) -> Result<Value, Error> {
    let scope = scope(state)?;
    let key = (source.clone(), table.clone());
    let Some(relation) = scope.globals.sources.get(&key) else {
        let candidates: Vec<String> = scope.globals.sources.keys().map(|(s, t)| format!("{s}.{t}")).collect();
        let wanted = format!("{source}.{table}");
        let help = did_you_mean(&wanted, candidates.iter().map(String::as_str)).map(|b| {
            let (s, t) = b.split_once('.').unwrap_or((b, ""));
            format!("did you mean `source('{s}', '{t}')`?")
        });
        return Err(failure(
            Code::UnknownSource,
            format!("`source('{source}', '{table}')` does not match any declared source table"),
            help,
        ));
    };
    let mut recorded = scope.recorded.lock().expect("render scope poisoned");
    recorded.sources.push(key);
    Ok(Value::from_object(RelationValue(relation.clone())))
}

fn var_fn(state: &State, name: String, default: Option<Value>) -> Result<Value, Error> {
    let scope = scope(state)?;
    match scope.globals.vars.get(&name) {
        Some(v) => Ok(Value::from(minijinja::value::Serde(v))),
        None => default.ok_or_else(|| {
            failure(
                Code::MissingVar,
                format!("required var `{name}` is not set"),
                Some(format!(
                    "set it under `vars:` in the project file, or pass `--vars '{{{name}: ...}}'`"
                )),
            )
        }),
    }
}

fn env_var_fn(state: &State, name: String, default: Option<Value>) -> Result<Value, Error> {
    if let Some(value) = scope(state)
        .ok()
        .and_then(|s| s.globals.overrides.as_ref()?.env_vars.get(&name).cloned())
    {
        return Ok(match value {
            serde_json::Value::String(s) => Value::from(s),
            other => Value::from(other.to_string()),
        });
    }
    // As dbt keeps them: secrets are for profiles and packages, never in
    // SQL that is compiled, logged and kept in artifacts.
    if name.starts_with("DBT_ENV_SECRET") {
        return Err(failure(
            Code::MissingEnvVar,
            format!(
                "`{name}` is a secret: secret environment variables are read in profiles.yml and packages.yml only"
            ),
            Some("etl writes compiled SQL to target/ and the manifest: keep secrets out of models and macros".into()),
        ));
    }
    match std::env::var(&name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => default.ok_or_else(|| {
            failure(
                Code::MissingEnvVar,
                format!("environment variable `{name}` is not set and has no default"),
                Some(format!(
                    "export `{name}`, or give a default: `env_var('{name}', 'value')`"
                )),
            )
        }),
    }
}

fn is_incremental_fn(state: &State) -> Result<bool, Error> {
    let scope = scope(state)?;
    scope
        .recorded
        .lock()
        .expect("render scope poisoned")
        .uses_is_incremental = true;
    Ok(scope.is_incremental)
}

/// dbt's `log(msg, info=False)`: etl records every message (shown at info
/// level while rendering), so `info` changes nothing but is accepted either
/// way it is passed.
fn log_fn(state: &State, message: Value, info: Option<bool>, kwargs: Kwargs) -> Result<String, Error> {
    let _ = (info, kwargs.get::<Option<bool>>("info")?);
    kwargs.assert_all_used()?;
    let scope = scope(state)?;
    scope
        .recorded
        .lock()
        .expect("render scope poisoned")
        .logs
        .push(message.to_string());
    Ok(String::new())
}

/// `execute`: false while parsing, true while running. Reading it marks
/// the render as one to do again when the node runs.
#[derive(Debug)]
struct Execute(Arc<Scope>);

impl Object for Execute {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        warehouse(&self.0).is_some()
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if warehouse(&self.0).is_some() { "True" } else { "False" })
    }
}

/// dbt's `graph`: the project's nodes and sources, as in the manifest,
/// when the node runs; empty while parsing, as in dbt.
#[derive(Debug)]
struct Graph(Arc<Scope>);

const GRAPH_KEYS: [&str; 8] = [
    "nodes",
    "sources",
    "exposures",
    "metrics",
    "groups",
    "semantic_models",
    "saved_queries",
    "unit_tests",
];

impl Object for Graph {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if !GRAPH_KEYS.contains(&key) {
            return None;
        }
        let empty = || Value::from(BTreeMap::<String, Value>::new());
        Some(match warehouse(&self.0) {
            Some(lake) => lake
                .graph()
                .get_attr(key)
                .ok()
                .filter(|v| !v.is_undefined() && !v.is_none())
                .unwrap_or_else(empty),
            None => empty(),
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&GRAPH_KEYS)
    }
}

/// The lake when the node runs, `None` while parsing; either way the
/// render is marked as one that asks.
pub(super) fn warehouse(scope: &Scope) -> Option<Arc<dyn super::warehouse::Warehouse>> {
    scope.recorded.lock().expect("render scope poisoned").introspects = true;
    scope.globals.warehouse.clone()
}

/// `{{ this }}`, `{{ ref('x') }}`: renders as SQL, with dbt's attributes.
#[derive(Debug)]
struct RelationValue(Relation);

impl Object for RelationValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "schema" => Value::from(self.0.schema.clone()),
            "identifier" | "name" | "table" => Value::from(self.0.identifier.clone()),
            "database" => Value::from("lake"),
            "is_cte" => Value::from(self.0.ephemeral),
            _ => return None,
        })
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.sql())
    }
}

/// `config(...)` records config; `config.get(key, default)` reads it.
#[derive(Debug)]
struct ConfigObject(Arc<Scope>);

impl Object for ConfigObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let mut recorded = self.0.recorded.lock().expect("render scope poisoned");
        for arg in args {
            let Ok(kwargs) = Kwargs::try_from(arg.clone()) else {
                // dbt also accepts a dict: config({'materialized': 'table'}).
                if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(arg) {
                    check_keys(map.keys())?;
                    recorded.config.merge(RawConfig::from_values(map, |_| None));
                    continue;
                }
                return Err(failure(
                    Code::InvalidConfig,
                    "`config()` takes keyword arguments".into(),
                    None,
                ));
            };
            let keys: Vec<String> = kwargs.args().map(str::to_owned).collect();
            check_keys(keys.iter())?;
            let mut map = Map::new();
            for key in keys {
                let value: Value = kwargs.get(&key)?;
                let json = serde_json::to_value(&value).map_err(|e| {
                    failure(
                        Code::InvalidConfig,
                        format!("config `{key}` cannot be stored: {e}"),
                        None,
                    )
                })?;
                map.insert(key, json);
            }
            recorded.config.merge(RawConfig::from_values(map, |_| None));
        }
        Ok(Value::from(""))
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let key = args.first().and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let lookup = || {
            let recorded = self.0.recorded.lock().expect("render scope poisoned");
            recorded
                .config
                .value(&key)
                .or_else(|| self.0.base_config.value(&key))
                .cloned()
        };
        match method {
            "get" => Ok(lookup()
                .map(|v| Value::from(minijinja::value::Serde(&v)))
                .or_else(|| args.get(1).cloned())
                .unwrap_or(Value::from(()))),
            "require" => lookup()
                .map(|v| Value::from(minijinja::value::Serde(&v)))
                .ok_or_else(|| {
                    failure(
                        Code::MissingConfig,
                        format!("config `{key}` is required but not set"),
                        None,
                    )
                }),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

fn check_keys<'a>(keys: impl Iterator<Item = &'a String>) -> Result<(), Error> {
    for key in keys {
        if let Some(diag) = crate::config::key_typo(key) {
            return Err(failure(Code::UnknownConfig, diag.message, diag.help.into_iter().next()));
        }
    }
    Ok(())
}

/// `exceptions.raise_compiler_error(msg)` and `exceptions.warn(msg)`.
#[derive(Debug)]
struct Exceptions;

impl Object for Exceptions {
    fn call_method(self: &Arc<Self>, state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let message = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "raise_compiler_error" => Err(failure(Code::CompilerError, message, None)),
            "warn" => {
                let scope = scope(state)?;
                scope
                    .recorded
                    .lock()
                    .expect("render scope poisoned")
                    .logs
                    .push(format!("warning: {message}"));
                Ok(Value::from(""))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `run_started_at`: renders as ISO 8601, with `strftime` and `isoformat`.
#[derive(Debug)]
struct Timestamp(DateTime<Utc>);

impl Object for Timestamp {
    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "strftime" => {
                let format = args.first().and_then(|v| v.as_str()).unwrap_or("%Y-%m-%d %H:%M:%S");
                let items: Vec<_> = chrono::format::StrftimeItems::new(format).collect();
                if items.iter().any(|i| matches!(i, chrono::format::Item::Error)) {
                    return Err(failure(
                        Code::InvalidFormat,
                        format!("`{format}` is not a valid strftime format"),
                        None,
                    ));
                }
                Ok(Value::from(self.0.format_with_items(items.into_iter()).to_string()))
            }
            "isoformat" => Ok(Value::from(self.0.to_rfc3339())),
            "timestamp" => Ok(Value::from(self.0.timestamp())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::Datelike;
        Some(match key.as_str()? {
            "year" => Value::from(self.0.year()),
            "month" => Value::from(self.0.month()),
            "day" => Value::from(self.0.day()),
            _ => return None,
        })
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f+00:00"))
    }
}

/// Where a template's `config()` call sets `key`: the key's name inside
/// the call (`materialized` in `config(materialized='table')`, or in a
/// dict argument).
pub fn config_span(file: &std::path::Path, template: &str, key: &str) -> Option<crate::diagnostic::Span> {
    let mut from = 0;
    while let Some(found) = template[from..].find("config(") {
        let start = from + found + "config(".len();
        // The call's arguments: up to the parenthesis that closes it.
        let mut depth = 1;
        let mut end = template.len();
        for (i, c) in template[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &template[start..end];
        let word = |i: usize| {
            let before = args[..i].chars().next_back();
            let after = args[i + key.len()..].chars().next();
            let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !is_word(before) && !is_word(after)
        };
        if let Some((i, _)) = args.match_indices(key).find(|(i, _)| word(*i)) {
            return Some(crate::diagnostic::Span::at_offset(
                file,
                template,
                start + i,
                key.chars().count(),
            ));
        }
        from = end.max(start);
    }
    None
}
