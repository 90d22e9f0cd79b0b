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
    pub code: Code,
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

/// What kind of problem a diagnostic reports: the `code` in
/// `error[code]`, one per kind, each listed with an example in
/// `docs/diagnostics.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Audit,
    CompilerError,
    Contract,
    Cycle,
    DisabledRef,
    DuplicateName,
    DuplicateRelation,
    DuplicateSource,
    DuplicateTest,
    EmptyFile,
    Execution,
    Export,
    Freshness,
    Internal,
    InvalidArgument,
    InvalidConfig,
    InvalidFormat,
    InvalidLake,
    InvalidLocation,
    InvalidMemoryLimit,
    MemoryBudget,
    SpillSpace,
    InvalidOption,
    InvalidRef,
    InvalidSelector,
    InvalidState,
    InvalidStorageOption,
    InvalidTest,
    InvalidTestConfig,
    InvalidThreads,
    InvalidType,
    InvalidVars,
    InvalidYaml,
    Io,
    Jinja,
    JinjaSyntax,
    Lake,
    LakeLock,
    LakeLocked,
    Microbatch,
    MissingConfig,
    MissingDataFiles,
    MissingEnvVar,
    MissingFormat,
    MissingKey,
    MissingLocation,
    MissingSource,
    MissingState,
    MissingVar,
    NoFreshness,
    NoPreviousRun,
    NoProject,
    Notify,
    NotBuilt,
    NothingSelected,
    ObjectStore,
    Plan,
    Register,
    RejectSummary,
    RewriteFailed,
    RewrittenFile,
    Runtime,
    SchemaChange,
    Seed,
    SelectorOverrides,
    Session,
    Source,
    SourceColumns,
    SourceSchema,
    Sql,
    SqlSyntax,
    StaleView,
    Storage,
    Test,
    UnknownColumn,
    UnknownConfig,
    UnknownConfigPath,
    UnknownFormat,
    UnknownKey,
    UnitTest,
    UnknownMaterialization,
    UnknownNode,
    UnknownOption,
    UnknownPackage,
    UnknownRef,
    UnknownSelector,
    UnknownSource,
    UnknownTarget,
    UnknownProfile,
    MissingPackage,
    Hook,
    Introspection,
    RunTimeRef,
    UnknownTest,
    UnreadableTable,
    Unsupported,
}

impl Code {
    /// Every code, in the order `docs/diagnostics.md` lists them.
    pub const ALL: &[Code] = &[
        Code::Audit,
        Code::CompilerError,
        Code::Contract,
        Code::Cycle,
        Code::DisabledRef,
        Code::DuplicateName,
        Code::DuplicateRelation,
        Code::DuplicateSource,
        Code::DuplicateTest,
        Code::EmptyFile,
        Code::Execution,
        Code::Export,
        Code::Freshness,
        Code::Internal,
        Code::InvalidArgument,
        Code::InvalidConfig,
        Code::InvalidFormat,
        Code::InvalidLake,
        Code::InvalidLocation,
        Code::InvalidMemoryLimit,
        Code::MemoryBudget,
        Code::SpillSpace,
        Code::InvalidOption,
        Code::InvalidRef,
        Code::InvalidSelector,
        Code::InvalidState,
        Code::InvalidStorageOption,
        Code::InvalidTest,
        Code::InvalidTestConfig,
        Code::InvalidThreads,
        Code::InvalidType,
        Code::InvalidVars,
        Code::InvalidYaml,
        Code::Io,
        Code::Jinja,
        Code::JinjaSyntax,
        Code::Lake,
        Code::LakeLock,
        Code::LakeLocked,
        Code::Microbatch,
        Code::MissingConfig,
        Code::MissingDataFiles,
        Code::MissingEnvVar,
        Code::MissingFormat,
        Code::MissingKey,
        Code::MissingLocation,
        Code::MissingSource,
        Code::MissingState,
        Code::MissingVar,
        Code::NoFreshness,
        Code::NoPreviousRun,
        Code::NoProject,
        Code::Notify,
        Code::NotBuilt,
        Code::NothingSelected,
        Code::ObjectStore,
        Code::Plan,
        Code::Register,
        Code::RejectSummary,
        Code::RewriteFailed,
        Code::RewrittenFile,
        Code::Runtime,
        Code::SchemaChange,
        Code::Seed,
        Code::SelectorOverrides,
        Code::Session,
        Code::Source,
        Code::SourceColumns,
        Code::SourceSchema,
        Code::Sql,
        Code::SqlSyntax,
        Code::StaleView,
        Code::Storage,
        Code::Test,
        Code::UnknownColumn,
        Code::UnknownConfig,
        Code::UnknownConfigPath,
        Code::UnknownFormat,
        Code::UnknownKey,
        Code::UnitTest,
        Code::UnknownMaterialization,
        Code::UnknownNode,
        Code::UnknownOption,
        Code::UnknownPackage,
        Code::UnknownRef,
        Code::UnknownSelector,
        Code::UnknownSource,
        Code::UnknownTarget,
        Code::UnknownProfile,
        Code::MissingPackage,
        Code::Hook,
        Code::Introspection,
        Code::RunTimeRef,
        Code::UnknownTest,
        Code::UnreadableTable,
        Code::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Audit => "audit",
            Code::CompilerError => "compiler-error",
            Code::Contract => "contract",
            Code::Cycle => "cycle",
            Code::DisabledRef => "disabled-ref",
            Code::DuplicateName => "duplicate-name",
            Code::DuplicateRelation => "duplicate-relation",
            Code::DuplicateSource => "duplicate-source",
            Code::DuplicateTest => "duplicate-test",
            Code::EmptyFile => "empty-file",
            Code::Execution => "execution",
            Code::Export => "export",
            Code::Freshness => "freshness",
            Code::Internal => "internal",
            Code::InvalidArgument => "invalid-argument",
            Code::InvalidConfig => "invalid-config",
            Code::InvalidFormat => "invalid-format",
            Code::InvalidLake => "invalid-lake",
            Code::InvalidLocation => "invalid-location",
            Code::InvalidMemoryLimit => "invalid-memory-limit",
            Code::MemoryBudget => "memory-budget",
            Code::SpillSpace => "spill-space",
            Code::InvalidOption => "invalid-option",
            Code::InvalidRef => "invalid-ref",
            Code::InvalidSelector => "invalid-selector",
            Code::InvalidState => "invalid-state",
            Code::InvalidStorageOption => "invalid-storage-option",
            Code::InvalidTest => "invalid-test",
            Code::InvalidTestConfig => "invalid-test-config",
            Code::InvalidThreads => "invalid-threads",
            Code::InvalidType => "invalid-type",
            Code::InvalidVars => "invalid-vars",
            Code::InvalidYaml => "invalid-yaml",
            Code::Io => "io",
            Code::Jinja => "jinja",
            Code::JinjaSyntax => "jinja-syntax",
            Code::Lake => "lake",
            Code::LakeLock => "lake-lock",
            Code::LakeLocked => "lake-locked",
            Code::Microbatch => "microbatch",
            Code::MissingConfig => "missing-config",
            Code::MissingDataFiles => "missing-data-files",
            Code::MissingEnvVar => "missing-env-var",
            Code::MissingFormat => "missing-format",
            Code::MissingKey => "missing-key",
            Code::MissingLocation => "missing-location",
            Code::MissingSource => "missing-source",
            Code::MissingState => "missing-state",
            Code::MissingVar => "missing-var",
            Code::NoFreshness => "no-freshness",
            Code::NoPreviousRun => "no-previous-run",
            Code::NoProject => "no-project",
            Code::Notify => "notify",
            Code::NotBuilt => "not-built",
            Code::NothingSelected => "nothing-selected",
            Code::ObjectStore => "object-store",
            Code::Plan => "plan",
            Code::Register => "register",
            Code::RejectSummary => "reject-summary",
            Code::RewriteFailed => "rewrite-failed",
            Code::RewrittenFile => "rewritten-file",
            Code::Runtime => "runtime",
            Code::SchemaChange => "schema-change",
            Code::Seed => "seed",
            Code::SelectorOverrides => "selector-overrides",
            Code::Session => "session",
            Code::Source => "source",
            Code::SourceColumns => "source-columns",
            Code::SourceSchema => "source-schema",
            Code::Sql => "sql",
            Code::SqlSyntax => "sql-syntax",
            Code::StaleView => "stale-view",
            Code::Storage => "storage",
            Code::Test => "test",
            Code::UnknownColumn => "unknown-column",
            Code::UnknownConfig => "unknown-config",
            Code::UnknownConfigPath => "unknown-config-path",
            Code::UnknownFormat => "unknown-format",
            Code::UnknownKey => "unknown-key",
            Code::UnitTest => "unit-test",
            Code::UnknownMaterialization => "unknown-materialization",
            Code::UnknownNode => "unknown-node",
            Code::UnknownOption => "unknown-option",
            Code::UnknownPackage => "unknown-package",
            Code::UnknownRef => "unknown-ref",
            Code::UnknownSelector => "unknown-selector",
            Code::UnknownSource => "unknown-source",
            Code::UnknownTarget => "unknown-target",
            Code::UnknownProfile => "unknown-profile",
            Code::MissingPackage => "missing-package",
            Code::Hook => "hook",
            Code::Introspection => "introspection",
            Code::RunTimeRef => "run-time-ref",
            Code::UnknownTest => "unknown-test",
            Code::UnreadableTable => "unreadable-table",
            Code::Unsupported => "unsupported",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
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
    pub fn error(code: Code, message: impl Into<String>) -> Self {
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

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
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
    fn every_code_is_listed_in_the_docs_and_the_docs_list_no_other() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/diagnostics.md")).unwrap();
        let listed: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(code, _)| code))
            .collect();
        let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        let missing: Vec<_> = codes.iter().filter(|c| !listed.contains(c)).collect();
        assert!(missing.is_empty(), "not in docs/diagnostics.md: {missing:?}");
        let unknown: Vec<_> = listed.iter().filter(|c| !codes.contains(c)).collect();
        assert!(
            unknown.is_empty(),
            "docs/diagnostics.md lists codes etl does not have: {unknown:?}"
        );
        let mut unique = listed.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "a code is listed twice");
    }

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
        let diag = Diagnostic::error(Code::UnknownRef, "`ref('stg_order')` does not match any model or seed")
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
