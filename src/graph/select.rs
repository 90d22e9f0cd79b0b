//! `--select` / `--exclude`: node names, with dbt's `+` graph operators on
//! either side (`+orders_clean`, `ltv_cohorts+`). Sources are named
//! `source_name.table`. Space or repeated flags make a union. The rest of
//! dbt's grammar (methods, intersections, `@`) builds on this.

use std::collections::BTreeSet;

use petgraph::graph::NodeIndex;

use super::{Dag, ResourceType};
use crate::diagnostic::Diagnostic;

/// The outcome of a selection: the nodes in DAG order, and a warning for
/// each selector that matched nothing.
#[derive(Debug, Default)]
pub struct Selection {
    pub nodes: Vec<NodeIndex>,
    pub warnings: Vec<Diagnostic>,
}

/// Selects nodes; no `--select` means every node.
pub fn select(dag: &Dag, select: &[String], exclude: &[String]) -> Selection {
    let mut warnings = Vec::new();
    let chosen: BTreeSet<NodeIndex> = if select.is_empty() {
        dag.order.iter().copied().collect()
    } else {
        with_tests(dag, resolve(dag, select, &mut warnings))
    };
    let excluded = with_tests(dag, resolve(dag, exclude, &mut warnings));
    let nodes = dag
        .order
        .iter()
        .copied()
        .filter(|i| chosen.contains(i) && !excluded.contains(i))
        .collect();
    Selection { nodes, warnings }
}

fn resolve(dag: &Dag, selectors: &[String], warnings: &mut Vec<Diagnostic>) -> BTreeSet<NodeIndex> {
    let mut out = BTreeSet::new();
    for selector in selectors.iter().flat_map(|s| s.split_whitespace()) {
        let (up, rest) = match selector.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, selector),
        };
        let (down, name) = match rest.strip_suffix('+') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let name = name.strip_prefix("source:").unwrap_or(name);
        let Some(start) = dag.find(name) else {
            let names: Vec<String> = dag.order.iter().map(|&i| dag.node(i).name.clone()).collect();
            warnings.push(
                Diagnostic::warning("nothing-selected", format!("the selector `{selector}` matches no node"))
                    .with_suggestion(name, names.iter().map(String::as_str)),
            );
            continue;
        };
        out.insert(start);
        if up {
            walk(start, &mut out, |i| dag.parents(i).collect());
        }
        if down {
            walk(start, &mut out, |i| dag.children(i).collect());
        }
    }
    out
}

/// dbt's default (eager) indirect selection: a data test goes with any of
/// the nodes it tests or reads.
fn with_tests(dag: &Dag, mut nodes: BTreeSet<NodeIndex>) -> BTreeSet<NodeIndex> {
    let tests: Vec<NodeIndex> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| dag.node(i).resource_type == ResourceType::Test)
        .filter(|&i| dag.parents(i).any(|p| nodes.contains(&p)))
        .collect();
    nodes.extend(tests);
    nodes
}

fn walk(start: NodeIndex, out: &mut BTreeSet<NodeIndex>, next: impl Fn(NodeIndex) -> Vec<NodeIndex>) {
    let mut seen = BTreeSet::from([start]);
    let mut stack = vec![start];
    while let Some(i) = stack.pop() {
        for n in next(i) {
            if seen.insert(n) {
                stack.push(n);
            }
        }
    }
    out.extend(seen);
}
