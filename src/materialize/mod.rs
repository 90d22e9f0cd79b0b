//! Building the selected nodes in DAG order: seeds, tables, views and
//! ephemeral models, independent nodes concurrently. A node that fails marks
//! its descendants skipped while the rest of the DAG goes on.

mod audit;
mod data_tests;
mod export;
mod freshness;
pub mod hooks;
mod incremental;
mod introspect;
pub use introspect::{lake_warehouse, plan_inline, sql_type};
mod ingest;

pub use incremental::incremental_models;
mod fingerprint;
mod nodes;
mod planning;
mod probe;
mod snapshot;
mod unit_tests;
mod write;

pub use freshness::{FreshnessResult, FreshnessStatus, check_freshness, stale_diagnostic};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use petgraph::graph::NodeIndex;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::diagnostic::{Cause, Code, Diagnostic};
use crate::graph::{Dag, Materialization, Node, ResourceType};
use crate::plan::Registry;
use crate::project::Project;
use crate::render::RenderedModel;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes built at once.
    pub threads: usize,
    pub full_refresh: bool,
    pub invocation_id: String,
    /// Incremental models updated in place (the others are built in full).
    pub incremental: std::collections::BTreeSet<String>,
    /// Build nodes even when they are up to date.
    pub force: bool,
    /// The time range microbatch models process (`--event-time-start`,
    /// `--event-time-end`) instead of their own.
    pub event_time_start: Option<chrono::NaiveDateTime>,
    pub event_time_end: Option<chrono::NaiveDateTime>,
    /// `--empty`: every ref and source reads no rows (dbt's `--empty`).
    pub empty: bool,
    /// When the run started (`run_started_at`): the day of dated exports.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
    Skipped,
    /// A data test with no failures over its thresholds.
    Pass,
    /// A data test over `warn_if` (or over `error_if` at severity warn).
    Warn,
    /// A data test over `error_if` at severity error.
    Fail,
    /// Nothing to run: an exposure, whose inputs are built.
    #[serde(rename = "no-op")]
    NoOp,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::NoOp => "no-op",
        }
    }

    /// Whether the node's dependents may run.
    pub fn lets_dependents_run(self) -> bool {
        matches!(self, Status::Success | Status::Pass | Status::Warn)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub unique_id: String,
    pub name: String,
    pub resource_type: ResourceType,
    pub materialized: Materialization,
    pub status: Status,
    /// Seconds.
    pub execution_time: f64,
    pub rows_affected: Option<u64>,
    /// Failing rows, for data tests.
    pub failures: Option<u64>,
    /// The rows a test with a percent threshold counted its failures
    /// against (a reject rate's denominator).
    pub tested_rows: Option<u64>,
    /// Not run: its SQL, config and inputs are those of its last build.
    pub up_to_date: bool,
    pub message: String,
    /// The table's storage URL, for nodes written to the lake.
    pub location: Option<String>,
    pub relation: String,
    /// The Delta version written.
    pub version: Option<i64>,
    /// Where the node's time went, in seconds: the rest of
    /// `execution_time` is execution.
    pub phases: Phases,
    #[serde(skip)]
    pub diagnostic: Option<Diagnostic>,
    /// What the node did not do as asked, or did another way, without
    /// failing: an empty source file left for later, a plan run again
    /// without etl's rewrites.
    pub warnings: Vec<Diagnostic>,
}

/// Seconds a node spent planning (rendering done, SQL to a logical plan,
/// with its inputs listed) and writing its Delta commits.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Phases {
    pub plan: f64,
    pub commit: f64,
}

#[derive(Debug, Clone, Default)]
pub struct RunResults {
    pub results: Vec<NodeResult>,
    pub elapsed: f64,
    /// When each node finished and on which of the build's threads it ran
    /// (1-based), by unique_id: dbt's `timing` and `thread_id`.
    pub finished: HashMap<String, (chrono::DateTime<chrono::Utc>, usize)>,
}

impl RunResults {
    pub fn count(&self, status: Status) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }
}

/// One node's build, carried from step to step.
pub struct NodeRun {
    pub index: NodeIndex,
    /// The session it plans and writes in: its own when its `sql_header`
    /// sets options, a plain one when it runs again without etl's
    /// rewrites, otherwise the build's.
    pub session: datafusion::prelude::SessionContext,
    /// The fingerprint it is built with, written in its commit.
    pub fingerprint: Option<String>,
    /// The files it ingests, written in its commit.
    pub ingest: Option<ingest::Ingest>,
    /// Seconds spent planning, summed over its plans.
    pub plan_seconds: f64,
}

/// What a successful build produced.
pub(super) struct Outcome {
    pub(super) rows: Option<u64>,
    pub(super) version: Option<i64>,
    pub(super) message: String,
    pub(super) up_to_date: bool,
    pub(super) warnings: Vec<Diagnostic>,
}

/// Everything a node's build needs, shared between concurrent tasks.
pub struct Build {
    pub project: Arc<Project>,
    pub dag: Arc<Dag>,
    pub models: Arc<Vec<RenderedModel>>,
    /// Each seed's rendered `pre_hook` and `post_hook`, when it has any.
    pub seed_hooks: Arc<BTreeMap<String, (Vec<String>, Vec<String>)>>,
    /// Rendered data tests, indexed like `Project::data_tests`.
    pub tests: Arc<Vec<RenderedModel>>,
    pub registry: Arc<Registry>,
    pub options: RunOptions,
    /// Results of tests already run by a write-audit-publish model's audit,
    /// reported when the test's turn comes instead of running it again.
    pub audited: std::sync::Mutex<HashMap<NodeIndex, NodeResult>>,
    /// The Delta version each table built or found up to date in this run
    /// was left at.
    pub versions: std::sync::Mutex<HashMap<NodeIndex, i64>>,
    /// When each table's commit of a version was made (by location and
    /// version), read once per build: see [`fingerprint::commit_time`].
    pub commit_times: std::sync::Mutex<HashMap<(String, i64), Option<i64>>>,
    /// The version of its table each node found when it started, which
    /// its commit must still find (see `lake::Expected`).
    pub expected: std::sync::Mutex<HashMap<NodeIndex, crate::lake::Expected>>,
    /// Each node's table as it loaded it then, which its first write goes
    /// on from instead of loading the whole log again.
    pub loaded: std::sync::Mutex<HashMap<NodeIndex, deltalake::DeltaTable>>,
    /// Incremental models updated in place -> the compiled SQL they have as
    /// a full build. Their fingerprint uses it, so that the flip of
    /// `is_incremental()` after a first build does not count as a change.
    pub full_build_sql: HashMap<String, String>,
    /// The files this build ingests, by file source, listed before its first
    /// commit when a test with `source_files: new` is to run.
    pub to_ingest: std::sync::OnceLock<Result<HashMap<NodeIndex, Vec<object_store::ObjectMeta>>, Diagnostic>>,
    /// The new files of file sources, parsed once for all their readers.
    pub parsed: ingest::ParsedFiles,
    /// Held shared by every node while it runs, and alone by a node run
    /// again after running out of memory, so that it gets the whole limit.
    pub memory_gate: tokio::sync::RwLock<()>,
    /// Nodes run again without etl's rewrites of their plans (shared
    /// subplans, its optimizer rules, narrowed reads), after an error of
    /// the query engine's own.
    pub plain: std::sync::Mutex<HashSet<NodeIndex>>,
    /// Nodes run again with room to grow (see `plan::with_room_to_grow`)
    /// after running out of memory alone within the machine's default
    /// budget.
    pub roomy: std::sync::Mutex<HashSet<NodeIndex>>,
    /// Nodes that ran out of memory alone under an explicit limit, run
    /// again with one partition (see [`crate::plan::with_one_partition`]).
    pub one_partition: std::sync::Mutex<HashSet<NodeIndex>>,
    /// The build's spill files against the room on their disk.
    pub spill_room: Arc<crate::plan::SpillRoom>,
    /// Nodes run again with sort-merge joins after a hash join of theirs
    /// ran out of memory, while the rest of the build still plans hash
    /// joins (see `run_node`).
    pub sort_merge: std::sync::Mutex<HashSet<NodeIndex>>,
    /// How many nodes' hash joins ran out of memory in this build.
    pub hash_joins_out: std::sync::atomic::AtomicUsize,
    /// What the nodes whose templates ask the lake render again with.
    pub run_render: Arc<crate::render::RunRender>,
    /// Those nodes' SQL and hooks as rendered when they ran.
    pub run_rendered: std::sync::Mutex<HashMap<NodeIndex, Arc<RenderedModel>>>,
    /// dbt's `graph` for templates rendered as they run: the manifest's
    /// `nodes` and `sources` (set by the caller; empty until then).
    pub graph: Arc<serde_json::Value>,
    /// `graph` as templates read it, made on first use.
    pub graph_value: std::sync::OnceLock<minijinja::Value>,
    /// The running nodes' counters (see `plan::live`).
    pub live: Arc<crate::plan::live::Live>,
}

impl NodeResult {
    /// The result of a node that errored with `diag`.
    pub fn error(node: &Node, diag: Diagnostic, elapsed: f64) -> NodeResult {
        NodeResult {
            diagnostic: Some(diag.clone()),
            ..NodeResult::of(node, Status::Error, diag.to_string(), elapsed)
        }
    }

    /// A result of `node` that wrote nothing.
    pub fn of(node: &Node, status: Status, message: String, elapsed: f64) -> NodeResult {
        NodeResult {
            unique_id: node.unique_id.clone(),
            name: node.name.clone(),
            resource_type: node.resource_type,
            materialized: node.materialized,
            status,
            execution_time: elapsed,
            rows_affected: None,
            failures: None,
            tested_rows: None,
            up_to_date: false,
            message,
            location: None,
            relation: node.relation.sql(),
            version: None,
            phases: Phases::default(),
            diagnostic: None,
            warnings: Vec::new(),
        }
    }
}

impl Build {
    /// A build of `dag`'s nodes from `project`, with nothing run yet.
    /// `full_build_sql`: the SQL each incremental model updated in place
    /// has as a full build.
    pub fn new(
        project: Project,
        dag: Dag,
        rendered: crate::render::Rendered,
        registry: Arc<Registry>,
        options: RunOptions,
        full_build_sql: HashMap<String, String>,
    ) -> Build {
        Build {
            spill_room: crate::plan::SpillRoom::of(&registry.ctx),
            project: Arc::new(project),
            dag: Arc::new(dag),
            models: Arc::new(rendered.models),
            seed_hooks: Arc::new(rendered.seed_hooks),
            run_render: rendered.run,
            run_rendered: Default::default(),
            graph: Arc::new(serde_json::json!({})),
            graph_value: Default::default(),
            live: Default::default(),
            tests: Arc::new(rendered.tests),
            registry,
            options,
            audited: Default::default(),
            versions: Default::default(),
            commit_times: Default::default(),
            expected: Default::default(),
            loaded: Default::default(),
            full_build_sql,
            to_ingest: Default::default(),
            parsed: Default::default(),
            memory_gate: Default::default(),
            plain: Default::default(),
            roomy: Default::default(),
            one_partition: Default::default(),
            sort_merge: Default::default(),
            hash_joins_out: Default::default(),
        }
    }
}

impl Build {
    /// Whether the node at `index` runs without etl's rewrites.
    pub fn without_rewrites(&self, index: NodeIndex) -> bool {
        self.plain.lock().expect("plain nodes poisoned").contains(&index)
    }

    /// The session the node at `index` plans in when it has none of its
    /// own (see [`NodeRun::session`]): a plain one when it runs without
    /// etl's rewrites, otherwise the build's.
    pub fn base_session(&self, index: NodeIndex) -> datafusion::prelude::SessionContext {
        let ctx = if self.without_rewrites(index) {
            crate::plan::without_etl_rules(&self.registry.ctx).unwrap_or_else(|_| self.registry.ctx.clone())
        } else {
            self.registry.ctx.clone()
        };
        self.with_memory_choices(index, ctx)
    }

    /// `ctx`, or its copy with what the node at `index` was given after
    /// running out of memory: sort-merge joins (see [`Build::sort_merge`])
    /// and room to grow (see [`Build::roomy`]).
    pub fn with_memory_choices(
        &self,
        index: NodeIndex,
        ctx: datafusion::prelude::SessionContext,
    ) -> datafusion::prelude::SessionContext {
        let chosen = |nodes: &std::sync::Mutex<HashSet<NodeIndex>>| {
            nodes.lock().expect("memory choices poisoned").contains(&index)
        };
        let ctx = if chosen(&self.sort_merge) {
            crate::plan::with_sort_merge_joins(&ctx)
        } else {
            ctx
        };
        let ctx = if chosen(&self.one_partition) {
            crate::plan::with_one_partition(&ctx)
        } else {
            ctx
        };
        if !chosen(&self.roomy) {
            return ctx;
        }
        crate::plan::with_room_to_grow(&ctx).unwrap_or(ctx)
    }
}

/// Builds or tests one node (see [`run_within_memory`]); when it failed
/// for want of room to spill, the error says how much there was, where.
async fn run_node(build: &Arc<Build>, index: NodeIndex) -> NodeResult {
    let mut result = run_within_memory(build, index).await;
    // The room is shared by the nodes spilling at once: alone, it is all
    // this node's.
    if build.options.threads > 1 && spill_found_no_room(&result) {
        let node = &build.dag.node(index).name;
        tracing::warn!(node = %node, "no room for its spill files beside other nodes'; running it again alone");
        let _alone = build.memory_gate.write().await;
        let mut second = attempt(build, index).await;
        second.execution_time += result.execution_time;
        second.message = format!(
            "{} (no room for its spill files beside other nodes'; run again alone)",
            second.message
        );
        result = second;
    }
    if let Some(diag) = result.diagnostic.as_mut().filter(|_| result.status == Status::Error) {
        let text = std::iter::once(&diag.message)
            .chain(&diag.notes)
            .cloned()
            .collect::<Vec<_>>();
        if let Some((note, help)) = text.iter().find_map(|t| build.spill_room.explain(t)) {
            diag.notes.push(note);
            diag.help.push(help);
        }
    }
    result
}

/// Builds or tests one node. A node that runs out of memory runs once
/// more, alone, so that the whole budget is its own; when what ran out
/// was a hash join's build side, which cannot spill, it runs with
/// sort-merge joins, which do. The first node of a build whose hash join
/// ran out gets them alone: one large join (an order table's versions
/// beside their lines' totals) says little of the joins after it, which
/// are faster as hash joins. From the second on, every node planned after
/// gets them: the build's data is larger than its budget. Within the
/// machine's default budget, a node that runs out alone too gets room to
/// grow (see `plan::with_room_to_grow`). Its failed attempts changed no
/// table.
async fn run_within_memory(build: &Arc<Build>, index: NodeIndex) -> NodeResult {
    let ctx = &build.registry.ctx;
    let (hash_joins, first) = {
        let _shared = build.memory_gate.read().await;
        (
            crate::plan::plans_hash_joins(ctx)
                && !build
                    .sort_merge
                    .lock()
                    .expect("sort-merge nodes poisoned")
                    .contains(&index),
            attempt(build, index).await,
        )
    };
    if !out_of_memory(&first) {
        return first;
    }
    // Sort-merge joins only when a hash join ran out: they are slower, and
    // a sort or an aggregate that ran out spills anyway once alone.
    let sort_merge = hash_joins && hash_join_ran_out(&first) && !crate::plan::joins_pinned();
    let for_the_rest = sort_merge
        && build.hash_joins_out.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1
        && crate::plan::spill_joins(ctx);
    if sort_merge {
        build
            .sort_merge
            .lock()
            .expect("sort-merge nodes poisoned")
            .insert(index);
    }
    let node = &build.dag.node(index).name;
    if for_the_rest {
        tracing::warn!(
            node = %node,
            "out of memory with hash joins, the second node so; running it again alone, and the rest of the build, \
             with sort-merge joins"
        );
    } else if sort_merge {
        tracing::warn!(
            node = %node,
            "out of memory with hash joins; running it again alone with sort-merge joins"
        );
    } else {
        // The fair pool shares the budget between the operators of the
        // nodes running at once: alone, the node has all of it.
        tracing::warn!(node = %node, "out of memory beside other nodes; running it again alone");
    }
    // The memory may be held by the operators of nodes still running:
    // they finish first, and none starts until this one is done.
    let _alone = build.memory_gate.write().await;
    let mut second = attempt(build, index).await;
    second.execution_time += first.execution_time;
    let why = if sort_merge {
        "ran out of memory with hash joins; run again alone with sort-merge joins, which spill"
    } else {
        "ran out of memory beside other nodes; run again alone"
    };
    second.message = format!("{} ({why})", second.message);
    if !out_of_memory(&second) {
        return second;
    }
    // Alone, within the machine's default budget, an operator that cannot
    // spill still asked for more than it had: the machine may hold it.
    let Some((budget, room)) = crate::plan::room_to_grow(ctx) else {
        // Under the user's limit: once more in one partition, where each
        // spilling operator's fair share of the pool is larger.
        if ctx.state().config().target_partitions() > 1 {
            tracing::warn!(node = %node, "out of memory alone; running it again in one partition");
            build
                .one_partition
                .lock()
                .expect("one-partition nodes poisoned")
                .insert(index);
            let mut third = attempt(build, index).await;
            third.execution_time += second.execution_time;
            third.message = format!(
                "{} (ran out of memory alone; run again in one partition, each operator with a larger share of the \
                 memory limit)",
                third.message
            );
            second = third;
            if !out_of_memory(&second) {
                return second;
            }
        }
        if let Some(diag) = second.diagnostic.as_mut() {
            diag.notes.push(
                "it ran out of memory alone too: an operator that cannot spill needs more than the memory limit".into(),
            );
            diag.help
                .push("raise `--memory-limit` (or the target's `memory_limit:`), or build it without the limit".into());
        }
        return second;
    };
    tracing::warn!(
        node = %node,
        "out of memory alone within the default budget of {}; running it again with up to {} (half the machine's memory)",
        crate::plan::bytes_text(budget as u64),
        crate::plan::bytes_text(room as u64)
    );
    build.roomy.lock().expect("roomy nodes poisoned").insert(index);
    let mut third = attempt(build, index).await;
    third.execution_time += second.execution_time;
    third.message = format!(
        "{} (ran out of memory alone within the default budget of {}; run again with up to {})",
        third.message,
        crate::plan::bytes_text(budget as u64),
        crate::plan::bytes_text(room as u64)
    );
    if third.status != Status::Error {
        third.warnings.push(
            Diagnostic::warning(
                Code::MemoryBudget,
                format!(
                    "`{node}` needed more memory than the build's default budget of {} gives one query, and was \
                     built with up to {}",
                    crate::plan::bytes_text(budget as u64),
                    crate::plan::bytes_text(room as u64)
                ),
            )
            .with_note(
                "an operator that cannot spill to disk (a distinct count's set, a large aggregate state) held it",
            )
            .with_help("`--memory-limit` sets the budget; with it set, etl keeps to it and the node fails instead"),
        );
    }
    third
}

async fn attempt(build: &Arc<Build>, index: NodeIndex) -> NodeResult {
    let first = attempt_once(build, index).await;
    let engine_bug = first.status == Status::Error && first.diagnostic.as_ref().is_some_and(|d| d.is(Cause::EngineBug));
    if !engine_bug || build.without_rewrites(index) {
        return first;
    }
    // A bug of the engine's, on a plan etl may have rewritten: run it again
    // as DataFusion alone would plan it. Nothing was committed: the failed
    // attempt's files are left unreferenced, as a killed build's are.
    let node = build.dag.node(index);
    let rules = crate::plan::etl_rules(&build.registry.ctx);
    let why = first.diagnostic.as_ref().map(|d| d.message.clone()).unwrap_or_default();
    tracing::warn!(node = %node.name, "an error of DataFusion's own; running it again without etl's rewrites: {why}");
    build.plain.lock().expect("plain nodes poisoned").insert(index);
    let mut second = attempt_once(build, index).await;
    second.execution_time += first.execution_time;
    let mut rewrites = rules.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>();
    if node.resource_type == ResourceType::Test {
        rewrites.push("narrowed reads".into());
    }
    if second.status == Status::Error {
        if let Some(diag) = second.diagnostic.as_mut() {
            diag.notes.push(format!(
                "it failed again without etl's rewrites ({}): the error is DataFusion's",
                rewrites.join(", ")
            ));
        }
        return second;
    }
    second.warnings.push(
        Diagnostic::warning(
            Code::RewriteFailed,
            format!(
                "`{}` failed with an error of DataFusion's own on the plan etl rewrote, and passed without \
                 etl's rewrites ({}): {why}",
                node.name,
                rewrites.join(", ")
            ),
        )
        .with_note("its result is the run without them; the rewrites only ever save time")
        .with_help(
            "please report it to etl with the model's SQL; `ETL_SHARE_REPEATED_SUBPLANS=false` turns shared \
             subplans off, `ETL_WHOLE_PARTITION_WINDOWS=false` etl's window operator",
        ),
    );
    second
}

async fn attempt_once(build: &Arc<Build>, index: NodeIndex) -> NodeResult {
    let node = build.dag.node(index);
    if node.resource_type == ResourceType::Test {
        if let Err(diag) = introspect::render_if_asking(build, index, &build.registry.ctx).await {
            return NodeResult::error(node, diag, 0.0);
        }
        data_tests::run_test_unless_up_to_date(build, index).await
    } else {
        nodes::build_node(build, index).await
    }
}

/// Whether the memory a query was refused was for a hash join's build
/// side (DataFusion names the consumer: `HashJoinInput[1]`).
fn hash_join_ran_out(result: &NodeResult) -> bool {
    result.diagnostic.as_ref().is_some_and(|d| {
        d.message.contains(" for HashJoinInput") || d.notes.iter().any(|n| n.contains(" for HashJoinInput"))
    })
}

/// Whether `result` is a query whose spill files outgrew the room the
/// build gives them (see `plan::SpillRoom`).
fn spill_found_no_room(result: &NodeResult) -> bool {
    result.status == Status::Error
        && result.diagnostic.as_ref().is_some_and(|d| {
            std::iter::once(&d.message)
                .chain(&d.notes)
                .any(|t| t.contains(crate::plan::SPILL_LIMIT_ERROR))
        })
}

/// Whether `result` is a query that DataFusion's memory pool refused.
fn out_of_memory(result: &NodeResult) -> bool {
    result.status == Status::Error && result.diagnostic.as_ref().is_some_and(|d| d.is(Cause::OutOfMemory))
}

/// Builds `nodes` (sources among them are skipped: they are only read).
/// `on_result` sees each result as its node finishes.
pub async fn run(
    build: Arc<Build>,
    nodes: &[NodeIndex],
    mut on_result: impl FnMut(&NodeResult, usize, usize),
) -> RunResults {
    let started = Instant::now();
    let runnable: Vec<NodeIndex> = nodes
        .iter()
        .copied()
        .filter(|&i| build.dag.node(i).resource_type != ResourceType::Source)
        .collect();
    let selected: HashSet<NodeIndex> = runnable.iter().copied().collect();
    let total = runnable.len();
    build.parsed.expect(&build, &runnable);
    let new_file_sources = ingest::sources_of_new_file_tests(&build);
    if !new_file_sources.is_empty() {
        let _ = build
            .to_ingest
            .set(ingest::files_to_ingest(&build, &new_file_sources).await);
    }
    let children = run_edges(&build.dag, &runnable, &selected);
    let mut waiting: HashMap<NodeIndex, usize> = runnable.iter().map(|&i| (i, 0)).collect();
    for targets in children.values() {
        for t in targets {
            *waiting.get_mut(t).expect("edges join selected nodes") += 1;
        }
    }
    let mut ready: Vec<NodeIndex> = runnable.iter().copied().filter(|i| waiting[i] == 0).collect();
    ready.reverse();
    let mut finished: HashMap<NodeIndex, Status> = HashMap::new();
    let mut results = Vec::with_capacity(total);
    let mut tasks: JoinSet<(NodeIndex, NodeResult)> = JoinSet::new();
    let mut task_nodes = HashMap::new();
    let threads = build.options.threads.max(1);
    // The thread slot each running task holds, the lowest free one first.
    let mut free_slots: Vec<usize> = (1..=threads).rev().collect();
    let mut task_slots: HashMap<NodeIndex, usize> = HashMap::new();
    let mut finished_at: HashMap<String, (chrono::DateTime<chrono::Utc>, usize)> = HashMap::new();

    loop {
        while tasks.len() < threads {
            let Some(index) = ready.pop() else { break };
            let b = build.clone();
            let handle = tasks.spawn(async move {
                let audited = b.audited.lock().expect("audit results poisoned").remove(&index);
                let result = if let Some(result) = audited {
                    // Run on the staged data, now published.
                    data_tests::remember(&b, index, &result).await;
                    result
                } else {
                    let node = b.dag.node(index);
                    let live = b.live.start(format!("{} {}", node.materialized.as_str(), node.name));
                    let result = crate::plan::live::in_node(Arc::clone(&live), run_node(&b, index)).await;
                    b.live.finish(&live);
                    result
                };
                if let (Status::Success, Some(version)) = (result.status, result.version) {
                    b.versions.lock().expect("versions poisoned").insert(index, version);
                }
                (index, result)
            });
            task_nodes.insert(handle.id(), index);
            task_slots.insert(index, free_slots.pop().unwrap_or(threads));
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            // Nothing running and nothing ready: every node must be done.
            // If not, report them rather than end as if they had passed.
            for &i in &runnable {
                if !finished.contains_key(&i) {
                    let node = build.dag.node(i);
                    let diag = Diagnostic::error(
                        Code::Internal,
                        format!(
                            "`{}` never became ready to run: its dependencies form a cycle",
                            node.name
                        ),
                    )
                    .with_help("this is a bug in etl: please report it with the project's DAG");
                    finished.insert(i, Status::Error);
                    results.push(NodeResult::error(node, diag, 0.0));
                    on_result(results.last().expect("just pushed"), results.len(), total);
                }
            }
            break;
        };
        let (index, result) = match joined {
            Ok((_, (index, result))) => (index, result),
            Err(err) => {
                // A panic in a task is a bug in etl; report it on the node
                // instead of taking the whole build down.
                let index = task_nodes[&err.id()];
                let node = build.dag.node(index);
                let diag = Diagnostic::error(Code::Internal, format!("building `{}` crashed: {err}", node.name))
                    .with_help("this is a bug in etl: please report it with the model's SQL");
                (index, NodeResult::error(node, diag, 0.0))
            }
        };
        finished.insert(index, result.status);
        let slot = task_slots.remove(&index).unwrap_or(1);
        free_slots.push(slot);
        free_slots.sort_unstable_by(|a, b| b.cmp(a));
        finished_at.insert(result.unique_id.clone(), (chrono::Utc::now(), slot));
        build.parsed.finished(&build, index);
        let ok = result.status.lets_dependents_run();
        results.push(result);
        on_result(results.last().expect("just pushed"), results.len(), total);
        if ok {
            for &child in children.get(&index).into_iter().flatten() {
                if let Some(count) = waiting.get_mut(&child) {
                    *count -= 1;
                    if *count == 0 && !finished.contains_key(&child) {
                        ready.insert(0, child);
                    }
                }
            }
        } else {
            for skipped in skip_descendants(&build, index, &children, &mut finished) {
                results.push(skipped);
                on_result(results.last().expect("just pushed"), results.len(), total);
            }
        }
    }
    if let Err(e) = build.registry.row_counts.save(&build.registry.ctx).await {
        tracing::warn!("could not keep the row counts of source files in the lake: {e}");
    }
    RunResults {
        results,
        elapsed: started.elapsed().as_secs_f64(),
        finished: finished_at,
    }
}

/// Which selected nodes wait for which: the DAG's paths between selected
/// nodes (through nodes not selected, and sources), plus, as `dbt build` does, an edge from a data test to each child
/// of the nodes it tests that is built on everything the test reads, so
/// that a failing test stops what would be built on bad data.
///
/// Requiring every node the test reads to be an ancestor of the child is
/// what keeps these edges from closing a cycle: each one goes from a test
/// to a node that comes after all of the test's parents.
fn run_edges(dag: &Dag, runnable: &[NodeIndex], selected: &HashSet<NodeIndex>) -> HashMap<NodeIndex, Vec<NodeIndex>> {
    let mut edges: HashMap<NodeIndex, Vec<NodeIndex>> = HashMap::new();
    for &i in runnable {
        // A source is not run, but what reads it waits for what loads it:
        // a seed or model writing the lake table a source names.
        let mut kids: Vec<NodeIndex> = Vec::new();
        // In the DAG's order of children (a stack of them reversed), so
        // that ready nodes start in the same order as before.
        let mut stack: Vec<NodeIndex> = dag.children(i).collect();
        stack.reverse();
        let mut seen = HashSet::new();
        // Through a node not run (not selected), too, as dbt orders a
        // selection: with `--select p c` and `p -> v -> c`, c waits for p
        // even when v is not built.
        while let Some(child) = stack.pop() {
            if !seen.insert(child) {
                continue;
            }
            if dag.node(child).resource_type == ResourceType::Source || !selected.contains(&child) {
                let mut below: Vec<NodeIndex> = dag.children(child).collect();
                below.reverse();
                stack.extend(below);
            } else if !kids.contains(&child) {
                kids.push(child);
            }
        }
        if !kids.is_empty() {
            edges.insert(i, kids);
        }
    }
    // A unit test runs before its model, which it skips when it fails.
    for &test in runnable
        .iter()
        .filter(|&&i| dag.node(i).resource_type == ResourceType::UnitTest)
    {
        let node = dag.node(test);
        let model = runnable.iter().copied().find(|&m| {
            let n = dag.node(m);
            n.resource_type == ResourceType::Model && node.fqn.iter().rev().nth(1) == Some(&n.name)
        });
        if let Some(model) = model.filter(|m| selected.contains(m)) {
            edges.entry(test).or_default().push(model);
        }
    }
    let mut ancestors: HashMap<NodeIndex, HashSet<NodeIndex>> = HashMap::new();
    for &test in runnable
        .iter()
        .filter(|&&i| dag.node(i).resource_type == ResourceType::Test)
    {
        let parents: Vec<NodeIndex> = dag.parents(test).collect();
        for &parent in &parents {
            for child in dag.children(parent) {
                if child == test || !selected.contains(&child) || dag.node(child).resource_type == ResourceType::Test {
                    continue;
                }
                let upstream = ancestors.entry(child).or_insert_with(|| dag.ancestors(child));
                if parents.iter().all(|p| upstream.contains(p)) {
                    let list = edges.entry(test).or_default();
                    if !list.contains(&child) {
                        list.push(child);
                    }
                }
            }
        }
    }
    edges
}

fn skip_descendants(
    build: &Build,
    failed: NodeIndex,
    children: &HashMap<NodeIndex, Vec<NodeIndex>>,
    finished: &mut HashMap<NodeIndex, Status>,
) -> Vec<NodeResult> {
    let dag = &build.dag;
    let cause = dag.node(failed).name.clone();
    let mut out = Vec::new();
    let mut stack: Vec<NodeIndex> = children.get(&failed).cloned().unwrap_or_default();
    let mut descendants = Vec::new();
    while let Some(i) = stack.pop() {
        if !finished.contains_key(&i) && !descendants.contains(&i) {
            descendants.push(i);
            stack.extend(children.get(&i).into_iter().flatten());
        }
    }
    // Report in DAG order.
    for &i in dag.order.iter().filter(|i| descendants.contains(i)) {
        build.parsed.finished(build, i);
        // A test that a failed audit ran has a real result to report.
        if let Some(result) = build.audited.lock().expect("audit results poisoned").remove(&i) {
            finished.insert(i, result.status);
            out.push(result);
            continue;
        }
        finished.insert(i, Status::Skipped);
        let node = dag.node(i);
        out.push(NodeResult {
            unique_id: node.unique_id.clone(),
            name: node.name.clone(),
            resource_type: node.resource_type,
            materialized: node.materialized,
            status: Status::Skipped,
            execution_time: 0.0,
            rows_affected: None,
            failures: None,
            tested_rows: None,
            up_to_date: false,
            message: format!("skipped: upstream `{cause}` failed"),
            location: None,
            relation: node.relation.sql(),
            version: None,
            phases: Phases::default(),
            diagnostic: None,
            warnings: Vec::new(),
        });
    }
    out
}

/// Rows a reject table holds, by reason.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub unique_id: String,
    pub name: String,
    pub rows: u64,
    /// `(reason, rows)`, most frequent first.
    pub reasons: Vec<(String, u64)>,
}

/// The rejected rows of each model built in this run whose config names a
/// `reject_reason_column`: the tables that keep what cleaning left out.
pub async fn rejected_rows(build: &Build, results: &RunResults) -> Result<Vec<Rejected>, Diagnostic> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, UInt64Type};

    let mut out = Vec::new();
    for result in results.results.iter().filter(|r| r.status == Status::Success) {
        let Some(&index) = build.dag.by_id.get(&result.unique_id) else {
            continue;
        };
        let node = build.dag.node(index);
        let Some(column) = node.config.reject_reason_column.as_deref() else {
            continue;
        };
        // An up-to-date table was not read in this run: load it.
        build.registry.ensure(&build.dag, &build.project, index).await?;
        let column = format!("\"{}\"", column.replace('"', "\"\""));
        let sql = format!(
            "select cast({column} as varchar) as reason, count(*) as n from {} group by 1 order by 2 desc, 1",
            node.relation.sql()
        );
        let failed = |e: datafusion::error::DataFusionError| {
            Diagnostic::error(
                Code::RejectSummary,
                format!("cannot count the rejected rows of `{}`: {}", node.name, e.find_root()),
            )
            .with_span(Some(crate::diagnostic::Span::file(&node.path)))
        };
        let batches = build
            .registry
            .ctx
            .sql(&sql)
            .await
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let mut reasons = Vec::new();
        for batch in batches {
            let reason =
                datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8).map_err(|e| failed(e.into()))?;
            let count =
                datafusion::arrow::compute::cast(batch.column(1), &DataType::UInt64).map_err(|e| failed(e.into()))?;
            let (reason, count) = (reason.as_string::<i32>(), count.as_primitive::<UInt64Type>());
            for i in 0..batch.num_rows() {
                let r = if reason.is_null(i) { "(none)" } else { reason.value(i) };
                reasons.push((r.to_owned(), count.value(i)));
            }
        }
        out.push(Rejected {
            unique_id: node.unique_id.clone(),
            name: node.name.clone(),
            rows: reasons.iter().map(|(_, n)| n).sum(),
            reasons,
        });
    }
    Ok(out)
}

/// 1234567 -> "1,234,567": counts as people read them.
/// `1 row`, `2 rows`.
pub fn rows_text(n: u64) -> String {
    format!("{n} row{}", if n == 1 { "" } else { "s" })
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
