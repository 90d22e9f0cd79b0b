//! Source freshness, as `dbt source freshness` checks it: the newest
//! `loaded_at_field` of each source table against `warn_after` and
//! `error_after`. A file source without a `loaded_at_field` is as fresh as
//! its newest file (its modification time in the store): the freshness
//! dbt reads from a warehouse's metadata, for a folder of daily files.
//!
//! ```yaml
//! sources:
//!   - name: bronze
//!     loaded_at_field: ingested_at
//!     freshness:
//!       warn_after: {count: 12, period: hour}
//!       error_after: {count: 1, period: day}
//!       filter: "ingested_at > now() - interval '7 days'"   # optional
//! ```

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use serde::Serialize;
use serde_json::Value;

use crate::config::Freshness;
use crate::diagnostic::{Code, Diagnostic};
use crate::graph::{Dag, ResourceType};
use crate::plan::Registry;
use crate::project::{Project, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreshnessStatus {
    Pass,
    Warn,
    Error,
    #[serde(rename = "runtime error")]
    RuntimeError,
}

#[derive(Debug, Clone, Serialize)]
pub struct FreshnessResult {
    pub unique_id: String,
    /// `source.table`.
    pub name: String,
    pub status: FreshnessStatus,
    pub max_loaded_at: Option<DateTime<Utc>>,
    pub snapshotted_at: DateTime<Utc>,
    pub max_loaded_at_time_ago_in_s: Option<f64>,
    pub criteria: Value,
    pub message: String,
    #[serde(skip)]
    pub diagnostic: Option<Diagnostic>,
}

/// Checks every selected source that declares a freshness.
pub async fn check_freshness(
    registry: &Registry,
    project: &Project,
    dag: &Dag,
    nodes: &[petgraph::graph::NodeIndex],
) -> Vec<FreshnessResult> {
    let mut out = Vec::new();
    for &index in nodes {
        let node = dag.node(index);
        if node.resource_type != ResourceType::Source {
            continue;
        }
        let source = node.source(project);
        let Some(freshness) = &node.config.freshness else {
            continue;
        };
        let snapshotted_at = Utc::now();
        let mut result = FreshnessResult {
            unique_id: node.unique_id.clone(),
            name: format!("{}.{}", source.source_name, source.name),
            status: FreshnessStatus::RuntimeError,
            max_loaded_at: None,
            snapshotted_at,
            max_loaded_at_time_ago_in_s: None,
            criteria: freshness.criteria.clone(),
            message: String::new(),
            diagnostic: None,
        };
        match check_one(registry, project, dag, index, source, freshness, snapshotted_at).await {
            Ok((status, max, age, message)) => {
                result.status = status;
                result.max_loaded_at = max;
                result.max_loaded_at_time_ago_in_s = age;
                result.message = message;
            }
            Err(diag) => {
                result.message = diag.message.clone();
                result.diagnostic = Some(diag);
            }
        }
        out.push(result);
    }
    out
}

type Checked = (FreshnessStatus, Option<DateTime<Utc>>, Option<f64>, String);

async fn check_one(
    registry: &Registry,
    project: &Project,
    dag: &Dag,
    index: petgraph::graph::NodeIndex,
    source: &Source,
    freshness: &Freshness,
    now: DateTime<Utc>,
) -> Result<Checked, Diagnostic> {
    let fail = |code: Code, message: String| Diagnostic::error(code, message).with_span(source.span.clone());
    let name = format!("{}.{}", source.source_name, source.name);
    let (warn_after, error_after) = (freshness.warn_after, freshness.error_after);
    let judge = |age: f64| {
        if error_after.is_some_and(|e| age > e) {
            FreshnessStatus::Error
        } else if warn_after.is_some_and(|w| age > w) {
            FreshnessStatus::Warn
        } else {
            FreshnessStatus::Pass
        }
    };
    let nothing = if error_after.is_some() {
        FreshnessStatus::Error
    } else {
        FreshnessStatus::Warn
    };
    let Some(field) = dag.node(index).config.loaded_at_field.as_deref() else {
        if source.format == crate::project::SourceFormat::Delta || freshness.filter.is_some() {
            return Err(fail(
                Code::Freshness,
                format!("source `{name}` has a `freshness` but no `loaded_at_field`"),
            )
            .with_help(
                "a file source without `loaded_at_field` is as fresh as its newest file; a Delta source or a \
                 `filter` needs a column to read",
            ));
        }
        let files = match crate::plan::list_source_files(&registry.ctx, source).await {
            Ok(files) => files,
            Err(diag) if diag.code == Code::MissingSource => Vec::new(),
            Err(diag) => return Err(diag),
        };
        let Some(newest) = files.iter().map(|f| f.last_modified).max() else {
            return Ok((nothing, None, None, format!("no file matches `{}`", source.location)));
        };
        let age = (now - newest).num_milliseconds() as f64 / 1000.0;
        return Ok((
            judge(age),
            Some(newest),
            Some(age),
            format!("newest file is {} old", human_age(age)),
        ));
    };
    let filter = freshness
        .filter
        .as_ref()
        .map(|f| format!(" where {f}"))
        .unwrap_or_default();

    registry.ensure(dag, project, index).await?;
    let relation = dag.node(index).relation.sql();
    let sql = format!("select max(cast({field} as timestamp)) from {relation}{filter}");
    let query_error = |e: datafusion::error::DataFusionError| {
        fail(
            Code::Freshness,
            format!("checking the freshness of `{name}`: {}", e.find_root()),
        )
    };
    let batches = registry
        .ctx
        .sql(&sql)
        .await
        .map_err(query_error)?
        .collect()
        .await
        .map_err(query_error)?;
    let max = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            let column =
                datafusion::arrow::compute::cast(b.column(0), &DataType::Timestamp(TimeUnit::Microsecond, None))
                    .ok()?;
            let column = column.as_primitive::<TimestampMicrosecondType>();
            (!column.is_null(0)).then(|| column.value(0))
        })
        .and_then(DateTime::<Utc>::from_timestamp_micros);
    let Some(max) = max else {
        return Ok((
            nothing,
            None,
            None,
            format!("`{field}` has no value: nothing was loaded"),
        ));
    };
    let age = (now - max).num_milliseconds() as f64 / 1000.0;
    Ok((
        judge(age),
        Some(max),
        Some(age),
        format!("newest `{field}` is {} old", human_age(age)),
    ))
}

/// What a build says of a source that is not fresh: a warning past
/// `warn_after` (or when it cannot be checked), an error past
/// `error_after`. `None` for a fresh source.
pub fn stale_diagnostic(
    result: &FreshnessResult,
    freshness: &Freshness,
    span: Option<crate::diagnostic::Span>,
) -> Option<Diagnostic> {
    let after = |seconds: Option<f64>, what: &str| seconds.map(|s| format!("{what} after {}", human_age(s)));
    let limits: Vec<String> = [
        after(freshness.warn_after, "warn"),
        after(freshness.error_after, "error"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let stale = format!(
        "source `{}` is stale: {} ({})",
        result.name,
        result.message,
        limits.join(", ")
    );
    let diag = match result.status {
        FreshnessStatus::Pass => return None,
        FreshnessStatus::Warn => Diagnostic::warning(Code::Freshness, stale),
        FreshnessStatus::Error => Diagnostic::error(Code::Freshness, stale),
        FreshnessStatus::RuntimeError => Diagnostic::warning(
            Code::Freshness,
            format!(
                "the freshness of source `{}` could not be checked: {}",
                result.name, result.message
            ),
        ),
    };
    Some(diag.with_span(span))
}

fn human_age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1}h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}
