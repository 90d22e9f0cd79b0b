//! Settings written as templates. A target's `lake` and `options` and a
//! source's `location` may use `{{ env_var('NAME') }}` and
//! `{{ var('name') }}`, and a source's location `{{ target.lake }}` (the
//! lake root URL, ending in `/`) and `{{ target.name }}`. They are rendered
//! once, when the project loads, so that one project builds against a local
//! lake or a bucket, and secrets stay in the environment: only the rendered
//! lake URL is ever written to artifacts, never an option.

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
use serde_json::Map;

/// What a setting's template can see.
pub struct SettingScope<'a> {
    pub vars: &'a Map<String, serde_json::Value>,
    /// The target's name and lake root, once they are known.
    pub target: Option<(&'a str, &'a str)>,
}

/// Renders `text` when it holds a template; plain text is returned as is.
pub fn render(text: &str, scope: &SettingScope) -> Result<String, String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_owned());
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_function("env_var", env_var);
    let vars = scope.vars.clone();
    env.add_function(
        "var",
        move |name: String, default: Option<Value>| -> Result<Value, Error> {
            match vars.get(&name) {
                Some(v) => Ok(Value::from(minijinja::value::Serde(v))),
                None => default.ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("variable `{name}` is not set and has no default"),
                    )
                }),
            }
        },
    );
    let mut context = std::collections::BTreeMap::new();
    if let Some((name, lake)) = scope.target {
        context.insert(
            "target",
            Value::from(std::collections::BTreeMap::from([
                ("name", Value::from(name)),
                ("lake", Value::from(lake)),
            ])),
        );
    }
    env.render_str(text, context).map_err(|e| {
        let detail = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
        format!("cannot render `{text}`: {detail}")
    })
}

fn env_var(name: String, default: Option<Value>) -> Result<Value, Error> {
    match std::env::var(&name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => default.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable `{name}` is not set and has no default"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_render_target_vars_and_environment() {
        let vars: Map<String, serde_json::Value> =
            [("bucket".to_owned(), serde_json::json!("shop"))].into_iter().collect();
        let scope = SettingScope {
            vars: &vars,
            target: Some(("dev", "s3://shop/lake/")),
        };
        assert_eq!(
            render("{{ target.lake }}bronze/*.csv", &scope).unwrap(),
            "s3://shop/lake/bronze/*.csv"
        );
        assert_eq!(render("s3://{{ var('bucket') }}/x", &scope).unwrap(), "s3://shop/x");
        assert_eq!(
            render("{{ env_var('ETL_TEST_SURELY_UNSET', 'fallback') }}", &scope).unwrap(),
            "fallback"
        );
        assert_eq!(render("lake/bronze", &scope).unwrap(), "lake/bronze");
    }

    #[test]
    fn a_missing_variable_or_typo_is_an_error_naming_it() {
        let vars = Map::new();
        let scope = SettingScope {
            vars: &vars,
            target: Some(("dev", "file:///lake/")),
        };
        let err = render("{{ env_var('ETL_TEST_SURELY_UNSET') }}", &scope).unwrap_err();
        assert!(
            err.contains("environment variable `ETL_TEST_SURELY_UNSET` is not set"),
            "{err}"
        );
        let err = render("{{ target.lak }}", &scope).unwrap_err();
        assert!(err.starts_with("cannot render `{{ target.lak }}`"), "{err}");
    }
}
