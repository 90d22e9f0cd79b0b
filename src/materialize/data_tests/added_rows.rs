//! Data tests on what a table gained. A nightly build appends a day to a
//! table of months, and a `unique` or `not_null` test on it read all the
//! months again, every night. When a generic test passed with no failing
//! row on an earlier version of its model, and the model has only gained
//! rows since (appends, and merges that deleted none: their rewritten files
//! hold the updated rows), only what it gained can fail now:
//!
//! - a test of each row alone (`not_null`, `accepted_values`,
//!   `accepted_range`, `expression_is_true`) reads the rows in the files
//!   added since;
//! - `unique` and `unique_combination_of_columns` read the rows whose key
//!   is among the added rows' keys: a duplicate has at least one of them;
//! - `relationships` reads the added child rows, when its parent has only
//!   gained rows too, and kept its keys (merges on the related field).
//!
//! A singular test reads the rows of the keys its tables gained, when
//! each of its failing rows comes from the rows of one key (it joins and
//! groups on `order_id`, say: `plan::key_of` reads that off its plan)
//! and its tables only gained rows, merged on that key if at all.
//!
//! A write-audit-publish model's tests judge what the table would become
//! before it is committed. After an incremental change (append, merge,
//! delete+insert, insert_overwrite, microbatch) whose columns are the
//! table's, every row of it is a published row or a new one; a test that
//! passed on the published version reads the new rows the same way, and
//! reads the new rows alone for a `unique` on columns that include the
//! change's `unique_key` (or partition): every published row sharing them
//! was replaced.
//!
//! The failing rows found are exactly those a full run finds. Anything
//! else (a warning or failure last time, another test, a project's own
//! version of a built-in test, a rewrite of the table, `--force`) runs
//! the test in full.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::logical_expr::LogicalPlan;
use petgraph::graph::NodeIndex;
use serde_json::Value;

use crate::graph::{Materialization, ResourceType};
use crate::lake;
use crate::materialize::Build;
use crate::materialize::ingest::NewFiles;
use crate::project::{TestKind, TestTarget};

/// How a test reads the rows its model gained.
enum Reads {
    /// Each row on its own.
    Rows,
    /// Every row sharing these columns with an added row.
    Keys(Vec<String>),
    /// The added child rows; the parent, which must have kept its keys.
    Child { parent: String, field: String },
}

/// What a test narrowed to the rows its model gained reads in place of
/// its tables, and how its message says so.
pub struct Narrowed {
    pub readers: Vec<NewFiles>,
    /// "what its model gained since it last passed (2 files)".
    pub what: String,
}

/// Readers that point the test at `index` at what its model gained since
/// the test last passed, as `last` (its stored result) records; `None`
/// when it must run in full.
pub async fn since_last_pass(build: &Build, index: NodeIndex, last: &Value) -> Option<Narrowed> {
    let plan = passed_clean(build, index, last).await?;
    let test = build.dag.node(index).test(&build.project);
    if matches!(test.kind, TestKind::Singular { .. }) {
        return by_key(build, index, last, plan).await;
    }
    let (model, reads) = reads(build, index)?;
    let stored = &last["inputs"];
    let (at, url, files) = gained(build, stored, &model, None).await?;
    if let Reads::Child { parent, field } = &reads {
        gained(build, stored, parent, Some(vec![field.clone()])).await?;
    }
    let relation = build.dag.node(at).relation.clone();
    let reference = datafusion::common::TableReference::partial(relation.schema.as_str(), relation.identifier.as_str());
    let current = build.registry.ctx.table_provider(reference).await.ok()?;
    let added = lake::files_provider(&url, &files, current.schema()).ok()?;
    let keys = match reads {
        Reads::Rows | Reads::Child { .. } => Vec::new(),
        Reads::Keys(keys) => keys,
    };
    let what = format!(
        "what its model gained since it last passed ({} file{})",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    Some(Narrowed {
        readers: vec![NewFiles {
            source: relation,
            provider: added,
            keys,
            files: files.len(),
        }],
        what,
    })
}

/// The rows an incremental change writes to a table, and what it replaces
/// with them: every row of the table after the change is a row of the
/// table before it or one of these.
pub struct Increment {
    /// The model the change is to.
    pub model: NodeIndex,
    pub rows: Arc<dyn TableProvider>,
    /// The columns a row is replaced by (the `unique_key`, the partition
    /// or event-time column): a row of the table before the change whose
    /// values in these columns equal a new row's is gone after it. Empty
    /// for an append.
    pub replaces_by: Vec<String>,
}

/// Readers that point a write-audit-publish test at what `increment` adds
/// to its model, when the test passed with no failing row on the version
/// the change applies to: the model's relation (what the table would
/// become) is read only where the new rows can make a failing row. `None`
/// when it must run in full.
///
/// Row tests read the new rows. `unique` tests read the rows sharing their
/// columns with a new row; when those columns include everything the
/// change replaces rows by, that is the new rows alone: every other row
/// with those values was replaced.
pub async fn in_audit(build: &Build, index: NodeIndex, increment: &Increment) -> Option<Narrowed> {
    if build.options.force || build.options.full_refresh {
        return None;
    }
    let node = build.dag.node(index);
    let last = lake::read_document(&build.registry.ctx, &build.registry.lake, "tests", &node.unique_id).await?;
    passed_clean(build, index, &last).await?;
    let (model, reads) = reads(build, index)?;
    let stored = &last["inputs"];
    // A test of another model (a relationship to this one) reads none of
    // the new rows in place of its own.
    let at = build.dag.find(&model).filter(|&at| at == increment.model)?;
    let table = build.dag.node(at);
    // It passed on the version the change applies to.
    if stored[&table.unique_id]["version"].as_i64()?
        != crate::materialize::fingerprint::table_version(build, at).await?
        || !same_table(
            build,
            &stored[&table.unique_id],
            &build.registry.location(&table.relation),
        )
        .await
    {
        return None;
    }
    if let Reads::Child { parent, field } = &reads {
        gained(build, stored, parent, Some(vec![field.clone()])).await?;
    }
    let keys = match reads {
        Reads::Rows | Reads::Child { .. } => Vec::new(),
        Reads::Keys(keys) if replaces_all_sharing(build, increment, &keys).await => Vec::new(),
        Reads::Keys(keys) => keys,
    };
    Some(Narrowed {
        readers: vec![NewFiles {
            source: table.relation.clone(),
            provider: increment.rows.clone(),
            keys,
            files: 0,
        }],
        what: "what this build adds to its model".into(),
    })
}

/// Whether every published row sharing `keys` with a row of `increment`
/// is replaced by the change: `keys` include the columns it replaces rows
/// by, and no new row has a null there (null matches no row, so a row of
/// the table with a null key stays beside the new one).
async fn replaces_all_sharing(build: &Build, increment: &Increment, keys: &[String]) -> bool {
    use datafusion::prelude::{Expr, col};
    let by = &increment.replaces_by;
    if by.is_empty() || !by.iter().all(|c| keys.contains(c)) {
        return false;
    }
    let Some(any_null) = by
        .iter()
        .map(|c| col(datafusion::common::Column::from_name(c.as_str())).is_null())
        .reduce(Expr::or)
    else {
        return false;
    };
    let nulls = match build.registry.ctx.read_table(increment.rows.clone()) {
        Ok(rows) => rows.filter(any_null).map(|f| f.count()),
        Err(_) => return false,
    };
    match nulls {
        Ok(count) => count.await.is_ok_and(|n| n == 0),
        Err(_) => false,
    }
}

/// Whether the test passed with no failing row last time (`last`, its
/// stored result), its definition has not changed since, and what it
/// judges can be read in part: its count is of rows, not a percentage of
/// the whole table or another `fail_calc`, and it means the same on any
/// day. Its SQL's plan, unoptimized, when all that holds.
async fn passed_clean(build: &Build, index: NodeIndex, last: &Value) -> Option<LogicalPlan> {
    let node = build.dag.node(index);
    if last["status"].as_str() != Some("pass")
        || last["failures"].as_u64() != Some(0)
        || last["definition"].as_str() != Some(super::definition(build, index).as_str())
    {
        return None;
    }
    // Percentages count the whole table's rows; a `sum(...)` of zero may
    // be rows that cancel out.
    if !node.config.test.as_ref().is_some_and(|t| t.counts_rows()) {
        return None;
    }
    // Its SQL is planned: the tables it reads must be known to the session,
    // built in this run or not.
    build
        .registry
        .ensure_parents(&build.dag, &build.project, index)
        .await
        .ok()?;
    let sql = crate::plan::compile_with(&build.dag, index, &build.models, &build.rendered_now(index)).sql;
    let plan = build.registry.ctx.state().create_logical_plan(&sql).await.ok()?;
    // A row that passed yesterday may fail today without changing when the
    // SQL (its `where` included) compares with `now()` or `current_date`.
    crate::plan::same_every_run(&plan).then_some(plan)
}

/// The model a generic test is attached to and how it reads what that
/// model gained.
fn reads(build: &Build, index: NodeIndex) -> Option<(String, Reads)> {
    let node = build.dag.node(index);
    let test = node.test(&build.project);
    let TestKind::Generic {
        test_name,
        target: TestTarget::Model(model),
        column_name,
        kwargs,
        ..
    } = &test.kind
    else {
        return None;
    };
    if overridden(build, test_name) {
        return None;
    }
    let reads = match test_name.as_str() {
        "not_null" | "accepted_values" | "accepted_range" | "expression_is_true" => Reads::Rows,
        "unique" => Reads::Keys(vec![column_name.clone()?]),
        "unique_combination_of_columns" if kwargs.get("quote_columns").and_then(Value::as_bool) != Some(true) => {
            let columns = kwargs.get("combination_of_columns")?.as_array()?;
            Reads::Keys(
                columns
                    .iter()
                    .map(|c| c.as_str().map(str::to_owned))
                    .collect::<Option<_>>()?,
            )
        }
        "relationships" => {
            let field = kwargs.get("field")?.as_str()?.to_owned();
            let parent = build
                .dag
                .parents(index)
                .map(|p| build.dag.node(p))
                .find(|p| p.name != *model)?
                .name
                .clone();
            Reads::Child { parent, field }
        }
        _ => return None,
    };

    // Reading anything but its model (and a relationship's parent) would
    // make the rows it judges depend on more than what the model gained.
    let reads_also = build
        .dag
        .parents(index)
        .filter(|p| build.dag.node(*p).name != *model)
        .count();
    if reads_also != usize::from(matches!(reads, Reads::Child { .. })) {
        return None;
    }
    Some((model.clone(), reads))
}

/// A singular test whose failing rows each come from the rows of one key
/// value (`plan::key_of`: a reconciliation joined and grouped on
/// `order_id`) reads the rows of the keys its tables gained: those in the
/// files they gained since it passed, when they only gained rows and any
/// merge into them was on that key (an update then keeps a row's key).
/// Every other key's rows are as they were when it found none failing.
async fn by_key(build: &Build, index: NodeIndex, last: &Value, plan: LogicalPlan) -> Option<Narrowed> {
    let ctx = &build.registry.ctx;
    let parents: Vec<NodeIndex> = build.dag.parents(index).collect();
    // Models only: a seed or a file source keeps no record of what it
    // gained (and `gained` finds tables by model name).
    if parents
        .iter()
        .any(|&p| build.dag.node(p).resource_type != ResourceType::Model)
    {
        return None;
    }
    let mut tables = Vec::new();
    for &parent in &parents {
        let relation = &build.dag.node(parent).relation;
        let reference =
            datafusion::common::TableReference::partial(relation.schema.as_str(), relation.identifier.as_str());
        tables.push((relation, ctx.table_provider(reference).await.ok()?));
    }
    let (_, first) = tables.first()?;
    let first = first.schema();
    let shared = first
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| tables.iter().all(|(_, t)| t.schema().field_with_name(name).is_ok()));
    let plan = ctx.state().optimize(&plan).ok()?;
    let key = crate::plan::key_of(&plan, shared, &|scanned| {
        tables
            .iter()
            .any(|(r, _)| scanned.table() == r.identifier && scanned.schema() == Some(r.schema.as_str()))
    })?;

    let stored = &last["inputs"];
    let mut keys: Option<datafusion::dataframe::DataFrame> = None;
    let mut files = 0;
    for (&parent, (_, table)) in parents.iter().zip(&tables) {
        let (_, url, added) = gained(build, stored, &build.dag.node(parent).name, Some(vec![key.clone()])).await?;
        if added.is_empty() {
            continue;
        }
        files += added.len();
        let rows = lake::files_provider(&url, &added, table.schema()).ok()?;
        let these = ctx.read_table(rows).ok()?.select_columns(&[key.as_str()]).ok()?;
        keys = Some(match keys {
            None => these,
            Some(before) => before.union(these).ok()?,
        });
    }
    let keys = keys?.into_view();
    Some(Narrowed {
        readers: tables
            .iter()
            .map(|(relation, _)| NewFiles {
                source: (*relation).clone(),
                provider: keys.clone(),
                keys: vec![key.clone()],
                files: 0,
            })
            .collect(),
        what: format!(
            "the rows of the `{key}` values its tables gained since it last passed ({files} file{})",
            if files == 1 { "" } else { "s" }
        ),
    })
}

/// Whether the table at `url` is the one `stored` (a test's recorded
/// input) was read at: its commit of that version is the same commit, not
/// one of a table deleted and built again since.
async fn same_table(build: &Build, stored: &Value, url: &url::Url) -> bool {
    let (Some(version), Some(time)) = (stored["version"].as_i64(), stored["committed_at"].as_i64()) else {
        return false;
    };
    crate::materialize::fingerprint::commit_time(build, url, version).await == Some(time)
}

/// The table of model `name`, and the files it gained since the version
/// `stored` (a test's recorded inputs) has for it, if it only gained rows.
async fn gained(
    build: &Build,
    stored: &Value,
    name: &str,
    merge_keys: Option<Vec<String>>,
) -> Option<(NodeIndex, url::Url, Vec<String>)> {
    let at = build.dag.find(name)?;
    let table = build.dag.node(at);
    if !matches!(
        table.materialized,
        Materialization::Table | Materialization::Incremental
    ) || table
        .config
        .incremental
        .as_ref()
        .is_some_and(|i| !i.partition_by.is_empty())
    {
        return None;
    }
    let since = stored[&table.unique_id]["version"].as_i64()?;
    let now = crate::materialize::fingerprint::table_version(build, at).await?;
    let url = build.registry.location(&table.relation);
    if !same_table(build, &stored[&table.unique_id], &url).await {
        return None;
    }
    let files = lake::added_files(&build.registry.ctx, &url, since, now, merge_keys.as_deref())
        .await
        .ok()??;
    Some((at, url, files))
}

/// Whether the project defines its own `{% test <name>(...) %}`, which
/// replaces the built-in one whose reads this module knows.
fn overridden(build: &Build, name: &str) -> bool {
    build
        .project
        .macro_files
        .iter()
        .any(|file| defines_test(&file.text, name))
}

fn defines_test(text: &str, name: &str) -> bool {
    text.split("{%").skip(1).any(|tag| {
        tag.trim_start_matches('-')
            .trim_start()
            .strip_prefix("test")
            .filter(|rest| rest.starts_with(char::is_whitespace))
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    })
}

#[cfg(test)]
mod tests {
    use super::defines_test;

    #[test]
    fn a_project_test_block_of_the_same_name_is_an_override() {
        assert!(defines_test(
            "{% test unique(model, column_name) %}x{% endtest %}",
            "unique"
        ));
        assert!(defines_test("{%- test  unique (model, column_name) -%}", "unique"));
        assert!(!defines_test("{% test unique_email(model) %}", "unique"));
        assert!(!defines_test("{% macro unique(model) %}", "unique"));
        assert!(!defines_test("{% test not_null(model, column_name) %}", "unique"));
    }
}
