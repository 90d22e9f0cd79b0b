//! The lake: where each relation lives (`<lake>/warehouse/<schema>/<name>/`),
//! Delta tables written in one atomic commit each, and view definitions
//! stored beside the tables they read.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::Expr;
use datafusion::prelude::SessionContext;
use deltalake::TableProperty;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

mod failpoint;
pub use failpoint::{armed as failpoint_armed, crash_at};
pub mod lock;
mod observed;
mod ordered;
pub use ordered::leaf;
mod error;
pub use error::LakeError;
mod relation;
pub use relation::{Relation, relation_location};
mod storage;
pub use storage::{check_option, connect, ensure_store, take_commit_time};

/// The path of `file` under `root` (see [`source_root`]), `/`-separated.
pub fn relative_path(root: &object_store::path::Path, file: &object_store::path::Path) -> String {
    match file.prefix_match(root) {
        Some(parts) => parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"),
        None => file.to_string(),
    }
}

/// A URL for a location written as an absolute path or a URL.
pub fn parse_location(location: &str) -> Result<Url, String> {
    if location.contains("://") {
        Url::parse(location).map_err(|e| format!("`{location}` is not a valid URL: {e}"))
    } else {
        Url::from_directory_path(location).map_err(|()| format!("`{location}` is not an absolute path"))
    }
}

/// A folder's URL, ending in `/`: the lake root, from a location as
/// [`parse_location`] takes it.
pub fn folder_url(location: &str) -> Result<Url, String> {
    let mut url = parse_location(location)?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The Delta table at `url`, loaded when it exists, reached through the
/// session's store for its bucket (see [`connect`]).
async fn table_at(ctx: &SessionContext, url: &Url) -> Result<DeltaTable, DeltaTableError> {
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

/// A handle on the table at `url`, not loaded yet.
fn table_handle(ctx: &SessionContext, url: &Url) -> Result<DeltaTable, DeltaTableError> {
    let store = store_for(ctx, url).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    deltalake::DeltaTableBuilder::from_url(url.clone())?
        .with_storage_backend(store, url.clone())
        .build()
}

/// The text of commit `version` of the table at `url`; `None` when its
/// log entry is not there (never written, or cleaned up since).
async fn read_commit(store: &dyn ObjectStore, url: &Url, version: i64) -> Result<Option<String>, object_store::Error> {
    let path = StorePath::from_url_path(format!("{}_delta_log/{version:020}.json", url.path())).map_err(|e| {
        object_store::Error::Generic {
            store: "lake",
            source: Box::new(e),
        }
    })?;
    match store.get(&path).await {
        Ok(got) => Ok(Some(String::from_utf8_lossy(&got.bytes().await?).into_owned())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The actions of a commit's text, one JSON object a line.
fn commit_actions(text: &str) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// Whether the folder at `url` holds any Delta commit (a listing error
/// counts as yes: the caller then reports the error it had).
async fn has_commits(ctx: &SessionContext, url: &Url) -> bool {
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
    let table = open_table(ctx, url).await?.ok_or_else(|| LakeError::NoTable(url.clone()))?;
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

const CONFLICT: &str = "another writer committed to the table while this build was writing it";

/// Whether a commit after version `read` up to `now` of the table at
/// `url` carries the application transaction `app`: the same writer.
async fn same_writer_since(
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

impl Layout {
    fn writer_properties(&self) -> Option<WriterProperties> {
        let compression = self.compression?;
        Some(WriterProperties::builder().set_compression(compression).build())
    }
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
    if url.scheme() == "file" {
        // Object stores have no folders; a local disk needs one to exist.
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path)
                .map_err(|e| DeltaTableError::Generic(format!("cannot create `{}`: {e}", path.display())))?;
        }
    }
    let commit = commit.into();
    let table = table_at(ctx, url).await?;
    commit.check(ctx, url, &table).await?;
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
    table.update_datafusion_session(&state)?;
    let commit = commit.properties();
    let mut builder = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(state))
        .with_commit_properties(commit);
    if let Some(properties) = layout.writer_properties() {
        builder = builder.with_writer_properties(properties);
    }
    if let Some(size) = layout.file_size {
        // For this write, and, kept in a new table's properties, for the
        // merges after it.
        builder = builder
            .with_target_file_size(Some(size))
            .with_configuration([(TableProperty::TargetFileSize.as_ref(), Some(size.to_string()))]);
    }
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
    written(&table).await
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

/// `err`'s message, with the innermost cause added when the message does
/// not carry it: object_store says "error sending request", the cause
/// underneath says "operation timed out" or "connection refused".
pub fn with_root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let message = err.to_string();
    let mut root = err;
    while let Some(source) = root.source() {
        root = source;
    }
    let cause = root.to_string();
    if std::ptr::addr_eq(root, err) || message.contains(&cause) {
        message
    } else {
        format!("{message} ({cause})")
    }
}

/// Rows and version of the commit `table` was left at.
async fn written(table: &DeltaTable) -> Result<Written, DeltaTableError> {
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

/// Merges `source` into the table at `url` on `keys`: rows whose keys
/// match are updated, the others inserted, in one commit (Delta MERGE).
pub async fn merge_into(
    ctx: &SessionContext,
    url: &Url,
    source: datafusion::prelude::DataFrame,
    keys: &[String],
    merge_schema: bool,
    layout: &Layout,
    commit: impl Into<Commit>,
) -> Result<Written, DeltaTableError> {
    use datafusion::common::Column;
    use datafusion::prelude::{Expr, col};
    let column = |alias: &str, name: &str| col(Column::new(Some(alias), name));
    let columns: Vec<String> = source.schema().fields().iter().map(|f| f.name().clone()).collect();
    let predicate = keys
        .iter()
        .map(|k| column("target", k).eq(column("source", k)))
        .reduce(Expr::and)
        .ok_or_else(|| DeltaTableError::Generic("a merge needs a unique_key".into()))?;
    let commit = commit.into();
    let table = table_at(ctx, url).await?;
    commit.check(ctx, url, &table).await?;
    let state = ctx.state();
    table.update_datafusion_session(&state)?;
    let update_columns = columns.clone();
    let insert_columns = columns;
    let mut merge = table
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_session_state(Arc::new(state))
        .with_merge_schema(merge_schema)
        .with_commit_properties(commit.properties());
    if let Some(properties) = layout.writer_properties() {
        merge = merge.with_writer_properties(properties);
    }
    let (table, _metrics) = merge
        .when_matched_update(|update| {
            update_columns
                .iter()
                .fold(update, |u, c| u.update(c.as_str(), column("source", c)))
        })?
        .when_not_matched_insert(|insert| {
            insert_columns
                .iter()
                .fold(insert, |i, c| i.set(c.as_str(), column("source", c)))
        })?
        .await?;
    written(&table).await
}

/// The `etl` metadata of the latest commit etl made to the table at `url`
/// (other tools' commits, such as an OPTIMIZE, are passed over).
pub async fn last_etl_commit(ctx: &SessionContext, url: &Url) -> Option<serde_json::Value> {
    let table = open_table(ctx, url).await.ok()??;
    let history: Vec<_> = table.history(None).try_collect().await.ok()?;
    history.into_iter().find_map(|mut c| c.info.remove("etl"))
}

/// A view as stored in the lake: its compiled SQL and the relations it
/// reads, so that it can be evaluated without the project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDefinition {
    pub unique_id: String,
    pub sql: String,
    pub parents: Vec<String>,
    /// What the view was built from (see `materialize::state`).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

const VIEW_FILE: &str = "_etl_view.json";

/// A failed request for the object at `url` + `name`, as the user reads
/// it: the object's URL, then the cause.
fn failed_at(url: &Url, name: impl std::fmt::Display) -> impl FnOnce(object_store::Error) -> LakeError {
    let object = format!("{url}{name}");
    move |e| LakeError::request(object, &e)
}

/// The URL of `path`, an object's path in the store of `url`'s bucket.
fn object_url(url: &Url, path: &StorePath) -> String {
    format!("{}/{path}", &url[..url::Position::BeforePath])
}

/// The session's store for the bucket (or local disk) `url` is in.
fn store_for(ctx: &SessionContext, url: &Url) -> Result<Arc<dyn ObjectStore>, LakeError> {
    let no_store = |reason: String| LakeError::NoStore {
        url: url.to_string(),
        reason,
    };
    let store_url = ObjectStoreUrl::parse(&url[..url::Position::BeforePath]).map_err(|e| no_store(e.to_string()))?;
    ctx.runtime_env()
        .object_store(store_url)
        .map_err(|e| no_store(e.to_string()))
}

fn store_path(url: &Url, file: &str) -> Result<StorePath, LakeError> {
    path_of(&format!("{}{file}", url.path()))
}

/// A store path from a URL's path.
fn path_of(url_path: &str) -> Result<StorePath, LakeError> {
    StorePath::from_url_path(url_path).map_err(|e| LakeError::Location(e.to_string()))
}

/// Writes a view definition (one object put: atomic on every store) and
/// removes a Delta table left at the same place by an earlier build.
pub async fn write_view(ctx: &SessionContext, url: &Url, view: &ViewDefinition) -> Result<(), LakeError> {
    let store = store_for(ctx, url)?;
    let body = serde_json::to_vec_pretty(view).map_err(|e| LakeError::Corrupt {
        what: "view definition",
        at: url.to_string(),
        reason: e.to_string(),
    })?;
    store
        .put(&store_path(url, VIEW_FILE)?, PutPayload::from(body))
        .await
        .map_err(failed_at(url, VIEW_FILE))?;
    let prefix = path_of(url.path())?;
    let stale: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(failed_at(url, ""))?;
    for object in stale {
        if object.location.filename() != Some(VIEW_FILE) {
            let at = object_url(url, &object.location);
            store
                .delete(&object.location)
                .await
                .map_err(|e| LakeError::request(at, &e))?;
        }
    }
    Ok(())
}

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

/// The size of the object at `url`; `None` when there is none.
pub async fn object_size(ctx: &SessionContext, url: &Url) -> Result<Option<u64>, LakeError> {
    let store = store_for(ctx, url)?;
    let path = path_of(url.path())?;
    match store.head(&path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(LakeError::request(url, &e)),
    }
}

/// Reads the view stored at `url`, if any.
pub async fn read_view(ctx: &SessionContext, url: &Url) -> Result<Option<ViewDefinition>, LakeError> {
    let store = store_for(ctx, url)?;
    match store.get(&store_path(url, VIEW_FILE)?).await {
        Ok(result) => {
            let bytes = result.bytes().await.map_err(failed_at(url, VIEW_FILE))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LakeError::Corrupt {
                    what: "view definition",
                    at: url.to_string(),
                    reason: e.to_string(),
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(failed_at(url, VIEW_FILE)(e)),
    }
}

/// Removes a view definition once a table has replaced it.
pub async fn remove_view(ctx: &SessionContext, url: &Url) -> Result<(), LakeError> {
    let store = store_for(ctx, url)?;
    match store.delete(&store_path(url, VIEW_FILE)?).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(failed_at(url, VIEW_FILE)(e)),
    }
}

/// A small JSON document etl keeps in the lake beside the data (the last
/// result of each data test): `<root>/_etl/<kind>/<name>.json`.
fn state_path(root: &Url, kind: &str, name: &str) -> Result<StorePath, LakeError> {
    path_of(&format!("{}_etl/{kind}/{name}.json", root.path()))
}

pub async fn read_state(ctx: &SessionContext, root: &Url, kind: &str, name: &str) -> Option<serde_json::Value> {
    let store = store_for(ctx, root).ok()?;
    let bytes = store
        .get(&state_path(root, kind, name).ok()?)
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the document in one put: atomic on every store.
pub async fn write_state(
    ctx: &SessionContext,
    root: &Url,
    kind: &str,
    name: &str,
    value: &serde_json::Value,
) -> Result<(), LakeError> {
    let store = store_for(ctx, root)?;
    let body = serde_json::to_vec_pretty(value).map_err(|e| LakeError::Corrupt {
        what: "state document",
        at: format!("{root}_etl/{kind}/{name}.json"),
        reason: e.to_string(),
    })?;
    store
        .put(&state_path(root, kind, name)?, PutPayload::from(body))
        .await
        .map(drop)
        .map_err(failed_at(root, format!("_etl/{kind}/{name}.json")))
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

/// Deletes every object under `url` (a staged table once published or
/// rejected).
pub async fn remove_prefix(ctx: &SessionContext, url: &Url) -> Result<(), LakeError> {
    let store = store_for(ctx, url)?;
    let prefix = path_of(url.path())?;
    let objects: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(failed_at(url, ""))?;
    for object in objects {
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(LakeError::request(object_url(url, &object.location), &e)),
        }
    }
    if url.scheme() == "file" {
        // Local stores leave empty folders behind: remove the table's own.
        // Never its parents, even empty: another model of the build may be
        // creating its folder in one of them right now (see: issue 23,
        // `cannot create …/_etl_staging/gold/<model>/`).
        if let Ok(path) = url.to_file_path() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    Ok(())
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
            // delta-rs records the join, `target.k = source.k`.
            let predicate = info
                .and_then(|i| i["operationParameters"]["mergePredicate"].as_str())
                .unwrap_or_default();
            keys.iter()
                .all(|k| predicate.contains(&format!("target.{k} = source.{k}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_live_under_warehouse_schema_name() {
        let root = Url::parse("file:///data/lake/").unwrap();
        let rel = Relation {
            schema: "silver".into(),
            identifier: "orders".into(),
            ephemeral: false,
        };
        assert_eq!(
            relation_location(&root, &rel).as_str(),
            "file:///data/lake/warehouse/silver/orders/"
        );
        let s3 = Url::parse("s3://bucket/prefix/").unwrap();
        assert_eq!(
            relation_location(&s3, &rel).as_str(),
            "s3://bucket/prefix/warehouse/silver/orders/"
        );
    }

    /// A session that can run Delta's writes (their plan nodes need
    /// delta-rs's planner), as the build's own can.
    pub(super) fn session() -> SessionContext {
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_default_features()
            .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
            .build();
        SessionContext::new_with_state(state)
    }

    /// Whether the Parquet reader of a filtered read of the Delta table at
    /// `url` filters rows as it decodes them, in a session with
    /// `pushdown_filters` as given.
    async fn reader_filters_rows(url: &Url, pushdown_filters: bool) -> bool {
        use datafusion::datasource::physical_plan::{FileScanConfig, ParquetSource};
        use datafusion::datasource::source::DataSourceExec;
        use datafusion::physical_plan::ExecutionPlan;

        fn parquet(plan: &Arc<dyn ExecutionPlan>) -> Option<ParquetSource> {
            let found = plan
                .downcast_ref::<DataSourceExec>()
                .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
                .and_then(|scan| scan.file_source.downcast_ref::<ParquetSource>());
            match found {
                Some(source) => Some(source.clone()),
                None => plan.children().into_iter().find_map(parquet),
            }
        }

        let ctx = session();
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .parquet
            .pushdown_filters = pushdown_filters;
        ctx.register_table("t", delta_provider(&ctx, url).await.unwrap())
            .unwrap();
        let plan = ctx
            .sql("select x from t where x > 1")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let source = parquet(&plan).expect("a Parquet scan");
        source.table_parquet_options().global.pushdown_filters
    }

    /// Rows `x` = 1..=3 that come out once `gate` is opened, and a note
    /// in `started` when their stream is first polled.
    #[derive(Debug)]
    struct Gated {
        schema: datafusion::arrow::datatypes::SchemaRef,
        gate: Arc<tokio::sync::Semaphore>,
        started: Arc<tokio::sync::Notify>,
    }

    impl datafusion::physical_plan::streaming::PartitionStream for Gated {
        fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
            &self.schema
        }

        fn execute(
            &self,
            _: Arc<datafusion::execution::TaskContext>,
        ) -> datafusion::execution::SendableRecordBatchStream {
            use datafusion::arrow::array::Int64Array;
            let (schema, gate, started) = (self.schema.clone(), self.gate.clone(), self.started.clone());
            let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
            );
            let rows = futures::stream::once(async move {
                started.notify_one();
                let _open = gate.acquire().await;
                batch.map_err(Into::into)
            });
            Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                schema, rows,
            ))
        }
    }

    async fn count(url: &Url) -> i64 {
        use datafusion::arrow::array::AsArray;
        let ctx = session();
        ctx.register_table("t", delta_provider(&ctx, url).await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("select count(*) from t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0)
    }

    /// Appends the row `x` to the table at `url` with `commit`.
    async fn append_row(ctx: &SessionContext, url: &Url, x: i64, commit: Commit) -> Result<Written, DeltaTableError> {
        let plan = ctx
            .sql(&format!("select {x}::bigint as x"))
            .await
            .unwrap()
            .into_unoptimized_plan();
        write_table(
            ctx,
            url,
            plan,
            TableWrite::Append { merge_schema: false },
            &Layout::default(),
            commit,
        )
        .await
    }

    #[tokio::test]
    async fn a_write_computed_from_a_version_another_build_replaced_commits_nothing() {
        // See: issue 23 (two builds at once committed the same new file as
        // versions 31 and 32). Build A reads version 0 and computes its
        // rows; build B of the same model commits version 1 meanwhile;
        // A's commit is refused. Another engine's commit is not.
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        let first = ctx.sql("select 0::bigint as x").await.unwrap().into_unoptimized_plan();
        overwrite_table(&ctx, &url, first, serde_json::Map::new())
            .await
            .unwrap();
        let model = |expected_version| Commit {
            expected_version,
            app_transaction: Some(("etl/model.shop.clicks".into(), 1)),
            ..Commit::default()
        };
        let append = || TableWrite::Append { merge_schema: false };

        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let started = Arc::new(tokio::sync::Notify::new());
        let gated = Gated {
            schema: schema.clone(),
            gate: gate.clone(),
            started: started.clone(),
        };
        let table = datafusion::catalog::streaming::StreamingTable::try_new(schema, vec![Arc::new(gated)]).unwrap();
        let a_plan = ctx.read_table(Arc::new(table)).unwrap().into_unoptimized_plan();
        let a = {
            let (ctx, url, commit) = (ctx.clone(), url.clone(), model(Expected::Version(0)));
            tokio::spawn(async move { write_table(&ctx, &url, a_plan, append(), &Layout::default(), commit).await })
        };
        // A is computing its rows (its check of the version is behind it)...
        started.notified().await;
        // ...when B, another build of the same model, commits version 1.
        let b = append_row(&ctx, &url, 10, model(Expected::Version(0))).await.unwrap();
        assert_eq!(b.version, 1);
        gate.add_permits(1);
        let refused = a.await.unwrap().expect_err("A's commit must be refused");
        assert!(
            describe_error(&refused).starts_with(CONFLICT),
            "{}",
            describe_error(&refused)
        );
        assert_eq!(current_version(&ctx, &url).await, Some(1));
        assert_eq!(count(&url).await, 2, "B's row and the first one, none of A's");

        // Found moved on by the same model before it starts writing:
        // refused too.
        let refused = append_row(&ctx, &url, 5, model(Expected::Version(0)))
            .await
            .unwrap_err();
        assert!(
            describe_error(&refused).contains("it read version 0, and found version 1 committed since"),
            "{}",
            describe_error(&refused)
        );
        // Another engine's commit since (no app id of etl's) is not the
        // same writer: the write goes on top of it.
        append_row(&ctx, &url, 20, Commit::default()).await.unwrap();
        let written = append_row(&ctx, &url, 30, model(Expected::Version(1))).await.unwrap();
        assert_eq!((written.version, count(&url).await), (3, 4));

        // A table expected absent that another writer created is refused.
        let other = tempfile::tempdir().unwrap();
        let fresh = Url::from_directory_path(other.path()).unwrap();
        let made = ctx.sql("select 1::bigint as x").await.unwrap().into_unoptimized_plan();
        overwrite_table(&ctx, &fresh, made, serde_json::Map::new())
            .await
            .unwrap();
        let commit = Commit {
            expected_version: Expected::Absent,
            ..Commit::default()
        };
        let plan = ctx.sql("select 2::bigint as x").await.unwrap().into_unoptimized_plan();
        let how = TableWrite::Overwrite {
            partition_by: Vec::new(),
        };
        assert!(
            write_table(&ctx, &fresh, plan, how, &Layout::default(), commit)
                .await
                .is_err()
        );
        assert_eq!(count(&fresh).await, 1);
    }

    #[tokio::test]
    async fn removing_a_staged_table_leaves_the_folders_another_model_is_creating() {
        // See: issue 23. Model B's `create_dir_all` has made the schema
        // folder and not yet its own when model A's staged table goes.
        let dir = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        let relation = |name: &str| Relation {
            schema: "gold".into(),
            identifier: name.into(),
            ephemeral: false,
        };
        let ctx = session();
        let staged_a = staging_location(&root, &relation("a"));
        let plan = ctx.sql("select 1 as x").await.unwrap().into_unoptimized_plan();
        overwrite_table(&ctx, &staged_a, plan, serde_json::Map::new())
            .await
            .unwrap();
        let schema_folder = dir.path().join("warehouse/_etl_staging/gold");
        assert!(schema_folder.join("a/_delta_log").is_dir());

        remove_prefix(&ctx, &staged_a).await.unwrap();
        assert!(!schema_folder.join("a").exists(), "the staged table is gone");
        assert!(schema_folder.is_dir(), "B's parent folder is left for it");
        let staged_b = staging_location(&root, &relation("b"));
        std::fs::create_dir(staged_b.to_file_path().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn delta_scans_filter_rows_while_reading_only_when_the_session_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        let plan = ctx
            .sql("select * from (values (1), (2), (3)) v(x)")
            .await
            .unwrap()
            .into_unoptimized_plan();
        overwrite_table(&ctx, &url, plan, serde_json::Map::new()).await.unwrap();

        // delta-rs alone turns row filtering on for any scan with a
        // predicate; the session's default (off) now decides.
        assert!(!reader_filters_rows(&url, false).await);
        assert!(reader_filters_rows(&url, true).await);

        let rows = {
            let ctx = session();
            ctx.register_table("t", delta_provider(&ctx, &url).await.unwrap())
                .unwrap();
            ctx.sql("select count(*) from t where x > 1")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        };
        let count = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
            .unwrap()
            .to_string();
        assert!(count.contains("| 2 "), "{count}");
    }
}
