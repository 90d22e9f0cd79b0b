//! etl: a SQL-first transformation engine.
//!
//! The pipeline, one module per stage, each consuming the previous one's
//! output: [`project`] loads the files, [`render`] turns templates into SQL,
//! [`graph`] builds the DAG and selects nodes, [`plan`] owns the DataFusion
//! session and turns SQL into plans, [`materialize`] builds nodes into the
//! [`lake`], and [`artifacts`] records what happened. The library never
//! prints: it returns results and [`diagnostic::Diagnostic`]s.

pub mod artifacts;
pub mod diagnostic;
pub mod graph;
pub mod lake;
pub mod materialize;
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
}

/// Loads, renders and builds the DAG of the project at `dir`.
pub fn prepare(
    dir: &std::path::Path,
    load: &project::LoadOptions,
    render: &render::RenderOptions,
) -> Result<Prepared, Vec<Diagnostic>> {
    let project = project::load(dir, load)?;
    let rendered = render::render_project(&project, render)?;
    let dag = graph::build(&project, &rendered)?;
    Ok(Prepared { project, rendered, dag })
}
