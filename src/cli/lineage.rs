//! `etl lineage <node>.<column>`: where a column comes from, back to the
//! sources' and seeds' columns, or (`--downstream`) every model column
//! derived from it, as a tree read off the models' plans.

use clap::Args;
use petgraph::graph::NodeIndex;
use serde_json::{Value, json};

use etl::diagnostic::{Code, Diagnostic};
use etl::graph::{Dag, ResourceType};
use etl::plan::lineage::{Graph, Tree};

use super::{Global, Output, invocation_id};

#[derive(Args, Debug)]
pub struct LineageArgs {
    /// The column: `[package.]model.column`, `[package.]seed.column` or
    /// `source_name.table.column`.
    column: String,
    /// The model columns derived from it, instead of where it comes from.
    #[arg(long)]
    downstream: bool,
}

pub async fn run(global: &Global, args: &LineageArgs, out: &Output) -> u8 {
    let prepared = match global.prepare(out, &invocation_id()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    let dag = &prepared.dag;
    let (node, column) = match resolve(dag, &args.column) {
        Ok(found) => found,
        Err(diag) => {
            out.fatal(&[diag], Some(&root));
            return 2;
        }
    };
    // The models the answer needs, planned: the node and its ancestors,
    // or the node and what reads it.
    let mut plan: Vec<NodeIndex> = vec![node];
    if args.downstream {
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<NodeIndex> = dag.children(node).collect();
        while let Some(child) = stack.pop() {
            if seen.insert(child) {
                plan.push(child);
                stack.extend(dag.children(child));
            }
        }
    }
    let ctx = match global.session(&prepared.project, out) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let checked = etl::check::check(&prepared, &plan, ctx).await;
    if !checked.errors.is_empty() {
        out.fatal(&checked.errors, Some(&root));
        return 2;
    }
    let graph = Graph::new(&checked.lineage);
    let planned = matches!(
        dag.node(node).resource_type,
        ResourceType::Model | ResourceType::Snapshot
    );
    let column = match graph.columns(node) {
        Some(columns) => match columns.iter().find(|c| c.eq_ignore_ascii_case(&column)) {
            Some(c) => c.to_string(),
            None => {
                let diag = Diagnostic::error(
                    Code::UnknownColumn,
                    format!(
                        "`{}` has no column `{column}`; its columns: {}",
                        label(dag, node),
                        columns.join(", ")
                    ),
                );
                out.fatal(&[diag], Some(&root));
                return 2;
            }
        },
        None if planned => {
            let why = checked.skipped.join("; ");
            out.fatal(
                &[Diagnostic::error(
                    Code::UnknownColumn,
                    format!(
                        "`{}` was not planned, so its lineage is not known: {why}",
                        label(dag, node)
                    ),
                )],
                Some(&root),
            );
            return 2;
        }
        None => column,
    };
    let tree = if args.downstream {
        graph.downstream(node, &column)
    } else {
        graph.upstream(node, &column)
    };
    // Upstream: the columns the asked model's rows are filtered on
    // (downstream, the tree says which models each column filters).
    let rows: Vec<String> = if args.downstream {
        Vec::new()
    } else {
        graph
            .filtered_on(node)
            .into_iter()
            .map(|(n, c)| format!("{}.{c}", label(dag, n)))
            .collect()
    };
    if out.json() {
        let mut event = json!({
            "event": "lineage",
            "direction": if args.downstream { "downstream" } else { "upstream" },
            "tree": tree_json(dag, &tree),
        });
        if !args.downstream {
            event["filtered_on"] = json!(rows);
        }
        out.event(event);
        return 0;
    }
    let mut lines = Vec::new();
    lines.push(format!("{}.{}", label(dag, tree.node), tree.column));
    print_branches(dag, &tree, "", args.downstream, &mut lines);
    if !rows.is_empty() {
        lines.push(format!("rows filtered or joined on: {}", rows.join(", ")));
    }
    out.lines(lines.into_iter());
    0
}

/// The node and column `text` names.
fn resolve(dag: &Dag, text: &str) -> Result<(NodeIndex, String), Diagnostic> {
    // As the tree prints them too: `source.bronze.orders.id`.
    let mut parts: Vec<&str> = text.split('.').collect();
    let kind = match parts.first() {
        Some(&k @ ("source" | "seed" | "snapshot" | "model")) if parts.len() > 2 => {
            parts.remove(0);
            Some(k)
        }
        _ => None,
    };
    let unknown = |why: String| Diagnostic::error(Code::UnknownNode, why);
    let [path @ .., column] = parts.as_slice() else {
        return Err(unknown("no column named".into()));
    };
    if path.is_empty() {
        return Err(unknown(format!(
            "`{text}` names no node: write `model.column` or `source_name.table.column`"
        )));
    }
    let found: Vec<NodeIndex> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| {
            let node = dag.node(i);
            if kind.is_some_and(|k| k != node.resource_type.as_str()) {
                return false;
            }
            let names: Vec<&str> = match node.resource_type {
                ResourceType::Source => node.fqn.iter().map(String::as_str).collect(),
                ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot => {
                    vec![node.fqn[0].as_str(), node.name.as_str()]
                }
                _ => return false,
            };
            names.ends_with(path)
        })
        .collect();
    match found.as_slice() {
        [one] => Ok((*one, column.to_string())),
        [] => Err(unknown(format!(
            "`{}` is not a model, seed, snapshot or source of this project",
            path.join(".")
        ))),
        many => Err(unknown(format!(
            "`{}` names {}: write the package too",
            path.join("."),
            many.iter()
                .map(|&i| dag.node(i).unique_id.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A node as the tree names it: `source.shop.orders`, `seed.countries`,
/// `orders_clean`.
fn label(dag: &Dag, index: NodeIndex) -> String {
    let node = dag.node(index);
    match node.resource_type {
        ResourceType::Source => format!("source.{}", node.fqn[1..].join(".")),
        ResourceType::Seed => format!("seed.{}", node.name),
        ResourceType::Snapshot => format!("snapshot.{}", node.name),
        _ => node.name.clone(),
    }
}

fn print_branches(dag: &Dag, tree: &Tree, indent: &str, downstream: bool, lines: &mut Vec<String>) {
    let leaves = tree.branches.len() + tree.filters.len();
    for (k, branch) in tree.branches.iter().enumerate() {
        let last = k + 1 == leaves;
        let how = branch.how.map(|h| h.as_str()).unwrap_or_default();
        let how = if downstream {
            format!("{how} into")
        } else {
            format!("{how} from")
        };
        lines.push(format!(
            "{indent}{} {how} {}.{}{}",
            if last { "└─" } else { "├─" },
            label(dag, branch.node),
            branch.column,
            if branch.repeated { " (shown above)" } else { "" }
        ));
        let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
        print_branches(dag, branch, &deeper, downstream, lines);
    }
    for (k, &model) in tree.filters.iter().enumerate() {
        let last = tree.branches.len() + k + 1 == leaves;
        lines.push(format!(
            "{indent}{} filters the rows of {}",
            if last { "└─" } else { "├─" },
            label(dag, model)
        ));
    }
}

fn tree_json(dag: &Dag, tree: &Tree) -> Value {
    json!({
        "unique_id": dag.node(tree.node).unique_id,
        "column": tree.column,
        "how": tree.how.map(|h| h.as_str()),
        "repeated": tree.repeated,
        "branches": tree.branches.iter().map(|b| tree_json(dag, b)).collect::<Vec<_>>(),
        "filters_rows_of": tree.filters.iter().map(|&n| dag.node(n).unique_id.clone()).collect::<Vec<_>>(),
    })
}
