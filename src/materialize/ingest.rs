//! Exactly-once file ingestion. An incremental model reading a file source
//! reads only the files it has not consumed before, as Snowpipe or Auto
//! Loader do: the files it consumed are recorded in the very Delta commit
//! that holds the rows it made of them, so no crash can separate the two,
//! and replaying the same files is a no-op. The commit also carries a Delta
//! application transaction (`txn`) numbered by the files consumed.
//!
//! `ingest: all_files` in a model's config turns this off (a model that
//! recomputes from all the files, such as an `insert_overwrite`).
//!
//! A data test with `source_files: new` reads, of each file source, the
//! files the build ingests (see `files_to_ingest`): a quality gate on what
//! arrives, as a streaming table's expectations are.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use petgraph::graph::NodeIndex;
use serde_json::Value;

use super::Build;
use crate::diagnostic::Diagnostic;
use crate::graph::{Materialization, ResourceType};
use crate::lake;
use crate::render::Relation;

/// What an ingesting model consumes in this build.
#[derive(Debug, Clone, Default)]
pub struct Ingest {
    /// `source.table` -> every file consumed once this build commits.
    pub consumed: BTreeMap<String, Vec<String>>,
    /// Files this build reads for the first time.
    pub new_files: usize,
}

impl Ingest {
    pub fn total(&self) -> usize {
        self.consumed.values().map(Vec::len).sum()
    }
}

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
        .map(|p| {
            (
                &build.dag.node(p).relation,
                &build.project.sources[build.dag.node(p).index],
            )
        })
        .collect();
    if sources.is_empty() {
        return Ok(None);
    }
    let before = consumed_before(build, index).await;
    let mut ingest = Ingest::default();
    let mut readers = Vec::new();
    for (relation, source) in sources {
        let key = source_key(source);
        let seen = before.get(&key).cloned().unwrap_or_default();
        let files = crate::plan::list_source_files(&build.registry.ctx, source).await?;
        let new: Vec<_> = files
            .into_iter()
            .filter(|f| !seen.contains(f.location.as_ref()))
            .collect();
        ingest.new_files += new.len();
        let provider =
            crate::plan::source_files_provider(&build.registry.ctx, &build.registry.row_counts, source, &new).await?;
        readers.push(NewFiles {
            keys: Vec::new(),
            source: relation.clone(),
            provider,
            files: new.len(),
        });
        let mut all = seen;
        all.extend(new.iter().map(|f| f.location.to_string()));
        ingest.consumed.insert(key, all.into_iter().collect());
    }
    Ok(Some((ingest, readers)))
}

/// Whether the model reads its file sources a file at a time: incremental,
/// not `ingest: all_files`, not microbatch (which reads each batch's
/// window of its sources instead).
fn ingests(node: &crate::graph::Node) -> bool {
    node.materialized == Materialization::Incremental
        && node.config.get("ingest").and_then(Value::as_str) != Some("all_files")
        && super::incremental::strategy_name(node) != Some("microbatch")
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
                && build.project.sources[node.index].format != crate::project::SourceFormat::Delta
        })
        .collect()
}

fn source_key(source: &crate::project::Source) -> String {
    format!("{}.{}", source.source_name, source.name)
}

/// The files an ingesting model consumed up to its last commit, by source:
/// none when this build rebuilds it in full.
async fn consumed_before(build: &Build, index: NodeIndex) -> BTreeMap<String, BTreeSet<String>> {
    let node = build.dag.node(index);
    if !build.options.incremental.contains(&node.name) {
        return BTreeMap::new();
    }
    let url = build.registry.location(&node.relation);
    lake::last_etl_commit(&build.registry.ctx, &url)
        .await
        .and_then(|etl| etl.get("ingested").cloned())
        .and_then(|v| serde_json::from_value::<BTreeMap<String, BTreeSet<String>>>(v).ok())
        .unwrap_or_default()
}

/// The files this build ingests from each of `sources` (source node
/// indexes), taken before any of its commits: those one of the source's
/// ingesting models has not consumed yet. A source no model ingests, or
/// one an ingesting model rebuilds in full, gives all its files.
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
        let source = &build.project.sources[dag.node(index).index];
        let key = source_key(source);
        // Consumed by every ingesting model, so read by none in this build.
        let mut everywhere: Option<BTreeSet<String>> = None;
        for &model in ingesting.get(&index).into_iter().flatten() {
            let seen = consumed_before(build, model).await.remove(&key).unwrap_or_default();
            everywhere = Some(match everywhere {
                None => seen,
                Some(before) => before.intersection(&seen).cloned().collect(),
            });
        }
        let everywhere = everywhere.unwrap_or_default();
        let files = crate::plan::list_source_files(&build.registry.ctx, source).await?;
        let new = files
            .into_iter()
            .filter(|f| !everywhere.contains(f.location.as_ref()))
            .collect();
        out.insert(index, new);
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
            "internal",
            "the files to ingest were not listed before the build began",
        ));
    };
    let to_ingest = to_ingest.as_ref().map_err(Clone::clone)?;
    let mut readers = Vec::new();
    for source in sources {
        let node = build.dag.node(source);
        let files = to_ingest.get(&source).map(Vec::as_slice).unwrap_or_default();
        let provider = crate::plan::source_files_provider(
            &build.registry.ctx,
            &build.registry.row_counts,
            &build.project.sources[node.index],
            files,
        )
        .await?;
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
            node.resource_type == ResourceType::Test && super::data_tests::reads_new_files_only(node)
        })
        .flat_map(|&i| file_sources(build, i))
        .collect()
}
