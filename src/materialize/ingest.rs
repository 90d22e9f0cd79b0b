//! Exactly-once file ingestion. An incremental model reading a file source
//! reads only the files it has not consumed before, as Snowpipe or Auto
//! Loader do: the files it consumed are recorded in the very Delta commit
//! that holds the rows it made of them, so no crash can separate the two,
//! and replaying the same files is a no-op. The commit also carries a Delta
//! application transaction (`txn`) numbered by the files consumed.
//!
//! `ingest: all_files` in a model's config turns this off (a model that
//! recomputes from all the files, such as an `insert_overwrite`).

use std::collections::{BTreeMap, BTreeSet};

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
}

/// For each file source the incremental model at `index` reads (directly
/// or through the ephemeral models inlined into it), the files it has not
/// consumed yet; `None` when the model ingests nothing.
pub async fn prepare(build: &Build, index: NodeIndex) -> Result<Option<(Ingest, Vec<NewFiles>)>, Diagnostic> {
    let dag = &build.dag;
    let node = dag.node(index);
    // A microbatch model reads its sources cut to each batch's window.
    if node.materialized != Materialization::Incremental
        || node.config.get("ingest").and_then(Value::as_str) == Some("all_files")
        || super::incremental::strategy_name(node) == Some("microbatch")
    {
        return Ok(None);
    }
    let sources: Vec<(&Relation, &crate::project::Source)> = dag
        .scanned_parents(index)
        .into_iter()
        .map(|p| dag.node(p))
        .filter(|p| p.resource_type == ResourceType::Source)
        .map(|p| (&p.relation, &build.project.sources[p.index]))
        .filter(|(_, src)| src.format != crate::project::SourceFormat::Delta)
        .collect();
    if sources.is_empty() {
        return Ok(None);
    }
    // A full build consumes every file; an incremental one what the last
    // commit did not record.
    let before: BTreeMap<String, BTreeSet<String>> = if build.options.incremental.contains(&node.name) {
        let url = build.registry.location(&node.relation);
        lake::last_etl_commit(&build.registry.ctx, &url)
            .await
            .and_then(|etl| etl.get("ingested").cloned())
            .and_then(|v| serde_json::from_value::<BTreeMap<String, BTreeSet<String>>>(v).ok())
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    let mut ingest = Ingest::default();
    let mut readers = Vec::new();
    for (relation, source) in sources {
        let key = format!("{}.{}", source.source_name, source.name);
        let seen = before.get(&key).cloned().unwrap_or_default();
        let files = crate::plan::list_source_files(&build.registry.ctx, source).await?;
        let new: Vec<_> = files
            .into_iter()
            .filter(|f| !seen.contains(f.location.as_ref()))
            .collect();
        ingest.new_files += new.len();
        let provider = crate::plan::source_files_provider(&build.registry.ctx, source, &new).await?;
        readers.push(NewFiles {
            source: relation.clone(),
            provider,
        });
        let mut all = seen;
        all.extend(new.iter().map(|f| f.location.to_string()));
        ingest.consumed.insert(key, all.into_iter().collect());
    }
    Ok(Some((ingest, readers)))
}
