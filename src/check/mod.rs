//! The static check `etl compile` runs: every selected model planned with
//! DataFusion against the schemas of its inputs, reading no data. Sources
//! give their schema from their files (one file's header or footer), seeds
//! from the lake or their CSV header and `column_types`, models from their
//! own planned output (so a change is checked against its parents'
//! changes), tables not planned here from their Delta schema. The engine
//! that checks is the engine that runs: a model that plans here fails at
//! run time only for a reason its data decides.
//!
//! Every model that does not plan is reported, each at its template's
//! line and column; a model whose input does not plan is not checked (its
//! input's error says why).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::empty::EmptyTable;
use datafusion::prelude::SessionContext;
use petgraph::graph::NodeIndex;

mod cache;
pub use cache::finish_saving;

use crate::Prepared;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::{Materialization, ResourceType};
use crate::plan::lineage::{self, Lineage, Tables};
use crate::plan::{
    Planned, Registry, check_contract, compile, plan_fingerprint, plan_model, plan_model_in, register_csv_file,
};

/// What the check found: the models that do not plan, and how many it
/// planned.
#[derive(Debug, Default)]
pub struct Checked {
    pub errors: Vec<Diagnostic>,
    pub planned: usize,
    /// Selected models not checked, each with why: they read the lake as
    /// they render (`execute`), or an input that cannot be read or planned.
    pub skipped: Vec<String>,
    /// The column lineage of each model planned (or found planned as last
    /// time, with its lineage).
    pub lineage: HashMap<NodeIndex, Lineage>,
    /// Models found planned as last time, of `planned`.
    pub cached: usize,
    /// Incremental models checked both ways (`check_both_ways`).
    pub both_ways: usize,
    /// Each planned model's plan: its fingerprint and its columns.
    pub plans: HashMap<NodeIndex, Planned>,
    /// `check_both_ways`: the plans of the incremental models as they
    /// render on their tables.
    pub on_table: HashMap<NodeIndex, Planned>,
}

/// Plans the models of `selection` (and the models they read) in `ctx`,
/// as `prepared` renders them, with the check's cache.
pub async fn check(prepared: &Prepared, selection: &[NodeIndex], ctx: SessionContext) -> Checked {
    let options = Options {
        cached: true,
        ..Options::default()
    };
    check_with(prepared, selection, ctx, &options).await
}

/// How `check_with` checks.
#[derive(Default)]
pub struct Options {
    /// Each model rendered on its existing table, as a full build renders
    /// it (see `check_with`).
    pub full_sql: HashMap<String, String>,
    /// Reuse and keep `target/check_cache.json`.
    pub cached: bool,
    /// A model the selection reads but does not build is read as the lake
    /// has it (its table, as the build will read it), and planned only
    /// when it has none: what a build of the selection reads.
    pub unselected_from_lake: bool,
}

/// `check`, for models rendered on their existing tables
/// (`is_incremental()` true): `full_sql` holds each such model's SQL as a
/// full build renders it, whose planned columns stand for `{{ this }}`
/// (the table a full build would write) rather than opening each table in
/// the lake. A model that does not plan that way is planned again on its
/// table as the lake has it, and only that result counts.
///
/// With `cached`, a model whose SQL and inputs' columns are those of its
/// last check is not planned again (its columns, plan fingerprint and
/// lineage are kept in `target/check_cache.json`; see [`cache`]).
///
/// Only the selected models' errors are reported: a model the selection
/// only reads that does not plan leaves what reads it not checked.
pub async fn check_with(
    prepared: &Prepared,
    selection: &[NodeIndex],
    ctx: SessionContext,
    options: &Options,
) -> Checked {
    let full_sql = &options.full_sql;
    let cached = options.cached;
    let dag = &prepared.dag;
    let project = &prepared.project;
    let registry = Arc::new(Registry::new(ctx, project.target.lake.clone()));
    // The selection and everything it reads.
    let selected: HashSet<NodeIndex> = selection.iter().copied().collect();
    // One walk up from all of them: each node visited once.
    let mut needed: BTreeSet<NodeIndex> = BTreeSet::new();
    let mut stack: Vec<NodeIndex> = selection
        .iter()
        .copied()
        .filter(|&i| matches!(dag.node(i).resource_type, ResourceType::Model | ResourceType::Snapshot))
        .collect();
    while let Some(i) = stack.pop() {
        if needed.insert(i) {
            stack.extend(dag.parents(i));
        }
    }
    let mut out = Checked::default();
    let tables = Arc::new(tables(dag));
    let mut cache = cached.then(|| cache::Cache::open(crate::artifacts::target_dir(project).join("check_cache.json")));
    // What each node's columns are, for the keys of what reads it.
    let mut columns: HashMap<NodeIndex, String> = HashMap::new();
    let session_key = cache::key([
        env!("CARGO_PKG_VERSION"),
        format!("{:?}", registry.ctx.copied_config().options()).as_str(),
    ]);
    // Each node that could not be planned or read, with why, for what
    // reads it.
    let mut failed: HashMap<NodeIndex, String> = HashMap::new();
    // Layers of the DAG: the models of one are planned at once, on every
    // core (planning is most of the check), once the layer before is
    // registered.
    let mut depth: HashMap<NodeIndex, usize> = HashMap::new();
    let mut layers: BTreeMap<usize, Vec<NodeIndex>> = BTreeMap::new();
    for &i in dag.order.iter().filter(|i| needed.contains(i)) {
        let d = dag.parents(i).filter_map(|p| depth.get(&p)).max().map_or(0, |d| d + 1);
        depth.insert(i, d);
        layers.entry(d).or_default().push(i);
    }
    for layer in layers.into_values() {
        let mut to_plan = Vec::new();
        // One copy of the session's state for the layer's plans (a copy
        // per plan was a fifth of the check): its tables are shared, so it
        // sees every table registered since.
        let layer_state = Arc::new(registry.ctx.state());
        for i in layer {
            let node = dag.node(i);
            if let Some(why) = dag.parents(i).find_map(|p| failed.get(&p).cloned()) {
                if selected.contains(&i) && matches!(node.resource_type, ResourceType::Model | ResourceType::Snapshot) {
                    out.skipped.push(format!("`{}` ({why})", node.name));
                }
                failed.insert(i, why);
                continue;
            }
            let started = std::time::Instant::now();
            let result = match node.resource_type {
                // A source that is the lake's table a seed or model writes
                // is read with that node's columns.
                ResourceType::Source => match dag.parents(i).next() {
                    Some(writer) => same_columns(&registry, dag, writer, i).await,
                    None => match registry.ensure(dag, project, i).await {
                        Ok(()) => Ok(()),
                        // No files yet: its declared columns, when each has
                        // a type.
                        Err(diag) => declared_columns(&registry, prepared, i).await.ok_or(diag),
                    },
                },
                ResourceType::Seed => seed(&registry, prepared, i).await,
                // Read, not built, by this build: as the lake has it.
                ResourceType::Model | ResourceType::Snapshot
                    if options.unselected_from_lake
                        && !selected.contains(&i)
                        && node.materialized != Materialization::Ephemeral
                        && registry.ensure(dag, project, i).await.is_ok() =>
                {
                    Ok(())
                }
                ResourceType::Model | ResourceType::Snapshot => {
                    let rendered = node.rendered(&prepared.rendered.models, &[]);
                    if rendered.introspects {
                        // Rendered as parsed (`execute` false): its SQL is
                        // known when it runs. Its dependents read it from
                        // the lake.
                        let why = format!("`{}` renders as it runs", node.name);
                        if selected.contains(&i) {
                            out.skipped
                                .push(format!("`{}` (it reads the lake as it renders)", node.name));
                        }
                        // Not in the lake yet: what reads it is not checked.
                        if node.materialized == Materialization::Ephemeral
                            || registry.ensure(dag, project, i).await.is_err()
                        {
                            failed.insert(i, why);
                        } else if let Some(schema) = registered_columns(&registry, &node.relation).await {
                            columns.insert(i, cache::columns_key(&schema));
                        }
                        continue;
                    }
                    let compiled = compile(dag, i, &prepared.rendered.models);
                    // Planned as last time: its columns are those it had.
                    let key = cache
                        .as_ref()
                        .and_then(|_| model_key(dag, i, &columns, &session_key, &compiled.sql, full_sql));
                    if let (Some(cache), Some(key)) = (&cache, &key) {
                        // Its lineage comes with it (a cache of an older etl
                        // has none: planned again).
                        let found =
                            cache
                                .get(&cache_id(node, full_sql), key)
                                .and_then(|(schema, fingerprint, lineage)| {
                                    Some((schema, fingerprint, lineage_from_json(dag, lineage?)?))
                                });
                        if let Some((schema, fingerprint, lineage)) = found {
                            to_plan.push((i, key.clone(), Planning::Cached(schema, fingerprint, lineage)));
                            continue;
                        }
                    }
                    // Planned in the session it runs in: its own when its
                    // `sql_header` sets options.
                    let state = match crate::plan::session_of_node(&registry.ctx, node).await {
                        Ok(session) => session.map_or_else(|| layer_state.clone(), |s| Arc::new(s.state())),
                        Err(diag) => {
                            failed.insert(i, format!("`{}` does not plan", node.name));
                            if selected.contains(&i) {
                                out.errors.push(diag);
                            }
                            continue;
                        }
                    };
                    let tables = tables.clone();
                    // An incremental model rendered on its table reads
                    // `{{ this }}`: the columns of its full build.
                    let this = full_sql
                        .get(&node.name)
                        .map(|sql| (sql.clone(), node.relation.clone(), registry.clone()));
                    let planning = tokio::spawn(async move {
                        if let Some((full, relation, registry)) = this {
                            if let Ok(plan) = crate::plan::plan_sql(&state, &full).await {
                                let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
                                let _ = registry.register(i, &relation, Arc::new(EmptyTable::new(schema)));
                            }
                        }
                        plan_model_in(&state, &compiled).await.map(|plan| {
                            let lineage = lineage::of_plan(&plan, &tables);
                            (plan.schema().as_arrow().clone(), lineage, plan_fingerprint(&plan))
                        })
                    });
                    to_plan.push((i, key.unwrap_or_default(), Planning::Planned(planning)));
                    continue;
                }
                _ => continue,
            };
            tracing::debug!(node = %node.unique_id, seconds = started.elapsed().as_secs_f64(), "check: input read");
            if result.is_ok() {
                if let Some(schema) = registered_columns(&registry, &node.relation).await {
                    columns.insert(i, cache::columns_key(&schema));
                }
            }
            if result.is_err() {
                // An input the check cannot read (a source's files not
                // there) is the build's to report: what reads it is not
                // checked, and says why.
                let what = match node.resource_type {
                    ResourceType::Source => format!("source `{}`", node.fqn[1..].join(".")),
                    kind => format!("{} `{}`", kind.as_str(), node.name),
                };
                failed.insert(i, format!("{what} cannot be read: `etl build` says why"));
            }
        }
        let planned_at = std::time::Instant::now();
        let planned_count = to_plan.len();
        for (i, key, planning) in to_plan {
            let node = dag.node(i);
            let (mut planned, hit) = match planning {
                Planning::Cached(schema, fingerprint, lineage) => {
                    (Ok((schema.as_ref().clone(), Some(lineage), fingerprint)), true)
                }
                Planning::Planned(task) => match task.await {
                    Ok(planned) => (
                        planned.map(|(schema, lineage, fingerprint)| (schema, Some(lineage), fingerprint)),
                        false,
                    ),
                    Err(e) => (
                        Err(Diagnostic::error(
                            Code::Internal,
                            format!("planning `{}` stopped: {e}", node.name),
                        )),
                        false,
                    ),
                },
            };
            // `{{ this }}` as its full build would write it did not do:
            // the table as the lake has it decides.
            let mut key = key;
            if planned.is_err() && full_sql.contains_key(&node.name) {
                // Planned on a table the key does not describe: not kept.
                key = String::new();
                registry.unregister(i, &node.relation);
                if registry.ensure(dag, project, i).await.is_ok() {
                    let compiled = compile(dag, i, &prepared.rendered.models);
                    let ctx = crate::plan::session_of_node(&registry.ctx, node).await;
                    planned = match ctx {
                        Ok(ctx) => plan_model(ctx.as_ref().unwrap_or(&registry.ctx), &compiled)
                            .await
                            .map(|plan| {
                                let lineage = lineage::of_plan(&plan, &tables);
                                (plan.schema().as_arrow().clone(), Some(lineage), plan_fingerprint(&plan))
                            }),
                        Err(diag) => Err(diag),
                    };
                }
            }
            // A contract is checked on the plan, as the build does.
            if let Ok((schema, _, _)) = &planned {
                if node.resource_type == ResourceType::Model && node.config.contract_enforced {
                    let columns = datafusion::common::DFSchema::try_from(schema.clone());
                    if let Ok(columns) = columns {
                        if let Err(diag) = check_contract(&registry.ctx, node.model(project), &columns).await {
                            planned = Err(diag);
                        }
                    }
                }
            }
            let registered = planned.and_then(|(schema, lineage, fingerprint)| {
                out.planned += 1;
                let typed = schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), crate::materialize::sql_type(f.data_type())))
                    .collect();
                out.plans.insert(
                    i,
                    Planned {
                        fingerprint: fingerprint.clone(),
                        columns: typed,
                    },
                );
                if hit {
                    out.cached += 1;
                }
                // A model found in the cache is there as it would be put.
                if let Some(cache) = cache.as_mut().filter(|_| !key.is_empty() && !hit) {
                    let json = lineage.as_ref().map(|l| lineage_json(dag, l));
                    cache.put(&cache_id(node, full_sql), key.clone(), &schema, &fingerprint, json);
                }
                if let Some(lineage) = lineage {
                    out.lineage.insert(i, lineage);
                }
                if node.materialized == Materialization::Ephemeral {
                    // Inlined where it is read: what reads it depends on
                    // its SQL and its inputs, which its key holds (none:
                    // what reads it is planned, not found).
                    if !key.is_empty() {
                        columns.insert(i, key.clone());
                    }
                    return Ok(());
                }
                columns.insert(i, cache::columns_key(&output_schema(node, &schema)));
                let schema = output_schema(node, &schema);
                registry
                    .register(i, &node.relation, Arc::new(EmptyTable::new(schema)))
                    .map_err(|e| Diagnostic::error(Code::Register, e))
            });
            // A selected model's SQL is the check's to report; one the
            // selection only reads leaves what reads it not checked.
            if let Err(diag) = registered {
                failed.insert(i, format!("`{}` does not plan", node.name));
                if selected.contains(&i) {
                    out.errors.push(diag);
                }
            }
        }
        tracing::debug!(
            models = planned_count,
            seconds = planned_at.elapsed().as_secs_f64(),
            "check: layer planned"
        );
    }
    if let Some(cache) = cache {
        cache.save();
    }
    out
}

/// `check` both ways for the incremental models whose table exists: as
/// a full build renders them, then as they render on their table
/// (`is_incremental()` true), each against its inputs. An error of the
/// second way says so; one found both ways is reported once. The lineage
/// is the first way's.
pub async fn check_both_ways(
    prepared: &Prepared,
    selection: &[NodeIndex],
    ctx: SessionContext,
    second: SessionContext,
) -> Checked {
    let mut out = check(prepared, selection, ctx).await;
    let on_table = crate::materialize::incremental_models(&second, prepared, false).await;
    let dag = &prepared.dag;
    let selected: Vec<NodeIndex> = selection
        .iter()
        .copied()
        .filter(|&i| on_table.contains(&dag.node(i).name))
        .collect();
    if selected.is_empty() {
        return out;
    }
    // Every model rendered on its table, selected or read by one.
    let full_sql: HashMap<String, String> = dag
        .order
        .iter()
        .filter(|&&i| on_table.contains(&dag.node(i).name))
        .map(|&i| (dag.node(i).name.clone(), compile(dag, i, &prepared.rendered.models).sql))
        .collect();
    let again = match prepared.again_with_incremental(on_table) {
        Ok(again) => again,
        Err(diags) => {
            out.errors.extend(diags);
            return out;
        }
    };
    // The same nodes, by unique id, in the project rendered again.
    let indexes: Vec<NodeIndex> = selected
        .iter()
        .filter_map(|&i| again.dag.by_id.get(&dag.node(i).unique_id).copied())
        .collect();
    let options = Options {
        full_sql,
        cached: true,
        ..Options::default()
    };
    let incremental = check_with(&again, &indexes, second, &options).await;
    // The second way's plans, by the first way's nodes: a state written
    // by a build (which renders them on their tables) compares with them.
    for (i, plan) in incremental.plans {
        if let Some(&first) = dag.by_id.get(&again.dag.node(i).unique_id) {
            out.on_table.insert(first, plan);
        }
    }
    for mut diag in incremental.errors {
        if out
            .errors
            .iter()
            .any(|d| d.message == diag.message && d.span == diag.span)
        {
            continue;
        }
        diag.message = format!("{} (with is_incremental() true: its table exists)", diag.message);
        out.errors.push(diag);
    }
    out.both_ways = indexes.len();
    out
}

/// How a model's plan changed since a state: columns gone or of another
/// type, and which columns of the models that read it (planned in the same
/// check) read those. Breaking when any does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// `(column, type then, type now)`.
    pub retyped: Vec<(String, String, String)>,
    /// The readers hit: `(model, its column)`, or `(model, "")` for one
    /// whose rows are filtered or joined on such a column.
    pub broken: Vec<(NodeIndex, String)>,
}

impl Change {
    pub fn breaking(&self) -> bool {
        !self.broken.is_empty()
    }

    /// As the manifest records it (`etl_change`).
    pub fn to_json(&self, dag: &crate::graph::Dag) -> serde_json::Value {
        serde_json::json!({
            "breaking": self.breaking(),
            "added": self.added,
            "removed": self.removed,
            "retyped": self.retyped.iter().map(|(c, was, now)| serde_json::json!({"column": c, "was": was, "now": now})).collect::<Vec<_>>(),
            "read_by": self.broken.iter().map(|(n, c)| {
                let id = &dag.node(*n).unique_id;
                if c.is_empty() { format!("{id} (its rows)") } else { format!("{id}.{c}") }
            }).collect::<Vec<_>>(),
        })
    }
}

/// The models of `checked` whose plan is not the state's, each with how
/// its columns changed for what reads it.
pub fn changes(
    dag: &crate::graph::Dag,
    state: &crate::graph::PreviousState,
    checked: &Checked,
) -> BTreeMap<NodeIndex, Change> {
    let mut out = BTreeMap::new();
    for (&i, plan) in &checked.plans {
        let id = &dag.node(i).unique_id;
        let (Some(before), Some(old_columns)) = (state.plans.get(id), state.columns.get(id)) else {
            continue;
        };
        let other = checked.on_table.get(&i);
        if *before == plan.fingerprint || other.is_some_and(|o| o.fingerprint == *before) {
            continue;
        }
        let mut change = Change::default();
        for (name, was) in old_columns {
            match plan.columns.iter().find(|(n, _)| n == name) {
                None => change.removed.push(name.clone()),
                Some((_, now)) if now != was => change.retyped.push((name.clone(), was.clone(), now.clone())),
                Some(_) => {}
            }
        }
        change.added = plan
            .columns
            .iter()
            .filter(|(n, _)| !old_columns.iter().any(|(o, _)| o == n))
            .map(|(n, _)| n.clone())
            .collect();
        let hit: Vec<&String> = change
            .removed
            .iter()
            .chain(change.retyped.iter().map(|(c, _, _)| c))
            .collect();
        for child in dag.children(i) {
            let Some(lineage) = checked.lineage.get(&child) else {
                continue;
            };
            for (column, origins) in &lineage.columns {
                if origins.iter().any(|o| o.node == i && hit.contains(&&o.column)) {
                    change.broken.push((child, column.clone()));
                }
            }
            if lineage.filtered_on.iter().any(|(n, c)| *n == i && hit.contains(&c)) {
                change.broken.push((child, String::new()));
            }
        }
        out.insert(i, change);
    }
    out
}

/// A model being planned, or found planned as last time.
enum Planning {
    Planned(tokio::task::JoinHandle<Result<(Schema, Lineage, String), Diagnostic>>),
    Cached(SchemaRef, String, Lineage),
}

/// A model's entry in the cache: one per way it renders (as a full build,
/// or on its table), so that `compile` and `build` keep both.
fn cache_id(node: &crate::graph::Node, full_sql: &HashMap<String, String>) -> String {
    if full_sql.contains_key(&node.name) {
        format!("{}#on-table", node.unique_id)
    } else {
        node.unique_id.clone()
    }
}

/// A model's lineage as the cache keeps it: nodes by unique id.
fn lineage_json(dag: &crate::graph::Dag, lineage: &Lineage) -> serde_json::Value {
    let id = |i: NodeIndex| dag.node(i).unique_id.clone();
    let columns: Vec<serde_json::Value> = lineage
        .columns
        .iter()
        .map(|(name, origins)| {
            let from: Vec<serde_json::Value> = origins
                .iter()
                .map(|o| serde_json::json!([id(o.node), o.column, o.how.as_str()]))
                .collect();
            serde_json::json!([name, from])
        })
        .collect();
    let filtered: Vec<serde_json::Value> = lineage
        .filtered_on
        .iter()
        .map(|(n, c)| serde_json::json!([id(*n), c]))
        .collect();
    serde_json::json!({"columns": columns, "filtered_on": filtered})
}

/// The lineage `lineage_json` kept; `None` when a node it names is gone.
fn lineage_from_json(dag: &crate::graph::Dag, json: &serde_json::Value) -> Option<Lineage> {
    let node = |v: &serde_json::Value| dag.by_id.get(v.as_str()?).copied();
    let mut out = Lineage::default();
    for column in json["columns"].as_array()? {
        let mut origins = Vec::new();
        for o in column[1].as_array()? {
            origins.push(crate::plan::lineage::Origin {
                node: node(&o[0])?,
                column: o[1].as_str()?.to_owned(),
                how: crate::plan::lineage::How::parse(o[2].as_str()?)?,
            });
        }
        out.columns.push((column[0].as_str()?.to_owned(), origins));
    }
    for f in json["filtered_on"].as_array()? {
        out.filtered_on.insert((node(&f[0])?, f[1].as_str()?.to_owned()));
    }
    Some(out)
}

/// The cache key of model `i`: everything its plan depends on. `None`
/// when the columns of something it reads are not known (then it is
/// planned, and not kept).
fn model_key(
    dag: &crate::graph::Dag,
    i: NodeIndex,
    columns: &HashMap<NodeIndex, String>,
    session_key: &str,
    sql: &str,
    full_sql: &HashMap<String, String>,
) -> Option<String> {
    let node = dag.node(i);
    let mut parents: Vec<(&str, &str)> = Vec::new();
    for p in dag.parents(i) {
        parents.push((dag.node(p).unique_id.as_str(), columns.get(&p)?.as_str()));
    }
    parents.sort_unstable();
    // A timestamp written into the SQL (the run's start, as a `loaded_at`)
    // changes its value, never its type nor whether the query plans: the
    // key holds its place, so such a model is found planned night after
    // night.
    static TIMESTAMP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?").expect("a valid pattern")
    });
    let sql = TIMESTAMP.replace_all(sql, "<timestamp>");
    let full = full_sql
        .get(&node.name)
        .map(|f| TIMESTAMP.replace_all(f, "<timestamp>"));
    let mut parts = vec![
        session_key,
        &sql,
        node.config.sql_header.as_deref().unwrap_or(""),
        full.as_deref().unwrap_or(""),
    ];
    for (id, columns) in &parents {
        parts.push(id);
        parts.push(columns);
    }
    Some(cache::key(parts))
}

/// The columns `relation` is registered with.
async fn registered_columns(registry: &Registry, relation: &crate::lake::Relation) -> Option<SchemaRef> {
    let reference = datafusion::common::TableReference::partial(relation.schema.as_str(), relation.identifier.as_str());
    registry.ctx.table_provider(reference).await.ok().map(|p| p.schema())
}

/// The node each table a plan scans is: the lake's tables and the
/// sources' (a source that is a node's table is that node).
fn tables(dag: &crate::graph::Dag) -> Tables {
    let mut tables = Tables::new();
    for &i in &dag.order {
        let node = dag.node(i);
        if node.materialized == Materialization::Ephemeral {
            let cte = format!("__dbt__cte__{}", node.relation.identifier).to_lowercase();
            tables.insert((String::new(), cte), i);
            continue;
        }
        let kept = match node.resource_type {
            ResourceType::Model => true,
            ResourceType::Seed | ResourceType::Snapshot => true,
            ResourceType::Source => dag.parents(i).next().is_none(),
            _ => false,
        };
        if kept {
            let key = (
                node.relation.schema.to_lowercase(),
                node.relation.identifier.to_lowercase(),
            );
            tables.entry(key).or_insert(i);
        }
    }
    tables
}

/// Registers a source with the columns its properties declare, when every
/// one has a `data_type` that names a type; `None` otherwise.
async fn declared_columns(registry: &Registry, prepared: &Prepared, index: NodeIndex) -> Option<()> {
    let node = prepared.dag.node(index);
    let source = node.source(&prepared.project);
    if source.columns.is_empty() {
        return None;
    }
    let mut fields = Vec::new();
    for column in &source.columns {
        let declared = column.data_type.as_deref()?;
        let kind = crate::plan::sql_type(&registry.ctx, declared).await.ok()?;
        fields.push(Field::new(&column.name, kind, true));
    }
    let schema = Arc::new(Schema::new(fields));
    registry
        .register(index, &node.relation, Arc::new(EmptyTable::new(schema)))
        .ok()
}

/// Registers `reader`'s relation with the columns of `writer`'s.
async fn same_columns(
    registry: &Registry,
    dag: &crate::graph::Dag,
    writer: NodeIndex,
    reader: NodeIndex,
) -> Result<(), Diagnostic> {
    let relation = &dag.node(writer).relation;
    let df = registry
        .ctx
        .table(datafusion::common::TableReference::partial(
            relation.schema.as_str(),
            relation.identifier.as_str(),
        ))
        .await
        .map_err(|e| Diagnostic::error(Code::Register, e.find_root().to_string()))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let node = dag.node(reader);
    if node.relation == *relation {
        return Ok(());
    }
    registry
        .register(reader, &node.relation, Arc::new(EmptyTable::new(schema)))
        .map_err(|e| Diagnostic::error(Code::Register, e))
}

/// What dependents read of a node: its planned columns, and a snapshot's
/// own after them.
fn output_schema(node: &crate::graph::Node, planned: &Schema) -> SchemaRef {
    let Some(settings) = node.config.snapshot.as_ref() else {
        return Arc::new(planned.clone());
    };
    let time = match &settings.strategy {
        crate::config::SnapshotStrategy::Timestamp { updated_at }
        | crate::config::SnapshotStrategy::Check {
            updated_at: Some(updated_at),
            ..
        } => planned
            .field_with_name(updated_at)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Timestamp(TimeUnit::Microsecond, None)),
        _ => DataType::Timestamp(TimeUnit::Microsecond, None),
    };
    let c = &settings.columns;
    let mut fields: Vec<Field> = planned.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(&c.scd_id, DataType::Utf8, true));
    for name in [&c.updated_at, &c.valid_from, &c.valid_to] {
        fields.push(Field::new(name, time.clone(), true));
    }
    if settings.hard_deletes == crate::config::HardDeletes::NewRecord {
        fields.push(Field::new(&c.is_deleted, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// A seed's columns: its table's in the lake, else its CSV's header with
/// its `column_types`.
async fn seed(registry: &Registry, prepared: &Prepared, index: NodeIndex) -> Result<(), Diagnostic> {
    let (dag, project) = (&prepared.dag, &prepared.project);
    if registry.ensure(dag, project, index).await.is_ok() {
        return Ok(());
    }
    let node = dag.node(index);
    let seed = node.seed(project);
    let temp = format!("__etl_check_seed_{}", node.name);
    let ctx = &registry.ctx;
    register_csv_file(ctx, &temp, &project.root.join(&seed.path), Span::file(&seed.path)).await?;
    let failed = |e: datafusion::error::DataFusionError| {
        Diagnostic::error(Code::Seed, format!("seed `{}`: {}", node.name, e.find_root()))
            .with_span(Some(Span::file(&seed.path)))
    };
    let df = ctx.table(temp.as_str()).await.map_err(failed)?;
    let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    let sql = crate::plan::seed_select(&columns, &node.config.column_types, &temp);
    let plan = ctx.sql(&sql).await.map_err(failed)?.into_unoptimized_plan();
    let _ = ctx.deregister_table(temp.as_str());
    let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    registry
        .register(index, &node.relation, Arc::new(EmptyTable::new(schema)))
        .map_err(|e| Diagnostic::error(Code::Register, e))
}
