//! The DataFusion side: the one session of a build (built in one place, so
//! that a Ballista-backed session can replace it), the relations registered
//! in it, and SQL turned into logical plans with errors mapped back to the
//! template line.

mod by_key;
mod compile;
mod contract;
mod dialect;
mod distinct;
mod duckdb_functions;
mod identifiers;
pub mod lineage;
pub mod live;
mod normal;
mod options;
mod registry;
mod rewrite;
mod row_counts;
mod session;
mod shared;
mod sources;
mod spill;
mod windows;

pub use by_key::{key_of, same_every_run};
pub use compile::{CompiledSql, compile, compile_but, compile_with};
pub use contract::check_contract;
pub use identifiers::{plan_sql, plan_statement};
pub use normal::{Planned, plan_fingerprint};
pub use registry::Registry;
pub use rewrite::{Window, filter_scans, replace_scans, semi_join_scans, window_predicate, without_rows};
pub use session::{
    SessionOptions, etl_rules, joins_pinned, new_session, plans_hash_joins, room_to_grow, session_of_node,
    session_with_header, spill_joins, with_one_partition, with_room_to_grow, with_sort_merge_joins, without_etl_rules,
};
pub use sources::{
    known_row_counts, list_source_files, register_csv_file, seed_select, shown_file, source_files_provider,
    source_root, sql_type,
};
pub use spill::{SPILL_LIMIT_ERROR, SpillRoom, Watching, bytes_text};

use datafusion::common::Location;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use crate::diagnostic::{Code, Diagnostic, Span};

/// Plans a model's compiled SQL. Only queries are allowed: a model is a
/// `select`, never DDL or DML.
pub async fn plan_model(ctx: &SessionContext, compiled: &CompiledSql) -> Result<LogicalPlan, Diagnostic> {
    plan_model_in(&ctx.state(), compiled).await
}

/// `plan_model` in a state already taken from its session (taking one
/// copies every function's name: planning many models, take it once).
pub async fn plan_model_in(
    state: &datafusion::execution::SessionState,
    compiled: &CompiledSql,
) -> Result<LogicalPlan, Diagnostic> {
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let planned = plan_sql(state, &compiled.sql)
        .await
        .and_then(|plan| options.verify_plan(&plan).map(|()| plan));
    planned.map_err(|err| sql_diagnostic(&err, compiled))
}

/// A DataFusion error as a diagnostic pointing at the template.
pub fn sql_diagnostic(err: &DataFusionError, compiled: &CompiledSql) -> Diagnostic {
    let message = clean_message(err);
    let position = err
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| (s.start, s.end))
        .or_else(|| parser_location(&message).map(|l| (l, l)))
        .or_else(|| quoted_name(&message).and_then(|name| find_word(&compiled.sql, &name)));
    let span = position.and_then(|(start, end)| compiled.template_span(start, end));
    // The parser's own error, by its type: its text without DataFusion's
    // wrapping (`SQL error: ParserError("…")`).
    let (code, message) = match err.find_root() {
        DataFusionError::SQL(parser, _) => {
            use datafusion::sql::sqlparser::parser::ParserError;
            let text = match parser.as_ref() {
                ParserError::ParserError(text) | ParserError::TokenizerError(text) => text.clone(),
                other => other.to_string(),
            };
            (Code::SqlSyntax, text)
        }
        _ => (Code::Sql, message),
    };
    Diagnostic::error(code, message).with_span(span.or_else(|| Some(Span::file(&compiled.path))))
}

fn clean_message(err: &DataFusionError) -> String {
    let text = err.find_root().to_string();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    text
}

/// sqlparser reports positions as `at Line: 3, Column: 7`.
fn parser_location(message: &str) -> Option<Location> {
    let i = message.find("Line: ")?;
    let rest = &message[i + 6..];
    let line: u64 = rest.split(',').next()?.trim().parse().ok()?;
    let j = rest.find("Column: ")?;
    let col: u64 = rest[j + 8..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some(Location { line, column: col })
}

/// The name a "not found" message is about: `No field named foo`.
fn quoted_name(message: &str) -> Option<String> {
    if let Some(i) = message.find("No field named ") {
        let rest = &message[i + 15..];
        let name: String = rest.chars().take_while(|c| !matches!(c, '.' | ' ' | ',')).collect();
        let name = name.trim_matches('"').to_owned();
        return Some(name.rsplit('.').next().unwrap_or(&name).trim_matches('"').to_owned());
    }
    if let Some(i) = message.find("table '") {
        let rest = &message[i + 7..];
        let name = rest.split('\'').next()?;
        return Some(name.rsplit('.').next()?.to_owned());
    }
    None
}

fn find_word(sql: &str, word: &str) -> Option<(Location, Location)> {
    if word.is_empty() {
        return None;
    }
    let lower = sql.to_lowercase();
    let needle = word.to_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle).map(|i| i + from) {
        let before = lower[..i].chars().next_back();
        let after = lower[i + needle.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary(before) && boundary(after) {
            let line = lower[..i].matches('\n').count() as u64 + 1;
            let line_start = lower[..i].rfind('\n').map_or(0, |p| p + 1);
            let col = sql[line_start..i].chars().count() as u64 + 1;
            return Some((
                Location { line, column: col },
                Location {
                    line,
                    column: col + word.chars().count() as u64,
                },
            ));
        }
        from = i + needle.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_location_reads_sqlparser_positions() {
        let l =
            parser_location("SQL error: ParserError(\"Expected: end of statement, found: frm at Line: 3, Column: 7\")")
                .unwrap();
        assert_eq!((l.line, l.column), (3, 7));
    }

    #[test]
    fn find_word_respects_identifier_boundaries() {
        let (start, _) = find_word("select amount_x,\n  amount from t", "amount").unwrap();
        assert_eq!((start.line, start.column), (2, 3));
    }
}
