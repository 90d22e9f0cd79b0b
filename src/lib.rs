//! etl: a SQL-first transformation engine.
//!
//! The pipeline, one module per stage, each consuming the previous one's
//! output: [`project`] loads the files, [`render`] turns templates into SQL,
//! [`graph`] builds the DAG, checks each node's [`config`] and selects
//! nodes, [`plan`] owns the DataFusion session and turns SQL into plans,
//! [`materialize`] builds nodes into the [`lake`], [`artifacts`]
//! records what happened, and [`notify`] tells people. [`build()`] runs them all for the commands that
//! build. The library never prints: it returns results and
//! [`diagnostic::Diagnostic`]s.
//!
//! Foundations sit below the stages and use none of them: [`diagnostic`],
//! [`lake`] (storage, Delta tables, relations) and [`config`] (node config,
//! typed). A stage uses foundations and the stages before it, never one
//! after: `tests/layers.rs` fails on a circle.

pub mod artifacts;
mod build;
pub mod check;
pub mod config;
pub mod diagnostic;
pub mod graph;
pub mod lake;
pub mod materialize;
pub mod notify;
mod parallel;
pub mod plan;
pub mod project;
pub mod render;
pub mod serve;

pub use build::{
    BuildOptions, Defer, Docs, Mode, Outcome, Progress, Selecting, build, catalog, docs, inline_query, run_operation,
    select, session,
};

use diagnostic::Diagnostic;

/// A project loaded, rendered and arranged in its DAG: what every command
/// starts from.
pub struct Prepared {
    pub project: project::Project,
    pub rendered: render::Rendered,
    pub dag: graph::Dag,
    /// Seconds each stage took: `load`, `render`, `graph`.
    pub timings: Vec<(&'static str, f64)>,
    /// What it was prepared from, to prepare it again.
    inputs: Inputs,
}

struct Inputs {
    dir: std::path::PathBuf,
    load: project::LoadOptions,
    render: render::RenderOptions,
}

impl Prepared {
    /// What the templates were rendered with.
    pub fn render_options(&self) -> &render::RenderOptions {
        &self.inputs.render
    }
}

/// Loads, renders and builds the DAG of the project at `dir`.
pub fn prepare(
    dir: &std::path::Path,
    load: &project::LoadOptions,
    render: &render::RenderOptions,
) -> Result<Prepared, Vec<Diagnostic>> {
    let started = std::time::Instant::now();
    let project = project::load(dir, load)?;
    let loaded = started.elapsed().as_secs_f64();
    let rendered = render::render_project(&project, render)?;
    let rendered_at = started.elapsed().as_secs_f64();
    let dag = graph::build(&project, &rendered)?;
    let timings = vec![
        ("load", loaded),
        ("render", rendered_at - loaded),
        ("graph", started.elapsed().as_secs_f64() - rendered_at),
    ];
    Ok(Prepared {
        project,
        rendered,
        dag,
        timings,
        inputs: Inputs {
            dir: dir.to_path_buf(),
            load: load.clone(),
            render: render.clone(),
        },
    })
}

impl Prepared {
    /// What the project sets that etl accepts but does not act on: files,
    /// then config, each said once.
    pub fn warnings(&self) -> Vec<Diagnostic> {
        self.project
            .warnings
            .iter()
            .chain(&self.dag.warnings)
            .cloned()
            .collect()
    }

    /// The id of this invocation, as its artifacts and commits carry it.
    pub fn invocation_id(&self) -> String {
        self.inputs.render.invocation_id.clone()
    }

    /// The same project prepared again with `is_incremental()` true for
    /// the models in `incremental`.
    pub fn again_with_incremental(
        &self,
        incremental: std::collections::BTreeSet<String>,
    ) -> Result<Prepared, Vec<Diagnostic>> {
        let mut render = self.inputs.render.clone();
        render.incremental = incremental;
        prepare(&self.inputs.dir, &self.inputs.load, &render)
    }
}
