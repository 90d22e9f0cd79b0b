//! What a template sees of the lake while its node runs (see
//! `introspect`): a trait, so that rendering does not depend on how the
//! lake is read.

use std::fmt;

use minijinja::Value;

use crate::lake::Relation;

/// The lake, as a node running sees it.
pub trait Warehouse: Send + Sync + fmt::Debug {
    /// Runs `sql`: a query gives its rows; `insert`, `delete`, `update`
    /// and `create table ... as` run as hooks run them and give none.
    fn query(&self, sql: &str) -> Result<Table, String>;
    /// The columns of a relation of the lake, `None` when it has none.
    fn columns(&self, relation: &Relation) -> Result<Option<Vec<Column>>, String>;
    /// dbt's `graph`: `nodes` and `sources` as the manifest has them.
    fn graph(&self) -> Value;
}

/// A column as dbt's adapters describe it: its name and its SQL type.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data_type: String,
}

/// The rows a query gave.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}
