//! Hooks: the SQL of a model's `pre_hook`/`post_hook` and of the
//! project's `on-run-start`/`on-run-end`, run through DataFusion against
//! the lake. Hooks are where dbt users write DML, and each statement is one
//! atomic Delta commit on a lake table:
//!
//! - `insert into t [(columns)] select ...` appends rows, cast to the
//!   table's columns by name;
//! - `delete from t [where ...]` and `update t set c = ... [where ...]` use
//!   Delta's delete and update;
//! - `create [or replace] table t as select ...` writes a table;
//! - a query runs, and its rows are dropped.
//!
//! Anything else (`drop`, `grant`, `set`, ...) is an error naming the
//! hook. A table is `schema.table` (or `table`, in the target's schema), a
//! relation of the lake as models are.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, FromTable, ObjectName, Query, Statement, TableFactor, TableObject, TableWithJoins,
};
use datafusion::sql::sqlparser::dialect::dialect_from_str;

use super::Build;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::lake::{self, Relation, TableWrite};

/// Where a hook comes from, for its errors.
pub struct HookSite<'a> {
    /// `post_hook of orders`, `on-run-end`...
    pub what: String,
    pub span: Option<Span>,
    pub default_schema: &'a str,
}

/// Runs each hook's statements in order; the first that fails stops them.
pub async fn run_hooks(
    build: &Build,
    session: &SessionContext,
    hooks: &[String],
    site: &HookSite<'_>,
    journal: Option<&Journal>,
) -> Result<(), Diagnostic> {
    for sql in hooks {
        run_hook(build, session, sql, site, journal).await?;
    }
    Ok(())
}

async fn run_hook(
    build: &Build,
    session: &SessionContext,
    sql: &str,
    site: &HookSite<'_>,
    journal: Option<&Journal>,
) -> Result<(), Diagnostic> {
    run_statements(build, session, sql, site.default_schema, journal)
        .await
        .map(|_| ())
        .map_err(|message| {
            Diagnostic::error(Code::Hook, format!("{}: {message}", site.what))
                .with_span(site.span.clone())
                .with_note(format!("the hook's SQL:\n{}", sql.trim()))
        })
}

/// The rows of a query: its columns and its batches.
pub type Rows = (datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>);

/// Runs the statements of `sql` as hooks run them; the rows of the last
/// query among them, if any (`run_query` and `statement` give them to
/// templates).
pub async fn run_statements(
    build: &Build,
    session: &SessionContext,
    sql: &str,
    default_schema: &str,
    journal: Option<&Journal>,
) -> Result<Option<Rows>, String> {
    let dialect_name = session.state().config().options().sql_parser.dialect.to_string();
    // Parsed before anything awaits: a dialect is not `Send`.
    let statements = {
        let dialect = dialect_from_str(&dialect_name).ok_or_else(|| format!("unknown SQL dialect `{dialect_name}`"))?;
        DFParser::parse_sql_with_dialect(sql, dialect.as_ref()).map_err(|e| e.to_string())?
    };
    // The project's relations the statements name are made readable
    // first, as a model's parents are, and forgotten after: registered for
    // the rest of the build, a view would keep reading the tables as they
    // were, and a table the version the statement saw. One that cannot be
    // made readable is left for the statement to fail on, if it reads it
    // (a name may be a CTE's, or the table a statement creates).
    let mut named = Vec::new();
    for statement in &statements {
        if let DFStatement::Statement(statement) = statement {
            let _ = datafusion::sql::sqlparser::ast::visit_relations(statement.as_ref(), |name| {
                if let Ok(relation) = relation_of(name, default_schema) {
                    named.push(relation);
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
    }
    // Only what this statement made readable is forgotten: a relation
    // another node registered meanwhile (its parents, its `{{ this }}`)
    // stays for it, and one registered before stays as it was.
    let mut made_readable = Vec::new();
    for relation in named {
        let found = build.dag.graph.node_indices().find(|&i| {
            let node = build.dag.node(i);
            !node.relation.ephemeral
                && node.resource_type != crate::graph::ResourceType::Test
                && node.relation.schema == relation.schema
                && node.relation.identifier == relation.identifier
        });
        if let Some(index) = found {
            if !build.registry.is_registered(index)
                && build.registry.ensure(&build.dag, &build.project, index).await.is_ok()
            {
                made_readable.push(index);
            }
        }
    }
    let result = run_parsed(build, session, statements, default_schema, journal).await;
    for index in made_readable {
        build.registry.unregister(index, &build.dag.node(index).relation);
    }
    result
}

async fn run_parsed(
    build: &Build,
    session: &SessionContext,
    statements: std::collections::VecDeque<DFStatement>,
    default_schema: &str,
    journal: Option<&Journal>,
) -> Result<Option<Rows>, String> {
    let mut rows = None;
    for statement in statements {
        let DFStatement::Statement(statement) = statement else {
            return Err("etl runs `insert`, `delete`, `update`, `create table ... as` and queries in hooks".into());
        };
        if let Some(out) = execute(build, session, *statement, default_schema, journal).await? {
            rows = Some(out);
        }
    }
    Ok(rows)
}

async fn execute(
    build: &Build,
    session: &SessionContext,
    statement: Statement,
    default_schema: &str,
    journal: Option<&Journal>,
) -> Result<Option<Rows>, String> {
    let ctx = &build.registry.ctx;
    let before_write = async |relation: &Relation| {
        if let Some(journal) = journal {
            journal
                .before_write(ctx, relation, &build.registry.location(relation))
                .await;
        }
    };
    let committed = |relation: &Relation| {
        if let Some(journal) = journal {
            journal.committed(relation);
        }
    };
    // A write of `plan` to the table, in one commit, noted in the journal.
    let write = async |relation: &Relation, plan, how| -> Result<(), String> {
        before_write(relation).await;
        let url = build.registry.location(relation);
        lake::write_table(ctx, &url, plan, how, &Default::default(), lake::Commit::default())
            .await
            .map_err(|e| lake::describe_error(&e))?;
        committed(relation);
        changed(build, relation);
        Ok(())
    };
    match statement {
        Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return Err("`insert into` a table function is not supported".into());
            };
            let relation = relation_of(name, default_schema)?;
            let url = build.registry.location(&relation);
            let Some(table_schema) = table_schema(ctx, &url).await? else {
                return Err(format!("`{}` has no table in the lake to insert into", relation.name()));
            };
            let query = insert.source.ok_or("`insert` without a query is not supported")?;
            let plan = plan_query(session, &query).await?;
            let columns: Vec<String> = if insert.columns.is_empty() {
                table_schema.fields().iter().map(|f| f.name().clone()).collect()
            } else {
                insert.columns.iter().map(|c| last_part(c)).collect::<Result<_, _>>()?
            };
            let output = plan.schema().clone();
            if output.fields().len() != columns.len() {
                return Err(format!(
                    "the query gives {} columns for the {} columns of `{}`",
                    output.fields().len(),
                    columns.len(),
                    relation.name()
                ));
            }
            // Each value cast to its column's type, by position as SQL
            // inserts them; the columns left out are null.
            let mut projection = Vec::new();
            for field in table_schema.fields() {
                let expr = match columns.iter().position(|c| c == field.name()) {
                    Some(i) => cast(
                        Expr::Column(Column::from(output.qualified_field(i))),
                        field.data_type().clone(),
                    ),
                    None => cast(
                        datafusion::prelude::lit(datafusion::common::ScalarValue::Null),
                        field.data_type().clone(),
                    ),
                };
                projection.push(expr.alias(field.name()));
            }
            for column in &columns {
                if table_schema.field_with_name(column).is_err() {
                    return Err(format!("`{}` has no column `{column}`", relation.name()));
                }
            }
            let plan = LogicalPlanBuilder::from(plan)
                .project(projection)
                .and_then(LogicalPlanBuilder::build)
                .map_err(|e| e.to_string())?;
            write(&relation, plan, TableWrite::Append { merge_schema: false }).await?;
        }
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            if delete.using.is_some() || tables.len() != 1 || !tables[0].joins.is_empty() {
                return Err("`delete` from one table, without `using` or joins, is what etl runs".into());
            }
            let relation = relation_of(table_name(&tables[0])?, default_schema)?;
            let url = build.registry.location(&relation);
            exists(ctx, &url, &relation).await?;
            before_write(&relation).await;
            lake::delete_where(ctx, &url, delete.selection.map(|e| e.to_string()))
                .await
                .map_err(|e| lake::describe_error(&e))?;
            committed(&relation);
            changed(build, &relation);
        }
        Statement::Update(update) => {
            if update.from.is_some() || !update.table.joins.is_empty() {
                return Err("`update` of one table, without `from` or joins, is what etl runs".into());
            }
            let relation = relation_of(table_name(&update.table)?, default_schema)?;
            let url = build.registry.location(&relation);
            exists(ctx, &url, &relation).await?;
            let mut assignments = Vec::new();
            for assignment in update.assignments {
                let AssignmentTarget::ColumnName(column) = &assignment.target else {
                    return Err("`update` of a tuple of columns is not supported".into());
                };
                assignments.push((last_part(column)?, assignment.value.to_string()));
            }
            before_write(&relation).await;
            lake::update_where(ctx, &url, assignments, update.selection.map(|e| e.to_string()))
                .await
                .map_err(|e| lake::describe_error(&e))?;
            committed(&relation);
            changed(build, &relation);
        }
        Statement::CreateTable(create) => {
            let query = create
                .query
                .ok_or("`create table` without `as select` is not supported")?;
            let relation = relation_of(&create.name, default_schema)?;
            let url = build.registry.location(&relation);
            if table_schema(ctx, &url).await?.is_some() && !create.or_replace {
                if create.if_not_exists {
                    return Ok(None);
                }
                return Err(format!(
                    "`{}` already exists: write `create or replace table`",
                    relation.name()
                ));
            }
            let plan = plan_query(session, &query).await?;
            let how = TableWrite::Overwrite {
                partition_by: Vec::new(),
            };
            write(&relation, plan, how).await?;
        }
        Statement::Query(query) => {
            let plan = plan_query(session, &query).await?;
            let schema = std::sync::Arc::new(plan.schema().as_arrow().clone());
            let batches = session
                .execute_logical_plan(plan)
                .await
                .map_err(|e| e.to_string())?
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Some((schema, batches)));
        }
        other => {
            let kind = other
                .to_string()
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_uppercase();
            return Err(format!(
                "`{kind}` is not run by etl in hooks: it runs `insert`, `delete`, `update`, `create table ... as` and queries"
            ));
        }
    }
    Ok(None)
}

/// The tables a node with hooks changed, each with the version it had
/// before the node's first write: a node whose hook fails puts them back,
/// as dbt's transaction around a model and its hooks rolls back.
#[derive(Debug, Default)]
pub struct Journal {
    entries: std::sync::Mutex<Vec<Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    relation: Relation,
    url: url::Url,
    /// Its version before the node wrote it; `None`: it had no table.
    before: Option<u64>,
    /// Whether `before` is known: a log that could not be read leaves the
    /// table as the node makes it.
    known: bool,
    /// The node's commits to it since.
    commits: u64,
}

impl Journal {
    /// Notes the table's version before the node first writes it.
    pub async fn before_write(&self, ctx: &SessionContext, relation: &Relation, url: &url::Url) {
        if self.find(relation).is_some() {
            return;
        }
        // "No table" and "the log cannot be read" differ: a table that
        // cannot be read is never removed.
        let (before, known) = match lake::open_table(ctx, url).await {
            Ok(table) => (table.and_then(|t| t.version()), true),
            Err(_) => (None, false),
        };
        let mut entries = self.entries.lock().expect("journal poisoned");
        if !entries.iter().any(|e| &e.relation == relation) {
            entries.push(Entry {
                relation: relation.clone(),
                url: url.clone(),
                before,
                known,
                commits: 0,
            });
        }
    }

    /// Counts one commit of the node to the table.
    pub fn committed(&self, relation: &Relation) {
        let mut entries = self.entries.lock().expect("journal poisoned");
        if let Some(entry) = entries.iter_mut().find(|e| &e.relation == relation) {
            entry.commits += 1;
        }
    }

    /// Notes that the node's commits took the table to `version`.
    pub fn committed_up_to(&self, relation: &Relation, version: u64) {
        let mut entries = self.entries.lock().expect("journal poisoned");
        if let Some(entry) = entries.iter_mut().find(|e| &e.relation == relation) {
            entry.commits = match entry.before {
                Some(before) => version.saturating_sub(before),
                None => version + 1,
            };
        }
    }

    fn find(&self, relation: &Relation) -> Option<Entry> {
        let entries = self.entries.lock().expect("journal poisoned");
        entries.iter().find(|e| &e.relation == relation).cloned()
    }

    /// Puts back every table the node changed, newest first, when only
    /// the node wrote it since; what was done, for the node's error.
    pub async fn roll_back(&self, build: &Build) -> Vec<String> {
        let ctx = &build.registry.ctx;
        let entries = self.entries.lock().expect("journal poisoned").clone();
        let mut notes = Vec::new();
        for entry in entries.iter().rev().filter(|e| e.commits > 0) {
            let name = entry.relation.name();
            if !entry.known {
                notes.push(format!(
                    "`{name}` is left as it is: its version before this node could not be read"
                ));
                continue;
            }
            let now = lake::current_version(ctx, &entry.url).await;
            let ours = match entry.before {
                Some(before) => now == Some(before + entry.commits),
                None => now == Some(entry.commits - 1),
            };
            if !ours {
                notes.push(format!(
                    "`{name}` is left as it is: its version is not the one this node's writes left"
                ));
                continue;
            }
            let undone = match entry.before {
                Some(before) => lake::restore_table(ctx, &entry.url, before)
                    .await
                    .map(|()| format!("`{name}` is put back to its version {before}"))
                    .map_err(|e| lake::describe_error(&e)),
                None => match lake::remove_created_table(ctx, &entry.url).await {
                    Ok(true) => Ok(format!("`{name}`, which this node created, is removed")),
                    Ok(false) => Ok(format!(
                        "`{name}`, which this node created, is left: its folder holds files of others"
                    )),
                    Err(e) => Err(e.to_string()),
                },
            };
            changed(build, &entry.relation);
            notes.push(undone.unwrap_or_else(|e| format!("`{name}` could not be put back: {e}")));
        }
        notes
    }
}

async fn plan_query(session: &SessionContext, query: &Query) -> Result<datafusion::logical_expr::LogicalPlan, String> {
    let state = session.state();
    let statement = DFStatement::Statement(Box::new(Statement::Query(Box::new(query.clone()))));
    crate::plan::plan_statement(&state, statement)
        .await
        .map_err(|e| e.to_string())
}

/// The table's columns, or `None` when there is no table.
async fn table_schema(
    ctx: &SessionContext,
    url: &url::Url,
) -> Result<Option<datafusion::arrow::datatypes::SchemaRef>, String> {
    // One load of the table's log, not one to see it exists and another
    // to read its schema.
    match lake::delta_provider(ctx, url).await {
        Ok(provider) => Ok(Some(provider.schema())),
        Err(lake::LakeError::NoTable(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

async fn exists(ctx: &SessionContext, url: &url::Url, relation: &Relation) -> Result<(), String> {
    match table_schema(ctx, url).await? {
        Some(_) => Ok(()),
        None => Err(format!("`{}` has no table in the lake", relation.name())),
    }
}

/// A table written by a hook is read again by what reads it next.
fn changed(build: &Build, relation: &Relation) {
    for index in build.dag.graph.node_indices() {
        let node = build.dag.node(index);
        if node.relation.schema == relation.schema && node.relation.identifier == relation.identifier {
            build.registry.unregister(index, &node.relation);
            build.versions.lock().expect("versions poisoned").remove(&index);
        }
    }
}

fn table_name(table: &TableWithJoins) -> Result<&ObjectName, String> {
    match &table.relation {
        TableFactor::Table { name, .. } => Ok(name),
        other => Err(format!("`{other}` is not a table")),
    }
}

fn parts(name: &ObjectName) -> Result<Vec<String>, String> {
    name.0
        .iter()
        .map(|part| {
            part.as_ident()
                .map(|i| i.value.clone())
                .ok_or_else(|| format!("`{name}` is not a table name"))
        })
        .collect()
}

fn last_part(name: &ObjectName) -> Result<String, String> {
    parts(name)?.pop().ok_or_else(|| format!("`{name}` is empty"))
}

/// `schema.table`, `table` (in the target's schema), or
/// `database.schema.table` (a lake has one database).
fn relation_of(name: &ObjectName, default_schema: &str) -> Result<Relation, String> {
    let parts = parts(name)?;
    let (schema, identifier) = match parts.as_slice() {
        [table] => (default_schema.to_owned(), table.clone()),
        [schema, table] | [_, schema, table] => (schema.clone(), table.clone()),
        _ => return Err(format!("`{name}` is not a table name")),
    };
    Ok(Relation {
        schema,
        identifier,
        ephemeral: false,
    })
}
