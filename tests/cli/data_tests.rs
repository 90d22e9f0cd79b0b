//! Data tests: generic and singular, severities, thresholds at their
//! boundary, stored failures, and `build` skipping what a failed test
//! guards. See: issue 5.

use std::collections::BTreeMap;

use crate::support::*;

/// `unique_id` -> `(status, failures)` from run_results.json.
fn statuses(project: &std::path::Path) -> BTreeMap<String, (String, Option<u64>)> {
    artifact(project, "run_results.json")["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_owned(),
                (r["status"].as_str().unwrap().to_owned(), r["failures"].as_u64()),
            )
        })
        .collect()
}

#[test]
fn build_runs_each_models_tests_and_a_failed_test_skips_what_is_built_on_it() {
    let dir = fixture("data_tests");
    let (code, stdout, _) = etl(dir.path(), &["build"]);
    assert_eq!(code, 1, "an error-severity test failed: {stdout}");
    let s = statuses(dir.path());
    let get = |id: &str| {
        s.get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no result for {id}: {s:?}"))
    };
    let expected = [
        ("test.quality.unique_orders_order_id", "fail", Some(1)),
        ("test.quality.not_null_orders_order_id", "pass", Some(0)),
        ("test.quality.row_count_orders_4__1", "pass", Some(0)),
        (
            "test.quality.accepted_values_orders_status__paid__shipped",
            "warn",
            Some(1),
        ),
        // 1 null in 4 rows is 25%: over `warn_if >20%`, not over `error_if >25%`.
        ("test.quality.not_null_orders_status", "warn", Some(1)),
        ("test.quality.is_positive_orders_amount", "warn", Some(1)),
        // `where: status <> 'weird'` leaves out the one negative amount.
        ("test.quality.accepted_range_orders_amount__0", "pass", Some(0)),
        // One orphan: not over `error_if: >1`, over the default `warn_if`.
        (
            "test.quality.relationships_orders_customer_id__id__ref_customers_",
            "warn",
            Some(1),
        ),
        ("test.quality.assert_no_negative_amounts", "warn", Some(1)),
        ("test.quality.unique_customers_id", "pass", Some(0)),
        ("test.quality.not_null_customers_name", "warn", Some(1)),
        ("model.quality.orders", "success", None),
        ("model.quality.customer_names", "success", None),
        ("model.quality.customers_rejected", "success", None),
        ("model.quality.order_totals", "skipped", None),
        ("model.quality.clean_orders", "skipped", None),
        ("model.quality.clean_totals", "skipped", None),
        ("test.quality.unique_clean_orders_order_id", "skipped", None),
        (
            "test.quality.dbt_utils_expression_is_true_clean_orders_order_id___3",
            "skipped",
            None,
        ),
    ];
    for (id, status, failures) in expected {
        assert_eq!(get(id), (status.to_owned(), failures), "{id}");
    }
    assert_eq!(s.len(), expected.len() + 1, "and the seed: {s:?}");
    assert!(
        stdout.contains("FAIL unique_orders_order_id: 1 failing row, over `error_if !=0`"),
        "{stdout}"
    );
    assert!(stdout.contains("tests: 4 passed, 6 warned, 1 failed"), "{stdout}");
    // A skipped model was never written.
    assert!(!table_dir(dir.path(), "main", "order_totals").exists());
    // The summary counts the rows of reject tables by reason.
    assert!(
        stdout.contains("Rejected rows:\n  customers_rejected                    1  missing_name 1\n"),
        "{stdout}"
    );
    let quality = &artifact(dir.path(), "run_results.json")["quality"];
    assert_eq!(quality["tests"], serde_json::json!({"pass": 4, "warn": 6, "fail": 1}));
    assert_eq!(
        quality["rejected"],
        serde_json::json!([{"unique_id": "model.quality.customers_rejected", "name": "customers_rejected",
            "rows": 1, "reasons": [["missing_name", 1]]}])
    );
}

#[test]
fn store_failures_keeps_the_failing_rows_in_the_audit_schema() {
    let dir = fixture("data_tests");
    // The fixture has failing tests: the build exits 1.
    assert_eq!(etl(dir.path(), &["build"]).0, 1);
    assert_eq!(
        rows(dir.path(), "main_dbt_test__audit", "is_positive_orders_amount"),
        ["2|weird|-5.0|9"]
    );
    let results = artifact(dir.path(), "run_results.json");
    let stored = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == "test.quality.is_positive_orders_amount")
        .unwrap();
    assert!(
        stored["location"]
            .as_str()
            .unwrap()
            .ends_with("/lake/warehouse/main_dbt_test__audit/is_positive_orders_amount/"),
        "{stored}"
    );
}

#[test]
fn etl_test_runs_only_the_selected_nodes_tests_against_the_lake() {
    let dir = fixture("data_tests");
    // The fixture has failing tests: the build exits 1.
    assert_eq!(etl(dir.path(), &["build"]).0, 1);
    let (code, stdout, _) = etl(dir.path(), &["test", "--select", "customers"]);
    assert_eq!(code, 0, "warnings only: {stdout}");
    let s = statuses(dir.path());
    let ids: Vec<&str> = s.keys().map(String::as_str).collect();
    // Eager indirect selection: the relationships test reads `customers`.
    assert_eq!(
        ids,
        [
            "test.quality.not_null_customers_name",
            "test.quality.relationships_orders_customer_id__id__ref_customers_",
            "test.quality.unique_customers_id",
        ]
    );
    let (code, _, _) = etl(dir.path(), &["test", "--select", "orders"]);
    assert_eq!(code, 1, "unique_orders_order_id fails");
}

#[test]
fn ls_lists_tests_with_dbt_names() {
    let dir = fixture("data_tests");
    let (code, stdout, stderr) = etl(dir.path(), &["ls", "--resource-type", "test", "--output", "name"]);
    assert_eq!(code, 0, "{stderr}");
    let names: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        names,
        [
            "accepted_range_orders_amount__0",
            "accepted_values_orders_status__paid__shipped",
            "assert_no_negative_amounts",
            "dbt_utils_expression_is_true_clean_orders_order_id___3",
            "is_positive_orders_amount",
            "not_null_customers_name",
            "not_null_orders_order_id",
            "not_null_orders_status",
            "relationships_orders_customer_id__id__ref_customers_",
            "row_count_orders_4__1",
            "unique_clean_orders_order_id",
            "unique_customers_id",
            "unique_orders_order_id",
        ]
    );
}

#[test]
fn an_unknown_generic_test_is_an_error_naming_the_yaml_line() {
    let dir = fixture("data_tests");
    let yml = dir.path().join("models/schema.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(
        &yml,
        text.replace("tests: [unique, not_null]", "tests: [unique, not_nul]"),
    )
    .unwrap();
    let (code, _, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[unknown-test]: unknown generic test `not_nul`"),
        "{stderr}"
    );
    assert!(stderr.contains("models/schema.yml:16:"), "{stderr}");
    assert!(stderr.contains("did you mean `not_null`?"), "{stderr}");
    assert!(!dir.path().join("lake/warehouse").exists(), "nothing was built");
}

#[test]
fn a_malformed_threshold_is_an_error_on_the_test() {
    let dir = fixture("data_tests");
    let yml = dir.path().join("models/schema.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(&yml, text.replace("error_if: \">1\"", "error_if: \"more than one\"")).unwrap();
    // A bad config stops the project before anything runs (see: issue 27).
    let (code, _, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[invalid-config]: `error_if: more than one` is not a threshold"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/schema.yml:37:13"), "{stderr}");
    assert!(!dir.path().join("lake/warehouse").exists(), "nothing was built");
}

#[test]
fn write_audit_publish_keeps_the_published_version_when_a_test_fails() {
    let dir = fixture("quality_gates");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let results = artifact(dir.path(), "run_results.json");
    let kpis = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == "model.gates.kpis")
        .unwrap();
    assert_eq!(kpis["message"], "table: 2 rows, audited before publishing");
    assert_eq!(rows(dir.path(), "main", "kpis"), ["mobile|50.0", "web|100.0"]);
    let staging = dir.path().join("lake/warehouse/_etl_staging");
    assert!(
        !staging.join("main/kpis").exists(),
        "the staged copy is removed once published"
    );

    let (code, stdout, stderr) = etl(dir.path(), &["build", "--vars", "{bad_data: true}"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error[audit]: `kpis` failed its audit: 1 test failed on the new data"),
        "{stderr}"
    );
    assert!(stderr.contains("`not_null_kpis_revenue`: 1 failing row"), "{stderr}");
    // The published table is the first build's, at its first version.
    assert_eq!(rows(dir.path(), "main", "kpis"), ["mobile|50.0", "web|100.0"]);
    let log = dir.path().join("lake/warehouse/main/kpis/_delta_log");
    assert!(log.join("00000000000000000000.json").exists());
    assert!(!log.join("00000000000000000001.json").exists(), "no second commit");
    assert!(!staging.join("main/kpis").exists());
    let s = statuses(dir.path());
    assert_eq!(s["model.gates.kpis"].0, "error");
    assert_eq!(s["test.gates.not_null_kpis_revenue"], ("fail".to_owned(), Some(1)));
    assert_eq!(s["model.gates.kpi_share"].0, "skipped");
}

#[test]
fn a_broken_contract_fails_the_model_before_anything_is_written() {
    // Checked on the plan by `etl compile` and at the start of the build
    // (exit 2, nothing run), as every model's SQL is (issue 26).
    let dir = fixture("quality_gates");
    let (code, _, _) = etl(dir.path(), &["build", "--select", "contracted"]);
    assert_eq!(code, 0);
    assert_eq!(rows(dir.path(), "main", "contracted"), ["1|9.5"]);
    let (code, _, stderr) = etl(
        dir.path(),
        &["compile", "--select", "contracted", "--vars", "{break_contract: true}"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[contract]: model `contracted` breaks its contract: 2 columns differ"),
        "{stderr}"
    );
    let (code, _, stderr) = etl(
        dir.path(),
        &["build", "--select", "contracted", "--vars", "{break_contract: true}"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[contract]: model `contracted` breaks its contract: 2 columns differ"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/schema.yml"), "{stderr}");
    assert!(
        stderr.contains("`amount` is declared `double` (double) but the query returns varchar"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`surprise` (boolean) is returned by the query but not declared"),
        "{stderr}"
    );
    assert_eq!(
        rows(dir.path(), "main", "contracted"),
        ["1|9.5"],
        "the old version stays"
    );
}

#[test]
fn source_freshness_compares_the_newest_row_with_the_thresholds() {
    let dir = fixture("freshness");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ago = |hours: i64| (chrono::Utc::now() - chrono::Duration::hours(hours)).format("%Y-%m-%d %H:%M:%S");
    let write = |name: &str, rows: &[(i64, &str)]| {
        let mut text = String::from("id,kind,loaded_at\n");
        for (i, (hours, kind)) in rows.iter().enumerate() {
            text.push_str(&format!("{i},{kind},{}\n", ago(*hours)));
        }
        std::fs::write(data.join(name), text).unwrap();
    };
    write("fresh.csv", &[(30, "x"), (1, "x")]);
    write("stale.csv", &[(48, "x")]);
    write("ancient.csv", &[(240, "x")]);
    // The newest row is a stream row; the filter only looks at batch rows.
    write("mixed.csv", &[(3, "batch"), (0, "stream")]);

    let (code, stdout, stderr) = etl(dir.path(), &["source", "freshness"]);
    assert_eq!(code, 1, "an error-level source: {stdout}\n{stderr}");
    let results = artifact(dir.path(), "sources.json");
    let statuses: BTreeMap<String, String> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("landing.ancient", "error"),
        ("landing.filtered", "warn"),
        ("landing.fresh", "pass"),
        ("landing.stale", "warn"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(statuses, expected, "`unchecked` turns freshness off");
    assert!(stdout.contains("ERROR STALE freshness of landing.ancient"), "{stdout}");
    assert!(stdout.contains("newest `loaded_at` is 10.0 days old"), "{stdout}");

    let (code, stdout, _) = etl(dir.path(), &["source", "freshness", "--select", "source:landing.fresh"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("PASS        freshness of landing.fresh"), "{stdout}");
}

#[test]
fn every_built_in_test_passes_and_fails_where_it_should() {
    let dir = fixture("test_types");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let s = statuses(dir.path());
    let expected = [
        ("unique_items_code", "pass", 0),
        ("unique_items_id", "fail", 1),
        ("not_null_items_code", "pass", 0),
        ("not_null_items_kind", "fail", 1),
        ("accepted_values_items_kind__x__y", "pass", 0),
        ("accepted_values_items_kind__x", "fail", 1),
        ("relationships_items_kind__kind__ref_kinds_", "pass", 0),
        ("kind_has_a_known_kind", "fail", 1),
        ("accepted_range_items_id__3__1", "pass", 0),
        // min 2, exclusive: ids 1 and 2
        ("accepted_range_items_id__False__2", "fail", 2),
        ("expression_is_true_items_qty___0", "pass", 0),
        ("qty_is_positive", "fail", 1),
        ("unique_combination_of_columns_items_id__code", "pass", 0),
        ("unique_combination_of_columns_items_kind", "fail", 1),
        ("row_count_items_10__1", "pass", 0),
        ("row_count_items_5", "fail", 1),
        // three odd ids, counted up to `limit: 2`; from checks/generic/
        ("is_even_items_id", "fail", 2),
    ];
    for (name, status, failures) in expected {
        let id = format!("test.types.{name}");
        assert_eq!(s.get(&id), Some(&(status.to_owned(), Some(failures))), "{id}: {s:?}");
    }
    assert_eq!(s.len(), expected.len() + 2, "and the two models");
}

#[test]
fn tests_reading_several_nodes_never_deadlock_the_build() {
    // See: the reference project's first build, which ran 97 of 148 nodes.
    let dir = fixture("test_edges");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("6 nodes selected"), "{stdout}");
    assert!(
        stdout.contains("4 succeeded, 0 failed, 0 skipped; tests: 2 passed"),
        "{stdout}"
    );
}

/// `unique_id` -> whether run_results reports it up to date.
fn up_to_date(project: &std::path::Path) -> BTreeMap<String, bool> {
    artifact(project, "run_results.json")["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_owned(),
                r["etl_up_to_date"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_test_that_passed_on_unchanged_data_is_not_run_again() {
    let dir = fixture("data_tests");
    let p = dir.path();
    etl_ok(p, &["build", "-s", "customers", "--indirect-selection", "cautious"]);
    let first = statuses(p);
    let (code, stdout, _) = etl(p, &["build", "-s", "customers", "--indirect-selection", "cautious"]);
    assert_eq!(code, 0, "{stdout}");
    // Same seed, same table version: the passing and warning tests replay
    // their result, with their failure counts.
    assert_eq!(statuses(p), first);
    let fresh = up_to_date(p);
    assert!(fresh["test.quality.unique_customers_id"], "{fresh:?}");
    assert!(fresh["test.quality.not_null_customers_name"], "{fresh:?}");
    assert!(
        stdout.contains("tests: 1 passed, 1 warned, 0 failed (2 on unchanged data, not run again)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WARN not_null_customers_name"),
        "the warning is still shown: {stdout}"
    );

    // New data: the tests run on it.
    std::fs::write(p.join("seeds/customers.csv"), "id,name\n1,Ada\n2,Bob\n3,Cy\n").unwrap();
    etl_ok(p, &["build", "-s", "customers", "--indirect-selection", "cautious"]);
    let fresh = up_to_date(p);
    assert!(!fresh["test.quality.not_null_customers_name"], "{fresh:?}");
    assert_eq!(
        statuses(p)["test.quality.not_null_customers_name"],
        ("pass".to_owned(), Some(0))
    );

    // --force runs everything.
    etl(
        p,
        &[
            "build",
            "-s",
            "customers",
            "--indirect-selection",
            "cautious",
            "--force",
        ],
    );
    assert!(up_to_date(p).values().all(|fresh| !fresh));
}

#[test]
fn the_reject_summary_counts_a_reject_table_that_was_up_to_date() {
    let dir = fixture("data_tests");
    let p = dir.path();
    let args = [
        "build",
        "-s",
        "customers",
        "customers_rejected",
        "--indirect-selection",
        "empty",
    ];
    let (code, first, _) = etl(p, &args);
    assert_eq!(code, 0, "{first}");
    let (code, second, stderr) = etl(p, &args);
    assert_eq!(code, 0, "{second}\n{stderr}");
    assert!(second.contains("up to date"), "{second}");
    let summary = |out: &str| -> Vec<String> {
        out.lines()
            .skip_while(|l| *l != "Rejected rows:")
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(summary(&second), summary(&first));
    assert_eq!(summary(&second).len(), 2, "{second}");
}

/// The messages of the tests on `model`, sorted.
fn test_messages(dir: &std::path::Path, model: &str) -> Vec<String> {
    messages(dir, |id| {
        (id.starts_with("test.") && id.contains(&format!("_{model}_"))).then(|| id.to_owned())
    })
}

/// `label: message` of each node `label` (from its unique id) picks, sorted.
fn messages(dir: &std::path::Path, label: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = artifact(dir, "run_results.json")["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let name = label(r["unique_id"].as_str().unwrap())?;
            Some(format!("{name}: {}", r["message"].as_str().unwrap()))
        })
        .collect();
    out.sort();
    out
}

// See: issue 4. A test on a table that only gained rows reads what it
// gained, and fails on the same rows as a full run.
#[test]
fn tests_on_a_table_that_only_gained_rows_read_what_it_gained_and_fail_as_a_full_run_does() {
    let dir = fixture("test_gains");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        test_messages(p, "events")
            .iter()
            .all(|m| m.ends_with(": no failing rows")),
        "{:?}",
        test_messages(p, "events")
    );

    std::fs::write(
        p.join("data/events/day2.csv"),
        "event_id,account_id,kind\ne3,a3,click\n",
    )
    .unwrap();
    std::fs::write(p.join("data/accounts/day2.csv"), "id\na3\n").unwrap();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let gained = "no failing rows; read only what its model gained since it last passed (1 file)";
    assert_eq!(
        test_messages(p, "events"),
        [
            format!("test.gains.accepted_values_events_kind__click__view: {gained}"),
            format!("test.gains.not_null_events_account_id: {gained}"),
            format!("test.gains.not_null_events_event_id: {gained}"),
            format!("test.gains.relationships_events_account_id__id__ref_accounts_: {gained}"),
            format!("test.gains.unique_events_event_id: {gained}"),
        ]
    );

    // A duplicate of an old event, a null, an unknown account, a new kind.
    std::fs::write(
        p.join("data/events/day3.csv"),
        "event_id,account_id,kind\ne4,a1,click\ne1,a2,view\ne5,,view\ne6,a9,click\ne7,a1,buy\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    let failed = "1 failing row, over `error_if !=0`";
    let read = "read only what its model gained since it last passed (1 file)";
    assert_eq!(
        test_messages(p, "events"),
        [
            format!("test.gains.accepted_values_events_kind__click__view: {failed}; {read}"),
            format!("test.gains.not_null_events_account_id: {failed}; {read}"),
            format!("test.gains.not_null_events_event_id: no failing rows; {read}"),
            format!("test.gains.relationships_events_account_id__id__ref_accounts_: {failed}; {read}"),
            format!("test.gains.unique_events_event_id: {failed}; {read}"),
        ]
    );
    // The same failures as reading everything.
    let (code, _, stderr) = etl(p, &["test", "--force"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        test_messages(p, "events"),
        [
            format!("test.gains.accepted_values_events_kind__click__view: {failed}"),
            format!("test.gains.not_null_events_account_id: {failed}"),
            "test.gains.not_null_events_event_id: no failing rows".to_owned(),
            format!("test.gains.relationships_events_account_id__id__ref_accounts_: {failed}"),
            format!("test.gains.unique_events_event_id: {failed}"),
        ]
    );
}

#[test]
fn a_relationship_whose_parent_was_rewritten_is_tested_in_full() {
    let dir = fixture("test_gains");
    let p = dir.path();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    // Account a2 is gone from a rebuilt parent: the old event e2 is now an
    // orphan, though `events` gained nothing.
    std::fs::write(p.join("data/accounts/day1.csv"), "id\na1\n").unwrap();
    let (code, _, stderr) = etl(p, &["run", "--full-refresh", "-s", "accounts"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    let messages = test_messages(p, "events");
    assert!(
        messages.contains(
            &"test.gains.relationships_events_account_id__id__ref_accounts_: 1 failing row, over `error_if !=0`"
                .to_owned()
        ),
        "{messages:?}"
    );
}

#[test]
fn a_merge_that_updates_an_old_row_is_tested_on_the_files_it_rewrote() {
    let dir = fixture("test_gains");
    let p = dir.path();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    // e1 was a click; it is updated in place to a kind not accepted.
    std::fs::write(p.join("data/events/day2.csv"), "event_id,account_id,kind\ne1,a1,buy\n").unwrap();
    let (code, _, stderr) = etl(p, &["build", "-s", "latest"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        test_messages(p, "latest"),
        [
            "test.gains.accepted_values_latest_kind__click__view: 1 failing row, over `error_if !=0`; \
             read only what its model gained since it last passed (1 file)",
            // Its `where` calls now(): run in full.
            "test.gains.not_null_latest_kind: no failing rows",
        ]
    );
}

// See: issue 4. The audit of an incremental change reads only where the
// change can make a failing row, and finds the failing rows a full run
// finds: a duplicate of a row the merge keeps, a new row with a null key
// (which replaces nothing), a value not accepted.
#[test]
fn an_audited_incremental_change_is_tested_where_it_can_fail_with_the_failures_of_a_full_run() {
    let dir = fixture("audit_gains");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let messages = test_messages(p, "accounts_latest");
    assert_eq!(messages.len(), 6, "{messages:?}");
    assert!(
        messages.iter().all(|m| m.ends_with(": no failing rows")),
        "{messages:?}"
    );
    // The audit also runs the test of `vips` (an upstream model) that
    // reads accounts_latest: in full, as it reads none of the new rows.
    let vips = "test.audit_gains.relationships_vips_account_id__account_id__ref_accounts_latest_: no failing rows";
    let own = |messages: Vec<String>| -> Vec<String> {
        assert!(messages.iter().any(|m| m == vips), "{messages:?}");
        messages.into_iter().filter(|m| m != vips).collect()
    };

    // a1 changes plan and email; a3 is new.
    std::fs::write(
        p.join("data/accounts/day2.csv"),
        "account_id,email,plan\na3,z@shop.test,pro\na1,x2@shop.test,pro\n",
    )
    .unwrap();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let messages = own(test_messages(p, "accounts_latest"));
    assert_eq!(messages.len(), 5, "{messages:?}");
    assert!(
        messages
            .iter()
            .all(|m| m.ends_with(": no failing rows; read only what this build adds to its model")),
        "{messages:?}"
    );
    let published = vec![
        "NULL|n@shop.test|free|false",
        "a1|x2@shop.test|pro|false",
        "a2|y@shop.test|pro|true",
        "a3|z@shop.test|pro|false",
    ];
    assert_eq!(rows(p, "main", "accounts_latest"), published);

    // a4 takes a2's email (a2 stays), a5 has an unknown plan, and a second
    // account without id joins the first one's plan.
    std::fs::write(
        p.join("data/accounts/day3.csv"),
        "account_id,email,plan\na4,y@shop.test,pro\na5,w@shop.test,gold\n,m@shop.test,free\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error[audit]: `accounts_latest` failed its audit: 3 tests failed on the new data"),
        "{stderr}"
    );
    assert_eq!(rows(p, "main", "accounts_latest"), published, "nothing is published");
    let narrowed = own(test_messages(p, "accounts_latest"));
    let read = "; read only what this build adds to its model";
    let counts: Vec<String> = narrowed.iter().map(|m| m.replace(read, "")).collect();
    assert!(narrowed.iter().all(|m| m.ends_with(read)), "{narrowed:?}");
    let failed = |m: &str| m.contains("1 failing row, over `error_if !=0`");
    assert_eq!(
        counts.iter().filter(|m| failed(m)).count(),
        3,
        "unique email, accepted plan, unique id and plan: {counts:?}"
    );

    // Reading everything finds the same failing rows.
    let (code, _, stderr) = etl(p, &["build", "--force"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(own(test_messages(p, "accounts_latest")), counts);
    assert_eq!(rows(p, "main", "accounts_latest"), published);
}

/// The messages of the singular tests, by name, sorted.
fn singular_messages(dir: &std::path::Path) -> Vec<String> {
    messages(dir, |id| id.strip_prefix("test.singular_gains.").map(str::to_owned))
}

// See: issue 4. A singular test whose failing rows each come from one
// order's rows reads the rows of the orders its tables gained, and finds
// the failing rows a full run finds; one keyed by a column the table is
// not merged on, or reading every row, runs in full.
#[test]
fn a_singular_test_keyed_by_order_reads_the_orders_its_tables_gained() {
    let dir = fixture("singular_gains");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // New orders only: c5 now has o5 (-1) beside o6 (2), in another file.
    std::fs::write(
        p.join("data/orders/day2.csv"),
        "order_id,customer_id,total\no3,c1,7\no5,c5,-1\n",
    )
    .unwrap();
    std::fs::write(p.join("data/lines/day2.csv"), "order_id,revenue\no3,7\no5,-1\n").unwrap();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let narrowed_by = |key: &str, files: &str| {
        format!("read only the rows of the `{key}` values its tables gained since it last passed ({files})")
    };
    let narrowed = |files: &str| narrowed_by("order_id", files);
    // Keyed by customer, `customers_spend` too reads what was appended.
    assert_eq!(
        singular_messages(p),
        [
            format!(
                "customers_spend: no failing rows; {}",
                narrowed_by("customer_id", "1 file")
            ),
            "lines_not_above_average: no failing rows".to_owned(),
            format!("orders_match_lines: no failing rows; {}", narrowed("2 files")),
        ]
    );

    // o1 is updated in place and gains a line: it still matches. o6 moves
    // from c5 to c6, leaving c5 with -1 spent: c5 is in none of the rows
    // `orders` gained, and a merge on order_id may move an order to
    // another customer, so `customers_spend` reads everything and sees it.
    std::fs::write(
        p.join("data/orders/day3.csv"),
        "order_id,customer_id,total\no1,c1,12\no6,c6,2\n",
    )
    .unwrap();
    std::fs::write(p.join("data/lines/day3.csv"), "order_id,revenue\no1,2\n").unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        singular_messages(p),
        [
            "customers_spend: 1 failing row, over `error_if !=0`".to_owned(),
            "lines_not_above_average: no failing rows".to_owned(),
            format!("orders_match_lines: no failing rows; {}", narrowed("2 files")),
        ]
    );

    // o2 gains a line its total lacks; `orders` gains nothing (it is up to
    // date, not built in this run).
    std::fs::write(p.join("data/lines/day4.csv"), "order_id,revenue\no2,1\n").unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    let failed = "1 failing row, over `error_if !=0`";
    assert_eq!(
        singular_messages(p),
        [
            "customers_spend: 1 failing row, over `error_if !=0`".to_owned(),
            "lines_not_above_average: no failing rows".to_owned(),
            format!("orders_match_lines: {failed}; {}", narrowed("1 file")),
        ]
    );
    let failing = ["o2|5.0|6.0"];
    assert_eq!(rows(p, "main_dbt_test__audit", "orders_match_lines"), failing);

    // Reading everything finds the same rows.
    let (code, _, stderr) = etl(p, &["test", "--force"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        singular_messages(p),
        [
            "customers_spend: 1 failing row, over `error_if !=0`".to_owned(),
            "lines_not_above_average: no failing rows".to_owned(),
            format!("orders_match_lines: {failed}"),
        ]
    );
    assert_eq!(rows(p, "main_dbt_test__audit", "orders_match_lines"), failing);
}

// See: issue 4. A table deleted and built again counts its versions from
// 0 anew: at the version a test (or a model) last read, it is another
// table, and the test reads all of it.
#[test]
fn a_table_deleted_and_built_again_is_not_taken_for_the_one_a_test_read() {
    let dir = fixture("singular_gains");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // `orders` comes back at version 0 with o2 at 99 (its lines say 5);
    // `lines` gains a row of o1 only.
    std::fs::remove_dir_all(table_dir(p, "main", "orders")).unwrap();
    std::fs::write(
        p.join("data/orders/day1.csv"),
        "order_id,customer_id,total\no1,c1,10\no2,c2,99\no6,c5,2\n",
    )
    .unwrap();
    std::fs::write(p.join("data/lines/day2.csv"), "order_id,revenue\no1,0\n").unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        singular_messages(p),
        [
            // Not "up to date": `orders` is not the table it passed on.
            "customers_spend: no failing rows",
            "lines_not_above_average: no failing rows",
            "orders_match_lines: 1 failing row, over `error_if !=0`",
        ]
    );
    assert_eq!(rows(p, "main_dbt_test__audit", "orders_match_lines"), ["o2|99.0|5.0"]);
}

#[test]
fn the_project_files_tests_tree_configures_the_tests_below_it() {
    // See: issue 24. dbt's `tests:` tree in the project file, under each
    // test's own config: here it turns the failing `unique` into a warning.
    let dir = fixture("data_tests");
    let p = dir.path();
    etl_ok(p, &["seed"]);
    etl_ok(p, &["run", "--select", "orders"]);
    let (code, stdout, _) = etl(p, &["test", "--select", "unique_orders_order_id"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  test unique_orders_order_id"), "{stdout}");
    let project = p.join("project.yaml");
    let text = std::fs::read_to_string(&project).unwrap();
    std::fs::write(&project, format!("{text}tests:\n  +severity: warn\n")).unwrap();
    let (stdout, stderr) = etl_ok(p, &["test", "--select", "unique_orders_order_id"]);
    assert!(stdout.contains("WARN  test unique_orders_order_id"), "{stdout}");
    assert!(!stderr.contains("warning[unsupported]"), "{stderr}");
}
