//! Config as users write it: keys and JSON values, each with the place
//! that set it, merged from the project file down to `config()` calls.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::diagnostic::Span;

/// Config keys and values as written, with where each key was last set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawConfig {
    values: Map<String, Value>,
    spans: BTreeMap<String, Span>,
}

impl RawConfig {
    /// Values set at `span` (or nowhere in particular).
    pub fn from_values(values: Map<String, Value>, span: impl Fn(&str) -> Option<Span>) -> RawConfig {
        let mut config = RawConfig::default();
        for (key, value) in values {
            let at = span(&key);
            config.insert(key, value, at);
        }
        config
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value, span: Option<Span>) {
        let mut key = key.into();
        // dbt spells hooks both ways: `+pre-hook` in YAML, `pre_hook=` in
        // `config()`. They are one list.
        if let Some(hook) = HOOK_KEYS.iter().find(|(dashed, _)| *dashed == key) {
            key = hook.1.to_owned();
        }
        match span {
            Some(span) => self.spans.insert(key.clone(), span),
            None => self.spans.remove(&key),
        };
        self.values.insert(key, value);
    }

    /// Merges `over` into `self`, as dbt does: tags and hooks accumulate,
    /// meta merges, every other key is replaced.
    pub fn merge(&mut self, over: RawConfig) {
        let RawConfig { values, mut spans } = over;
        for (key, value) in values {
            let span = spans.remove(&key);
            match (key.as_str(), self.values.get_mut(&key), value) {
                ("tags", Some(existing), value) => {
                    let mut tags = string_list(existing);
                    for tag in string_list(&value) {
                        if !tags.contains(&tag) {
                            tags.push(tag);
                        }
                    }
                    *existing = Value::from(tags);
                    if let Some(span) = span {
                        self.spans.insert(key, span);
                    }
                }
                ("pre_hook" | "post_hook", Some(existing), value) => {
                    let mut hooks = as_list(existing.clone());
                    hooks.extend(as_list(value));
                    *existing = Value::Array(hooks);
                    if let Some(span) = span {
                        self.spans.insert(key, span);
                    }
                }
                ("meta", Some(Value::Object(existing)), Value::Object(more)) => {
                    existing.extend(more);
                    if let Some(span) = span {
                        self.spans.insert(key, span);
                    }
                }
                (_, _, value) => self.insert(key, value, span),
            }
        }
    }

    /// Gives each key set without a place the one `span` finds for it.
    pub fn locate(&mut self, span: impl Fn(&str) -> Option<Span>) {
        for key in self.values.keys() {
            if !self.spans.contains_key(key) {
                if let Some(found) = span(key) {
                    self.spans.insert(key.clone(), found);
                }
            }
        }
    }

    /// The value of a key named at run time: `config.get(key)` in a
    /// template, `config.<key>:` in a selector, the manifest.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// The SQL templates of `pre_hook` or `post_hook`, as far as they read
    /// (the config check says what does not).
    pub fn hook_templates(&self, key: &str) -> Vec<String> {
        self.value(key)
            .cloned()
            .map(as_list)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| match item {
                Value::String(sql) => Some(sql),
                Value::Object(map) => map.get("sql").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .filter(|sql| !sql.trim().is_empty())
            .collect()
    }

    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Where `key` was last set, when that is known.
    pub fn span(&self, key: &str) -> Option<&Span> {
        self.spans.get(key)
    }

    /// `enabled`, read before a node is checked: a disabled node's other
    /// config is not checked at all (dbt does not parse it either).
    pub fn enabled(&self) -> bool {
        self.values.get("enabled").and_then(Value::as_bool).unwrap_or(true)
    }

    /// `materialized` as written, read while rendering (a node's relation
    /// depends on it before its config is checked).
    pub fn materialized(&self) -> Option<&str> {
        self.values.get("materialized").and_then(Value::as_str)
    }

    /// `schema` and `alias`, which make a node's relation while rendering.
    pub fn schema(&self) -> Option<&str> {
        self.values
            .get("schema")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn alias(&self) -> Option<&str> {
        self.values
            .get("alias")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `where`: a generic test's filter, which shapes its SQL while rendering.
    pub fn filter(&self) -> Option<&str> {
        self.values.get("where").and_then(Value::as_str)
    }
}

impl serde::Serialize for RawConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(serializer)
    }
}

/// The dashed spelling of each hook key, and the one it is kept under.
const HOOK_KEYS: &[(&str, &str)] = &[("pre-hook", "pre_hook"), ("post-hook", "post_hook")];

/// A value, or the items of a list.
fn as_list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A string or a list of strings, as `tags` and key lists are written.
pub fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_accumulates_tags_merges_meta_and_keeps_the_last_span() {
        let at = |line| Some(Span::new("a.yml", line, 1, 0));
        let mut base = RawConfig::default();
        base.insert("tags", serde_json::json!(["a"]), at(1));
        base.insert("meta", serde_json::json!({"x": 1}), at(2));
        base.insert("materialized", Value::from("view"), at(3));
        let mut over = RawConfig::default();
        over.insert("tags", serde_json::json!(["b", "a"]), at(4));
        over.insert("meta", serde_json::json!({"y": 2}), None);
        over.insert("materialized", Value::from("table"), at(5));
        base.merge(over);
        assert_eq!(base.value("tags"), Some(&serde_json::json!(["a", "b"])));
        assert_eq!(base.value("meta"), Some(&serde_json::json!({"x": 1, "y": 2})));
        assert_eq!(base.materialized(), Some("table"));
        assert_eq!(base.span("tags").map(|s| s.line), Some(4));
        assert_eq!(base.span("meta").map(|s| s.line), Some(2));
        assert_eq!(base.span("materialized").map(|s| s.line), Some(5));
    }
}
