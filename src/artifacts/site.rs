//! The docs site `etl docs generate` writes to `target/docs/`: one folder,
//! openable from disk. Its data (`data.js`) is the manifest with each
//! model's lineage, the catalog's column types, each table's size and last
//! versions from its Delta log, and the quality history of the last runs
//! (the records each build keeps in the lake, `_etl/runs/`). The page
//! (`index.html`, `app.js`, `style.css`) and the graph library that draws
//! the DAG (Cytoscape.js with its dagre layout, bundled into etl when it
//! was built) are written beside it: nothing is fetched when it is viewed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::lake::TableStats;

const INDEX: &str = include_str!("../../site/index.html");
const APP: &str = include_str!("../../site/app.js");
const STYLE: &str = include_str!("../../site/style.css");
const CYTOSCAPE: &[u8] = include_bytes!(concat!(env!("ETL_SITE_MODULES"), "/cytoscape/dist/cytoscape.min.js"));
const DAGRE: &[u8] = include_bytes!(concat!(
    env!("ETL_SITE_MODULES"),
    "/cytoscape-dagre/dist/cytoscape-dagre.min.js"
));

/// What the site shows besides the manifest.
pub struct SiteInputs<'a> {
    pub manifest: &'a Value,
    pub catalog: &'a Value,
    /// Each built relation's stats, by unique id.
    pub stats: &'a BTreeMap<String, TableStats>,
    /// The records of the last runs, oldest first.
    pub runs: &'a [Value],
    /// The sources' freshness, as `etl source freshness` gives it.
    pub freshness: &'a [Value],
}

/// The site's data: every node with what its page shows, the runs, and
/// the quality report.
pub fn site_data(inputs: &SiteInputs) -> Value {
    let manifest = inputs.manifest;
    let runs: Vec<Value> = inputs
        .runs
        .iter()
        .map(|r| {
            let quality = &r["quality"];
            json!({
                "invocation_id": r["metadata"]["invocation_id"],
                "at": r["metadata"]["generated_at"],
                "command": r["args"]["which"],
                "target": r["metadata"]["target"],
                "elapsed": r["elapsed_time"],
                "tests": quality["tests"],
            })
        })
        .collect();
    // Each node's result in each run, by unique id.
    let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (k, run) in inputs.runs.iter().enumerate() {
        for r in run["results"].as_array().into_iter().flatten() {
            let Some(id) = r["unique_id"].as_str() else { continue };
            results.entry(id.to_owned()).or_default().push(json!({
                "run": k,
                "status": r["status"],
                "message": r["message"],
                "seconds": r["execution_time"],
                "rows": r["rows_affected"],
                "failures": r["failures"],
                "tested_rows": r["etl_tested_rows"],
                "up_to_date": r["etl_up_to_date"],
                "at": r["timing"][0]["completed_at"],
                "version": r["delta_version"],
            }));
        }
    }
    let mut nodes = Vec::new();
    for (kind, map) in [
        ("nodes", &manifest["nodes"]),
        ("sources", &manifest["sources"]),
        ("exposures", &manifest["exposures"]),
    ] {
        for (id, entry) in map.as_object().into_iter().flatten() {
            let resource_type = entry["resource_type"].as_str().unwrap_or_default();
            let catalog = &inputs.catalog[if kind == "sources" { "sources" } else { "nodes" }][id];
            nodes.push(node(id, entry, resource_type, catalog, inputs, &results));
        }
    }
    nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    json!({
        "project": manifest["metadata"]["project_name"],
        "target": manifest["metadata"]["target"],
        "generated_at": manifest["metadata"]["generated_at"],
        "etl_version": env!("CARGO_PKG_VERSION"),
        "nodes": nodes,
        "runs": runs,
        "quality": quality(inputs, &results),
        "freshness": inputs.freshness,
    })
}

/// One node's page.
fn node(
    id: &str,
    entry: &Value,
    resource_type: &str,
    catalog: &Value,
    inputs: &SiteInputs,
    results: &BTreeMap<String, Vec<Value>>,
) -> Value {
    let lineage = &entry["lineage"]["columns"];
    let documented = entry["columns"].as_object();
    // The planned or stored columns, in their order; documented ones that
    // are neither after them.
    let mut names: Vec<String> = lineage
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if names.is_empty() {
        let mut stored: Vec<(&String, &Value)> = catalog["columns"].as_object().into_iter().flatten().collect();
        stored.sort_by_key(|(_, c)| c["index"].as_u64());
        names = stored.into_iter().map(|(name, _)| name.clone()).collect();
    }
    for name in documented.into_iter().flat_map(|m| m.keys()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.clone());
        }
    }
    let column = |name: &str| -> Value {
        let doc = documented
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v);
        let stored = catalog["columns"]
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v);
        json!({
            "name": name,
            "type": stored.map(|c| c["type"].clone()).or_else(|| doc.map(|d| d["data_type"].clone())),
            "description": doc.map(|d| d["description"].clone()).unwrap_or(json!("")),
            "from": lineage.get(name).cloned().unwrap_or(json!([])),
        })
    };
    let columns: Vec<Value> = names.iter().map(|n| column(n)).collect();
    let tests: Vec<Value> = inputs.manifest["nodes"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, t)| t["resource_type"] == "test" && tested_node(t).as_deref() == Some(id))
        .map(|(tid, t)| {
            json!({
                "id": tid,
                "name": t["name"],
                "column": t["column_name"],
                "severity": t["config"]["severity"],
                "history": results.get(tid).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let parents = entry["depends_on"]["nodes"].clone();
    json!({
        "id": id,
        "name": entry["name"],
        "resource_type": resource_type,
        "package": entry["package_name"],
        "path": entry["original_file_path"],
        "description": entry["description"],
        "materialized": entry["config"]["materialized"],
        "schema": entry["schema"],
        "relation": entry["relation_name"],
        "tags": entry["tags"],
        "config": entry["config"],
        "parents": if parents.is_null() { json!([]) } else { parents },
        "raw_code": entry["raw_code"],
        "compiled_code": entry["compiled_code"],
        "columns": columns,
        "filtered_on": entry["lineage"]["filtered_on"],
        "tests": tests,
        "table": inputs.stats.get(id),
        "history": results.get(id).cloned().unwrap_or_default(),
        "source_name": entry["source_name"],
        "loader": entry["loader"],
    })
}

/// The node a data test tests: its `attached_node`, else the one model it
/// reads.
fn tested_node(test: &Value) -> Option<String> {
    if let Some(id) = test["attached_node"].as_str() {
        return Some(id.to_owned());
    }
    let parents = test["depends_on"]["nodes"].as_array()?;
    match parents.as_slice() {
        [one] => one.as_str().map(str::to_owned),
        _ => None,
    }
}

/// The quality report: per entity checked by a rate (a test whose
/// threshold is a percentage of the rows it reads, such as a reject rate),
/// that rate over the runs; per table of rejected rows, its rows by reason
/// over the runs.
fn quality(inputs: &SiteInputs, results: &BTreeMap<String, Vec<Value>>) -> Value {
    let mut rates = Vec::new();
    for (id, history) in results {
        if !history.iter().any(|h| h["tested_rows"].is_u64()) {
            continue;
        }
        let test = &inputs.manifest["nodes"][id];
        let points: Vec<Value> = history
            .iter()
            .filter(|h| !h["up_to_date"].as_bool().unwrap_or(false))
            .filter_map(|h| {
                let (failures, rows) = (h["failures"].as_u64()?, h["tested_rows"].as_u64()?);
                let rate = if rows > 0 {
                    failures as f64 * 100.0 / rows as f64
                } else {
                    0.0
                };
                Some(json!({"run": h["run"], "at": h["at"], "failures": failures, "rows": rows, "rate": rate, "status": h["status"]}))
            })
            .collect();
        rates.push(json!({
            "test": id,
            "name": test["name"],
            "entity": tested_node(test),
            "column": test["column_name"],
            "warn_if": test["config"]["warn_if"],
            "error_if": test["config"]["error_if"],
            "points": points,
        }));
    }
    let mut rejected: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (k, run) in inputs.runs.iter().enumerate() {
        for r in run["quality"]["rejected"].as_array().into_iter().flatten() {
            let Some(id) = r["unique_id"].as_str() else { continue };
            rejected.entry(id.to_owned()).or_default().push(json!({
                "run": k, "at": run["metadata"]["generated_at"], "rows": r["rows"], "reasons": r["reasons"],
            }));
        }
    }
    let rejected: Vec<Value> = rejected
        .into_iter()
        .map(|(id, points)| json!({"model": id, "points": points}))
        .collect();
    json!({"rates": rates, "rejected": rejected})
}

/// Writes the site into `dir` (replacing what a previous generate wrote).
/// Fails when etl was built without its graph library.
pub fn write_site(dir: &Path, data: &Value) -> Result<(), String> {
    if cfg!(etl_docs_js_missing) || CYTOSCAPE.is_empty() {
        return Err(
            "this etl was built without the docs site's graph library (npm could not install \
                    site/package-lock.json when etl was built): build etl again where npm reaches its registry"
                .into(),
        );
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // A `<script>` tag, so that the site opens from disk (`file://`
    // forbids reading a JSON file beside the page).
    let data = serde_json::to_string(data).map_err(|e| e.to_string())?;
    let data = format!("window.ETL_DOCS = {};\n", data.replace("</", "<\\/"));
    let files: [(&str, &[u8]); 6] = [
        ("index.html", INDEX.as_bytes()),
        ("app.js", APP.as_bytes()),
        ("style.css", STYLE.as_bytes()),
        ("cytoscape.min.js", CYTOSCAPE),
        ("cytoscape-dagre.min.js", DAGRE),
        ("data.js", data.as_bytes()),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        let temp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temp, bytes)
            .and_then(|_| std::fs::rename(&temp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
