//! Macros as dbt resolves them: by namespace, with `return()` and
//! `adapter.dispatch`.
//!
//! Every macro file (etl's built-ins in the `dbt` namespace, then the
//! project's) is combined into one template, each macro renamed to a name
//! of its own (`etl<namespace>__<name>`), so that two namespaces may define
//! the same name. What templates call are objects standing for the names:
//! `my_macro()`, `dbt.date_trunc()`, `adapter.dispatch('x', 'dbt')()`. Each
//! finds the macro (an unqualified name in the calling macro's own
//! namespace, then the project's, then `dbt`), calls it, and turns a
//! `return(value)` inside it into the call's value — any value, not only
//! text, as in dbt.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use super::context::{self, RenderFailure};
use super::mutable::{MUTABLE, mutable, mutable_literals};
use super::{template_files, template_name};
use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};
use crate::project::{Dialect, Project};

/// The template holding every macro.
pub(super) const MACROS: &str = "__macros__";
/// The namespace of etl's built-in macros, as dbt's own.
pub(super) const BUILTIN: &str = "dbt";

/// Where diagnostics place the built-in macros.
const BUILTIN_TESTS_PATH: &str = "<etl built-in tests>";
const BUILTIN_TESTS: &str = include_str!("builtin_tests.sql");
const BUILTIN_MACROS_PATH: &str = "<etl built-in macros>";
const BUILTIN_MACROS: &str = include_str!("builtin_macros.sql");

/// All macro files combined into one template; each model imports it as
/// a module on its first line (keeping its own line numbers).
pub(super) struct Macros {
    pub combined: String,
    /// `(file, first line in the combined template)`.
    files: Vec<(PathBuf, usize)>,
    /// What a template that calls macros starts with.
    pub import: String,
    /// What another template starts with: a comment as long as `import`,
    /// so that columns on the first line map back the same way.
    no_import: String,
    /// Every word that may call a macro: names, namespaces, `adapter`.
    words: HashSet<String>,
    /// Whether a macro reads `model.<attribute>`.
    pub reads_model: bool,
    pub registry: Arc<Registry>,
}

/// Which macros exist, under which names.
#[derive(Debug)]
pub struct Registry {
    root: String,
    /// `(namespace, name)` → the macro's name in the combined template.
    macros: BTreeMap<(String, String), String>,
    /// dbt_project.yml's `dispatch:`: the namespaces searched for the
    /// macros of a namespace.
    dispatch: BTreeMap<String, Vec<String>>,
    /// The adapter prefixes `adapter.dispatch` tries, in order.
    prefixes: Vec<&'static str>,
    /// `(namespace, name)` → the file defining the macro and its text, for
    /// the manifest's `macros`.
    pub definitions: BTreeMap<(String, String), (PathBuf, String)>,
}

const MODULE: &str = "__etl_macros__";
const BIND: &str = "__etl_bind_macros__";

impl Macros {
    pub fn collect(project: &Project) -> Macros {
        let builtin = [
            (BUILTIN, PathBuf::from(BUILTIN_TESTS_PATH), BUILTIN_TESTS),
            (BUILTIN, PathBuf::from(BUILTIN_MACROS_PATH), BUILTIN_MACROS),
        ];
        let package_files = project.packages.iter().flat_map(|p| {
            p.macro_files
                .iter()
                .map(|f| (p.name.as_str(), f.path.clone(), f.text.as_str()))
        });
        let project_files = project
            .macro_files
            .iter()
            .map(|f| (project.name.as_str(), f.path.clone(), f.text.as_str()));
        let mut combined = String::new();
        let mut files = Vec::new();
        let mut namespaces: Vec<&str> = Vec::new();
        let mut macros = BTreeMap::new();
        let mut definitions = BTreeMap::new();
        for (namespace, path, text) in builtin.into_iter().chain(package_files).chain(project_files) {
            let original = text;
            let index = namespaces.iter().position(|n| *n == namespace).unwrap_or_else(|| {
                namespaces.push(namespace);
                namespaces.len() - 1
            });
            let start = combined.matches('\n').count() + 1;
            files.push((path.clone(), start));
            let text = mutable_literals(&test_blocks_as_macros(text));
            // Not `_`-led: a module does not export those.
            let (text, names) = rename_macros(&text, &format!("etl{index}__"));
            for name in names {
                let internal = format!("etl{index}__{name}");
                let sql = definition_text(original, &name);
                definitions.insert((namespace.to_owned(), name.clone()), (path.clone(), sql));
                macros.insert((namespace.to_owned(), name), internal);
            }
            combined.push_str(&text);
            if !text.ends_with('\n') {
                combined.push('\n');
            }
        }
        let mut prefixes = vec!["etl"];
        if project.target.dialect == Dialect::DuckDb {
            prefixes.push("duckdb");
        }
        prefixes.push("default");
        let import = format!("{{% import '{MACROS}' as {MODULE} %}}{{{{ {BIND}({MODULE}) }}}}");
        let no_import = format!("{{#{}#}}", " ".repeat(import.chars().count() - 4));
        let mut words: HashSet<String> = macros
            .keys()
            .flat_map(|(ns, name)| [ns.clone(), name.clone()])
            .collect();
        words.extend(["adapter", "return"].map(str::to_owned));
        Macros {
            reads_model: combined.contains("model."),
            combined,
            files,
            import,
            no_import,
            words,
            registry: Arc::new(Registry {
                root: project.name.clone(),
                macros,
                dispatch: project.dispatch.clone(),
                prefixes,
                definitions,
            }),
        }
    }

    /// What `text` starts with as a template: the macros' import when its
    /// Jinja names a macro. Importing them is most of the cost of
    /// rendering a model that calls none (a third more on 2,000 models).
    pub fn prefix(&self, text: &str) -> &str {
        if self.calls_macros(text) {
            &self.import
        } else {
            &self.no_import
        }
    }

    fn calls_macros(&self, text: &str) -> bool {
        let mut rest = text;
        while let Some(i) = rest.find(['{']) {
            let after = &rest[i + 1..];
            let close = match after.chars().next() {
                Some('{') => "}}",
                Some('%') => "%}",
                _ => {
                    rest = after;
                    continue;
                }
            };
            let end = after.find(close).unwrap_or(after.len());
            let block = &after[1..end];
            if block
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| self.words.contains(word))
            {
                return true;
            }
            rest = &after[end..];
        }
        false
    }

    /// Whether `name` is callable without a namespace from the project.
    pub fn defines(&self, namespace: Option<&str>, name: &str) -> bool {
        self.registry.resolve(namespace, name, &self.registry.root).is_some()
    }

    /// Names callable from the project without a namespace, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .registry
            .macros
            .keys()
            .filter(|(ns, _)| *ns == self.registry.root || ns == BUILTIN)
            .map(|(_, name)| name.as_str())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether the project itself (not etl) defines `name`.
    pub fn project_defines(&self, name: &str) -> bool {
        let key = (self.registry.root.clone(), name.to_owned());
        self.registry.macros.contains_key(&key)
    }

    /// Registers the macros' names, namespaces, `return` and `adapter`.
    pub fn install(&self, env: &mut Environment<'static>) {
        let registry = &self.registry;
        let mut namespaces = HashSet::new();
        for (namespace, name) in registry.macros.keys() {
            env.add_global(
                name.clone(),
                Value::from_object(MacroFn {
                    registry: registry.clone(),
                    namespace: None,
                    name: name.clone(),
                    bound: None,
                }),
            );
            namespaces.insert(namespace);
        }
        for namespace in namespaces {
            env.add_global(
                namespace.clone(),
                Value::from_object(Namespace {
                    registry: registry.clone(),
                    name: namespace.clone(),
                }),
            );
        }
        env.add_global(
            "adapter",
            Value::from_object(Adapter {
                registry: registry.clone(),
            }),
        );
        env.add_function("return", return_fn);
        env.add_function(BIND, bind_fn);
        env.add_function(MUTABLE, mutable);
    }

    /// Maps a position in a registered template back to the user's file.
    fn locate(&self, template: &str, line: usize, col: usize, project: &Project) -> Option<(PathBuf, usize, usize)> {
        if template == MACROS {
            let (file, start) = self.files.iter().rev().find(|(_, start)| *start <= line)?;
            return Some((file.clone(), line - start + 1, col));
        }
        let file = template_files(project).find(|f| template_name(f) == template)?;
        // Both prefixes have this length.
        let prefix = self.import.chars().count();
        let col = if line == 1 {
            col.saturating_sub(prefix).max(1)
        } else {
            col
        };
        Some((file.path.clone(), line, col))
    }

    pub fn diagnostic(&self, err: &minijinja::Error, project: &Project) -> Diagnostic {
        let failure = find_failure(err);
        let (code, message, help) = match &failure {
            Some(f) => (f.code, f.message.clone(), f.help.clone()),
            None => {
                let detail = err
                    .detail()
                    .map(str::to_owned)
                    .unwrap_or_else(|| err.kind().to_string());
                let code = if matches!(err.kind(), minijinja::ErrorKind::SyntaxError) {
                    Code::JinjaSyntax
                } else {
                    Code::Jinja
                };
                (code, format!("{}: {detail}", err.kind()), None)
            }
        };
        let span = err.name().zip(err.line()).and_then(|(name, line)| {
            let text = if name == MACROS {
                Some(self.combined.clone())
            } else {
                template_source(project, name, self)
            };
            let (col, len) = match (err.range(), text) {
                (Some(range), Some(text)) => {
                    let start = range.start.min(text.len());
                    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
                    let col = text[line_start..start].chars().count() + 1;
                    let len = text.get(range).map_or(0, |t| t.chars().count());
                    (col, len)
                }
                _ => (1, 0),
            };
            let (file, line, col) = self.locate(name, line, col, project)?;
            Some(Span::new(file, line, col, len))
        });
        // A misspelt key of a `config()` call: at the key, not the call.
        let span = match span {
            Some(span) if code == Code::UnknownConfig => {
                let key = message.split('`').nth(1);
                let text = template_files(project)
                    .find(|f| f.path == span.file)
                    .map(|f| f.text.clone());
                key.zip(text)
                    .and_then(|(key, text)| context::config_span(&span.file, &text, key))
                    .or(Some(span))
            }
            span => span,
        };
        let mut diag = Diagnostic::error(code, message).with_span(span);
        if let Some(help) = help {
            diag = diag.with_help(help);
        }
        diag
    }
}

impl Registry {
    /// The namespace and internal name `name` calls from a macro of
    /// `current`: its own namespace, the project's, then dbt's.
    fn resolve(&self, namespace: Option<&str>, name: &str, current: &str) -> Option<(String, String)> {
        let search: Vec<&str> = match namespace {
            Some(ns) => vec![ns],
            None => vec![current, &self.root, BUILTIN],
        };
        search.into_iter().find_map(|ns| {
            self.macros
                .get(&(ns.to_owned(), name.to_owned()))
                .map(|internal| (ns.to_owned(), internal.clone()))
        })
    }

    /// dbt's dispatch: in each namespace searched, `etl__name` (then
    /// `duckdb__name` for a DuckDB project), then `default__name`.
    fn dispatch(&self, name: &str, namespace: Option<&str>, current: &str) -> Result<(String, String), String> {
        let search: Vec<String> = match namespace {
            Some(ns) => self
                .dispatch
                .get(ns)
                .cloned()
                .unwrap_or_else(|| vec![self.root.clone(), ns.to_owned()]),
            None => vec![current.to_owned(), self.root.clone()],
        };
        let mut tried = Vec::new();
        for ns in &search {
            for prefix in &self.prefixes {
                let candidate = format!("{prefix}__{name}");
                if let Some(internal) = self.macros.get(&(ns.clone(), candidate.clone())) {
                    return Ok((ns.clone(), internal.clone()));
                }
                tried.push(format!("{ns}.{candidate}"));
            }
        }
        Err(format!(
            "`adapter.dispatch('{name}'{})` found no implementation: tried {}",
            namespace.map(|ns| format!(", '{ns}'")).unwrap_or_default(),
            tried.join(", ")
        ))
    }
}

/// What `return(value)` raises, caught by the macro call it ends.
#[derive(Debug)]
struct Returned;

impl std::fmt::Display for Returned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("return() ends a macro")
    }
}

impl std::error::Error for Returned {}

fn return_fn(state: &State, value: Option<Value>) -> Result<Value, Error> {
    let scope = context::scope(state)?;
    *scope.macros.returned.lock().expect("macro state poisoned") = Some(value.unwrap_or(Value::from(())));
    Err(Error::new(ErrorKind::InvalidOperation, "`return()` outside a macro").with_source(Returned))
}

fn is_return(err: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if e.is::<Returned>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn bind_fn(state: &State, module: Value) -> Result<Value, Error> {
    let scope = context::scope(state)?;
    *scope.macros.module.lock().expect("macro state poisoned") = Some(module);
    Ok(Value::from(""))
}

fn fail(message: String, help: Option<String>) -> Error {
    let failure = RenderFailure {
        code: Code::Jinja,
        message: message.clone(),
        help,
    };
    Error::new(ErrorKind::InvalidOperation, message).with_source(failure)
}

/// A macro name as templates see it: calling it runs the macro it
/// resolves to in the caller's namespace.
#[derive(Debug)]
struct MacroFn {
    registry: Arc<Registry>,
    namespace: Option<String>,
    name: String,
    /// Set by `adapter.dispatch`: the macro it found.
    bound: Option<(String, String)>,
}

impl Object for MacroFn {
    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let scope = context::scope(state)?;
        // A unit test's `overrides: {macros: {name: value}}`.
        if let Some(overrides) = &scope.globals.overrides {
            let qualified = self.namespace.as_ref().map(|ns| format!("{ns}.{}", self.name));
            let value = qualified
                .and_then(|q| overrides.macros.get(&q))
                .or_else(|| overrides.macros.get(&self.name));
            if let Some(value) = value {
                return Ok(Value::from(minijinja::value::Serde(value)));
            }
        }
        let runtime = &scope.macros;
        let (namespace, internal) = match &self.bound {
            Some(bound) => bound.clone(),
            None => {
                let current = runtime.current(&self.registry.root);
                self.registry
                    .resolve(self.namespace.as_deref(), &self.name, &current)
                    .ok_or_else(|| self.unknown())?
            }
        };
        let module = runtime
            .module
            .lock()
            .expect("macro state poisoned")
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "macros are not loaded in this template"))?;
        let target = module.get_attr(&internal)?;
        // For the manifest's `depends_on.macros`.
        if let Some((_, name)) = internal.split_once("__") {
            scope
                .recorded
                .lock()
                .expect("render scope poisoned")
                .macros
                .insert(format!("macro.{namespace}.{name}"));
        }
        runtime.namespaces.lock().expect("macro state poisoned").push(namespace);
        let result = target.call(state, args);
        runtime.namespaces.lock().expect("macro state poisoned").pop();
        match result {
            Err(err) if is_return(&err) => {
                let value = runtime.returned.lock().expect("macro state poisoned").take();
                Ok(value.unwrap_or(Value::from(())))
            }
            other => other,
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<macro {}>", self.name)
    }
}

impl MacroFn {
    fn unknown(&self) -> Error {
        let (what, candidates): (String, Vec<&str>) = match &self.namespace {
            Some(ns) => (
                format!("`{ns}.{}` is not a macro", self.name),
                self.registry
                    .macros
                    .keys()
                    .filter(|(n, _)| n == ns)
                    .map(|(_, name)| name.as_str())
                    .collect(),
            ),
            None => (
                format!("`{}` is not a macro", self.name),
                self.registry.macros.keys().map(|(_, name)| name.as_str()).collect(),
            ),
        };
        let help = did_you_mean(&self.name, candidates).map(|best| format!("did you mean `{best}`?"));
        fail(what, help)
    }
}

/// `dbt`, a package's name, or the project's: its macros as attributes.
#[derive(Debug)]
struct Namespace {
    registry: Arc<Registry>,
    name: String,
}

impl Object for Namespace {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(MacroFn {
            registry: self.registry.clone(),
            namespace: Some(self.name.clone()),
            name: key.as_str()?.to_owned(),
            bound: None,
        }))
    }
}

/// dbt's `adapter`: `dispatch`, `quote`, and what asks the lake (see
/// `introspect`); other methods are errors naming them.
#[derive(Debug)]
struct Adapter {
    registry: Arc<Registry>,
}

impl Object for Adapter {
    fn call_method(self: &Arc<Self>, state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "dispatch" => {
                let (positional, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
                let name = positional
                    .first()
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail("`adapter.dispatch` needs a macro name".to_owned(), None))?
                    .to_owned();
                let namespace: Option<String> = match positional.get(1) {
                    Some(ns) => ns.as_str().map(str::to_owned),
                    None => kwargs.get::<Option<String>>("macro_namespace")?,
                };
                kwargs.assert_all_used()?;
                let scope = context::scope(state)?;
                let current = scope.macros.current(&self.registry.root);
                let bound = self
                    .registry
                    .dispatch(&name, namespace.as_deref(), &current)
                    .map_err(|message| fail(message, None))?;
                Ok(Value::from_object(MacroFn {
                    registry: self.registry.clone(),
                    namespace,
                    name,
                    bound: Some(bound),
                }))
            }
            "quote" => {
                let text = args.first().map(Value::to_string).unwrap_or_default();
                Ok(Value::from(format!("\"{}\"", text.replace('"', "\"\""))))
            }
            other => super::introspect::adapter_method(state, other, args).unwrap_or_else(|| {
                Err(fail(
                    format!("`adapter.{other}` is not available in etl yet"),
                    Some("etl's adapter has dispatch, quote, get_relation and get_columns_in_relation".to_owned()),
                ))
            }),
        }
    }
}

fn template_source(project: &Project, name: &str, macros: &Macros) -> Option<String> {
    template_files(project)
        .find(|f| template_name(f) == name)
        .map(|f| format!("{}{}", macros.prefix(&f.text), f.text))
}

pub(super) fn find_failure(err: &minijinja::Error) -> Option<RenderFailure> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(f) = e.downcast_ref::<RenderFailure>() {
            return Some(f.clone());
        }
        source = e.source();
    }
    None
}

/// dbt's `{% test name(...) %}` blocks are macros named `test_name`.
fn test_blocks_as_macros(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{%") {
        out.push_str(&rest[..i]);
        let tag = &rest[i..];
        let end = tag.find("%}").map_or(tag.len(), |e| e + 2);
        let inner = &tag[2..end.saturating_sub(2).max(2)];
        let (lead, body) = split_ws_control(inner);
        let keyword = body.trim_start();
        let pad = &body[..body.len() - keyword.len()];
        if let Some(after) = keyword.strip_prefix("test ") {
            out.push_str(&format!("{{%{lead}{pad}macro test_{}%}}", after.trim_start()));
        } else if keyword.trim_end().trim_end_matches('-') == "endtest" || keyword.starts_with("endtest") {
            out.push_str(&format!(
                "{{%{lead}{pad}{}%}}",
                keyword.replacen("endtest", "endmacro", 1)
            ));
        } else {
            out.push_str(&tag[..end]);
        }
        rest = &tag[end..];
    }
    out.push_str(rest);
    out
}

fn split_ws_control(inner: &str) -> (&str, &str) {
    match inner.chars().next() {
        Some(c @ ('-' | '+')) => inner.split_at(c.len_utf8()),
        _ => ("", inner),
    }
}

/// `text` with each `{% macro name(...) %}` (outside `{# comments #}`)
/// renamed to `<prefix>name`, and the names.
fn rename_macros(text: &str, prefix: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len() + 64);
    let mut names = Vec::new();
    let mut rest = text;
    loop {
        let tag = rest.find("{%");
        let comment = rest.find("{#");
        match (tag, comment) {
            (Some(c), Some(t)) if t < c => {
                // A comment first: copied as is.
                let end = rest[t..].find("#}").map_or(rest.len(), |e| t + e + 2);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            (Some(i), _) => {
                let after_open = &rest[i + 2..];
                let after_ws = after_open.strip_prefix(['-', '+']).unwrap_or(after_open);
                let keyword_at = after_ws.len() - after_ws.trim_start().len();
                let after_keyword = &after_ws.trim_start();
                let head = rest.len() - after_ws.len() + keyword_at;
                match after_keyword.strip_prefix("macro") {
                    Some(decl) if decl.starts_with(char::is_whitespace) => {
                        let spaces = decl.len() - decl.trim_start().len();
                        let name: String = decl
                            .trim_start()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        let name_at = head + "macro".len() + spaces;
                        out.push_str(&rest[..name_at]);
                        if !name.is_empty() {
                            out.push_str(prefix);
                            names.push(name);
                        }
                        rest = &rest[name_at..];
                    }
                    _ => {
                        out.push_str(&rest[..i + 2]);
                        rest = &rest[i + 2..];
                    }
                }
            }
            (None, _) => break,
        }
    }
    out.push_str(rest);
    (out, names)
}

/// The `{% macro name(...) %} ... {% endmacro %}` (or `{% test %}`) block
/// of `name` in a macro file, as written.
fn definition_text(text: &str, name: &str) -> String {
    let test = name.strip_prefix("test_");
    let start = [("macro", name), ("test", test.unwrap_or(name))]
        .iter()
        .filter(|(kind, _)| *kind == "macro" || test.is_some())
        .find_map(|(kind, bare)| {
            let pattern = format!(r"\{{%-?\s*{kind}\s+{}\s*\(", regex::escape(bare));
            regex::Regex::new(&pattern).ok()?.find(text).map(|m| (m.start(), *kind))
        });
    let Some((start, kind)) = start else {
        return String::new();
    };
    let end_tag = regex::Regex::new(&format!(r"\{{%-?\s*end{kind}\s*-?%\}}")).expect("a valid pattern");
    match end_tag.find(&text[start..]) {
        Some(end) => text[start..start + end.end()].to_owned(),
        None => text[start..].to_owned(),
    }
}
