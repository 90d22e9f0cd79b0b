//! Compiled SQL: a model's rendered SQL with the ephemeral models it reads
//! inlined as CTEs, as dbt does (`with __dbt__cte__name as (...)`), and the
//! bookkeeping to map a position in it back to the right template.

use std::path::PathBuf;

use datafusion::common::Location;
use petgraph::graph::NodeIndex;

use crate::diagnostic::Span;
use crate::graph::Dag;
use crate::render::{LineMap, RenderedModel};

#[derive(Debug, Clone)]
pub struct CompiledSql {
    pub path: PathBuf,
    pub sql: String,
    /// `(first compiled line, the rendered node those lines come from)`,
    /// in order.
    segments: Vec<(usize, Segment)>,
}

/// What maps a rendered line back to its template.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    template: String,
    sql: String,
}

impl Segment {
    fn of(node: &RenderedModel) -> Segment {
        Segment {
            path: node.path.clone(),
            template: node.template.clone(),
            sql: node.sql.clone(),
        }
    }
}

/// Compiles the model at `index`.
pub fn compile(dag: &Dag, index: NodeIndex, models: &[RenderedModel]) -> CompiledSql {
    compile_with(dag, index, models, dag.node(index).rendered(models, &[]))
}

/// Compiles `body` (the rendered SQL of the node at `index`, a model or a
/// data test) with the ephemeral models it reads.
pub fn compile_with(dag: &Dag, index: NodeIndex, models: &[RenderedModel], body: &RenderedModel) -> CompiledSql {
    compile_but(dag, index, models, body, &[])
}

/// [`compile_with`], leaving the ephemeral models of `kept` as the names
/// the SQL reads them by (`__dbt__cte__<name>`), for a unit test to give.
pub fn compile_but(
    dag: &Dag,
    index: NodeIndex,
    models: &[RenderedModel],
    body: &RenderedModel,
    kept: &[NodeIndex],
) -> CompiledSql {
    let model = body;
    let ephemerals = dag.ephemeral_ancestors_but(index, kept);
    if ephemerals.is_empty() {
        return CompiledSql {
            path: model.path.clone(),
            sql: model.sql.clone(),
            segments: vec![(1, Segment::of(model))],
        };
    }
    let mut sql = String::new();
    let mut segments = Vec::new();
    let mut line = 1;
    for (n, &e) in ephemerals.iter().enumerate() {
        let eph = dag.node(e);
        let lead = if n == 0 { "with" } else { "), " };
        sql.push_str(&format!("{lead} __dbt__cte__{} as (\n", eph.relation.identifier));
        line += 1;
        let rendered = eph.rendered(models, &[]);
        let body = rendered.sql.trim_end();
        segments.push((line, Segment::of(rendered)));
        sql.push_str(body);
        sql.push('\n');
        line += body.matches('\n').count() + 1;
    }
    let (starts_with_with, body) = blank_leading_with(&model.sql);
    sql.push_str(if starts_with_with { "),\n" } else { ")\n" });
    line += 1;
    segments.push((line, Segment::of(model)));
    sql.push_str(&body);
    CompiledSql {
        path: model.path.clone(),
        sql,
        segments,
    }
}

/// When the SQL starts with `with` (after comments), that keyword is
/// replaced by spaces so that the CTEs prepended before it join its list
/// and columns stay where they were.
fn blank_leading_with(sql: &str) -> (bool, String) {
    let start = skip_comments(sql);
    let rest = &sql[start..];
    let is_with = rest.len() >= 4
        && rest[..4].eq_ignore_ascii_case("with")
        && rest[4..].chars().next().is_some_and(char::is_whitespace);
    if !is_with {
        return (false, sql.to_owned());
    }
    let mut out = String::with_capacity(sql.len());
    out.push_str(&sql[..start]);
    out.push_str("    ");
    out.push_str(&rest[4..]);
    (true, out)
}

fn skip_comments(sql: &str) -> usize {
    let mut i = 0;
    loop {
        let rest = &sql[i..];
        let trimmed = rest.trim_start();
        i += rest.len() - trimmed.len();
        if trimmed.starts_with("--") {
            i += trimmed.find('\n').unwrap_or(trimmed.len());
        } else if trimmed.starts_with("/*") {
            i += trimmed.find("*/").map_or(trimmed.len(), |e| e + 2);
        } else {
            return i;
        }
    }
}

impl CompiledSql {
    /// The template span of a compiled position.
    pub fn template_span(&self, start: Location, end: Location) -> Option<Span> {
        let line = start.line as usize;
        if line == 0 {
            return None;
        }
        let (first, model) = self.segments.iter().rev().find(|(first, _)| *first <= line)?;
        let first = *first;
        let rendered_line = line - first + 1;
        let text_line = model.sql.lines().nth(rendered_line - 1).unwrap_or_default();
        let col = start.column as usize;
        let token: Option<String> = (end.line == start.line && end.column > start.column).then(|| {
            text_line
                .chars()
                .skip(col.saturating_sub(1))
                .take((end.column - start.column) as usize)
                .collect()
        });
        // Built only here, for an error: aligning every model's text with
        // its template up front cost more than rendering it.
        let (tline, tcol) = LineMap::build(&model.template, &model.sql).template_position(
            &model.template,
            rendered_line,
            col,
            token.as_deref(),
        );
        let len = token.map_or(0, |t| t.chars().count());
        Some(Span::new(&model.path, tline, tcol, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_with_is_blanked_keeping_columns() {
        let (yes, body) = blank_leading_with("-- c\nWITH a as (select 1) select * from a");
        assert!(yes);
        assert_eq!(body, "-- c\n     a as (select 1) select * from a");
        let (no, body) = blank_leading_with("select 1 as with_x");
        assert!(!no);
        assert_eq!(body, "select 1 as with_x");
    }
}
