//! Node selection, as dbt answers it: `--select`, `--exclude`,
//! `--selector` (selectors.yml) and indirect test selection.
//!
//! A selection is a union (space-separated, or repeated flags) of
//! intersections (comma-separated) of criteria. A criterion is
//! `[@][N+]method:value[+N]`: a method picks nodes (`tag:daily`,
//! `path:models/staging`, a bare name or `fqn:`, wildcards allowed), and the
//! graph operators add ancestors (`+m`, `2+m`), descendants (`m+`, `m+1`)
//! or descendants with all their ancestors (`@m`). Tests then follow the
//! nodes they test, per `--indirect-selection`.

use std::collections::{BTreeSet, HashMap};

use globset::GlobBuilder;
use petgraph::graph::NodeIndex;
use serde_json::Value;

use super::{Dag, Node, ResourceType};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::project::{Project, SelectorDefinition, TestKind};

/// How tests follow the nodes they test (dbt's `--indirect-selection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndirectSelection {
    /// A test is selected when any node it reads is.
    #[default]
    Eager,
    /// Only when every node it reads is.
    Cautious,
    /// When every node it reads is selected or is an ancestor of one.
    Buildable,
    /// Never: only tests selected by name.
    Empty,
}

impl IndirectSelection {
    pub fn parse(text: &str) -> Option<IndirectSelection> {
        Some(match text {
            "eager" => IndirectSelection::Eager,
            "cautious" => IndirectSelection::Cautious,
            "buildable" => IndirectSelection::Buildable,
            "empty" => IndirectSelection::Empty,
            _ => return None,
        })
    }
}

/// What an earlier run left in a `--state` directory.
#[derive(Debug, Clone, Default)]
pub struct PreviousState {
    /// unique_id -> (compiled SQL, config) from its manifest.json.
    pub nodes: HashMap<String, (Option<String>, Value)>,
    /// unique_id -> status from its run_results.json.
    pub results: HashMap<String, String>,
}

/// Everything a selection is resolved against.
pub struct SelectContext<'a> {
    pub dag: &'a Dag,
    pub project: &'a Project,
    pub indirect: IndirectSelection,
    pub state: Option<&'a PreviousState>,
    /// The compiled SQL of a node, for `state:modified`.
    pub compiled: &'a dyn Fn(NodeIndex) -> Option<String>,
}

/// The outcome of a selection: the nodes in DAG order, and a warning for
/// each criterion that matched nothing.
#[derive(Debug, Default)]
pub struct Selection {
    pub nodes: Vec<NodeIndex>,
    pub warnings: Vec<Diagnostic>,
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SelectArgs {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub selector: Option<String>,
}

/// Selects nodes. Without `--select` or `--selector`, every node (or the
/// selectors.yml `default: true` selector).
pub fn select(cx: &SelectContext, args: &SelectArgs) -> Result<Selection, Diagnostic> {
    let mut warnings = Vec::new();
    let spec = if let Some(name) = &args.selector {
        // As in dbt, a named selector replaces --select and --exclude.
        if !args.select.is_empty() || !args.exclude.is_empty() {
            warnings.push(Diagnostic::warning(
                Code::SelectorOverrides,
                format!("--selector `{name}` is used alone: --select and --exclude are ignored"),
            ));
        }
        let def = find_selector(cx.project, name)?;
        parse_definition(cx.project, &def.definition, &mut Vec::new())?
    } else {
        let include = if args.select.is_empty() {
            match cx.project.selectors.iter().find(|s| s.default) {
                Some(def) => parse_definition(cx.project, &def.definition, &mut Vec::new())?,
                None => Spec::All,
            }
        } else {
            parse_cli(&args.select, "--select")?
        };
        if args.exclude.is_empty() {
            include
        } else {
            Spec::Difference(Box::new(include), Box::new(parse_cli(&args.exclude, "--exclude")?))
        }
    };
    let chosen = evaluate(cx, &spec, cx.indirect, &mut warnings)?;
    let nodes = cx.dag.order.iter().copied().filter(|i| chosen.contains(i)).collect();
    Ok(Selection { nodes, warnings })
}

/// The parsed form of a selection.
#[derive(Debug, Clone)]
enum Spec {
    All,
    Criterion(Criterion),
    Union(Vec<Spec>),
    Intersection(Vec<Spec>),
    Difference(Box<Spec>, Box<Spec>),
    /// A selectors.yml definition with its own indirect selection.
    WithIndirect(Box<Spec>, IndirectSelection),
}

#[derive(Debug, Clone, PartialEq)]
struct Criterion {
    /// The text as written, for messages.
    raw: String,
    method: Method,
    value: String,
    childrens_parents: bool,
    /// `Some(None)`: all ancestors; `Some(Some(n))`: n generations.
    parents: Option<Option<usize>>,
    children: Option<Option<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Method {
    Fqn,
    Tag,
    Path,
    File,
    Source,
    Config(Vec<String>),
    ResourceType,
    TestType,
    TestName,
    Package,
    State,
    Result,
}

const METHODS: &[&str] = &[
    "fqn",
    "tag",
    "path",
    "file",
    "source",
    "config",
    "resource_type",
    "test_type",
    "test_name",
    "package",
    "state",
    "result",
];

fn parse_cli(args: &[String], flag: &str) -> Result<Spec, Diagnostic> {
    let mut union = Vec::new();
    for arg in args {
        let mut offset = 0;
        for word in arg.split(' ') {
            if !word.is_empty() {
                let mut parts = Vec::new();
                let mut part_offset = offset;
                for part in word.split(',') {
                    parts.push(Spec::Criterion(parse_criterion(part).map_err(
                        |(message, at, len)| position_error(flag, arg, part_offset + at, len.max(1), message),
                    )?));
                    part_offset += part.len() + 1;
                }
                union.push(if parts.len() == 1 {
                    parts.remove(0)
                } else {
                    Spec::Intersection(parts)
                });
            }
            offset += word.len() + 1;
        }
    }
    Ok(Spec::Union(union))
}

/// A malformed selector, shown with a caret under the culprit.
fn position_error(flag: &str, arg: &str, at: usize, len: usize, message: String) -> Diagnostic {
    let lead = format!("{flag} ");
    let caret = format!(
        "{}{}",
        " ".repeat(lead.len() + arg[..at.min(arg.len())].chars().count()),
        "^".repeat(len)
    );
    let (message, help) = match message.split_once("\nhelp: ") {
        Some((m, h)) => (m.to_owned(), Some(h.to_owned())),
        None => (message, None),
    };
    let mut diag = Diagnostic::error(Code::InvalidSelector, message).with_note(format!("{lead}{arg}\n{caret}"));
    if let Some(h) = help {
        diag = diag.with_help(h);
    }
    diag
}

type ParseError = (String, usize, usize);

/// `[@][N+][method:]value[+[N]]`.
fn parse_criterion(text: &str) -> Result<Criterion, ParseError> {
    let mut rest = text;
    let mut at = 0;
    let childrens_parents = rest.starts_with('@');
    if childrens_parents {
        rest = &rest[1..];
        at += 1;
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let mut parents = None;
    if rest[digits.len()..].starts_with('+') {
        parents = Some(if digits.is_empty() {
            None
        } else {
            Some(digits.parse().unwrap_or(usize::MAX))
        });
        rest = &rest[digits.len() + 1..];
        at += digits.len() + 1;
    }
    if childrens_parents && parents.is_some() {
        return Err(("`@` and a `+` before the name cannot be combined".into(), 0, at));
    }
    let mut children = None;
    if let Some(plus) = rest.rfind('+') {
        let depth = &rest[plus + 1..];
        if depth.chars().all(|c| c.is_ascii_digit()) {
            children = Some(if depth.is_empty() {
                None
            } else {
                Some(depth.parse().unwrap_or(usize::MAX))
            });
            rest = &rest[..plus];
        }
    }
    // `@` comes first or not at all: `+@@tag:((` is a typo to point at,
    // not a name that matches no node.
    if let Some(i) = rest.find('@') {
        return Err((
            format!(
                "unexpected `@` in the selector `{text}`\nhelp: `@` comes first, once: `@name` selects `name`, its \
                 children and their parents"
            ),
            at + i,
            1,
        ));
    }
    let (method, value, value_at) = match rest.split_once(':') {
        Some((m, v)) if !m.is_empty() && m.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') => {
            (Some(m), v, at + m.len() + 1)
        }
        _ => (None, rest, at),
    };
    if value.is_empty() {
        let what = method.map_or("a node name".to_owned(), |m| format!("a value after `{m}:`"));
        return Err((format!("the selector `{text}` needs {what}"), value_at, 1));
    }
    let method = match method {
        None => default_method(value),
        Some(m) => parse_method(m).ok_or_else(|| {
            let mut message = format!("unknown selector method `{m}`");
            let head = m.split('.').next().unwrap_or(m);
            if let Some(best) = did_you_mean(head, METHODS.iter().copied()) {
                message.push_str(&format!("\nhelp: did you mean `{best}:`?"));
            } else {
                message.push_str(&format!("\nhelp: methods: {}", METHODS.join(", ")));
            }
            (message, at, m.len())
        })?,
    };
    // Nor do names, tags and the other values hold these (paths may).
    let unusual = |c: char| {
        matches!(
            c,
            '(' | ')' | '{' | '}' | ';' | '|' | '"' | '\'' | '<' | '>' | '=' | '!' | '`'
        )
    };
    if !matches!(method, Method::Path | Method::File) {
        if let Some(i) = value.find(unusual) {
            let c = value[i..].chars().next().unwrap_or_default();
            return Err((
                format!(
                    "unexpected `{c}` in the selector `{text}`\nhelp: a selector is `[@][N+][method:]value[+[N]]`; \
                     values are names, globs (`*`, `?`, `[ab]`), tags or paths"
                ),
                value_at + i,
                1,
            ));
        }
    }
    if matches!(method, Method::TestType) && !matches!(value, "generic" | "singular" | "schema" | "data" | "unit") {
        return Err((
            format!("`test_type:{value}` is not a test type\nhelp: use `test_type:generic` or `test_type:singular`"),
            value_at,
            value.len(),
        ));
    }
    if matches!(method, Method::ResourceType) && !RESOURCE_TYPES.contains(&value) {
        return Err((
            format!(
                "`resource_type:{value}` is not a resource type\nhelp: use one of {}",
                RESOURCE_TYPES.join(", ")
            ),
            value_at,
            value.len(),
        ));
    }
    if matches!(method, Method::Source) && value.split('.').count() > 3 {
        return Err((
            format!(
                "`source:{value}` has too many parts\nhelp: write `source:name`, `source:name.table` or `source:project.name.table`"
            ),
            value_at,
            value.len(),
        ));
    }
    if matches!(method, Method::State) && !STATES.contains(&value) {
        return Err((
            format!("`state:{value}` is not a state\nhelp: use {}", STATES.join(", ")),
            value_at,
            value.len(),
        ));
    }
    Ok(Criterion {
        raw: text.to_owned(),
        method,
        value: value.to_owned(),
        childrens_parents,
        parents,
        children,
    })
}

/// dbt's resource types (those etl does not have select nothing).
const RESOURCE_TYPES: &[&str] = &[
    "model",
    "seed",
    "source",
    "test",
    "snapshot",
    "analysis",
    "exposure",
    "metric",
    "semantic_model",
    "saved_query",
    "unit_test",
    "function",
];

const STATES: &[&str] = &[
    "new",
    "modified",
    "modified.body",
    "modified.configs",
    "modified.contract",
];

fn parse_method(m: &str) -> Option<Method> {
    Some(match m {
        "fqn" => Method::Fqn,
        "tag" => Method::Tag,
        "path" => Method::Path,
        "file" => Method::File,
        "source" => Method::Source,
        "resource_type" => Method::ResourceType,
        "test_type" => Method::TestType,
        "test_name" => Method::TestName,
        "package" => Method::Package,
        "state" => Method::State,
        "result" => Method::Result,
        _ => {
            let key = m.strip_prefix("config.")?;
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return None;
            }
            Method::Config(key.split('.').map(str::to_owned).collect())
        }
    })
}

/// dbt's default for a bare value: a path when it looks like one, a file
/// when it names one, else the fully qualified name.
fn default_method(value: &str) -> Method {
    if value.contains('/') || value.contains('\\') {
        Method::Path
    } else if [".sql", ".py", ".csv"]
        .iter()
        .any(|e| value.to_ascii_lowercase().ends_with(e))
    {
        Method::File
    } else {
        Method::Fqn
    }
}

fn find_selector<'p>(project: &'p Project, name: &str) -> Result<&'p SelectorDefinition, Diagnostic> {
    project.selectors.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = project.selectors.iter().map(|s| s.name.as_str()).collect();
        let mut d = Diagnostic::error(
            Code::UnknownSelector,
            format!("no selector named `{name}` in selectors.yml"),
        );
        if let Some(best) = did_you_mean(name, names.iter().copied()) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else if names.is_empty() {
            d = d.with_help("define selectors in `selectors.yml` at the project root");
        } else {
            d = d.with_note(format!("selectors: {}", names.join(", ")));
        }
        d
    })
}

/// A selectors.yml definition: a CLI-style string, `method: value`, a full
/// mapping (`method`, `value`, `parents`, `children`, ...), or `union` /
/// `intersection` lists whose items may be `exclude: [...]`.
fn parse_definition(project: &Project, def: &Value, stack: &mut Vec<String>) -> Result<Spec, Diagnostic> {
    let invalid = |m: String| Diagnostic::error(Code::InvalidSelector, m).with_note("in selectors.yml");
    match def {
        Value::String(s) => parse_cli(std::slice::from_ref(s), "selectors.yml:"),
        Value::Object(map) => {
            if let Some(items) = map.get("union").or_else(|| map.get("intersection")) {
                let Value::Array(items) = items else {
                    return Err(invalid("`union` and `intersection` take a list".into()));
                };
                let mut included = Vec::new();
                let mut excluded = Vec::new();
                for item in items {
                    if let Some(ex) = item.get("exclude") {
                        let Value::Array(ex) = ex else {
                            return Err(invalid("`exclude` takes a list".into()));
                        };
                        for e in ex {
                            excluded.push(parse_definition(project, e, stack)?);
                        }
                    } else {
                        included.push(parse_definition(project, item, stack)?);
                    }
                }
                let combined = if map.contains_key("union") {
                    Spec::Union(included)
                } else {
                    Spec::Intersection(included)
                };
                return Ok(if excluded.is_empty() {
                    combined
                } else {
                    Spec::Difference(Box::new(combined), Box::new(Spec::Union(excluded)))
                });
            }
            let (method, value) = if let Some(m) = map.get("method") {
                (
                    m.as_str().unwrap_or_default().to_owned(),
                    map.get("value").map(value_text).unwrap_or_default(),
                )
            } else if map.len() == 1 {
                let (k, v) = map.iter().next().expect("one key");
                (k.clone(), value_text(v))
            } else {
                return Err(invalid(format!("cannot read the selector definition `{def}`")));
            };
            if method == "selector" {
                if stack.contains(&value) {
                    return Err(invalid(format!("selector `{value}` refers to itself")));
                }
                stack.push(value.clone());
                let inner = find_selector(project, &value)?;
                let spec = parse_definition(project, &inner.definition, stack);
                stack.pop();
                return spec;
            }
            let method_parsed =
                parse_method(&method).ok_or_else(|| invalid(format!("unknown selector method `{method}`")))?;
            let flag = |k: &str| map.get(k).and_then(Value::as_bool).unwrap_or(false);
            let depth = |k: &str| map.get(k).and_then(Value::as_u64).map(|d| d as usize);
            let criterion = Criterion {
                raw: format!("{method}:{value}"),
                method: method_parsed,
                value,
                childrens_parents: flag("childrens_parents"),
                parents: (flag("parents") || depth("parents_depth").is_some()).then(|| depth("parents_depth")),
                children: (flag("children") || depth("children_depth").is_some()).then(|| depth("children_depth")),
            };
            let spec = Spec::Criterion(criterion);
            Ok(match map.get("indirect_selection").and_then(Value::as_str) {
                Some(mode) => Spec::WithIndirect(
                    Box::new(spec),
                    IndirectSelection::parse(mode)
                        .ok_or_else(|| invalid(format!("unknown indirect_selection `{mode}`")))?,
                ),
                None => spec,
            })
        }
        other => Err(invalid(format!("cannot read the selector definition `{other}`"))),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

type Sets = (BTreeSet<NodeIndex>, BTreeSet<NodeIndex>);

/// Resolves a spec to `(direct, indirect)` nodes, as dbt does: `direct` is
/// the selection (tests included per the indirect-selection mode),
/// `indirect` the tests that could still join it once more of their parents
/// are selected by a set operation.
fn evaluate(
    cx: &SelectContext,
    spec: &Spec,
    indirect: IndirectSelection,
    warnings: &mut Vec<Diagnostic>,
) -> Result<BTreeSet<NodeIndex>, Diagnostic> {
    Ok(resolve(cx, spec, indirect, warnings)?.0)
}

fn resolve(
    cx: &SelectContext,
    spec: &Spec,
    indirect: IndirectSelection,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Sets, Diagnostic> {
    let combine = |sets: Vec<Sets>, op: fn(Vec<BTreeSet<NodeIndex>>) -> BTreeSet<NodeIndex>| {
        let directs: Vec<_> = sets.iter().map(|(d, _)| d.clone()).collect();
        let combined: Vec<_> = sets.iter().map(|(d, i)| d | i).collect();
        let initial = op(directs);
        let indirect_nodes = op(combined);
        let direct = incorporate_indirect(cx.dag, initial, &indirect_nodes, indirect);
        (direct, indirect_nodes)
    };
    Ok(match spec {
        Spec::All => {
            let all: BTreeSet<NodeIndex> = cx.dag.order.iter().copied().collect();
            (all, BTreeSet::new())
        }
        Spec::Criterion(c) => {
            let direct = criterion_nodes(cx, c)?;
            if direct.is_empty() {
                warnings.push(
                    Diagnostic::warning(
                        Code::NothingSelected,
                        format!("the selector `{}` matches no node", c.raw),
                    )
                    .with_suggestion(&c.value, name_candidates(cx.dag).iter().map(String::as_str)),
                );
            }
            expand_selection(cx.dag, direct, indirect)
        }
        Spec::Union(items) => {
            let sets = items
                .iter()
                .map(|i| resolve(cx, i, indirect, warnings))
                .collect::<Result<Vec<_>, _>>()?;
            combine(sets, |v| v.into_iter().flatten().collect())
        }
        Spec::Intersection(items) => {
            let sets = items
                .iter()
                .map(|i| resolve(cx, i, indirect, warnings))
                .collect::<Result<Vec<_>, _>>()?;
            combine(sets, |v| {
                let mut it = v.into_iter();
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, s| acc.intersection(&s).copied().collect())
            })
        }
        Spec::Difference(include, exclude) => {
            let sets = vec![
                resolve(cx, include, indirect, warnings)?,
                resolve(cx, exclude, indirect, warnings)?,
            ];
            combine(sets, |v| {
                let mut it = v.into_iter();
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, s| acc.difference(&s).copied().collect())
            })
        }
        Spec::WithIndirect(inner, mode) => resolve(cx, inner, *mode, warnings)?,
    })
}

fn name_candidates(dag: &Dag) -> Vec<String> {
    dag.order.iter().map(|&i| dag.node(i).name.clone()).collect()
}

/// The nodes a criterion picks, with its graph operators applied.
fn criterion_nodes(cx: &SelectContext, c: &Criterion) -> Result<BTreeSet<NodeIndex>, Diagnostic> {
    let matcher = Matcher::new(&c.value)?;
    let mut direct = BTreeSet::new();
    for &i in &cx.dag.order {
        if method_matches(cx, i, c, &matcher)? {
            direct.insert(i);
        }
    }
    // Each walk starts from all the matched nodes at once: one pass over the
    // graph however many nodes matched.
    let mut out = direct.clone();
    if let Some(depth) = c.parents {
        walk(&direct, depth, &mut out, |i| cx.dag.parents(i).collect());
    }
    if let Some(depth) = c.children {
        walk(&direct, depth, &mut out, |i| cx.dag.children(i).collect());
    }
    if c.childrens_parents {
        let mut descendants = BTreeSet::new();
        walk(&direct, None, &mut descendants, |i| cx.dag.children(i).collect());
        out.extend(descendants.iter().copied());
        walk(&descendants, None, &mut out, |i| cx.dag.parents(i).collect());
    }
    Ok(out)
}

/// A value with `*`, `?` or `[...]` matches as a glob, otherwise exactly.
enum Matcher {
    Exact(String),
    Glob(globset::GlobMatcher),
}

impl Matcher {
    fn new(value: &str) -> Result<Matcher, Diagnostic> {
        if !value.contains(['*', '?', '[']) {
            return Ok(Matcher::Exact(value.to_owned()));
        }
        GlobBuilder::new(value)
            .literal_separator(false)
            .build()
            .map(|g| Matcher::Glob(g.compile_matcher()))
            .map_err(|e| Diagnostic::error(Code::InvalidSelector, format!("`{value}` is not a valid pattern: {e}")))
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == text,
            Matcher::Glob(g) => g.is_match(text),
        }
    }
}

/// `pattern` (a glob, or exact text) against `text`. Globs are compiled
/// once per pattern: a wildcard selector is tried against every node.
fn part_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return pattern == text;
    }
    thread_local! {
        static GLOBS: std::cell::RefCell<HashMap<String, Option<globset::GlobMatcher>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    GLOBS.with(|globs| {
        let mut globs = globs.borrow_mut();
        let matcher = globs.entry(pattern.to_owned()).or_insert_with(|| {
            GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .ok()
                .map(|g| g.compile_matcher())
        });
        matcher.as_ref().is_some_and(|m| m.is_match(text))
    })
}

fn method_matches(cx: &SelectContext, index: NodeIndex, c: &Criterion, m: &Matcher) -> Result<bool, Diagnostic> {
    let node = cx.dag.node(index);
    let project = cx.project;
    Ok(match &c.method {
        Method::Fqn => node.resource_type != ResourceType::Source && fqn_matches(&c.value, &node.fqn, &project.name),
        Method::Tag => node.tags().iter().any(|t| m.is_match(t)),
        Method::Path => path_matches(&c.value, &node_paths(cx, node)),
        Method::File => {
            // The file's name, with or without its extension.
            let file = node.path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            let stem = node.path.file_stem().and_then(|f| f.to_str()).unwrap_or_default();
            m.is_match(file) || m.is_match(stem)
        }
        Method::Source => {
            node.resource_type == ResourceType::Source && {
                // `source_name`, `source_name.table`, `package.source_name.table`.
                let parts: Vec<&str> = c.value.split('.').collect();
                let fqn = &node.fqn; // [project, source, table]
                match parts.as_slice() {
                    [s] => part_match(s, &fqn[1]),
                    [s, t] => part_match(s, &fqn[1]) && part_match(t, &fqn[2]),
                    [p, s, t] => part_match(p, &fqn[0]) && part_match(s, &fqn[1]) && part_match(t, &fqn[2]),
                    _ => false,
                }
            }
        }
        Method::Config(path) => {
            let mut value = node.config.raw().value(&path[0]).cloned();
            // The defaults dbt's config carries for every node.
            if value.is_none() {
                value = match path[0].as_str() {
                    "enabled" => Some(Value::Bool(true)),
                    "schema" if node.resource_type == ResourceType::Test => Some(Value::from("dbt_test__audit")),
                    _ => None,
                };
            }
            if path[0] == "materialized" && node.resource_type != ResourceType::Source {
                value = Some(Value::from(node.materialized.as_str()));
            }
            for key in &path[1..] {
                value = value.and_then(|v| v.get(key).cloned());
            }
            // dbt compares config values as they are: no patterns.
            match value {
                Some(Value::Array(items)) => items.iter().any(|v| value_text(v) == c.value),
                Some(v) if !v.is_null() => value_text(&v) == c.value,
                _ => false,
            }
        }
        Method::ResourceType => m.is_match(node.resource_type.as_str()),
        Method::TestType => {
            node.resource_type == ResourceType::Test && {
                let generic = project.data_tests[node.index].is_generic();
                match c.value.as_str() {
                    "generic" | "schema" => generic,
                    "singular" => !generic,
                    // dbt's data tests, as opposed to unit tests: all of them.
                    "data" => true,
                    _ => false,
                }
            }
        }
        Method::TestName => {
            node.resource_type == ResourceType::Test
                && match &project.data_tests[node.index].kind {
                    TestKind::Generic {
                        test_name, namespace, ..
                    } => {
                        m.is_match(test_name)
                            || namespace
                                .as_ref()
                                .is_some_and(|ns| m.is_match(&format!("{ns}.{test_name}")))
                    }
                    // Only generic tests have a test name.
                    TestKind::Singular { .. } => false,
                }
        }
        // `this` is the project being run.
        Method::Package => c.value == "this" || m.is_match(&project.name),
        Method::State => {
            let state = cx.state.ok_or_else(|| {
                Diagnostic::error(Code::MissingState, format!("`{}` needs `--state DIR`", c.raw))
                    .with_help("point --state at the target/ folder of an earlier run (its manifest.json)")
            })?;
            state_matches(cx, state, index, node, &c.value)
        }
        Method::Result => {
            let state = cx.state.ok_or_else(|| {
                Diagnostic::error(Code::MissingState, format!("`{}` needs `--state DIR`", c.raw))
                    .with_help("point --state at the target/ folder of an earlier run (its run_results.json)")
            })?;
            state.results.get(&node.unique_id).is_some_and(|s| m.is_match(s))
        }
    })
}

/// dbt's fully-qualified-name match: the node's name, or a dotted prefix
/// of its fqn (`staging`, `shop.staging.stg_orders`), each part a glob.
fn fqn_matches(value: &str, fqn: &[String], project: &str) -> bool {
    let last = fqn.last().map(String::as_str).unwrap_or_default();
    if part_match(value, last) {
        return true;
    }
    let flat: Vec<&str> = fqn.iter().flat_map(|s| s.split('.')).collect();
    let prefix_match = |parts: &[&str]| {
        if parts.len() > flat.len() {
            return false;
        }
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                return true;
            }
            if !part_match(part, flat[i]) {
                return false;
            }
        }
        true
    };
    let parts: Vec<&str> = value.split('.').collect();
    let mut local = vec![project];
    local.extend(parts.iter().copied());
    prefix_match(&parts) || prefix_match(&local)
}

/// A node's file, or for a model the properties file that describes it,
/// is the path or lies under it; `*` stays within one folder.
fn path_matches(value: &str, paths: &[String]) -> bool {
    let value = value.trim_start_matches("./").trim_end_matches('/');
    let glob = value.contains(['*', '?', '[']).then(|| {
        let build = |v: &str| {
            GlobBuilder::new(v)
                .literal_separator(true)
                .build()
                .ok()
                .map(|g| g.compile_matcher())
        };
        (build(value), build(&format!("{value}/**")))
    });
    paths.iter().any(|path| match &glob {
        Some((exact, below)) => {
            exact.as_ref().is_some_and(|g| g.is_match(path)) || below.as_ref().is_some_and(|g| g.is_match(path))
        }
        None => path == value || path.starts_with(&format!("{value}/")),
    })
}

/// The files a node is defined in: its own, and a model's properties file.
fn node_paths(cx: &SelectContext, node: &Node) -> Vec<String> {
    let mut paths = vec![node.path.to_string_lossy().replace('\\', "/")];
    if node.resource_type == ResourceType::Model {
        if let Some(props) = &cx.project.models[node.index].properties_file {
            paths.push(props.to_string_lossy().replace('\\', "/"));
        }
    }
    paths
}

fn state_matches(cx: &SelectContext, state: &PreviousState, index: NodeIndex, node: &Node, value: &str) -> bool {
    let Some((old_sql, old_config)) = state.nodes.get(&node.unique_id) else {
        return value == "new";
    };
    if value == "new" {
        return false;
    }
    // As the manifest writes it: with the materialization.
    let current_config = node.config.manifest_value();
    let body = old_sql.as_deref() != (cx.compiled)(index).as_deref();
    let configs = strip_contract(old_config) != strip_contract(&current_config);
    let contract =
        old_config.get("contract") != current_config.get("contract") || (node.config.contract_enforced && body);
    match value {
        "modified.body" => body,
        "modified.configs" => configs,
        "modified.contract" => contract,
        _ => body || configs || contract,
    }
}

fn strip_contract(config: &Value) -> Value {
    let mut c = config.clone();
    if let Value::Object(map) = &mut c {
        map.remove("contract");
    }
    c
}

/// The tests read by `selected` join it per `mode` (dbt's
/// `expand_selection`): eager takes every one; cautious those whose
/// parents are all selected, buildable those whose parents are selected or
/// ancestors of selected nodes. The others are kept as indirect.
fn expand_selection(dag: &Dag, selected: BTreeSet<NodeIndex>, mode: IndirectSelection) -> Sets {
    let mut direct = selected.clone();
    let mut indirect = BTreeSet::new();
    let buildable: BTreeSet<NodeIndex> = if mode == IndirectSelection::Buildable {
        selected_and_parents(dag, &selected)
    } else {
        BTreeSet::new()
    };
    for &node in &selected {
        for test in dag.children(node) {
            if dag.node(test).resource_type != ResourceType::Test || selected.contains(&test) {
                continue;
            }
            match mode {
                IndirectSelection::Empty => {}
                IndirectSelection::Eager => {
                    direct.insert(test);
                }
                _ if dag.parents(test).all(|p| selected.contains(&p)) => {
                    direct.insert(test);
                }
                IndirectSelection::Buildable if dag.parents(test).all(|p| buildable.contains(&p)) => {
                    direct.insert(test);
                }
                _ => {
                    indirect.insert(test);
                }
            }
        }
    }
    (direct, indirect)
}

/// After a set operation, the indirect tests whose parents are now all
/// selected (cautious) or buildable join the selection.
fn incorporate_indirect(
    dag: &Dag,
    direct: BTreeSet<NodeIndex>,
    indirect: &BTreeSet<NodeIndex>,
    mode: IndirectSelection,
) -> BTreeSet<NodeIndex> {
    let mut selected = direct.clone();
    match mode {
        IndirectSelection::Cautious => {
            for &t in indirect {
                if dag.parents(t).all(|p| direct.contains(&p)) {
                    selected.insert(t);
                }
            }
        }
        IndirectSelection::Buildable => {
            let ok = selected_and_parents(dag, &direct);
            for &t in indirect {
                if dag.parents(t).all(|p| ok.contains(&p)) {
                    selected.insert(t);
                }
            }
        }
        _ => {}
    }
    selected
}

/// The nodes, their ancestors, and every source.
fn selected_and_parents(dag: &Dag, nodes: &BTreeSet<NodeIndex>) -> BTreeSet<NodeIndex> {
    let mut out = nodes.clone();
    for &n in nodes {
        out.extend(dag.ancestors(n));
    }
    out.extend(
        dag.order
            .iter()
            .copied()
            .filter(|&i| dag.node(i).resource_type == ResourceType::Source),
    );
    out
}

/// Adds the nodes `next` reaches from any of `starts` in at most `depth`
/// steps (all of them without a depth), the starts included.
fn walk(
    starts: &BTreeSet<NodeIndex>,
    depth: Option<usize>,
    out: &mut BTreeSet<NodeIndex>,
    next: impl Fn(NodeIndex) -> Vec<NodeIndex>,
) {
    let mut seen: std::collections::HashSet<NodeIndex> = starts.iter().copied().collect();
    let mut frontier: Vec<NodeIndex> = starts.iter().copied().collect();
    let mut level = 0;
    while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
        level += 1;
        let mut next_frontier = Vec::new();
        for i in frontier {
            for n in next(i) {
                if seen.insert(n) {
                    next_frontier.push(n);
                }
            }
        }
        frontier = next_frontier;
    }
    out.extend(seen);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_parse_graph_operators_and_methods() {
        let c = parse_criterion("2+tag:daily+1").unwrap();
        assert_eq!(c.method, Method::Tag);
        assert_eq!(c.value, "daily");
        assert_eq!((c.parents, c.children), (Some(Some(2)), Some(Some(1))));
        let c = parse_criterion("@stg_orders").unwrap();
        assert!(c.childrens_parents && c.parents.is_none() && c.children.is_none());
        let c = parse_criterion("config.meta.owner:ana").unwrap();
        assert_eq!(c.method, Method::Config(vec!["meta".into(), "owner".into()]));
        assert_eq!(parse_criterion("models/staging").unwrap().method, Method::Path);
        assert_eq!(parse_criterion("orders.sql").unwrap().method, Method::File);
        assert_eq!(parse_criterion("shop.staging").unwrap().method, Method::Fqn);
    }

    #[test]
    fn malformed_criteria_say_where() {
        assert_eq!(parse_criterion("tag:").unwrap_err().1, 4);
        assert!(parse_criterion("+").is_err());
        assert!(parse_criterion("@+m").is_err());
        let (message, at, len) = parse_criterion("tagz:x").unwrap_err();
        assert!(message.contains("did you mean `tag:`"), "{message}");
        assert_eq!((at, len), (0, 4));
        assert!(parse_criterion("config.:x").is_err());
        assert!(
            parse_criterion("resource_type:nope")
                .unwrap_err()
                .0
                .contains("not a resource type")
        );
        assert!(parse_criterion("source:a.b.c.d").is_err());
        let d = position_error("--select", "a tagz:x", 2, 4, "unknown".into());
        assert_eq!(d.notes[0], "--select a tagz:x\n           ^^^^");
    }

    #[test]
    fn characters_no_selector_holds_are_errors_at_their_column() {
        // See: issue 23 (`+@@tag:((` matched no node and exited 0).
        let (message, at, len) = parse_criterion("+@@tag:((").unwrap_err();
        assert!(
            message.starts_with("unexpected `@` in the selector `+@@tag:((`"),
            "{message}"
        );
        assert_eq!((at, len), (1, 1));
        let (message, at, _) = parse_criterion("tag:nightly(").unwrap_err();
        assert!(message.starts_with("unexpected `(`"), "{message}");
        assert_eq!(at, 11);
        // What selectors do hold still parses.
        for ok in [
            "@orders",
            "models/silver/*",
            "tag:pii-free",
            "path:models/a_b.sql",
            "source:bronze.orders+",
            "stg_[ab]?*",
            "path:models/day=2024 (copy)/x.sql",
            "models/old(copy)/orders.sql",
        ] {
            assert!(parse_criterion(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn fqn_matches_names_prefixes_and_globs() {
        let fqn: Vec<String> = ["shop", "staging", "stg_orders"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(fqn_matches("stg_orders", &fqn, "shop"));
        assert!(fqn_matches("stg_*", &fqn, "shop"));
        assert!(fqn_matches("staging", &fqn, "shop"));
        assert!(fqn_matches("shop.staging", &fqn, "shop"));
        assert!(fqn_matches("staging.*", &fqn, "shop"));
        assert!(!fqn_matches("marts", &fqn, "shop"));
        assert!(!fqn_matches("orders", &fqn, "shop"));
    }
}
