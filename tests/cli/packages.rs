//! dbt packages (installed with `etl deps` from git, a missing one named,
//! their macros called through their namespace) and hooks etl cannot run.

use std::path::Path;
use std::process::Command;

use crate::support::{etl, etl_ok, fixture, rows, rows_in};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.email=etl@example.com",
            "-c",
            "user.name=etl",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A package in a git repository of its own, tagged `v1`.
fn package_repository(dir: &Path) {
    std::fs::create_dir_all(dir.join("macros")).unwrap();
    std::fs::write(
        dir.join("dbt_project.yml"),
        "name: tax\nversion: '1.0.0'\nconfig-version: 2\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("macros/tax.sql"),
        "{% macro with_tax(column) %}{{ return(column ~ ' * 1.2') }}{% endmacro %}\n",
    )
    .unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "tax"]);
    git(dir, &["tag", "v1"]);
}

#[test]
fn etl_deps_installs_git_packages_and_a_missing_package_is_named() {
    let repo = tempfile::tempdir().unwrap();
    package_repository(repo.path());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("models")).unwrap();
    std::fs::write(p.join("dbt_project.yml"), "name: shop\nconfig-version: 2\n").unwrap();
    std::fs::write(
        p.join("packages.yml"),
        format!("packages:\n  - git: {}\n    revision: v1\n", repo.path().display()),
    )
    .unwrap();
    std::fs::write(
        p.join("models/prices.sql"),
        "{{ config(materialized='table') }}select {{ tax.with_tax('10') }} as price\n",
    )
    .unwrap();

    // Not installed yet: said at its entry, nothing built.
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 2, "{stderr}");
    let name = repo.path().file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains(&format!(
            "error[missing-package]: git package `{}` is not installed in `dbt_packages/`",
            repo.path().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--> packages.yml:2:"), "{stderr}");
    assert!(!p.join("lake").exists());

    let (stdout, _) = etl_ok(p, &["deps"]);
    assert_eq!(
        stdout,
        format!(
            "OK    git package `{}`: installed in dbt_packages/{name} at v1\n",
            repo.path().display()
        )
    );
    etl_ok(p, &["build"]);
    assert_eq!(rows(p, "main", "prices"), ["12.0"]);

    // What etl cannot fetch is said, and `etl deps` fails.
    std::fs::write(
        p.join("packages.yml"),
        "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n",
    )
    .unwrap();
    let (code, stdout, _) = etl(p, &["deps"]);
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with("ERROR package `dbt-labs/dbt_utils`: etl cannot install from dbt's package hub"),
        "{stdout}"
    );
}

#[test]
fn a_hook_etl_cannot_run_is_an_error_at_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("models")).unwrap();
    std::fs::write(p.join("project.yaml"), "name: shop\n").unwrap();
    std::fs::write(
        p.join("models/m.sql"),
        "{{ config(materialized='table', post_hook='drop table main.m') }}\nselect 1 as x\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "error[hook]: the post_hook of `m`: `DROP` is not run by etl in hooks: it runs `insert`, `delete`, \
             `update`, `create table ... as` and queries"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/m.sql:1:33"), "{stderr}");

    // As dbt rolls back a model whose hook failed, the table it created
    // is gone.
    assert!(
        stderr.contains("`main.m`, which this node created, is removed"),
        "{stderr}"
    );
    assert!(!p.join("lake/warehouse/main/m").exists());

    // A hook's SQL error names the hook; the table it was to change is
    // put back, and so is what its other hooks wrote.
    std::fs::write(
        p.join("models/m.sql"),
        "{{ config(materialized='table') }}\nselect 1 as x\n",
    )
    .unwrap();
    etl_ok(p, &["build"]);
    std::fs::write(
        p.join("models/log.sql"),
        "{{ config(materialized='table') }}\nselect 'built' as event\n",
    )
    .unwrap();
    etl_ok(p, &["build", "--select", "log"]);
    std::fs::write(
        p.join("models/m.sql"),
        "{{ config(materialized='table', pre_hook=\"insert into main.log select 'before m'\", \
         post_hook=['delete from main.m where x = 2', 'delete from main.m where nope = 1']) }}\n\
         select 2 as x union all select 3\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build", "--select", "m"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error[hook]: the post_hook of `m`: "), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        stderr.contains(
            "the node's writes are undone, as dbt rolls back a failed model: `main.m` is put back to its \
             version 0; `main.log` is put back to its version 0"
        ),
        "{stderr}"
    );
    assert_eq!(rows(p, "main", "m"), ["1"]);
    assert_eq!(rows(p, "main", "log"), ["built"]);
    // And the next build, with the hook fixed, builds on that.
    std::fs::write(
        p.join("models/m.sql"),
        "{{ config(materialized='table', post_hook='delete from main.m where x = 2') }}\n\
         select 2 as x union all select 3\n",
    )
    .unwrap();
    etl_ok(p, &["build", "--select", "m"]);
    assert_eq!(rows(p, "main", "m"), ["3"]);
}

#[test]
fn a_pivot_over_run_query_follows_its_data_night_after_night() {
    // The pivot's columns are the payment methods a query finds as it
    // runs: a new method in the data is a new column the next night, and
    // a night with nothing new leaves the table as it is.
    let dir = fixture("dbt_introspection");
    let lake = dir.path().join("dev.lake");
    etl_ok(dir.path(), &["build"]);
    assert_eq!(
        rows_in(&lake, "main", "method_counts"),
        vec!["4|6|true|true|4|raw_payments"],
        "methods, pivoted columns, legacy_missing, pivoted_found"
    );
    let seed = dir.path().join("seeds/raw_payments.csv");
    let mut csv = std::fs::read_to_string(&seed).unwrap();
    csv.push_str("8,5,voucher,700,ok\n");
    std::fs::write(&seed, csv).unwrap();
    let (out, _) = etl_ok(dir.path(), &["build"]);
    assert!(
        !out.contains("payments_pivoted                           up to date"),
        "{out}"
    );
    assert_eq!(
        rows_in(&lake, "main", "method_counts"),
        vec!["5|7|true|true|4|raw_payments"]
    );
    assert_eq!(
        rows_in(&lake, "main", "payments_pivoted"),
        vec![
            "1|0|1234|500|0|0|1734",
            "2|0|2550|0|0|0|2550",
            "3|9900|0|0|0|0|9900",
            "4|0|0|0|2500|0|2500",
            "5|0|0|99|0|700|799",
        ]
    );
    assert_eq!(rows_in(&lake, "main", "run_audit"), vec!["5"]);
    // An incremental model that asks its own table (`this`) what it holds.
    assert_eq!(
        rows_in(&lake, "main", "payment_log"),
        vec![
            "1|1|1234|0",
            "2|1|500|0",
            "3|2|2550|0",
            "4|3|9900|0",
            "6|4|2500|0",
            "7|5|99|0",
            "8|5|700|7"
        ]
    );
    let (out, _) = etl_ok(dir.path(), &["build"]);
    let pivot = out.lines().find(|l| l.contains("table payments_pivoted")).unwrap();
    assert!(pivot.contains("up to date"), "{out}");
}

#[test]
fn a_packages_tests_are_the_packages_nodes() {
    // Declared in the package's own properties file, they are named under
    // the package, as dbt names them: `package:money` selects them.
    let dir = fixture("dbt_packages");
    let (stdout, _) = etl_ok(
        dir.path(),
        &["ls", "--select", "package:money", "--resource-type", "test"],
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["money.not_null_fx_currency", "money.unique_fx_currency"]
    );
    let (stdout, _) = etl_ok(
        dir.path(),
        &["ls", "--select", "package:pkg_shop", "--resource-type", "test"],
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "pkg_shop.money_positive_payment_facts_amount",
            "pkg_shop.not_null_payment_facts_payment_key",
            "pkg_shop.unique_payment_facts_payment_key"
        ]
    );
}

#[test]
fn files_a_failed_node_ingested_are_ingested_again_after_its_rollback() {
    // A post-hook fails after the model ingested a new file: the model's
    // table is put back, and with it etl's record of the files it had
    // ingested, so the next night reads that file again.
    let dir = fixture("ingest");
    let p = dir.path();
    etl_ok(p, &["build"]);
    let before = rows(p, "main", "clicks");
    std::fs::write(p.join("data/2024-01-03.jsonl"), "{\"id\": 100, \"page\": \"/late\"}\n").unwrap();
    let model = p.join("models/clicks.sql");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(
        &model,
        text.replace(
            "{{ config(materialized='incremental') }}",
            "{{ config(materialized='incremental', post_hook='delete from {{ this }} where nope = 1') }}",
        ),
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("`main.clicks` is put back to its version 0"),
        "{stderr}"
    );
    assert_eq!(rows(p, "main", "clicks"), before);
    std::fs::write(&model, text).unwrap();
    etl_ok(p, &["build"]);
    let after = rows(p, "main", "clicks");
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(after.contains(&"100|/late".to_owned()), "{after:?}");
}

#[test]
fn run_operation_runs_a_macros_queries_against_the_lake() {
    let dir = fixture("dbt_introspection");
    let p = dir.path();
    let lake = p.join("dev.lake");
    etl_ok(p, &["build"]);
    std::fs::write(
        p.join("macros/ops.sql"),
        "{% macro purge_small(below) %}\n\
         {% set before = run_query('select count(*) as n from ' ~ ref('payments')).columns[0].values()[0] %}\n\
         {% do run_query('delete from ' ~ ref('payments') ~ ' where amount < ' ~ below) %}\n\
         {% set after = run_query('select count(*) as n from ' ~ ref('payments')).columns[0].values()[0] %}\n\
         {{ log('payments: ' ~ before ~ ' -> ' ~ after, info=True) }}\n\
         {% endmacro %}\n",
    )
    .unwrap();
    let (stdout, _) = etl_ok(p, &["run-operation", "purge_small", "--args", "{below: 500}"]);
    assert_eq!(stdout, "payments: 6 -> 5\nRan `purge_small`\n");
    assert_eq!(rows_in(&lake, "main", "payments").len(), 5);
    let (code, _, stderr) = etl(p, &["run-operation", "purge_smal"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[unknown-node]: `purge_smal` is not a macro of this project"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `purge_small`?"), "{stderr}");
}

#[test]
fn a_hook_reading_a_view_leaves_no_stale_plan_for_the_build() {
    // on-run-start reads view v (over table p) before p is rebuilt: v's
    // plan made for the hook must not be what c reads after p changed.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("models")).unwrap();
    std::fs::write(p.join("project.yaml"), "name: stale\nmodels:\n  +materialized: table\n").unwrap();
    std::fs::write(p.join("models/p.sql"), "select {{ var('n', 1) }} as x\n").unwrap();
    std::fs::write(
        p.join("models/v.sql"),
        "{{ config(materialized='view') }}\nselect x from {{ ref('p') }}\n",
    )
    .unwrap();
    std::fs::write(p.join("models/c.sql"), "select x from {{ ref('v') }}\n").unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(rows(p, "main", "c"), ["1"]);
    let project = std::fs::read_to_string(p.join("project.yaml")).unwrap();
    std::fs::write(
        p.join("dbt_project.yml"),
        format!("{project}config-version: 2\non-run-start:\n  - \"select count(*) from main.v\"\n"),
    )
    .unwrap();
    std::fs::remove_file(p.join("project.yaml")).unwrap();
    std::fs::write(
        p.join("profiles.yml"),
        "stale:\n  target: dev\n  outputs:\n    dev:\n      type: etl\n      lake: lake\n",
    )
    .unwrap();
    let dbt_project = std::fs::read_to_string(p.join("dbt_project.yml")).unwrap();
    std::fs::write(p.join("dbt_project.yml"), format!("{dbt_project}profile: stale\n")).unwrap();
    etl_ok(p, &["build", "--select", "p", "c", "--vars", "{n: 2}"]);
    assert_eq!(rows(p, "main", "p"), ["2"]);
    assert_eq!(rows(p, "main", "c"), ["2"]);
}
