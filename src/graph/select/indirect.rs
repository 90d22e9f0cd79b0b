//! Indirect selection: how tests follow the nodes they test (eager,
//! cautious, buildable, empty).

use super::*;

/// The tests read by `selected` join it per `mode` (dbt's
/// `expand_selection`): eager takes every one; cautious those whose
/// parents are all selected, buildable those whose parents are selected or
/// ancestors of selected nodes. The others are kept as indirect.
pub(super) fn expand_selection(dag: &Dag, selected: BTreeSet<NodeIndex>, mode: IndirectSelection) -> Sets {
    let mut direct = selected.clone();
    let mut indirect = BTreeSet::new();
    let buildable: BTreeSet<NodeIndex> = if mode == IndirectSelection::Buildable {
        selected_and_parents(dag, &selected)
    } else {
        BTreeSet::new()
    };
    for &node in &selected {
        for test in dag.children(node) {
            if dag.node(test).resource_type != ResourceType::Test || selected.contains(&test) {
                continue;
            }
            match mode {
                IndirectSelection::Empty => {}
                IndirectSelection::Eager => {
                    direct.insert(test);
                }
                _ if dag.parents(test).all(|p| selected.contains(&p)) => {
                    direct.insert(test);
                }
                IndirectSelection::Buildable if dag.parents(test).all(|p| buildable.contains(&p)) => {
                    direct.insert(test);
                }
                _ => {
                    indirect.insert(test);
                }
            }
        }
    }
    // A model's unit tests go with it, as in dbt (their fqn is
    // `[package, folders..., model, test]`).
    if mode != IndirectSelection::Empty {
        for &i in &dag.order {
            let test = dag.node(i);
            if test.resource_type != ResourceType::UnitTest {
                continue;
            }
            let tested = selected.iter().any(|&s| {
                let n = dag.node(s);
                n.resource_type == ResourceType::Model && test.fqn.iter().rev().nth(1) == Some(&n.name)
            });
            if tested {
                direct.insert(i);
            }
        }
    }
    (direct, indirect)
}

/// After a set operation, the indirect tests whose parents are now all
/// selected (cautious) or buildable join the selection.
pub(super) fn incorporate_indirect(
    dag: &Dag,
    direct: BTreeSet<NodeIndex>,
    indirect: &BTreeSet<NodeIndex>,
    mode: IndirectSelection,
) -> BTreeSet<NodeIndex> {
    let mut selected = direct.clone();
    match mode {
        IndirectSelection::Cautious => {
            for &t in indirect {
                if dag.parents(t).all(|p| direct.contains(&p)) {
                    selected.insert(t);
                }
            }
        }
        IndirectSelection::Buildable => {
            let ok = selected_and_parents(dag, &direct);
            for &t in indirect {
                if dag.parents(t).all(|p| ok.contains(&p)) {
                    selected.insert(t);
                }
            }
        }
        _ => {}
    }
    selected
}

/// The nodes, their ancestors, and every source.
pub(super) fn selected_and_parents(dag: &Dag, nodes: &BTreeSet<NodeIndex>) -> BTreeSet<NodeIndex> {
    let mut out = nodes.clone();
    for &n in nodes {
        out.extend(dag.ancestors(n));
    }
    out.extend(
        dag.order
            .iter()
            .copied()
            .filter(|&i| dag.node(i).resource_type == ResourceType::Source),
    );
    out
}
