//! Selector methods: which nodes `tag:`, `path:`, `fqn:`, `config.`,
//! `state:`, `source:`, `resource_type:`... pick.

use super::*;

pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn name_candidates(dag: &Dag) -> Vec<String> {
    dag.order.iter().map(|&i| dag.node(i).name.clone()).collect()
}

/// A value with `*`, `?` or `[...]` matches as a glob, otherwise exactly.
pub(super) enum Matcher {
    Exact(String),
    Glob(globset::GlobMatcher),
}

impl Matcher {
    pub(super) fn new(value: &str) -> Result<Matcher, Diagnostic> {
        if !value.contains(['*', '?', '[']) {
            return Ok(Matcher::Exact(value.to_owned()));
        }
        GlobBuilder::new(value)
            .literal_separator(false)
            .build()
            .map(|g| Matcher::Glob(g.compile_matcher()))
            .map_err(|e| Diagnostic::error(Code::InvalidSelector, format!("`{value}` is not a valid pattern: {e}")))
    }

    pub(super) fn is_match(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == text,
            Matcher::Glob(g) => g.is_match(text),
        }
    }
}

/// `pattern` (a glob, or exact text) against `text`. Globs are compiled
/// once per pattern: a wildcard selector is tried against every node.
pub(super) fn part_match(pattern: &str, text: &str) -> bool {
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

pub(super) fn method_matches(
    cx: &SelectContext,
    index: NodeIndex,
    c: &Criterion,
    m: &Matcher,
) -> Result<bool, Diagnostic> {
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
        // `exposure:name` or `exposure:package.name`.
        Method::Exposure => {
            node.resource_type == ResourceType::Exposure
                && match c.value.split_once('.') {
                    Some((package, name)) => part_match(package, &node.fqn[0]) && part_match(name, &node.name),
                    None => part_match(&c.value, &node.name),
                }
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
        Method::TestType if node.resource_type == ResourceType::UnitTest => c.value == "unit",
        Method::TestType => {
            node.resource_type == ResourceType::Test && {
                let generic = node.test(project).is_generic();
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
                && match &node.test(project).kind {
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
        // `this` is the project being run; a package's nodes are its own.
        Method::Package => {
            let owner = node.fqn.first().unwrap_or(&project.name);
            (c.value == "this" && owner == &project.name) || m.is_match(owner)
        }
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
pub(super) fn fqn_matches(value: &str, fqn: &[String], project: &str) -> bool {
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
pub(super) fn path_matches(value: &str, paths: &[String]) -> bool {
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
pub(super) fn node_paths(cx: &SelectContext, node: &Node) -> Vec<String> {
    let mut paths = vec![node.path.to_string_lossy().replace('\\', "/")];
    if matches!(node.resource_type, ResourceType::Model | ResourceType::Snapshot) {
        if let Some(props) = &node.model(cx.project).properties_file {
            paths.push(props.to_string_lossy().replace('\\', "/"));
        }
    }
    paths
}

pub(super) fn state_matches(
    cx: &SelectContext,
    state: &PreviousState,
    index: NodeIndex,
    node: &Node,
    value: &str,
) -> bool {
    let Some((old_sql, old_config)) = state.nodes.get(&node.unique_id) else {
        return value == "new";
    };
    if value == "new" {
        return false;
    }
    // As the manifest writes it: with the materialization. Keys an older
    // etl did not write (`enabled`, `tags`, hooks in dbt's shape) are
    // compared only when the earlier manifest has them, so that upgrading
    // etl does not mark every node modified.
    let mut current_config = node.config.manifest_value();
    if let (Value::Object(current), Value::Object(old)) = (&mut current_config, old_config) {
        for key in ["enabled", "tags", "pre-hook", "post-hook"] {
            if !old.contains_key(key) {
                current.remove(key);
            }
        }
    }
    // Judged on the SQL, unless both plans are known and equal: a plan can
    // only clear a change of text, never make one.
    let body = old_sql.as_deref() != (cx.compiled)(index).as_deref()
        && !matches!(
            (state.plans.get(&node.unique_id), (cx.plans)(index)),
            (Some(old), Some(now)) if *old == now
        );
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

pub(super) fn strip_contract(config: &Value) -> Value {
    let mut c = config.clone();
    if let Value::Object(map) = &mut c {
        map.remove("contract");
    }
    c
}
