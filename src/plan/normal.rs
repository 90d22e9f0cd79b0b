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
    // defined (`SubqueryAlias: paid`), not inside a literal.
    for (k, name) in aliases.iter().enumerate() {
        let name = regex::escape(name);
        let Ok(word) = regex::Regex::new(&format!(r"(?m)(\b{name}\.|SubqueryAlias: {name}$)")) else {
            continue;
        };
        text = word
            .replace_all(&text, |c: &regex::Captures| {
                if c[0].ends_with('.') {
                    format!("__alias{k}.")
                } else {
                    format!("SubqueryAlias: __alias{k}")
                }
            })
            .into_owned();
    }
    format!("{:x}", md5::Md5::digest(text.as_bytes()))
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
