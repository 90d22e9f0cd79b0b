//! `etl build`, `etl run`, `etl seed`, `etl test`: arguments in, the
//! library's [`etl::build()`] run, its progress and results printed, an
//! exit code out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use etl::diagnostic::{Code, Diagnostic};
use etl::{BuildOptions, Mode, Progress, notify};

use super::{Global, Output, invocation_id};

pub async fn run(global: &Global, out: &Output, mode: Mode) -> u8 {
    run_only(global, out, mode, None).await
}

/// Builds the selection, or with `only`, just the nodes with those
/// unique_ids (what `etl retry` re-runs).
pub async fn run_only(global: &Global, out: &Output, mode: Mode, only: Option<&BTreeSet<String>>) -> u8 {
    let started = chrono::Utc::now();
    let invocation = invocation_id();
    let prepared = match global.prepare_or_say(out, &invocation) {
        Ok(p) => p,
        Err(diags) => {
            // A project that does not load still tells its target's
            // channels, when its project file reads.
            if let Some((name, target)) = etl::project::load_target(&global.project_dir, &global.load_options()) {
                let root = std::path::absolute(&global.project_dir).unwrap_or_else(|_| global.project_dir.clone());
                let told = Told::new(&name, &target, &root, mode, &invocation, started);
                told.errors(out, &diags).await;
            }
            return 2;
        }
    };
    let root = prepared.project.root.clone();
    let told = Told::new(
        &prepared.project.name,
        &prepared.project.target,
        &root,
        mode,
        &invocation,
        started,
    );
    let mut selecting = global.selecting();
    selecting.only = only.cloned();
    let defer = match global.defer() {
        Ok(defer) => defer,
        Err(diag) => {
            out.fatal(&[diag], Some(&root));
            return 2;
        }
    };
    let options = BuildOptions {
        defer,
        empty: global.empty,
        mode,
        selecting,
        threads: global.threads,
        memory_limit: global.memory_limit.clone(),
        full_refresh: global.full_refresh,
        force: global.force,
        event_time_start: global.event_time_start,
        event_time_end: global.event_time_end,
        figures: told.figures(),
        live: Default::default(),
    };
    let watch = super::live::Watch::start(&options.live, out);
    let outcome = etl::build(prepared, &options, |progress| match progress {
        Progress::Warnings(warnings) => out.warnings(warnings, &root),
        Progress::Started {
            project,
            nodes,
            threads,
        } => {
            if !out.json() {
                out.line(&format!(
                    "etl {} `{}`: {nodes} node{} selected, target `{}` at {}, {threads} thread{}",
                    mode.name(),
                    project.name,
                    if nodes == 1 { "" } else { "s" },
                    project.target.name,
                    project.target.lake,
                    if threads == 1 { "" } else { "s" }
                ));
            }
        }
        Progress::Node { result, done, total } => out.node(result, done, total),
    })
    .await;
    drop(watch);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(diags) => {
            out.fatal(&diags, Some(&root));
            told.errors(out, &diags).await;
            return 2;
        }
    };
    out.diagnostics(&outcome.problems, Some(&outcome.root));
    out.summary(&outcome.results, &outcome.rejected, &outcome.root);
    if global.timings {
        out.timings(&outcome.timings, &outcome.results, outcome.threads);
    }
    told.outcome(out, &outcome).await;
    if outcome.failed() { 1 } else { 0 }
}

/// The target's `notify:` channels, told of this build.
struct Told<'a> {
    notify: Option<etl::config::Notify>,
    project: String,
    target: String,
    lake: String,
    root: PathBuf,
    command: &'static str,
    invocation: &'a str,
    started: chrono::DateTime<chrono::Utc>,
}

impl<'a> Told<'a> {
    fn new(
        project: &str,
        target: &etl::project::Target,
        root: &Path,
        mode: Mode,
        invocation: &'a str,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Told {
            notify: target.notify.clone(),
            project: project.to_owned(),
            target: target.name.clone(),
            lake: target.lake.to_string(),
            root: root.to_owned(),
            command: mode.name(),
            invocation,
            started,
        }
    }

    /// The summary's figures, when a channel will be sent them.
    fn figures(&self) -> Vec<etl::config::Figure> {
        match &self.notify {
            Some(notify) => {
                let state = notify::SummaryState::load(&self.root, &self.target);
                if notify::wants_figures(notify, &state, chrono::Utc::now().date_naive()) {
                    notify.summary.clone()
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        }
    }

    fn context(&self) -> notify::Context<'_> {
        notify::Context {
            project: &self.project,
            target: &self.target,
            command: self.command,
            invocation_id: self.invocation,
            lake: &self.lake,
            root: &self.root,
            started_at: self.started,
            link: self.notify.as_ref().and_then(|n| n.link.as_deref()),
        }
    }

    async fn errors(&self, out: &Output, diags: &[Diagnostic]) {
        if self.notify.is_some() {
            self.send(out, &notify::Report::of_errors(&self.context(), diags)).await;
        }
    }

    async fn outcome(&self, out: &Output, outcome: &etl::Outcome) {
        if self.notify.is_none() {
            return;
        }
        let ran = notify::Ran {
            results: &outcome.results,
            rejected: &outcome.rejected,
            problems: &outcome.problems,
            freshness: &outcome.freshness,
            rates: &outcome.rates,
            figures: &outcome.figures,
            failed: outcome.failed(),
        };
        self.send(out, &notify::Report::of_build(&self.context(), &ran)).await;
    }

    async fn send(&self, out: &Output, report: &notify::Report) {
        let Some(notify) = &self.notify else { return };
        say_deliveries(out, &self.root, &notify::send(notify, report, &self.root).await, true);
    }
}

/// What became of each channel's message, printed (or one JSON event
/// each).
pub fn say_deliveries(out: &Output, root: &Path, deliveries: &[notify::Delivery], in_build: bool) {
    for delivery in deliveries {
        if out.json() {
            out.event(serde_json::json!({"event": "notify", "delivery": delivery}));
            continue;
        }
        let late = match delivery.late {
            0 => String::new(),
            n => format!(
                ", and {n} message{} of earlier builds it missed",
                if n == 1 { "" } else { "s" }
            ),
        };
        match &delivery.error {
            None => out.line(&format!(
                "Told {} ({}{}{late})",
                delivery.channel,
                delivery.event,
                if delivery.attempts > 1 {
                    format!(", at attempt {}", delivery.attempts)
                } else {
                    String::new()
                }
            )),
            Some(error) => {
                let mut diag = Diagnostic::warning(
                    Code::Notify,
                    format!(
                        "{} was not told of this {} ({} attempt{}{late}): {error}",
                        delivery.channel,
                        delivery.event,
                        delivery.attempts,
                        if delivery.attempts == 1 { "" } else { "s" }
                    ),
                );
                if let Some(path) = &delivery.kept {
                    diag = diag.with_note(format!(
                        "kept in {}: sent, marked late, before the channel's next message",
                        path.strip_prefix(root).unwrap_or(path).display()
                    ));
                }
                if in_build {
                    diag = diag.with_note("the build's result stands: this does not change its exit code");
                }
                out.diagnostics(&[diag], Some(root));
            }
        }
    }
}
