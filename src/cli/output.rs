//! Everything etl prints: node lines as they finish, summaries and
//! diagnostics, as text for people or one JSON object per line.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::LogFormat;
use etl::diagnostic::{Diagnostic, Severity};
use etl::materialize::{NodeResult, RunResults, Status};

pub struct Output {
    format: LogFormat,
}

impl Output {
    pub fn new(format: LogFormat) -> Output {
        Output { format }
    }

    pub fn json(&self) -> bool {
        self.format == LogFormat::Json
    }

    pub fn init_tracing(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("ETL_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off,etl=info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false);
        let _ = if self.json() {
            builder.json().try_init()
        } else {
            builder.without_time().try_init()
        };
    }

    pub fn line(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    pub fn event(&self, value: serde_json::Value) {
        self.line(&value.to_string());
    }

    /// Diagnostics that stop etl before anything ran.
    pub fn fatal(&self, diags: &[Diagnostic], root: Option<&Path>) {
        self.diagnostics(diags, root);
    }

    pub fn diagnostics(&self, diags: &[Diagnostic], root: Option<&Path>) {
        let root = root.unwrap_or(Path::new("."));
        let mut stderr = std::io::stderr().lock();
        for d in diags {
            if self.json() {
                let _ = writeln!(stderr, "{}", json!({"event": "diagnostic", "diagnostic": d}));
            } else {
                let _ = writeln!(stderr, "{}", d.render(root));
            }
        }
    }

    pub fn warnings(&self, diags: &[Diagnostic], root: &Path) {
        let warnings: Vec<Diagnostic> = diags
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .cloned()
            .collect();
        self.diagnostics(&warnings, Some(root));
    }

    /// One line per finished node.
    pub fn node(&self, result: &NodeResult, done: usize, total: usize) {
        if self.json() {
            self.event(json!({"event": "node_finished", "index": done, "total": total, "result": result}));
            return;
        }
        let status = match result.status {
            Status::Success => "OK",
            Status::Error => "ERROR",
            Status::Skipped => "SKIP",
        };
        let width = total.to_string().len();
        let rows = result
            .rows_affected
            .map(|r| format!("{} rows", group(r)))
            .unwrap_or_default();
        let what = format!("{} {}", result.materialized.as_str(), result.name);
        self.line(&format!(
            "{done:>width$}/{total} {status:<5} {what:<44} {rows:>14} {:>7.2}s",
            result.execution_time
        ));
    }

    pub fn summary(&self, results: &RunResults, root: &Path) {
        let errors: Vec<Diagnostic> = results.results.iter().filter_map(|r| r.diagnostic.clone()).collect();
        let (ok, failed, skipped) = (
            results.count(Status::Success),
            results.count(Status::Error),
            results.count(Status::Skipped),
        );
        if self.json() {
            self.diagnostics(&errors, Some(root));
            self.event(json!({
                "event": "run_finished", "elapsed": results.elapsed,
                "success": ok, "error": failed, "skipped": skipped,
            }));
            return;
        }
        if !errors.is_empty() {
            eprintln!();
            self.diagnostics(&errors, Some(root));
        }
        self.line(&format!(
            "Finished in {:.2}s: {ok} succeeded, {failed} failed, {skipped} skipped",
            results.elapsed
        ));
    }
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
