//! `etl ls`: the selected nodes, one per line, as `dbt ls` prints them.

use clap::{Args, ValueEnum};
use serde_json::json;

use etl::graph::ResourceType;

use super::{Global, Output, invocation_id};

#[derive(Args, Debug)]
pub struct LsArgs {
    /// What to print for each node.
    #[arg(long, short = 'o', value_enum, default_value_t = LsOutput::Selector)]
    output: LsOutput,
    /// Only nodes of these types.
    #[arg(long, value_enum, num_args = 1..)]
    resource_type: Vec<LsType>,
    /// Leave out nodes of these types.
    #[arg(long, value_enum, num_args = 1..)]
    exclude_resource_type: Vec<LsType>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum LsOutput {
    Selector,
    Name,
    Path,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum LsType {
    Model,
    Seed,
    Source,
    Test,
    Snapshot,
    #[value(name = "unit_test")]
    UnitTest,
    Exposure,
}

pub fn run(global: &Global, args: &LsArgs, out: &Output) -> u8 {
    let prepared = match global.prepare(out, &invocation_id()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let dag = &prepared.dag;
    let selection = match global.selection(&prepared, out) {
        Ok(nodes) => nodes,
        Err(code) => return code,
    };
    let is = |w: &LsType, t: ResourceType| match w {
        LsType::Model => t == ResourceType::Model,
        LsType::Seed => t == ResourceType::Seed,
        LsType::Source => t == ResourceType::Source,
        LsType::Test => t == ResourceType::Test,
        LsType::Snapshot => t == ResourceType::Snapshot,
        LsType::UnitTest => t == ResourceType::UnitTest,
        LsType::Exposure => t == ResourceType::Exposure,
    };
    let wanted = |t: ResourceType| {
        (args.resource_type.is_empty() || args.resource_type.iter().any(|w| is(w, t)))
            && !args.exclude_resource_type.iter().any(|w| is(w, t))
    };
    let mut nodes: Vec<_> = selection
        .iter()
        .map(|&i| dag.node(i))
        .filter(|n| wanted(n.resource_type))
        .collect();
    // dbt lists nodes sorted by unique_id.
    nodes.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
    let lines = nodes.into_iter().map(|node| match args.output {
        // dbt names a source table `source.table`.
        LsOutput::Name if node.resource_type == ResourceType::Source => node.fqn[1..].join("."),
        LsOutput::Name => node.name.clone(),
        LsOutput::Path => node.path.display().to_string(),
        LsOutput::Selector => match node.resource_type {
            ResourceType::Source => format!("source:{}", node.fqn.join(".")),
            ResourceType::UnitTest => format!("unit_test:{}.{}", node.fqn[0], node.name),
            ResourceType::Exposure => format!("exposure:{}.{}", node.fqn[0], node.name),
            _ => node.fqn.join("."),
        },
        LsOutput::Json => json!({
            "name": node.name,
            "resource_type": node.resource_type,
            "package_name": node.fqn.first().unwrap_or(&prepared.project.name),
            "original_file_path": node.path,
            "unique_id": node.unique_id,
            "alias": node.relation.identifier,
            "config": node.config.raw(),
            "tags": node.tags(),
        })
        .to_string(),
    });
    out.lines(lines);
    // The command ends here: the process's exit frees the project at
    // once, where dropping it piece by piece took 4% of `ls` at 10,000
    // models.
    std::mem::forget(prepared);
    0
}
