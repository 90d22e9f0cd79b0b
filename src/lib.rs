//! etl: a SQL-first transformation engine.
//!
//! The pipeline, one module per stage, each consuming the previous one's
//! output: [`project`] loads the files, [`render`] turns templates into SQL,
//! [`graph`] builds the DAG and selects nodes, [`plan`] owns the DataFusion
//! session and turns SQL into plans, [`materialize`] builds nodes into the
//! [`lake`], and [`artifacts`] records what happened. The library never
//! prints: it returns results and [`diagnostic::Diagnostic`]s.

pub mod artifacts;
pub mod config;
pub mod diagnostic;
pub mod graph;
pub mod lake;
pub mod materialize;
mod parallel;
pub mod plan;
pub mod project;
pub mod render;

use diagnostic::Diagnostic;

/// A project loaded, rendered and arranged in its DAG: what every command
/// starts from.
pub struct Prepared {
    pub project: project::Project,
    pub rendered: render::Rendered,
    pub dag: graph::Dag,
    /// Seconds each stage took: `load`, `render`, `graph`.
    pub timings: Vec<(&'static str, f64)>,
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
    })
}
