//! DuckDB's identifiers, for projects moved from dbt-duckdb: an unquoted
//! name keeps the case it is written in (`select id as customerId` makes a
//! column `customerId`), and matches a column whatever its case
//! (`productline` reads a CSV column `productLine`).
//!
//! A DuckDB session plans with DataFusion's identifier normalization off,
//! which keeps the case; a column then matches only in its own case. When
//! planning fails on a column that one column matches in another case,
//! the unquoted references to it are made that column (in the parsed
//! statement, not the SQL text) and the statement is planned again; a
//! table or CTE not found that one matches in another case likewise. Two
//! columns that differ only in case stay an error, as in DuckDB.

use std::ops::ControlFlow;

use datafusion::common::{Column, DataFusionError, Result, SchemaError};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectNamePart, visit_expressions_mut};

/// Whether `state` plans SQL as DuckDB does (see `Dialect::DuckDb`).
pub fn is_duckdb(state: &SessionState) -> bool {
    state
        .config()
        .options()
        .sql_parser
        .dialect
        .to_string()
        .eq_ignore_ascii_case("duckdb")
}

/// Parses and plans `sql` in `state`, matching columns as its dialect does.
pub async fn plan_sql(state: &SessionState, sql: &str) -> Result<LogicalPlan> {
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect)?;
    plan_statement(state, statement).await
}

/// Plans `statement` in `state`; in a DuckDB session, a column written in
/// another case than the one column it matches is that column.
pub async fn plan_statement(state: &SessionState, mut statement: DFStatement) -> Result<LogicalPlan> {
    if !is_duckdb(state) {
        return state.statement_to_plan(statement).await;
    }
    // Each round fixes at least one name; a statement has few.
    for _ in 0..256 {
        let err = match state.statement_to_plan(statement.clone()).await {
            Ok(plan) => return Ok(plan),
            Err(err) => err,
        };
        // Where the reference is, when the planner says: only it is
        // renamed, not a name of the same spelling in another scope.
        let at = err
            .diagnostic()
            .and_then(|d| d.span)
            .map(|span| (span.start.line, span.start.column));
        let renamed = match case_insensitive_match(&err) {
            Some((written, column)) => {
                rename(&mut statement, &written, &column, at)
                    || at.is_some() && rename(&mut statement, &written, &column, None)
            }
            None => match table_match(state, &statement, &err) {
                Some((written, table)) => rename_table(&mut statement, &written, &table),
                None => false,
            },
        };
        if !renamed {
            return Err(err);
        }
    }
    state.statement_to_plan(statement).await
}

/// The column an unknown column matches in another case, if exactly one
/// does: `(as written, the column)`.
fn case_insensitive_match(err: &DataFusionError) -> Option<(Column, Column)> {
    let DataFusionError::SchemaError(schema_error, _) = err.find_root() else {
        return None;
    };
    let SchemaError::FieldNotFound { field, valid_fields } = schema_error.as_ref() else {
        return None;
    };
    let same_relation = |valid: &Column| match (&field.relation, &valid.relation) {
        (None, _) => true,
        (Some(written), Some(valid)) => written.table().eq_ignore_ascii_case(valid.table()),
        (Some(_), None) => false,
    };
    let mut matches = valid_fields
        .iter()
        .filter(|valid| valid.name.eq_ignore_ascii_case(&field.name) && same_relation(valid));
    let found = matches.next()?;
    // Two columns that differ only in case: ambiguous, as in DuckDB.
    if matches.any(|other| other.name != found.name) || found.name == field.name && found.relation == field.relation {
        return None;
    }
    Some(((**field).clone(), found.clone()))
}

/// The table (or CTE) a table not found matches in another case, if
/// exactly one does: `(as written, its name)`, each as schema and name
/// (the schema `None` for a CTE or an unqualified name).
fn table_match(state: &SessionState, statement: &DFStatement, err: &DataFusionError) -> Option<(Table, Table)> {
    let DataFusionError::Plan(message) = err.find_root() else {
        return None;
    };
    let missing = message.strip_prefix("table '")?.strip_suffix("' not found")?;
    let parts: Vec<&str> = missing.split('.').collect();
    let name = (*parts.last()?).to_owned();
    let schema = (parts.len() >= 2).then(|| parts[parts.len() - 2].to_owned());
    let DFStatement::Statement(inner) = statement else {
        return None;
    };
    // The statement's CTEs first: a name of it in another case is it.
    let mut ctes = Vec::new();
    let _ = datafusion::sql::sqlparser::ast::visit_statements(inner.as_ref(), |s| {
        collect_ctes(s, &mut ctes);
        ControlFlow::<()>::Continue(())
    });
    let written_unqualified = (None, name.clone());
    let ctes: Vec<&String> = ctes
        .iter()
        .filter(|c| c.eq_ignore_ascii_case(&name) && **c != name)
        .collect();
    if let [cte] = ctes.as_slice() {
        return Some((written_unqualified, (None, (*cte).clone())));
    }
    // Else the tables of the catalog's schemas.
    let catalog = state
        .catalog_list()
        .catalog(&state.config().options().catalog.default_catalog)?;
    let mut found = Vec::new();
    for schema_name in catalog.schema_names() {
        if schema.as_ref().is_some_and(|s| !s.eq_ignore_ascii_case(&schema_name)) {
            continue;
        }
        let Some(provider) = catalog.schema(&schema_name) else {
            continue;
        };
        for table in provider.table_names() {
            if table.eq_ignore_ascii_case(&name) {
                found.push((Some(schema_name.clone()), table));
            }
        }
    }
    match found.as_slice() {
        [table] if *table != (schema.clone(), name.clone()) => Some(((schema, name), table.clone())),
        _ => None,
    }
}

/// A table as `(schema, name)`.
type Table = (Option<String>, String);

fn collect_ctes(statement: &datafusion::sql::sqlparser::ast::Statement, ctes: &mut Vec<String>) {
    use datafusion::sql::sqlparser::ast::{Query, Statement, Visit, Visitor};
    struct Ctes<'a>(&'a mut Vec<String>);
    impl Visitor for Ctes<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.0
                    .extend(with.cte_tables.iter().map(|c| c.alias.name.value.clone()));
            }
            ControlFlow::Continue(())
        }
    }
    if let Statement::Query(query) = statement {
        let _ = query.visit(&mut Ctes(ctes));
    }
}

/// Makes the unquoted references to the table `written` name `table`;
/// whether any changed.
fn rename_table(statement: &mut DFStatement, written: &Table, table: &Table) -> bool {
    let DFStatement::Statement(statement) = statement else {
        return false;
    };
    let mut changed = false;
    let _ = datafusion::sql::sqlparser::ast::visit_relations_mut(statement.as_mut(), |name| {
        let n = name.0.len();
        let Some(last) = name.0[n - 1].as_ident() else {
            return ControlFlow::<()>::Continue(());
        };
        if last.quote_style.is_some() || last.value != written.1 {
            return ControlFlow::Continue(());
        }
        if let (Some(schema), Some(written_schema)) = (&table.0, &written.0)
            && n >= 2
            && let Some(ident) = name.0[n - 2].as_ident()
            && ident.value.eq_ignore_ascii_case(written_schema)
        {
            name.0[n - 2] = ObjectNamePart::Identifier(Ident::with_quote('"', schema.clone()));
        }
        name.0[n - 1] = ObjectNamePart::Identifier(Ident::with_quote('"', table.1.clone()));
        changed = true;
        ControlFlow::Continue(())
    });
    changed
}

/// Makes the unquoted references to `written` refer to `column`; whether
/// any changed.
fn rename(statement: &mut DFStatement, written: &Column, column: &Column, at: Option<(u64, u64)>) -> bool {
    let DFStatement::Statement(statement) = statement else {
        return false;
    };
    let here =
        |ident: &Ident| at.is_none_or(|(line, col)| ident.span.start.line == line && ident.span.start.column == col);
    let mut changed = false;
    let fix = |ident: &mut Ident, to: &str, changed: &mut bool| {
        if ident.quote_style.is_none() && ident.value != to && ident.value.eq_ignore_ascii_case(to) {
            ident.value = to.to_owned();
            ident.quote_style = Some('"');
            *changed = true;
        }
    };
    let _ = visit_expressions_mut(statement.as_mut(), |expr| {
        match expr {
            Expr::Identifier(ident) if written.relation.is_none() && ident.value == written.name && here(ident) => {
                fix(ident, &column.name, &mut changed);
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let n = parts.len();
                let qualifier_matches = match &written.relation {
                    Some(relation) => parts[n - 2].value == relation.table(),
                    None => false,
                };
                if qualifier_matches && parts[n - 1].value == written.name && (here(&parts[0]) || here(&parts[n - 1])) {
                    if let Some(relation) = &column.relation {
                        fix(&mut parts[n - 2], relation.table(), &mut changed);
                    }
                    fix(&mut parts[n - 1], &column.name, &mut changed);
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::plan::SessionOptions;
    use crate::plan::new_session;
    use crate::project::Dialect;

    async fn duckdb_session() -> SessionContext {
        let options = SessionOptions {
            dialect: Dialect::DuckDb,
            ..Default::default()
        };
        let ctx = new_session(&options).unwrap();
        ctx.sql(
            "create view products as select * from (values (1, 'Classic Cars', 10), (2, 'Ships', 20)) \
             v(\"productCode\", \"productLine\", \"quantityInStock\")",
        )
        .await
        .unwrap();
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Result<(Vec<String>, Vec<String>)> {
        let plan = plan_sql(&ctx.state(), sql).await?;
        let df = ctx.execute_logical_plan(plan).await?;
        let columns = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let batches = df.collect().await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        Ok((columns, text.lines().map(str::to_owned).collect()))
    }

    #[tokio::test]
    async fn unquoted_names_keep_their_case_and_match_columns_of_any_case() {
        let ctx = duckdb_session().await;
        let (columns, _) = rows(
            &ctx,
            "select productline, p.PRODUCTCODE as Code, sum(quantityinstock) as inStock \
             from products p where ProductLine <> 'x' group by productline, p.productcode order by Code",
        )
        .await
        .unwrap();
        assert_eq!(columns, vec!["productLine", "Code", "inStock"]);
        // Quoted names are exact, as in DuckDB.
        let err = rows(&ctx, "select \"productline\" from products").await.unwrap_err();
        assert!(err.to_string().contains("productline"), "{err}");
    }

    #[tokio::test]
    async fn a_name_is_matched_in_its_own_scope() {
        let ctx = duckdb_session().await;
        ctx.sql("create view other as select * from (values ('Ships')) v(productline)")
            .await
            .unwrap();
        let (columns, lines) = rows(
            &ctx,
            "select productline from products union all select productline from other order by 1",
        )
        .await
        .unwrap();
        assert_eq!(columns, vec!["productLine"]);
        assert_eq!(lines.len(), 7, "{lines:?}");
    }

    #[tokio::test]
    async fn tables_and_ctes_match_in_any_case() {
        let ctx = duckdb_session().await;
        let (columns, lines) = rows(
            &ctx,
            "with Lines as (select productLine, count(*) as n from PRODUCTS group by productline) \
             select * from lines order by productLine",
        )
        .await
        .unwrap();
        assert_eq!(columns, vec!["productLine", "n"]);
        assert!(lines[3].contains("Classic Cars"), "{lines:?}");
    }

    #[tokio::test]
    async fn two_columns_that_differ_only_in_case_stay_ambiguous() {
        let ctx = duckdb_session().await;
        let err = rows(&ctx, "select ab from (select 1 as \"Ab\", 2 as \"aB\") t")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("No field named ab"), "{err}");
    }
}
