//! What a template learns from the lake while its node runs, as dbt gives
//! it: `execute`, `run_query`, `{% call statement(...) %}` with
//! `load_result`, `load_relation`, and `adapter.get_relation` /
//! `adapter.get_columns_in_relation`.
//!
//! dbt renders every node twice: parsing, with `execute` false and nothing
//! asked of the warehouse (the DAG and the config are learned then), and
//! running, with `execute` true. etl renders once, while parsing, and
//! records whether the render looked at `execute` or asked the lake
//! anything; those nodes (and only those) render again when they run,
//! after their parents are built, with a [`Warehouse`] that answers from
//! the lake.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, State};

use super::context::{self, failure, relation_value, warehouse};
use super::warehouse::{Column, Table};
use crate::diagnostic::Code;
use crate::lake::Relation;

pub fn install(env: &mut Environment<'static>) {
    env.add_function("run_query", run_query);
    env.add_function("statement", statement);
    env.add_function("load_result", load_result);
    env.add_function("load_relation", load_relation);
}

fn lake_error(what: &str, message: String) -> Error {
    failure(Code::Introspection, format!("{what}: {message}"), None)
}

/// `run_query(sql)`: the query's rows as a table, `none` while parsing.
fn run_query(state: &State, sql: Value) -> Result<Value, Error> {
    let scope = context::scope(state)?;
    let Some(lake) = warehouse(&scope) else {
        return Ok(Value::from(()));
    };
    let table = lake.query(&sql.to_string()).map_err(|e| lake_error("`run_query`", e))?;
    Ok(Value::from_object(AgateTable(Arc::new(table))))
}

/// `{% call statement('name', fetch_result=True) %} sql {% endcall %}`:
/// runs the block's SQL when the node runs and keeps its result for
/// `load_result('name')`.
fn statement(state: &mut State, name: Option<String>, kwargs: Kwargs) -> Result<Value, Error> {
    let caller: Option<Value> = kwargs.get("caller")?;
    let fetch: Option<bool> = kwargs.get("fetch_result")?;
    let _: Option<Value> = kwargs.get("auto_begin")?;
    let language: Option<String> = kwargs.get("language")?;
    kwargs.assert_all_used()?;
    if language.as_deref().is_some_and(|l| l != "sql") {
        return Err(failure(
            Code::Unsupported,
            format!("`statement(language='{}')`: etl runs SQL", language.unwrap_or_default()),
            None,
        ));
    }
    let scope = context::scope(state)?;
    let Some(lake) = warehouse(&scope) else {
        return Ok(Value::from(""));
    };
    let Some(caller) = caller else {
        return Err(failure(
            Code::Jinja,
            "`statement()` is called as a block: `{% call statement('main') %} sql {% endcall %}`".into(),
            None,
        ));
    };
    let sql = caller.call(state, &[])?.to_string();
    let table = lake.query(&sql).map_err(|e| lake_error("`statement`", e))?;
    let name = name.unwrap_or_else(|| "statement".into());
    let rows = table.rows.len();
    let table = Value::from_object(AgateTable(Arc::new(table)));
    let data = if fetch.unwrap_or(false) {
        Value::from_iter(
            table
                .try_iter()?
                .map(|row| Value::from_iter(row.try_iter().into_iter().flatten())),
        )
    } else {
        Value::from(Vec::<Value>::new())
    };
    let result = BTreeMap::from([
        (
            "response",
            Value::from(BTreeMap::from([("rows_affected", Value::from(rows))])),
        ),
        ("data", data),
        ("table", table),
    ]);
    scope
        .recorded
        .lock()
        .expect("render scope poisoned")
        .statements
        .insert(name, Value::from(result));
    Ok(Value::from(""))
}

/// `load_result('name')`: what `statement('name')` gave, `none` before.
fn load_result(state: &State, name: String) -> Result<Value, Error> {
    let scope = context::scope(state)?;
    warehouse(&scope);
    let recorded = scope.recorded.lock().expect("render scope poisoned");
    Ok(recorded.statements.get(&name).cloned().unwrap_or(Value::from(())))
}

/// `load_relation(relation)`: the relation if the lake has it.
fn load_relation(state: &State, relation: Value) -> Result<Value, Error> {
    let relation = relation_arg(&relation, "load_relation")?;
    get_relation(state, relation)
}

/// `adapter.get_relation(database, schema, identifier)` and
/// `adapter.get_columns_in_relation(relation)`; `None` for other methods.
pub(super) fn adapter_method(state: &State, method: &str, args: &[Value]) -> Option<Result<Value, Error>> {
    Some(match method {
        "get_relation" => (|| {
            let (positional, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
            let arg = |i: usize, key: &str| -> Result<Option<String>, Error> {
                match positional.get(i) {
                    Some(v) if v.is_none() => Ok(None),
                    Some(v) => Ok(Some(v.to_string())),
                    None => kwargs.get::<Option<String>>(key),
                }
            };
            let (_database, schema, identifier) = (arg(0, "database")?, arg(1, "schema")?, arg(2, "identifier")?);
            kwargs.assert_all_used()?;
            let (Some(schema), Some(identifier)) = (schema, identifier) else {
                return Err(failure(
                    Code::Jinja,
                    "`adapter.get_relation(database, schema, identifier)` needs a schema and an identifier".into(),
                    None,
                ));
            };
            get_relation(
                state,
                Relation {
                    schema,
                    identifier,
                    ephemeral: false,
                },
            )
        })(),
        "get_columns_in_relation" => (|| {
            let relation = relation_arg(
                args.first().unwrap_or(&Value::from(())),
                "adapter.get_columns_in_relation",
            )?;
            let scope = context::scope(state)?;
            let Some(lake) = warehouse(&scope) else {
                return Ok(Value::from(Vec::<Value>::new()));
            };
            let columns = lake
                .columns(&relation)
                .map_err(|e| lake_error("`adapter.get_columns_in_relation`", e))?
                .unwrap_or_default();
            Ok(Value::from_iter(columns.into_iter().map(column_value)))
        })(),
        _ => return None,
    })
}

fn get_relation(state: &State, relation: Relation) -> Result<Value, Error> {
    let scope = context::scope(state)?;
    let Some(lake) = warehouse(&scope) else {
        return Ok(Value::from(()));
    };
    let found = lake
        .columns(&relation)
        .map_err(|e| lake_error("`adapter.get_relation`", e))?;
    Ok(match found {
        Some(_) => relation_value(relation),
        None => Value::from(()),
    })
}

/// A relation passed to a macro: `ref()`, `source()`, `this`, or
/// `api.Relation.create(...)`-like maps with `schema` and `identifier`.
fn relation_arg(value: &Value, what: &str) -> Result<Relation, Error> {
    let attr = |key: &str| {
        value
            .get_attr(key)
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map(|v| v.to_string())
    };
    match (attr("schema"), attr("identifier").or_else(|| attr("name"))) {
        (Some(schema), Some(identifier)) => Ok(Relation {
            schema,
            identifier,
            ephemeral: attr("is_cte").is_some_and(|v| v == "true"),
        }),
        _ => Err(failure(
            Code::Jinja,
            format!("`{what}` takes a relation (`ref()`, `source()`, `this`); got `{value}`"),
            None,
        )),
    }
}

/// A column as dbt's `Column`: `name`, `column`, `quoted`, `data_type`,
/// `dtype`, and `is_string()`, `is_number()`, ...
fn column_value(column: Column) -> Value {
    Value::from_object(ColumnValue(column))
}

#[derive(Debug)]
struct ColumnValue(Column);

impl Object for ColumnValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let c = &self.0;
        Some(match key.as_str()? {
            "name" | "column" => Value::from(c.name.clone()),
            "quoted" => Value::from(format!("\"{}\"", c.name.replace('"', "\"\""))),
            "data_type" | "dtype" => Value::from(c.data_type.clone()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        let kind = type_kind(&self.0.data_type);
        Ok(Value::from(match method {
            "is_string" => kind == Kind::String,
            "is_number" | "is_numeric" => matches!(kind, Kind::Integer | Kind::Float | Kind::Decimal),
            "is_integer" => kind == Kind::Integer,
            "is_float" => kind == Kind::Float,
            _ => return Err(Error::from(minijinja::ErrorKind::UnknownMethod)),
        }))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Column {} ({})>", self.0.name, self.0.data_type)
    }
}

#[derive(PartialEq)]
enum Kind {
    String,
    Integer,
    Float,
    Decimal,
    Other,
}

fn type_kind(data_type: &str) -> Kind {
    let base = data_type
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    match base.as_str() {
        "VARCHAR" | "TEXT" | "STRING" | "CHAR" => Kind::String,
        "TINYINT" | "SMALLINT" | "INTEGER" | "INT" | "BIGINT" | "HUGEINT" | "UTINYINT" | "USMALLINT" | "UINTEGER"
        | "UBIGINT" => Kind::Integer,
        "FLOAT" | "REAL" | "DOUBLE" => Kind::Float,
        "DECIMAL" | "NUMERIC" => Kind::Decimal,
        _ => Kind::Other,
    }
}

/// An agate table, as `run_query` gives it in dbt: iterable over its
/// rows, with `columns` (by position or name, each with `values()`),
/// `column_names`, `column_types`, `rows` and `print_table()`.
#[derive(Debug)]
struct AgateTable(Arc<Table>);

impl Object for AgateTable {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return (i < self.0.rows.len()).then(|| row(&self.0, i));
        }
        Some(match key.as_str()? {
            "columns" => Value::from_object(AgateColumns(self.0.clone())),
            "rows" => Value::from_iter((0..self.0.rows.len()).map(|i| row(&self.0, i))),
            "column_names" => Value::from_iter(self.0.columns.iter().map(|c| Value::from(c.name.clone()))),
            "column_types" => Value::from_iter(self.0.columns.iter().map(|c| Value::from(c.data_type.clone()))),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.rows.len())
    }

    fn call_method(self: &Arc<Self>, state: &mut State<'_, '_>, method: &str, _args: &[Value]) -> Result<Value, Error> {
        match method {
            "print_table" => {
                let scope = context::scope(state)?;
                let names: Vec<&str> = self.0.columns.iter().map(|c| c.name.as_str()).collect();
                let mut lines = vec![format!("| {} |", names.join(" | "))];
                for values in &self.0.rows {
                    let cells: Vec<String> = values.iter().map(Value::to_string).collect();
                    lines.push(format!("| {} |", cells.join(" | ")));
                }
                scope
                    .recorded
                    .lock()
                    .expect("render scope poisoned")
                    .logs
                    .push(lines.join("\n"));
                Ok(Value::from(""))
            }
            _ => Err(Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    }
}

fn row(table: &Arc<Table>, i: usize) -> Value {
    Value::from_object(AgateRow {
        table: table.clone(),
        index: i,
    })
}

/// One row: by position, or by column name.
#[derive(Debug)]
struct AgateRow {
    table: Arc<Table>,
    index: usize,
}

impl AgateRow {
    fn values(&self) -> &[Value] {
        &self.table.rows[self.index]
    }
}

impl Object for AgateRow {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return self.values().get(i).cloned();
        }
        let name = key.as_str()?;
        let i = self.table.columns.iter().position(|c| c.name == name)?;
        self.values().get(i).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.values().len())
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let names = || self.table.columns.iter().map(|c| Value::from(c.name.clone()));
        match method {
            "keys" => Ok(Value::from_iter(names())),
            "values" => Ok(Value::from_iter(self.values().iter().cloned())),
            "items" => Ok(Value::from_iter(
                names()
                    .zip(self.values().iter().cloned())
                    .map(|(k, v)| Value::from(vec![k, v])),
            )),
            "get" => {
                let key = args.first().cloned().unwrap_or_default();
                Ok(self
                    .get_value(&key)
                    .or_else(|| args.get(1).cloned())
                    .unwrap_or(Value::from(())))
            }
            _ => Err(Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    }
}

/// `table.columns`: by position or by name.
#[derive(Debug)]
struct AgateColumns(Arc<Table>);

impl Object for AgateColumns {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let index = match key.as_usize() {
            Some(i) => i,
            None => {
                let name = key.as_str()?;
                self.0.columns.iter().position(|c| c.name == name)?
            }
        };
        (index < self.0.columns.len()).then(|| {
            Value::from_object(AgateColumn {
                table: self.0.clone(),
                index,
            })
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.columns.len())
    }
}

/// One column of a table: `name`, `data_type`, and `values()`.
#[derive(Debug)]
struct AgateColumn {
    table: Arc<Table>,
    index: usize,
}

impl AgateColumn {
    fn values(&self) -> impl Iterator<Item = Value> + '_ {
        self.table.rows.iter().map(|r| r[self.index].clone())
    }
}

impl Object for AgateColumn {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return self.table.rows.get(i).map(|r| r[self.index].clone());
        }
        let column = &self.table.columns[self.index];
        Some(match key.as_str()? {
            "name" => Value::from(column.name.clone()),
            "data_type" => Value::from(column.data_type.clone()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.table.rows.len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "values" => Ok(Value::from_iter(self.values())),
            "values_without_nulls" => Ok(Value::from_iter(self.values().filter(|v| !v.is_none()))),
            "values_distinct" => {
                let mut seen: Vec<Value> = Vec::new();
                for v in self.values() {
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                Ok(Value::from(seen))
            }
            _ => Err(Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    }
}
