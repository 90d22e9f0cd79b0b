//! Skipping what did not change. A node's fingerprint covers its compiled
//! SQL, its config and its inputs: the Delta version of each upstream
//! table (with the time of that version's commit: a table deleted and
//! built again counts its versions from 0 anew), the files of each upstream file source (path, size, time), and
//! through views and ephemeral models, what those read. The fingerprint is
//! kept with the data, in the commit that wrote the table (or in the stored
//! view), so it cannot drift from the lake. When the fingerprint of a node
//! equals the one its table was written with, the node is up to date.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use md5::Digest;
use petgraph::graph::NodeIndex;
use serde_json::{Value, json};

use super::Build;
use crate::diagnostic::{Diagnostic, Span};
use crate::graph::{Materialization, ResourceType};
use crate::lake;

/// The fingerprint of the node at `index` as it would be built now.
pub async fn fingerprint(build: &Build, index: NodeIndex) -> Result<String, Diagnostic> {
    Ok(fingerprint_and_inputs(build, index).await?.0)
}

/// The fingerprint, and the inputs it covers (by unique id: a table's
/// `{"version": v}`, a file source's digest, a view's SQL).
pub async fn fingerprint_and_inputs(
    build: &Build,
    index: NodeIndex,
) -> Result<(String, BTreeMap<String, Value>), Diagnostic> {
    let mut inputs = BTreeMap::new();
    collect_inputs(build, index, &mut inputs).await?;
    let node = build.dag.node(index);
    let own = match node.resource_type {
        ResourceType::Seed => {
            let seed = &build.project.seeds[node.index];
            let bytes = std::fs::read(build.project.root.join(&seed.path)).map_err(|e| {
                Diagnostic::error("io", format!("cannot read seed `{}`: {e}", seed.path.display()))
                    .with_span(Some(Span::file(&seed.path)))
            })?;
            json!({"csv": hex(&md5::Md5::digest(&bytes))})
        }
        ResourceType::Test => {
            let rendered = &build.tests[node.index];
            json!({"sql": crate::plan::compile_with(&build.dag, index, &build.models, rendered).sql})
        }
        // An incremental model updated in place is judged by the SQL it
        // has as a full build: the table holds what that SQL makes of the
        // inputs, whichever way it was last brought there.
        _ => match build.full_build_sql.get(&node.name) {
            Some(sql) => json!({"sql": sql}),
            None => json!({"sql": crate::plan::compile(&build.dag, index, &build.models).sql}),
        },
    };
    let whole = json!({
        "node": own,
        "config": Value::Object(node.config.clone()),
        "materialized": node.materialized.as_str(),
        "inputs": inputs,
    });
    Ok((hex(&md5::Md5::digest(whole.to_string().as_bytes())), inputs))
}

/// What the parents of `index` are now, reaching through views and
/// ephemeral models to what they read.
async fn collect_inputs(
    build: &Build,
    index: NodeIndex,
    inputs: &mut BTreeMap<String, Value>,
) -> Result<(), Diagnostic> {
    let mut stack: Vec<NodeIndex> = build.dag.parents(index).collect();
    while let Some(parent) = stack.pop() {
        let node = build.dag.node(parent);
        if inputs.contains_key(&node.unique_id) {
            continue;
        }
        let value = match node.materialized {
            Materialization::View | Materialization::Ephemeral => {
                stack.extend(build.dag.parents(parent));
                json!({"sql": crate::plan::compile(&build.dag, parent, &build.models).sql})
            }
            Materialization::External => source_state(build, parent).await?,
            _ => {
                let url = build.registry.location(&node.relation);
                match table_version(build, parent).await {
                    Some(version) => {
                        json!({"version": version, "committed_at": commit_time(build, &url, version).await})
                    }
                    None => json!({"version": null}),
                }
            }
        };
        inputs.insert(node.unique_id.clone(), value);
    }
    Ok(())
}

/// The current Delta version of a node's table: as this build left it or
/// found it (kept once known), else read from the lake.
pub async fn table_version(build: &Build, index: NodeIndex) -> Option<i64> {
    if let Some(v) = build.versions.lock().expect("versions poisoned").get(&index) {
        return Some(*v);
    }
    let url = build.registry.location(&build.dag.node(index).relation);
    let version = lake::current_version(&build.registry.ctx, &url).await? as i64;
    Some(version)
}

/// When the commit of `version` of the table at `url` was made; `None`
/// when its log entry is gone. Read once per build.
pub async fn commit_time(build: &Build, url: &url::Url, version: i64) -> Option<i64> {
    let key = (url.to_string(), version);
    if let Some(time) = build.commit_times.lock().expect("commit times poisoned").get(&key) {
        return *time;
    }
    let time = lake::commit_timestamp(&build.registry.ctx, url, version).await;
    build
        .commit_times
        .lock()
        .expect("commit times poisoned")
        .insert(key, time);
    time
}

/// A file source's files (path, size, last modified), or a Delta source's
/// version.
async fn source_state(build: &Build, index: NodeIndex) -> Result<Value, Diagnostic> {
    let source = &build.project.sources[build.dag.node(index).index];
    if source.format == crate::project::SourceFormat::Delta {
        let url = lake::parse_location(&source.location)
            .map_err(|m| Diagnostic::error("invalid-location", m).with_span(source.span.clone()))?;
        return Ok(match lake::current_version(&build.registry.ctx, &url).await {
            Some(version) => {
                let version = version as i64;
                json!({"version": version, "committed_at": commit_time(build, &url, version).await})
            }
            None => json!({"version": null}),
        });
    }
    let files = crate::plan::list_source_files(&build.registry.ctx, source).await?;
    let mut digest = md5::Md5::new();
    for f in &files {
        digest.update(format!("{}|{}|{}\n", f.location, f.size, f.last_modified.timestamp_millis()).as_bytes());
    }
    Ok(json!({"files": files.len(), "digest": hex(&digest.finalize())}))
}

/// The fingerprint the node's data was last written with, if any.
pub async fn stored_fingerprint(build: &Build, index: NodeIndex) -> Option<String> {
    let node = build.dag.node(index);
    let url = build.registry.location(&node.relation);
    if node.materialized == Materialization::View {
        let view = lake::read_view(&build.registry.ctx, &url).await.ok()??;
        return view.fingerprint;
    }
    let table = lake::open_table(&build.registry.ctx, &url).await.ok()??;
    let mut history: Vec<_> = table.history(Some(1)).try_collect().await.ok()?;
    let info = history.first_mut()?.info.remove("etl")?;
    info.get("fingerprint")?.as_str().map(str::to_owned)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
