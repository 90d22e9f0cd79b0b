//! The DAG of seeds, sources and models (petgraph), built from the refs and
//! sources each model called while rendering; cycles and clashing relations
//! are errors here. Selection (`--select`/`--exclude`) picks nodes from it.

mod select;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::config::{Config, RawConfig, Scope};
pub use crate::config::{Materialization, ResourceType};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::lake::Relation;
use crate::project::Project;
use crate::render::{Rendered, RenderedModel};
pub use select::{IndirectSelection, PreviousState, SelectArgs, SelectContext, Selection, select};

#[derive(Debug, Clone)]
pub struct Node {
    pub unique_id: String,
    pub name: String,
    pub resource_type: ResourceType,
    pub materialized: Materialization,
    pub relation: Relation,
    /// The file that defines it (the properties file for a source).
    pub path: PathBuf,
    pub fqn: Vec<String>,
    pub config: Config,
    /// Rendered SQL, for models.
    pub sql: Option<String>,
    /// Where it is defined in the project (and, for models and tests, in
    /// the rendered ones).
    pub defined: Defined,
}

/// Where a node is defined: its place in the project's list of its kind
/// (`Project::seeds`, `sources`, `models`, `data_tests`), which is also its
/// place in the rendered models or tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defined {
    Seed(usize),
    Source(usize),
    Model(usize),
    Test(usize),
    UnitTest(usize),
    Exposure(usize),
}

impl Node {
    pub fn tags(&self) -> &[String] {
        &self.config.tags
    }

    // A node's kind is fixed when the DAG is built: asking a node for a
    // definition of another kind is a bug of etl's, and says so.
    fn wrong_kind(&self, wanted: &str) -> ! {
        panic!(
            "`{}` is a {}, not a {wanted}",
            self.unique_id,
            self.resource_type.as_str()
        )
    }

    pub fn seed<'p>(&self, project: &'p Project) -> &'p crate::project::Seed {
        match self.defined {
            Defined::Seed(i) => &project.seeds[i],
            _ => self.wrong_kind("seed"),
        }
    }

    pub fn source<'p>(&self, project: &'p Project) -> &'p crate::project::Source {
        match self.defined {
            Defined::Source(i) => &project.sources[i],
            _ => self.wrong_kind("source"),
        }
    }

    pub fn model<'p>(&self, project: &'p Project) -> &'p crate::project::Model {
        match self.defined {
            Defined::Model(i) => &project.models[i],
            _ => self.wrong_kind("model"),
        }
    }

    pub fn test<'p>(&self, project: &'p Project) -> &'p crate::project::DataTest {
        match self.defined {
            Defined::Test(i) => &project.data_tests[i],
            _ => self.wrong_kind("data test"),
        }
    }

    pub fn exposure<'p>(&self, project: &'p Project) -> &'p crate::project::Exposure {
        match self.defined {
            Defined::Exposure(i) => &project.exposures[i],
            _ => self.wrong_kind("exposure"),
        }
    }

    pub fn unit_test<'p>(&self, project: &'p Project) -> &'p crate::project::UnitTest {
        match self.defined {
            Defined::UnitTest(i) => &project.unit_tests[i],
            _ => self.wrong_kind("unit test"),
        }
    }

    /// The index of a model or data test in the project's list of them.
    pub fn defined_index(&self) -> Option<usize> {
        match self.defined {
            Defined::Model(i) | Defined::Test(i) => Some(i),
            _ => None,
        }
    }

    /// The rendered SQL of a model (from `models`) or a test (from `tests`).
    pub fn rendered<'r>(&self, models: &'r [RenderedModel], tests: &'r [RenderedModel]) -> &'r RenderedModel {
        match self.defined {
            Defined::Model(i) => &models[i],
            Defined::Test(i) => &tests[i],
            _ => self.wrong_kind("model or test"),
        }
    }
}

#[derive(Debug)]
pub struct Dag {
    pub graph: DiGraph<Node, ()>,
    /// Every node in an order where parents come before children.
    pub order: Vec<NodeIndex>,
    pub by_id: BTreeMap<String, NodeIndex>,
    /// What the nodes' config sets that etl accepts but does not act on,
    /// each said once.
    pub warnings: Vec<Diagnostic>,
    /// Each node's place in `order`, by node index.
    rank: Vec<usize>,
    /// What [`Dag::find`] answers: the first node of `order` of each name.
    by_name: HashMap<String, NodeIndex>,
}

impl Dag {
    pub fn node(&self, index: NodeIndex) -> &Node {
        &self.graph[index]
    }

    pub fn parents(&self, index: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(index, petgraph::Direction::Incoming)
    }

    pub fn children(&self, index: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(index, petgraph::Direction::Outgoing)
    }

    /// Models, seeds and sources by name, as `ref()` and `source()` see them.
    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.by_name.get(name).copied()
    }

    /// Every node `index` depends on, directly or not.
    pub fn ancestors(&self, index: NodeIndex) -> std::collections::HashSet<NodeIndex> {
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<NodeIndex> = self.parents(index).collect();
        while let Some(p) = stack.pop() {
            if seen.insert(p) {
                stack.extend(self.parents(p));
            }
        }
        seen
    }

    /// The ephemeral models `index` reads, directly or through other
    /// ephemerals, parents first: these become CTEs of its SQL.
    pub fn ephemeral_ancestors(&self, index: NodeIndex) -> Vec<NodeIndex> {
        self.ephemeral_ancestors_but(index, &[])
    }

    /// [`Dag::ephemeral_ancestors`], leaving out `kept` (and what only
    /// they read): a unit test gives their rows.
    pub fn ephemeral_ancestors_but(&self, index: NodeIndex, kept: &[NodeIndex]) -> Vec<NodeIndex> {
        let mut found = Vec::new();
        let mut stack: Vec<NodeIndex> = self.parents(index).collect();
        while let Some(p) = stack.pop() {
            if self.graph[p].materialized == Materialization::Ephemeral && !found.contains(&p) && !kept.contains(&p) {
                found.push(p);
                stack.extend(self.parents(p));
            }
        }
        // Keep DAG order so that each CTE only uses the ones before it.
        found.sort_by_key(|i| self.rank[i.index()]);
        found
    }
}

impl Dag {
    /// The nodes whose relations the compiled SQL of `index` scans: its
    /// parents and those of the ephemeral models inlined into it, other
    /// than the ephemerals themselves.
    pub fn scanned_parents(&self, index: NodeIndex) -> Vec<NodeIndex> {
        let mut out: Vec<NodeIndex> = Vec::new();
        let ephemerals = self.ephemeral_ancestors(index);
        for reader in std::iter::once(index).chain(ephemerals.iter().copied()) {
            for p in self.parents(reader) {
                if self.graph[p].materialized != Materialization::Ephemeral && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

pub fn unique_id(resource_type: ResourceType, project: &str, name: &str) -> String {
    format!("{}.{project}.{name}", resource_type.as_str())
}

/// Builds the DAG of the project's enabled nodes.
pub fn build(project: &Project, rendered: &Rendered) -> Result<Dag, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut graph = DiGraph::new();
    let mut by_name: BTreeMap<String, NodeIndex> = BTreeMap::new();
    let mut by_source: BTreeMap<(String, String), NodeIndex> = BTreeMap::new();
    let mut by_id = BTreeMap::new();
    // Sources read from the lake's relation of their schema and name.
    let mut in_lake: Vec<(NodeIndex, (String, String))> = Vec::new();

    for (i, seed) in project.seeds.iter().enumerate() {
        let relation = rendered.relations.seeds[&seed.name].clone();
        let scope = Scope {
            resource: ResourceType::Seed,
            name: &seed.name,
            fallback: Span::file(&seed.path),
            generic_test: false,
            keyed_default: keyed_default(project),
        };
        let Some(config) = checked(&seed.config, &scope, &mut errors) else {
            continue;
        };
        let node = Node {
            unique_id: unique_id(ResourceType::Seed, &seed.fqn[0], &seed.name),
            name: seed.name.clone(),
            resource_type: ResourceType::Seed,
            materialized: Materialization::Seed,
            relation,
            path: seed.path.clone(),
            fqn: seed.fqn.clone(),
            config,
            sql: None,
            defined: Defined::Seed(i),
        };
        let id = graph.add_node(node);
        by_name.insert(seed.name.clone(), id);
    }
    for (i, source) in project.sources.iter().enumerate() {
        let key = (source.source_name.clone(), source.name.clone());
        let name = format!("{}.{}", source.source_name, source.name);
        let scope = Scope {
            resource: ResourceType::Source,
            name: &name,
            fallback: source
                .span
                .clone()
                .unwrap_or_else(|| Span::file(&source.properties_file)),
            generic_test: false,
            keyed_default: keyed_default(project),
        };
        let Some(config) = checked(&source.config, &scope, &mut errors) else {
            continue;
        };
        let node = Node {
            // A package's sources and tests are the package's, as in dbt.
            unique_id: format!(
                "source.{}.{}.{}",
                source.fqn.first().unwrap_or(&project.name),
                source.source_name,
                source.name
            ),
            name: source.name.clone(),
            resource_type: ResourceType::Source,
            materialized: Materialization::External,
            relation: rendered.relations.sources[&key].clone(),
            path: source.properties_file.clone(),
            fqn: source.fqn.clone(),
            config,
            sql: None,
            defined: Defined::Source(i),
        };
        let id = graph.add_node(node);
        by_source.insert(key, id);
        if let Some(relation) = &source.in_lake {
            in_lake.push((id, relation.clone()));
        }
    }
    let mut disabled = BTreeMap::new();
    for (i, model) in rendered.models.iter().enumerate() {
        if !model.config.enabled() {
            disabled.insert(model.name.clone(), model.path.clone());
            continue;
        }
        let resource = project.models[i].resource_type;
        let scope = Scope {
            resource,
            name: &model.name,
            fallback: Span::file(&model.path),
            generic_test: false,
            keyed_default: keyed_default(project),
        };
        let Some(config) = checked(&model.config, &scope, &mut errors) else {
            continue;
        };
        let node = Node {
            unique_id: unique_id(resource, &project.models[i].fqn[0], &model.name),
            name: model.name.clone(),
            resource_type: resource,
            materialized: config.materialized,
            relation: model.relation.clone(),
            path: model.path.clone(),
            fqn: project.models[i].fqn.clone(),
            config,
            sql: Some(model.sql.clone()),
            defined: Defined::Model(i),
        };
        let id = graph.add_node(node);
        by_name.insert(model.name.clone(), id);
    }

    for model in rendered.models.iter().filter(|m| m.config.enabled()) {
        let Some(&child) = by_name.get(&model.name) else {
            continue;
        };
        for call in &model.refs {
            match by_name.get(&call.name) {
                Some(&parent) => {
                    graph.update_edge(parent, child, ());
                }
                None => errors.push(
                    Diagnostic::error(
                        Code::DisabledRef,
                        format!("model `{}` refers to `{}`, which is disabled", model.name, call.name),
                    )
                    .with_span(call.span.clone().or_else(|| Some(Span::file(&model.path))))
                    .with_note(format!(
                        "`{}` sets `enabled: false`",
                        disabled
                            .get(&call.name)
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| call.name.clone())
                    )),
                ),
            }
        }
        for key in &model.sources {
            if let Some(&parent) = by_source.get(key) {
                graph.update_edge(parent, child, ());
            }
        }
    }

    // A source that is the lake table a seed or model of the project
    // writes is read after it is built.
    for (source, (schema, identifier)) in in_lake {
        let writer = graph.node_indices().find(|&i| {
            let n = &graph[i];
            matches!(
                n.resource_type,
                ResourceType::Seed | ResourceType::Model | ResourceType::Snapshot
            ) && n.relation.schema == schema
                && n.relation.identifier == identifier
        });
        let Some(writer) = writer else { continue };
        let node = &graph[writer];
        if matches!(node.materialized, Materialization::View | Materialization::Ephemeral) {
            let source_node = &graph[source];
            errors.push(
                Diagnostic::error(
                    Code::MissingLocation,
                    format!(
                        "source `{}` has no `location`, and the lake's `{schema}.{identifier}` is {} `{}`, \
                         which writes no table",
                        source_node.fqn[1..].join("."),
                        if node.materialized == Materialization::View {
                            "the view"
                        } else {
                            "the ephemeral model"
                        },
                        node.name
                    ),
                )
                .with_span(Some(Span::file(&source_node.path)))
                .with_help(format!("materialize `{}` as a table, or `ref()` it instead", node.name)),
            );
            continue;
        }
        graph.update_edge(writer, source, ());
    }

    add_tests(project, rendered, &mut graph, &by_name, &by_source, &mut errors);
    add_unit_tests(project, &mut graph, &by_name, &by_source, &mut errors);
    add_exposures(project, &mut graph, &by_name, &by_source, &mut errors);
    check_relations_unique(&graph, &mut errors);
    // A key set for a folder is checked on every node below it: said once.
    dedup(&mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let order = match toposort(&graph, None) {
        Ok(order) => order,
        Err(_) => return Err(vec![cycle_error(&graph, rendered)]),
    };
    let mut rank = vec![0; graph.node_count()];
    let mut by_name = HashMap::new();
    for (at, &i) in order.iter().enumerate() {
        by_id.insert(graph[i].unique_id.clone(), i);
        rank[i.index()] = at;
        by_name.entry(find_name(&graph[i])).or_insert(i);
    }
    let mut warnings: Vec<Diagnostic> = graph.node_weights().flat_map(|n| n.config.warnings.clone()).collect();
    dedup(&mut warnings);
    Ok(Dag {
        graph,
        order,
        by_id,
        warnings,
        rank,
        by_name,
    })
}

/// The name [`Dag::find`] knows a node by: `source.table` for a source
/// table, its name for the others.
fn find_name(node: &Node) -> String {
    match node.resource_type {
        ResourceType::Source => format!("{}.{}", node.relation.schema, node.name),
        _ => node.name.clone(),
    }
}

/// Data tests are nodes whose parents are what they test and what they
/// read. A test on a disabled or missing node is left out, as in dbt.
fn add_tests(
    project: &Project,
    rendered: &Rendered,
    graph: &mut DiGraph<Node, ()>,
    by_name: &BTreeMap<String, NodeIndex>,
    by_source: &BTreeMap<(String, String), NodeIndex>,
    errors: &mut Vec<Diagnostic>,
) {
    for (i, (test, sql)) in project.data_tests.iter().zip(&rendered.tests).enumerate() {
        let parents: Option<Vec<NodeIndex>> = sql
            .refs
            .iter()
            .map(|r| by_name.get(&r.name).copied())
            .chain(sql.sources.iter().map(|s| by_source.get(s).copied()))
            .collect();
        let Some(parents) = parents else { continue };
        if !sql.config.enabled() {
            continue;
        }
        let scope = Scope {
            resource: ResourceType::Test,
            name: &test.name,
            fallback: test.span.clone().unwrap_or_else(|| Span::file(&test.path)),
            generic_test: test.is_generic(),
            keyed_default: keyed_default(project),
        };
        let Some(config) = checked(&sql.config, &scope, errors) else {
            continue;
        };
        let node = Node {
            unique_id: unique_id(
                ResourceType::Test,
                test.fqn.first().unwrap_or(&project.name),
                &test.name,
            ),
            name: test.name.clone(),
            resource_type: ResourceType::Test,
            materialized: Materialization::Test,
            relation: sql.relation.clone(),
            path: test.path.clone(),
            fqn: test.fqn.clone(),
            config,
            sql: Some(sql.sql.clone()),
            defined: Defined::Test(i),
        };
        let id = graph.add_node(node);
        for parent in parents {
            graph.update_edge(parent, id, ());
        }
    }
}

/// `diags` without repeats, in their first order.
fn dedup(diags: &mut Vec<Diagnostic>) {
    let mut seen = Vec::new();
    diags.retain(|d| {
        let first = !seen.contains(d);
        if first {
            seen.push(d.clone());
        }
        first
    });
}

/// A node's config, checked; its problems go to `errors`.
/// Unit tests are nodes whose parents are what their model reads, run
/// before it (see `materialize::run_edges`). Each given input must be one
/// of them (or `this`), and each of them given.
fn add_unit_tests(
    project: &Project,
    graph: &mut DiGraph<Node, ()>,
    by_name: &BTreeMap<String, NodeIndex>,
    by_source: &BTreeMap<(String, String), NodeIndex>,
    errors: &mut Vec<Diagnostic>,
) {
    use crate::project::Input;
    for (i, test) in project.unit_tests.iter().enumerate() {
        let fail = |message: String| {
            Diagnostic::error(Code::InvalidConfig, format!("unit test `{}`: {message}", test.name))
                .with_span(test.span.clone())
        };
        let model = by_name
            .get(&test.model)
            .copied()
            .filter(|&m| graph[m].resource_type == ResourceType::Model);
        let Some(model) = model else {
            // A disabled model's unit tests are left out, as its tests are.
            if !project.models.iter().any(|m| m.name == test.model) {
                errors.push(
                    fail(format!("`model: {}` is not a model of the project", test.model))
                        .with_suggestion(&test.model, project.models.iter().map(|m| m.name.as_str())),
                );
            }
            continue;
        };
        let scope = Scope {
            resource: ResourceType::UnitTest,
            name: &test.name,
            fallback: test.span.clone().unwrap_or_else(|| Span::file(&test.path)),
            generic_test: false,
            keyed_default: keyed_default(project),
        };
        if !test.config.enabled() {
            continue;
        }
        let Some(config) = checked(&test.config, &scope, errors) else {
            continue;
        };
        // What the test gives: nodes named by its inputs.
        let mut given = Vec::new();
        let mut ok = true;
        let resolved: Vec<Option<NodeIndex>> = test
            .given
            .iter()
            .map(|g| match &g.input {
                Input::Ref(name) => by_name.get(name).copied(),
                Input::Source(s, t) => by_source.get(&(s.clone(), t.clone())).copied(),
                Input::This => Some(model),
            })
            .collect();
        // What the model's SQL scans, through the ephemeral models it
        // inlines (an ephemeral model given, with SQL rows as dbt has
        // them, stands for what it reads).
        let scanned: Vec<NodeIndex> = {
            let mut out: Vec<NodeIndex> = Vec::new();
            let mut stack: Vec<NodeIndex> = graph.neighbors_directed(model, petgraph::Direction::Incoming).collect();
            while let Some(p) = stack.pop() {
                let is_given = resolved.contains(&Some(p));
                if graph[p].materialized == Materialization::Ephemeral && !is_given {
                    stack.extend(graph.neighbors_directed(p, petgraph::Direction::Incoming));
                } else if !out.contains(&p) {
                    out.push(p);
                }
            }
            out
        };
        for (g, found) in test.given.iter().zip(&resolved) {
            match *found {
                Some(node) if node == model || scanned.contains(&node) => {
                    let kind = &graph[node];
                    if matches!(g.rows, crate::project::Rows::Own) && kind.resource_type != ResourceType::Seed {
                        errors.push(
                            fail(format!("`{}` needs `rows` (or a `fixture`)", g.input))
                                .with_span(g.span.clone())
                                .with_note("only a seed's own rows are read when none are given, as in dbt"),
                        );
                        ok = false;
                    }
                    if kind.materialized == Materialization::Ephemeral
                        && !matches!(g.rows, crate::project::Rows::Sql(_))
                    {
                        errors.push(
                            fail(format!(
                                "`{}` is an ephemeral model: give its rows as SQL (`format: sql`), as dbt asks",
                                g.input
                            ))
                            .with_span(g.span.clone()),
                        );
                        ok = false;
                    }
                    given.push(node);
                }
                _ => {
                    let read: Vec<String> = scanned.iter().map(|&p| input_text(&graph[p])).collect();
                    errors.push(
                        Diagnostic::error(
                            Code::InvalidConfig,
                            format!(
                                "unit test `{}`: `{}` is not an input of `{}`",
                                test.name, g.input, test.model
                            ),
                        )
                        .with_span(g.span.clone())
                        .with_note(format!("`{}` reads {}", test.model, read.join(", "))),
                    );
                    ok = false;
                }
            }
        }
        // A seed not given is read as it is, as in dbt.
        let missing: Vec<String> = scanned
            .iter()
            .filter(|p| !given.contains(p) && graph[**p].resource_type != ResourceType::Seed)
            .map(|&p| input_text(&graph[p]))
            .collect();
        if !missing.is_empty() {
            errors.push(
                fail(format!("`{}` reads {}, not given", test.model, missing.join(", "))).with_help(
                    "a unit test mocks every input of its model but seeds: add a `given` entry for each (`rows: []` for none)",
                ),
            );
            ok = false;
        }
        if !ok {
            continue;
        }
        let tested = &graph[model];
        let node = Node {
            unique_id: format!("unit_test.{}.{}.{}", test.package, test.model, test.name),
            name: test.name.clone(),
            resource_type: ResourceType::UnitTest,
            materialized: Materialization::Unit,
            relation: tested.relation.clone(),
            path: test.path.clone(),
            fqn: test.fqn.clone(),
            config,
            sql: None,
            defined: Defined::UnitTest(i),
        };
        let id = graph.add_node(node);
        for parent in scanned {
            graph.update_edge(parent, id, ());
        }
    }
}

/// Exposures are nodes under what they read; they are never built.
fn add_exposures(
    project: &Project,
    graph: &mut DiGraph<Node, ()>,
    by_name: &BTreeMap<String, NodeIndex>,
    by_source: &BTreeMap<(String, String), NodeIndex>,
    errors: &mut Vec<Diagnostic>,
) {
    use crate::project::Input;
    for (i, exposure) in project.exposures.iter().enumerate() {
        if !exposure.config.enabled() {
            continue;
        }
        let mut parents = Vec::new();
        for (input, span) in &exposure.depends_on {
            let found = match input {
                Input::Ref(name) => by_name.get(name).copied(),
                Input::Source(s, t) => by_source.get(&(s.clone(), t.clone())).copied(),
                Input::This => None,
            };
            match found {
                Some(node) => parents.push(node),
                None => errors.push(
                    Diagnostic::error(
                        Code::UnknownRef,
                        format!(
                            "exposure `{}` depends on `{input}`, which is not an enabled node of the project",
                            exposure.name
                        ),
                    )
                    .with_span(span.clone()),
                ),
            }
        }
        let scope = Scope {
            resource: ResourceType::Exposure,
            name: &exposure.name,
            fallback: exposure.span.clone().unwrap_or_else(|| Span::file(&exposure.path)),
            generic_test: false,
            keyed_default: keyed_default(project),
        };
        let Some(config) = checked(&exposure.config, &scope, errors) else {
            continue;
        };
        let node = Node {
            unique_id: format!("exposure.{}.{}", exposure.package, exposure.name),
            name: exposure.name.clone(),
            resource_type: ResourceType::Exposure,
            materialized: Materialization::Exposure,
            relation: Relation {
                schema: String::new(),
                identifier: exposure.name.clone(),
                ephemeral: true,
            },
            path: exposure.path.clone(),
            fqn: exposure.fqn.clone(),
            config,
            sql: None,
            defined: Defined::Exposure(i),
        };
        let id = graph.add_node(node);
        for parent in parents {
            graph.update_edge(parent, id, ());
        }
    }
}

/// How a unit test's `input:` names a node.
fn input_text(node: &Node) -> String {
    match node.resource_type {
        ResourceType::Source => format!(
            "source('{}', '{}')",
            node.fqn
                .get(node.fqn.len().saturating_sub(2))
                .cloned()
                .unwrap_or_default(),
            node.name
        ),
        _ => format!("ref('{}')", node.name),
    }
}

fn checked(raw: &RawConfig, scope: &Scope<'_>, errors: &mut Vec<Diagnostic>) -> Option<Config> {
    Config::check(raw.clone(), scope).map_err(|e| errors.extend(e)).ok()
}

fn check_relations_unique(graph: &DiGraph<Node, ()>, errors: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<(String, String), &Node> = BTreeMap::new();
    for node in graph.node_weights() {
        if matches!(
            node.materialized,
            Materialization::Ephemeral | Materialization::Test | Materialization::Unit | Materialization::Exposure
        ) {
            continue;
        }
        let key = (node.relation.schema.clone(), node.relation.identifier.clone());
        if let Some(first) = seen.insert(key, node) {
            errors.push(
                Diagnostic::error(
                    Code::DuplicateRelation,
                    format!(
                        "`{}` and `{}` would both be written as `{}.{}`",
                        first.unique_id, node.unique_id, node.relation.schema, node.relation.identifier
                    ),
                )
                .with_span(Some(Span::file(&node.path)))
                .with_help("give one of them another `schema` or `alias`"),
            );
        }
    }
}

/// Names the models of one cycle, in order, and points at the ref that
/// closes it.
fn cycle_error(graph: &DiGraph<Node, ()>, rendered: &Rendered) -> Diagnostic {
    let scc = tarjan_scc(graph)
        .into_iter()
        .find(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
        .unwrap_or_default();
    let Some(&start) = scc.iter().min_by_key(|&&i| graph[i].name.clone()) else {
        return Diagnostic::error(Code::Cycle, "the models form a cycle");
    };
    // Walk forward inside the component until we come back to the start.
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = graph
            .edges(current)
            .map(|e| e.target())
            .filter(|t| scc.contains(t))
            .min_by_key(|&t| (t != start, !path.contains(&t), graph[t].name.clone()));
        let Some(next) = next else { break };
        if next == start || path.contains(&next) {
            path.push(next);
            break;
        }
        path.push(next);
        current = next;
    }
    let names: Vec<&str> = path.iter().map(|&i| graph[i].name.as_str()).collect();
    // The last edge feeds the start again: the start refers to the node
    // before it.
    let closing_child = &graph[path[path.len() - 1]];
    let closing_parent = &graph[path[path.len() - 2]];
    let span = rendered
        .models
        .iter()
        .find(|m| m.name == closing_child.name)
        .and_then(|m| m.refs.iter().find(|r| r.name == closing_parent.name))
        .and_then(|r| r.span.clone());
    Diagnostic::error(Code::Cycle, format!("the models form a cycle: {}", names.join(" -> ")))
        .with_span(span)
        .with_label(format!(
            "`{}` refers to `{}`, which depends on it",
            closing_child.name, closing_parent.name
        ))
        .with_note("`a -> b` reads: `b` refers to `a`")
        .with_help("a model cannot depend on itself, even through other models")
}

/// The incremental strategy of a model with a `unique_key` and no
/// strategy: dbt-duckdb deletes and inserts, etl's own projects merge.
fn keyed_default(project: &Project) -> crate::config::Strategy {
    match project.target.dialect {
        crate::project::Dialect::DuckDb => crate::config::Strategy::DeleteInsert,
        crate::project::Dialect::DataFusion => crate::config::Strategy::Merge,
    }
}
