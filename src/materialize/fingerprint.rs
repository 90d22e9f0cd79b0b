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
use crate::diagnostic::{Code, Diagnostic, Span};
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
            let seed = node.seed(&build.project);
            let bytes = std::fs::read(build.project.root.join(&seed.path)).map_err(|e| {
                Diagnostic::error(Code::Io, format!("cannot read seed `{}`: {e}", seed.path.display()))
                    .with_span(Some(Span::file(&seed.path)))
            })?;
            json!({"csv": hex(&md5::Md5::digest(&bytes))})
        }
        ResourceType::Test => {
            let rendered = build.rendered_now(index);
            json!({"sql": crate::plan::compile_with(&build.dag, index, &build.models, &rendered).sql})
        }
        // An incremental model updated in place is judged by the SQL it
        // has as a full build: the table holds what that SQL makes of the
        // inputs, whichever way it was last brought there.
        _ => match build.full_build_sql.get(&node.name) {
            // A model that asks the lake changes with its template's
            // run-time branch too, which its parsed SQL does not show.
            Some(sql) if node.rendered(&build.models, &build.tests).introspects => {
                json!({"sql": sql, "template": node.rendered(&build.models, &build.tests).template})
            }
            Some(sql) => json!({"sql": sql}),
            None => {
                let rendered = build.rendered_now(index);
                json!({"sql": crate::plan::compile_with(&build.dag, index, &build.models, &rendered).sql})
            }
        },
    };
    let whole = json!({
        "node": own,
        "config": node.config.raw(),
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
                // As parsed, whether or not it ran in this build: the
                // fingerprint must not depend on the selection.
                json!({"sql": crate::plan::compile(&build.dag, parent, &build.models).sql})
            }
            Materialization::External => source_state(build, parent).await?,
            _ => {
                let url = build.registry.location(&node.relation);
                let here = table_version(build, parent).await;
                // Read from the state's lake under `--defer`: that table's
                // version is the input.
                match (here, build.registry.deferred(parent)) {
                    (None, Some((deferred, _))) | (_, Some((deferred, true))) => {
                        match lake::current_version(&build.registry.ctx, &deferred).await {
                            Some(version) => json!({
                                "deferred": deferred.as_str(),
                                "version": version,
                                "committed_at": commit_time(build, &deferred, version as i64).await,
                            }),
                            None => json!({"deferred": deferred.as_str(), "version": null}),
                        }
                    }
                    (Some(version), _) => {
                        json!({"version": version, "committed_at": commit_time(build, &url, version).await})
                    }
                    (None, None) => json!({"version": null}),
                }
            }
        };
        inputs.insert(node.unique_id.clone(), value);
    }
    Ok(())
}

/// The current Delta version of a node's table: as this build left it or
/// found it (kept once known: the registry reads a table this run does
/// not build at the version it finds first, and a hook that writes one
/// forgets it), else read from the lake.
pub async fn table_version(build: &Build, index: NodeIndex) -> Option<i64> {
    if let Some(v) = build.versions.lock().expect("versions poisoned").get(&index) {
        return Some(*v);
    }
    let url = build.registry.location(&build.dag.node(index).relation);
    let version = lake::current_version(&build.registry.ctx, &url).await? as i64;
    build
        .versions
        .lock()
        .expect("versions poisoned")
        .entry(index)
        .or_insert(version);
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
    let source = build.dag.node(index).source(&build.project);
    if source.format == crate::project::SourceFormat::Delta {
        let url = lake::parse_location(&source.location)
            .map_err(|e| Diagnostic::error(Code::InvalidLocation, e.to_string()).with_span(source.span.clone()))?;
        return Ok(match lake::current_version(&build.registry.ctx, &url).await {
            Some(version) => {
                let version = version as i64;
                json!({"version": version, "committed_at": commit_time(build, &url, version).await})
            }
            None => json!({"version": null}),
        });
    }
    let files = crate::plan::list_source_files(&build.registry.ctx, source).await?;
    // Files by their path under the source's location: a project moved
    // with its times kept (`mv`, `cp -p`, `rsync -a`) is the same input.
    let root = crate::plan::source_root(source)?;
    let mut digest = md5::Md5::new();
    for f in &files {
        let path = lake::relative_path(&root, &f.location);
        digest.update(format!("{path}|{}|{}\n", f.size, f.last_modified.timestamp_millis()).as_bytes());
    }
    Ok(json!({"files": files.len(), "digest": hex(&digest.finalize())}))
}

/// What a node's data is when its build starts: the fingerprint it was
/// last written with, if any, and for a table, its version, which the
/// node's write will expect to find still (see `lake::Expected`).
pub struct Stored {
    pub fingerprint: Option<String>,
    pub version: lake::Expected,
    /// The table as loaded, which the node's write goes on from.
    pub table: Option<deltalake::DeltaTable>,
    /// Data files of the table's version that are gone from the store.
    pub missing: Vec<String>,
}

/// Reads the node's table (or stored view). A table whose log cannot be
/// read is an error naming the broken commit and the way back.
pub async fn stored(build: &Build, index: NodeIndex) -> Result<Stored, Diagnostic> {
    let node = build.dag.node(index);
    let ctx = &build.registry.ctx;
    let url = build.registry.location(&node.relation);
    if node.materialized == Materialization::View {
        let view = lake::read_view(ctx, &url).await.ok().flatten();
        return Ok(Stored {
            fingerprint: view.and_then(|v| v.fingerprint),
            version: lake::Expected::Any,
            missing: Vec::new(),
            table: None,
        });
    }
    let table = match lake::open_table(ctx, &url).await {
        Ok(Some(table)) => table,
        Ok(None) => {
            return Ok(Stored {
                fingerprint: None,
                version: lake::Expected::Absent,
                missing: Vec::new(),
                table: None,
            });
        }
        Err(e) => {
            let (message, notes) = lake::explain_unreadable(ctx, &url, &e).await;
            let mut diag = Diagnostic::error(Code::UnreadableTable, format!("table `{}`: {message}", node.name))
                .with_span(Some(Span::file(&node.path)));
            for note in notes {
                diag = diag.with_note(note);
            }
            return Err(diag.with_note("nothing was written to it"));
        }
    };
    let version = lake::Expected::of(table.version());
    let missing = lake::missing_data_files(ctx, &url, &table).await.map_err(|e| {
        Diagnostic::error(Code::Lake, format!("cannot list the files of `{}`: {e}", node.name))
            .with_span(Some(Span::file(&node.path)))
    })?;
    let fingerprint = async {
        let mut history: Vec<_> = table.history(Some(1)).try_collect().await.ok()?;
        let info = history.first_mut()?.info.remove("etl")?;
        info.get("fingerprint")?.as_str().map(str::to_owned)
    }
    .await;
    Ok(Stored {
        fingerprint,
        version,
        missing,
        table: Some(table),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
