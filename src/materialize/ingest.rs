//! Exactly-once file ingestion. An incremental model reading a file source
//! reads only the files it has not consumed before, as Snowpipe or Auto
//! Loader do: the files it consumed are recorded in the very Delta commit
//! that holds the rows it made of them, so no crash can separate the two,
//! and replaying the same files is a no-op. The commit also carries a Delta
//! application transaction (`txn`) numbered by the files consumed, and is
//! refused if the table moved on since the build read that record (see
//! `lake::Expected`): two builds cannot both ingest a file.
//!
//! A file is recorded by its path under the source's location and its
//! size, not by where it is on disk: a lake or project moved or copied
//! elsewhere (a new CI workspace, a restored backup, a symlinked project)
//! reads only the files that are new. A file with no rows is not recorded
//! (see `sort_files`), and a consumed file whose size changed is reported.
//!
//! `ingest: all_files` in a model's config turns this off (a model that
//! recomputes from all the files, such as an `insert_overwrite`).
//!
//! A data test with `source_files: new` reads, of each file source, the
//! files the build ingests (see `files_to_ingest`): a quality gate on what
//! arrives, as a streaming table's expectations are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use object_store::ObjectMeta;
use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Build;
use crate::config::{IngestMode, Strategy};
use crate::diagnostic::{Code, Diagnostic};
use crate::graph::{Materialization, ResourceType};
use crate::lake;
use crate::lake::Relation;

/// A file an ingesting model has read, as its commit records it, under its
/// path relative to the source's location (see `plan::source_root`): a
/// project or lake moved elsewhere, or copied, has the same records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Bytes: what tells a file rewritten under the same name.
    pub size: u64,
}

/// The files of one source a model has consumed, by relative path.
pub type Consumed = BTreeMap<String, FileRecord>;

/// What an ingesting model consumes in this build.
#[derive(Debug, Clone, Default)]
pub struct Ingest {
    /// `source.table` -> every file consumed once this build commits.
    pub consumed: BTreeMap<String, Consumed>,
    /// `source.table` -> the files seen with no rows, at their size then:
    /// not consumed (rows written to one later are read), and reported
    /// once, not every build. Kept in `<lake>/_etl/ingest/<model>.json`
    /// (not in a commit: a night whose only new file is empty commits
    /// nothing), and as they were when this build began.
    pub empty: BTreeMap<String, Consumed>,
    pub empty_before: BTreeMap<String, Consumed>,
    /// Files this build reads for the first time.
    pub new_files: usize,
    /// Files left unread, and why: empty ones, rewritten ones.
    pub warnings: Vec<Diagnostic>,
}

impl Ingest {
    pub fn total(&self) -> usize {
        self.consumed.values().map(BTreeMap::len).sum()
    }
}

/// The key of a commit's record of consumed files. Earlier versions of
/// etl recorded absolute paths under `ingested` (see `recorded`).
pub const RECORD_KEY: &str = "ingested_files";
const STATE_KIND: &str = "ingest";
const LEGACY_KEY: &str = "ingested";

/// The new files of one source, read in place of the source itself.
pub struct NewFiles {
    pub source: Relation,
    pub provider: Arc<dyn TableProvider>,
    /// Empty: `provider` replaces `source`. Otherwise `source` is kept,
    /// cut to the rows sharing these columns with `provider`'s rows.
    pub keys: Vec<String>,
    /// How many files `provider` reads.
    pub files: usize,
}

/// For each file source the incremental model at `index` reads (directly
/// or through the ephemeral models inlined into it), the files it has not
/// consumed yet; `None` when the model ingests nothing.
pub async fn prepare(build: &Build, index: NodeIndex) -> Result<Option<(Ingest, Vec<NewFiles>)>, Diagnostic> {
    if !ingests(build.dag.node(index)) {
        return Ok(None);
    }
    let sources: Vec<(&Relation, &crate::project::Source)> = file_sources(build, index)
        .into_iter()
        .map(|p| (&build.dag.node(p).relation, build.dag.node(p).source(&build.project)))
        .collect();
    if sources.is_empty() {
        return Ok(None);
    }
    let before = last_record(build, index).await;
    let node = build.dag.node(index);
    let empty_before: BTreeMap<String, Consumed> =
        lake::read_document(&build.registry.ctx, &build.registry.lake, STATE_KIND, &node.unique_id)
            .await
            .and_then(|state| serde_json::from_value(state["empty_files"].clone()).ok())
            .unwrap_or_default();
    let mut ingest = Ingest {
        empty_before: empty_before.clone(),
        ..Ingest::default()
    };
    let mut readers = Vec::new();
    for (relation, source) in sources {
        let key = source_key(source);
        let files = listed(build, source).await?;
        let seen = recorded(before.as_ref(), &key, &files);
        let empty = empty_before.get(&key).cloned().unwrap_or_default();
        let sorted = sort_files(build, source, &node.name, seen, empty, files).await?;
        ingest.new_files += sorted.new.len();
        ingest.warnings.extend(sorted.warnings);
        if !sorted.empty.is_empty() {
            ingest.empty.insert(key.clone(), sorted.empty);
        }
        let provider = build.parsed.provider(build, source, &sorted.new).await?;
        readers.push(NewFiles {
            keys: Vec::new(),
            source: relation.clone(),
            provider,
            files: sorted.new.len(),
        });
        ingest.consumed.insert(key, sorted.consumed);
    }
    Ok(Some((ingest, readers)))
}

/// Keeps the empty files `ingest` saw, when they changed (see
/// `Ingest::empty`). Losing this only costs reporting them again.
pub async fn remember_empty_files(build: &Build, index: NodeIndex, ingest: &Ingest) {
    if ingest.empty == ingest.empty_before {
        return;
    }
    let node = build.dag.node(index);
    let state = serde_json::json!({"empty_files": ingest.empty});
    if let Err(e) = lake::write_document(
        &build.registry.ctx,
        &build.registry.lake,
        STATE_KIND,
        &node.unique_id,
        &state,
    )
    .await
    {
        tracing::warn!(node = %node.name, "could not keep the empty files it saw: {e}");
    }
}

/// Whether the model reads its file sources a file at a time: incremental,
/// not `ingest: all_files`, not microbatch (which reads each batch's
/// window of its sources instead).
fn ingests(node: &crate::graph::Node) -> bool {
    node.materialized == Materialization::Incremental
        && node.config.ingest == IngestMode::NewFiles
        && !node
            .config
            .incremental
            .as_ref()
            .is_some_and(|i| matches!(i.strategy, Strategy::Microbatch(_)))
}

/// The file sources (not Delta sources) the node at `index` scans,
/// directly or through ephemeral models.
fn file_sources(build: &Build, index: NodeIndex) -> Vec<NodeIndex> {
    build
        .dag
        .scanned_parents(index)
        .into_iter()
        .filter(|&p| {
            let node = build.dag.node(p);
            node.resource_type == ResourceType::Source
                && node.source(&build.project).format != crate::project::SourceFormat::Delta
        })
        .collect()
}

fn source_key(source: &crate::project::Source) -> String {
    format!("{}.{}", source.source_name, source.name)
}

/// A source's files now, each with its path under the source's location.
async fn listed(build: &Build, source: &crate::project::Source) -> Result<Vec<(String, ObjectMeta)>, Diagnostic> {
    let root = crate::plan::source_root(source)?;
    let files = crate::plan::list_source_files(&build.registry.ctx, source).await?;
    Ok(files
        .into_iter()
        .map(|f| (lake::relative_path(&root, &f.location), f))
        .collect())
}

/// etl's metadata in the last commit of an ingesting model, which records
/// the files it consumed: none when this build rebuilds it in full.
async fn last_record(build: &Build, index: NodeIndex) -> Option<Value> {
    let node = build.dag.node(index);
    if !build.options.incremental.contains(&node.name) {
        return None;
    }
    let url = build.registry.location(&node.relation);
    lake::last_etl_commit(&build.registry.ctx, &url).await
}

/// The files of source `key` that `etl` (a commit's metadata) records as
/// consumed, among `files` (the source's files now).
///
/// Records of earlier etl versions are lists of absolute paths: those
/// under the source's location now are its files; one elsewhere (the
/// project was moved since) is the file now at the longest path it ends
/// with.
fn recorded(etl: Option<&Value>, key: &str, files: &[(String, ObjectMeta)]) -> Consumed {
    let Some(etl) = etl else {
        return Consumed::new();
    };
    if let Some(record) = etl.get(RECORD_KEY).and_then(|r| r.get(key)) {
        return serde_json::from_value(record.clone()).unwrap_or_default();
    }
    let Some(Value::Array(paths)) = etl.get(LEGACY_KEY).and_then(|r| r.get(key)) else {
        return Consumed::new();
    };
    let mut consumed = Consumed::new();
    for path in paths.iter().filter_map(Value::as_str) {
        let path = path.trim_start_matches('/');
        let found = files
            .iter()
            .filter(|(relative, meta)| {
                meta.location.as_ref() == path || path.ends_with(&format!("/{relative}")) || path == relative
            })
            .max_by_key(|(relative, meta)| (meta.location.as_ref() == path, relative.len()));
        if let Some((relative, meta)) = found {
            consumed.insert(relative.clone(), FileRecord { size: meta.size });
        }
    }
    consumed
}

/// How a build treats the files of one source for a model that consumed
/// `seen` before.
struct Sorted {
    /// `seen` and the new files: the record of the build's commit.
    consumed: Consumed,
    /// The files with no rows now.
    empty: Consumed,
    /// The files to read now.
    new: Vec<ObjectMeta>,
    warnings: Vec<Diagnostic>,
}

/// Sorts a source's files (as [`listed`]) into those consumed before and
/// those to read now. A file with no rows is neither: an empty file (a
/// feed that landed its file before writing into it, a day with nothing
/// in it) is read once it has rows, not recorded as read for good; it is
/// reported the first time it is seen (`empty_before` holds those seen
/// before, at their size then). A consumed file whose size changed was
/// rewritten: it is reported, and not read again (its rows are in the
/// table already; appending them again would double them).
async fn sort_files(
    build: &Build,
    source: &crate::project::Source,
    model: &str,
    seen: Consumed,
    empty_before: Consumed,
    files: Vec<(String, ObjectMeta)>,
) -> Result<Sorted, Diagnostic> {
    let key = source_key(source);
    let still_empty =
        |relative: &str, meta: &ObjectMeta| empty_before.get(relative).is_some_and(|r| r.size == meta.size);
    let unseen: Vec<ObjectMeta> = files
        .iter()
        .filter(|(relative, meta)| !seen.contains_key(relative) && !still_empty(relative, meta))
        .map(|(_, meta)| meta.clone())
        .collect();
    let empty_now = build.parsed.empty_files(build, source, &unseen).await?;
    let mut consumed = seen;
    let mut empty = Consumed::new();
    let mut new = Vec::new();
    let mut warnings = Vec::new();
    for (relative, meta) in files {
        if !consumed.contains_key(&relative) && still_empty(&relative, &meta) {
            empty.insert(relative, FileRecord { size: meta.size });
            continue;
        }
        match consumed.get(&relative) {
            Some(record) if record.size != meta.size => warnings.push(
                Diagnostic::warning(
                    Code::RewrittenFile,
                    format!(
                        "source `{key}`: `{}` changed since `{model}` read it ({} bytes, now {}): \
                         its new content is not read",
                        crate::plan::shown_file(source, &meta.location),
                        record.size,
                        meta.size
                    ),
                )
                .with_help(format!(
                    "a feed should add files, not rewrite them; to read it again, rebuild the model: \
                     `etl build --select {model} --full-refresh`"
                )),
            ),
            Some(_) => {}
            None if empty_now.iter().any(|e| e.location == meta.location) => {
                warnings.push(Diagnostic::warning(
                    Code::EmptyFile,
                    format!(
                        "source `{key}`: `{}` has no rows: not ingested; rows written to it later will be",
                        crate::plan::shown_file(source, &meta.location)
                    ),
                ));
                empty.insert(relative, FileRecord { size: meta.size });
            }
            None => {
                consumed.insert(relative, FileRecord { size: meta.size });
                new.push(meta);
            }
        }
    }
    Ok(Sorted {
        consumed,
        empty,
        new,
        warnings,
    })
}

/// The files this build ingests from each of `sources` (source node
/// indexes), taken before any of its commits: those one of the source's
/// ingesting models has not consumed yet, empty files aside. A source no
/// model ingests, or one an ingesting model rebuilds in full, gives all
/// its files.
pub async fn files_to_ingest(
    build: &Build,
    sources: &BTreeSet<NodeIndex>,
) -> Result<HashMap<NodeIndex, Vec<object_store::ObjectMeta>>, Diagnostic> {
    let dag = &build.dag;
    let mut ingesting: HashMap<NodeIndex, Vec<NodeIndex>> = HashMap::new();
    for &model in &dag.order {
        let node = dag.node(model);
        if node.resource_type != ResourceType::Model || !ingests(node) {
            continue;
        }
        for source in file_sources(build, model) {
            if sources.contains(&source) {
                ingesting.entry(source).or_default().push(model);
            }
        }
    }
    let mut out = HashMap::new();
    for &index in sources {
        let source = dag.node(index).source(&build.project);
        let key = source_key(source);
        let files = listed(build, source).await?;
        // Consumed by every ingesting model, so read by none in this build.
        let mut everywhere: Option<Consumed> = None;
        for &model in ingesting.get(&index).into_iter().flatten() {
            let seen = recorded(last_record(build, model).await.as_ref(), &key, &files);
            everywhere = Some(match everywhere {
                None => seen,
                Some(before) => before.into_iter().filter(|(path, _)| seen.contains_key(path)).collect(),
            });
        }
        let everywhere = everywhere.unwrap_or_default();
        let sorted = sort_files(build, source, &key, everywhere, Consumed::new(), files).await?;
        out.insert(index, sorted.new);
    }
    Ok(out)
}

/// Readers of the files this build ingests, one per file source the test
/// at `index` scans; taken from `Build::to_ingest`.
pub async fn new_file_readers(build: &Build, index: NodeIndex) -> Result<Vec<NewFiles>, Diagnostic> {
    let sources = file_sources(build, index);
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let Some(to_ingest) = build.to_ingest.get() else {
        return Err(Diagnostic::error(
            Code::Internal,
            "the files to ingest were not listed before the build began",
        ));
    };
    let to_ingest = to_ingest.as_ref().map_err(Clone::clone)?;
    let mut readers = Vec::new();
    for source in sources {
        let node = build.dag.node(source);
        let files = to_ingest.get(&source).map(Vec::as_slice).unwrap_or_default();
        let provider = build.parsed.provider(build, node.source(&build.project), files).await?;
        readers.push(NewFiles {
            keys: Vec::new(),
            source: node.relation.clone(),
            provider,
            files: files.len(),
        });
    }
    Ok(readers)
}

/// The file sources of the tests that read only new files: all such tests
/// of the project, since an audit may run one its selection left out.
pub fn sources_of_new_file_tests(build: &Build) -> BTreeSet<NodeIndex> {
    build
        .dag
        .order
        .iter()
        .filter(|&&i| {
            let node = build.dag.node(i);
            node.resource_type == ResourceType::Test && reads_new_files_only(node)
        })
        .flat_map(|&i| file_sources(build, i))
        .collect()
}

/// The rows of the new files of file sources, parsed once per build.
///
/// A day's file is read by every node built on its source: in the
/// reference project the day's orders feed `orders_clean` (which reads
/// them three times, once per use of its `valid` CTE: DataFusion plans a
/// CTE once per use), `orders_rejected`, `orders_seen` and a reject-rate
/// test. The first reader decompresses and parses them into memory; the
/// others scan that. The rows are dropped when the last node of the build
/// that reads them has finished.
///
/// Memory: cached rows are reserved in the build's memory pool, so they
/// count against `--memory-limit`, and all of them together take at most a
/// quarter of it (1 GiB without a limit). Files larger than an eighth of
/// that are not cached (a full build reading every file of a source
/// streams them as before), nor are rows the pool or the cap have no room
/// for.
#[derive(Default)]
pub struct ParsedFiles {
    state: Mutex<ParsedState>,
    /// Whether each small new file (by location and size) has no rows,
    /// counted once per build.
    empty: Mutex<HashMap<(String, u64), bool>>,
}

/// Files at most this big are counted before they are ingested, to leave
/// out the empty ones (a CSV header alone, an empty gzip member); a file
/// bigger than that has rows.
const SMALL_FILE: u64 = 8 * 1024;

#[derive(Default)]
struct ParsedState {
    /// A source and its exact files -> their rows, once parsed.
    tables: HashMap<String, Arc<tokio::sync::OnceCell<Option<Arc<Parsed>>>>>,
    /// A source -> the nodes of this build that read its new files and
    /// have not finished. `None` until `expect` counted them.
    readers: Option<HashMap<String, usize>>,
    /// Bytes reserved by the rows cached now.
    cached: usize,
}

struct Parsed {
    table: Arc<MemTable>,
    /// Returned to the pool when the rows are dropped.
    reservation: MemoryReservation,
}

/// What all cached rows may take without a memory limit.
const UNLIMITED_CAP: usize = 1 << 30;

impl ParsedFiles {
    /// Counts, before the build runs, the nodes in `nodes` that read new
    /// files of each source: ingesting models and `source_files: new`
    /// tests.
    pub fn expect(&self, build: &Build, nodes: &[NodeIndex]) {
        let mut readers = HashMap::new();
        for &index in nodes {
            for source in new_file_sources(build, index) {
                *readers.entry(source).or_insert(0) += 1;
            }
        }
        self.state.lock().expect("parsed files poisoned").readers = Some(readers);
    }

    /// The node at `index` has finished, or was skipped: rows no other
    /// node of the build reads are dropped.
    pub fn finished(&self, build: &Build, index: NodeIndex) {
        let mut state = self.state.lock().expect("parsed files poisoned");
        let mut done = Vec::new();
        if let Some(readers) = state.readers.as_mut() {
            for source in new_file_sources(build, index) {
                if let Some(count) = readers.get_mut(&source) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        done.push(source);
                    }
                }
            }
        }
        for source in done {
            let prefix = format!("{source}\n");
            let mut kept = 0;
            state.tables.retain(|key, cell| {
                let keep = !key.starts_with(&prefix);
                kept += usize::from(!keep && cell.get().is_some_and(Option::is_some));
                keep
            });
            for _ in 0..kept {
                tracing::debug!(source = %source, "dropped the parsed new files of a source: its last reader finished");
            }
        }
        state.cached = state
            .tables
            .values()
            .filter_map(|cell| cell.get().cloned().flatten())
            .map(|parsed| parsed.reservation.size())
            .sum();
    }

    /// Those of `files` (new files of `source`) that have no rows: of 0
    /// bytes, or small files that parse to none. Small files are counted
    /// once per build, all of a source's in one scan (which keeps each
    /// file's count with the source's row counts).
    pub async fn empty_files(
        &self,
        build: &Build,
        source: &crate::project::Source,
        files: &[ObjectMeta],
    ) -> Result<Vec<ObjectMeta>, Diagnostic> {
        let key = |f: &ObjectMeta| (f.location.to_string(), f.size);
        let unknown: Vec<ObjectMeta> = {
            let known = self.empty.lock().expect("empty files poisoned");
            files
                .iter()
                .filter(|f| f.size > 0 && f.size <= SMALL_FILE && !known.contains_key(&key(f)))
                .cloned()
                .collect()
        };
        // Counted without holding the others back (two readers of the
        // same new files may both count them: the same answer).
        let counted = match unknown.is_empty() {
            true => Vec::new(),
            false => count_rows(build, source, &unknown).await?,
        };
        let mut known = self.empty.lock().expect("empty files poisoned");
        for (file, rows) in unknown.iter().zip(counted) {
            known.insert(key(file), rows == 0);
        }
        Ok(files
            .iter()
            .filter(|f| f.size == 0 || known.get(&key(f)) == Some(&true))
            .cloned()
            .collect())
    }

    /// A reader of `files` of `source`: their rows in memory when they are
    /// cached (parsing them if this is the first reader), the files
    /// themselves otherwise.
    pub async fn provider(
        &self,
        build: &Build,
        source: &crate::project::Source,
        files: &[ObjectMeta],
    ) -> Result<Arc<dyn TableProvider>, Diagnostic> {
        let ctx = &build.registry.ctx;
        let provider = crate::plan::source_files_provider(ctx, &build.registry.row_counts, source, files).await?;
        let cap = match ctx.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(limit) => limit / 4,
            MemoryLimit::Infinite | MemoryLimit::Unknown => UNLIMITED_CAP,
        };
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        let cell = {
            let mut state = self.state.lock().expect("parsed files poisoned");
            let key = source_key(source);
            let read_again = state
                .readers
                .as_ref()
                .is_some_and(|readers| readers.get(&key).is_some_and(|&n| n > 0));
            if files.is_empty() || !read_again {
                return Ok(provider);
            }
            if bytes > (cap / 8) as u64 {
                tracing::debug!(
                    source = %key,
                    bytes,
                    cap,
                    "the new files of a source, not kept in memory: larger than an eighth of the room"
                );
                return Ok(provider);
            }
            let mut key = format!("{key}\n");
            for file in files {
                key.push_str(&format!("{} {} {:?}\n", file.location, file.size, file.e_tag));
            }
            state.tables.entry(key).or_default().clone()
        };
        let parsed = cell
            .get_or_try_init(|| self.parse(build, source, provider.clone(), cap))
            .await?;
        Ok(match parsed {
            Some(parsed) => parsed.table.clone(),
            None => provider,
        })
    }

    async fn parse(
        &self,
        build: &Build,
        source: &crate::project::Source,
        provider: Arc<dyn TableProvider>,
        cap: usize,
    ) -> Result<Option<Arc<Parsed>>, Diagnostic> {
        let ctx = &build.registry.ctx;
        let failed = |e: datafusion::error::DataFusionError| {
            Diagnostic::error(
                Code::Execution,
                format!(
                    "reading the new files of source `{}` failed: {}",
                    source_key(source),
                    e.find_root()
                ),
            )
            .with_span(source.span.clone())
            .with_cause(crate::diagnostic::Cause::of(&e))
        };
        let schema = provider.schema();
        let batches = ctx
            .read_table(provider)
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        // The JSON reader's string views reserve room for more rows than a
        // batch holds (2.5 MiB of views for 8,192 rows): returned, a day's
        // events of the 5M-order lake take 34 MB instead of 292.
        let batches = batches
            .into_iter()
            .map(shrink)
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let size: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let reservation = MemoryConsumer::new("new source files").register(&ctx.runtime_env().memory_pool);
        {
            let mut state = self.state.lock().expect("parsed files poisoned");
            if state.cached + size > cap || reservation.try_grow(size).is_err() {
                tracing::debug!(
                    source = %source_key(source),
                    bytes = size,
                    cached = state.cached,
                    cap,
                    "parsed the new files of a source, not kept in memory: no room"
                );
                return Ok(None);
            }
            state.cached += size;
        }
        tracing::debug!(
            source = %source_key(source),
            rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            bytes = size,
            "parsed the new files of a source, kept in memory for its readers"
        );
        // Spread over the session's partitions: a gzipped file is read by
        // one, its rows can be processed by all.
        let partitions = ctx.state().config().target_partitions().max(1);
        let mut spread = vec![Vec::new(); partitions.min(batches.len()).max(1)];
        let count = spread.len();
        for (i, batch) in batches.into_iter().enumerate() {
            spread[i % count].push(batch);
        }
        let table = MemTable::try_new(schema, spread).map_err(failed)?;
        Ok(Some(Arc::new(Parsed {
            table: Arc::new(table),
            reservation,
        })))
    }
}

/// The sources whose new files the node at `index` reads (by
/// `source_key`): those of an ingesting model, or of a test that reads
/// only new files.
fn new_file_sources(build: &Build, index: NodeIndex) -> Vec<String> {
    let node = build.dag.node(index);
    let reads_new = match node.resource_type {
        ResourceType::Model => ingests(node),
        ResourceType::Test => reads_new_files_only(node),
        _ => false,
    };
    if !reads_new {
        return Vec::new();
    }
    file_sources(build, index)
        .into_iter()
        .map(|s| source_key(build.dag.node(s).source(&build.project)))
        .collect()
}

/// The rows of each of `files` of `source`: read in one scan, whose reader
/// counts each file (see `plan::known_row_counts`); a file the scan did
/// not count, or a scan that failed, is counted alone, so that an error
/// names its file.
async fn count_rows(
    build: &Build,
    source: &crate::project::Source,
    files: &[ObjectMeta],
) -> Result<Vec<u64>, Diagnostic> {
    let ctx = &build.registry.ctx;
    let counts = &build.registry.row_counts;
    let count = |files: Vec<ObjectMeta>| async move {
        let provider = crate::plan::source_files_provider(ctx, counts, source, &files).await?;
        let rows = async { ctx.read_table(provider)?.count().await }.await;
        rows.map(|n| n as u64).map_err(|e| read_failed(source, &files, &e))
    };
    let together = count(files.to_vec()).await;
    let known = crate::plan::known_row_counts(ctx, counts, source, files).await;
    let mut rows = Vec::with_capacity(files.len());
    for (file, known) in files.iter().zip(known) {
        match (known, files.len(), &together) {
            (Some(n), _, Ok(_)) => rows.push(n),
            (_, 1, Ok(n)) => rows.push(*n),
            _ => rows.push(count(vec![file.clone()]).await?),
        }
    }
    Ok(rows)
}

fn read_failed(
    source: &crate::project::Source,
    files: &[ObjectMeta],
    e: &datafusion::error::DataFusionError,
) -> Diagnostic {
    let which = match files {
        [one] => format!("`{}`", crate::plan::shown_file(source, &one.location)),
        _ => format!("{} new files", files.len()),
    };
    Diagnostic::error(
        Code::Execution,
        format!(
            "reading {which} of source `{}` failed: {}",
            source_key(source),
            e.find_root()
        ),
    )
    .with_span(source.span.clone())
}

/// `batch` without the room its buffers reserved beyond their length.
fn shrink(batch: RecordBatch) -> Result<RecordBatch, datafusion::error::DataFusionError> {
    use datafusion::arrow::array::Array;
    let (schema, mut columns, rows) = batch.into_parts();
    for column in &mut columns {
        column.shrink_to_fit();
    }
    let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(schema, columns, &options)?)
}

/// Whether the test reads only the files the build ingests from its file
/// sources (`source_files: new`).
fn reads_new_files_only(node: &crate::graph::Node) -> bool {
    node.config.test.as_ref().is_some_and(|t| t.new_files_only)
}
