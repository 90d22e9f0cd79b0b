//! What a run leaves in `target/`: `manifest.json` (every node, its config,
//! dependencies and table location), `run_results.json` (one result per
//! executed node) and `compiled/<path>.sql`. Field names follow dbt's
//! artifacts so that tools reading those keep working.

pub mod site;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use petgraph::graph::NodeIndex;
use serde_json::{Value, json};

use crate::graph::{Dag, Materialization, Node, ResourceType};
use crate::lake;
use crate::materialize::{Rejected, RunResults, Status};
use crate::plan::Planned;
use crate::plan::lineage::Lineage;
use crate::plan::{CompiledSql, compile_with};
use crate::project::{Project, TestKind, TestTarget};
use crate::render::{Rendered, RenderedModel};

pub fn target_dir(project: &Project) -> PathBuf {
    project.root.join("target")
}

/// The manifest of the project as loaded and rendered.
pub fn manifest(project: &Project, dag: &Dag, rendered: &Rendered, invocation_id: &str) -> Value {
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let mut nodes = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    let mut unit_tests = serde_json::Map::new();
    let mut exposures = serde_json::Map::new();
    // A unit test hangs off its model in dbt's maps.
    let tested_by: BTreeMap<NodeIndex, String> = dag
        .order
        .iter()
        .filter(|&&i| dag.node(i).resource_type == ResourceType::UnitTest)
        .filter_map(|&i| {
            let model = dag.node(i).fqn.iter().rev().nth(1)?;
            let id = dag
                .order
                .iter()
                .map(|&m| dag.node(m))
                .find(|m| m.resource_type == ResourceType::Model && &m.name == model)?;
            Some((i, id.unique_id.clone()))
        })
        .collect();
    for &index in &dag.order {
        let node = dag.node(index);
        if node.resource_type == ResourceType::UnitTest {
            let test = node.unit_test(project);
            let model = tested_by.get(&index).cloned();
            unit_tests.insert(node.unique_id.clone(), unit_test_entry(test, node, model, created_at));
            continue;
        }
        if node.resource_type == ResourceType::Exposure {
            exposures.insert(node.unique_id.clone(), exposure_entry(project, dag, index, created_at));
            continue;
        }
        let location = (!matches!(node.materialized, Materialization::Ephemeral | Materialization::Test)).then(|| {
            match node.materialized {
                Materialization::External => node.source(project).location.clone(),
                _ => lake::relation_location(&project.target.lake, &node.relation).to_string(),
            }
        });
        let parents: Vec<&str> = dag.parents(index).map(|p| dag.node(p).unique_id.as_str()).collect();
        let mut entry = json!({
            "unique_id": node.unique_id,
            "name": node.name,
            "resource_type": node.resource_type,
            "package_name": node.fqn.first().unwrap_or(&project.name),
            "path": node.path,
            "original_file_path": node.path,
            "fqn": node.fqn,
            "database": "lake",
            "schema": node.relation.schema,
            "alias": node.relation.identifier,
            "relation_name": (!node.relation.ephemeral).then(|| node.relation.sql()),
            "tags": node.tags(),
            "config": node.config.manifest_value(),
            "unrendered_config": node.config.raw().values(),
            "depends_on": { "nodes": parents, "macros": node_macros(node, rendered) },
            "checksum": checksum(project, node, rendered),
            "meta": node.config.raw().value("meta").cloned().unwrap_or_else(|| json!({})),
            "docs": {"show": true, "node_color": null},
            "patch_path": null,
            "build_path": null,
            "created_at": created_at,
            "relation": { "name": node.relation.sql(), "location": location },
        });
        match node.materialized {
            Materialization::External => {
                let s = node.source(project);
                entry["source_name"] = json!(s.source_name);
                entry["source_description"] = json!("");
                entry["loader"] = json!("");
                entry["identifier"] = json!(node.relation.identifier);
                entry["quoting"] = json!({});
                entry["loaded_at_field"] = json!(node.config.loaded_at_field);
                entry["external"] = json!({"location": s.location});
                entry["source_meta"] = json!({});
                entry["description"] = json!(s.description);
                entry["format"] = json!(s.format);
                entry["columns"] = columns(&s.columns);
                for key in ["build_path", "docs", "checksum"] {
                    entry.as_object_mut().expect("an entry is a map").remove(key);
                }
                sources.insert(node.unique_id.clone(), entry);
            }
            Materialization::Seed => {
                let s = node.seed(project);
                entry["description"] = json!(s.description);
                entry["columns"] = columns(&s.columns);
                entry["raw_code"] = json!("");
                entry["root_path"] = json!(project.root);
                nodes.insert(node.unique_id.clone(), entry);
            }
            _ => {
                let m = sql_body(node, rendered);
                if node.resource_type == ResourceType::Test {
                    test_entry(&mut entry, project, dag, node);
                } else {
                    let pm = node.model(project);
                    entry["description"] = json!(pm.description);
                    entry["columns"] = columns(&pm.columns);
                    entry["raw_code"] = json!(m.template);
                }
                entry["compiled_code"] = json!(compile_node(dag, index, rendered).sql);
                entry["compiled_path"] = json!(Path::new("target/compiled").join(compiled_path(node)));
                entry["refs"] = json!(
                    m.refs
                        .iter()
                        .map(|r| json!({"name": r.name, "package": r.package, "version": null}))
                        .collect::<Vec<_>>()
                );
                entry["language"] = json!("sql");
                entry["contract"] = json!({"enforced": node.config.contract_enforced, "alias_types": true});
                entry["metrics"] = json!([]);
                entry["functions"] = json!([]);
                entry["sources"] = json!(m.sources.iter().map(|(s, t)| json!([s, t])).collect::<Vec<_>>());
                nodes.insert(node.unique_id.clone(), entry);
            }
        }
    }
    // Each node's parents and children, as dbt's `parent_map` and
    // `child_map` give them (every node and source has an entry).
    let mut parent_map = serde_json::Map::new();
    let mut child_map = serde_json::Map::new();
    // A source read from the lake waits for the seed that loads it in
    // etl's DAG; in dbt's maps a source has no parents.
    let is_source = |i: NodeIndex| dag.node(i).resource_type == ResourceType::Source;
    for &index in &dag.order {
        let id = &dag.node(index).unique_id;
        let mut parents: Vec<&str> = if is_source(index) {
            Vec::new()
        } else if let Some(model) = tested_by.get(&index) {
            vec![model.as_str()]
        } else {
            dag.parents(index).map(|p| dag.node(p).unique_id.as_str()).collect()
        };
        parents.sort_unstable();
        parent_map.insert(id.clone(), json!(parents));
        let mut children: Vec<&str> = dag
            .graph
            .neighbors_directed(index, petgraph::Direction::Outgoing)
            .filter(|&c| !is_source(c) && !tested_by.contains_key(&c))
            .map(|c| dag.node(c).unique_id.as_str())
            .chain(
                tested_by
                    .iter()
                    .filter(|(_, model)| *model == id)
                    .map(|(&t, _)| dag.node(t).unique_id.as_str()),
            )
            .collect();
        children.sort_unstable();
        children.dedup();
        child_map.insert(id.clone(), json!(children));
    }
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "dbt_version": "1.11.0",
            "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "generator": "etl",
            "etl_version": env!("CARGO_PKG_VERSION"),
            "invocation_id": invocation_id,
            "project_name": project.name,
            "adapter_type": "etl",
            "env": {},
            "target": project.target.name,
            "lake": project.target.lake.as_str(),
        },
        "nodes": nodes,
        "sources": sources,
        "macros": macros(rendered, created_at),
        "docs": {},
        "exposures": exposures,
        "metrics": {},
        "groups": {},
        "selectors": {},
        "disabled": disabled(project, rendered, created_at),
        "parent_map": parent_map,
        "child_map": child_map,
        "group_map": {},
        "saved_queries": {},
        "semantic_models": {},
        "unit_tests": unit_tests,
        "functions": {},
    })
}

/// dbt's `disabled`: each model and snapshot with `enabled: false`, as
/// parsed (a list per unique_id, as dbt keeps them).
fn disabled(project: &Project, rendered: &Rendered, created_at: f64) -> Value {
    let mut out = serde_json::Map::new();
    for (model, m) in project.models.iter().zip(&rendered.models) {
        if m.config.enabled() {
            continue;
        }
        let package = model.fqn.first().unwrap_or(&project.name);
        let kind = model.resource_type.as_str();
        let id = format!("{kind}.{package}.{}", model.name);
        let mut config = m.config.values().clone();
        config.insert("enabled".into(), json!(false));
        let materialized = match model.resource_type {
            ResourceType::Snapshot => "snapshot",
            _ => config.get("materialized").and_then(Value::as_str).unwrap_or("view"),
        }
        .to_owned();
        config.insert("materialized".into(), json!(materialized));
        let entry = json!({
            "unique_id": id,
            "name": model.name,
            "resource_type": kind,
            "package_name": package,
            "path": model.file.path,
            "original_file_path": model.file.path,
            "fqn": model.fqn,
            "database": "lake",
            "schema": m.relation.schema,
            "alias": m.relation.identifier,
            "checksum": {"name": "sha256", "checksum": sha256_hex(m.template.as_bytes())},
            "config": config,
            "unrendered_config": m.config.values(),
            "tags": [],
            "description": model.description,
            "columns": columns(&model.columns),
            "meta": {},
            "raw_code": m.template,
            "language": "sql",
            "refs": m.refs.iter().map(|r| json!({"name": r.name, "package": r.package, "version": null})).collect::<Vec<_>>(),
            "sources": m.sources.iter().map(|(s, t)| json!([s, t])).collect::<Vec<_>>(),
            "depends_on": {"nodes": [], "macros": []},
            "created_at": created_at,
        });
        out.insert(id, json!([entry]));
    }
    Value::Object(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// dbt's entry for an exposure: what it is, who owns it, what it reads.
fn exposure_entry(project: &Project, dag: &Dag, index: NodeIndex, created_at: f64) -> Value {
    use crate::project::Input;
    let node = dag.node(index);
    let e = node.exposure(project);
    let mut parents: Vec<&str> = dag.parents(index).map(|p| dag.node(p).unique_id.as_str()).collect();
    parents.sort_unstable();
    let refs: Vec<Value> = e
        .depends_on
        .iter()
        .filter_map(|(input, _)| match input {
            Input::Ref(name) => Some(json!({"name": name, "package": null, "version": null})),
            _ => None,
        })
        .collect();
    let sources: Vec<Value> = e
        .depends_on
        .iter()
        .filter_map(|(input, _)| match input {
            Input::Source(s, t) => Some(json!([s, t])),
            _ => None,
        })
        .collect();
    json!({
        "name": e.name,
        "resource_type": "exposure",
        "package_name": e.package,
        "path": e.path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "original_file_path": e.path,
        "unique_id": node.unique_id,
        "fqn": e.fqn,
        "type": e.kind,
        "owner": e.owner,
        "description": e.description,
        "label": e.label,
        "maturity": e.maturity,
        "meta": node.config.raw().value("meta").cloned().unwrap_or_else(|| json!({})),
        "tags": node.tags(),
        "config": {
            "enabled": true,
            "tags": node.tags(),
            "meta": node.config.raw().value("meta").cloned().unwrap_or_else(|| json!({})),
        },
        "unrendered_config": {},
        "url": e.url,
        "depends_on": {"macros": [], "nodes": parents},
        "refs": refs,
        "sources": sources,
        "metrics": [],
        "created_at": created_at,
    })
}

/// dbt's entry for a unit test: its model, given and expected rows (CSV
/// as rows of text, as dbt lists them), overrides.
fn unit_test_entry(test: &crate::project::UnitTest, node: &Node, model: Option<String>, created_at: f64) -> Value {
    use crate::project::Rows;
    let rows = |rows: &Rows| match rows {
        Rows::Dict(list) => (json!(list), "dict"),
        Rows::Csv(text) => {
            let mut lines = crate::project::csv_lines(text).into_iter();
            let header: Vec<String> = lines
                .next()
                .unwrap_or_default()
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect();
            let list: Vec<Value> = lines
                .map(|cells| {
                    Value::Object(
                        header
                            .iter()
                            .cloned()
                            .zip(cells.into_iter().map(|c| json!(c)))
                            .collect(),
                    )
                })
                .collect();
            (json!(list), "csv")
        }
        Rows::Sql(sql) => (json!(sql), "sql"),
        Rows::Own => (json!([]), "dict"),
    };
    let given: Vec<Value> = test
        .given
        .iter()
        .map(|g| {
            let (rows, format) = rows(&g.rows);
            json!({"input": g.input.to_string(), "rows": rows, "format": format, "fixture": null})
        })
        .collect();
    let (expected, format) = rows(&test.expect);
    json!({
        "model": test.model,
        "given": given,
        "expect": {"rows": expected, "format": format, "fixture": null},
        "name": test.name,
        "resource_type": "unit_test",
        "package_name": test.package,
        "path": test.path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "original_file_path": test.path,
        "unique_id": node.unique_id,
        "fqn": test.fqn,
        "description": test.description,
        "overrides": test.overrides.written.then(|| json!({
            "macros": test.overrides.macros,
            "vars": test.overrides.vars,
            "env_vars": test.overrides.env_vars,
        })),
        "depends_on": {"macros": [], "nodes": model.into_iter().collect::<Vec<_>>()},
        "config": {
            "tags": node.tags(),
            "meta": node.config.raw().value("meta").cloned().unwrap_or_else(|| json!({})),
            "enabled": true,
        },
        "checksum": null,
        "schema": node.relation.schema,
        "created_at": created_at,
        "versions": null,
        "version": null,
    })
}

/// The macros a model's or test's template calls.
fn node_macros(node: &Node, rendered: &Rendered) -> Value {
    match node.resource_type {
        ResourceType::Model | ResourceType::Snapshot | ResourceType::Test => json!(sql_body(node, rendered).macros),
        _ => json!([]),
    }
}

/// dbt's `macros`: every macro the project can call, with its file and
/// text.
fn macros(rendered: &Rendered, created_at: f64) -> Value {
    let mut out = serde_json::Map::new();
    for (package, name, path, sql) in rendered.run.macro_definitions() {
        let id = format!("macro.{package}.{name}");
        out.insert(
            id.clone(),
            json!({
                "unique_id": id,
                "name": name,
                "resource_type": "macro",
                "package_name": package,
                "path": path,
                "original_file_path": path,
                "macro_sql": sql,
                "depends_on": {"macros": []},
                "description": "",
                "meta": {},
                "docs": {"show": true, "node_color": null},
                "patch_path": null,
                "arguments": [],
                "created_at": created_at,
                "supported_languages": null,
            }),
        );
    }
    Value::Object(out)
}

/// dbt's `checksum`: the sha256 of the node's file (its template for a
/// model or singular test, its CSV for a seed; a generic test's is that of
/// its rendered SQL).
fn checksum(project: &Project, node: &Node, rendered: &Rendered) -> Value {
    let bytes: Vec<u8> = match node.resource_type {
        // As dbt: a seed over 1 MiB is checked by its path, not read.
        ResourceType::Seed => {
            let path = project.root.join(&node.path);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > 1 << 20) {
                return json!({"name": "path", "checksum": node.path});
            }
            std::fs::read(path).unwrap_or_default()
        }
        ResourceType::Model | ResourceType::Snapshot | ResourceType::Test => {
            let m = sql_body(node, rendered);
            if m.template.is_empty() {
                m.sql.clone()
            } else {
                m.template.clone()
            }
            .into_bytes()
        }
        _ => Vec::new(),
    };
    json!({"name": "sha256", "checksum": sha256_hex(&bytes)})
}

/// The rendered SQL of a model or data test.
fn sql_body<'a>(node: &Node, rendered: &'a Rendered) -> &'a RenderedModel {
    match node.resource_type {
        ResourceType::Test => node.rendered(&rendered.models, &rendered.tests),
        _ => node.rendered(&rendered.models, &rendered.tests),
    }
}

/// Adds what the check knows of each planned model to its manifest entry,
/// beside dbt's keys (dbt's readers allow extra ones): `etl_plan`, its
/// plan's fingerprint and its columns with their types (what a later
/// `--state` compares); `lineage.columns.<column>`, the upstream columns it
/// derives from (`unique_id`, `column`, `how`); `lineage.filtered_on`, the
/// columns its rows are filtered or joined on.
pub fn add_plans(
    manifest: &mut Value,
    dag: &Dag,
    plans: &std::collections::HashMap<NodeIndex, Planned>,
    lineage: &std::collections::HashMap<NodeIndex, Lineage>,
) {
    // Built on every core (10,000 models' columns and origins are 100,000
    // small objects), then put in place.
    let plans: Vec<(&NodeIndex, &Planned)> = plans.iter().collect();
    let plan_entries = crate::parallel::chunks(plans.len(), 256, |range| {
        plans[range]
            .iter()
            .map(|&(&index, plan)| {
                let columns: Vec<Value> = plan
                    .columns
                    .iter()
                    .map(|(name, kind)| json!({"name": name, "data_type": kind}))
                    .collect();
                (index, json!({"fingerprint": plan.fingerprint, "columns": columns}))
            })
            .collect::<Vec<_>>()
    });
    let id = |i: NodeIndex| dag.node(i).unique_id.clone();
    let lineage: Vec<(&NodeIndex, &Lineage)> = lineage.iter().collect();
    let lineage_entries = crate::parallel::chunks(lineage.len(), 256, |range| {
        lineage[range]
            .iter()
            .map(|&(&index, model)| {
                let columns: serde_json::Map<String, Value> = model
                    .columns
                    .iter()
                    .map(|(column, origins)| {
                        let from: Vec<Value> = origins
                            .iter()
                            .map(|o| json!({"unique_id": id(o.node), "column": o.column, "how": o.how.as_str()}))
                            .collect();
                        (column.clone(), Value::Array(from))
                    })
                    .collect();
                let filtered_on: Vec<Value> = model
                    .filtered_on
                    .iter()
                    .map(|(n, c)| json!({"unique_id": id(*n), "column": c}))
                    .collect();
                (index, json!({"columns": columns, "filtered_on": filtered_on}))
            })
            .collect::<Vec<_>>()
    });
    let nodes = &mut manifest["nodes"];
    for (index, plan) in plan_entries.into_iter().flatten() {
        if let Some(entry) = nodes.get_mut(&dag.node(index).unique_id) {
            entry["etl_plan"] = plan;
        }
    }
    for (index, lineage) in lineage_entries.into_iter().flatten() {
        if let Some(entry) = nodes.get_mut(&dag.node(index).unique_id) {
            entry["lineage"] = lineage;
        }
    }
}

/// The compiled SQL of a model or test (`None` for seeds and sources), as
/// the manifest records it.
pub fn compiled_code(dag: &Dag, index: NodeIndex, rendered: &Rendered) -> Option<String> {
    dag.node(index).sql.as_ref()?;
    Some(compile_node(dag, index, rendered).sql)
}

/// Reads what an earlier run left in `dir` (its `target/`): the manifest's
/// nodes and the run results, for `state:` and `result:` selectors.
pub fn read_state(dir: &Path) -> Result<crate::graph::PreviousState, String> {
    let read = |name: &str| -> Result<Option<Value>, String> {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("`{}` is not valid JSON: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
        }
    };
    let manifest = read("manifest.json")?.ok_or_else(|| format!("`{}` holds no manifest.json", dir.display()))?;
    let mut state = crate::graph::PreviousState::default();
    for section in ["nodes", "sources"] {
        if let Some(Value::Object(nodes)) = manifest.get(section) {
            for (id, node) in nodes {
                let sql = node.get("compiled_code").and_then(Value::as_str).map(str::to_owned);
                let config = node.get("config").cloned().unwrap_or(Value::Null);
                state.nodes.insert(id.clone(), (sql, config));
                if let Some(plan) = node["etl_plan"]["fingerprint"].as_str() {
                    state.plans.insert(id.clone(), plan.to_owned());
                    let columns = node["etl_plan"]["columns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c["data_type"].as_str()?.to_owned())))
                        .collect();
                    state.columns.insert(id.clone(), columns);
                }
            }
        }
    }
    if let Some(results) = read("run_results.json")? {
        for r in results.get("results").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(id), Some(status)) = (r["unique_id"].as_str(), r["status"].as_str()) {
                state.results.insert(id.to_owned(), status.to_owned());
            }
        }
    }
    Ok(state)
}

fn compile_node(dag: &Dag, index: NodeIndex, rendered: &Rendered) -> CompiledSql {
    compile_with(dag, index, &rendered.models, sql_body(dag.node(index), rendered))
}

/// Where a node's compiled SQL goes under `target/compiled/`: its own path,
/// or for a generic test, `<properties file folder>/<test name>.sql`.
fn compiled_path(node: &Node) -> PathBuf {
    if node.resource_type == ResourceType::Test && node.path.extension().is_some_and(|e| e != "sql") {
        node.path
            .parent()
            .unwrap_or(Path::new(""))
            .join(format!("{}.sql", node.relation.identifier))
    } else if node.resource_type == ResourceType::Snapshot {
        // A file may hold several snapshots (and a properties file is not
        // SQL): each is compiled beside the others, under its file's name.
        node.path.join(format!("{}.sql", node.name))
    } else {
        node.path.clone()
    }
}

/// dbt's fields for a data test: `test_metadata`, `column_name`,
/// `attached_node`.
fn test_entry(entry: &mut Value, project: &Project, dag: &Dag, node: &Node) {
    let test = node.test(project);
    entry["description"] = json!(test.description);
    match &test.kind {
        TestKind::Generic {
            test_name,
            namespace,
            target,
            column_name,
            kwargs,
        } => {
            let mut kw = kwargs.clone();
            if let Some(c) = column_name {
                kw.insert("column_name".into(), json!(c));
            }
            entry["test_metadata"] = json!({"name": test_name, "namespace": namespace, "kwargs": kw});
            entry["column_name"] = json!(column_name);
            let attached = match target {
                TestTarget::Model(n) | TestTarget::Seed(n) => dag.find(n),
                TestTarget::Source(s, t) => dag.find(&format!("{s}.{t}")),
            };
            entry["attached_node"] = json!(attached.map(|i| dag.node(i).unique_id.clone()));
        }
        TestKind::Singular { file } => {
            entry["raw_code"] = json!(file.text);
        }
    }
}

fn columns(cols: &[crate::project::ColumnProperties]) -> Value {
    let mut map = serde_json::Map::new();
    for c in cols {
        map.insert(
            c.name.clone(),
            json!({"name": c.name, "description": c.description, "data_type": c.data_type}),
        );
    }
    Value::Object(map)
}

/// `run_results.json`; `compiled_code` gives the SQL a node ran (by
/// unique_id), `None` for seeds and sources.
pub fn run_results(
    results: &RunResults,
    rejected: &[Rejected],
    invocation_id: &str,
    command: &str,
    compiled_code: &dyn Fn(&str) -> Option<String>,
) -> Value {
    let items: Vec<Value> = results
        .results
        .iter()
        .map(|r| {
            // dbt's `timing`: when the node's work started and ended.
            let (timing, thread) = match results.finished.get(&r.unique_id) {
                Some((end, slot)) => {
                    let micros = (r.execution_time * 1e6) as i64;
                    let start = *end - chrono::Duration::microseconds(micros);
                    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    (
                        json!([{"name": "execute", "started_at": at(start), "completed_at": at(*end)}]),
                        format!("Thread-{slot}"),
                    )
                }
                None => (json!([]), "Thread-1".to_owned()),
            };
            let code = compiled_code(&r.unique_id);
            json!({
                "unique_id": r.unique_id,
                "status": r.status,
                "timing": timing,
                "thread_id": thread,
                "compiled": code.is_some(),
                "compiled_code": code,
                "execution_time": r.execution_time,
                "rows_affected": r.rows_affected,
                "message": r.message,
                "relation_name": r.relation,
                "location": r.location,
                "delta_version": r.version,
                "materialized": r.materialized,
                "adapter_response": { "rows_affected": r.rows_affected },
                "failures": r.failures,
                "etl_tested_rows": r.tested_rows,
                "etl_up_to_date": r.up_to_date,
                "etl_phases": r.phases,
                "etl_warnings": r.warnings,
            })
        })
        .collect();
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": "1.11.0",
            "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "generator": "etl",
            "etl_version": env!("CARGO_PKG_VERSION"),
            "invocation_id": invocation_id,
        },
        "args": { "which": command },
        "elapsed_time": results.elapsed,
        "results": items,
        "quality": {
            "tests": {
                "pass": results.count(Status::Pass),
                "warn": results.count(Status::Warn),
                "fail": results.count(Status::Fail),
            },
            "rejected": rejected,
        },
    })
}

/// Writes `value` to `target/<name>` through a temporary file, so that a
/// reader never sees half a file.
pub fn write_json(project: &Project, name: &str, value: &Value) -> std::io::Result<PathBuf> {
    let dir = target_dir(project);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    write_atomically(&path, &to_json(value)?)?;
    Ok(path)
}

/// An object holding this many entries or more is serialised on every core.
const LARGE_OBJECT: usize = 1024;

/// `value` as compact JSON, byte for byte what `serde_json::to_vec` writes,
/// the entries of its large objects (a manifest's `nodes`: 34 MB at 10,000
/// models) serialised on every core.
fn to_json(value: &Value) -> serde_json::Result<Vec<u8>> {
    let Value::Object(top) = value else {
        return serde_json::to_vec(value);
    };
    let mut out = Vec::new();
    out.push(b'{');
    for (i, (key, item)) in top.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key)?;
        out.push(b':');
        match item {
            Value::Object(entries) if entries.len() >= LARGE_OBJECT => {
                let entries: Vec<(&String, &Value)> = entries.iter().collect();
                let parts = crate::parallel::chunks(entries.len(), LARGE_OBJECT / 2, |range| {
                    let mut part = Vec::new();
                    for (j, (key, value)) in entries[range].iter().enumerate() {
                        if j > 0 {
                            part.push(b',');
                        }
                        serde_json::to_writer(&mut part, key)?;
                        part.push(b':');
                        serde_json::to_writer(&mut part, value)?;
                    }
                    Ok::<_, serde_json::Error>(part)
                });
                out.push(b'{');
                let mut first = true;
                for part in parts {
                    let part = part?;
                    if part.is_empty() {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(&part);
                }
                out.push(b'}');
            }
            _ => serde_json::to_writer(&mut out, item)?,
        }
    }
    out.push(b'}');
    Ok(out)
}

/// Writes `bytes` to `path` so that a reader, or another etl writing the
/// same file at the same time (two builds sharing `target/`), sees one
/// whole file or the other: each writer fills a temporary file of its own
/// beside it, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes the compiled SQL of the models among `nodes` to
/// `target/compiled/<path>`.
pub fn write_compiled(
    project: &Project,
    dag: &Dag,
    nodes: &[NodeIndex],
    rendered: &Rendered,
) -> std::io::Result<usize> {
    let dir = target_dir(project).join("compiled");
    let mut count = 0;
    // Each folder made once, not once per file in it.
    let mut made: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for &index in nodes {
        let node = dag.node(index);
        if node.sql.is_none() {
            continue;
        }
        let compiled = compile_node(dag, index, rendered);
        let path = dir.join(compiled_path(node));
        // A file that holds these bytes already is left alone: renaming a
        // new one over it costs a flush (ext4 writes a replaced file's data
        // out at the rename), most of a 5,000-model compile.
        if std::fs::read(&path).is_ok_and(|old| old == compiled.sql.as_bytes()) {
            count += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            if !made.contains(parent) {
                std::fs::create_dir_all(parent)?;
                made.insert(parent.to_path_buf());
            }
        }
        write_atomically(&path, compiled.sql.as_bytes())?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_object_serialised_on_every_core_is_what_serde_json_writes() {
        let nodes: serde_json::Map<String, Value> = (0..3 * LARGE_OBJECT + 7)
            .map(|i| {
                let node = json!({"name": format!("m_\"{i}\""), "columns": [i, i * 2], "sql": "select 1\n"});
                (format!("model.p.m_{i}"), node)
            })
            .collect();
        let small: serde_json::Map<String, Value> =
            (0..3).map(|i| (format!("source.p.s{i}"), json!({"i": i}))).collect();
        let manifest = json!({
            "metadata": {"dbt_version": "1.9"},
            "nodes": nodes,
            "sources": small,
            "empty": {},
            "list": [1, 2],
        });
        assert_eq!(to_json(&manifest).unwrap(), serde_json::to_vec(&manifest).unwrap());
        let empty = json!({"nodes": serde_json::Map::new()});
        assert_eq!(to_json(&empty).unwrap(), serde_json::to_vec(&empty).unwrap());
        assert_eq!(to_json(&json!([1, "a"])).unwrap(), b"[1,\"a\"]");
    }

    #[test]
    fn writers_of_one_artifact_at_once_each_leave_a_whole_file() {
        // See: issue 23 (`cannot write target/manifest.json` when two
        // builds shared target/): both wrote the same temporary file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let bodies: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 200_000]).collect();
        let barrier = std::sync::Barrier::new(bodies.len());
        std::thread::scope(|scope| {
            for body in &bodies {
                let (path, barrier) = (&path, &barrier);
                scope.spawn(move || {
                    for _ in 0..50 {
                        barrier.wait();
                        write_atomically(path, body).unwrap();
                    }
                });
            }
        });
        let left = std::fs::read(&path).unwrap();
        assert!(bodies.contains(&left), "a whole body, not a mix");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["manifest.json"], "no temporary file left");
    }
}
