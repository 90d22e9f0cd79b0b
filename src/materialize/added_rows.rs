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
//! The failing rows found are exactly those a full run finds. Anything
//! else (a warning or failure last time, another test, a project's own
//! version of a built-in test, a rewrite of the table, `--force`) runs
//! the test in full.

use petgraph::graph::NodeIndex;
use serde_json::Value;

use super::Build;
use super::ingest::NewFiles;
use crate::graph::Materialization;
use crate::lake;
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

/// Readers that point the test at `index` at what its model gained since
/// the test last passed, as `last` (its stored result) records; `None`
/// when it must run in full.
pub async fn since_last_pass(build: &Build, index: NodeIndex, last: &Value) -> Option<Vec<NewFiles>> {
    let node = build.dag.node(index);
    let test = &build.project.data_tests[node.index];
    if last["status"].as_str() != Some("pass")
        || last["failures"].as_u64() != Some(0)
        || last["definition"].as_str() != Some(super::data_tests::definition(build, index).as_str())
    {
        return None;
    }
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
    // Percentages count the whole table's rows.
    let percent = |k: &str| {
        node.config
            .get(k)
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains('%'))
    };
    if percent("warn_if") || percent("error_if") || overridden(build, test_name) || volatile(build, index) {
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
    let stored = &last["inputs"];
    let (at, url, files) = gained(build, stored, model, None).await?;
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
    Some(vec![NewFiles {
        source: relation,
        provider: added,
        keys,
        files: files.len(),
    }])
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
    ) || table.config.contains_key("partition_by")
    {
        return None;
    }
    let since = stored[&table.unique_id]["version"].as_i64()?;
    let now = super::state::table_version(build, at).await?;
    let url = build.registry.location(&table.relation);
    let files = lake::added_files(&build.registry.ctx, &url, since, now, merge_keys.as_deref())
        .await
        .ok()??;
    Some((at, url, files))
}

/// Whether the test's SQL (its `where` included) depends on when it runs:
/// a row that passed yesterday may fail today without changing.
fn volatile(build: &Build, index: NodeIndex) -> bool {
    let node = build.dag.node(index);
    let sql = crate::plan::compile_with(&build.dag, index, &build.models, &build.tests[node.index])
        .sql
        .to_ascii_lowercase();
    ["now(", "current_date", "current_time", "random(", "uuid("]
        .iter()
        .any(|f| sql.contains(f))
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
