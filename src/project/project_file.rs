//! The project file: etl's `project.yaml`, or dbt's `dbt_project.yml` with
//! dbt's keys and meanings, and the per-folder config trees both carry.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::{Location, Spanned};

use crate::config::RawConfig;

/// `project.yaml`: etl's own project file.
// Every key dbt accepts is declared, so that unknown keys can be errors;
// some are read by later stages only.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlProjectFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub version: Option<Value>,
    #[serde(default)]
    pub paths: Option<PathsSpec>,
    /// The target used when `--target` is not given.
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    #[serde(default)]
    pub targets: BTreeMap<String, Spanned<TargetSpec>>,
    #[serde(default)]
    pub vars: Map<String, Value>,
    #[serde(default)]
    pub models: Option<ConfigTree>,
    #[serde(default)]
    pub seeds: Option<ConfigTree>,
    #[serde(default, alias = "data_tests")]
    pub tests: Option<ConfigTree>,
    #[serde(default)]
    pub sources: Option<ConfigTree>,
    #[serde(default)]
    pub snapshots: Option<ConfigTree>,
    /// Whose SQL semantics models are written in: `datafusion` (the
    /// default) or `duckdb`.
    #[serde(default)]
    pub sql_dialect: Option<Spanned<String>>,
}

/// Where each kind of file lives, relative to the project root.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSpec {
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub macros: Option<Vec<String>>,
    #[serde(default)]
    pub seeds: Option<Vec<String>>,
    #[serde(default)]
    pub tests: Option<Vec<String>>,
    #[serde(default)]
    pub snapshots: Option<Vec<String>>,
}

/// A named target: where the lake lives and how to build against it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The lake root: a path relative to the project, or a URL.
    pub lake: String,
    /// The schema of models that set none; `main` by default.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub threads: Option<usize>,
    /// A memory limit such as `2GiB`, used when `--memory-limit` is not given.
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// Options passed to the object store (endpoint, region, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Who hears of a build (webhooks, e-mail), and when.
    #[serde(default)]
    pub notify: Option<Spanned<Value>>,
}

/// `dbt_project.yml`, with every key dbt accepts. Keys that only mean
/// something to dbt (profile, paths of other tools) are accepted; features
/// etl does not act on yet (hooks, snapshots, unit tests) are said where
/// the project loads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DbtProjectFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub version: Option<Value>,
    #[serde(default, rename = "config-version")]
    pub config_version: Option<Value>,
    #[serde(default)]
    pub profile: Option<Spanned<String>>,
    #[serde(default, rename = "model-paths", alias = "source-paths")]
    pub model_paths: Option<Vec<String>>,
    #[serde(default, rename = "seed-paths", alias = "data-paths")]
    pub seed_paths: Option<Vec<String>>,
    #[serde(default, rename = "test-paths")]
    pub test_paths: Option<Vec<String>>,
    #[serde(default, rename = "macro-paths")]
    pub macro_paths: Option<Vec<String>>,
    #[serde(default, rename = "analysis-paths")]
    pub analysis_paths: Option<Value>,
    #[serde(default, rename = "snapshot-paths")]
    pub snapshot_paths: Option<Vec<String>>,
    #[serde(default, rename = "docs-paths")]
    pub docs_paths: Option<Value>,
    #[serde(default, rename = "asset-paths")]
    pub asset_paths: Option<Value>,
    #[serde(default, rename = "function-paths")]
    pub function_paths: Option<Value>,
    #[serde(default, rename = "target-path")]
    pub target_path: Option<Value>,
    #[serde(default, rename = "log-path")]
    pub log_path: Option<Value>,
    #[serde(default, rename = "clean-targets")]
    pub clean_targets: Option<Value>,
    #[serde(default, rename = "packages-install-path")]
    pub packages_install_path: Option<Value>,
    #[serde(default, rename = "require-dbt-version")]
    pub require_dbt_version: Option<Value>,
    #[serde(default)]
    pub vars: Map<String, Value>,
    #[serde(default)]
    pub models: Option<ConfigTree>,
    #[serde(default)]
    pub seeds: Option<ConfigTree>,
    #[serde(default, alias = "data_tests")]
    pub tests: Option<ConfigTree>,
    #[serde(default)]
    pub sources: Option<ConfigTree>,
    #[serde(default)]
    pub snapshots: Option<ConfigTree>,
    #[serde(default)]
    pub analyses: Option<Value>,
    #[serde(default)]
    pub unit_tests: Option<ConfigTree>,
    #[serde(default)]
    pub functions: Option<Value>,
    #[serde(default, rename = "on-run-start")]
    pub on_run_start: Option<Spanned<Value>>,
    #[serde(default, rename = "on-run-end")]
    pub on_run_end: Option<Spanned<Value>>,
    #[serde(default)]
    pub quoting: Option<Value>,
    #[serde(default)]
    pub flags: Option<Value>,
    #[serde(default)]
    pub dispatch: Option<Spanned<Value>>,
    #[serde(default, rename = "query-comment")]
    pub query_comment: Option<Value>,
    #[serde(default, rename = "restrict-access")]
    pub restrict_access: Option<Value>,
    #[serde(default, rename = "semantic-models")]
    pub semantic_models: Option<Value>,
    #[serde(default, rename = "saved-queries")]
    pub saved_queries: Option<Value>,
    #[serde(default)]
    pub metrics: Option<Value>,
    #[serde(default)]
    pub exposures: Option<Value>,
    #[serde(default, rename = "dbt-cloud")]
    pub dbt_cloud: Option<Value>,
}

/// One key of a config tree: either config for everything below, or a
/// sub-folder (or model) with its own tree.
#[derive(Debug, Clone)]
pub enum TreeEntry {
    Config(Value),
    Folder(ConfigTree),
}

/// A `models:`/`seeds:` block: `+key: value` config and folder names, nested.
/// Keys without `+` that are known config keys are config too, as in dbt.
#[derive(Debug, Clone, Default)]
pub struct ConfigTree {
    pub entries: Vec<(String, Location, TreeEntry)>,
}

impl ConfigTree {
    /// The config set at this level (with `+` removed from keys), each
    /// key at its line of `file`.
    pub fn config(&self, file: &std::path::Path) -> RawConfig {
        let mut config = RawConfig::default();
        for (key, at, entry) in &self.entries {
            if let TreeEntry::Config(value) = entry {
                config.insert(key.trim_start_matches('+'), value.clone(), super::yaml::span(file, at));
            }
        }
        config
    }

    pub fn folder(&self, name: &str) -> Option<&ConfigTree> {
        self.entries.iter().find_map(|(k, _, e)| match e {
            TreeEntry::Folder(t) if k == name => Some(t),
            _ => None,
        })
    }

    pub fn folders(&self) -> impl Iterator<Item = (&str, &Location, &ConfigTree)> {
        self.entries.iter().filter_map(|(k, l, e)| match e {
            TreeEntry::Folder(t) => Some((k.as_str(), l, t)),
            TreeEntry::Config(_) => None,
        })
    }
}

struct RawNode(TreeEntry);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A node is a folder when it is a mapping; any scalar or list under a
        // non-`+` key is plain config (dbt accepts `materialized: view`).
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = RawNode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a config value or a folder mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawNode, A::Error> {
                Ok(RawNode(TreeEntry::Folder(visit_tree(map)?)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
                Ok(RawNode(TreeEntry::Config(Value::Bool(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
                Ok(RawNode(TreeEntry::Config(Value::from(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
                Ok(RawNode(TreeEntry::Config(Value::from(v))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
                Ok(RawNode(TreeEntry::Config(Value::from(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
                Ok(RawNode(TreeEntry::Config(Value::from(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
                Ok(RawNode(TreeEntry::Folder(ConfigTree::default())))
            }
            fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
                self.visit_unit()
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    items.push(v);
                }
                Ok(RawNode(TreeEntry::Config(Value::Array(items))))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

fn visit_tree<'de, A: MapAccess<'de>>(mut map: A) -> Result<ConfigTree, A::Error> {
    let mut tree = ConfigTree::default();
    while let Some(key) = map.next_key::<Spanned<String>>()? {
        let name = key.value;
        let is_config = name.starts_with('+') || crate::config::is_known_key(&name);
        let entry = if is_config {
            TreeEntry::Config(map.next_value::<Value>()?)
        } else {
            map.next_value::<RawNode>()?.0
        };
        tree.entries.push((name, key.referenced, entry));
    }
    Ok(tree)
}

impl<'de> Deserialize<'de> for ConfigTree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TreeVisitor;
        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = ConfigTree;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of folders and `+config` keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ConfigTree, A::Error> {
                visit_tree(map)
            }
            fn visit_unit<E: de::Error>(self) -> Result<ConfigTree, E> {
                Ok(ConfigTree::default())
            }
        }
        d.deserialize_any(TreeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_tree_separates_config_from_folders() {
        let tree: ConfigTree = serde_saphyr::from_str(
            "+materialized: view\nsilver:\n  +materialized: table\n  +tags: [a, b]\n  schema: silver\n",
        )
        .unwrap();
        let file = std::path::Path::new("dbt_project.yml");
        assert_eq!(tree.config(file).materialized(), Some("view"));
        let silver = tree.folder("silver").unwrap();
        let config = silver.config(file);
        assert_eq!(config.materialized(), Some("table"));
        assert_eq!(config.value("tags"), Some(&serde_json::json!(["a", "b"])));
        assert_eq!(config.schema(), Some("silver"));
        assert_eq!(config.span("tags").map(|s| s.line), Some(4));
        assert_eq!(tree.folders().next().unwrap().1.line(), 2);
    }
}
