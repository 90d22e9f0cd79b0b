//! Microbatch models (dbt's `incremental_strategy: microbatch`): the model
//! is built one time window at a time, each window its own Delta commit
//! that replaces the rows whose `event_time` falls in it. Every upstream
//! model or source that declares an `event_time` is read through a filter
//! to the window, so each batch only reads its own slice.
//!
//! Which windows a build processes:
//! - the first build (or `--full-refresh`): from `begin` up to now;
//! - later builds: the current window and the `lookback` ones before it;
//! - `--event-time-start` / `--event-time-end`: exactly that range (a
//!   backfill, or the retry of a failed batch).
//!
//! A failed batch does not stop the others; the error names it and gives
//! the command that retries it alone.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use datafusion::logical_expr::LogicalPlan;
use serde_json::Value;

use super::{Applied, Change, IncrementalConfig, apply};
use crate::config::{BatchSize, MicrobatchConfig};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::lake::{self, Written};
use crate::materialize::{Build, NodeRun};
use crate::plan::{Window, filter_scans};

/// The start of the batch `t` falls in.
fn truncate(t: NaiveDateTime, size: BatchSize) -> NaiveDateTime {
    let date = t.date();
    match size {
        BatchSize::Hour => date.and_hms_opt(t.hour(), 0, 0).unwrap_or(t),
        BatchSize::Day => date.and_time(NaiveTime::MIN),
        BatchSize::Month => date.with_day(1).unwrap_or(date).and_time(NaiveTime::MIN),
        BatchSize::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1)
            .unwrap_or(date)
            .and_time(NaiveTime::MIN),
    }
}

/// `t` moved by `n` batches (`t` at a batch start).
fn shift(t: NaiveDateTime, size: BatchSize, n: i32) -> NaiveDateTime {
    match size {
        BatchSize::Hour => t + Duration::hours(n.into()),
        BatchSize::Day => t + Duration::days(n.into()),
        BatchSize::Month | BatchSize::Year => {
            let months = if size == BatchSize::Month { n } else { n * 12 };
            let total = t.year() * 12 + t.month0() as i32 + months;
            NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1)
                .unwrap_or(t.date())
                .and_time(NaiveTime::MIN)
        }
    }
}

/// The windows a build processes, oldest first: `[start, end)` cut at
/// batch boundaries, where a start or end inside a batch takes all of it.
pub fn windows(
    config: &MicrobatchConfig,
    incremental: bool,
    range: (Option<NaiveDateTime>, Option<NaiveDateTime>),
    now: NaiveDateTime,
) -> Vec<Window> {
    let size = config.batch_size;
    let start = match range.0 {
        Some(t) => truncate(t, size),
        None if incremental => shift(truncate(now, size), size, -(config.lookback as i32)),
        None => truncate(config.begin, size),
    };
    let end = range.1.unwrap_or(now);
    let mut out = Vec::new();
    let mut t = start;
    while t < end {
        let next = shift(t, size, 1);
        out.push(Window { start: t, end: next });
        t = next;
    }
    out
}

fn label(window: Window, size: BatchSize) -> String {
    match size {
        BatchSize::Hour => window.start.format("%Y-%m-%dT%H:00").to_string(),
        BatchSize::Day => window.start.format("%Y-%m-%d").to_string(),
        BatchSize::Month => window.start.format("%Y-%m").to_string(),
        BatchSize::Year => window.start.format("%Y").to_string(),
    }
}

/// Builds a microbatch model batch by batch.
pub async fn build_microbatch(
    build: &Build,
    run: &NodeRun,
    config: &IncrementalConfig,
    base: LogicalPlan,
    commit: lake::Commit,
) -> Result<Applied, Diagnostic> {
    let index = run.index;
    let dag = &build.dag;
    let node = dag.node(index);
    let batch = config.microbatch().expect("a microbatch model has its config");
    let incremental = build.options.incremental.contains(&node.name);
    let range = (build.options.event_time_start, build.options.event_time_end);
    let windows = windows(batch, incremental, range, Utc::now().naive_utc());
    // The upstream relations cut to each window.
    let filtered: Vec<(crate::lake::Relation, String)> = dag
        .scanned_parents(index)
        .into_iter()
        .map(|p| dag.node(p))
        .filter_map(|p| {
            let column = p.config.event_time.clone()?;
            Some((p.relation.clone(), column))
        })
        .collect();

    let mut table_exists = incremental;
    let mut expected_version = commit.expected_version;
    let mut rows = 0;
    let mut last: Option<Written> = None;
    let mut failures: Vec<(Window, Diagnostic)> = Vec::new();
    for (i, &window) in windows.iter().enumerate() {
        let mut plan = base.clone();
        for (relation, column) in &filtered {
            plan = filter_scans(plan, relation, column, window).map_err(|e| {
                Diagnostic::error(
                    Code::InvalidConfig,
                    format!("filtering {} to a batch: {e}", relation.sql()),
                )
                .with_span(Some(Span::file(&node.path)))
            })?;
        }
        let mut commit = lake::Commit {
            expected_version,
            ..commit.clone()
        };
        if let Some(Value::Object(etl)) = commit.metadata.get_mut("etl") {
            etl.insert(
                "batch".into(),
                serde_json::json!({"start": window.start.to_string(), "end": window.end.to_string()}),
            );
            // Only a build whose every batch committed is complete.
            if i + 1 < windows.len() || !failures.is_empty() {
                etl.remove("fingerprint");
            }
        }
        let change = if table_exists {
            Change::Window {
                column: batch.event_time.clone(),
                window,
            }
        } else {
            Change::Replace
        };
        match apply(build, run, config, plan, change, commit).await {
            Ok(written) => {
                rows += written.rows;
                last = Some(written);
                table_exists = true;
                // The next batch builds on this one's version.
                expected_version = lake::Expected::Version(written.version);
            }
            Err(diag) => failures.push((window, diag)),
        }
    }

    let count = windows.len();
    let plural = |n: usize| if n == 1 { "" } else { "es" };
    if failures.is_empty() {
        let written = match last {
            Some(w) => Written {
                rows,
                version: w.version,
            },
            None => {
                let url = build.registry.location(&node.relation);
                let version = lake::current_version(&build.registry.ctx, &url).await;
                Written {
                    rows: 0,
                    version: version.unwrap_or_default() as i64,
                }
            }
        };
        let span = match (windows.first(), windows.last()) {
            (Some(a), Some(b)) => format!(" ({} to {})", label(*a, batch.batch_size), label(*b, batch.batch_size)),
            _ => {
                return Ok(Applied {
                    message: "microbatch: no batch in the range asked for".into(),
                    written,
                });
            }
        };
        return Ok(Applied {
            message: format!(
                "microbatch: {count} batch{}{span}, {}",
                plural(count),
                crate::materialize::rows_text(rows)
            ),
            written,
        });
    }
    let failed = failures.len();
    let first = failures[0].0;
    let end = failures[failed - 1].0.end;
    let mut diag = Diagnostic::error(
        Code::Microbatch,
        format!("`{}`: {failed} of {count} batch{} failed", node.name, plural(count)),
    )
    .with_span(Some(Span::file(&node.path)));
    for (window, d) in &failures {
        diag = diag.with_note(format!(
            "batch {}: {}",
            label(*window, batch.batch_size),
            d.message.lines().next().unwrap_or_default()
        ));
    }
    // Run again as the failed batches' own errors ask (each batch replaces
    // its window: batches that committed are written the same again).
    diag = diag.with_cause(failures.iter().find_map(|(_, d)| d.cause));
    let committed = count - failed;
    diag = diag
        .with_note(format!(
            "the other {committed} batch{} committed; each failed batch left the table as it was",
            plural(committed)
        ))
        .with_help(format!(
            "once fixed, rebuild only the failed batches: etl build --select {} --event-time-start {} --event-time-end {}",
            node.name,
            first.start.format("%Y-%m-%dT%H:%M:%S"),
            end.format("%Y-%m-%dT%H:%M:%S")
        ));
    Err(diag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_time;

    fn t(s: &str) -> NaiveDateTime {
        parse_time(s).unwrap()
    }

    fn config(size: BatchSize, lookback: u32) -> MicrobatchConfig {
        MicrobatchConfig {
            event_time: "ts".into(),
            batch_size: size,
            begin: t("2024-01-30"),
            lookback,
        }
    }

    fn starts(w: &[Window]) -> Vec<String> {
        w.iter().map(|w| w.start.to_string()).collect()
    }

    #[test]
    fn a_first_build_runs_from_begin_to_the_batch_holding_now() {
        let w = windows(
            &config(BatchSize::Day, 1),
            false,
            (None, None),
            t("2024-02-02T10:00:00"),
        );
        assert_eq!(
            starts(&w),
            [
                "2024-01-30 00:00:00",
                "2024-01-31 00:00:00",
                "2024-02-01 00:00:00",
                "2024-02-02 00:00:00"
            ]
        );
        assert_eq!(w[3].end, t("2024-02-03"));
    }

    #[test]
    fn later_builds_take_the_current_batch_and_the_lookback() {
        let w = windows(&config(BatchSize::Day, 2), true, (None, None), t("2024-02-02T10:00:00"));
        assert_eq!(
            starts(&w),
            ["2024-01-31 00:00:00", "2024-02-01 00:00:00", "2024-02-02 00:00:00"]
        );
        let w = windows(
            &config(BatchSize::Hour, 0),
            true,
            (None, None),
            t("2024-02-02T10:30:00"),
        );
        assert_eq!(starts(&w), ["2024-02-02 10:00:00"]);
    }

    #[test]
    fn an_explicit_range_is_cut_at_batch_boundaries() {
        let range = (Some(t("2024-01-15T06:00:00")), Some(t("2024-03-01")));
        let w = windows(&config(BatchSize::Month, 1), true, range, t("2030-01-01"));
        assert_eq!(starts(&w), ["2024-01-01 00:00:00", "2024-02-01 00:00:00"]);
        assert_eq!(w[1].end, t("2024-03-01"));
        let range = (Some(t("2023-12-01")), Some(t("2025-01-01")));
        let w = windows(&config(BatchSize::Year, 1), true, range, t("2030-01-01"));
        assert_eq!(starts(&w), ["2023-01-01 00:00:00", "2024-01-01 00:00:00"]);
    }

    #[test]
    fn months_shift_across_years() {
        assert_eq!(shift(t("2024-11-01"), BatchSize::Month, 3), t("2025-02-01"));
        assert_eq!(shift(t("2024-01-01"), BatchSize::Month, -1), t("2023-12-01"));
    }

    #[test]
    fn times_parse_in_the_usual_spellings() {
        assert_eq!(t("2024-01-31T06:00:00"), t("2024-01-31 06:00:00"));
        assert_eq!(t("2024-01-31T06:00:00Z"), t("2024-01-31 06:00"));
        assert!(parse_time("31/01/2024").is_err());
    }
}
