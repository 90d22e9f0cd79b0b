//! One diagnostic type, rendered in one place.
//!
//! Every stage turns its errors into [`Diagnostic`]s: a code, a message, an
//! optional [`Span`] pointing into a file of the project, and `help:` lines.
//! [`Diagnostic::render`] draws them the way rustc and ruff do:
//!
//! ```text
//! error[unknown-ref]: `ref('stg_order')` does not match any model or seed
//!  --> models/orders.sql:7:19
//!   |
//! 7 |     select * from {{ ref('stg_order') }}
//!   |                   ^^^^^^^^^^^^^^^^^^^^^^
//! help: did you mean `stg_orders`?
//! ```
//!
//! Spans carry project-relative paths; the source line is read when the
//! diagnostic is rendered, so that errors stay cheap to build and to move.

use datafusion::error::DataFusionError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A place in a file of the project: 1-based line and column, and a length in
/// characters (0 when only the position is known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Span {
    pub fn new(file: impl Into<PathBuf>, line: usize, col: usize, len: usize) -> Self {
        Span {
            file: file.into(),
            line: line.max(1),
            col: col.max(1),
            len,
        }
    }

    /// A span covering the whole file: used when only the file is known.
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Span {
            file: file.into(),
            line: 0,
            col: 0,
            len: 0,
        }
    }

    /// Finds the first occurrence of `needle` in `text` and returns its span.
    pub fn find(file: &Path, text: &str, needle: &str) -> Option<Span> {
        let offset = text.find(needle)?;
        Some(Span::at_offset(file, text, offset, needle.chars().count()))
    }

    /// The span of a byte offset into `text`.
    pub fn at_offset(file: &Path, text: &str, offset: usize, len: usize) -> Span {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Span::new(file, line, col, len)
    }

    fn has_position(&self) -> bool {
        self.line > 0
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.has_position() {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
        } else {
            write!(f, "{}", self.file.display())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A message for the user about their project or their data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A short kebab-case code, stable across releases (`unknown-ref`).
    pub code: &'static str,
    pub message: String,
    pub span: Option<Span>,
    /// The label under the underlined source, when it adds something.
    pub label: Option<String>,
    pub help: Vec<String>,
    pub notes: Vec<String>,
    /// What kind of failure of the query engine this is, when it is one
    /// a node can be run again for (see [`Cause`]).
    #[serde(skip)]
    pub cause: Option<Cause>,
}

/// Failures of the query engine that are not the user's SQL or data, and
/// that etl answers by running the node again another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// DataFusion's "internal error", a panic: a bug in it, or in a plan
    /// etl rewrote. Run again without etl's rewrites.
    EngineBug,
    /// The memory pool refused a reservation. Run again alone, with joins
    /// that spill.
    OutOfMemory,
}

impl Cause {
    /// What kind of engine failure `err` is, if it is one etl runs a node
    /// again for: a bug of the engine's own (an internal error, a task that
    /// panicked: what a plan etl rewrote wrongly would raise), or the memory
    /// pool refusing a reservation. Not the user's SQL or data.
    pub fn of(err: &DataFusionError) -> Option<Cause> {
        match err {
            DataFusionError::Internal(_) | DataFusionError::ExecutionJoin(_) => Some(Cause::EngineBug),
            DataFusionError::ResourcesExhausted(_) => Some(Cause::OutOfMemory),
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => Cause::of(inner),
            DataFusionError::Shared(inner) => Cause::of(inner),
            DataFusionError::Collection(errors) => errors.iter().find_map(Cause::of),
            DataFusionError::External(inner) => inner.downcast_ref::<DataFusionError>().and_then(Cause::of),
            DataFusionError::ArrowError(inner, _) => match inner.as_ref() {
                datafusion::arrow::error::ArrowError::ExternalError(e) => {
                    e.downcast_ref::<DataFusionError>().and_then(Cause::of)
                }
                _ => None,
            },
            _ => None,
        }
    }
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: None,
            label: None,
            help: Vec::new(),
            notes: Vec::new(),
            cause: None,
        }
    }

    /// Records what kind of engine failure this is, if it is one.
    pub fn with_cause(mut self, cause: Option<Cause>) -> Self {
        self.cause = self.cause.or(cause);
        self
    }

    /// Whether this is the engine failure `cause`.
    pub fn is(&self, cause: Cause) -> bool {
        self.cause == Some(cause)
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn with_span(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Adds `help: did you mean ...?` when a close candidate exists.
    pub fn with_suggestion<'a>(self, wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(wrong, candidates) {
            Some(best) => self.with_help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// Renders the diagnostic as text; `root` is the project directory that
    /// span paths are relative to, used to read the source line.
    pub fn render(&self, root: &Path) -> String {
        let mut out = String::new();
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{kind}[{}]: {}", self.code, self.message);
        if let Some(span) = &self.span {
            let source_line = span
                .has_position()
                .then(|| read_line(&root.join(&span.file), span.line))
                .flatten();
            let gutter = span.line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}--> {span}");
            if let Some(text) = source_line {
                let text = text.trim_end();
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{} | {}", span.line, text.replace('\t', " "));
                let width = text.chars().count();
                let start = span.col.saturating_sub(1).min(width);
                let len = span.len.max(1).min(width.saturating_sub(start).max(1));
                let label = self.label.as_deref().map(|l| format!(" {l}")).unwrap_or_default();
                let _ = writeln!(out, "{pad} | {}{}{label}", " ".repeat(start), "^".repeat(len));
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for help in &self.help {
            let _ = writeln!(out, "help: {help}");
        }
        out
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.span {
            Some(span) => write!(f, "{}: {}", span, self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

fn read_line(path: &Path, line: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().nth(line.checked_sub(1)?).map(str::to_owned)
}

/// The closest candidate to `wrong`, when one is close enough to be a typo.
pub fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong_lower = wrong.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != wrong)
        .map(|c| (strsim::jaro_winkler(&wrong_lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_picks_the_closest_name() {
        let names = ["stg_orders", "stg_customers", "kpis"];
        assert_eq!(did_you_mean("stg_order", names), Some("stg_orders"));
        assert_eq!(did_you_mean("totally_else", names), None);
    }

    #[test]
    fn span_at_offset_counts_lines_and_columns() {
        let text = "select 1\nfrom {{ ref('x') }}\n";
        let span = Span::find(Path::new("m.sql"), text, "ref('x')").unwrap();
        assert_eq!((span.line, span.col, span.len), (2, 9, 8));
    }

    #[test]
    fn render_underlines_the_span_and_prints_help() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.sql"), "select *\nfrom {{ ref('stg_order') }}\n").unwrap();
        let diag = Diagnostic::error("unknown-ref", "`ref('stg_order')` does not match any model or seed")
            .with_span(Some(Span::new("m.sql", 2, 9, 16)))
            .with_help("did you mean `stg_orders`?");
        let text = diag.render(dir.path());
        assert_eq!(
            text,
            "error[unknown-ref]: `ref('stg_order')` does not match any model or seed\n \
             --> m.sql:2:9\n  |\n2 | from {{ ref('stg_order') }}\n  |         ^^^^^^^^^^^^^^^^\n\
             help: did you mean `stg_orders`?\n"
        );
    }
}
