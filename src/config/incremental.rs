//! How an incremental model applies its new rows: its strategy (with the
//! settings each strategy needs), its keys and what happens when its
//! columns change.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;

use super::{Checker, string_or_list};

/// `incremental_strategy`, with what each one needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Append,
    Merge,
    DeleteInsert,
    InsertOverwrite,
    Microbatch(MicrobatchConfig),
}

impl Strategy {
    pub const NAMES: [&str; 5] = ["append", "merge", "delete+insert", "insert_overwrite", "microbatch"];

    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::Append => "append",
            Strategy::Merge => "merge",
            Strategy::DeleteInsert => "delete+insert",
            Strategy::InsertOverwrite => "insert_overwrite",
            Strategy::Microbatch(_) => "microbatch",
        }
    }
}

/// `on_schema_change`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSchemaChange {
    Ignore,
    Fail,
    AppendNewColumns,
    SyncAllColumns,
}

/// An incremental model's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    pub strategy: Strategy,
    pub unique_key: Vec<String>,
    pub partition_by: Vec<String>,
    pub on_schema_change: OnSchemaChange,
    pub merge: MergeSettings,
}

/// What a merge updates and which rows of the table it considers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergeSettings {
    /// `merge_update_columns`: only these columns of a matched row are
    /// updated; every column when empty.
    pub update_columns: Vec<String>,
    /// `merge_exclude_columns`: these columns of a matched row keep their
    /// value.
    pub exclude_columns: Vec<String>,
    /// `incremental_predicates`: SQL conditions added to the merge's match,
    /// on `DBT_INTERNAL_DEST` (the table) and `DBT_INTERNAL_SOURCE` (the new
    /// rows), as dbt names them.
    pub predicates: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Hour,
    Day,
    Month,
    Year,
}

/// A microbatch model's windows: the column that places each row, the
/// size of a window, where the first build starts, and how many windows
/// before the current one a later build redoes.
#[derive(Debug, Clone, PartialEq)]
pub struct MicrobatchConfig {
    pub event_time: String,
    pub batch_size: BatchSize,
    pub begin: NaiveDateTime,
    pub lookback: u32,
}

/// Parses a point in time as users write it: `2024-01-31`,
/// `2024-01-31T06:00:00` or `2024-01-31 06:00:00` (UTC).
pub fn parse_time(text: &str) -> Result<NaiveDateTime, String> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(NaiveTime::MIN));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), format) {
            return Ok(t);
        }
    }
    Err(format!(
        "`{text}` is not a date or time; write `2024-01-31` or `2024-01-31T06:00:00`"
    ))
}

/// The keys an incremental model sets, checked. `None` when one is wrong
/// (the checker holds why).
pub(super) fn incremental(c: &mut Checker<'_>) -> Option<Incremental> {
    // Each key is checked, so that every wrong one is reported at once.
    let unique_key = c.key_list("unique_key");
    let partition_by = c.key_list("partition_by");
    let named = c.choice("incremental_strategy", &Strategy::NAMES);
    let on_schema_change = c.choice(
        "on_schema_change",
        &["ignore", "fail", "append_new_columns", "sync_all_columns"],
    );
    let (unique_key, partition_by, named, on_schema_change) = (unique_key?, partition_by?, named?, on_schema_change?);
    let strategy = match named {
        None if unique_key.is_empty() => Strategy::Append,
        None => c.keyed_default.clone(),
        Some("append") => Strategy::Append,
        Some("merge") => Strategy::Merge,
        Some("delete+insert") => Strategy::DeleteInsert,
        Some("insert_overwrite") => Strategy::InsertOverwrite,
        Some(_) => Strategy::Microbatch(microbatch(c)?),
    };
    let name = c.name;
    if matches!(strategy, Strategy::Merge | Strategy::DeleteInsert) && unique_key.is_empty() {
        c.fail(
            "incremental_strategy",
            format!(
                "model `{name}`: the `{}` strategy needs a `unique_key`",
                strategy.as_str()
            ),
        );
        return None;
    }
    if strategy == Strategy::InsertOverwrite && partition_by.is_empty() {
        c.fail(
            "incremental_strategy",
            format!("model `{name}`: `insert_overwrite` replaces partitions and needs `partition_by`"),
        );
        return None;
    }
    let on_schema_change = match on_schema_change {
        None | Some("ignore") => OnSchemaChange::Ignore,
        Some("fail") => OnSchemaChange::Fail,
        Some("append_new_columns") => OnSchemaChange::AppendNewColumns,
        Some(_) => OnSchemaChange::SyncAllColumns,
    };
    let merge = merge_settings(c, &strategy)?;
    Some(Incremental {
        strategy,
        unique_key,
        partition_by,
        on_schema_change,
        merge,
    })
}

fn merge_settings(c: &mut Checker<'_>, strategy: &Strategy) -> Option<MergeSettings> {
    let update_columns = c.key_list("merge_update_columns");
    let exclude_columns = c.key_list("merge_exclude_columns");
    let predicates = match c.raw.value("incremental_predicates") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(value) => match string_or_list(value) {
            Ok(list) => Some(list),
            Err(_) => {
                c.fail(
                    "incremental_predicates",
                    format!("`incremental_predicates` lists SQL conditions, not `{value}`"),
                );
                None
            }
        },
    };
    let settings = MergeSettings {
        update_columns: update_columns?,
        exclude_columns: exclude_columns?,
        predicates: predicates?,
    };
    let name = c.name;
    if !settings.update_columns.is_empty() && !settings.exclude_columns.is_empty() {
        c.fail(
            "merge_exclude_columns",
            format!("model `{name}`: set `merge_update_columns` or `merge_exclude_columns`, not both"),
        );
        return None;
    }
    if *strategy == Strategy::DeleteInsert && !settings.predicates.is_empty() {
        // Left out, they could change which rows are replaced.
        c.fail(
            "incremental_predicates",
            format!(
                "model `{name}`: etl takes `incremental_predicates` with the `merge` strategy only, not `delete+insert`"
            ),
        );
        return None;
    }
    if *strategy != Strategy::Merge && settings != MergeSettings::default() {
        c.merge_keys_unused(&format!("the `{}` strategy does not merge", strategy.as_str()));
        return Some(MergeSettings::default());
    }
    Some(settings)
}

fn microbatch(c: &mut Checker<'_>) -> Option<MicrobatchConfig> {
    let name = c.name;
    let Some(event_time) = c.string("event_time")? else {
        c.fail(
            "incremental_strategy",
            format!(
                "microbatch model `{name}` needs `event_time`: the column of its result that places each row in a batch"
            ),
        );
        return None;
    };
    let batch_size = match c.choice("batch_size", &["hour", "day", "month", "year"])? {
        Some("hour") => BatchSize::Hour,
        Some("day") => BatchSize::Day,
        Some("month") => BatchSize::Month,
        Some(_) => BatchSize::Year,
        None => {
            c.fail(
                "incremental_strategy",
                format!("microbatch model `{name}` needs `batch_size`: hour, day, month or year"),
            );
            return None;
        }
    };
    let begin = match c.raw.value("begin") {
        Some(Value::String(s)) => match parse_time(s) {
            Ok(t) => t,
            Err(m) => {
                c.fail("begin", format!("`begin`: {m}"));
                return None;
            }
        },
        Some(other) => {
            let other = other.clone();
            c.fail(
                "begin",
                format!("`begin` must be a date such as \"2024-01-01\", not {other}"),
            );
            return None;
        }
        None => {
            c.fail(
                "incremental_strategy",
                format!("microbatch model `{name}` needs `begin`: the date its first build starts from"),
            );
            return None;
        }
    };
    let lookback = match c.raw.value("lookback") {
        None => 1,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                let v = v.clone();
                c.fail("lookback", format!("`lookback` must be a number of batches, not {v}"));
                return None;
            }
        },
    };
    Some(MicrobatchConfig {
        event_time,
        batch_size,
        begin,
        lookback,
    })
}

/// A key list as dbt takes it: a string, a list of strings, or (dbt-spark's
/// `partition_by`) `{field: day, data_type: date}`.
pub(super) fn key_list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Object(map) => match map.get("field") {
            Some(Value::String(field)) => Ok(vec![field.clone()]),
            _ => Err(format!("must name its column in `field`, not `{value}`")),
        },
        other => string_or_list(other),
    }
}
