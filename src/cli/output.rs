//! Everything etl prints: node lines as they finish, summaries and
//! diagnostics, as text for people or one JSON object per line.

use std::io::Write;
use std::path::Path;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use super::LogFormat;
use etl::diagnostic::{Diagnostic, Severity};
use etl::materialize::{NodeResult, Rejected, RunResults, Status, thousands};

pub struct Output {
    format: LogFormat,
    /// The live lines of the running nodes, when they are drawn: what is
    /// printed goes above them.
    live: std::sync::Mutex<Option<indicatif::MultiProgress>>,
}

impl Output {
    pub fn new(format: LogFormat) -> Output {
        Output {
            format,
            live: std::sync::Mutex::new(None),
        }
    }

    /// Lines printed from now on go above `bars` (None: bars gone).
    pub fn draw_above(&self, bars: Option<indicatif::MultiProgress>) {
        *self.live.lock().expect("live bars poisoned") = bars;
    }

    /// Runs `print` with the live lines out of the way.
    fn printing<T>(&self, print: impl FnOnce() -> T) -> T {
        let live = self.live.lock().expect("live bars poisoned").clone();
        match live {
            Some(bars) => bars.suspend(print),
            None => print(),
        }
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
        self.printing(|| {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{text}");
        });
    }

    /// Many lines in one go: a listing of thousands of nodes written line
    /// by line spent its time in `write` calls.
    pub fn lines(&self, lines: impl Iterator<Item = String>) {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        for line in lines {
            let _ = writeln!(stdout, "{line}");
        }
        let _ = stdout.flush();
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
        self.printing(|| {
            let mut stderr = std::io::stderr().lock();
            for d in diags {
                if self.json() {
                    let _ = writeln!(stderr, "{}", json!({"event": "diagnostic", "diagnostic": d}));
                } else {
                    let _ = writeln!(stderr, "{}", d.render(root));
                }
            }
        });
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
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::NoOp => "NO-OP",
        };
        let width = total.to_string().len();
        let rows = match (result.rows_affected, result.failures) {
            _ if result.up_to_date => "up to date".to_owned(),
            (Some(r), _) => format!("{} row{}", thousands(r), if r == 1 { "" } else { "s" }),
            (None, Some(f)) if f > 0 => format!("{} failing", thousands(f)),
            _ => String::new(),
        };
        let kind = match result.resource_type {
            etl::graph::ResourceType::UnitTest => "unit_test",
            _ => result.materialized.as_str(),
        };
        let what = format!("{kind} {}", result.name);
        self.line(&format!(
            "{done:>width$}/{total} {status:<5} {what:<44} {rows:>14} {:>7.2}s",
            result.execution_time
        ));
        self.diagnostics(&result.warnings, None);
    }

    /// Where a command that runs no node spent its time (`--timings` of
    /// `etl compile`): each stage's seconds; stages done beside another
    /// say so in their name.
    pub fn stages(&self, stages: &[(&'static str, f64)], wall: f64) {
        if self.json() {
            let mut phases = serde_json::Map::new();
            for (stage, seconds) in stages {
                phases.insert((*stage).to_owned(), json!(seconds));
            }
            self.event(json!({"event": "timings", "phases": phases, "wall": wall}));
            return;
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header(["stage", "seconds"]);
        for (stage, seconds) in stages {
            table.add_row([stage.to_string(), format!("{seconds:.3}")]);
        }
        self.line("");
        self.line(&format!("Where the time went ({wall:.2}s wall clock):"));
        self.line(&table.to_string());
    }

    /// Where a build's time went (`--timings`): the stages before the
    /// first node, then plan, execute and commit summed over the nodes
    /// (which run `threads` at a time, so the sums can exceed the wall
    /// clock), then the slowest nodes.
    pub fn timings(&self, stages: &[(&'static str, f64)], results: &RunResults, threads: usize) {
        const SLOWEST: usize = 10;
        let plan: f64 = results.results.iter().map(|r| r.phases.plan).sum();
        let commit: f64 = results.results.iter().map(|r| r.phases.commit).sum();
        let total: f64 = results.results.iter().map(|r| r.execution_time).sum();
        let execute = (total - plan - commit).max(0.0);
        let mut slowest: Vec<&NodeResult> = results.results.iter().filter(|r| r.execution_time > 0.0).collect();
        slowest.sort_by(|a, b| b.execution_time.total_cmp(&a.execution_time));
        slowest.truncate(SLOWEST);
        if self.json() {
            let mut phases = serde_json::Map::new();
            for (stage, seconds) in stages {
                phases.insert((*stage).to_owned(), json!(seconds));
            }
            phases.insert("plan".into(), json!(plan));
            phases.insert("execute".into(), json!(execute));
            phases.insert("commit".into(), json!(commit));
            let nodes: Vec<_> = slowest
                .iter()
                .map(|r| {
                    json!({
                        "unique_id": r.unique_id, "total": r.execution_time, "plan": r.phases.plan,
                        "commit": r.phases.commit,
                        "execute": (r.execution_time - r.phases.plan - r.phases.commit).max(0.0),
                    })
                })
                .collect();
            self.event(json!({"event": "timings", "phases": phases, "slowest": nodes, "threads": threads}));
            return;
        }
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(["phase", "seconds", ""]);
        for (stage, seconds) in stages {
            table.add_row([stage.to_string(), format!("{seconds:.3}"), String::new()]);
        }
        let note = format!("summed over {} nodes, {threads} at a time", results.results.len());
        table.add_row(["plan".to_owned(), format!("{plan:.3}"), note]);
        table.add_row([
            "execute".to_owned(),
            format!("{execute:.3}"),
            "queries, data files, tests".to_owned(),
        ]);
        table.add_row([
            "commit".to_owned(),
            format!("{commit:.3}"),
            "Delta log writes".to_owned(),
        ]);
        self.line("");
        self.line(&format!("Where the time went ({:.2}s wall clock):", results.elapsed));
        self.line(&table.to_string());
        let mut nodes = Table::new();
        nodes
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(["slowest nodes", "total", "plan", "execute", "commit"]);
        for r in slowest {
            let execute = (r.execution_time - r.phases.plan - r.phases.commit).max(0.0);
            nodes.add_row([
                format!("{} {}", r.materialized.as_str(), r.name),
                format!("{:.3}", r.execution_time),
                format!("{:.3}", r.phases.plan),
                format!("{execute:.3}"),
                format!("{:.3}", r.phases.commit),
            ]);
        }
        self.line(&nodes.to_string());
    }

    pub fn summary(&self, results: &RunResults, rejected: &[Rejected], root: &Path) {
        let errors: Vec<Diagnostic> = results.results.iter().filter_map(|r| r.diagnostic.clone()).collect();
        let count = |s| results.count(s);
        if self.json() {
            self.diagnostics(&errors, Some(root));
            self.event(json!({
                "event": "run_finished", "elapsed": results.elapsed,
                "success": count(Status::Success), "error": count(Status::Error), "skipped": count(Status::Skipped),
                "pass": count(Status::Pass), "warn": count(Status::Warn), "fail": count(Status::Fail),
                "no_op": count(Status::NoOp),
                "rejected": rejected,
            }));
            return;
        }
        if !errors.is_empty() {
            eprintln!();
            self.diagnostics(&errors, Some(root));
        }
        let flagged: Vec<&NodeResult> = results
            .results
            .iter()
            .filter(|r| matches!(r.status, Status::Warn | Status::Fail))
            .collect();
        if !flagged.is_empty() {
            self.line("");
            for r in flagged {
                let label = if r.status == Status::Fail { "FAIL" } else { "WARN" };
                self.line(&format!("{label} {}: {}", r.name, r.message));
            }
        }
        if !rejected.is_empty() {
            self.line("");
            self.line("Rejected rows:");
            for r in rejected {
                let top: Vec<String> = r
                    .reasons
                    .iter()
                    .take(3)
                    .map(|(reason, n)| format!("{reason} {}", thousands(*n)))
                    .collect();
                let more = if r.reasons.len() > 3 { ", ..." } else { "" };
                self.line(&format!(
                    "  {:<28} {:>10}  {}{more}",
                    r.name,
                    thousands(r.rows),
                    top.join(", ")
                ));
            }
        }
        let tests = count(Status::Pass) + count(Status::Warn) + count(Status::Fail);
        let nodes = results.results.len() - tests;
        let mut parts = Vec::new();
        if nodes > 0 || tests == 0 {
            let fresh = results
                .results
                .iter()
                .filter(|r| r.up_to_date && r.status == Status::Success)
                .count();
            let fresh = if fresh > 0 {
                format!(" ({fresh} up to date)")
            } else {
                String::new()
            };
            let noop = match count(Status::NoOp) {
                0 => String::new(),
                n => format!(", {n} no-op"),
            };
            parts.push(format!(
                "{} succeeded{fresh}, {} failed, {} skipped{noop}",
                count(Status::Success),
                count(Status::Error),
                count(Status::Skipped)
            ));
        }
        if tests > 0 {
            let unchanged = results
                .results
                .iter()
                .filter(|r| r.up_to_date && r.status != Status::Success)
                .count();
            let unchanged = if unchanged > 0 {
                format!(" ({unchanged} on unchanged data, not run again)")
            } else {
                String::new()
            };
            parts.push(format!(
                "tests: {} passed, {} warned, {} failed{unchanged}",
                count(Status::Pass),
                count(Status::Warn),
                count(Status::Fail)
            ));
        }
        self.line(&format!("Finished in {:.2}s: {}", results.elapsed, parts.join("; ")));
    }
}
