//! Delta tables: opening them, writing a model's rows in one atomic
//! commit (overwrite, append, merge) that refuses to land on a version
//! another build replaced, and reading a table's log: what etl recorded,
//! which files a version added, what is missing or unreadable.

use super::*;

/// The Delta table at `url`, loaded when it exists, reached through the
/// session's store for its bucket (see [`connect`]).
pub(super) async fn table_at(ctx: &SessionContext, url: &Url) -> Result<DeltaTable, DeltaTableError> {
    let mut table = table_handle(ctx, url)?;
    match table.load().await {
        // A location with no table yet is where a write creates one.
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(table),
        // delta-rs also fails on a folder that does not exist: a table with
        // no commit at all is no table yet either.
        Err(e) if !has_commits(ctx, url).await => {
            tracing::trace!("no Delta table at `{url}` yet: {e}");
            Ok(table)
        }
        Err(e) => Err(e),
    }
}

/// `loaded`, the table at `url` as loaded earlier, at its latest version:
/// only the commits since are read. Loaded afresh when it is another
/// table's, when it had no version, or when its latest commit is not in
/// the store (the table was deleted since, or replaced by a new log):
/// going on from it would commit a version with nothing under it.
async fn brought_up_to_date(
    ctx: &SessionContext,
    url: &Url,
    mut loaded: DeltaTable,
) -> Result<DeltaTable, DeltaTableError> {
    let same_place = loaded.table_url().as_str().trim_end_matches('/') == url.as_str().trim_end_matches('/');
    if !same_place || loaded.version().is_none() || loaded.update_incremental(None).await.is_err() {
        return table_at(ctx, url).await;
    }
    let version = loaded.version().unwrap_or_default();
    let store = store_for(ctx, url).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    let latest = commit_path(url, version as i64).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    match store.head(&latest).await {
        Ok(_) => Ok(loaded),
        Err(_) => table_at(ctx, url).await,
    }
}

/// A handle on the table at `url`, not loaded yet.
pub(super) fn table_handle(ctx: &SessionContext, url: &Url) -> Result<DeltaTable, DeltaTableError> {
    let store = store_for(ctx, url).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    deltalake::DeltaTableBuilder::from_url(url.clone())?
        .with_storage_backend(store, url.clone())
        .build()
}

/// Where commit `version` of the table at `url` is in its store.
fn commit_path(url: &Url, version: i64) -> Result<StorePath, object_store::path::Error> {
    StorePath::from_url_path(format!("{}_delta_log/{version:020}.json", url.path()))
}

/// The text of commit `version` of the table at `url`; `None` when its
/// log entry is not there (never written, or cleaned up since).
pub(super) async fn read_commit(
    store: &dyn ObjectStore,
    url: &Url,
    version: i64,
) -> Result<Option<String>, object_store::Error> {
    let path = commit_path(url, version).map_err(|e| object_store::Error::Generic {
        store: "lake",
        source: Box::new(e),
    })?;
    match store.get(&path).await {
        Ok(got) => Ok(Some(String::from_utf8_lossy(&got.bytes().await?).into_owned())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The actions of a commit's text, one JSON object a line.
pub(super) fn commit_actions(text: &str) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// Whether the folder at `url` holds any Delta commit (a listing error
/// counts as yes: the caller then reports the error it had).
pub async fn has_commits(ctx: &SessionContext, url: &Url) -> bool {
    let Ok(store) = store_for(ctx, url) else {
        return true;
    };
    let Ok(log) = StorePath::from_url_path(format!("{}_delta_log/", url.path())) else {
        return true;
    };
    let mut listing = store.list(Some(&log));
    match listing.try_next().await {
        Ok(first) => first.is_some(),
        Err(_) => true,
    }
}

/// Opens the Delta table at `url`; `None` when there is none yet.
pub async fn open_table(ctx: &SessionContext, url: &Url) -> Result<Option<DeltaTable>, DeltaTableError> {
    let table = table_at(ctx, url).await?;
    Ok(table.version().is_some().then_some(table))
}

/// The current version of the table at `url`; `None` when there is none
/// (or it cannot be read).
pub async fn current_version(ctx: &SessionContext, url: &Url) -> Option<u64> {
    open_table(ctx, url).await.ok().flatten().and_then(|t| t.version())
}

/// A DataFusion provider reading the latest version of the table at `url`.
///
/// Built with the build's session, so that its scans follow the session's
/// Parquet options. Without one, delta-rs turns `pushdown_filters` on for
/// every scan with a predicate: the predicate's columns are decoded and
/// the predicate evaluated row by row while reading, then the other
/// columns under the selection. Most predicates of a build keep most rows
/// (`loaded_at < now`, the bounds of an incremental read), and then that
/// costs more than it saves: an incremental build of the 5M-order lake
/// took 19.1 user CPU seconds with it off against 21.1 with it on (medians
/// of four; bench/RESULTS.md). The file skipping on Delta statistics is
/// the same either way. DataFusion's default leaves it off;
/// `DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true` turns it on.
pub async fn delta_provider(ctx: &SessionContext, url: &Url) -> Result<Arc<dyn TableProvider>, LakeError> {
    let table = open_table(ctx, url)
        .await?
        .ok_or_else(|| LakeError::NoTable(url.clone()))?;
    provider_of(ctx, &table).await
}

/// A DataFusion provider reading `table` at the version it is loaded at
/// (see [`delta_provider`]).
pub async fn provider_of(ctx: &SessionContext, table: &DeltaTable) -> Result<Arc<dyn TableProvider>, LakeError> {
    let state = ctx.state();
    table.update_datafusion_session(&state)?;
    Ok(table.table_provider().with_session(Arc::new(state)).await?)
}

/// What a write left behind.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub rows: u64,
    pub version: i64,
}

/// Replaces the table at `url` with the result of `plan`: data files are
/// written first, then one commit makes them the current version. A build
/// killed before the commit leaves the previous version current.
pub async fn overwrite_table(
    ctx: &SessionContext,
    url: &Url,
    plan: LogicalPlan,
    metadata: serde_json::Map<String, serde_json::Value>,
) -> Result<Written, DeltaTableError> {
    write_table(
        ctx,
        url,
        plan,
        TableWrite::Overwrite {
            partition_by: Vec::new(),
        },
        &Layout::default(),
        metadata,
    )
    .await
}

/// What a commit records besides its data: etl's metadata in commitInfo,
/// and optionally an application transaction (Delta `txn`), which makes a
/// retried commit recognisable.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The writer's Delta application transaction (`txn`): its app id
    /// names the writer (`etl/<unique_id>` for a model), which makes a
    /// commit of the same writer since this one read the table a conflict.
    pub app_transaction: Option<(String, i64)>,
    /// The version of the table the write was computed from.
    pub expected_version: Expected,
    /// The table as the writer loaded it at that version, if it did: the
    /// write reads only the commits since, instead of its whole log again.
    pub loaded: Option<DeltaTable>,
}

/// The version of a table a write was computed from (which files an
/// incremental model had consumed, what `{{ this }}` held, whether the
/// table existed). When the same writer (the same app id: another build
/// of the same model) committed to the table since, this write is refused
/// instead of being added on top: two builds that both read version 30 and
/// both appended the same new file would otherwise commit as 31 and 32,
/// and the rows would be there twice (see: issue 23). Commits of other
/// writers (an OPTIMIZE, a VACUUM by another engine) are not refused for
/// that: Delta's own conflict checks judge them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expected {
    /// Whatever the table is (etl's own staging tables).
    #[default]
    Any,
    /// No table yet.
    Absent,
    Version(i64),
}

impl Expected {
    /// What a table is now, as an expectation for a later write.
    pub fn of(version: Option<u64>) -> Expected {
        match version {
            Some(v) => Expected::Version(v as i64),
            None => Expected::Absent,
        }
    }

    fn matches(self, version: Option<i64>) -> bool {
        match self {
            Expected::Any => true,
            Expected::Absent => version.is_none(),
            Expected::Version(v) => version == Some(v),
        }
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Commit {
    fn from(metadata: serde_json::Map<String, serde_json::Value>) -> Commit {
        Commit {
            metadata,
            ..Commit::default()
        }
    }
}

impl Commit {
    /// The table at `url` to write to, at its latest version (brought up
    /// to date from the one the writer loaded, if it did), once checked
    /// against the version the write was computed from.
    async fn table_to_write(&mut self, ctx: &SessionContext, url: &Url) -> Result<DeltaTable, DeltaTableError> {
        let table = match self.loaded.take() {
            Some(loaded) => brought_up_to_date(ctx, url, loaded).await?,
            None => table_at(ctx, url).await?,
        };
        self.check(ctx, url, &table).await?;
        Ok(table)
    }

    /// Refuses the write, before any file of it is written, when the table
    /// came or went since the expected version, or when the same writer
    /// committed to it since. (At the commit itself, Delta's conflict
    /// check refuses a winning commit with the same app id.)
    async fn check(&self, ctx: &SessionContext, url: &Url, table: &DeltaTable) -> Result<(), DeltaTableError> {
        let now = table.version().map(|v| v as i64);
        if self.expected_version.matches(now) {
            return Ok(());
        }
        if let (Expected::Version(read), Some(now), Some((app, _))) =
            (self.expected_version, now, &self.app_transaction)
        {
            if now > read && !same_writer_since(ctx, url, app, read, now).await? {
                return Ok(());
            }
        }
        let read = match self.expected_version {
            Expected::Version(v) => format!("version {v}"),
            _ => "no table".into(),
        };
        let found = now.map_or_else(|| "no table".to_owned(), |v| format!("version {v}"));
        Err(DeltaTableError::Generic(format!(
            "{CONFLICT}: it read {read}, and found {found} committed since by another build of it when it came \
             to write; nothing of this build's was written: run it again"
        )))
    }

    fn properties(self) -> CommitProperties {
        let props = CommitProperties::default().with_metadata(self.metadata);
        match self.app_transaction {
            Some((app, version)) => {
                props.with_application_transaction(deltalake::kernel::Transaction::new(app, version))
            }
            None => props,
        }
    }
}

pub(super) const CONFLICT: &str = "another writer committed to the table while this build was writing it";

/// Whether a commit after version `read` up to `now` of the table at
/// `url` carries the application transaction `app`: the same writer.
pub(super) async fn same_writer_since(
    ctx: &SessionContext,
    url: &Url,
    app: &str,
    read: i64,
    now: i64,
) -> Result<bool, DeltaTableError> {
    let store = store_for(ctx, url).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    for version in read + 1..=now {
        // Cleaned up since (a checkpoint covers it): take it as ours.
        let Some(text) = read_commit(store.as_ref(), url, version).await? else {
            return Ok(true);
        };
        let actions = commit_actions(&text).map_err(|e| DeltaTableError::Generic(format!("commit {version}: {e}")))?;
        if actions
            .iter()
            .any(|action| action["txn"]["appId"].as_str() == Some(app))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How big a table's data files are. Delta's default (100 MiB) leaves most
/// tables in one or two files, and a merge rewrites every file that holds a
/// row it updates: the whole table. In smaller files, the rows a merge
/// touches (new and recent keys, when keys grow with time) sit in a few
/// of them, and Delta skips the others by their min/max statistics.
///
/// And how they are compressed: Snappy (Delta's default) unless a model
/// asks for another codec.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub file_size: Option<std::num::NonZeroU64>,
    pub compression: Option<Compression>,
}

/// Rows per Parquet row group in a partitioned table's files. A
/// partitioned write keeps a file open for every partition value it meets,
/// each with its row group in progress in memory, which the memory pool
/// does not count: with Parquet's default of 1,048,576 rows, 9 partitions
/// of 1.6M clicks held ~31 MB each, ~13 MB at this size (bench/RESULTS.md).
/// An unpartitioned write has one file open per stream and keeps the
/// default. DuckDB writes row groups of 122,880 rows.
pub const PARTITIONED_ROW_GROUP_ROWS: usize = 128 * 1024;

impl Layout {
    /// The Parquet settings of a write into a table partitioned or not;
    /// `None` leaves delta-rs's own (Snappy).
    fn writer_properties(&self, partitioned: bool) -> Option<WriterProperties> {
        if self.compression.is_none() && !partitioned {
            return None;
        }
        let mut builder = WriterProperties::builder().set_compression(self.compression.unwrap_or(Compression::SNAPPY));
        if partitioned {
            builder = builder.set_max_row_group_row_count(Some(PARTITIONED_ROW_GROUP_ROWS));
        }
        Some(builder.build())
    }
}

/// Commits between two checkpoints of a table etl creates (Delta's
/// `delta.checkpointInterval`; Spark's default, where delta-rs's is 100).
/// Loading a table replays every commit since its last checkpoint: a
/// table rebuilt every night would otherwise replay up to 99 of them at
/// each of a build's loads of it, 0.4 ms each on a local disk (a no-op
/// check of 100 tables 27 commits deep took 1.3-1.5 s, 0.35-0.43 s at one
/// commit: bench/RESULTS.md), and more on object storage.
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// Whether the table's files are partitioned by column values.
fn is_partitioned(table: &DeltaTable) -> bool {
    table
        .snapshot()
        .is_ok_and(|s| !s.metadata().partition_columns().is_empty())
}

/// How [`write_table`] changes a table, always in one commit.
pub enum TableWrite {
    /// Replace everything (partitioned by these columns, if any).
    Overwrite { partition_by: Vec<String> },
    /// Add the rows; `merge_schema` adds new columns to the table.
    Append { merge_schema: bool },
    /// Replace the rows matching `predicate` with the new rows, which must
    /// all match it (delete+insert and insert_overwrite).
    ReplaceWhere { predicate: Expr, merge_schema: bool },
}

/// Writes the result of `plan` into the table at `url` as `how` says: data
/// files first, then one commit. A build killed before the commit leaves
/// the previous version current.
pub async fn write_table(
    ctx: &SessionContext,
    url: &Url,
    plan: LogicalPlan,
    how: TableWrite,
    layout: &Layout,
    commit: impl Into<Commit>,
) -> Result<Written, DeltaTableError> {
    Ok(write_table_kept(ctx, url, plan, how, layout, commit).await?.0)
}

/// [`write_table`], which also gives the table as the write left it.
pub async fn write_table_kept(
    ctx: &SessionContext,
    url: &Url,
    plan: LogicalPlan,
    how: TableWrite,
    layout: &Layout,
    commit: impl Into<Commit>,
) -> Result<(Written, DeltaTable), DeltaTableError> {
    if url.scheme() == "file" {
        // Object stores have no folders; a local disk needs one to exist.
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path)
                .map_err(|e| DeltaTableError::Generic(format!("cannot create `{}`: {e}", path.display())))?;
        }
    }
    let mut commit = commit.into();
    let table = commit.table_to_write(ctx, url).await?;
    let mut state = ctx.state();
    let plan = if ordered::ends_sorted(&plan) {
        // One ordered stream to the writer: see `ordered`.
        // (The catalog is the build's: a config asking for a default one
        // would replace it, and every table registered in it.)
        let mut config = state.config().clone().with_create_default_catalog_and_schema(false);
        config.options_mut().optimizer.enable_round_robin_repartition = false;
        state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .build();
        ordered::planned(ctx, plan).await?
    } else {
        plan
    };
    // The table is partitioned as this write asks, or as it was (the
    // other writes keep its partitions).
    let partitioned = match &how {
        TableWrite::Overwrite { partition_by } => !partition_by.is_empty(),
        TableWrite::Append { .. } | TableWrite::ReplaceWhere { .. } => is_partitioned(&table),
    };
    table.update_datafusion_session(&state)?;
    let commit = commit.properties();
    let mut builder = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(state))
        .with_commit_properties(commit);
    if let Some(properties) = layout.writer_properties(partitioned) {
        builder = builder.with_writer_properties(properties);
    }
    // A new table's properties (an existing one keeps its own).
    let mut properties = vec![(
        TableProperty::CheckpointInterval.as_ref(),
        Some(CHECKPOINT_INTERVAL.to_string()),
    )];
    if let Some(size) = layout.file_size {
        // For this write, and, kept in the table's properties, for the
        // merges after it.
        builder = builder.with_target_file_size(Some(size));
        properties.push((TableProperty::TargetFileSize.as_ref(), Some(size.to_string())));
    }
    builder = builder.with_configuration(properties);
    let builder = match how {
        TableWrite::Overwrite { partition_by } => {
            let b = builder
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(SchemaMode::Overwrite);
            if partition_by.is_empty() {
                b
            } else {
                b.with_partition_columns(partition_by)
            }
        }
        TableWrite::Append { merge_schema } => {
            let b = builder.with_save_mode(SaveMode::Append);
            if merge_schema {
                b.with_schema_mode(SchemaMode::Merge)
            } else {
                b
            }
        }
        TableWrite::ReplaceWhere {
            predicate,
            merge_schema,
        } => {
            let b = builder
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(predicate);
            if merge_schema {
                b.with_schema_mode(SchemaMode::Merge)
            } else {
                b
            }
        }
    };
    let table = builder.await?;
    Ok((written(&table).await?, table))
}

/// What went wrong with a write, for the user: a lost commit race says so
/// (and that nothing was written); anything else keeps its own message,
/// which names the object a failed storage request was for.
pub fn describe_error(err: &DeltaTableError) -> String {
    use deltalake::kernel::transaction::TransactionError;
    match err {
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(conflict),
        } => format!(
            "{CONFLICT} ({conflict}); this build's commit was refused and nothing of it was written: run it again"
        ),
        DeltaTableError::Transaction {
            source: TransactionError::MaxCommitAttempts(attempts),
        } => format!(
            "gave up committing after {attempts} attempts, each overtaken by another writer's commit; \
             nothing was written: run it again"
        ),
        DeltaTableError::VersionAlreadyExists(version) => {
            format!("another writer committed version {version} of the table first; nothing was written: run it again")
        }
        DeltaTableError::ObjectStore { source } => format!("a storage request failed: {}", with_root_cause(source)),
        DeltaTableError::Arrow { source } => source.to_string(),
        DeltaTableError::GenericError { source } => source.to_string(),
        other => other.to_string(),
    }
}

/// What kind of engine failure a failed write is, if it is one (see
/// `Cause::of`). delta-rs keeps DataFusion's errors as text
/// (`DeltaTableError::Generic`), so the words DataFusion starts or ends
/// them with are what is left to tell them by.
pub fn cause_of(err: &DeltaTableError) -> Option<crate::diagnostic::Cause> {
    use crate::diagnostic::Cause;
    const BUG: [&str; 2] = ["likely caused by a bug in DataFusion's code", "ExecutionJoin error: "];
    const MEMORY: &str = "Resources exhausted: ";
    match err {
        DeltaTableError::Generic(text) if BUG.iter().any(|mark| text.contains(mark)) => Some(Cause::EngineBug),
        DeltaTableError::Generic(text) if text.contains(MEMORY) => Some(Cause::OutOfMemory),
        DeltaTableError::GenericError { source } => source
            .downcast_ref::<datafusion::error::DataFusionError>()
            .and_then(Cause::of),
        _ => None,
    }
}

/// Rows and version of the commit `table` was left at.
pub(super) async fn written(table: &DeltaTable) -> Result<Written, DeltaTableError> {
    let version = table.version().unwrap_or_default() as i64;
    let mut history: Vec<_> = table.history(Some(1)).try_collect().await?;
    let metrics = history.first_mut().and_then(|c| c.info.remove("operationMetrics"));
    let metric = |key: &str| {
        metrics
            .as_ref()
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
    };
    // A merge reports what it inserted and updated; a write what it added.
    let rows = match (metric("num_target_rows_inserted"), metric("num_target_rows_updated")) {
        (Some(i), Some(u)) => i + u,
        _ => metric("num_added_rows").unwrap_or(0),
    };
    Ok(Written { rows, version })
}

/// Merges `source` into the table at `url` on `merge`'s keys (and
/// predicates): rows that match are updated (their `update_columns`, or
/// all but the `exclude_columns`), the others inserted, in one commit
/// (Delta MERGE).
pub async fn merge_into(
    ctx: &SessionContext,
    url: &Url,
    source: datafusion::prelude::DataFrame,
    merge: &Merge<'_>,
    merge_schema: bool,
    layout: &Layout,
    commit: impl Into<Commit>,
) -> Result<Written, DeltaTableError> {
    use datafusion::common::Column;
    use datafusion::prelude::col;
    let column = |alias: &str, name: &str| col(Column::new(Some(alias), name));
    let columns: Vec<String> = source.schema().fields().iter().map(|f| f.name().clone()).collect();
    if merge.keys.is_empty() {
        return Err(DeltaTableError::Generic("a merge needs a unique_key".into()));
    }
    for c in merge.update_columns.iter().chain(merge.exclude_columns) {
        if !columns.contains(c) {
            return Err(DeltaTableError::Generic(format!(
                "`{c}` is not a column of the model's result ({})",
                columns.join(", ")
            )));
        }
    }
    // The match, as SQL on dbt's aliases, so that `incremental_predicates`
    // written for dbt (`DBT_INTERNAL_DEST.updated_at > ...`) join it.
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut conditions: Vec<String> = merge
        .keys
        .iter()
        .map(|k| format!("{}.{} = {}.{}", quoted(TARGET), quoted(k), quoted(SOURCE), quoted(k)))
        .collect();
    for p in merge.predicates {
        conditions.push(format!("({})", on_dbt_aliases(p)?));
    }
    let predicate = conditions.join(" and ");
    let mut commit = commit.into();
    let table = commit.table_to_write(ctx, url).await?;
    let state = ctx.state();
    table.update_datafusion_session(&state)?;
    let update_columns: Vec<String> = if merge.update_columns.is_empty() {
        columns
            .iter()
            .filter(|c| !merge.exclude_columns.contains(c))
            .cloned()
            .collect()
    } else {
        merge.update_columns.to_vec()
    };
    let insert_columns = columns;
    let partitioned = is_partitioned(&table);
    let mut builder = table
        .merge(source, predicate)
        .with_source_alias(SOURCE)
        .with_target_alias(TARGET)
        .with_session_state(Arc::new(state))
        .with_merge_schema(merge_schema)
        .with_commit_properties(commit.properties());
    if let Some(properties) = layout.writer_properties(partitioned) {
        builder = builder.with_writer_properties(properties);
    }
    // Every column excluded: a matched row is left as it is.
    if !update_columns.is_empty() {
        builder = builder.when_matched_update(|update| {
            update_columns
                .iter()
                .fold(update, |u, c| u.update(c.as_str(), column(SOURCE, c)))
        })?;
    }
    let (table, _metrics) = builder
        .when_not_matched_insert(|insert| {
            insert_columns
                .iter()
                .fold(insert, |i, c| i.set(c.as_str(), column(SOURCE, c)))
        })?
        .await?;
    written(&table).await
}

/// How a snapshot's staged rows land (see `merge_snapshot`): each row's
/// `change_type` column says whether it closes the current version whose
/// `scd_id` it carries (`update`, `delete`) or is a new version (`insert`).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotMerge<'a> {
    pub change_type: &'a str,
    pub scd_id: &'a str,
    pub valid_to: &'a str,
    /// SQL that current versions hold in `valid_to`; they hold null when
    /// `None`.
    pub valid_to_current: Option<&'a str>,
    /// The columns an `insert` row writes.
    pub insert_columns: &'a [String],
}

/// Applies a snapshot's staged rows to its table in one commit (Delta
/// MERGE): the current version each `update`/`delete` row names gets its
/// `valid_to`; `insert` rows are added. New columns are added to the
/// table; columns the rows lack are null.
pub async fn merge_snapshot(
    ctx: &SessionContext,
    url: &Url,
    staged: datafusion::prelude::DataFrame,
    merge: &SnapshotMerge<'_>,
    layout: &Layout,
    commit: impl Into<Commit>,
) -> Result<Written, DeltaTableError> {
    use datafusion::common::Column;
    use datafusion::prelude::col;
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let (target, source) = (quoted(TARGET), quoted(SOURCE));
    let current = match merge.valid_to_current {
        Some(expr) => format!(
            "({target}.{v} = {expr} or {target}.{v} is null)",
            v = quoted(merge.valid_to)
        ),
        None => format!("{target}.{} is null", quoted(merge.valid_to)),
    };
    let predicate = format!(
        "{target}.{scd} = {source}.{scd} and {source}.{change} in ('update', 'delete') and {current}",
        scd = quoted(merge.scd_id),
        change = quoted(merge.change_type),
    );
    let inserting = format!("{source}.{} = 'insert'", quoted(merge.change_type));
    let mut commit = commit.into();
    let table = commit.table_to_write(ctx, url).await?;
    let state = ctx.state();
    table.update_datafusion_session(&state)?;
    let partitioned = is_partitioned(&table);
    let mut builder = table
        .merge(staged, predicate)
        .with_source_alias(SOURCE)
        .with_target_alias(TARGET)
        .with_session_state(Arc::new(state))
        .with_merge_schema(true)
        .with_commit_properties(commit.properties());
    if let Some(properties) = layout.writer_properties(partitioned) {
        builder = builder.with_writer_properties(properties);
    }
    let (table, _metrics) = builder
        .when_matched_update(|update| update.update(merge.valid_to, col(Column::new(Some(SOURCE), merge.valid_to))))?
        .when_not_matched_insert(|insert| {
            merge
                .insert_columns
                .iter()
                .fold(insert.predicate(inserting.as_str()), |i, c| {
                    i.set(c.as_str(), col(Column::new(Some(SOURCE), c.as_str())))
                })
        })?
        .await?;
    written(&table).await
}

/// What a merge matches on and updates (see `merge_into`).
#[derive(Debug, Clone, Copy)]
pub struct Merge<'a> {
    pub keys: &'a [String],
    /// Only these columns of a matched row are updated; all when empty.
    pub update_columns: &'a [String],
    /// These columns of a matched row keep their value.
    pub exclude_columns: &'a [String],
    /// SQL conditions on `dbt_internal_dest` (the table) and
    /// `dbt_internal_source` (the new rows), added to the match.
    pub predicates: &'a [String],
}

/// dbt's names for the two sides of a merge, which incremental predicates
/// use (`DBT_INTERNAL_DEST`), in the case delta-rs keeps its aliases in.
const TARGET: &str = "dbt_internal_dest";
const SOURCE: &str = "dbt_internal_source";

/// `predicate` with its `dbt_internal_dest.` and `dbt_internal_source.`
/// (in any case, as dbt's warehouses read them) naming the merge's sides
/// whether or not the session lowercases unquoted names.
fn on_dbt_aliases(predicate: &str) -> Result<String, DeltaTableError> {
    use datafusion::sql::sqlparser::ast::{Expr, visit_expressions_mut};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let mut expr = Parser::new(&GenericDialect {})
        .try_with_sql(predicate)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| DeltaTableError::Generic(format!("`incremental_predicates`: `{predicate}`: {e}")))?;
    let _ = visit_expressions_mut(&mut expr, |e| {
        if let Expr::CompoundIdentifier(parts) = e
            && parts.len() >= 2
        {
            for alias in [TARGET, SOURCE] {
                if parts[0].quote_style.is_none() && parts[0].value.eq_ignore_ascii_case(alias) {
                    parts[0].value = alias.to_owned();
                    parts[0].quote_style = Some('"');
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(expr.to_string())
}

/// The `etl` metadata of the latest commit etl made to the table at `url`
/// (other tools' commits, such as an OPTIMIZE, are passed over).
pub async fn last_etl_commit(ctx: &SessionContext, url: &Url) -> Option<serde_json::Value> {
    let table = open_table(ctx, url).await.ok()??;
    let history: Vec<_> = table.history(None).try_collect().await.ok()?;
    history.into_iter().find_map(|mut c| c.info.remove("etl"))
}

/// Up to this many data files, each of a table's is asked for; past it,
/// the table's folder is listed once. Asking costs a request a file;
/// listing, one entry for every file the folder holds, and etl never
/// vacuums: a table rebuilt every night keeps every night's files (100
/// tables of 27 nights: 1.08-1.17 s to find them up to date, 0.75-0.81 s
/// vacuumed).
pub(super) const ASKED_FILES: usize = 32;

/// The data files of `table`'s current version (at `url`) that are not in
/// the store: deleted or lost outside of etl. Such a table cannot be read,
/// nor built on.
pub async fn missing_data_files(ctx: &SessionContext, url: &Url, table: &DeltaTable) -> Result<Vec<String>, LakeError> {
    let expected: Vec<StorePath> = table
        .snapshot()?
        .log_data()
        .into_iter()
        .map(|file| file.object_store_path())
        .collect();
    if expected.is_empty() {
        return Ok(Vec::new());
    }
    let store = store_for(ctx, url)?;
    let prefix = path_of(url.path())?;
    if expected.len() <= ASKED_FILES {
        use futures::StreamExt;
        let asked = futures::stream::iter(expected).map(|path| {
            let store = Arc::clone(&store);
            let object: StorePath = prefix.parts().chain(path.parts()).collect();
            async move {
                match store.head(&object).await {
                    Ok(_) => Ok(None),
                    Err(object_store::Error::NotFound { .. }) => Ok(Some(path.to_string())),
                    Err(e) => Err(e),
                }
            }
        });
        let missing: Vec<Option<String>> = asked.buffered(8).try_collect().await.map_err(failed_at(url, ""))?;
        return Ok(missing.into_iter().flatten().collect());
    }
    let present: std::collections::HashSet<String> = store
        .list(Some(&prefix))
        .map_ok(|meta| relative_path(&prefix, &meta.location))
        .try_collect()
        .await
        .map_err(failed_at(url, ""))?;
    Ok(expected
        .into_iter()
        .map(|path| path.to_string())
        .filter(|path| !present.contains(path))
        .collect())
}

/// Why the Delta log of the table at `url` cannot be read (`err`, from
/// loading it), for the user: the commit file that does not parse, the
/// last version that loads, and how to get back to it.
pub async fn explain_unreadable(ctx: &SessionContext, url: &Url, err: &DeltaTableError) -> (String, Vec<String>) {
    let message = format!("its Delta log cannot be read: {}", describe_error(err));
    let Ok(store) = store_for(ctx, url) else {
        return (message, Vec::new());
    };
    let Ok(log) = StorePath::from_url_path(format!("{}_delta_log/", url.path())) else {
        return (message, Vec::new());
    };
    let Ok(objects) = store.list(Some(&log)).try_collect::<Vec<_>>().await else {
        return (message, Vec::new());
    };
    let mut commits: Vec<(i64, StorePath)> = objects
        .into_iter()
        .filter_map(|o| {
            let name = o.location.filename()?;
            let version = name.strip_suffix(".json")?.parse().ok()?;
            Some((version, o.location))
        })
        .collect();
    commits.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    // The newest commit that is not JSON lines is the broken one.
    let mut broken = None;
    for (version, path) in &commits {
        let Ok(Some(text)) = read_commit(store.as_ref(), url, *version).await else {
            continue;
        };
        if commit_actions(&text).is_err() {
            broken = Some((*version, path.clone()));
            break;
        }
    }
    let Some((version, path)) = broken else {
        return (message, Vec::new());
    };
    let file = object_url(url, &path);
    let mut notes = vec![format!("commit {version} is not valid JSON: `{file}`")];
    let mut readable = None;
    for earlier in (0..version).rev().take(5) {
        if let Ok(mut table) = table_handle(ctx, url) {
            if table.load_version(earlier as u64).await.is_ok() {
                readable = Some(earlier);
                break;
            }
        }
    }
    match readable {
        Some(earlier) if version == commits[0].0 => notes.push(format!(
            "version {earlier} reads: move `{file}` out of `_delta_log/` to go back to it (its data files stay as \
             they are), then build again"
        )),
        Some(earlier) => notes.push(format!(
            "version {earlier} reads; later commits build on the broken one: restore `{file}` from a backup, or \
             move the table away and rebuild it with `--full-refresh`"
        )),
        None => notes.push("no earlier version reads: move the table away and rebuild it with `--full-refresh`".into()),
    }
    (message, notes)
}

/// Where write-audit-publish stages a model's new data: beside the
/// warehouse schemas, never read by anything but the model's audit.
pub fn staging_location(root: &Url, relation: &Relation) -> Url {
    let staged = Relation {
        schema: format!("_etl_staging/{}", relation.schema),
        identifier: relation.identifier.clone(),
        ephemeral: false,
    };
    relation_location(root, &staged)
}

/// The materialization etl recorded in the table's latest commit; `None`
/// when another tool made it.
pub async fn last_commit_materialized(table: &DeltaTable) -> Option<String> {
    let mut history: Vec<_> = table.history(Some(1)).try_collect().await.ok()?;
    let etl = history.first_mut()?.info.remove("etl")?;
    etl.get("materialized")?.as_str().map(str::to_owned)
}

/// When commit `version` of the table at `url` was made (its commitInfo
/// timestamp, in ms): beside the version number, what tells a table from
/// one deleted and created again since, whose versions count from 0 anew.
/// `None` when the commit's log entry is gone.
pub async fn commit_timestamp(ctx: &SessionContext, url: &Url, version: i64) -> Option<i64> {
    let store = store_for(ctx, url).ok()?;
    let text = read_commit(store.as_ref(), url, version).await.ok()??;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|action| {
            let info = action.get("commitInfo")?;
            info.get("inCommitTimestamp")
                .or_else(|| info.get("timestamp"))?
                .as_i64()
        })
}

/// The data files a table gained between versions `since` and `now` that
/// are still in it at `now` (paths relative to the table), provided every
/// change in between only added rows: appends, and merges that deleted
/// none (their rewritten files, holding the updated rows, count as added).
/// `None` when anything else happened: an overwrite, a delete, a schema
/// change, a merge that deleted rows (or, with `merge_keys`, one whose
/// table is merged on other columns, as its updates may change them), or
/// a commit whose log entry is gone, a version `now` before `since`.
pub async fn added_files(
    ctx: &SessionContext,
    url: &Url,
    since: i64,
    now: i64,
    merge_keys: Option<&[String]>,
) -> Result<Option<Vec<String>>, LakeError> {
    if now < since {
        return Ok(None);
    }
    let store = store_for(ctx, url)?;
    let mut added: Vec<String> = Vec::new();
    for version in since + 1..=now {
        let Some(text) = read_commit(store.as_ref(), url, version)
            .await
            .map_err(|e| LakeError::request(format!("{url}_delta_log/ version {version}"), &e))?
        else {
            return Ok(None);
        };
        let actions = commit_actions(&text).map_err(|e| LakeError::Corrupt {
            what: "commit",
            at: format!("{url}_delta_log/ version {version}"),
            reason: e.to_string(),
        })?;
        let info = actions.iter().find_map(|a| a.get("commitInfo"));
        let operation = info.and_then(|i| i["operation"].as_str()).unwrap_or_default();
        let deleted_none = info
            .and_then(|i| i["operationMetrics"].get("num_target_rows_deleted"))
            .and_then(|d| d.as_u64().or_else(|| d.as_str().and_then(|s| s.parse().ok())))
            == Some(0);
        let keys_kept = merge_keys.is_none_or(|keys| {
            // delta-rs records the join: `dbt_internal_source.k =
            // dbt_internal_dest.k` (`target.k = source.k` before etl used
            // dbt's names), then any incremental predicates.
            let predicate = info
                .and_then(|i| i["operationParameters"]["mergePredicate"].as_str())
                .unwrap_or_default();
            keys.iter().all(|k| {
                [
                    format!("{SOURCE}.{k} = {TARGET}.{k}"),
                    format!("{TARGET}.{k} = {SOURCE}.{k}"),
                    format!("target.{k} = source.{k}"),
                ]
                .iter()
                .any(|join| predicate.contains(join.as_str()))
            })
        });
        for action in &actions {
            if action.get("metaData").is_some() {
                return Ok(None);
            }
            if let Some(add) = action.get("add") {
                added.push(add["path"].as_str().unwrap_or_default().to_owned());
            }
            if let Some(remove) = action.get("remove") {
                let path = remove["path"].as_str().unwrap_or_default();
                let data_change = remove["dataChange"].as_bool().unwrap_or(true);
                let rewrite = operation == "MERGE" && deleted_none && keys_kept;
                if data_change && !rewrite {
                    return Ok(None);
                }
                added.retain(|p| p != path);
            }
        }
    }
    Ok(Some(added))
}

/// A provider reading just `files` (paths relative to the table at `url`,
/// as [`added_files`] gives them) with the table's `schema`.
pub fn files_provider(
    url: &Url,
    files: &[String],
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> Result<Arc<dyn TableProvider>, String> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
    if files.is_empty() {
        let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]]).map_err(|e| e.to_string())?;
        return Ok(Arc::new(empty));
    }
    let paths = files
        .iter()
        .map(|f| {
            // Log paths are relative URL references, encoded as in a URL.
            url.join(f)
                .map_err(|e| e.to_string())
                .and_then(|u| ListingTableUrl::parse(u.as_str()).map_err(|e| e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = ListingTableConfig::new_with_multi_paths(paths)
        .with_listing_options(ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(""))
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config).map_err(|e| e.to_string())?))
}

/// Puts the table at `url` back as it was at `version`, in one commit
/// (Delta's restore: the later versions stay in its history). The commit
/// carries etl's record of that version (the files an incremental model
/// had ingested, its fingerprint), so that the next build reads the table
/// as restored, not as the undone commits left it.
pub async fn restore_table(ctx: &SessionContext, url: &Url, version: u64) -> Result<(), DeltaTableError> {
    let record = etl_record_at(ctx, url, version).await?;
    let table = table_at(ctx, url).await?;
    let mut metadata = serde_json::Map::new();
    if let Some(record) = record {
        metadata.insert("etl".into(), record);
    }
    table
        .restore()
        .with_version_to_restore(version)
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .await?;
    Ok(())
}

/// etl's record in the newest commit at or before `version` that has one.
async fn etl_record_at(
    ctx: &SessionContext,
    url: &Url,
    version: u64,
) -> Result<Option<serde_json::Value>, DeltaTableError> {
    let store = store_for(ctx, url).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    for v in (0..=version as i64).rev() {
        let Some(text) = read_commit(store.as_ref(), url, v)
            .await
            .map_err(|e| DeltaTableError::Generic(e.to_string()))?
        else {
            // Its log entry is gone (a checkpoint replaced it): restored
            // without its record, the table would say it holds what the
            // undone commits ingested.
            return Err(DeltaTableError::Generic(format!(
                "the log entry of version {v} is gone: etl's record of version {version} cannot be read"
            )));
        };
        let actions = commit_actions(&text).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        if let Some(record) = actions.iter().find_map(|a| a.get("commitInfo")?.get("etl")) {
            return Ok(Some(record.clone()));
        }
    }
    Ok(None)
}

/// Deletes the rows of the table at `url` matching `predicate` (SQL; every
/// row when `None`) in one commit. The number of rows deleted.
pub async fn delete_where(ctx: &SessionContext, url: &Url, predicate: Option<String>) -> Result<u64, DeltaTableError> {
    let table = table_at(ctx, url).await?;
    let state = ctx.state();
    table.update_datafusion_session(&state)?;
    let mut delete = table.delete().with_session_state(Arc::new(state));
    if let Some(predicate) = predicate {
        delete = delete.with_predicate(predicate);
    }
    let (_, metrics) = delete.await?;
    Ok(metrics.num_deleted_rows.unwrap_or(0) as u64)
}

/// Sets `assignments` (column, SQL expression) on the rows of the table at
/// `url` matching `predicate` (every row when `None`), in one commit. The
/// number of rows updated.
pub async fn update_where(
    ctx: &SessionContext,
    url: &Url,
    assignments: Vec<(String, String)>,
    predicate: Option<String>,
) -> Result<u64, DeltaTableError> {
    let table = table_at(ctx, url).await?;
    let state = ctx.state();
    table.update_datafusion_session(&state)?;
    let mut update = table.update().with_session_state(Arc::new(state));
    if let Some(predicate) = predicate {
        update = update.with_predicate(predicate);
    }
    for (column, value) in assignments {
        update = update.with_update(column, value);
    }
    let (_, metrics) = update.await?;
    Ok(metrics.num_updated_rows as u64)
}

/// What a table holds now and what its last commits did, for the docs
/// site: read from the Delta log (file sizes and row counts of the add
/// actions, commitInfo of the latest commits), never from the data.
#[derive(Debug, Clone, Serialize)]
pub struct TableStats {
    pub version: i64,
    pub files: usize,
    pub bytes: u64,
    /// Rows, when every file's statistics count them.
    pub rows: Option<u64>,
    /// The latest commits, newest first.
    pub history: Vec<VersionStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionStats {
    pub version: i64,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub operation: Option<String>,
    /// Rows the commit added (written, or inserted and rewritten by a
    /// merge), from its operation metrics.
    pub added_rows: Option<u64>,
    pub added_files: Option<u64>,
    pub removed_files: Option<u64>,
}

/// The stats of the table at `url`; `None` when there is none.
pub async fn table_stats(ctx: &SessionContext, url: &Url, commits: usize) -> Result<Option<TableStats>, LakeError> {
    let Some(table) = open_table(ctx, url).await? else {
        return Ok(None);
    };
    let version = table.version().unwrap_or_default() as i64;
    let (mut files, mut bytes, mut rows) = (0, 0u64, Some(0u64));
    for file in table.snapshot()?.log_data() {
        files += 1;
        bytes += file.size().max(0) as u64;
        rows = match (rows, file.num_records()) {
            (Some(r), Some(n)) => Some(r + n as u64),
            _ => None,
        };
    }
    let history: Vec<_> = table.history(Some(commits)).try_collect().await?;
    let history = history
        .into_iter()
        .enumerate()
        .map(|(i, info)| {
            let metric = |keys: &[&str]| -> Option<u64> {
                let metrics = info.info.get("operationMetrics")?;
                let found: Vec<u64> = keys.iter().filter_map(|k| metrics.get(*k)?.as_u64()).collect();
                (!found.is_empty()).then(|| found.iter().sum())
            };
            VersionStats {
                // Newest first, one commit a version.
                version: version - i as i64,
                timestamp: info.timestamp,
                operation: info.operation.clone(),
                added_rows: metric(&["num_added_rows", "num_target_rows_inserted", "num_target_rows_updated"]),
                added_files: metric(&["num_added_files", "num_target_files_added"]),
                removed_files: metric(&["num_removed_files", "num_target_files_removed"]),
            }
        })
        .collect();
    Ok(Some(TableStats {
        version,
        files,
        bytes,
        rows,
        history,
    }))
}
