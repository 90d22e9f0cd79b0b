//! Node selection, as dbt answers it: `--select`, `--exclude`,
//! `--selector` (selectors.yml) and indirect test selection.
//!
//! A selection is a union (space-separated, or repeated flags) of
//! intersections (comma-separated) of criteria. A criterion is
//! `[@][N+]method:value[+N]`: a method picks nodes (`tag:daily`,
//! `path:models/staging`, a bare name or `fqn:`, wildcards allowed), and the
//! graph operators add ancestors (`+m`, `2+m`), descendants (`m+`, `m+1`)
//! or descendants with all their ancestors (`@m`). Tests then follow the
//! nodes they test, per `--indirect-selection`.

use std::collections::{BTreeSet, HashMap};

use globset::GlobBuilder;
use petgraph::graph::NodeIndex;
use serde_json::Value;

use super::{Dag, Node, ResourceType};

mod indirect;
mod methods;
mod selectors;
mod syntax;
use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::project::{Project, SelectorDefinition, TestKind};
use indirect::*;
use methods::*;
use selectors::*;
use syntax::*;

/// How tests follow the nodes they test (dbt's `--indirect-selection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndirectSelection {
    /// A test is selected when any node it reads is.
    #[default]
    Eager,
    /// Only when every node it reads is.
    Cautious,
    /// When every node it reads is selected or is an ancestor of one.
    Buildable,
    /// Never: only tests selected by name.
    Empty,
}

impl IndirectSelection {
    pub fn parse(text: &str) -> Option<IndirectSelection> {
        Some(match text {
            "eager" => IndirectSelection::Eager,
            "cautious" => IndirectSelection::Cautious,
            "buildable" => IndirectSelection::Buildable,
            "empty" => IndirectSelection::Empty,
            _ => return None,
        })
    }
}

/// What an earlier run left in a `--state` directory.
#[derive(Debug, Clone, Default)]
pub struct PreviousState {
    /// unique_id -> (compiled SQL, config) from its manifest.json.
    pub nodes: HashMap<String, (Option<String>, Value)>,
    /// unique_id -> status from its run_results.json.
    pub results: HashMap<String, String>,
    /// unique_id -> its plan's fingerprint, when its manifest has one
    /// (`etl_plan`, written by etl's check).
    pub plans: HashMap<String, String>,
    /// unique_id -> its planned columns and their types (`etl_plan`).
    pub columns: HashMap<String, Vec<(String, String)>>,
}

/// Everything a selection is resolved against.
pub struct SelectContext<'a> {
    pub dag: &'a Dag,
    pub project: &'a Project,
    pub indirect: IndirectSelection,
    pub state: Option<&'a PreviousState>,
    /// The compiled SQL of a node, for `state:modified`.
    pub compiled: &'a dyn Fn(NodeIndex) -> Option<String>,
    /// The fingerprint of a node's plan now, for `state:modified`: a
    /// body whose SQL changed but whose plan is the state's is not
    /// modified (whitespace, comments, a CTE renamed).
    pub plans: &'a dyn Fn(NodeIndex) -> Option<String>,
}

/// The outcome of a selection: the nodes in DAG order, and a warning for
/// each criterion that matched nothing.
#[derive(Debug, Default)]
pub struct Selection {
    pub nodes: Vec<NodeIndex>,
    pub warnings: Vec<Diagnostic>,
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SelectArgs {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub selector: Option<String>,
}

/// Selects nodes. Without `--select` or `--selector`, every node (or the
/// selectors.yml `default: true` selector).
pub fn select(cx: &SelectContext, args: &SelectArgs) -> Result<Selection, Diagnostic> {
    let mut warnings = Vec::new();
    let spec = if let Some(name) = &args.selector {
        // As in dbt, a named selector replaces --select and --exclude.
        if !args.select.is_empty() || !args.exclude.is_empty() {
            warnings.push(Diagnostic::warning(
                Code::SelectorOverrides,
                format!("--selector `{name}` is used alone: --select and --exclude are ignored"),
            ));
        }
        let def = find_selector(cx.project, name)?;
        parse_definition(cx.project, &def.definition, &mut Vec::new())?
    } else {
        let include = if args.select.is_empty() {
            match cx.project.selectors.iter().find(|s| s.default) {
                Some(def) => parse_definition(cx.project, &def.definition, &mut Vec::new())?,
                None => Spec::All,
            }
        } else {
            parse_cli(&args.select, "--select")?
        };
        if args.exclude.is_empty() {
            include
        } else {
            Spec::Difference(Box::new(include), Box::new(parse_cli(&args.exclude, "--exclude")?))
        }
    };
    let chosen = evaluate(cx, &spec, cx.indirect, &mut warnings)?;
    let nodes = cx.dag.order.iter().copied().filter(|i| chosen.contains(i)).collect();
    Ok(Selection { nodes, warnings })
}

type Sets = (BTreeSet<NodeIndex>, BTreeSet<NodeIndex>);

/// Resolves a spec to `(direct, indirect)` nodes, as dbt does: `direct` is
/// the selection (tests included per the indirect-selection mode),
/// `indirect` the tests that could still join it once more of their parents
/// are selected by a set operation.
fn evaluate(
    cx: &SelectContext,
    spec: &Spec,
    indirect: IndirectSelection,
    warnings: &mut Vec<Diagnostic>,
) -> Result<BTreeSet<NodeIndex>, Diagnostic> {
    Ok(resolve(cx, spec, indirect, warnings)?.0)
}

fn resolve(
    cx: &SelectContext,
    spec: &Spec,
    indirect: IndirectSelection,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Sets, Diagnostic> {
    let combine = |sets: Vec<Sets>, op: fn(Vec<BTreeSet<NodeIndex>>) -> BTreeSet<NodeIndex>| {
        let directs: Vec<_> = sets.iter().map(|(d, _)| d.clone()).collect();
        let combined: Vec<_> = sets.iter().map(|(d, i)| d | i).collect();
        let initial = op(directs);
        let indirect_nodes = op(combined);
        let direct = incorporate_indirect(cx.dag, initial, &indirect_nodes, indirect);
        (direct, indirect_nodes)
    };
    Ok(match spec {
        Spec::All => {
            let all: BTreeSet<NodeIndex> = cx.dag.order.iter().copied().collect();
            (all, BTreeSet::new())
        }
        Spec::Criterion(c) => {
            let direct = criterion_nodes(cx, c)?;
            if direct.is_empty() {
                warnings.push(
                    Diagnostic::warning(
                        Code::NothingSelected,
                        format!("the selector `{}` matches no node", c.raw),
                    )
                    .with_suggestion(&c.value, name_candidates(cx.dag).iter().map(String::as_str)),
                );
            }
            expand_selection(cx.dag, direct, indirect)
        }
        Spec::Union(items) => {
            let sets = items
                .iter()
                .map(|i| resolve(cx, i, indirect, warnings))
                .collect::<Result<Vec<_>, _>>()?;
            combine(sets, |v| v.into_iter().flatten().collect())
        }
        Spec::Intersection(items) => {
            let sets = items
                .iter()
                .map(|i| resolve(cx, i, indirect, warnings))
                .collect::<Result<Vec<_>, _>>()?;
            combine(sets, |v| {
                let mut it = v.into_iter();
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, s| acc.intersection(&s).copied().collect())
            })
        }
        Spec::Difference(include, exclude) => {
            let sets = vec![
                resolve(cx, include, indirect, warnings)?,
                resolve(cx, exclude, indirect, warnings)?,
            ];
            combine(sets, |v| {
                let mut it = v.into_iter();
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, s| acc.difference(&s).copied().collect())
            })
        }
        Spec::WithIndirect(inner, mode) => resolve(cx, inner, *mode, warnings)?,
    })
}

/// The nodes a criterion picks, with its graph operators applied.
fn criterion_nodes(cx: &SelectContext, c: &Criterion) -> Result<BTreeSet<NodeIndex>, Diagnostic> {
    let matcher = Matcher::new(&c.value)?;
    let mut direct = BTreeSet::new();
    for &i in &cx.dag.order {
        if method_matches(cx, i, c, &matcher)? {
            direct.insert(i);
        }
    }
    // Each walk starts from all the matched nodes at once: one pass over the
    // graph however many nodes matched.
    let mut out = direct.clone();
    if let Some(depth) = c.parents {
        walk(&direct, depth, &mut out, |i| cx.dag.parents(i).collect());
    }
    if let Some(depth) = c.children {
        walk(&direct, depth, &mut out, |i| cx.dag.children(i).collect());
    }
    if c.childrens_parents {
        let mut descendants = BTreeSet::new();
        walk(&direct, None, &mut descendants, |i| cx.dag.children(i).collect());
        out.extend(descendants.iter().copied());
        walk(&descendants, None, &mut out, |i| cx.dag.parents(i).collect());
    }
    Ok(out)
}

/// Adds the nodes `next` reaches from any of `starts` in at most `depth`
/// steps (all of them without a depth), the starts included.
fn walk(
    starts: &BTreeSet<NodeIndex>,
    depth: Option<usize>,
    out: &mut BTreeSet<NodeIndex>,
    next: impl Fn(NodeIndex) -> Vec<NodeIndex>,
) {
    let mut seen: std::collections::HashSet<NodeIndex> = starts.iter().copied().collect();
    let mut frontier: Vec<NodeIndex> = starts.iter().copied().collect();
    let mut level = 0;
    while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
        level += 1;
        let mut next_frontier = Vec::new();
        for i in frontier {
            for n in next(i) {
                if seen.insert(n) {
                    next_frontier.push(n);
                }
            }
        }
        frontier = next_frontier;
    }
    out.extend(seen);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_parse_graph_operators_and_methods() {
        let c = parse_criterion("2+tag:daily+1").unwrap();
        assert_eq!(c.method, Method::Tag);
        assert_eq!(c.value, "daily");
        assert_eq!((c.parents, c.children), (Some(Some(2)), Some(Some(1))));
        let c = parse_criterion("@stg_orders").unwrap();
        assert!(c.childrens_parents && c.parents.is_none() && c.children.is_none());
        let c = parse_criterion("config.meta.owner:ana").unwrap();
        assert_eq!(c.method, Method::Config(vec!["meta".into(), "owner".into()]));
        assert_eq!(parse_criterion("models/staging").unwrap().method, Method::Path);
        assert_eq!(parse_criterion("orders.sql").unwrap().method, Method::File);
        assert_eq!(parse_criterion("shop.staging").unwrap().method, Method::Fqn);
    }

    #[test]
    fn malformed_criteria_say_where() {
        assert_eq!(parse_criterion("tag:").unwrap_err().1, 4);
        assert!(parse_criterion("+").is_err());
        assert!(parse_criterion("@+m").is_err());
        let (message, at, len) = parse_criterion("tagz:x").unwrap_err();
        assert!(message.contains("did you mean `tag:`"), "{message}");
        assert_eq!((at, len), (0, 4));
        assert!(parse_criterion("config.:x").is_err());
        assert!(
            parse_criterion("resource_type:nope")
                .unwrap_err()
                .0
                .contains("not a resource type")
        );
        assert!(parse_criterion("source:a.b.c.d").is_err());
        let d = position_error("--select", "a tagz:x", 2, 4, "unknown".into());
        assert_eq!(d.notes[0], "--select a tagz:x\n           ^^^^");
    }

    #[test]
    fn characters_no_selector_holds_are_errors_at_their_column() {
        // See: issue 23 (`+@@tag:((` matched no node and exited 0).
        let (message, at, len) = parse_criterion("+@@tag:((").unwrap_err();
        assert!(
            message.starts_with("unexpected `@` in the selector `+@@tag:((`"),
            "{message}"
        );
        assert_eq!((at, len), (1, 1));
        let (message, at, _) = parse_criterion("tag:nightly(").unwrap_err();
        assert!(message.starts_with("unexpected `(`"), "{message}");
        assert_eq!(at, 11);
        // What selectors do hold still parses.
        for ok in [
            "@orders",
            "models/silver/*",
            "tag:pii-free",
            "path:models/a_b.sql",
            "source:bronze.orders+",
            "stg_[ab]?*",
            "path:models/day=2024 (copy)/x.sql",
            "models/old(copy)/orders.sql",
        ] {
            assert!(parse_criterion(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn fqn_matches_names_prefixes_and_globs() {
        let fqn: Vec<String> = ["shop", "staging", "stg_orders"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(fqn_matches("stg_orders", &fqn, "shop"));
        assert!(fqn_matches("stg_*", &fqn, "shop"));
        assert!(fqn_matches("staging", &fqn, "shop"));
        assert!(fqn_matches("shop.staging", &fqn, "shop"));
        assert!(fqn_matches("staging.*", &fqn, "shop"));
        assert!(!fqn_matches("marts", &fqn, "shop"));
        assert!(!fqn_matches("orders", &fqn, "shop"));
    }
}
