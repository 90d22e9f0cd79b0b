//! A snapshot's settings: how it tells a changed row (its strategy), which
//! rows are the same entity (`unique_key`), what happens to rows gone from
//! its query (`hard_deletes`), and the names of the columns it adds.

use serde_json::Value;

use super::{Checker, string_or_list};

/// `strategy`, with what each one needs.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotStrategy {
    /// A row changed when its `updated_at` is later than the snapshot's.
    Timestamp { updated_at: String },
    /// A row changed when one of `columns` differs; times are the
    /// snapshot's (or `updated_at`'s, when set).
    Check {
        columns: CheckColumns,
        updated_at: Option<String>,
    },
}

impl SnapshotStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            SnapshotStrategy::Timestamp { .. } => "timestamp",
            SnapshotStrategy::Check { .. } => "check",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckColumns {
    All,
    Listed(Vec<String>),
}

/// `hard_deletes` (or the older `invalidate_hard_deletes: true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardDeletes {
    /// Rows gone from the query stay current.
    Ignore,
    /// Their current version is closed (`dbt_valid_to` set).
    Invalidate,
    /// Closed, and a row marked `dbt_is_deleted = 'True'` added.
    NewRecord,
}

/// The names of the columns a snapshot adds (`snapshot_meta_column_names`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetaColumns {
    pub valid_from: String,
    pub valid_to: String,
    pub scd_id: String,
    pub updated_at: String,
    pub is_deleted: String,
}

impl Default for MetaColumns {
    fn default() -> MetaColumns {
        MetaColumns {
            valid_from: "dbt_valid_from".into(),
            valid_to: "dbt_valid_to".into(),
            scd_id: "dbt_scd_id".into(),
            updated_at: "dbt_updated_at".into(),
            is_deleted: "dbt_is_deleted".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub unique_key: Vec<String>,
    pub strategy: SnapshotStrategy,
    pub hard_deletes: HardDeletes,
    pub columns: MetaColumns,
    /// `dbt_valid_to_current`: a SQL expression current rows hold in
    /// `dbt_valid_to` instead of null.
    pub valid_to_current: Option<String>,
}

/// The keys a snapshot sets, checked. `None` when one is wrong (the
/// checker holds why).
pub(super) fn snapshot(c: &mut Checker<'_>) -> Option<Snapshot> {
    let name = c.name.to_owned();
    let unique_key = c.key_list("unique_key");
    let strategy = c.choice("strategy", &["timestamp", "check"]);
    let updated_at = c.string("updated_at");
    let hard_deletes = c.choice("hard_deletes", &["ignore", "invalidate", "new_record"]);
    let invalidate = c.flag("invalidate_hard_deletes");
    let valid_to_current = c.string("dbt_valid_to_current");
    let columns = meta_columns(c);
    let (unique_key, strategy, updated_at, hard_deletes, invalidate, valid_to_current, columns) = (
        unique_key?,
        strategy?,
        updated_at?,
        hard_deletes?,
        invalidate?,
        valid_to_current?,
        columns?,
    );
    if unique_key.is_empty() {
        // Said at the snapshot's config (its `strategy`), as the key is not there.
        c.fail_with_help(
            if c.raw.value("unique_key").is_some() {
                "unique_key"
            } else {
                "strategy"
            },
            format!("snapshot `{name}` needs a `unique_key`"),
            "set `unique_key` to the column (or list of columns) naming each entity the snapshot tracks",
        );
        return None;
    }
    let strategy = match strategy {
        None => {
            c.fail_with_help(
                "strategy",
                format!("snapshot `{name}` needs a `strategy`"),
                "set `strategy: timestamp` with `updated_at`, or `strategy: check` with `check_cols`",
            );
            return None;
        }
        Some("timestamp") => match updated_at {
            Some(updated_at) => SnapshotStrategy::Timestamp { updated_at },
            None => {
                c.fail(
                    "strategy",
                    format!("snapshot `{name}`: the `timestamp` strategy needs `updated_at`, the column that says when a row last changed"),
                );
                return None;
            }
        },
        Some(_) => {
            let columns = match c.raw.value("check_cols") {
                Some(Value::String(s)) if s == "all" => CheckColumns::All,
                None | Some(Value::Null) => {
                    c.fail(
                        "strategy",
                        format!(
                            "snapshot `{name}`: the `check` strategy needs `check_cols` (`all` or a list of columns)"
                        ),
                    );
                    return None;
                }
                Some(value) => match string_or_list(value) {
                    Ok(list) if !list.is_empty() => CheckColumns::Listed(list),
                    _ => {
                        c.fail(
                            "check_cols",
                            format!("`check_cols` is `all` or a list of columns, not `{value}`"),
                        );
                        return None;
                    }
                },
            };
            SnapshotStrategy::Check { columns, updated_at }
        }
    };
    let hard_deletes = match (hard_deletes, invalidate) {
        (Some(_), Some(_)) => {
            c.fail(
                "invalidate_hard_deletes",
                format!("snapshot `{name}`: set `hard_deletes` or `invalidate_hard_deletes`, not both"),
            );
            return None;
        }
        (Some("invalidate"), None) | (None, Some(true)) => HardDeletes::Invalidate,
        (Some("new_record"), None) => HardDeletes::NewRecord,
        _ => HardDeletes::Ignore,
    };
    Some(Snapshot {
        unique_key,
        strategy,
        hard_deletes,
        columns,
        valid_to_current,
    })
}

/// `snapshot_meta_column_names: {dbt_valid_from: ..., ...}`.
fn meta_columns(c: &mut Checker<'_>) -> Option<MetaColumns> {
    let key = "snapshot_meta_column_names";
    let mut columns = MetaColumns::default();
    let map = match c.raw.value(key) {
        None | Some(Value::Null) => return Some(columns),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            c.fail(key, format!("`{key}` maps dbt's column names to yours, not `{other}`"));
            return None;
        }
    };
    for (name, value) in map {
        let slot = match name.as_str() {
            "dbt_valid_from" => &mut columns.valid_from,
            "dbt_valid_to" => &mut columns.valid_to,
            "dbt_scd_id" => &mut columns.scd_id,
            "dbt_updated_at" => &mut columns.updated_at,
            "dbt_is_deleted" => &mut columns.is_deleted,
            other => {
                c.fail(
                    key,
                    format!(
                        "`{key}`: `{other}` is not one of dbt_valid_from, dbt_valid_to, dbt_scd_id, dbt_updated_at, \
                         dbt_is_deleted"
                    ),
                );
                return None;
            }
        };
        match value {
            Value::String(s) if !s.trim().is_empty() => *slot = s.trim().to_owned(),
            Value::Null => {}
            other => {
                c.fail(key, format!("`{key}.{name}` must be a column name, not `{other}`"));
                return None;
            }
        }
    }
    Some(columns)
}
