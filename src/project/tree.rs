//! Node config from files: the project file's `models:`/`seeds:` trees
//! (checked to name folders that exist) and the `config:` blocks of
//! properties files, each key kept with its line.

use super::*;

/// The config the project file gives the node at `fqn`, merged from the
/// root of the tree down to the node itself.
pub(super) fn tree_config(tree: Option<&ConfigTree>, header: &Header, fqn: &[String]) -> RawConfig {
    if fqn.first().is_some_and(|root| root != &header.name) {
        // A package's node, under the project's `<package>:` key.
        return tree_config_at(tree, &header.file, &fqn[0], fqn);
    }
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
    descend(level, path, file, &mut config);
    config
}

/// Merges the config of each folder of `path` below `level`, in turn.
fn descend(mut level: &ConfigTree, path: &[String], file: &Path, config: &mut RawConfig) {
    for part in path {
        match level.folder(part) {
            Some(next) => {
                level = next;
                config.merge(level.config(file));
            }
            None => break,
        }
    }
}

/// The config a dbt project file (`file`) gives the node at `fqn` of the
/// project or package `name`: its top-level config, then the `name:` key
/// and the folders below it.
pub(super) fn tree_config_at(tree: Option<&ConfigTree>, file: &Path, name: &str, fqn: &[String]) -> RawConfig {
    let mut config = RawConfig::default();
    let Some(top) = tree else { return config };
    // As in dbt, the top level configures every project's nodes.
    config.merge(top.config(file));
    let Some(level) = top.folder(name) else {
        return config;
    };
    config.merge(level.config(file));
    descend(level, &fqn[1..], file, &mut config);
    config
}

/// Every folder named in a config tree must exist: a misspelt folder would
/// otherwise silently configure nothing.
pub(super) fn check_tree_paths<'a>(
    tree: Option<&ConfigTree>,
    header: &Header,
    fqns: impl Iterator<Item = &'a [String]>,
    errors: &mut Diagnostics,
) {
    let Some(tree) = tree else { return };
    let mut prefixes: BTreeSet<Vec<String>> = BTreeSet::new();
    for fqn in fqns {
        // A package's nodes are configured under its name.
        let from = usize::from(fqn[0] == header.name);
        for i in from..=fqn.len() - 1 {
            prefixes.insert(fqn[from..=i].to_vec());
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
pub(super) type PropsTarget<'a> = (
    &'a mut RawConfig,
    &'a mut String,
    &'a mut Vec<ColumnProperties>,
    Option<&'a mut Option<PathBuf>>,
);

/// Each name's first position: duplicates are reported by
/// `check_unique_names`, and properties apply to the first node.
pub(super) fn first_index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut index = HashMap::new();
    for (i, name) in names.enumerate() {
        index.entry(name.to_owned()).or_insert(i);
    }
    index
}

pub(super) fn unknown_node<'a>(
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

pub(super) fn apply_properties(file: &Path, props: ModelProperties, target: PropsTarget<'_>, errors: &mut Diagnostics) {
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
pub(super) fn check_config(file: &Path, config: ConfigMap, errors: &mut Diagnostics) -> Option<RawConfig> {
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
