//! Notifications: after a build, what a target's `notify:` asks for
//! reaches people — a JSON summary (or Slack's payload) POSTed to
//! webhooks, an e-mail over SMTP — on failure, on warning, as the day's
//! first summary, or after every build that did not fail.
//!
//! The last stage: it reads what the build did ([`Report`]) and never
//! changes it. A channel that cannot be reached is tried again
//! (`retries`, `retry_delay` doubled each time), then reported as a
//! [`Delivery`] that failed; the build's result stands.

mod deliver;
mod message;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Event, Figure, Notify};
use crate::diagnostic::{Diagnostic, Severity};
use crate::graph::{Dag, ResourceType};
use crate::materialize::{Build, FreshnessResult, FreshnessStatus, Rejected, RunResults, Status};

pub use deliver::Delivery;

/// A test whose thresholds are shares of the rows it read (a reject
/// rate), as this build measured it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rate {
    pub test: String,
    /// The node it tests.
    pub entity: String,
    pub failures: u64,
    pub rows: u64,
    pub percent: f64,
    pub warn_if: String,
    pub error_if: String,
    pub status: String,
}

/// A figure of the summary, computed after the build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FigureResult {
    pub title: String,
    pub columns: Vec<String>,
    /// At most the figure's `max_rows`; numbers as JSON numbers.
    pub rows: Vec<Vec<Value>>,
    /// Whether the query had more rows than were kept.
    pub truncated: bool,
    /// Why it could not be computed.
    pub error: Option<String>,
}

/// The rate tests among `results`.
pub fn rates(dag: &Dag, results: &RunResults) -> Vec<Rate> {
    let threshold = |t: &crate::config::Threshold| format!("{}{}{}", t.op, t.value, if t.percent { "%" } else { "" });
    let mut out = Vec::new();
    for result in &results.results {
        let (Some(rows), Some(&index)) = (result.tested_rows, dag.by_id.get(&result.unique_id)) else {
            continue;
        };
        let node = dag.node(index);
        let Some(test) = &node.config.test else { continue };
        if !test.warn_if.percent && !test.error_if.percent {
            continue;
        }
        let entity = dag
            .parents(index)
            .next()
            .map(|p| dag.node(p).name.clone())
            .unwrap_or_else(|| result.name.clone());
        let failures = result.failures.unwrap_or(0);
        out.push(Rate {
            test: result.name.clone(),
            entity,
            failures,
            rows,
            percent: if rows > 0 {
                failures as f64 * 100.0 / rows as f64
            } else {
                0.0
            },
            warn_if: threshold(&test.warn_if),
            error_if: threshold(&test.error_if),
            status: result.status.as_str().to_owned(),
        });
    }
    out.sort_by(|a, b| a.entity.cmp(&b.entity).then(a.test.cmp(&b.test)));
    out
}

/// Runs the summary's figures against the lake as `build` left it. A
/// figure that fails says why; the others are computed.
pub async fn figures(build: &Arc<Build>, figures: &[Figure]) -> Vec<FigureResult> {
    let mut out = Vec::new();
    for figure in figures {
        let mut result = FigureResult {
            title: figure.title.clone(),
            columns: Vec::new(),
            rows: Vec::new(),
            truncated: false,
            error: None,
        };
        match figure_rows(build, figure).await {
            Ok((columns, rows, truncated)) => {
                result.columns = columns;
                result.rows = rows;
                result.truncated = truncated;
            }
            Err(message) => result.error = Some(message),
        }
        out.push(result);
    }
    out
}

type Rows = (Vec<String>, Vec<Vec<Value>>, bool);

async fn figure_rows(build: &Arc<Build>, figure: &Figure) -> Result<Rows, String> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

    let plan = crate::materialize::plan_inline(build, &figure.sql)
        .await
        .map_err(|d| d.message)?;
    let frame = datafusion::dataframe::DataFrame::new(build.registry.ctx.state(), plan)
        .limit(0, Some(figure.max_rows + 1))
        .map_err(|e| e.find_root().to_string())?;
    let columns: Vec<String> = frame.schema().fields().iter().map(|f| f.name().clone()).collect();
    let batches = frame.collect().await.map_err(|e| e.find_root().to_string())?;
    let options = FormatOptions::default().with_null("");
    let mut rows = Vec::new();
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).map(|f| (f, c.data_type().clone(), c.clone())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let cells = formatters
                .iter()
                .map(|(format, data_type, column)| {
                    if column.is_null(row) {
                        return Value::Null;
                    }
                    let text = format.value(row).to_string();
                    let numeric = data_type.is_numeric() || matches!(data_type, DataType::Decimal128(..));
                    match numeric.then(|| text.parse::<serde_json::Number>().ok()).flatten() {
                        Some(n) => Value::Number(n),
                        None => Value::String(text),
                    }
                })
                .collect();
            rows.push(cells);
        }
    }
    let truncated = rows.len() > figure.max_rows;
    rows.truncate(figure.max_rows);
    Ok((columns, rows, truncated))
}

/// How a build went, for whom it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Warning,
    Failure,
}

/// One node's result worth telling: an error, a failed or warned test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub unique_id: String,
    pub name: String,
    pub resource_type: String,
    pub status: String,
    pub message: String,
}

/// A source's freshness, as told.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fresh {
    pub source: String,
    pub status: String,
    pub newest: Option<DateTime<Utc>>,
    pub age_seconds: Option<f64>,
    pub message: String,
}

/// Rejected rows of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectedRows {
    pub model: String,
    pub rows: u64,
    pub reasons: Vec<(String, u64)>,
}

/// Everything a notification says: the JSON a webhook receives, and what
/// Slack messages and e-mails are written from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Which event this message is for: failure, warning, summary, success.
    pub event: String,
    /// Sent at a later build than its own: the channel was down then.
    #[serde(default)]
    pub late: bool,
    pub outcome: Outcome,
    pub headline: String,
    pub project: String,
    pub target: String,
    pub command: String,
    pub invocation_id: String,
    pub lake: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub elapsed_seconds: f64,
    /// Nodes and tests by status (`success`, `error`, `pass`, `warn`, ...).
    pub counts: BTreeMap<String, usize>,
    /// Why the build could not run at all, when it could not.
    pub errors: Vec<String>,
    pub failed: Vec<Item>,
    pub warned: Vec<Item>,
    pub freshness: Vec<Fresh>,
    pub rates: Vec<Rate>,
    pub rejected: Vec<RejectedRows>,
    pub figures: Vec<FigureResult>,
    pub where_to_look: Vec<String>,
}

/// What the report is made of, besides the build's results.
pub struct Context<'a> {
    pub project: &'a str,
    pub target: &'a str,
    pub command: &'a str,
    pub invocation_id: &'a str,
    pub lake: &'a str,
    pub root: &'a Path,
    pub started_at: DateTime<Utc>,
    pub link: Option<&'a str>,
}

/// What a build that ran left: its results and what else it found.
pub struct Ran<'a> {
    pub results: &'a RunResults,
    pub rejected: &'a [Rejected],
    pub problems: &'a [Diagnostic],
    pub freshness: &'a [FreshnessResult],
    pub rates: &'a [Rate],
    pub figures: &'a [FigureResult],
    pub failed: bool,
}

impl Report {
    /// The report of a build that ran.
    pub fn of_build(context: &Context, ran: &Ran) -> Report {
        let mut counts = BTreeMap::new();
        let (mut failed, mut warned) = (Vec::new(), Vec::new());
        for result in &ran.results.results {
            *counts.entry(result.status.as_str().to_owned()).or_insert(0) += 1;
            let item = || Item {
                unique_id: result.unique_id.clone(),
                name: result.name.clone(),
                resource_type: result.resource_type.as_str().to_owned(),
                status: result.status.as_str().to_owned(),
                message: result
                    .diagnostic
                    .as_ref()
                    .map(|d| d.message.clone())
                    .unwrap_or_else(|| result.message.clone()),
            };
            match result.status {
                Status::Error | Status::Fail => failed.push(item()),
                Status::Warn => warned.push(item()),
                _ => {}
            }
        }
        let freshness: Vec<Fresh> = ran
            .freshness
            .iter()
            .map(|f| Fresh {
                source: f.name.clone(),
                status: match f.status {
                    FreshnessStatus::Pass => "pass",
                    FreshnessStatus::Warn => "warn",
                    FreshnessStatus::Error => "error",
                    FreshnessStatus::RuntimeError => "runtime error",
                }
                .to_owned(),
                newest: f.max_loaded_at,
                age_seconds: f.max_loaded_at_time_ago_in_s,
                message: f.message.clone(),
            })
            .collect();
        let errors: Vec<String> = ran
            .problems
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(one_line)
            .collect();
        let stale = freshness.iter().filter(|f| f.status != "pass").count();
        let outcome = if ran.failed {
            Outcome::Failure
        } else if !warned.is_empty() || stale > 0 {
            Outcome::Warning
        } else {
            Outcome::Success
        };
        let tests = ran
            .results
            .results
            .iter()
            .filter(|r| matches!(r.resource_type, ResourceType::Test | ResourceType::UnitTest))
            .count();
        let nodes = ran.results.results.len() - tests;
        let mut parts = Vec::new();
        let count = |status: &str| counts.get(status).copied().unwrap_or(0);
        if count("error") > 0 {
            parts.push(format!("{} errored", count("error")));
        }
        if count("fail") > 0 {
            parts.push(format!("{} test{} failed", count("fail"), plural(count("fail"))));
        }
        if count("warn") > 0 {
            parts.push(format!("{} test{} warned", count("warn"), plural(count("warn"))));
        }
        if stale > 0 {
            parts.push(format!("{stale} source{} stale", plural(stale)));
        }
        if !errors.is_empty() && parts.is_empty() {
            parts.push(errors[0].clone());
        }
        let verdict = match outcome {
            Outcome::Failure => "failed",
            Outcome::Warning => "succeeded with warnings",
            Outcome::Success => "succeeded",
        };
        let mut headline = format!(
            "etl {} of `{}` ({}) {verdict}: {nodes} node{}, {tests} test{}",
            context.command,
            context.project,
            context.target,
            plural(nodes),
            plural(tests)
        );
        if !parts.is_empty() {
            headline = format!("{headline}, {}", parts.join(", "));
        }
        Report {
            rates: ran.rates.to_vec(),
            rejected: ran
                .rejected
                .iter()
                .map(|r| RejectedRows {
                    model: r.name.clone(),
                    rows: r.rows,
                    reasons: r.reasons.clone(),
                })
                .collect(),
            figures: ran.figures.to_vec(),
            ..Report::new(context, outcome, headline, counts, errors, failed, warned, freshness)
        }
    }

    /// The report of a build that could not run (`errors` say why).
    pub fn of_errors(context: &Context, errors: &[Diagnostic]) -> Report {
        let errors: Vec<String> = errors.iter().map(one_line).collect();
        let headline = format!(
            "etl {} of `{}` ({}) could not run: {}",
            context.command,
            context.project,
            context.target,
            errors.first().map(String::as_str).unwrap_or("no reason given")
        );
        Report::new(
            context,
            Outcome::Failure,
            headline,
            BTreeMap::new(),
            errors,
            Vec::new(),
            Vec::new(),
            Vec::new(),
        )
    }

    /// A message that only says the channel works (`etl notify test`).
    pub fn test(context: &Context) -> Report {
        let headline = format!(
            "etl notify test of `{}` ({}): this channel works",
            context.project, context.target
        );
        let mut report = Report::new(
            context,
            Outcome::Success,
            headline,
            BTreeMap::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        report.event = "test".to_owned();
        report
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        context: &Context,
        outcome: Outcome,
        headline: String,
        counts: BTreeMap<String, usize>,
        errors: Vec<String>,
        failed: Vec<Item>,
        warned: Vec<Item>,
        freshness: Vec<Fresh>,
    ) -> Report {
        let finished_at = Utc::now();
        let mut where_to_look = vec![format!(
            "{}: what each node and test did",
            context.root.join("target/run_results.json").display()
        )];
        if outcome == Outcome::Failure {
            where_to_look.push(format!(
                "`etl retry` in {} runs again what failed and what it skipped",
                context.root.display()
            ));
        }
        where_to_look.push("`etl docs generate && etl docs serve`: the quality report, rates over the runs".to_owned());
        if let Some(link) = context.link {
            where_to_look.push(link.to_owned());
        }
        Report {
            event: "failure".to_owned(),
            late: false,
            outcome,
            headline,
            project: context.project.to_owned(),
            target: context.target.to_owned(),
            command: context.command.to_owned(),
            invocation_id: context.invocation_id.to_owned(),
            lake: context.lake.to_owned(),
            started_at: context.started_at,
            finished_at,
            elapsed_seconds: (finished_at - context.started_at).num_milliseconds() as f64 / 1000.0,
            counts,
            errors,
            failed,
            warned,
            freshness,
            rates: Vec::new(),
            rejected: Vec::new(),
            figures: Vec::new(),
            where_to_look,
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A diagnostic on one line, with the place it points at.
fn one_line(diag: &Diagnostic) -> String {
    match &diag.span {
        Some(span) => format!("{} ({}:{}:{})", diag.message, span.file.display(), span.line, span.col),
        None => diag.message.clone(),
    }
}

/// When each channel last had its daily summary: `target/notify.json`.
pub struct SummaryState {
    path: PathBuf,
    sent: BTreeMap<String, NaiveDate>,
}

impl SummaryState {
    /// The state of the project at `root` for `target` (an unreadable
    /// file reads as no summary sent).
    pub fn load(root: &Path, target: &str) -> SummaryState {
        let path = root.join("target").join("notify.json");
        let sent = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| v.get("summaries")?.get(target).cloned())
            .and_then(|v| serde_json::from_value::<BTreeMap<String, NaiveDate>>(v).ok())
            .unwrap_or_default();
        SummaryState { path, sent }
    }

    /// Whether `channel` is due its summary on `today`.
    pub fn due(&self, channel: &str, today: NaiveDate) -> bool {
        self.sent.get(channel) != Some(&today)
    }

    /// Records that `channel` had its summary on `today`.
    pub fn record(&mut self, target: &str, channel: &str, today: NaiveDate) -> std::io::Result<()> {
        self.sent.insert(channel.to_owned(), today);
        let mut all = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        all["summaries"][target] = serde_json::to_value(&self.sent).unwrap_or_default();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self.path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(&all).unwrap_or_default())?;
        std::fs::rename(&temporary, &self.path)
    }
}

/// Whether a build should compute the summary's figures: some channel
/// will send a summary or a success message whatever happens.
pub fn wants_figures(notify: &Notify, state: &SummaryState, today: NaiveDate) -> bool {
    !notify.summary.is_empty()
        && notify
            .channels
            .iter()
            .any(|c| c.on.contains(&Event::Success) || (c.on.contains(&Event::Summary) && state.due(&c.name, today)))
}

/// The event `channel` is told of for a build that ended with `outcome`,
/// if any: a failure first, then the day's summary (which carries the
/// warnings), then a warning, then a success.
pub fn event_for(channel: &crate::config::Channel, outcome: Outcome, summary_due: bool) -> Option<Event> {
    let on = |e: Event| channel.on.contains(&e);
    if outcome == Outcome::Failure && on(Event::Failure) {
        Some(Event::Failure)
    } else if on(Event::Summary) && summary_due {
        Some(Event::Summary)
    } else if outcome == Outcome::Warning && on(Event::Warning) {
        Some(Event::Warning)
    } else if outcome != Outcome::Failure && on(Event::Success) {
        Some(Event::Success)
    } else {
        None
    }
}

/// Tells every channel of `notify` that is concerned by `report`, each
/// retried as configured; records the summaries sent in `target/`. One
/// delivery per channel told. A message a channel did not take is kept in
/// its outbox (`target/notify/outbox/`) and sent, marked late, before
/// that channel's next message.
pub async fn send(notify: &Notify, report: &Report, root: &Path) -> Vec<Delivery> {
    let today = report.finished_at.date_naive();
    let mut state = SummaryState::load(root, &report.target);
    let mut out = Vec::new();
    for channel in &notify.channels {
        let Some(event) = event_for(channel, report.outcome, state.due(&channel.name, today)) else {
            continue;
        };
        let outbox = Outbox::new(root, &channel.name);
        // What it missed first, one attempt each: a channel still down
        // is not waited for twice.
        let mut late = 0;
        let mut down = false;
        for (path, mut missed) in outbox.pending() {
            missed.late = true;
            if deliver::attempt(notify, channel, &missed).await.is_err() {
                down = true;
                break;
            }
            let _ = std::fs::remove_file(path);
            late += 1;
        }
        let mut report = report.clone();
        report.event = event.name().to_owned();
        let mut delivery = if down {
            deliver::Delivery {
                channel: channel.name.clone(),
                event: report.event.clone(),
                attempts: 1,
                late: 0,
                kept: None,
                error: Some("it still does not answer for the messages it missed before".to_owned()),
            }
        } else {
            deliver::deliver(notify, channel, &report).await
        };
        delivery.late = late;
        if let Some(error) = &mut delivery.error {
            match outbox.keep(&report) {
                Ok(path) => delivery.kept = Some(path),
                Err(e) => error.push_str(&format!("; and it could not be kept to send later: {e}")),
            }
        } else if channel.on.contains(&Event::Summary) && event != Event::Warning {
            // A failure's message carries the whole summary too.
            if let Err(e) = state.record(&report.target, &channel.name, today) {
                delivery.error = Some(format!(
                    "sent, but the day's summary was not recorded in target/notify.json: {e}"
                ));
            }
        }
        out.push(delivery);
    }
    out
}

/// Sends `report` to each channel (or only the one named `only`),
/// whatever it is told of, retried as configured; nothing is kept or
/// recorded.
pub async fn test(notify: &Notify, report: &Report, only: Option<&str>) -> Result<Vec<Delivery>, Diagnostic> {
    if let Some(name) = only
        && !notify.channels.iter().any(|c| c.name == name)
    {
        let names: Vec<&str> = notify.channels.iter().map(|c| c.name.as_str()).collect();
        return Err(Diagnostic::error(
            crate::diagnostic::Code::Notify,
            format!("no channel of this target is named `{name}`"),
        )
        .with_suggestion(name, names.iter().copied())
        .with_note(if names.is_empty() {
            "the target has no channel on".to_owned()
        } else {
            format!("its channels: {}", names.join(", "))
        }));
    }
    let mut out = Vec::new();
    for channel in notify.channels.iter().filter(|c| only.is_none_or(|n| n == c.name)) {
        out.push(deliver::deliver(notify, channel, report).await);
    }
    Ok(out)
}

/// The messages a channel did not take, oldest first, at most
/// [`Outbox::KEPT`] (the oldest dropped beyond).
struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    const KEPT: usize = 100;

    fn new(root: &Path, channel: &str) -> Outbox {
        let folder: String = channel
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        Outbox {
            dir: root.join("target").join("notify").join("outbox").join(folder),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The messages kept, oldest first; one that does not read is dropped.
    fn pending(&self) -> Vec<(PathBuf, Report)> {
        self.files()
            .into_iter()
            .filter_map(|path| {
                let report = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Report>(&text).ok());
                if report.is_none() {
                    let _ = std::fs::remove_file(&path);
                }
                Some((path, report?))
            })
            .collect()
    }

    /// Keeps `report` to send later; where it is kept.
    fn keep(&self, report: &Report) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let name = format!(
            "{}-{}.json",
            report.finished_at.format("%Y%m%dT%H%M%S%.3fZ"),
            report.invocation_id
        );
        let path = self.dir.join(name);
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec(report).unwrap_or_default())?;
        std::fs::rename(&temporary, &path)?;
        let files = self.files();
        for old in files.iter().take(files.len().saturating_sub(Self::KEPT)) {
            let _ = std::fs::remove_file(old);
        }
        Ok(path)
    }
}
