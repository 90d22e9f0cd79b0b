//! A model's plan as `state:modified` compares it: DataFusion's logical
//! plan printed, with the names of CTEs and table aliases replaced by
//! their order of appearance. Whitespace, comments, keyword case and a
//! renamed CTE or alias do not change it; anything the query computes
//! does.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use md5::Digest;

/// What `state:modified` and the manifest know of a model's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// `plan_fingerprint`: the same for an edit of whitespace, comments or
    /// a CTE's name.
    pub fingerprint: String,
    /// Its output columns, with their types as the catalog names them.
    pub columns: Vec<(String, String)>,
}

/// The fingerprint of `plan`.
pub fn plan_fingerprint(plan: &LogicalPlan) -> String {
    let mut aliases: Vec<String> = Vec::new();
    // The plan's printout shows only the first rows of a VALUES list.
    let mut values = String::new();
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::Values(v) = p {
            values.push_str(&format!("{:?}\n", v.values));
        }
        if let LogicalPlan::SubqueryAlias(a) = p {
            let name = a.alias.table().to_owned();
            // An ephemeral model's CTE is named by the model.
            if !name.starts_with("__dbt__cte__") && !aliases.contains(&name) {
                aliases.push(name);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let mut text = plan.display_indent().to_string();
    text.push_str(&values);
    // Where an alias is named: as a qualifier (`paid.id`) and where it is
    // defined (`SubqueryAlias: paid`).
    for (k, name) in aliases.iter().enumerate() {
        text = rename(&text, name, &format!("__alias{k}"));
    }
    format!("{:x}", md5::Md5::digest(text.as_bytes()))
}

/// `text` with `name` replaced by `with` where it qualifies a column
/// (`name.`, not preceded by a character of a name) or ends a
/// `SubqueryAlias: name` line. By hand: a regex compiled per alias costs
/// more than planning the model.
fn rename(text: &str, name: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let part_of_name = |c: char| c.is_alphanumeric() || c == '_';
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        let starts = !before.is_some_and(part_of_name);
        let qualifier = after.starts_with('.');
        let defined = rest[..at].ends_with("SubqueryAlias: ") && (after.is_empty() || after.starts_with('\n'));
        out.push_str(&rest[..at]);
        out.push_str(if starts && (qualifier || defined) { with } else { name });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn fingerprint(sql: &str) -> String {
        let ctx = SessionContext::new();
        ctx.sql("create table t (id bigint, amount double, status varchar)")
            .await
            .unwrap();
        plan_fingerprint(&ctx.state().create_logical_plan(sql).await.unwrap())
    }

    #[test]
    fn only_qualifiers_and_definitions_are_renamed() {
        let text = "Projection: paid.id, unpaid.id, Utf8(\"paid\")\n  SubqueryAlias: paid\n    TableScan: paid_orders";
        assert_eq!(
            rename(text, "paid", "__alias0"),
            "Projection: __alias0.id, unpaid.id, Utf8(\"paid\")\n  SubqueryAlias: __alias0\n    TableScan: paid_orders"
        );
    }

    #[tokio::test]
    async fn whitespace_comments_and_names_of_ctes_change_nothing_a_computation_does() {
        let base = fingerprint("with paid as (select * from t where status = 'paid') select id, sum(amount) as total from paid group by id").await;
        let same = [
            "-- the paid orders\nWITH paid AS (\n  SELECT * FROM t WHERE status = 'paid' -- only\n)\nSELECT id, SUM(amount) AS total\nFROM paid GROUP BY id",
            "with settled as (select * from t where status = 'paid') select id, sum(amount) as total from settled group by id",
            "with settled as (select * from t where t.status = 'paid') select settled.id, sum(settled.amount) as total from settled group by settled.id",
        ];
        for sql in same {
            assert_eq!(fingerprint(sql).await, base, "{sql}");
        }
        let other = [
            "with paid as (select * from t where status = 'open') select id, sum(amount) as total from paid group by id",
            "with paid as (select * from t where status = 'paid') select id, max(amount) as total from paid group by id",
            "with paid as (select * from t where status = 'paid') select id, sum(amount) as amount from paid group by id",
        ];
        for sql in other {
            assert_ne!(fingerprint(sql).await, base, "{sql}");
        }
        // A VALUES list past the rows its printout shows.
        let rows = |last: i32| format!("select * from (values (1), (2), (3), (4), (5), (6), ({last})) as v(x)");
        assert_ne!(fingerprint(&rows(7)).await, fingerprint(&rows(8)).await);
    }
}
