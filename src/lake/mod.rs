//! The lake: where each relation lives (`<lake>/warehouse/<schema>/<name>/`),
//! and the object stores that hold it. A foundation: it uses no stage.
//!
//! - `delta`: Delta tables, written in one atomic commit each;
//! - `views`: view definitions stored beside the tables they read;
//! - `documents`: small JSON documents etl keeps beside the data;
//! - `lock`: one build at a time per lake;
//! - `storage`: the stores of the lake's and the sources' buckets.

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
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
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
mod delta;
mod storage;
pub use delta::*;
mod documents;
pub use documents::*;
mod views;
pub use storage::{check_option, connect, ensure_store, take_commit_time};
pub use views::*;

/// The path of `file` under `root` (see [`source_root`]), `/`-separated.
pub fn relative_path(root: &object_store::path::Path, file: &object_store::path::Path) -> String {
    match file.prefix_match(root) {
        Some(parts) => parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"),
        None => file.to_string(),
    }
}

/// A URL for a location written as an absolute path or a URL.
pub fn parse_location(location: &str) -> Result<Url, LakeError> {
    if location.contains("://") {
        Url::parse(location).map_err(|e| LakeError::Location(format!("`{location}` is not a valid URL: {e}")))
    } else {
        Url::from_directory_path(location)
            .map_err(|()| LakeError::Location(format!("`{location}` is not an absolute path")))
    }
}

/// A folder's URL, ending in `/`: the lake root, from a location as
/// [`parse_location`] takes it.
pub fn folder_url(location: &str) -> Result<Url, LakeError> {
    let mut url = parse_location(location)?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
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
pub(crate) fn store_for(ctx: &SessionContext, url: &Url) -> Result<Arc<dyn ObjectStore>, LakeError> {
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

/// Whether the lake at `url` can be read: the number of objects found
/// under it, up to `limit` (0 for a lake not written yet).
pub async fn probe(ctx: &SessionContext, url: &Url, limit: usize) -> Result<usize, LakeError> {
    let store = store_for(ctx, url)?;
    let prefix = path_of(url.path())?;
    let mut listing = store.list(Some(&prefix));
    let mut found = 0;
    while found < limit {
        match listing.try_next().await {
            Ok(Some(_)) => found += 1,
            Ok(None) => break,
            // A local lake not created yet is made by the first build.
            Err(object_store::Error::NotFound { .. }) => break,
            Err(e) => return Err(LakeError::request(url, &e)),
        }
    }
    Ok(found)
}

/// Copies the object at `from` to `to`, in the same store, replacing what
/// `to` held at once (the store's own copy: a hard link then a rename on
/// local disk, a server-side copy on S3).
pub async fn copy_object(ctx: &SessionContext, from: &Url, to: &Url) -> Result<(), LakeError> {
    let store = store_for(ctx, from)?;
    let (source, target) = (path_of(from.path())?, path_of(to.path())?);
    store
        .copy(&source, &target)
        .await
        .map_err(|e| LakeError::request(to, &e))
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

/// Removes the Delta table at `url` that a failed node created: its log
/// and the files its log added, if that is all its folder holds. `false`
/// (and nothing removed) when the folder holds anything else.
pub async fn remove_created_table(ctx: &SessionContext, url: &Url) -> Result<bool, LakeError> {
    let store = store_for(ctx, url)?;
    let prefix = path_of(url.path())?;
    let objects: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(failed_at(url, ""))?;
    let log = format!("{}/_delta_log/", prefix.as_ref());
    let mut added = std::collections::HashSet::new();
    for object in objects.iter().filter(|o| o.location.as_ref().starts_with(&log)) {
        if !object.location.as_ref().ends_with(".json") {
            continue;
        }
        let got = match store.get(&object.location).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = got.map_err(|e| LakeError::request(object_url(url, &object.location), &e))?;
        let text = String::from_utf8_lossy(&bytes);
        for action in delta::commit_actions(&text).unwrap_or_default() {
            if let Some(path) = action.get("add").and_then(|a| a["path"].as_str()) {
                if let Ok(file) = StorePath::from_url_path(format!("{}/{path}", prefix.as_ref())) {
                    added.insert(file);
                }
            }
        }
    }
    let only_its_own = objects
        .iter()
        .all(|o| o.location.as_ref().starts_with(&log) || added.contains(&o.location));
    if !only_its_own {
        return Ok(false);
    }
    // The objects just listed: no second listing.
    delete_objects(store.as_ref(), url, objects).await?;
    Ok(true)
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
    delete_objects(store.as_ref(), url, objects).await
}

/// Deletes `objects` (listed under `url`), and on a local disk the
/// table's own folder.
async fn delete_objects(store: &dyn ObjectStore, url: &Url, objects: Vec<ObjectMeta>) -> Result<(), LakeError> {
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

    /// Fails unless `err` is a write refused with `words` in its message.
    fn assert_refused(err: &DeltaTableError, words: &str) {
        let message = describe_error(err);
        assert!(message.contains(words), "{message}");
    }

    /// A new table of the one row `x = 0`, in a folder of its own.
    async fn table_of_one_row() -> (tempfile::TempDir, Url) {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        let first = ctx.sql("select 0::bigint as x").await.unwrap().into_unoptimized_plan();
        overwrite_table(&ctx, &url, first, serde_json::Map::new())
            .await
            .unwrap();
        (dir, url)
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
        let (_dir, url) = table_of_one_row().await;
        let ctx = session();
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
        assert_refused(&refused, "it read version 0, and found version 1 committed since");
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
    async fn a_write_going_on_from_the_table_as_loaded_sees_what_was_committed_or_removed_since() {
        // A node loads its table when it starts and its write goes on from
        // that load (reading only the commits since): what happened in
        // between must count as it does for a write that loads afresh.
        let (dir, url) = table_of_one_row().await;
        let ctx = session();
        let model = |loaded, expected_version| Commit {
            expected_version,
            app_transaction: Some(("etl/model.shop.clicks".into(), 1)),
            loaded: Some(loaded),
            ..Commit::default()
        };
        let at_0 = open_table(&ctx, &url).await.unwrap().unwrap();

        // Another build of the same model committed since the load: refused.
        let same_model = Commit {
            app_transaction: Some(("etl/model.shop.clicks".into(), 1)),
            ..Commit::default()
        };
        append_row(&ctx, &url, 10, same_model).await.unwrap();
        let refused = append_row(&ctx, &url, 5, model(at_0.clone(), Expected::Version(0)))
            .await
            .unwrap_err();
        assert_refused(&refused, "it read version 0, and found version 1 committed since");
        // Another engine's commit since: the write goes on top of it, and
        // keeps its rows.
        let at_1 = open_table(&ctx, &url).await.unwrap().unwrap();
        append_row(&ctx, &url, 20, Commit::default()).await.unwrap();
        let written = append_row(&ctx, &url, 30, model(at_1, Expected::Version(1)))
            .await
            .unwrap();
        assert_eq!((written.version, count(&url).await), (3, 4));

        // The table deleted since the load: expected at a version, the
        // write is refused; expecting anything, it makes a new table from
        // version 0, not a version 4 with no log under it.
        let at_3 = open_table(&ctx, &url).await.unwrap().unwrap();
        std::fs::remove_dir_all(dir.path()).unwrap();
        let refused = append_row(&ctx, &url, 40, model(at_3.clone(), Expected::Version(3)))
            .await
            .unwrap_err();
        assert_refused(&refused, "found no table");
        let written = append_row(&ctx, &url, 50, model(at_3, Expected::Any)).await.unwrap();
        assert_eq!((written.version, count(&url).await), (0, 1));

        // A table loaded elsewhere is not taken for this one.
        let other_dir = tempfile::tempdir().unwrap();
        let other = Url::from_directory_path(other_dir.path()).unwrap();
        let loaded_here = open_table(&ctx, &url).await.unwrap().unwrap();
        let written = append_row(&ctx, &other, 60, model(loaded_here, Expected::Any))
            .await
            .unwrap();
        assert_eq!((written.version, count(&other).await, count(&url).await), (0, 1, 1));
    }

    #[tokio::test]
    async fn a_table_etl_creates_is_checkpointed_every_ten_commits() {
        let (dir, url) = table_of_one_row().await;
        let ctx = session();
        for x in 1..=10 {
            append_row(&ctx, &url, x, Commit::default()).await.unwrap();
        }
        let log = dir.path().join("_delta_log");
        let checkpoints: Vec<String> = std::fs::read_dir(&log)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("checkpoint.parquet"))
            .collect();
        assert_eq!(checkpoints, ["00000000000000000009.checkpoint.parquet"]);
        // Read from the checkpoint and the one commit after it.
        let table = open_table(&ctx, &url).await.unwrap().unwrap();
        assert_eq!(table.version(), Some(10));
        assert_eq!(count(&url).await, 11);
        let properties = table.snapshot().unwrap().metadata().configuration().clone();
        assert_eq!(
            properties.get("delta.checkpointInterval").map(String::as_str),
            Some("10")
        );
    }

    #[tokio::test]
    async fn a_data_file_gone_from_a_table_is_found_whether_its_files_are_asked_for_or_listed() {
        let (dir, url) = table_of_one_row().await;
        let ctx = session();
        let data_files = |dir: &std::path::Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".parquet"))
                .collect();
            names.sort();
            names
        };
        let missing = |url: Url| async move {
            let ctx = session();
            let table = open_table(&ctx, &url).await.unwrap().unwrap();
            missing_data_files(&ctx, &url, &table).await.unwrap()
        };
        // A few files: each is asked for.
        append_row(&ctx, &url, 1, Commit::default()).await.unwrap();
        assert!(missing(url.clone()).await.is_empty());
        let gone = data_files(dir.path())[0].clone();
        std::fs::remove_file(dir.path().join(&gone)).unwrap();
        assert_eq!(missing(url.clone()).await, [gone.clone()]);
        // More than ASKED_FILES: the folder is listed.
        for x in 2..=(delta::ASKED_FILES as i64 + 1) {
            append_row(&ctx, &url, x, Commit::default()).await.unwrap();
        }
        let files = data_files(dir.path());
        assert!(files.len() > delta::ASKED_FILES, "{}", files.len());
        let also_gone = files.last().unwrap().clone();
        std::fs::remove_file(dir.path().join(&also_gone)).unwrap();
        let mut expected = vec![gone, also_gone];
        expected.sort();
        let mut found = missing(url.clone()).await;
        found.sort();
        assert_eq!(found, expected);
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
