//! The relations registered in the session: each model's upstream is made
//! readable before it runs. Nodes built in this run register themselves
//! when they finish; nodes outside the selection are found in the lake
//! (Delta tables, stored views) the first time something reads them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::catalog::MemorySchemaProvider;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use petgraph::graph::NodeIndex;
use url::Url;

use super::row_counts::RowCounts;
use super::sources::source_provider;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::{Dag, Materialization, ResourceType};
use crate::lake;
use crate::lake::Relation;
use crate::project::Project;

pub struct Registry {
    pub ctx: SessionContext,
    pub lake: Url,
    /// Row counts of the CSV and JSON source files read, kept in the lake.
    pub row_counts: RowCounts,
    registered: Mutex<HashSet<NodeIndex>>,
    /// `--defer`: where the state's run wrote the nodes this run does not
    /// build; and `--favor-state`: read there even when this lake has one.
    deferred: Mutex<(HashMap<NodeIndex, Url>, bool)>,
    /// The SQL a deferred view is planned with: this project's, whose
    /// relations are read by the same rules (the state's stored SQL names
    /// the state's schemas).
    deferred_views: Mutex<HashMap<NodeIndex, String>>,
    /// Lazy registrations run one at a time, so that two models reading
    /// the same source do not both infer its schema.
    lazy: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(ctx: SessionContext, lake: Url) -> Registry {
        Registry {
            ctx,
            row_counts: RowCounts::new(lake.clone()),
            lake,
            registered: Mutex::new(HashSet::new()),
            deferred: Mutex::new((HashMap::new(), false)),
            deferred_views: Mutex::new(HashMap::new()),
            lazy: tokio::sync::Mutex::new(()),
        }
    }

    pub fn location(&self, relation: &Relation) -> Url {
        lake::relation_location(&self.lake, relation)
    }

    /// Registers (or replaces) a relation.
    pub fn register(
        &self,
        index: NodeIndex,
        relation: &Relation,
        provider: Arc<dyn TableProvider>,
    ) -> Result<(), String> {
        // Held throughout: two models of a new schema finishing at once
        // would otherwise each create the schema, and the second would
        // replace the first's, dropping the table registered in it.
        let mut registered = self.registered.lock().expect("registry poisoned");
        let catalog = self.ctx.catalog("datafusion").ok_or("the default catalog is missing")?;
        if catalog.schema(&relation.schema).is_none() {
            catalog
                .register_schema(&relation.schema, Arc::new(MemorySchemaProvider::new()))
                .map_err(|e| e.to_string())?;
        }
        let reference = TableReference::partial(relation.schema.as_str(), relation.identifier.as_str());
        let _ = self.ctx.deregister_table(reference.clone());
        self.ctx
            .register_table(reference, provider)
            .map_err(|e| e.to_string())?;
        registered.insert(index);
        Ok(())
    }

    /// Forgets a relation: the next reader loads it from the lake again.
    pub fn unregister(&self, index: NodeIndex, relation: &Relation) {
        let mut registered = self.registered.lock().expect("registry poisoned");
        let reference = TableReference::partial(relation.schema.as_str(), relation.identifier.as_str());
        let _ = self.ctx.deregister_table(reference);
        registered.remove(&index);
    }

    pub fn register_view(
        &self,
        index: NodeIndex,
        relation: &Relation,
        plan: LogicalPlan,
        sql: String,
    ) -> Result<(), String> {
        let view = ViewTable::new(plan, Some(sql));
        self.register(index, relation, Arc::new(view))
    }

    pub fn is_registered(&self, index: NodeIndex) -> bool {
        self.registered.lock().expect("registry poisoned").contains(&index)
    }

    /// `--defer`: the nodes not built by this run are read from `locations`
    /// (another lake's tables and views) when this lake has none of its
    /// own, or always with `favor_state`.
    pub fn defer_to(&self, locations: HashMap<NodeIndex, Url>, views: HashMap<NodeIndex, String>, favor_state: bool) {
        *self.deferred.lock().expect("registry poisoned") = (locations, favor_state);
        *self.deferred_views.lock().expect("registry poisoned") = views;
    }

    /// The location `--defer` gives `index`, and whether the state is
    /// favored over this lake.
    pub fn deferred(&self, index: NodeIndex) -> Option<(Url, bool)> {
        let deferred = self.deferred.lock().expect("registry poisoned");
        deferred.0.get(&index).map(|url| (url.clone(), deferred.1))
    }

    /// Where `index` is read from: its deferred location when it has one
    /// and `here` holds nothing (or the state is favored), else `here`.
    fn read_location(&self, index: NodeIndex, here: Url, exists_here: bool) -> (Url, bool) {
        let deferred = self.deferred.lock().expect("registry poisoned");
        match deferred.0.get(&index) {
            Some(url) if deferred.1 || !exists_here => (url.clone(), true),
            _ => (here, false),
        }
    }

    /// The nodes registered now.
    pub fn registered(&self) -> HashSet<NodeIndex> {
        self.registered.lock().expect("registry poisoned").clone()
    }

    /// Makes every relation `index` reads available.
    pub async fn ensure_parents(&self, dag: &Dag, project: &Project, index: NodeIndex) -> Result<(), Diagnostic> {
        for parent in dag.parents(index).collect::<Vec<_>>() {
            self.ensure(dag, project, parent).await?;
        }
        Ok(())
    }

    /// Makes `index` readable, finding it in the lake if this run did not
    /// build it.
    pub async fn ensure(&self, dag: &Dag, project: &Project, index: NodeIndex) -> Result<(), Diagnostic> {
        let node = dag.node(index);
        if node.materialized == Materialization::Ephemeral {
            // Inlined as a CTE: its own parents must be readable.
            return Box::pin(self.ensure_parents(dag, project, index)).await;
        }
        if self.is_registered(index) {
            return Ok(());
        }
        let _guard = self.lazy.lock().await;
        if self.is_registered(index) {
            return Ok(());
        }
        let not_built = |detail: String| {
            Diagnostic::error(
                Code::NotBuilt,
                format!("`{}` has not been built yet: {detail}", node.name),
            )
            .with_span(Some(Span::file(&node.path)))
            .with_help(format!("build it first: `etl build --select {}`", node.name))
        };
        let provider: Arc<dyn TableProvider> = match node.resource_type {
            ResourceType::Source => source_provider(&self.ctx, &self.row_counts, node.source(project)).await?,
            _ if node.materialized == Materialization::View => {
                let here = self.location(&node.relation);
                let read = |location: Url| async move {
                    lake::read_view(&self.ctx, &location)
                        .await
                        .map_err(|e| Diagnostic::error(Code::Lake, e.to_string()))
                };
                let mine = read(here.clone()).await?;
                let (location, deferred) = self.read_location(index, here, mine.is_some());
                let deferred_sql = deferred
                    .then(|| {
                        self.deferred_views
                            .lock()
                            .expect("registry poisoned")
                            .get(&index)
                            .cloned()
                    })
                    .flatten();
                let view = match deferred_sql {
                    Some(sql) => {
                        tracing::info!(node = %node.name, %location, "deferred: its SQL reads the state's lake");
                        lake::ViewDefinition {
                            unique_id: node.unique_id.clone(),
                            sql,
                            parents: Vec::new(),
                            fingerprint: None,
                        }
                    }
                    None => mine.ok_or_else(|| not_built(format!("no view at `{location}`")))?,
                };
                drop(_guard);
                Box::pin(self.ensure_parents(dag, project, index)).await?;
                let plan = super::plan_sql(&self.ctx.state(), &view.sql).await.map_err(|e| {
                    Diagnostic::error(
                        Code::StaleView,
                        format!("the stored view `{}` no longer plans: {}", node.name, e.find_root()),
                    )
                })?;
                return self
                    .register_view(index, &node.relation, plan, view.sql)
                    .map_err(|e| Diagnostic::error(Code::Register, e));
            }
            _ => {
                let here = self.location(&node.relation);
                let mine = lake::delta_provider(&self.ctx, &here).await;
                let (location, deferred) = self.read_location(index, here, mine.is_ok());
                if deferred {
                    tracing::info!(node = %node.name, %location, "deferred: read from the state's lake");
                    lake::delta_provider(&self.ctx, &location)
                        .await
                        .map_err(|e| not_built(format!("nor in the state's lake: {e}")))?
                } else {
                    mine.map_err(|e| not_built(e.to_string()))?
                }
            }
        };
        self.register(index, &node.relation, provider)
            .map_err(|e| Diagnostic::error(Code::Register, e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::empty::EmptyTable;

    use super::*;

    #[test]
    fn models_of_a_new_schema_registered_at_once_are_all_readable() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 200;
        let registry = Registry::new(SessionContext::new(), Url::parse("file:///lake/").unwrap());
        let barrier = Barrier::new(THREADS);
        let provider: Arc<dyn TableProvider> = Arc::new(EmptyTable::new(Arc::new(Schema::empty())));
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (registry, barrier, provider) = (&registry, &barrier, provider.clone());
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        let relation = Relation {
                            schema: format!("s{round}"),
                            identifier: format!("t{thread}"),
                            ephemeral: false,
                        };
                        barrier.wait();
                        let index = NodeIndex::new(round * THREADS + thread);
                        registry.register(index, &relation, provider.clone()).unwrap();
                    }
                });
            }
        });
        let mut missing = Vec::new();
        for round in 0..ROUNDS {
            for thread in 0..THREADS {
                let reference = TableReference::partial(format!("s{round}"), format!("t{thread}"));
                if !registry.ctx.table_exist(reference).unwrap() {
                    missing.push(format!("s{round}.t{thread}"));
                }
            }
        }
        assert_eq!(missing, Vec::<String>::new());
    }
}
