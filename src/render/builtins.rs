//! dbt's Jinja functions on values: `fromjson`, `tojson`, `fromyaml`,
//! `toyaml`, `zip`, `set`, `local_md5`, and `modules`, which says what of
//! Python's modules etl does not have instead of being undefined.

use std::sync::Arc;

use minijinja::value::{Object, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};

pub fn install(env: &mut Environment<'static>) {
    env.add_function("fromjson", fromjson);
    env.add_function("tojson", tojson);
    env.add_function("fromyaml", fromyaml);
    env.add_function("toyaml", toyaml);
    env.add_function("zip", zip);
    env.add_function("set", set);
    env.add_function("local_md5", local_md5);
    env.add_global("modules", Value::from_object(Modules));
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// `fromjson(text, default=none)`: the value, or `default` when `text` is
/// not JSON.
fn fromjson(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => Ok(Value::from(minijinja::value::Serde(value))),
        Err(e) => default.ok_or_else(|| invalid(format!("fromjson: not JSON: {e}"))),
    }
}

fn tojson(value: Value) -> Result<Value, Error> {
    serde_json::to_string(&value)
        .map(Value::from)
        .map_err(|e| invalid(format!("tojson: {e}")))
}

fn fromyaml(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_saphyr::from_str::<serde_json::Value>(&text) {
        Ok(value) => Ok(Value::from(minijinja::value::Serde(value))),
        Err(e) => default.ok_or_else(|| invalid(format!("fromyaml: not YAML: {e}"))),
    }
}

fn toyaml(value: Value) -> Result<Value, Error> {
    serde_saphyr::to_string(&value)
        .map(Value::from)
        .map_err(|e| invalid(format!("toyaml: {e}")))
}

/// Python's `zip`: the n-th items of each list together, as long as the
/// shortest list.
fn zip(lists: Rest<Value>) -> Result<Value, Error> {
    let lists: Vec<Vec<Value>> = lists
        .iter()
        .map(|list| list.try_iter().map(Iterator::collect))
        .collect::<Result<_, _>>()?;
    let len = lists.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::from(
        (0..len)
            .map(|i| Value::from(lists.iter().map(|l| l[i].clone()).collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
    ))
}

/// Python's `set`: the distinct items, in their first order.
fn set(items: Option<Value>) -> Result<Value, Error> {
    let mut out: Vec<Value> = Vec::new();
    if let Some(items) = items {
        for item in items.try_iter()? {
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    Ok(Value::from(out))
}

fn local_md5(text: String) -> String {
    use md5::Digest;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `modules.datetime`, `modules.re`, ...: not available yet, said by name.
#[derive(Debug)]
struct Modules;

impl Object for Modules {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(Module(key.as_str()?.to_owned())))
    }
}

#[derive(Debug)]
struct Module(String);

impl Object for Module {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(Module(format!("{}.{}", self.0, key.as_str()?))))
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, _args: &[Value]) -> Result<Value, Error> {
        Err(self.unavailable())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        Err(Module(format!("{}.{method}", self.0)).unavailable())
    }
}

impl Module {
    fn unavailable(&self) -> Error {
        invalid(format!(
            "`modules.{}` is not available in etl yet: etl's Jinja is minijinja, not Python",
            self.0
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> Result<String, Error> {
        let mut env = Environment::new();
        install(&mut env);
        env.render_str(template, ())
    }

    #[test]
    fn dbts_value_functions_work_as_in_python() {
        assert_eq!(
            render("{{ fromjson('{\"a\": [1, 2]}').a | sum }}|{{ fromjson('nope', 0) }}").unwrap(),
            "3|0"
        );
        assert_eq!(render("{{ tojson({'a': 1}) }}").unwrap(), "{\"a\":1}");
        assert_eq!(render("{{ fromyaml('a: [x, z]').a | join(',') }}").unwrap(), "x,z");
        assert_eq!(render("{{ toyaml({'a': 1}) | trim }}").unwrap(), "a: 1");
        assert_eq!(
            render("{% for a, b in zip([1, 2, 3], ['x', 'y']) %}{{ a }}{{ b }};{% endfor %}").unwrap(),
            "1x;2y;"
        );
        assert_eq!(render("{{ set([1, 2, 1, 3]) | join(',') }}").unwrap(), "1,2,3");
        assert_eq!(
            render("{{ local_md5('a') }}").unwrap(),
            "0cc175b9c0f1b6a831c399e269772661"
        );
        let err = render("{{ modules.datetime.datetime.now() }}").unwrap_err();
        assert_eq!(
            err.detail(),
            Some("`modules.datetime.datetime.now` is not available in etl yet: etl's Jinja is minijinja, not Python")
        );
    }
}
