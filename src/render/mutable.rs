//! Lists and mappings that `{% do x.append(...) %}` can change, as in
//! Python's Jinja, where dbt macros build their SQL this way
//! (`{% set fields = [] %}` ... `{% do fields.append(f) %}`).
//!
//! minijinja's values are immutable. A `{% set name = [...] %}` or
//! `{% set name = {...} %}` whose value is a literal is read as
//! `{% set name = __etl_mutable([...]) %}`, which gives a list (or mapping)
//! with Python's methods: `append`, `extend`, `insert`, `pop`, `remove`
//! for a list; `update`, `pop`, `setdefault`, `get`, `items`, `keys`,
//! `values` for a mapping. Everything else reads them as a list or a
//! mapping.

use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

pub const MUTABLE: &str = "__etl_mutable";

/// `text` with each `set` of a literal list or mapping made mutable.
pub fn mutable_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{%") {
        let tag_end = rest[i..].find("%}").map_or(rest.len(), |e| i + e);
        let tag = &rest[i + 2..tag_end];
        let inner = tag.strip_prefix(['-', '+']).unwrap_or(tag);
        let lead = &tag[..tag.len() - inner.len()];
        let body = inner.trim_start();
        let rewritten = body
            .strip_prefix("set")
            .filter(|r| r.starts_with(char::is_whitespace))
            .and_then(|r| {
                let eq = r.find('=')?;
                let (name, value) = (&r[..eq], &r[eq + 1..]);
                let trail = value.trim_end();
                let (value, close) = match trail.strip_suffix(['-', '+']) {
                    Some(v) => (v, &trail[v.len()..]),
                    None => (trail, ""),
                };
                let literal = value.trim();
                let is_literal = name.trim().chars().all(|c| c.is_alphanumeric() || c == '_')
                    && ((literal.starts_with('[') && literal.ends_with(']'))
                        || (literal.starts_with('{') && literal.ends_with('}')));
                is_literal.then(|| {
                    let pad = &inner[..inner.len() - body.len()];
                    format!("{lead}{pad}set{name}= {MUTABLE}({literal}) {close}")
                })
            });
        match rewritten {
            Some(tag) => {
                out.push_str(&rest[..i + 2]);
                out.push_str(&tag);
            }
            None => out.push_str(&rest[..tag_end]),
        }
        rest = &rest[tag_end..];
    }
    out.push_str(rest);
    out
}

/// `__etl_mutable(value)`: a list or mapping that can change.
pub fn mutable(value: Value) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::Seq => Ok(Value::from_object(List(Mutex::new(value.try_iter()?.collect())))),
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key, item));
            }
            Ok(Value::from_object(Dict(Mutex::new(entries))))
        }
        _ => Ok(value),
    }
}

fn wrong_args(method: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("wrong arguments to `{method}`"))
}

#[derive(Debug)]
struct List(Mutex<Vec<Value>>);

impl List {
    fn items(&self) -> Vec<Value> {
        self.0.lock().expect("list poisoned").clone()
    }
}

impl Object for List {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.0.lock().expect("list poisoned");
        let index = i64::try_from(key.clone()).ok()?;
        let index = if index < 0 { items.len() as i64 + index } else { index };
        items.get(usize::try_from(index).ok()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items())
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let mut items = self.0.lock().expect("list poisoned");
        match (method, args) {
            ("append", [value]) => items.push(value.clone()),
            ("extend", [values]) => items.extend(values.try_iter()?),
            ("insert", [at, value]) => {
                let at = usize::try_from(at.clone())
                    .map_err(|_| wrong_args(method))?
                    .min(items.len());
                items.insert(at, value.clone());
            }
            ("pop", []) => return Ok(items.pop().unwrap_or_default()),
            ("pop", [at]) => {
                let at = usize::try_from(at.clone()).map_err(|_| wrong_args(method))?;
                if at >= items.len() {
                    return Err(Error::new(ErrorKind::InvalidOperation, "pop index out of range"));
                }
                return Ok(items.remove(at));
            }
            ("remove", [value]) => match items.iter().position(|v| v == value) {
                Some(at) => {
                    items.remove(at);
                }
                None => return Err(Error::new(ErrorKind::InvalidOperation, "list.remove(x): x not in list")),
            },
            ("reverse", []) => items.reverse(),
            ("index", [value]) => {
                return items
                    .iter()
                    .position(|v| v == value)
                    .map(Value::from)
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "list.index(x): x not in list"));
            }
            ("count", [value]) => return Ok(Value::from(items.iter().filter(|v| *v == value).count())),
            ("append" | "extend" | "insert" | "pop" | "remove" | "reverse" | "index" | "count", _) => {
                return Err(wrong_args(method));
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        }
        Ok(Value::from(()))
    }
}

#[derive(Debug)]
struct Dict(Mutex<Vec<(Value, Value)>>);

impl Dict {
    fn entries(&self) -> Vec<(Value, Value)> {
        self.0.lock().expect("mapping poisoned").clone()
    }

    fn set(entries: &mut Vec<(Value, Value)>, key: Value, value: Value) {
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key, value)),
        }
    }
}

impl Object for Dict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let entries = self.0.lock().expect("mapping poisoned");
        entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.entries().into_iter().map(|(k, _)| k).collect())
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let mut entries = self.0.lock().expect("mapping poisoned");
        let pairs = |entries: &Vec<(Value, Value)>| {
            Value::from(
                entries
                    .iter()
                    .map(|(k, v)| Value::from(vec![k.clone(), v.clone()]))
                    .collect::<Vec<_>>(),
            )
        };
        match (method, args) {
            ("update", [other]) => {
                for key in other.try_iter()? {
                    let value = other.get_item(&key)?;
                    Dict::set(&mut entries, key, value);
                }
                Ok(Value::from(()))
            }
            ("get", [key]) | ("get", [key, _]) => Ok(entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| args.get(1).cloned().unwrap_or(Value::from(())))),
            ("setdefault", [key, default]) => match entries.iter().find(|(k, _)| k == key) {
                Some((_, v)) => Ok(v.clone()),
                None => {
                    entries.push((key.clone(), default.clone()));
                    Ok(default.clone())
                }
            },
            ("pop", [key]) | ("pop", [key, _]) => match entries.iter().position(|(k, _)| k == key) {
                Some(at) => Ok(entries.remove(at).1),
                None => args
                    .get(1)
                    .cloned()
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, format!("key {key} is not in the mapping"))),
            },
            ("items", []) => Ok(pairs(&entries)),
            ("keys", []) => Ok(Value::from(entries.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())),
            ("values", []) => Ok(Value::from(entries.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>())),
            ("update" | "get" | "setdefault" | "pop" | "items" | "keys" | "values", _) => Err(wrong_args(method)),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;

    fn render(template: &str) -> String {
        let mut env = Environment::new();
        env.add_function(MUTABLE, mutable);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.render_str(&mutable_literals(template), ()).unwrap()
    }

    #[test]
    fn set_literals_become_lists_and_mappings_that_change() {
        assert_eq!(
            mutable_literals("{%- set fields = [] -%}{% set x = y %}{% set m = {'a': 1} %}"),
            "{%- set fields = __etl_mutable([]) -%}{% set x = y %}{% set m = __etl_mutable({'a': 1}) %}"
        );
        let list = "{% set f = ['a'] %}{% do f.append('b') %}{% do f.extend(['c', 'd']) %}\
                    {% do f.insert(0, 'z') %}{{ f.pop() }}|{{ f | join(',') }}|{{ f | length }}|{{ f[-1] }}";
        assert_eq!(render(list), "d|z,a,b,c|4|c");
        let map = "{%- set m = {} -%}{% do m.update({'a': 1, 'b': 2}) %}{% do m.setdefault('c', 3) %}\
                   {%- for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}{{ m.get('x', 0) }}{{ m['b'] }}\
                   {{ 'a' in m }}{{ m | length }}{{ m.pop('a') }}{{ m.keys() | join }}";
        assert_eq!(render(map), "a=1;b=2;c=3;02True31bc");
    }
}
