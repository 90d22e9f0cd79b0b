//! `etl build`, `etl run`, `etl seed`, `etl test`.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use etl::artifacts;
use etl::diagnostic::Diagnostic;
use etl::graph::ResourceType;
use etl::materialize::{self, Build, RunOptions, Status};
use etl::config::parse_size;
use etl::plan::{Registry, SessionOptions, new_session};

use super::{Global, Output, invocation_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Build,
    Run,
    Seed,
    Test,
}

impl Mode {
    /// The mode a run_results.json's `args.which` names.
    pub fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "build" => Mode::Build,
            "run" => Mode::Run,
            "seed" => Mode::Seed,
            "test" => Mode::Test,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Build => "build",
            Mode::Run => "run",
            Mode::Seed => "seed",
            Mode::Test => "test",
        }
    }

    fn includes(self, resource_type: ResourceType) -> bool {
        match self {
            Mode::Build => resource_type != ResourceType::Source,
            Mode::Run => resource_type == ResourceType::Model,
            Mode::Seed => resource_type == ResourceType::Seed,
            Mode::Test => resource_type == ResourceType::Test,
        }
    }
}

pub async fn run(global: &Global, out: &Output, mode: Mode) -> u8 {
    run_only(global, out, mode, None).await
}

/// Builds the selection, or with `only`, just the nodes with those
/// unique_ids (what `etl retry` re-runs).
pub async fn run_only(
    global: &Global,
    out: &Output,
    mode: Mode,
    only: Option<&std::collections::BTreeSet<String>>,
) -> u8 {
    if let (Some(start), Some(end)) = (global.event_time_start, global.event_time_end) {
        if start >= end {
            out.diagnostics(
                &[Diagnostic::error(
                    "invalid-argument",
                    format!("--event-time-start ({start}) must come before --event-time-end ({end})"),
                )],
                None,
            );
            return 2;
        }
    }
    let invocation = invocation_id();
    let mut prepared = match global.prepare(out, &invocation) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let setup_timings = std::mem::take(&mut prepared.timings);
    let session_started = std::time::Instant::now();
    let ctx = match session(global, &prepared.project, out) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    // Held from before anything reads the lake until the results are
    // written: one build at a time per lake.
    let lock = match lock_lake(&ctx, &prepared.project, mode, &invocation, out).await {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let code = run_locked(
        global,
        out,
        mode,
        only,
        &invocation,
        prepared,
        setup_timings,
        session_started,
        ctx,
    )
    .await;
    lock.release().await;
    code
}

/// Takes the lock of the project's lake, or says who holds it.
async fn lock_lake(
    ctx: &SessionContext,
    project: &etl::project::Project,
    mode: Mode,
    invocation: &str,
    out: &Output,
) -> Result<etl::lake::lock::LakeLock, u8> {
    use etl::lake::lock::{Holder, LockError, acquire, describe};
    let lake = &project.target.lake;
    match acquire(ctx, lake, Holder::this_process(mode.name(), invocation)).await {
        Ok(lock) => Ok(lock),
        Err(LockError::Held(holder)) => {
            let diag = Diagnostic::error(
                "lake-locked",
                format!("another etl process is building the lake at `{lake}`: nothing was run"),
            )
            .with_note(describe(&holder))
            .with_help(
                "run again once it has finished; a process that was killed frees the lake at once on its \
                 own machine, and a minute after its last sign of life seen from another",
            );
            out.fatal(&[diag], Some(&project.root));
            Err(2)
        }
        Err(LockError::Store(e)) => {
            out.fatal(
                &[Diagnostic::error(
                    "lake-lock",
                    format!("cannot take the lock of the lake at `{lake}`: {e}"),
                )],
                Some(&project.root),
            );
            Err(2)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_locked(
    global: &Global,
    out: &Output,
    mode: Mode,
    only: Option<&std::collections::BTreeSet<String>>,
    invocation: &str,
    prepared: etl::Prepared,
    mut setup_timings: Vec<(&'static str, f64)>,
    session_started: std::time::Instant,
    ctx: SessionContext,
) -> u8 {
    let invocation = invocation.to_owned();
    // Incremental models whose table exists render with is_incremental()
    // true, which can change their SQL and refs: render again for them.
    let incremental = materialize::incremental_models(&ctx, &prepared, global.full_refresh).await;
    setup_timings.push(("session", session_started.elapsed().as_secs_f64()));
    let full_build_sql: std::collections::HashMap<String, String> = prepared
        .dag
        .order
        .iter()
        .filter(|&&i| {
            let node = prepared.dag.node(i);
            node.resource_type == ResourceType::Model && incremental.contains(&node.name)
        })
        .map(|&i| {
            let sql = etl::plan::compile(&prepared.dag, i, &prepared.rendered.models).sql;
            (prepared.dag.node(i).name.clone(), sql)
        })
        .collect();
    let prepared = if incremental.is_empty() {
        prepared
    } else {
        match global.prepare_incremental(out, &invocation, incremental.clone()) {
            Ok(p) => p,
            Err(code) => return code,
        }
    };
    let selected = match only {
        Some(ids) => prepared
            .dag
            .order
            .iter()
            .copied()
            .filter(|&i| ids.contains(&prepared.dag.node(i).unique_id))
            .collect(),
        None => match global.selection(&prepared, out) {
            Ok(nodes) => nodes,
            Err(code) => return code,
        },
    };
    let etl::Prepared {
        project,
        rendered,
        dag,
        timings: prepare_timings,
    } = prepared;
    let root = project.root.clone();
    let manifest = artifacts::manifest(&project, &dag, &rendered, &invocation);
    if let Err(e) = artifacts::write_json(&project, "manifest.json", &manifest) {
        out.fatal(
            &[Diagnostic::error(
                "io",
                format!("cannot write target/manifest.json: {e}"),
            )],
            Some(&root),
        );
        return 2;
    }
    let nodes: Vec<_> = selected
        .into_iter()
        .filter(|&i| mode.includes(dag.node(i).resource_type))
        .collect();

    let threads = global
        .threads
        .or(project.target.threads)
        .unwrap_or_else(num_cpus::get)
        .max(1);
    if !out.json() {
        out.line(&format!(
            "etl {} `{}`: {} nodes selected, target `{}` at {}, {threads} threads",
            mode.name(),
            project.name,
            nodes.len(),
            project.target.name,
            project.target.lake
        ));
    }
    let registry = Arc::new(Registry::new(ctx, project.target.lake.clone()));
    let build = Arc::new(Build {
        project: Arc::new(project),
        dag: Arc::new(dag),
        models: Arc::new(rendered.models),
        tests: Arc::new(rendered.tests),
        registry,
        audited: Default::default(),
        fingerprints: Default::default(),
        expected: Default::default(),
        full_build_sql,
        versions: Default::default(),
        commit_times: Default::default(),
        ingests: Default::default(),
        to_ingest: Default::default(),
        plan_times: Default::default(),
        sessions: Default::default(),
        parsed: Default::default(),
        memory_gate: Default::default(),
        plain: Default::default(),
        options: RunOptions {
            threads,
            full_refresh: global.full_refresh,
            invocation_id: invocation.clone(),
            incremental,
            force: global.force,
            event_time_start: global.event_time_start,
            event_time_end: global.event_time_end,
        },
    });
    let results = materialize::run(build.clone(), &nodes, |r, done, total| out.node(r, done, total)).await;
    let rejected = match materialize::rejected_rows(&build, &results).await {
        Ok(r) => r,
        Err(diag) => {
            out.diagnostics(&[diag], Some(&root));
            Vec::new()
        }
    };
    let run_results = artifacts::run_results(&results, &rejected, &invocation, mode.name());
    if let Err(e) = artifacts::write_json(&build.project, "run_results.json", &run_results) {
        out.fatal(
            &[Diagnostic::error(
                "io",
                format!("cannot write target/run_results.json: {e}"),
            )],
            Some(&root),
        );
        return 2;
    }
    out.summary(&results, &rejected, &root);
    if global.timings {
        let mut stages = setup_timings;
        for (stage, seconds) in prepare_timings {
            match stages.iter_mut().find(|(s, _)| *s == stage) {
                Some(entry) => entry.1 += seconds,
                None => stages.push((stage, seconds)),
            }
        }
        out.timings(&stages, &results, threads);
    }
    let failed = results.count(Status::Error) + results.count(Status::Fail);
    if failed > 0 { 1 } else { 0 }
}

/// The build's DataFusion session, with the memory limit from the command
/// line or the target.
pub fn session(global: &Global, project: &etl::project::Project, out: &Output) -> Result<SessionContext, u8> {
    let root = &project.root;
    let memory_limit = match global
        .memory_limit
        .as_deref()
        .or(project.target.memory_limit.as_deref())
        .map(parse_size)
    {
        Some(Err(e)) => {
            out.fatal(&[Diagnostic::error("invalid-memory-limit", e)], Some(root));
            return Err(2);
        }
        Some(Ok(limit)) => Some(limit),
        None => None,
    };
    let ctx = new_session(&SessionOptions {
        target_partitions: None,
        memory_limit,
    })
    .map_err(|e| {
        out.fatal(
            &[Diagnostic::error("session", format!("cannot start DataFusion: {e}"))],
            Some(root),
        );
        2
    })?;
    // The lake's bucket and the sources' buckets, reached with the
    // target's storage options.
    let sources = project
        .sources
        .iter()
        .filter_map(|s| etl::lake::parse_location(&s.location).ok());
    let locations: Vec<_> = std::iter::once(project.target.lake.clone()).chain(sources).collect();
    etl::lake::connect(&ctx, &project.target.options, &locations).map_err(|e| {
        out.fatal(&[Diagnostic::error("storage", e)], Some(root));
        2
    })?;
    Ok(ctx)
}
