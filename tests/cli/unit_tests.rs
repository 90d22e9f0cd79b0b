//! Unit tests (dbt 1.8's `unit_tests:`) as etl runs them: with their
//! model in `build` and `test`, selected with it, not in `run`; and every
//! mistake in one reported where it is written. Exposures, the other
//! resource of the same fixture, beside them. (Pass and fail, and the
//! listings, are compared with dbt-duckdb's in dbt_oracle.rs.)

use std::path::Path;

use crate::support::*;

fn seeded_and_run() -> tempfile::TempDir {
    let dir = fixture("dbt_unit_tests");
    etl_ok(dir.path(), &["seed"]);
    etl_ok(dir.path(), &["run"]);
    dir
}

fn write_tests(p: &Path, yaml: &str) {
    std::fs::write(p.join("models/unit_tests.yml"), yaml).unwrap();
}

#[test]
fn a_models_unit_tests_go_with_it_and_a_failure_skips_it() {
    let dir = seeded_and_run();
    let p = dir.path();
    let (stdout, _) = etl_ok(p, &["ls", "--select", "customers", "--output", "name"]);
    assert_eq!(
        stdout,
        "customers\na_seed_is_read_as_it_is\nemails_are_checked\nquoted_csv_cells\nwrong_on_purpose\n"
    );
    let (stdout, _) = etl_ok(p, &["ls", "--resource-type", "unit_test", "--output", "name"]);
    // By unique_id (`unit_test.<project>.<model>.<test>`), as dbt lists them.
    assert_eq!(
        stdout,
        "vip_threshold_is_a_var\na_seed_is_read_as_it_is\nemails_are_checked\nquoted_csv_cells\n\
         wrong_on_purpose\nonly_new_orders_are_read\nan_ephemeral_input_is_given_as_sql\n\
         nothing_paid_gives_nothing\n"
    );
    // `etl run` builds models only.
    let (stdout, _) = etl_ok(p, &["run", "--select", "customers"]);
    assert!(!stdout.contains("unit_test"), "{stdout}");
    // In `build`, a failing unit test stops its model and what reads it.
    let (code, stdout, _) = etl(p, &["build", "--select", "customers+"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  unit_test wrong_on_purpose"), "{stdout}");
    assert!(stdout.contains("SKIP  view customers"), "{stdout}");
    assert!(stdout.contains("SKIP  table customer_value"), "{stdout}");
    assert!(stdout.contains("PASS  unit_test emails_are_checked"), "{stdout}");
    // Without it, the model builds after its tests pass.
    let (stdout, _) = etl_ok(p, &["build", "--select", "customers+", "--exclude", "wrong_on_purpose"]);
    let tests = stdout.find("unit_test emails_are_checked").unwrap();
    let model = stdout.find("view customers").unwrap();
    assert!(tests < model, "{stdout}");
    let results = artifact(p, "run_results.json");
    let vip = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == "unit_test.unit_shop.customer_value.vip_threshold_is_a_var")
        .unwrap();
    assert_eq!(vip["status"], "pass");
}

#[test]
fn an_input_not_given_or_not_read_is_an_error_at_the_test() {
    let dir = seeded_and_run();
    let p = dir.path();
    write_tests(
        p,
        "version: 2\n\
         unit_tests:\n\
         \x20 - name: half_mocked\n\
         \x20   model: customer_value\n\
         \x20   given:\n\
         \x20     - input: ref('raw_orders')\n\
         \x20       rows: []\n\
         \x20     - input: ref('raw_customers')\n\
         \x20       rows: []\n\
         \x20   expect:\n\
         \x20     rows: []\n",
    );
    let (code, _, stderr) = etl(p, &["ls"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unit test `half_mocked`: `ref('raw_customers')` is not an input of `customer_value`"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/unit_tests.yml:8:16"), "{stderr}");
    assert!(
        stderr.contains("unit test `half_mocked`: `customer_value` reads ref('customers'), not given"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/unit_tests.yml:3:11"), "{stderr}");
}

#[test]
fn a_wrong_column_or_value_fails_the_test_with_its_reason() {
    let dir = seeded_and_run();
    let p = dir.path();
    write_tests(
        p,
        "version: 2\n\
         unit_tests:\n\
         \x20 - name: typo\n\
         \x20   model: customers\n\
         \x20   given:\n\
         \x20     - input: ref('raw_customers')\n\
         \x20       rows:\n\
         \x20         - {id: 1, emial: a@b.co}\n\
         \x20   expect:\n\
         \x20     rows: []\n\
         \x20 - name: not_a_date\n\
         \x20   model: customers\n\
         \x20   given:\n\
         \x20     - input: ref('raw_customers')\n\
         \x20       rows:\n\
         \x20         - {id: 1, signup_date: someday}\n\
         \x20   expect:\n\
         \x20     rows: [{id: 1, colour: red}]\n",
    );
    let (code, _, stderr) = etl(p, &["test", "--select", "test_type:unit"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "error[unit-test]: unit test `typo`: `given` for `ref('raw_customers')`: `emial` is not one of its \
             columns (id, email, signup_date)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/unit_tests.yml:6:16"), "{stderr}");
    assert!(
        stderr.contains("unit test `not_a_date`: `given` for `ref('raw_customers')`: column `signup_date`"),
        "{stderr}"
    );
}

#[test]
fn an_incremental_unit_test_needs_its_table_and_says_so() {
    let dir = fixture("dbt_unit_tests");
    let p = dir.path();
    etl_ok(p, &["seed"]);
    let (code, _, stderr) = etl(p, &["test", "--select", "only_new_orders_are_read"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the columns of `this` are not known"), "{stderr}");
    assert!(
        stderr.contains("build `orders_inc` once first (`etl build --select orders_inc`)"),
        "{stderr}"
    );
    etl_ok(p, &["run", "--select", "orders_inc"]);
    etl_ok(p, &["test", "--select", "only_new_orders_are_read"]);
}

#[test]
fn an_exposure_is_a_no_op_of_build_and_its_mistakes_are_errors() {
    let dir = fixture("dbt_unit_tests");
    let p = dir.path();
    // (A first build: the incremental model's unit test needs its table.)
    let (stdout, _) = etl_ok(
        p,
        &["build", "--exclude", "wrong_on_purpose", "only_new_orders_are_read"],
    );
    assert!(stdout.contains("NO-OP exposure weekly_revenue"), "{stdout}");
    assert!(stdout.contains(", 1 no-op"), "{stdout}");
    let results = artifact(p, "run_results.json");
    let exposure = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == "exposure.unit_shop.weekly_revenue")
        .unwrap();
    assert_eq!(exposure["status"], "no-op");
    // Not in `run`.
    let (stdout, _) = etl_ok(p, &["run"]);
    assert!(!stdout.contains("exposure"), "{stdout}");

    std::fs::write(
        p.join("models/exposures.yml"),
        "version: 2\n\
         exposures:\n\
         \x20 - name: weekly_revenue\n\
         \x20   type: dashbord\n\
         \x20   depends_on: [ref('customer_valu'), \"metric('revenue')\"]\n\
         \x20   owner: {name: Ana}\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["ls"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("exposure `weekly_revenue`: `type: dashbord` is not one of dashboard, notebook"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `dashboard`?"), "{stderr}");
    assert!(stderr.contains("--> models/exposures.yml:4:11"), "{stderr}");
    assert!(
        stderr.contains("exposure `weekly_revenue` depends on `ref('customer_valu')`")
            || stderr.contains("did you mean `dashboard`?"),
        "{stderr}"
    );

    // A metric is the semantic layer's: a warning, the rest is read.
    std::fs::write(
        p.join("models/exposures.yml"),
        "version: 2\n\
         exposures:\n\
         \x20 - name: weekly_revenue\n\
         \x20   type: dashboard\n\
         \x20   depends_on: [ref('customer_value'), \"metric('revenue')\"]\n\
         \x20   owner: {name: Ana}\n",
    )
    .unwrap();
    let (_, stderr) = etl_ok(p, &["ls", "--select", "+exposure:weekly_revenue", "--output", "name"]);
    assert!(
        stderr.contains(
            "warning[unsupported]: exposure `weekly_revenue`: `metric('revenue')`: metrics are not read by etl"
        ),
        "{stderr}"
    );
}

#[test]
fn the_project_files_unit_tests_tree_configures_them() {
    let dir = fixture("dbt_unit_tests");
    let p = dir.path();
    let project = std::fs::read_to_string(p.join("dbt_project.yml")).unwrap();
    std::fs::write(
        p.join("dbt_project.yml"),
        format!("{project}unit_tests:\n  unit_shop:\n    customers:\n      +enabled: false\n    paid_totals:\n      +tags: [money]\n"),
    )
    .unwrap();
    let (stdout, _) = etl_ok(p, &["ls", "--resource-type", "unit_test", "--output", "name"]);
    assert!(!stdout.contains("emails_are_checked"), "{stdout}");
    assert!(stdout.contains("vip_threshold_is_a_var"), "{stdout}");
    let (stdout, _) = etl_ok(p, &["ls", "--select", "tag:money", "--output", "name"]);
    assert_eq!(
        stdout,
        "an_ephemeral_input_is_given_as_sql\nnothing_paid_gives_nothing\n"
    );
    // A path that names no unit test is an error, as for the other trees.
    std::fs::write(
        p.join("dbt_project.yml"),
        format!("{project}unit_tests:\n  unit_shop:\n    custmers:\n      +enabled: false\n"),
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["ls"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`custmers` matches no folder or file"), "{stderr}");
    assert!(stderr.contains("--> dbt_project.yml:15:5"), "{stderr}");
}
