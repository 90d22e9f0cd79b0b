//! Column lineage read off a model's logical plan: for each output column,
//! the columns of the tables it scans that the column derives from, and
//! how (passed through, renamed, computed, aggregated); and the columns
//! its rows are filtered or joined on. The plan is DataFusion's, the one
//! the check makes and the build runs, so the lineage is the query's, not
//! a guess from its text: `select *`, CTEs, ephemeral models inlined as
//! CTEs, subqueries and unions are followed through.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, JoinType, TableReference};
use datafusion::logical_expr::utils::grouping_set_to_exprlist;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};
use petgraph::graph::NodeIndex;

/// How an output column comes from an upstream one, weakest first: the
/// strongest step on the way is the one that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum How {
    /// The same column under the same name.
    PassedThrough,
    /// The same values under another name.
    Renamed,
    /// An expression of it, row by row.
    Computed,
    /// An aggregate or window function over it.
    Aggregated,
}

impl How {
    pub fn parse(text: &str) -> Option<How> {
        [How::PassedThrough, How::Renamed, How::Computed, How::Aggregated]
            .into_iter()
            .find(|h| h.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            How::PassedThrough => "passed through",
            How::Renamed => "renamed",
            How::Computed => "computed",
            How::Aggregated => "aggregated",
        }
    }
}

/// One upstream column of a model column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub node: NodeIndex,
    pub column: String,
    pub how: How,
}

/// A model's column lineage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lineage {
    /// Each output column, in the model's order, with where it comes from
    /// (nothing for a constant).
    pub columns: Vec<(String, Vec<Origin>)>,
    /// The upstream columns the model's rows are filtered or joined on.
    pub filtered_on: BTreeSet<(NodeIndex, String)>,
}

/// The nodes scanned tables are: by lower-case schema and table name (an
/// ephemeral model by no schema and the name of its CTE).
pub type Tables = HashMap<(String, String), NodeIndex>;

/// A step on the way from an upstream column, before the output name is
/// known (direct steps become passed through or renamed at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Direct,
    Computed,
    Aggregated,
}

/// Each upstream column a field comes from, with its strongest step.
type Origins = BTreeMap<(NodeIndex, String), Step>;

/// The lineage of `plan`, its scans named by `tables`.
pub fn of_plan(plan: &LogicalPlan, tables: &Tables) -> Lineage {
    let mut walk = Walk {
        tables,
        filtered_on: BTreeSet::new(),
    };
    let fields = walk.plan(plan);
    let columns = plan
        .schema()
        .fields()
        .iter()
        .zip(fields)
        .map(|(field, origins)| {
            let name = field.name().clone();
            let origins = origins
                .into_iter()
                .map(|((node, column), step)| {
                    let how = match step {
                        Step::Direct if column == name => How::PassedThrough,
                        Step::Direct => How::Renamed,
                        Step::Computed => How::Computed,
                        Step::Aggregated => How::Aggregated,
                    };
                    Origin { node, column, how }
                })
                .collect();
            (name, origins)
        })
        .collect();
    Lineage {
        columns,
        filtered_on: walk.filtered_on,
    }
}

struct Walk<'a> {
    tables: &'a Tables,
    filtered_on: BTreeSet<(NodeIndex, String)>,
}

impl Walk<'_> {
    /// The origins of each output field of `plan`.
    fn plan(&mut self, plan: &LogicalPlan) -> Vec<Origins> {
        let width = plan.schema().fields().len();
        let fields = match plan {
            LogicalPlan::TableScan(scan) => {
                let node = self.node_of(&scan.table_name);
                scan.projected_schema
                    .fields()
                    .iter()
                    .map(|f| match node {
                        Some(node) => Origins::from([((node, f.name().clone()), Step::Direct)]),
                        None => Origins::new(),
                    })
                    .collect()
            }
            LogicalPlan::Projection(p) => {
                let input = self.plan(&p.input);
                p.expr
                    .iter()
                    .map(|e| self.expr(e, p.input.schema(), &input, Step::Computed))
                    .collect()
            }
            LogicalPlan::Filter(f) => {
                let input = self.plan(&f.input);
                self.filter(&f.predicate, f.input.schema(), &input);
                input
            }
            LogicalPlan::Aggregate(a) => {
                let input = self.plan(&a.input);
                let mut fields: Vec<Origins> = grouping_set_to_exprlist(&a.group_expr)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| self.expr(e, a.input.schema(), &input, Step::Computed))
                    .collect();
                // The grouping set's id, when there is one.
                while fields.len() + a.aggr_expr.len() < width {
                    fields.push(Origins::new());
                }
                for e in &a.aggr_expr {
                    fields.push(self.expr(e, a.input.schema(), &input, Step::Aggregated));
                }
                fields
            }
            LogicalPlan::Window(w) => {
                let mut fields = self.plan(&w.input);
                for e in &w.window_expr {
                    fields.push(self.expr(e, w.input.schema(), &fields.clone(), Step::Aggregated));
                }
                fields
            }
            LogicalPlan::Join(j) => {
                let left = self.plan(&j.left);
                let right = self.plan(&j.right);
                let both: Vec<Origins> = left.iter().chain(&right).cloned().collect();
                if let Ok(schema) = j.left.schema().join(j.right.schema()) {
                    for (l, r) in &j.on {
                        self.filter(l, &schema, &both);
                        self.filter(r, &schema, &both);
                    }
                    if let Some(filter) = &j.filter {
                        self.filter(filter, &schema, &both);
                    }
                }
                match j.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti => left,
                    JoinType::RightSemi | JoinType::RightAnti => right,
                    JoinType::LeftMark => left.into_iter().chain([Origins::new()]).collect(),
                    JoinType::RightMark => right.into_iter().chain([Origins::new()]).collect(),
                    _ => both,
                }
            }
            LogicalPlan::Union(u) => {
                let mut fields = vec![Origins::new(); width];
                for input in &u.inputs {
                    for (field, origins) in fields.iter_mut().zip(self.plan(input)) {
                        merge(field, origins);
                    }
                }
                fields
            }
            LogicalPlan::RecursiveQuery(r) => {
                let mut fields = self.plan(&r.static_term);
                for (field, origins) in fields.iter_mut().zip(self.plan(&r.recursive_term)) {
                    merge(field, origins);
                }
                fields
            }
            LogicalPlan::Distinct(Distinct::On(on)) => {
                let input = self.plan(&on.input);
                on.select_expr
                    .iter()
                    .map(|e| self.expr(e, on.input.schema(), &input, Step::Computed))
                    .collect()
            }
            LogicalPlan::Unnest(u) => {
                let input = self.plan(&u.input);
                let unnested: Vec<usize> = u
                    .exec_columns
                    .iter()
                    .filter_map(|c| u.input.schema().index_of_column(c).ok())
                    .collect();
                u.dependency_indices
                    .iter()
                    .map(|&i| {
                        let mut origins = input.get(i).cloned().unwrap_or_default();
                        if unnested.contains(&i) {
                            origins.values_mut().for_each(|s| *s = (*s).max(Step::Computed));
                        }
                        origins
                    })
                    .collect()
            }
            // An ephemeral model, inlined as a CTE: a step of its own.
            LogicalPlan::SubqueryAlias(alias) if self.node_of(&alias.alias).is_some() => {
                let node = self.node_of(&alias.alias);
                alias
                    .schema
                    .fields()
                    .iter()
                    .map(|f| Origins::from_iter(node.map(|n| ((n, f.name().clone()), Step::Direct))))
                    .collect()
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => vec![Origins::new(); width],
            // Same columns as their one input: aliases, sorts, limits,
            // repartitions, a plain distinct, subquery nodes.
            other => {
                let inputs = other.inputs();
                match inputs.as_slice() {
                    [input] if input.schema().fields().len() == width => self.plan(input),
                    _ => self.unknown(other),
                }
            }
        };
        if fields.len() == width {
            fields
        } else {
            self.unknown(plan)
        }
    }

    /// A plan whose columns cannot be matched to its inputs' (an
    /// extension): each column computed from every input column.
    fn unknown(&mut self, plan: &LogicalPlan) -> Vec<Origins> {
        let mut all = Origins::new();
        for input in plan.inputs() {
            for origins in self.plan(input) {
                merge(&mut all, computed(origins, Step::Computed));
            }
        }
        vec![all; plan.schema().fields().len()]
    }

    /// The origins of `expr` over an input of `schema` whose fields come
    /// from `input`: a bare column (or an alias of one) keeps its step; any
    /// other expression is `step` (`Aggregated` for an aggregate's), or
    /// aggregated when it holds an aggregate or window function.
    fn expr(&mut self, expr: &Expr, schema: &DFSchema, input: &[Origins], step: Step) -> Origins {
        let mut bare = expr;
        while let Expr::Alias(alias) = bare {
            bare = &alias.expr;
        }
        if let Expr::Column(column) = bare {
            return self.column(column, schema, input);
        }
        let mut step = step;
        let mut origins = Origins::new();
        let _ = bare.apply(|e| {
            match e {
                Expr::AggregateFunction(_) | Expr::WindowFunction(_) => step = Step::Aggregated,
                Expr::ScalarSubquery(sub) => {
                    if let Some(first) = self.plan(&sub.subquery).into_iter().next() {
                        merge(&mut origins, first);
                    }
                }
                Expr::Exists(exists) => self.subquery_filters(&exists.subquery.subquery),
                Expr::InSubquery(sub) => self.subquery_filters(&sub.subquery.subquery),
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        for column in bare.column_refs() {
            merge(&mut origins, self.column(column, schema, input));
        }
        computed(origins, step)
    }

    fn column(&self, column: &Column, schema: &DFSchema, input: &[Origins]) -> Origins {
        schema
            .index_of_column(column)
            .ok()
            .and_then(|i| input.get(i).cloned())
            .unwrap_or_default()
    }

    /// Records the upstream columns `predicate` reads as the rows' filter.
    fn filter(&mut self, predicate: &Expr, schema: &DFSchema, input: &[Origins]) {
        let origins = self.expr(predicate, schema, input, Step::Computed);
        self.filtered_on.extend(origins.into_keys());
    }

    /// A subquery that decides which rows are kept (`exists`, `in`): every
    /// column it returns filters them.
    fn subquery_filters(&mut self, plan: &LogicalPlan) {
        for origins in self.plan(plan) {
            self.filtered_on.extend(origins.into_keys());
        }
    }

    fn node_of(&self, table: &TableReference) -> Option<NodeIndex> {
        let schema = table.schema().unwrap_or_default().to_lowercase();
        self.tables.get(&(schema, table.table().to_lowercase())).copied()
    }
}

/// Every origin at least `step`.
fn computed(origins: Origins, step: Step) -> Origins {
    origins.into_iter().map(|(k, s)| (k, s.max(step))).collect()
}

/// Adds `more` to `into`, keeping each origin's strongest step.
fn merge(into: &mut Origins, more: Origins) {
    for (key, step) in more {
        let entry = into.entry(key).or_insert(step);
        *entry = (*entry).max(step);
    }
}

/// A column and where it comes from (upstream) or goes (downstream).
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    pub node: NodeIndex,
    pub column: String,
    /// How the column comes from its parent in the tree (upstream) or its
    /// child comes from it (downstream); none at the root.
    pub how: Option<How>,
    /// Shown already higher in the tree: its branches are not repeated.
    pub repeated: bool,
    pub branches: Vec<Tree>,
    /// Downstream: the models whose rows the column filters or joins.
    pub filters: Vec<NodeIndex>,
}

/// The lineage of every planned model, to follow a column across them.
pub struct Graph<'a> {
    models: &'a HashMap<NodeIndex, Lineage>,
    readers: HashMap<(NodeIndex, String), Vec<(NodeIndex, String, How)>>,
    filters: HashMap<(NodeIndex, String), BTreeSet<NodeIndex>>,
}

impl<'a> Graph<'a> {
    pub fn new(models: &'a HashMap<NodeIndex, Lineage>) -> Graph<'a> {
        let mut readers: HashMap<(NodeIndex, String), Vec<(NodeIndex, String, How)>> = HashMap::new();
        let mut filters: HashMap<(NodeIndex, String), BTreeSet<NodeIndex>> = HashMap::new();
        for (&model, lineage) in models {
            for (column, origins) in &lineage.columns {
                for o in origins {
                    readers
                        .entry((o.node, o.column.clone()))
                        .or_default()
                        .push((model, column.clone(), o.how));
                }
            }
            for key in &lineage.filtered_on {
                filters.entry(key.clone()).or_default().insert(model);
            }
        }
        for list in readers.values_mut() {
            list.sort();
        }
        Graph {
            models,
            readers,
            filters,
        }
    }

    /// The columns of `node`, when it was planned.
    pub fn columns(&self, node: NodeIndex) -> Option<Vec<&str>> {
        let lineage = self.models.get(&node)?;
        Some(lineage.columns.iter().map(|(c, _)| c.as_str()).collect())
    }

    /// The columns `node`'s rows are filtered or joined on.
    pub fn filtered_on(&self, node: NodeIndex) -> Vec<(NodeIndex, String)> {
        self.models
            .get(&node)
            .map(|l| l.filtered_on.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The models whose rows `column` of `node` filters.
    pub fn filters(&self, node: NodeIndex, column: &str) -> Vec<NodeIndex> {
        self.filters
            .get(&(node, column.to_string()))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Where `column` of `node` comes from, back to the columns of
    /// sources, seeds and models not planned.
    pub fn upstream(&self, node: NodeIndex, column: &str) -> Tree {
        let mut seen = BTreeSet::new();
        self.follow(node, column, None, false, &mut seen, &|graph, node, column| {
            graph
                .models
                .get(&node)
                .and_then(|l| l.columns.iter().find(|(c, _)| c == column))
                .map(|(_, origins)| origins.iter().map(|o| (o.node, o.column.clone(), o.how)).collect())
                .unwrap_or_default()
        })
    }

    /// The model columns derived from `column` of `node`, down to the
    /// last.
    pub fn downstream(&self, node: NodeIndex, column: &str) -> Tree {
        let mut seen = BTreeSet::new();
        self.follow(node, column, None, true, &mut seen, &|graph, node, column| {
            graph
                .readers
                .get(&(node, column.to_string()))
                .cloned()
                .unwrap_or_default()
        })
    }

    fn follow(
        &self,
        node: NodeIndex,
        column: &str,
        how: Option<How>,
        downstream: bool,
        seen: &mut BTreeSet<(NodeIndex, String)>,
        next: &dyn Fn(&Graph, NodeIndex, &str) -> Vec<(NodeIndex, String, How)>,
    ) -> Tree {
        let key = (node, column.to_string());
        let repeated = !seen.insert(key);
        let branches = if repeated {
            Vec::new()
        } else {
            next(self, node, column)
                .into_iter()
                .map(|(n, c, h)| self.follow(n, &c, Some(h), downstream, seen, next))
                .collect()
        };
        Tree {
            node,
            column: column.to_string(),
            how,
            repeated: repeated && !next(self, node, column).is_empty(),
            branches,
            filters: if downstream && !repeated {
                self.filters(node, column)
            } else {
                Vec::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// `orders(id, customer_id, amount, status)` is node 0,
    /// `customers(id, email, country)` node 1.
    async fn lineage(sql: &str) -> Lineage {
        let ctx = SessionContext::new();
        let table = |columns: &[(&str, DataType)]| {
            let fields: Vec<Field> = columns.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect();
            Arc::new(EmptyTable::new(Arc::new(Schema::new(fields))))
        };
        ctx.sql("create schema s").await.unwrap();
        let orders = [
            ("id", DataType::Int64),
            ("customer_id", DataType::Int64),
            ("amount", DataType::Float64),
            ("status", DataType::Utf8),
        ];
        let customers = [
            ("id", DataType::Int64),
            ("email", DataType::Utf8),
            ("country", DataType::Utf8),
        ];
        ctx.register_table("s.orders", table(&orders)).unwrap();
        ctx.register_table("s.customers", table(&customers)).unwrap();
        let tables = Tables::from([
            (("s".into(), "orders".into()), NodeIndex::new(0)),
            (("s".into(), "customers".into()), NodeIndex::new(1)),
        ]);
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        of_plan(&plan, &tables)
    }

    fn origins(lineage: &Lineage, column: &str) -> Vec<(usize, String, How)> {
        let (_, origins) = lineage.columns.iter().find(|(c, _)| c == column).unwrap();
        origins
            .iter()
            .map(|o| (o.node.index(), o.column.clone(), o.how))
            .collect()
    }

    fn of(node: usize, column: &str, how: How) -> (usize, String, How) {
        (node, column.to_string(), how)
    }

    #[tokio::test]
    async fn columns_passed_renamed_computed_and_aggregated() {
        let l = lineage(
            "with paid as (select * from s.orders where status = 'paid') \
             select customer_id as buyer, sum(amount) as total, count(*) as n, max(id) + 1 as next_id, \
             'x' as constant from paid group by customer_id",
        )
        .await;
        let names: Vec<&str> = l.columns.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["buyer", "total", "n", "next_id", "constant"]);
        assert_eq!(origins(&l, "buyer"), [of(0, "customer_id", How::Renamed)]);
        assert_eq!(origins(&l, "total"), [of(0, "amount", How::Aggregated)]);
        assert_eq!(origins(&l, "n"), []);
        assert_eq!(origins(&l, "next_id"), [of(0, "id", How::Aggregated)]);
        assert_eq!(origins(&l, "constant"), []);
        assert_eq!(l.filtered_on, BTreeSet::from([(NodeIndex::new(0), "status".into())]));
    }

    #[tokio::test]
    async fn joins_unions_windows_and_subqueries_are_followed() {
        let l = lineage(
            "select o.*, c.country, upper(c.email) as email, \
             row_number() over (partition by c.country order by o.amount) as rank, \
             (select max(amount) from s.orders) as top \
             from s.orders o join s.customers c on c.id = o.customer_id \
             where exists (select 1 from s.customers x where x.id = o.customer_id and x.country = 'FR')",
        )
        .await;
        assert_eq!(origins(&l, "amount"), [of(0, "amount", How::PassedThrough)]);
        assert_eq!(origins(&l, "country"), [of(1, "country", How::PassedThrough)]);
        assert_eq!(origins(&l, "email"), [of(1, "email", How::Computed)]);
        assert_eq!(
            origins(&l, "rank"),
            [of(0, "amount", How::Aggregated), of(1, "country", How::Aggregated)]
        );
        assert_eq!(origins(&l, "top"), [of(0, "amount", How::Aggregated)]);
        let filtered: Vec<(usize, &str)> = l.filtered_on.iter().map(|(n, c)| (n.index(), c.as_str())).collect();
        assert_eq!(filtered, [(0, "customer_id"), (1, "country"), (1, "id")]);

        let u = lineage(
            "select id, amount as v from s.orders union all select id, cast(country as double) from s.customers",
        )
        .await;
        assert_eq!(
            origins(&u, "id"),
            [of(0, "id", How::PassedThrough), of(1, "id", How::PassedThrough)]
        );
        assert_eq!(
            origins(&u, "v"),
            [of(0, "amount", How::Renamed), of(1, "country", How::Computed)]
        );
    }
}
