//! The nightly build, run the way users run it: moved, killed, twice at
//! once, on files that land empty or change. None of it may fail a night
//! by chance or ingest a file twice. See: issue 23.

use crate::support::*;
use std::path::Path;

fn message(dir: &Path, unique_id: &str) -> String {
    result(dir, unique_id)["message"].as_str().unwrap().to_owned()
}

fn result(dir: &Path, unique_id: &str) -> serde_json::Value {
    artifact(dir, "run_results.json")["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == unique_id)
        .unwrap_or_else(|| panic!("no result for {unique_id}"))
        .clone()
}

fn warning_codes(dir: &Path, unique_id: &str) -> Vec<String> {
    result(dir, unique_id)["etl_warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The last commit of a table, as JSON actions.
fn last_commit(dir: &Path, schema: &str, name: &str) -> String {
    let log = table_dir(dir, schema, name).join("_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    std::fs::read_to_string(commits.last().unwrap()).unwrap()
}

#[test]
fn a_project_copied_elsewhere_reads_only_the_files_that_are_new() {
    // A moved project (a new CI workspace, a restored backup) read every
    // bronze file again: files were recorded by absolute path.
    let dir = fixture("ingest");
    etl_ok(dir.path(), &["build"]);
    let commit = last_commit(dir.path(), "main", "clicks");
    assert!(
        commit.contains(
            r#""ingested_files":{"landing.clicks":{"2024-01-01.jsonl":{"size":44},"2024-01-02.jsonl":{"size":20}}}"#
        ),
        "{commit}"
    );
    assert!(
        !commit.contains(dir.path().to_str().unwrap()),
        "no absolute path: {commit}"
    );

    let moved = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), moved.path());
    drop(dir);
    let p = moved.path();
    std::fs::write(p.join("data/2024-01-03.jsonl"), "{\"id\":4,\"page\":\"/checkout\"}\n").unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(
        message(p, "model.ingest.clicks"),
        "incremental (append): 1 row, 1 new file ingested"
    );
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/", "4|/checkout"]);
}

#[test]
fn a_lake_an_earlier_etl_recorded_by_absolute_path_is_read_where_it_is_now() {
    // Lakes written before this change record absolute paths under
    // `ingested`: at the same place, or after the project moved, the
    // files they name are not read again.
    let dir = fixture("ingest");
    let p = dir.path();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    // Replace the record of the last commit by an old-style one, naming
    // the files where the project was before it moved.
    let log = table_dir(p, "main", "clicks").join("_delta_log/00000000000000000000.json");
    let text = std::fs::read_to_string(&log).unwrap();
    let old = text.replace(
        r#""ingested_files":{"landing.clicks":{"2024-01-01.jsonl":{"size":44},"2024-01-02.jsonl":{"size":20}}}"#,
        r#""ingested":{"landing.clicks":["/srv/old-place/data/2024-01-01.jsonl","/srv/old-place/data/2024-01-02.jsonl"]}"#,
    );
    assert_ne!(old, text, "{text}");
    std::fs::write(&log, old).unwrap();
    std::fs::write(p.join("data/2024-01-03.jsonl"), "{\"id\":4,\"page\":\"/checkout\"}\n").unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(
        message(p, "model.ingest.clicks"),
        "incremental (append): 1 row, 1 new file ingested"
    );
    assert_eq!(rows(p, "main", "clicks").len(), 4);
    // And the new commit records them the new way.
    assert!(last_commit(p, "main", "clicks").contains(r#""2024-01-03.jsonl":{"size":28}"#));
}

#[test]
fn an_empty_file_is_named_and_read_once_rows_are_written_to_it() {
    let dir = fixture("ingest");
    let p = dir.path();
    etl_ok(p, &["build"]);
    // Day 3 lands before its producer wrote into it; day 4 is complete.
    std::fs::write(p.join("data/2024-01-03.jsonl"), "").unwrap();
    std::fs::write(p.join("data/2024-01-04.jsonl"), "\n").unwrap();
    std::fs::write(p.join("data/2024-01-05.jsonl"), "{\"id\":5,\"page\":\"/\"}\n").unwrap();
    let (_, stderr) = etl_ok(p, &["build"]);
    assert_eq!(
        message(p, "model.ingest.clicks"),
        "incremental (append): 1 row, 1 new file ingested"
    );
    assert_eq!(warning_codes(p, "model.ingest.clicks"), ["empty-file", "empty-file"]);
    let day_3 = p.join("data/2024-01-03.jsonl");
    assert!(
        stderr.contains(&format!(
            "warning[empty-file]: source `landing.clicks`: `{}` has no rows: not ingested",
            day_3.display()
        )),
        "{stderr}"
    );
    let commit = last_commit(p, "main", "clicks");
    assert!(!commit.contains("2024-01-03.jsonl"), "not recorded as read: {commit}");

    // Seen once, not reported again while it stays as it is: neither on
    // a night with other files, nor on one whose only new file is empty.
    std::fs::write(p.join("data/2024-01-06.jsonl"), "{\"id\":6,\"page\":\"/\"}\n").unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("empty-file"), "{stderr}");
    assert_eq!(rows(p, "main", "clicks").len(), 5);
    std::fs::write(p.join("data/2024-01-07.jsonl"), "").unwrap();
    for night in ["the empty file's first", "the next"] {
        let (code, _, stderr) = etl(p, &["build"]);
        assert_eq!(code, 0, "{stderr}");
        let warned = stderr.matches("warning[empty-file]").count();
        assert_eq!(warned, usize::from(night != "the next"), "{night} night: {stderr}");
        assert_eq!(
            message(p, "model.ingest.clicks"),
            "incremental: no new files (4 consumed before)"
        );
    }

    // The producer writes day 3: it is read now.
    std::fs::write(&day_3, "{\"id\":30,\"page\":\"/late\"}\n").unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(
        message(p, "model.ingest.clicks"),
        "incremental (append): 1 row, 1 new file ingested"
    );
    assert_eq!(clicks_and_ids(p), ["6|6"]);
}

#[test]
fn a_consumed_file_rewritten_with_other_rows_is_reported_and_not_read_twice() {
    let dir = fixture("ingest");
    let p = dir.path();
    etl_ok(p, &["build"]);
    std::fs::write(
        p.join("data/2024-01-02.jsonl"),
        "{\"id\":3,\"page\":\"/\"}\n{\"id\":9,\"page\":\"/x\"}\n",
    )
    .unwrap();
    let (_, stderr) = etl_ok(p, &["build"]);
    assert_eq!(warning_codes(p, "model.ingest.clicks"), ["rewritten-file"]);
    assert!(
        stderr.contains("changed since `clicks` read it (20 bytes, now 41): its new content is not read"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`etl build --select clicks --full-refresh`"),
        "{stderr}"
    );
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/"]);
}

#[test]
fn a_failed_first_build_of_an_incremental_model_reports_its_own_error() {
    // See: issue 23 (`reading back ventes_geo failed: … Path does not
    // exist` hid the write's error).
    let dir = fixture("ingest");
    let p = dir.path();
    std::fs::write(
        p.join("models/pages.sql"),
        "{{ config(materialized='incremental') }}\nselect id, cast(page as int) as page from {{ source('landing', 'clicks') }}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = etl(p, &["build", "--select", "pages"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let m = message(p, "model.ingest.pages");
    assert!(
        m.starts_with(
            "models/pages.sql: building `pages` failed: Cast error: Cannot cast string '/' to value of Int32 type"
        ),
        "{m}"
    );
    assert!(!m.contains("reading back"), "{m}");
    assert!(!table_dir(p, "main", "pages").join("_delta_log").exists());
}

/// A new day of orders for the basic fixture: one paid French order.
fn land_a_paid_order(p: &Path) {
    std::fs::write(
        p.join("data/orders_2024-01-03.jsonl"),
        "{\"order_id\":100,\"country\":\"FR\",\"amount\":1000.0,\"status\":\"paid\"}\n",
    )
    .unwrap();
}

/// The ingest fixture built, then a new day's file landed (id 4).
fn ingest_with_a_new_day() -> tempfile::TempDir {
    let dir = fixture("ingest");
    let p = dir.path();
    etl_ok(p, &["build"]);
    std::fs::write(p.join("data/2024-01-03.jsonl"), "{\"id\":4,\"page\":\"/checkout\"}\n").unwrap();
    dir
}

/// How many clicks the ingest fixture's table holds, and how many ids.
fn clicks_and_ids(p: &Path) -> Vec<String> {
    query(
        p,
        &["main.clicks"],
        "select count(*), count(distinct id) from main_clicks",
    )
}

#[test]
fn a_second_build_of_the_same_lake_stops_at_once_and_names_the_first() {
    // See: issue 23 (two builds at once appended the same day twice).
    let dir = ingest_with_a_new_day();
    let p = dir.path();
    let release = p.join("release");
    // A has listed the new file and written its rows, not committed them...
    let a = paused_before_commit(p, &["build"], &[], &release);
    // ...when B starts: it stops before reading anything.
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error[lake-locked]: another etl process is building the lake at `"),
        "{stderr}"
    );
    assert!(stderr.contains("(invocation "), "{stderr}");
    assert!(stderr.contains(&format!("process {} on `", a.id())), "{stderr}");
    std::fs::write(&release, b"").unwrap();
    let a = a.wait_with_output().unwrap();
    assert_eq!(a.status.code(), Some(0), "{}", String::from_utf8_lossy(&a.stderr));
    // A's day is there once; B, run again, finds nothing new.
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(clicks_and_ids(p), ["4|4"]);
}

#[test]
fn the_lake_of_a_killed_build_is_free_at_once() {
    let dir = ingest_with_a_new_day();
    let p = dir.path();
    let mut a = paused_before_commit(p, &["build"], &[], &p.join("release"));
    a.kill().unwrap();
    a.wait().unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(clicks_and_ids(p), ["4|4"]);
}

#[test]
fn an_export_a_kill_left_behind_its_table_is_written_by_the_next_build() {
    // See: issue 23: killed between a table's commit and its CSV export,
    // every later build found the model up to date and the export stale.
    let dir = fixture("basic");
    let p = dir.path();
    let export = p.join("lake/exports/revenue_by_region.csv");
    etl_ok(p, &["build"]);
    let before = std::fs::read_to_string(&export).unwrap();
    // New orders; the build dies right after revenue_by_region's commit.
    land_a_paid_order(p);
    killed_at(p, &["build", "--select", "+revenue_by_region"], "before-export");
    assert_eq!(
        std::fs::read_to_string(&export).unwrap(),
        before,
        "the export is a day old"
    );

    etl_ok(p, &["build", "--select", "revenue_by_region"]);
    let m = message(p, "model.basic.revenue_by_region");
    assert!(m.starts_with("up to date: same SQL, config and inputs as its last build; its export did not match version 1 (made from version 0) and was written again: file://"), "{m}");
    let table = query(
        p,
        &["marts.revenue_by_region"],
        "select * from marts_revenue_by_region order by revenue desc",
    );
    let csv: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.replace(',', "|"))
        .collect();
    assert_eq!(csv, table, "the export is the table's current version");
    assert_ne!(std::fs::read_to_string(&export).unwrap(), before);
    // Then it is up to date like the table.
    etl_ok(p, &["build", "--select", "revenue_by_region"]);
    assert_eq!(
        message(p, "model.basic.revenue_by_region"),
        "up to date: same SQL, config and inputs as its last build"
    );
    // An export deleted by hand is written again too.
    std::fs::remove_file(&export).unwrap();
    etl_ok(p, &["build", "--select", "revenue_by_region"]);
    let m = message(p, "model.basic.revenue_by_region");
    assert!(m.contains("its export did not match version 1 (`file://"), "{m}");
    assert!(
        m.contains("revenue_by_region.csv` deleted since) and was written again"),
        "{m}"
    );
    assert!(export.exists());
}

/// Deletes the Parquet files of a table, as something outside etl would;
/// returns them.
fn delete_data_files(p: &Path, schema: &str, name: &str) -> Vec<std::path::PathBuf> {
    let files: Vec<_> = std::fs::read_dir(table_dir(p, schema, name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|x| x == "parquet"))
        .collect();
    for file in &files {
        std::fs::remove_file(file).unwrap();
    }
    files
}

#[test]
fn a_table_whose_data_file_was_deleted_fails_by_name_until_rebuilt() {
    let dir = fixture("ingest");
    let p = dir.path();
    etl_ok(p, &["build"]);
    let data = delete_data_files(p, "main", "clicks").remove(0);
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "error[missing-data-files]: table `clicks`: 1 data file of its current version is gone: `file://{}`",
            data.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "help: restore them from a backup, or rebuild the table: `etl build --select clicks --full-refresh`"
        ),
        "{stderr}"
    );
    assert_eq!(result(p, "model.ingest.clicks")["status"], "error");
    etl_ok(p, &["build", "--full-refresh"]);
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/"]);
}

#[test]
fn a_table_model_missing_a_data_file_fails_while_up_to_date_and_is_whole_once_rebuilt() {
    let dir = fixture("basic");
    let p = dir.path();
    etl_ok(p, &["build"]);
    assert!(!delete_data_files(p, "marts", "revenue_by_region").is_empty());
    // Up to date, it would be reported as built, and read by whatever
    // comes after it: it fails by name.
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error[missing-data-files]: table `revenue_by_region`: "),
        "{stderr}"
    );
    // New orders: a table is rebuilt in full from its inputs anyway, and
    // its new version is whole.
    land_a_paid_order(p);
    etl_ok(p, &["build"]);
    let rebuilt = rows(p, "marts", "revenue_by_region");
    etl_ok(p, &["build", "--full-refresh"]);
    assert_eq!(rebuilt, rows(p, "marts", "revenue_by_region"));
    assert_eq!(rebuilt, ["Americas|1|3.0", "Europe|3|1017.75"], "the new order counted");
}

#[test]
fn a_corrupt_commit_is_named_with_the_version_to_go_back_to() {
    let dir = ingest_with_a_new_day();
    let p = dir.path();
    etl_ok(p, &["build"]);
    let commit = table_dir(p, "main", "clicks").join("_delta_log/00000000000000000001.json");
    let text = std::fs::read_to_string(&commit).unwrap();
    std::fs::write(&commit, &text[..text.len() / 2]).unwrap();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error[unreadable-table]: table `clicks`: its Delta log cannot be read: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "note: commit 1 is not valid JSON: `file://{}`",
            commit.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "note: version 0 reads: move `file://{}` out of `_delta_log/` to go back to it",
            commit.display()
        )),
        "{stderr}"
    );
    assert_eq!(result(p, "model.ingest.clicks")["status"], "error");
    // Done as it says, the next build is whole again.
    std::fs::rename(&commit, p.join("commit-1.json")).unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(rows(p, "main", "clicks").len(), 4);
}

#[test]
fn a_shared_subplan_that_fails_costs_a_second_run_not_the_night() {
    // The fail-safe of etl's plan rewrites: a rewritten plan failing with
    // an error of DataFusion's own runs again without etl's rules, and
    // says so in run_results.json.
    let dir = fixture("shared_subplans");
    let p = dir.path();
    let env = [("ETL_FAILPOINT", "shared-subplan-error".to_owned())];
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--select", "+cohorts"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(warning_codes(p, "model.shared_subplans.cohorts"), ["rewrite-failed"]);
    let warning = &result(p, "model.shared_subplans.cohorts")["etl_warnings"][0]["message"];
    let warning = warning.as_str().unwrap();
    assert!(
        warning.starts_with("`cohorts` failed with an error of DataFusion's own on the plan etl rewrote, and passed without etl's rewrites (`share_repeated_subplans`, `whole_partition_windows`, `count_beside_distinct_to_sum`): "),
        "{warning}"
    );
    assert!(warning.contains("ETL_FAILPOINT=shared-subplan-error"), "{warning}");
    assert!(stderr.contains("warning[rewrite-failed]"), "{stderr}");
    let shared = rows(p, "main", "cohorts");
    let (code, _, stderr) = etl_with_env(
        p,
        &["build", "--select", "+cohorts", "--force"],
        &[("ETL_SHARE_REPEATED_SUBPLANS", "false".to_owned())],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows(p, "main", "cohorts"), shared, "the same rows as without sharing");
    assert!(!shared.is_empty());
}

#[test]
fn a_window_operator_that_fails_costs_a_second_run_not_the_night() {
    // The fail-safe of etl's window operator (issue 30): a model whose
    // `row_number() over (partition by ...)` runs in it and fails with an
    // engine error runs again as DataFusion plans it, gives the same rows,
    // and says so.
    let dir = fixture("incremental");
    let p = dir.path();
    let env = [("ETL_FAILPOINT", "partition-window-error".to_owned())];
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--select", "+events_latest"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(warning_codes(p, "model.incr.events_latest"), ["rewrite-failed"]);
    let warning = result(p, "model.incr.events_latest")["etl_warnings"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(warning.contains("`whole_partition_windows`"), "{warning}");
    assert!(warning.contains("ETL_FAILPOINT=partition-window-error"), "{warning}");
    let rerun = rows(p, "main", "events_latest");
    assert!(!rerun.is_empty());
    let (code, _, stderr) = etl(p, &["build", "--select", "events_latest", "--full-refresh"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(warning_codes(p, "model.incr.events_latest"), Vec::<String>::new());
    assert_eq!(
        rows(p, "main", "events_latest"),
        rerun,
        "the same rows as with etl's window operator"
    );
}

#[test]
fn malformed_arguments_stop_etl_with_exit_code_2() {
    let dir = fixture("basic");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["ls", "--select", "+@@tag:(("]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error[invalid-selector]: unexpected `@` in the selector `+@@tag:((`"),
        "{stderr}"
    );
    assert!(stderr.contains("--select +@@tag:((\n          ^"), "{stderr}");
    let (code, _, stderr) = etl(p, &["build", "--threads", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid value '0' for '--threads <THREADS>'"),
        "{stderr}"
    );
    assert!(!p.join("lake/warehouse").exists(), "nothing ran");
}

#[test]
fn a_dated_export_keeps_a_copy_per_build_day_beside_a_parquet_one() {
    // Issue 29: exports as BI teams expect them, sorted, as CSV and
    // Parquet, with a copy per build day kept beside the CSV.
    let dir = fixture("basic");
    let p = dir.path();
    edit_file(
        p,
        "project.yaml",
        r#"+export: {format: csv, order_by: "revenue desc"}"#,
        r#"+export: [{format: csv, order_by: "revenue desc", dated: true}, {format: parquet, order_by: "revenue desc"}]"#,
    );
    etl_ok(p, &["build"]);
    let exports = p.join("lake/exports");
    let days = |p: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(p.join("lake/exports/revenue_by_region"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let first = days(p);
    assert_eq!(first.len(), 1, "{first:?}");
    let day = first[0].strip_suffix(".csv").unwrap().to_owned();
    assert!(chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").is_ok(), "{day}");
    let csv = std::fs::read_to_string(exports.join("revenue_by_region.csv")).unwrap();
    assert_eq!(
        std::fs::read_to_string(exports.join(format!("revenue_by_region/{day}.csv"))).unwrap(),
        csv
    );
    // The Parquet export holds the same rows in the same order.
    let parquet = query_parquet(&exports.join("revenue_by_region.parquet"));
    let rows: Vec<String> = csv.lines().skip(1).map(|l| l.replace(',', "|")).collect();
    assert_eq!(parquet, rows);
    assert!(rows.len() > 1);

    // The next day: the copy of the day before stays, and today's is made
    // though the table is up to date. (Yesterday is made by renaming.)
    let record = p.join("lake/_etl/exports/model.basic.revenue_by_region.json");
    let kept = std::fs::read_to_string(&record).unwrap();
    assert!(kept.contains(&format!("revenue_by_region/{day}.csv")), "{kept}");
    std::fs::write(&record, kept.replace(&day, "2000-01-01")).unwrap();
    std::fs::rename(
        exports.join(format!("revenue_by_region/{day}.csv")),
        exports.join("revenue_by_region/2000-01-01.csv"),
    )
    .unwrap();
    etl_ok(p, &["build"]);
    let m = message(p, "model.basic.revenue_by_region");
    let second = days(p);
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[0], "2000-01-01.csv");
    let today = second[1].strip_suffix(".csv").unwrap();
    assert!(today >= day.as_str(), "{today} after {day}");
    assert!(
        m.starts_with(&format!(
            "up to date: same SQL, config and inputs as its last build; its export did not match version 0 (no copy for {today} yet) and was written again: file://"
        )),
        "{m}"
    );
    // Then nothing more to do.
    etl_ok(p, &["build"]);
    assert_eq!(
        message(p, "model.basic.revenue_by_region"),
        "up to date: same SQL, config and inputs as its last build"
    );
    assert_eq!(days(p), second);

    // `dated` is true or false.
    edit_file(p, "project.yaml", "dated: true", "dated: yes please");
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(r#"`dated` must be true or false, not `"yes please"`"#),
        "{stderr}"
    );
}

/// The rows of a Parquet file, `|`-joined, in file order.
fn query_parquet(path: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let df = ctx
            .read_parquet(path.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let batches = df.collect().await.unwrap();
        format_rows(&batches)
    })
}
