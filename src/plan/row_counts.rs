//! Row counts of CSV and JSON source files, learnt as a side effect of
//! reading them and kept in the lake (`_etl/row_counts/<source>.json`).
//!
//! A Parquet file states its row count in its footer, so DataFusion answers
//! `count(*)` over Parquet from statistics. A CSV or JSON file (gzipped, as
//! feeds often are) has no footer: counting its rows means decompressing
//! and parsing all of it, every build, although the file has not changed
//! since yesterday. So every scan that reads a whole file to its end
//! records how many rows it gave, keyed by the file's path under the
//! source's folder, size, time and ETag (so a project moved with its lake
//! by `mv` keeps them; a copy has new inodes, so new local ETags), and the
//! source's format reports that count back to DataFusion as
//! an exact statistic. A query that only needs the row count of files read
//! before (a reconciliation test of bronze against silver, after the
//! ingesting models have read the new files) is then answered from the
//! statistics without opening a file.
//!
//! Nothing is read twice to learn a count: a file gets one the first time
//! a query reads all of it. A count is only ever a cache: a file changed
//! in any way misses it, and a lost or unreadable document only costs a
//! read.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileOpenFuture, FileOpener, FileScanConfig, FileScanConfigBuilder, FileSinkConfig, FileSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::{LexRequirement, PhysicalExpr};
use datafusion::physical_plan::filter_pushdown::FilterPushdownPropagation;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::{DisplayFormatType, ExecutionPlan};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use crate::lake;

/// The counts of every file source read in a session, loaded from the lake
/// the first time a source is read and written back by [`RowCounts::save`].
pub struct RowCounts {
    lake: Url,
    sources: tokio::sync::Mutex<HashMap<String, Arc<SourceCounts>>>,
}

impl RowCounts {
    pub fn new(lake: Url) -> RowCounts {
        RowCounts {
            lake,
            sources: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The counts of source `name` (`<source>.<table>`) read as `reading`
    /// (its format and options): counts learnt under other options, such
    /// as `header: false`, are not reused. Files are keyed by their path
    /// under `folder`, the object store path the source's files are listed
    /// from.
    pub async fn of_source(&self, ctx: &SessionContext, name: &str, reading: &str, folder: &str) -> Arc<SourceCounts> {
        let mut sources = self.sources.lock().await;
        if let Some(counts) = sources.get(name).filter(|c| c.reading == reading && c.folder == folder) {
            return counts.clone();
        }
        let stored = lake::read_document(ctx, &self.lake, "row_counts", name)
            .await
            .and_then(|doc| serde_json::from_value::<Document>(doc).ok())
            .filter(|doc| doc.reading == reading)
            .map(|doc| doc.files)
            .unwrap_or_default();
        let counts = Arc::new(SourceCounts {
            name: name.to_owned(),
            reading: reading.to_owned(),
            folder: folder.trim_end_matches('/').to_owned(),
            files: Mutex::new(stored),
            learnt: AtomicBool::new(false),
        });
        sources.insert(name.to_owned(), counts.clone());
        counts
    }

    /// Writes the documents of the sources that learnt a count. Failing to
    /// is not an error of the build: the counts are learnt again.
    pub async fn save(&self, ctx: &SessionContext) -> Result<(), lake::LakeError> {
        let sources: Vec<Arc<SourceCounts>> = self.sources.lock().await.values().cloned().collect();
        for counts in sources {
            if !counts.learnt.swap(false, Ordering::AcqRel) {
                continue;
            }
            let doc = Document {
                reading: counts.reading.clone(),
                files: counts.files.lock().expect("row counts poisoned").clone(),
            };
            let value = serde_json::to_value(&doc).map_err(|e| lake::LakeError::Corrupt {
                what: "row counts",
                at: counts.name.clone(),
                reason: e.to_string(),
            })?;
            lake::write_document(ctx, &self.lake, "row_counts", &counts.name, &value).await?;
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Document {
    reading: String,
    files: BTreeMap<String, FileCount>,
}

#[derive(Clone, Serialize, Deserialize)]
struct FileCount {
    size: u64,
    modified_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e_tag: Option<String>,
    rows: u64,
}

impl FileCount {
    fn of(meta: &ObjectMeta, rows: u64) -> FileCount {
        FileCount {
            size: meta.size,
            modified_ms: meta.last_modified.timestamp_millis(),
            e_tag: meta.e_tag.clone(),
            rows,
        }
    }

    fn is_for(&self, meta: &ObjectMeta) -> bool {
        self.size == meta.size
            && self.modified_ms == meta.last_modified.timestamp_millis()
            && (self.e_tag.is_none() || meta.e_tag.is_none() || self.e_tag == meta.e_tag)
    }
}

/// The row counts of one source's files.
pub struct SourceCounts {
    name: String,
    reading: String,
    /// The object store path the files are listed from, without its last
    /// `/`; the documents key files by their path under it.
    folder: String,
    files: Mutex<BTreeMap<String, FileCount>>,
    learnt: AtomicBool,
}

impl SourceCounts {
    pub(crate) fn rows(&self, meta: &ObjectMeta) -> Option<u64> {
        let files = self.files.lock().expect("row counts poisoned");
        files.get(self.key(meta)).filter(|c| c.is_for(meta)).map(|c| c.rows)
    }

    fn record(&self, meta: &ObjectMeta, rows: u64) {
        let key = self.key(meta);
        let mut files = self.files.lock().expect("row counts poisoned");
        let known = files.get(key).filter(|c| c.is_for(meta));
        if known.map(|c| c.rows) != Some(rows) {
            files.insert(key.to_owned(), FileCount::of(meta, rows));
            self.learnt.store(true, Ordering::Release);
        }
    }
}

impl SourceCounts {
    /// A file's path under the source's folder; its whole path when it is
    /// not under it.
    fn key<'a>(&self, meta: &'a ObjectMeta) -> &'a str {
        let path: &str = meta.location.as_ref();
        match path.strip_prefix(self.folder.as_str()) {
            Some(rest) if self.folder.is_empty() => rest,
            // A source that names one file lists it as its folder.
            Some("") => meta.location.filename().unwrap_or(path),
            Some(rest) => rest.strip_prefix('/').unwrap_or(path),
            None => path,
        }
    }
}

/// A CSV or JSON format that reports known row counts as exact statistics
/// and counts the rows of every file its scans read to the end.
#[derive(Debug)]
pub struct CountingFormat {
    inner: Arc<dyn FileFormat>,
    counts: Arc<SourceCounts>,
}

impl CountingFormat {
    pub fn new(inner: Arc<dyn FileFormat>, counts: Arc<SourceCounts>) -> CountingFormat {
        CountingFormat { inner, counts }
    }
}

impl fmt::Debug for SourceCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceCounts({})", self.name)
    }
}

#[async_trait]
impl FileFormat for CountingFormat {
    fn get_ext(&self) -> String {
        self.inner.get_ext()
    }

    fn get_ext_with_compression(&self, compression: &FileCompressionType) -> Result<String> {
        self.inner.get_ext_with_compression(compression)
    }

    fn compression_type(&self) -> Option<FileCompressionType> {
        self.inner.compression_type()
    }

    async fn infer_schema(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        objects: &[ObjectMeta],
    ) -> Result<SchemaRef> {
        self.inner.infer_schema(state, store, objects).await
    }

    async fn infer_stats(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &ObjectMeta,
    ) -> Result<Statistics> {
        match self.counts.rows(object) {
            Some(rows) => Ok(Statistics::new_unknown(&table_schema).with_num_rows(Precision::Exact(rows as usize))),
            None => self.inner.infer_stats(state, store, table_schema, object).await,
        }
    }

    async fn create_physical_plan(&self, state: &dyn Session, conf: FileScanConfig) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.create_physical_plan(state, conf).await?;
        let Some(config) = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(plan);
        };
        let counting = CountingSource {
            inner: config.file_source.clone(),
            counts: self.counts.clone(),
        };
        let config = FileScanConfigBuilder::from(config.clone())
            .with_source(Arc::new(counting))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    async fn create_writer_physical_plan(
        &self,
        input: Arc<dyn ExecutionPlan>,
        state: &dyn Session,
        conf: FileSinkConfig,
        order_requirements: Option<LexRequirement>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner
            .create_writer_physical_plan(input, state, conf, order_requirements)
            .await
    }

    fn file_source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        // The inner format's own source: its `create_physical_plan`
        // expects it, and wraps it only once the plan is made.
        self.inner.file_source(table_schema)
    }
}

/// The file source of a [`CountingFormat`] scan: the format's own, whose
/// opener's streams are counted.
struct CountingSource {
    inner: Arc<dyn FileSource>,
    counts: Arc<SourceCounts>,
}

impl CountingSource {
    fn wrap(&self, inner: Arc<dyn FileSource>) -> Arc<dyn FileSource> {
        Arc::new(CountingSource {
            inner,
            counts: self.counts.clone(),
        })
    }
}

impl FileSource for CountingSource {
    fn create_file_opener(
        &self,
        object_store: Arc<dyn ObjectStore>,
        base_config: &FileScanConfig,
        partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        let inner = self.inner.create_file_opener(object_store, base_config, partition)?;
        Ok(Arc::new(CountingOpener {
            inner,
            counts: self.counts.clone(),
        }))
    }

    fn table_schema(&self) -> &TableSchema {
        self.inner.table_schema()
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        self.wrap(self.inner.with_batch_size(batch_size))
    }

    fn filter(&self) -> Option<Arc<dyn PhysicalExpr>> {
        self.inner.filter()
    }

    fn projection(&self) -> Option<&ProjectionExprs> {
        self.inner.projection()
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        self.inner.metrics()
    }

    fn file_type(&self) -> &str {
        self.inner.file_type()
    }

    fn fmt_extra(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.fmt_extra(t, f)
    }

    fn supports_repartitioning(&self) -> bool {
        self.inner.supports_repartitioning()
    }

    fn try_pushdown_filters(
        &self,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn FileSource>>> {
        let pushed = self.inner.try_pushdown_filters(filters, config)?;
        Ok(FilterPushdownPropagation {
            filters: pushed.filters,
            updated_node: pushed.updated_node.map(|source| self.wrap(source)),
        })
    }

    fn try_pushdown_projection(&self, projection: &ProjectionExprs) -> Result<Option<Arc<dyn FileSource>>> {
        Ok(self
            .inner
            .try_pushdown_projection(projection)?
            .map(|source| self.wrap(source)))
    }

    fn reorder_files(&self, files: Vec<PartitionedFile>) -> Vec<PartitionedFile> {
        self.inner.reorder_files(files)
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }
}

struct CountingOpener {
    inner: Arc<dyn FileOpener>,
    counts: Arc<SourceCounts>,
}

impl FileOpener for CountingOpener {
    fn open(&self, file: PartitionedFile) -> Result<FileOpenFuture> {
        // A byte range of a file is not the whole file.
        if file.range.is_some() {
            return self.inner.open(file);
        }
        let meta = file.object_meta.clone();
        let counts = self.counts.clone();
        let opening = self.inner.open(file)?;
        Ok(Box::pin(async move {
            let batches = opening.await?;
            let rows = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicBool::new(false));
            let (tally, broke) = (rows.clone(), failed.clone());
            let counted = batches
                .inspect(move |batch| match batch {
                    Ok(batch) => {
                        tally.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    }
                    Err(_) => broke.store(true, Ordering::Relaxed),
                })
                .chain(futures::stream::poll_fn(move |_| {
                    // Polled only once the file was read to its end: a
                    // LIMIT stops polling before.
                    if !failed.load(Ordering::Relaxed) {
                        counts.record(&meta, rows.load(Ordering::Relaxed));
                    }
                    std::task::Poll::Ready(None)
                }));
            Ok(counted.boxed())
        }))
    }
}

/// What the counts of a source depend on besides the files themselves:
/// not where they are, so that a moved lake keeps its counts.
pub fn reading(format: &str, options: &BTreeMap<String, serde_json::Value>) -> String {
    json!({"format": format, "options": options}).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use datafusion::arrow::array::Int64Array;
    use datafusion::physical_plan::{collect, displayable};

    use super::*;
    use crate::plan::sources::source_provider;
    use crate::plan::{SessionOptions, new_session};
    use crate::project::{Source, SourceFormat};

    fn csv_source(dir: &Path, header: bool) -> Source {
        let mut options = BTreeMap::new();
        options.insert("header".to_owned(), serde_json::Value::Bool(header));
        Source {
            source_name: "raw".into(),
            name: "items".into(),
            location: format!("{}/data/*.csv", dir.display()),
            format: SourceFormat::Csv,
            options,
            columns: vec![],
            description: String::new(),
            config: Default::default(),
            fqn: vec![],
            span: None,
            properties_file: dir.join("sources.yml"),
            in_lake: None,
        }
    }

    /// `select count(*)` over the source, and whether it read any file.
    async fn count(counts: &RowCounts, source: &Source, sql: &str) -> (i64, bool) {
        let ctx = new_session(&SessionOptions::default()).unwrap();
        let provider = source_provider(&ctx, counts, source).await.unwrap();
        ctx.register_table("items", provider).unwrap();
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let scans = displayable(plan.as_ref())
            .indent(true)
            .to_string()
            .contains("DataSourceExec");
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        let n = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        (n, scans)
    }

    fn lake_of(dir: &Path) -> Url {
        Url::from_directory_path(dir.join("lake")).unwrap()
    }

    #[tokio::test]
    async fn a_count_over_files_read_before_comes_from_their_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/a.csv"), "id,qty\n1,5\n2,6\n3,7\n").unwrap();
        std::fs::write(dir.join("data/b.csv"), "id,qty\n4,1\n5,2\n").unwrap();
        let source = csv_source(dir, true);
        let sql = "select count(*) from items";

        let counts = RowCounts::new(lake_of(dir));
        assert_eq!(count(&counts, &source, sql).await, (5, true));
        // The scan above read both files to the end: their counts are known.
        assert_eq!(count(&counts, &source, sql).await, (5, false));

        // Kept in the lake, for the next build.
        let ctx = new_session(&SessionOptions::default()).unwrap();
        counts.save(&ctx).await.unwrap();
        let stored = std::fs::read_to_string(dir.join("lake/_etl/row_counts/raw.items.json")).unwrap();
        assert!(stored.contains("\"rows\": 3"), "{stored}");
        let next_build = RowCounts::new(lake_of(dir));
        assert_eq!(count(&next_build, &source, sql).await, (5, false));

        // A file changed in place is read again, never counted from the past.
        std::fs::write(dir.join("data/a.csv"), "id,qty\n1,5\n2,6\n3,7\n8,9\n").unwrap();
        assert_eq!(count(&next_build, &source, sql).await, (6, true));
        assert_eq!(count(&next_build, &source, sql).await, (6, false));
        // A new file alone makes the whole count a scan again.
        std::fs::write(dir.join("data/c.csv"), "id,qty\n9,1\n").unwrap();
        assert_eq!(count(&next_build, &source, sql).await, (7, true));
    }

    #[tokio::test]
    async fn a_count_over_json_files_read_before_comes_from_their_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/a.jsonl"), "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n").unwrap();
        std::fs::write(dir.join("data/b.jsonl"), "{\"id\": 4}\n{\"id\": 5}\n").unwrap();
        let source = Source {
            location: format!("{}/data/*.jsonl", dir.display()),
            format: SourceFormat::Json,
            options: BTreeMap::new(),
            ..csv_source(dir, true)
        };
        let sql = "select count(*) from items";
        let counts = RowCounts::new(lake_of(dir));
        assert_eq!(count(&counts, &source, sql).await, (5, true));
        assert_eq!(count(&counts, &source, sql).await, (5, false));
    }

    #[tokio::test]
    async fn a_project_moved_with_its_lake_keeps_the_counts_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let before = dir.path().join("before");
        std::fs::create_dir_all(before.join("data")).unwrap();
        std::fs::write(before.join("data/a.csv"), "id,qty\n1,5\n2,6\n3,7\n").unwrap();
        std::fs::write(before.join("data/b.csv"), "id,qty\n4,1\n5,2\n").unwrap();
        let sql = "select count(*) from items";
        let counts = RowCounts::new(lake_of(&before));
        assert_eq!(count(&counts, &csv_source(&before, true), sql).await, (5, true));
        let ctx = new_session(&SessionOptions::default()).unwrap();
        counts.save(&ctx).await.unwrap();
        let stored = std::fs::read_to_string(before.join("lake/_etl/row_counts/raw.items.json")).unwrap();
        assert!(stored.contains("\"a.csv\""), "{stored}");
        assert!(!stored.contains("before"), "{stored}");

        // `mv` keeps the files' times and inodes: nothing needs reading.
        let after = dir.path().join("after");
        std::fs::rename(&before, &after).unwrap();
        let moved = RowCounts::new(lake_of(&after));
        assert_eq!(count(&moved, &csv_source(&after, true), sql).await, (5, false));
    }

    #[tokio::test]
    async fn a_limited_scan_or_other_options_learn_nothing_reused() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/a.csv"), "id,qty\n1,5\n2,6\n3,7\n").unwrap();
        let source = csv_source(dir, true);
        let counts = RowCounts::new(lake_of(dir));

        // A LIMIT stops reading before the end: no count is learnt.
        let (first, _) = count(&counts, &source, "select count(*) from (select * from items limit 1)").await;
        assert_eq!(first, 1);
        assert_eq!(count(&counts, &source, "select count(*) from items").await, (3, true));
        let ctx = new_session(&SessionOptions::default()).unwrap();
        counts.save(&ctx).await.unwrap();

        // Without a header the first line is a row: the count learnt with
        // one is not used.
        let headerless = csv_source(dir, false);
        let counts = RowCounts::new(lake_of(dir));
        assert_eq!(
            count(&counts, &headerless, "select count(*) from items").await,
            (4, true)
        );
        assert_eq!(
            count(&counts, &headerless, "select count(*) from items").await,
            (4, false)
        );
    }
}
