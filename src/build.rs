//! The commands that build (`build`, `run`, `seed`, `test`, `retry`), as
//! the library runs them: a DataFusion session on the target's stores, the
//! lake's lock, the project prepared again for the incremental models whose
//! tables exist, the selection, `manifest.json`, every node in DAG order,
//! and `run_results.json`. The CLI parses arguments, prints what
//! [`Progress`] reports and the [`Outcome`], and picks the exit code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDateTime;
use datafusion::prelude::SessionContext;
use petgraph::graph::NodeIndex;

use crate::config::{ResourceType, parse_size};
use crate::diagnostic::{Code, Diagnostic};
use crate::lake::lock::{Holder, LakeLock, LockError, acquire, describe};
use crate::materialize::{self, Build, NodeResult, Rejected, RunOptions, RunResults};
use crate::plan::{Registry, SessionOptions, new_session};
use crate::project::Project;
use crate::{Prepared, artifacts, graph};

/// Which nodes a command builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Build,
    Run,
    Seed,
    Test,
    Snapshot,
}

impl Mode {
    /// The mode a run_results.json's `args.which` names.
    pub fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "build" => Mode::Build,
            "run" => Mode::Run,
            "seed" => Mode::Seed,
            "test" => Mode::Test,
            "snapshot" => Mode::Snapshot,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Build => "build",
            Mode::Run => "run",
            Mode::Seed => "seed",
            Mode::Test => "test",
            Mode::Snapshot => "snapshot",
        }
    }

    fn includes(self, resource_type: ResourceType) -> bool {
        match self {
            Mode::Build => resource_type != ResourceType::Source,
            Mode::Run => resource_type == ResourceType::Model,
            Mode::Seed => resource_type == ResourceType::Seed,
            Mode::Test => matches!(resource_type, ResourceType::Test | ResourceType::UnitTest),
            Mode::Snapshot => resource_type == ResourceType::Snapshot,
        }
    }
}

/// `--select`, `--exclude`, `--selector`, `--indirect-selection` and
/// `--state`, or the unique_ids `etl retry` runs again.
#[derive(Debug, Clone, Default)]
pub struct Selecting {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub selector: Option<String>,
    pub indirect_selection: String,
    /// The folder of the artifacts `state:` compares with.
    pub state: Option<PathBuf>,
    /// Exactly these nodes, instead of a selection.
    pub only: Option<BTreeSet<String>>,
}

/// What the command line sets for a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub mode: Mode,
    pub selecting: Selecting,
    pub threads: Option<usize>,
    /// A size such as `4GiB`; the target's when not given.
    pub memory_limit: Option<String>,
    pub full_refresh: bool,
    pub force: bool,
    pub event_time_start: Option<NaiveDateTime>,
    pub event_time_end: Option<NaiveDateTime>,
    /// `--empty`: models are built from refs and sources that read no
    /// rows, to check a change's SQL and schemas without the data.
    pub empty: bool,
    /// `--defer`: nodes this run does not build are read where the run of
    /// `--state` wrote them.
    pub defer: Option<Defer>,
    /// Queries run against the lake once the nodes ran: the figures of a
    /// notification's summary (see [`crate::notify`]).
    pub figures: Vec<crate::config::Figure>,
    /// The running nodes' counters, read while the build runs (a live
    /// display, progress events).
    pub live: Arc<crate::plan::live::Live>,
}

/// `--defer --state DIR [--favor-state]`.
#[derive(Debug, Clone)]
pub struct Defer {
    /// The state's target/ folder, with its manifest.json.
    pub state: PathBuf,
    /// Read the state's relation even when this lake has one.
    pub favor_state: bool,
}

/// What a build reports while it runs.
pub enum Progress<'a> {
    /// The nodes are chosen and about to run.
    Started {
        project: &'a Project,
        nodes: usize,
        threads: usize,
    },
    /// Selection warnings (a selector that matched nothing, ...).
    Warnings(&'a [Diagnostic]),
    /// A node finished: the `done`-th of `total`.
    Node {
        result: &'a NodeResult,
        done: usize,
        total: usize,
    },
}

/// A build that ran: every node's result, the rows models rejected, and
/// what else went wrong without stopping it.
pub struct Outcome {
    pub results: RunResults,
    pub rejected: Vec<Rejected>,
    /// Problems that did not stop the build (counting rejected rows).
    pub problems: Vec<Diagnostic>,
    /// Seconds each stage before the nodes took.
    pub timings: Vec<(&'static str, f64)>,
    pub threads: usize,
    pub root: PathBuf,
    /// The freshness of the sources the selection reads that declare one.
    pub freshness: Vec<materialize::FreshnessResult>,
    /// Tests with thresholds in percent (reject rates), as measured.
    pub rates: Vec<crate::notify::Rate>,
    /// The figures asked for in the options.
    pub figures: Vec<crate::notify::FigureResult>,
}

impl Outcome {
    /// Whether any node errored, any test failed, or a source is older
    /// than its `error_after`.
    pub fn failed(&self) -> bool {
        self.results.count(materialize::Status::Error) + self.results.count(materialize::Status::Fail) > 0
            || self.problems.iter().any(|d| {
                d.code == Code::Hook || (d.code == Code::Freshness && d.severity == crate::diagnostic::Severity::Error)
            })
    }
}

/// Builds the nodes `options` selects from `prepared`, one build per lake
/// at a time. `Err` when the build could not run at all (a bad argument,
/// the lake held by another build, an artifact that cannot be written):
/// nothing in the lake has changed then.
pub async fn build(
    prepared: Prepared,
    options: &BuildOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Outcome, Vec<Diagnostic>> {
    if let (Some(start), Some(end)) = (options.event_time_start, options.event_time_end) {
        if start >= end {
            return Err(vec![Diagnostic::error(
                Code::InvalidArgument,
                format!("--event-time-start ({start}) must come before --event-time-end ({end})"),
            )]);
        }
    }
    let mut prepared = prepared;
    let mut timings = std::mem::take(&mut prepared.timings);
    let session_started = std::time::Instant::now();
    let ctx = session(&prepared.project, options.memory_limit.as_deref()).map_err(|d| vec![d])?;
    // Held from before anything reads the lake until the results are
    // written: one build at a time per lake.
    let lock = lock_lake(&ctx, &prepared.project, options.mode.name(), &prepared.invocation_id()).await?;
    let outcome = build_locked(prepared, options, &mut timings, session_started, ctx, &mut progress).await;
    lock.release().await;
    let mut outcome = outcome?;
    let mut stages = timings;
    for (stage, seconds) in std::mem::take(&mut outcome.timings) {
        match stages.iter_mut().find(|(s, _)| *s == stage) {
            Some(entry) => entry.1 += seconds,
            None => stages.push((stage, seconds)),
        }
    }
    outcome.timings = stages;
    Ok(outcome)
}

/// Where the state's run wrote each node this run does not build: the
/// `relation.location` of its manifest (etl's; a node it does not list, or
/// lists without a location, is read from this lake only).
fn deferred_locations(
    dag: &graph::Dag,
    built: &std::collections::HashSet<NodeIndex>,
    defer: &Defer,
) -> Result<HashMap<NodeIndex, url::Url>, Vec<Diagnostic>> {
    let path = defer.state.join("manifest.json");
    let unreadable = |why: String| {
        vec![
            Diagnostic::error(
                Code::InvalidState,
                format!("`--defer`: cannot read `{}`: {why}", path.display()),
            )
            .with_help("`--state` names the target/ folder of the run to defer to, with its manifest.json"),
        ]
    };
    let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    let nodes = manifest["nodes"]
        .as_object()
        .ok_or_else(|| unreadable("it has no `nodes`".into()))?;
    let mut out = HashMap::new();
    for &index in &dag.order {
        let node = dag.node(index);
        let readable = matches!(
            node.resource_type,
            ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
        ) && node.materialized != crate::graph::Materialization::Ephemeral;
        if built.contains(&index) || !readable {
            continue;
        }
        let location = nodes
            .get(&node.unique_id)
            .and_then(|n| n["relation"]["location"].as_str())
            .and_then(|l| url::Url::parse(l).ok());
        if let Some(location) = location {
            out.insert(index, location);
        }
    }
    Ok(out)
}

async fn build_locked(
    prepared: Prepared,
    options: &BuildOptions,
    timings: &mut Vec<(&'static str, f64)>,
    session_started: std::time::Instant,
    ctx: SessionContext,
    progress: &mut impl FnMut(Progress<'_>),
) -> Result<Outcome, Vec<Diagnostic>> {
    // Incremental models whose table exists render with is_incremental()
    // true, which can change their SQL and refs: prepare again for them.
    let incremental = materialize::incremental_models(&ctx, &prepared, options.full_refresh).await;
    timings.push(("session", session_started.elapsed().as_secs_f64()));
    let full_build_sql: HashMap<String, String> = prepared
        .dag
        .order
        .iter()
        .filter(|&&i| {
            let node = prepared.dag.node(i);
            node.resource_type == ResourceType::Model && incremental.contains(&node.name)
        })
        .map(|&i| {
            let sql = crate::plan::compile(&prepared.dag, i, &prepared.rendered.models).sql;
            (prepared.dag.node(i).name.clone(), sql)
        })
        .collect();
    let prepared = if incremental.is_empty() {
        prepared
    } else {
        prepared.again_with_incremental(incremental.clone())?
    };
    let selected = match &options.selecting.only {
        Some(ids) => prepared
            .dag
            .order
            .iter()
            .copied()
            .filter(|&i| ids.contains(&prepared.dag.node(i).unique_id))
            .collect(),
        None => {
            let selection = select(&prepared, &options.selecting).map_err(|d| vec![d])?;
            progress(Progress::Warnings(&selection.warnings));
            selection.nodes
        }
    };
    // Every model this run builds, planned against its inputs' schemas
    // before anything is written: a misspelt column fails the run here,
    // with every other, not when the build reaches it.
    let check_started = std::time::Instant::now();
    let checked: Vec<NodeIndex> = selected
        .iter()
        .copied()
        .filter(|&i| {
            let kind = prepared.dag.node(i).resource_type;
            options.mode.includes(kind) && matches!(kind, ResourceType::Model | ResourceType::Snapshot)
        })
        .collect();
    let mut found = crate::check::Checked::default();
    if !checked.is_empty() {
        let check_ctx = session(&prepared.project, options.memory_limit.as_deref()).map_err(|d| vec![d])?;
        let options = crate::check::Options {
            full_sql: full_build_sql.clone(),
            cached: true,
            unselected_from_lake: true,
        };
        found = crate::check::check_with(&prepared, &checked, check_ctx, &options).await;
        if !found.errors.is_empty() {
            let n = found.errors.len();
            let mut errors = std::mem::take(&mut found.errors);
            if let Some(last) = errors.pop() {
                errors.push(last.with_note(format!(
                    "found by the check before the build ({n} model{} of the selection do{} not plan): nothing was run",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "es" } else { "" }
                )));
            }
            return Err(errors);
        }
    }
    timings.push(("check", check_started.elapsed().as_secs_f64()));
    let invocation = prepared.invocation_id();
    let render_options = prepared.render_options().clone();
    let Prepared {
        project,
        rendered,
        dag,
        timings: prepare_timings,
        ..
    } = prepared;
    let mut manifest = artifacts::manifest(&project, &dag, &rendered, &invocation);
    artifacts::add_plans(&mut manifest, &dag, &found.plans, &found.lineage);
    artifacts::write_json(&project, "manifest.json", &manifest).map_err(|e| {
        vec![Diagnostic::error(
            Code::Io,
            format!("cannot write target/manifest.json: {e}"),
        )]
    })?;
    let nodes: Vec<NodeIndex> = selected
        .into_iter()
        .filter(|&i| options.mode.includes(dag.node(i).resource_type))
        .collect();
    let threads = options
        .threads
        .or(project.target.threads)
        .unwrap_or_else(num_cpus::get)
        .max(1);
    progress(Progress::Started {
        project: &project,
        nodes: nodes.len(),
        threads,
    });
    let root = project.root.clone();
    let registry = Arc::new(Registry::new(ctx, project.target.lake.clone()));
    let mut problems = Vec::new();
    let freshness = source_freshness(&registry, &project, &dag, &nodes, &mut problems).await;
    if let Some(defer) = &options.defer {
        let built: std::collections::HashSet<NodeIndex> = nodes.iter().copied().collect();
        let locations = deferred_locations(&dag, &built, defer)?;
        let views = locations
            .keys()
            .filter(|&&i| dag.node(i).materialized == crate::graph::Materialization::View)
            .map(|&i| (i, crate::plan::compile(&dag, i, &rendered.models).sql))
            .collect();
        registry.defer_to(locations, views, defer.favor_state);
    }
    let run_options = RunOptions {
        threads,
        full_refresh: options.full_refresh,
        invocation_id: invocation.clone(),
        incremental,
        force: options.force,
        event_time_start: options.event_time_start,
        event_time_end: options.event_time_end,
        empty: options.empty,
        started_at: render_options.run_started_at,
    };
    let mut build = Build::new(project, dag, rendered, registry, run_options, full_build_sql);
    options.live.watch_spills(&build.registry.ctx);
    build.live = Arc::clone(&options.live);
    build.graph = Arc::new(serde_json::json!({
        "nodes": manifest["nodes"],
        "sources": manifest["sources"],
    }));
    let build = Arc::new(build);
    // Hooks and the rejected rows' counts spill too: watched to the end.
    let _spill_watch = build.spill_room.watching();
    run_hooks(&build, "on-run-start", &render_options, BTreeMap::new())
        .await
        .map_err(|d| vec![d])?;
    let results = materialize::run(build.clone(), &nodes, |result, done, total| {
        progress(Progress::Node { result, done, total })
    })
    .await;
    if !build.project.run_hooks.end.0.is_empty() {
        let (results_value, schemas) = hook_results(&build, &results);
        let extra = BTreeMap::from([("results", results_value), ("schemas", schemas)]);
        if let Err(diag) = run_hooks(&build, "on-run-end", &render_options, extra).await {
            problems.push(diag);
        }
    }
    let rejected = match materialize::rejected_rows(&build, &results).await {
        Ok(r) => r,
        Err(diag) => {
            problems.push(diag);
            Vec::new()
        }
    };
    let compiled_code = |id: &str| {
        let &index = build.dag.by_id.get(id)?;
        build.dag.node(index).sql.as_ref()?;
        Some(crate::plan::compile_with(&build.dag, index, &build.models, &build.rendered_now(index)).sql)
    };
    let run_results = artifacts::run_results(&results, &rejected, &invocation, options.mode.name(), &compiled_code);
    artifacts::write_json(&build.project, "run_results.json", &run_results).map_err(|e| {
        vec![Diagnostic::error(
            Code::Io,
            format!("cannot write target/run_results.json: {e}"),
        )]
    })?;
    // The lake's own history of runs, which the docs site's quality
    // report reads: one document per run, none for `--empty`.
    if !options.empty {
        let mut record = artifacts::run_results(&results, &rejected, &invocation, options.mode.name(), &|_| None);
        record["metadata"]["target"] = serde_json::Value::from(build.project.target.name.clone());
        let name = format!("{}_{invocation}", chrono::Utc::now().format("%Y-%m-%dT%H-%M-%S%.3fZ"));
        let lake = &build.project.target.lake;
        if let Err(e) = crate::lake::write_document(&build.registry.ctx, lake, "runs", &name, &record).await {
            problems.push(Diagnostic::warning(
                Code::Io,
                format!("the run's record was not kept in the lake (the docs' quality report leaves it out): {e}"),
            ));
        }
        // The last RUNS_KEPT records are kept; the site shows the last 30.
        let _ = crate::lake::prune_documents(&build.registry.ctx, lake, "runs", RUNS_KEPT).await;
    }
    let rates = crate::notify::rates(&build.dag, &results);
    let figures = crate::notify::figures(&build, &options.figures).await;
    problems.extend(build.spill_room.warning());
    Ok(Outcome {
        results,
        rejected,
        problems,
        timings: prepare_timings,
        threads,
        root,
        freshness,
        rates,
        figures,
    })
}

/// The freshness of the sources `nodes` read (those that declare one),
/// checked before they run: a stale source is a warning past
/// `warn_after`, and past `error_after` an error that fails the build
/// once it has run. A source that cannot be checked is a warning.
async fn source_freshness(
    registry: &Registry,
    project: &Project,
    dag: &graph::Dag,
    nodes: &[NodeIndex],
    problems: &mut Vec<Diagnostic>,
) -> Vec<materialize::FreshnessResult> {
    let declares = |i: NodeIndex| {
        let node = dag.node(i);
        node.resource_type == ResourceType::Source && node.config.freshness.is_some()
    };
    if !dag.order.iter().any(|&i| declares(i)) {
        return Vec::new();
    }
    // Everything upstream of the nodes, each node visited once.
    let mut upstream = std::collections::HashSet::new();
    let mut stack = nodes.to_vec();
    while let Some(index) = stack.pop() {
        if upstream.insert(index) {
            stack.extend(dag.parents(index));
        }
    }
    let read: Vec<NodeIndex> = dag
        .order
        .iter()
        .copied()
        .filter(|i| upstream.contains(i) && declares(*i))
        .collect();
    let results = materialize::check_freshness(registry, project, dag, &read).await;
    for result in &results {
        let Some(&index) = dag.by_id.get(&result.unique_id) else {
            continue;
        };
        let node = dag.node(index);
        let Some(freshness) = &node.config.freshness else {
            continue;
        };
        let span = node.source(project).span.clone();
        if let Some(diag) = materialize::stale_diagnostic(result, freshness, span) {
            problems.push(diag);
        }
    }
    results
}

/// Renders and runs `on-run-start` or `on-run-end`.
async fn run_hooks(
    build: &Arc<Build>,
    which: &str,
    render_options: &crate::render::RenderOptions,
    extra: BTreeMap<&'static str, serde_json::Value>,
) -> Result<(), Diagnostic> {
    let hooks = &build.project.run_hooks;
    let (templates, span) = if which == "on-run-start" {
        &hooks.start
    } else {
        &hooks.end
    };
    if templates.is_empty() {
        return Ok(());
    }
    // `run_query` and the adapter answer from the lake, as in a model.
    let render = |lake| {
        crate::render::render_run_hooks(
            &build.project,
            which,
            templates,
            span.clone(),
            render_options,
            extra,
            lake,
        )
    };
    let sql = if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        let lake = materialize::lake_warehouse(build, &build.registry.ctx);
        tokio::task::block_in_place(|| render(Some(lake)))?
    } else {
        render(None)?
    };
    let site = materialize::hooks::HookSite {
        what: which.to_owned(),
        span: span.clone(),
        default_schema: &build.project.target.schema,
    };
    materialize::hooks::run_hooks(build, &build.registry.ctx, &sql, &site, None).await
}

/// `results` and `schemas` as `on-run-end` sees them in dbt: each node's
/// status, message and time with the node itself; the schemas built.
fn hook_results(build: &Build, results: &RunResults) -> (serde_json::Value, serde_json::Value) {
    let mut schemas = BTreeSet::new();
    let list: Vec<serde_json::Value> = results
        .results
        .iter()
        .map(|result| {
            let node = build.dag.by_id.get(&result.unique_id).map(|&i| build.dag.node(i));
            if let Some(node) = node
                && matches!(
                    node.resource_type,
                    ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
                )
            {
                schemas.insert(node.relation.schema.clone());
            }
            serde_json::json!({
                "status": result.status.as_str(),
                "message": result.message,
                "execution_time": result.execution_time,
                "rows_affected": result.rows_affected,
                "failures": result.failures,
                "node": {
                    "unique_id": result.unique_id,
                    "name": result.name,
                    "resource_type": result.resource_type.as_str(),
                    "schema": node.map(|n| n.relation.schema.clone()),
                    "alias": node.map(|n| n.relation.identifier.clone()),
                },
            })
        })
        .collect();
    (
        serde_json::Value::from(list),
        serde_json::Value::from(schemas.into_iter().collect::<Vec<_>>()),
    )
}

/// Takes the lock of the project's lake, or says who holds it.
async fn lock_lake(
    ctx: &SessionContext,
    project: &Project,
    command: &str,
    invocation: &str,
) -> Result<LakeLock, Vec<Diagnostic>> {
    let lake = &project.target.lake;
    match acquire(ctx, lake, Holder::this_process(command, invocation)).await {
        Ok(lock) => Ok(lock),
        Err(LockError::Held(holder)) => Err(vec![
            Diagnostic::error(
                Code::LakeLocked,
                format!("another etl process is building the lake at `{lake}`: nothing was run"),
            )
            .with_note(describe(&holder))
            .with_help(
                "run again once it has finished; a process that was killed frees the lake at once on its \
                 own machine, and a minute after its last sign of life seen from another",
            ),
        ]),
        Err(LockError::Store(e)) => Err(vec![Diagnostic::error(
            Code::LakeLock,
            format!("cannot take the lock of the lake at `{lake}`: {e}"),
        )]),
    }
}

/// `etl run-operation`: the macro `name`, called with `args`, with
/// `execute` true and its queries (`run_query`, `statement`) run against
/// the lake, holding the lake's lock as a build does since they may write.
/// Its log lines.
pub async fn run_operation(
    prepared: Prepared,
    name: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<String>, Vec<Diagnostic>> {
    // A name or an argument that is wrong is said before the lake is
    // locked: a typo during a build is not "the lake is locked".
    crate::render::check_operation(&prepared.project, &prepared.rendered.run, name, args).map_err(|d| vec![d])?;
    let ctx = session(&prepared.project, None).map_err(|d| vec![d])?;
    let invocation = prepared.invocation_id();
    let lock = lock_lake(&ctx, &prepared.project, "run-operation", &invocation).await?;
    let build = outside_a_build(prepared, ctx, &invocation);
    let lake = materialize::lake_warehouse(&build, &build.registry.ctx);
    let run = build.run_render.clone();
    let rendered =
        tokio::task::block_in_place(|| crate::render::render_operation(&build.project, &run, name, args, lake));
    lock.release().await;
    rendered.map(|(_, logs)| logs).map_err(|d| vec![d])
}

/// The [`Build`] that templates rendered outside a build (`run-operation`,
/// `show --inline`) ask the lake through: no node runs in it.
fn outside_a_build(prepared: Prepared, ctx: SessionContext, invocation: &str) -> Arc<Build> {
    let registry = Arc::new(Registry::new(ctx, prepared.project.target.lake.clone()));
    let Prepared {
        project, rendered, dag, ..
    } = prepared;
    let manifest = artifacts::manifest(&project, &dag, &rendered, invocation);
    let options = RunOptions {
        threads: 1,
        full_refresh: false,
        invocation_id: invocation.to_owned(),
        incremental: Default::default(),
        force: false,
        event_time_start: None,
        event_time_end: None,
        empty: false,
        started_at: chrono::Utc::now(),
    };
    let mut build = Build::new(project, dag, rendered, registry, options, HashMap::new());
    build.graph = Arc::new(serde_json::json!({"nodes": manifest["nodes"], "sources": manifest["sources"]}));
    Arc::new(build)
}

/// `etl show --inline`: the query, rendered as a model is when it runs
/// (`execute` true), planned over the relations it names, made readable
/// from the lake. The session it runs in, and its plan.
pub async fn inline_query(
    prepared: Prepared,
    text: &str,
    memory_limit: Option<&str>,
) -> Result<(SessionContext, datafusion::logical_expr::LogicalPlan), Diagnostic> {
    let ctx = session(&prepared.project, memory_limit)?;
    let invocation = prepared.invocation_id();
    let build = outside_a_build(prepared, ctx, &invocation);
    let plan = materialize::plan_inline(&build, text).await?;
    Ok((build.registry.ctx.clone(), plan))
}

/// dbt's `catalog.json` (`etl docs generate`): each model, seed and
/// source the lake has, with its columns and their types as read from the
/// lake, and its kind (a table or a view). Nodes not built are left out,
/// as dbt leaves out relations the warehouse does not have.
pub async fn catalog(prepared: &Prepared, memory_limit: Option<&str>) -> Result<serde_json::Value, Diagnostic> {
    let ctx = session(&prepared.project, memory_limit)?;
    let registry = Registry::new(ctx, prepared.project.target.lake.clone());
    let (dag, project) = (&prepared.dag, &prepared.project);
    let mut nodes = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    let mut errors = Vec::new();
    for &index in &dag.order {
        let node = dag.node(index);
        if matches!(
            node.materialized,
            graph::Materialization::Ephemeral | graph::Materialization::Test
        ) {
            continue;
        }
        match registry.ensure(dag, project, index).await {
            Ok(()) => {}
            Err(diag) if diag.code == Code::NotBuilt => continue,
            Err(diag) => {
                errors.push(format!("{}: {}", node.unique_id, diag.message));
                continue;
            }
        }
        let reference = datafusion::common::TableReference::partial(
            node.relation.schema.as_str(),
            node.relation.identifier.as_str(),
        );
        let provider = match registry.ctx.table_provider(reference).await {
            Ok(provider) => provider,
            Err(e) => {
                errors.push(format!("{}: {e}", node.unique_id));
                continue;
            }
        };
        let columns: serde_json::Map<String, serde_json::Value> = provider
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let column = serde_json::json!({
                    "type": materialize::sql_type(f.data_type()),
                    "index": i + 1,
                    "name": f.name(),
                    "comment": null,
                });
                (f.name().clone(), column)
            })
            .collect();
        let kind = if node.materialized == graph::Materialization::View {
            "VIEW"
        } else {
            "BASE TABLE"
        };
        let entry = serde_json::json!({
            "metadata": {
                "type": kind,
                "schema": node.relation.schema,
                "name": node.relation.identifier,
                "database": "lake",
                "comment": null,
                "owner": null,
            },
            "columns": columns,
            "stats": {"has_stats": {
                "id": "has_stats",
                "label": "Has Stats?",
                "value": false,
                "include": false,
                "description": "Indicates whether there are statistics for this table",
            }},
            "unique_id": node.unique_id,
        });
        if node.resource_type == ResourceType::Source {
            sources.insert(node.unique_id.clone(), entry);
        } else {
            nodes.insert(node.unique_id.clone(), entry);
        }
    }
    Ok(serde_json::json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json",
            "dbt_version": "1.11.0",
            "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "invocation_id": prepared.invocation_id(),
            "env": {},
        },
        "nodes": nodes,
        "sources": sources,
        "errors": if errors.is_empty() { serde_json::Value::Null } else { serde_json::json!(errors) },
    }))
}

/// What `etl docs generate` writes: the manifest with every model's
/// column lineage, the catalog, and the docs site's data.
pub struct Docs {
    pub manifest: serde_json::Value,
    pub catalog: serde_json::Value,
    pub site: serde_json::Value,
    /// Models that do not plan (their lineage is left out), and models
    /// not planned, with why.
    pub not_planned: Vec<Diagnostic>,
    pub skipped: Vec<String>,
}

/// The run records a build keeps in the lake (`_etl/runs/`): about a
/// year of nightly builds, some 90 KiB each on the reference project.
const RUNS_KEPT: usize = 400;

/// The runs of the quality report: the last this many.
const SITE_RUNS: usize = 30;
/// The commits of each table the site shows.
const SITE_VERSIONS: usize = 30;

/// Gathers the docs: plans every model for its lineage, reads each
/// table's stats from its Delta log, the last runs' records and the
/// sources' freshness from the lake. Reads no table data.
pub async fn docs(prepared: &Prepared, memory_limit: Option<&str>) -> Result<Docs, Diagnostic> {
    let catalog = catalog(prepared, memory_limit).await?;
    let (dag, project) = (&prepared.dag, &prepared.project);
    let checked = crate::check::check(prepared, &dag.order, session(project, memory_limit)?).await;
    let mut manifest = artifacts::manifest(project, dag, &prepared.rendered, &prepared.invocation_id());
    artifacts::add_plans(&mut manifest, dag, &checked.plans, &checked.lineage);
    let ctx = session(project, memory_limit)?;
    let registry = Registry::new(ctx.clone(), project.target.lake.clone());
    let mut stats = BTreeMap::new();
    for &index in &dag.order {
        let node = dag.node(index);
        let stored = matches!(
            node.materialized,
            graph::Materialization::Table
                | graph::Materialization::Incremental
                | graph::Materialization::Seed
                | graph::Materialization::Snapshot
        );
        if !stored {
            continue;
        }
        let url = registry.location(&node.relation);
        if let Ok(Some(table)) = crate::lake::table_stats(&ctx, &url, SITE_VERSIONS).await {
            stats.insert(node.unique_id.clone(), table);
        }
    }
    let runs = crate::lake::recent_documents(&ctx, &project.target.lake, "runs", SITE_RUNS)
        .await
        .unwrap_or_default();
    let sources: Vec<NodeIndex> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| dag.node(i).resource_type == ResourceType::Source)
        .collect();
    let freshness: Vec<serde_json::Value> = materialize::check_freshness(&registry, project, dag, &sources)
        .await
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let site = artifacts::site::site_data(&artifacts::site::SiteInputs {
        manifest: &manifest,
        catalog: &catalog,
        stats: &stats,
        runs: &runs,
        freshness: &freshness,
    });
    Ok(Docs {
        manifest,
        catalog,
        site,
        not_planned: checked.errors,
        skipped: checked.skipped,
    })
}

/// The nodes `selecting` picks, with the selector's warnings.
pub fn select(prepared: &Prepared, selecting: &Selecting) -> Result<graph::Selection, Diagnostic> {
    let state = match &selecting.state {
        Some(dir) => Some(artifacts::read_state(dir).map_err(|e| Diagnostic::error(Code::InvalidState, e))?),
        None => None,
    };
    let compiled = |i| artifacts::compiled_code(&prepared.dag, i, &prepared.rendered);
    // The plans of the models whose SQL is not the state's, to tell an
    // edit of text from a change of the query.
    let plans = match &state {
        Some(state) if !state.plans.is_empty() => changed_plans(prepared, state, &compiled),
        _ => HashMap::new(),
    };
    let planned = |i: NodeIndex| plans.get(&i).cloned();
    let cx = graph::SelectContext {
        dag: &prepared.dag,
        project: &prepared.project,
        indirect: graph::IndirectSelection::parse(&selecting.indirect_selection).unwrap_or_default(),
        state: state.as_ref(),
        compiled: &compiled,
        plans: &planned,
    };
    let args = graph::SelectArgs {
        select: selecting.select.clone(),
        exclude: selecting.exclude.clone(),
        selector: selecting.selector.clone(),
    };
    graph::select(&cx, &args)
}

/// The plan fingerprints of the models whose compiled SQL differs from
/// the state's, which has theirs: planned (as `etl compile` plans) on this
/// thread's runtime, or a runtime of its own when there is none. Empty
/// when they cannot be planned here (the SQL then decides).
fn changed_plans(
    prepared: &Prepared,
    state: &graph::PreviousState,
    compiled: &dyn Fn(NodeIndex) -> Option<String>,
) -> HashMap<NodeIndex, String> {
    let dag = &prepared.dag;
    let changed: Vec<NodeIndex> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| {
            let node = dag.node(i);
            node.resource_type == ResourceType::Model
                && state.plans.contains_key(&node.unique_id)
                && state.nodes.get(&node.unique_id).map(|(sql, _)| sql.clone()) != Some(compiled(i))
        })
        .collect();
    if changed.is_empty() {
        return HashMap::new();
    }
    let Ok(ctx) = session(&prepared.project, None) else {
        return HashMap::new();
    };
    let planning = async { crate::check::check(prepared, &changed, ctx).await };
    let checked = match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(planning))
        }
        Ok(_) => return HashMap::new(),
        Err(_) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(planning),
            Err(_) => return HashMap::new(),
        },
    };
    checked
        .plans
        .into_iter()
        .filter(|(i, _)| changed.contains(i))
        .map(|(i, plan)| (i, plan.fingerprint))
        .collect()
}

/// The budget a build takes when none is given, instead of the machine's
/// share: a machine's own setting, beside the projects that run on it.
const DEFAULT_MEMORY_LIMIT_VAR: &str = "ETL_DEFAULT_MEMORY_LIMIT";

/// A DataFusion session for the project, with `memory_limit` (or the
/// target's, else `ETL_DEFAULT_MEMORY_LIMIT`'s, else the machine's share), reaching the lake's and the sources' buckets with the
/// target's storage options.
pub fn session(project: &Project, memory_limit: Option<&str>) -> Result<SessionContext, Diagnostic> {
    let memory_limit = memory_limit
        .or(project.target.memory_limit.as_deref())
        .map(parse_size)
        .transpose()
        .map_err(|e| Diagnostic::error(Code::InvalidMemoryLimit, e))?;
    let default_memory_limit = std::env::var(DEFAULT_MEMORY_LIMIT_VAR)
        .ok()
        .map(|text| parse_size(&text))
        .transpose()
        .map_err(|e| Diagnostic::error(Code::InvalidMemoryLimit, format!("{DEFAULT_MEMORY_LIMIT_VAR}: {e}")))?;
    let ctx = new_session(&SessionOptions {
        target_partitions: None,
        memory_limit,
        default_memory_limit,
        dialect: project.target.dialect,
    })
    .map_err(|e| Diagnostic::error(Code::Session, format!("cannot start DataFusion: {e}")))?;
    let sources = project
        .sources
        .iter()
        .filter_map(|s| crate::lake::parse_location(&s.location).ok());
    let locations: Vec<_> = std::iter::once(project.target.lake.clone()).chain(sources).collect();
    crate::lake::connect(&ctx, &project.target.options, &locations).map_err(|e| Diagnostic::error(Code::Storage, e))?;
    Ok(ctx)
}
