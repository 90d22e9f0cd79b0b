//! Incremental models: after new data, an incremental build leaves exactly
//! the rows a full refresh on all the data leaves. See: issue 4.

use crate::support::*;

const TABLES: [&str; 4] = ["events_log", "events_latest", "events_by_key", "daily"];

const DAY_3: &str = "id,day,status,amount,updated_at\n\
2,2024-01-01,paid,20.0,2024-01-03 09:00:00\n\
3,2024-01-02,paid,6.0,2024-01-03 10:00:00\n\
4,2024-01-03,new,7.0,2024-01-03 11:00:00\n";

fn all_rows(dir: &std::path::Path) -> Vec<Vec<String>> {
    TABLES.iter().map(|t| rows(dir, "main", t)).collect()
}

fn results(dir: &std::path::Path) -> Vec<String> {
    artifact(dir, "run_results.json")["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}: {}",
                r["unique_id"].as_str().unwrap(),
                r["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn every_strategy_matches_a_full_refresh_after_new_data() {
    let dir = fixture("incremental");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        results(dir.path()).iter().all(|r| r.contains("(first build)")),
        "{:?}",
        results(dir.path())
    );
    std::fs::write(dir.path().join("data/2024-01-03.csv"), DAY_3).unwrap();
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mut messages = results(dir.path());
    messages.sort();
    assert_eq!(
        messages,
        [
            "model.incr.daily: incremental (insert_overwrite): 2 rows",
            "model.incr.events_by_key: incremental (delete+insert): 3 rows, 1 new file ingested",
            "model.incr.events_latest: incremental (merge): 3 rows, 1 new file ingested",
            "model.incr.events_log: incremental (append): 3 rows, 1 new file ingested",
        ]
    );
    let incremental = all_rows(dir.path());
    assert_eq!(
        incremental[1],
        [
            "1|2024-01-01|new|10.0|2024-01-01T08:00:00",
            "2|2024-01-01|paid|20.0|2024-01-03T09:00:00",
            "3|2024-01-02|paid|6.0|2024-01-03T10:00:00",
            "4|2024-01-03|new|7.0|2024-01-03T11:00:00",
        ]
    );
    assert_eq!(
        incremental[3],
        ["2024-01-01|2|30.0", "2024-01-02|1|6.0", "2024-01-03|1|7.0"]
    );

    // The same project built from scratch on all the data.
    let (code, _, _) = etl(dir.path(), &["build", "--full-refresh"]);
    assert_eq!(code, 0);
    assert!(results(dir.path()).iter().all(|r| r.contains("(full refresh)")));
    assert_eq!(all_rows(dir.path()), incremental, "incremental == full refresh");

    // Nothing new: the incremental build changes no row, and runs nothing,
    // though `daily` now renders with is_incremental() true where the full
    // refresh rendered it false.
    let (code, _, _) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0);
    assert_eq!(all_rows(dir.path()), incremental, "a build without new data is a no-op");
    let messages = results(dir.path());
    assert!(
        messages
            .iter()
            .all(|m| m.ends_with("up to date: same SQL, config and inputs as its last build")),
        "{messages:?}"
    );
}

#[test]
fn on_schema_change_fails_appends_or_ignores_new_columns() {
    let dir = fixture("incremental");
    etl_ok(dir.path(), &["build"]);
    std::fs::write(dir.path().join("data/2024-01-03.csv"), DAY_3).unwrap();
    let (code, _, stderr) = etl(dir.path(), &["build", "--vars", "{extra_column: true}"]);
    assert_eq!(code, 1, "{stderr}");
    // events_by_key: on_schema_change: fail.
    assert!(
        stderr.contains("error[schema-change]: the columns of incremental model `events_by_key` changed"),
        "{stderr}"
    );
    assert!(stderr.contains("new in the query: version_tag"), "{stderr}");
    assert_eq!(rows(dir.path(), "main", "events_by_key").len(), 3, "left as it was");
    // events_latest: append_new_columns; the old rows have none.
    assert_eq!(
        rows(dir.path(), "main", "events_latest"),
        [
            "1|2024-01-01|new|10.0|2024-01-01T08:00:00|NULL",
            "2|2024-01-01|paid|20.0|2024-01-03T09:00:00|v2",
            "3|2024-01-02|paid|6.0|2024-01-03T10:00:00|v2",
            "4|2024-01-03|new|7.0|2024-01-03T11:00:00|v2",
        ]
    );
    // events_log: ignore; the new column is left out.
    assert_eq!(rows(dir.path(), "main", "events_log").len(), 6);
    assert!(
        rows(dir.path(), "main", "events_log")
            .iter()
            .all(|r| r.matches('|').count() == 4)
    );
}

#[test]
fn full_refresh_false_keeps_a_model_incremental() {
    let dir = fixture("incremental");
    let model = dir.path().join("models/events_log.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(
        &model,
        sql.replace(
            "incremental_strategy='append'",
            "incremental_strategy='append', full_refresh=false",
        ),
    )
    .unwrap();
    etl_ok(dir.path(), &["build"]);
    std::fs::write(dir.path().join("data/2024-01-03.csv"), DAY_3).unwrap();
    let (code, _, _) = etl(dir.path(), &["build", "--full-refresh", "-s", "events_log"]);
    assert_eq!(code, 0);
    assert_eq!(
        results(dir.path()),
        [
            "model.incr.events_log: incremental (append): 3 rows; `full_refresh: false` kept it from being rebuilt, 1 new file ingested"
        ]
    );
    assert_eq!(rows(dir.path(), "main", "events_log").len(), 6);
}

#[test]
fn files_are_ingested_exactly_once() {
    let dir = fixture("ingest");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/"]);
    std::fs::write(p.join("data/2024-01-03.jsonl"), "{\"id\":4,\"page\":\"/checkout\"}\n").unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(
        results(p),
        ["model.ingest.clicks: incremental (append): 1 row, 1 new file ingested"]
    );
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/", "4|/checkout"]);
    // A consumed file delivered again (same name, touched) is not read again.
    std::fs::write(p.join("data/2024-01-02.jsonl"), "{\"id\":3,\"page\":\"/\"}\n").unwrap();
    let (code, _, _) = etl(p, &["build"]);
    assert_eq!(code, 0);
    assert_eq!(
        results(p),
        ["model.ingest.clicks: incremental: no new files (3 consumed before)"]
    );
    assert_eq!(rows(p, "main", "clicks").len(), 4);
    // The record sits in the commit that wrote the rows, with a txn.
    let log =
        std::fs::read_to_string(table_dir(p, "main", "clicks").join("_delta_log/00000000000000000001.json")).unwrap();
    assert!(
        log.contains(r#""ingested_files":{"landing.clicks":{"2024-01-01.jsonl":{"size":44},"2024-01-02.jsonl":{"size":20},"2024-01-03.jsonl":{"size":28}}}"#),
        "{log}"
    );
    assert!(
        log.contains("\"txn\":{\"appId\":\"etl/model.ingest.clicks\",\"version\":3"),
        "{log}"
    );
}

#[test]
fn a_test_on_new_files_gates_what_arrives_not_the_whole_feed() {
    let dir = fixture("ingest_gate");
    let p = dir.path();
    // First build: every file is new, 1 reject in 10 rows is within 10%.
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        results(p)[1],
        "test.gate.reject_rate_clicks_validated_reject_reason: \
         1 failing row (10.00% of 10 rows), within `warn_if >10%`; read the 2 new files only"
    );
    assert_eq!(rows(p, "main", "clicks").len(), 9);

    // A bad file: 1 reject in its 2 rows fails the gate, though the whole
    // feed's rate (2 in 12) is under 20%, and nothing is ingested.
    std::fs::write(
        p.join("data/2024-01-03.jsonl"),
        "{\"id\":11,\"page\":\"/\"}\n{\"id\":12}\n",
    )
    .unwrap();
    let (code, stdout, _) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "FAIL reject_rate_clicks_validated_reject_reason: 1 failing row (50.00% of 2 rows), \
             over `error_if >20%`; read the 1 new file only"
        ),
        "{stdout}"
    );
    assert_eq!(rows(p, "main", "clicks").len(), 9, "the failing file is not ingested");

    // The file delivered again, fixed: the gate passes on it alone and the
    // model ingests it.
    std::fs::write(
        p.join("data/2024-01-03.jsonl"),
        "{\"id\":11,\"page\":\"/\"}\n{\"id\":12,\"page\":\"/\"}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        results(p)[1..],
        [
            "test.gate.reject_rate_clicks_validated_reject_reason: no failing rows; read the 1 new file only",
            "model.gate.clicks: incremental (append): 2 rows, 1 new file ingested",
        ]
    );
    assert_eq!(rows(p, "main", "clicks").len(), 11);

    // --full-refresh rebuilds from every file, and the gate reads them all.
    let (code, _, _) = etl(p, &["build", "--full-refresh"]);
    assert_eq!(code, 0);
    assert!(results(p)[1].contains("(8.33% of 12 rows)"), "{:?}", results(p));
    assert!(results(p)[1].ends_with("read the 3 new files only"), "{:?}", results(p));
}

#[test]
fn source_files_takes_all_or_new_and_new_needs_a_file_source() {
    let dir = fixture("ingest_gate");
    let p = dir.path();
    let yml = p.join("models/models.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(&yml, text.replace("source_files: new", "source_files: latest")).unwrap();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("error[invalid-config]")
            && stderr.contains(
                "`source_files` is `all` (the default) or `new` (the files this build ingests), not `latest`"
            )
            && stderr.contains("models/models.yml:7:13"),
        "{stderr}"
    );

    // On a model's table there is no file to ingest: said, not ignored.
    std::fs::write(
        &yml,
        "version: 2\nmodels:\n  - name: clicks\n    columns:\n      - name: page\n        data_tests:\n          \
         - not_null:\n              config: {source_files: new}\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("test `not_null_clicks_page` has `source_files: new` but reads no file source"),
        "{stderr}"
    );
}

/// Writes `n` clicks with ids from `first` as one NDJSON file.
fn write_clicks(path: &std::path::Path, first: u64, n: u64) {
    let mut text = String::with_capacity((n * 40) as usize);
    for id in first..first + n {
        text.push_str(&format!("{{\"id\":{id},\"page\":\"/product/{}\"}}\n", id % 997));
    }
    std::fs::write(path, text).unwrap();
}

/// The ingest fixture with one file of `n` clicks, built.
fn clicks_built(n: u64) -> tempfile::TempDir {
    let dir = fixture("ingest");
    let p = dir.path();
    std::fs::remove_file(p.join("data/2024-01-01.jsonl")).unwrap();
    std::fs::remove_file(p.join("data/2024-01-02.jsonl")).unwrap();
    write_clicks(&p.join("data/a.jsonl"), 0, n);
    assert_eq!(etl(p, &["build"]).0, 0);
    dir
}

/// `etl build` on `p` as a child process, quiet.
fn build_process(p: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("etl"));
    command
        .env_clear()
        .arg("--project-dir")
        .arg(p)
        .arg("build")
        .env("ETL_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

fn count_rows(dir: &std::path::Path) -> usize {
    rows(dir, "main", "clicks").len()
}

#[test]
fn a_build_killed_between_its_data_files_and_its_commit_converges_on_the_next_run() {
    // See: issue 4 (crash tests). ETL_FAILPOINT=before-commit aborts the
    // process at its first write into a _delta_log/ folder: the new data
    // files exist, their commit does not.
    let dir = clicks_built(1_000);
    let p = dir.path();
    write_clicks(&p.join("data/b.jsonl"), 1_000, 50_000);
    let parquet_files = || {
        std::fs::read_dir(table_dir(p, "main", "clicks"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet"))
            .count()
    };
    assert_eq!(parquet_files(), 1);
    let status = build_process(p).env("ETL_FAILPOINT", "before-commit").status().unwrap();
    assert!(!status.success(), "the failpoint aborts the build");
    assert_eq!(parquet_files(), 2, "the new data file was written");
    assert!(
        !table_dir(p, "main", "clicks")
            .join("_delta_log/00000000000000000001.json")
            .exists()
    );
    assert_eq!(count_rows(p), 1_000, "readers see the previous version");
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    let ids = query(
        p,
        &["main.clicks"],
        "select count(*), count(distinct id) from main_clicks",
    );
    assert_eq!(ids, ["51000|51000"], "every row exactly once");
    // Run again: nothing new, nothing doubled.
    etl_ok(p, &["build"]);
    assert_eq!(count_rows(p), 51_000);
}

#[test]
fn a_build_killed_at_any_point_leaves_a_committed_version_and_the_next_run_converges() {
    // A kill -9 at several moments of an incremental build: the table is at
    // its previous version or at the complete new one, and a rerun ends
    // with every row exactly once.
    for delay_ms in [100u64, 300, 600] {
        let dir = clicks_built(1_000);
        let p = dir.path();
        write_clicks(&p.join("data/b.jsonl"), 1_000, 100_000);
        let mut child = build_process(p).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let after_kill = count_rows(p);
        assert!(
            after_kill == 1_000 || after_kill == 101_000,
            "killed after {delay_ms} ms: {after_kill} rows is neither version"
        );
        let (code, _, stderr) = etl(p, &["build"]);
        assert_eq!(code, 0, "{stderr}");
        let ids = query(
            p,
            &["main.clicks"],
            "select count(*), count(distinct id) from main_clicks",
        );
        assert_eq!(ids, ["101000|101000"], "after a kill at {delay_ms} ms and a rerun");
    }
}

/// Day 3's file for the microbatch fixture: versions written on 2024-01-03.
fn add_day_3(dir: &std::path::Path) {
    std::fs::write(dir.join("data/2024-01-03.csv"), DAY_3).unwrap();
}

fn messages(dir: &std::path::Path) -> Vec<String> {
    let mut m = results(dir);
    m.sort();
    m
}

#[test]
fn microbatch_builds_each_window_in_its_own_commit_reading_only_that_window() {
    let dir = fixture("microbatch");
    let p = dir.path();
    // First build: from `begin` to the end asked for.
    let (code, stdout, stderr) = etl(p, &["build", "--event-time-end", "2024-01-03"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        messages(p),
        [
            "model.mb.versions: microbatch: 2 batches (2024-01-01 to 2024-01-02), 3 rows",
            "model.mb.versions_per_day: microbatch: 2 batches (2024-01-01 to 2024-01-02), 2 rows",
        ]
    );
    // One commit per batch. Had the source not been cut to each window, a
    // batch would hold rows outside it and its replaceWhere would fail.
    let log = table_dir(p, "main", "versions").join("_delta_log");
    assert_eq!(std::fs::read_dir(&log).unwrap().count(), 2);

    add_day_3(p);
    let range = ["--event-time-start", "2024-01-02", "--event-time-end", "2024-01-04"];
    let (code, stdout, stderr) = etl(p, &[&["build"][..], &range].concat());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        messages(p),
        [
            "model.mb.versions: microbatch: 2 batches (2024-01-02 to 2024-01-03), 4 rows",
            "model.mb.versions_per_day: microbatch: 2 batches (2024-01-02 to 2024-01-03), 2 rows",
        ]
    );
    let incremental = (rows(p, "main", "versions"), rows(p, "main", "versions_per_day"));
    assert_eq!(
        incremental.1,
        ["2024-01-01|2|30.0", "2024-01-02|1|5.0", "2024-01-03|3|33.0"]
    );
    // Running the same range again replaces it: nothing is doubled.
    etl_ok(p, &[&["build"][..], &range].concat());
    assert_eq!(
        (rows(p, "main", "versions"), rows(p, "main", "versions_per_day")),
        incremental
    );

    let (code, _, _) = etl(p, &["build", "--full-refresh", "--event-time-end", "2024-01-04"]);
    assert_eq!(code, 0);
    assert_eq!(
        (rows(p, "main", "versions"), rows(p, "main", "versions_per_day")),
        incremental,
        "batch by batch == full refresh"
    );
}

#[test]
fn a_failed_microbatch_leaves_the_other_batches_committed_and_is_retried_alone() {
    let dir = fixture("microbatch");
    let p = dir.path();
    add_day_3(p);
    let (code, _, stderr) = etl(
        p,
        &[
            "build",
            "--event-time-end",
            "2024-01-04",
            "--vars",
            "{bad_day: 2024-01-02}",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error[microbatch]: `versions`: 1 of 3 batches failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: batch 2024-01-02: building `versions` failed:")
            && stderr.contains("Cannot cast string 'new' to value of Int64 type"),
        "{stderr}"
    );
    let retry =
        "etl build --select versions --event-time-start 2024-01-02T00:00:00 --event-time-end 2024-01-03T00:00:00";
    assert!(stderr.contains(retry), "{stderr}");
    // Days 1 and 3 are in; day 2 is missing, and nothing after it ran.
    assert_eq!(
        query(
            p,
            &["main.versions"],
            "select cast(updated_at as date) d, count(*) from main_versions group by d order by d"
        ),
        ["2024-01-01|2", "2024-01-03|3"]
    );
    assert_eq!(
        artifact(p, "run_results.json")["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["error", "skipped"]
    );

    // The command the error gives rebuilds that one day.
    let args: Vec<&str> = retry.split(' ').skip(1).collect();
    let (code, stdout, stderr) = etl(p, &args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        messages(p),
        ["model.mb.versions: microbatch: 1 batch (2024-01-02 to 2024-01-02), 1 row"]
    );
    let retried = rows(p, "main", "versions");
    etl(
        p,
        &[
            "build",
            "--full-refresh",
            "--event-time-end",
            "2024-01-04",
            "-s",
            "versions",
        ],
    );
    assert_eq!(rows(p, "main", "versions"), retried, "retried == full refresh");
}

#[test]
fn microbatch_config_and_ranges_are_checked() {
    let dir = fixture("microbatch");
    let p = dir.path();
    let (code, _, stderr) = etl(
        p,
        &[
            "build",
            "--event-time-start",
            "2024-01-05",
            "--event-time-end",
            "2024-01-01",
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--event-time-start (2024-01-05 00:00:00) must come before --event-time-end"),
        "{stderr}"
    );
    let (code, _, stderr) = etl(p, &["build", "--event-time-start", "5 Jan"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`5 Jan` is not a date or time"), "{stderr}");

    let model = p.join("models/versions.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, sql.replace("batch_size='day'", "batch_size='week'")).unwrap();
    let (code, _, stderr) = etl(p, &["build", "--event-time-end", "2024-01-03"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("error[invalid-config]: unknown batch_size `week`"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/versions.sql:2:11"), "{stderr}");
    assert!(!table_dir(p, "main", "versions").exists(), "nothing written");
}

#[test]
fn sync_all_columns_rewrites_the_table_with_the_querys_columns_in_one_commit() {
    let dir = fixture("incremental");
    let p = dir.path();
    let model = p.join("models/events_latest.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, sql.replace("'append_new_columns'", "'sync_all_columns'")).unwrap();
    etl_ok(p, &["build", "-s", "events_latest"]);
    let versions = std::fs::read_dir(table_dir(p, "main", "events_latest").join("_delta_log"))
        .unwrap()
        .count();

    // `status` goes, `amount` becomes a decimal, `version_tag` comes.
    std::fs::write(
        &model,
        sql.replace("'append_new_columns'", "'sync_all_columns'").replace(
            "select id, day, status, amount, updated_at",
            "select id, day, cast(amount as decimal(10, 2)) as amount, updated_at",
        ),
    )
    .unwrap();
    std::fs::write(p.join("data/2024-01-03.csv"), DAY_3).unwrap();
    let (code, stdout, stderr) = etl(p, &["build", "-s", "events_latest", "--vars", "{extra_column: true}"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        rows(p, "main", "events_latest"),
        [
            "1|2024-01-01|10.00|2024-01-01T08:00:00|NULL",
            "2|2024-01-01|20.00|2024-01-03T09:00:00|v2",
            "3|2024-01-02|6.00|2024-01-03T10:00:00|v2",
            "4|2024-01-03|7.00|2024-01-03T11:00:00|v2",
        ]
    );
    assert_eq!(
        query(
            p,
            &["main.events_latest"],
            "select arrow_typeof(amount) from main_events_latest limit 1"
        ),
        ["Decimal128(10, 2)"]
    );
    let after = std::fs::read_dir(table_dir(p, "main", "events_latest").join("_delta_log"))
        .unwrap()
        .count();
    assert_eq!(after, versions + 1, "one commit");
}

#[test]
fn an_audited_incremental_model_publishes_only_a_change_its_tests_pass_on() {
    let dir = fixture("incremental");
    let p = dir.path();
    std::fs::write(
        p.join("models/audit.yml"),
        "version: 2\nmodels:\n  - name: events_latest\n    config: {audit: true}\n    columns:\n      \
         - name: id\n        data_tests: [unique]\n      - name: status\n        data_tests:\n          \
         - accepted_values: {values: [new, paid]}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = etl(p, &["build", "-s", "events_latest+"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let before = rows(p, "main", "events_latest");

    // A new status the tests do not accept: nothing is published.
    std::fs::write(
        p.join("data/2024-01-03.csv"),
        DAY_3.replace("4,2024-01-03,new", "4,2024-01-03,lost"),
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build", "-s", "events_latest+"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error[audit]: `events_latest` failed its audit: 1 test failed on the new data"),
        "{stderr}"
    );
    assert!(
        stderr.contains("accepted_values_events_latest_status__new__paid"),
        "{stderr}"
    );
    assert_eq!(rows(p, "main", "events_latest"), before, "the table keeps its version");
    assert!(!p.join("lake/_etl_staging").exists(), "the staged rows are removed");

    // Fixed: the merge is audited on the table it makes, then published.
    std::fs::write(p.join("data/2024-01-03.csv"), DAY_3).unwrap();
    let (code, stdout, stderr) = etl(p, &["build", "-s", "events_latest+"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        messages(p).iter().any(|m| m
            == "model.incr.events_latest: incremental (merge): 3 rows, 1 new file ingested, audited before publishing"),
        "{:?}",
        messages(p)
    );
    assert_eq!(rows(p, "main", "events_latest").len(), 4);
}

/// The commit files of table `main.<name>`, in version order.
fn commits(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let log = table_dir(dir, "main", name).join("_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    commits
}

/// The `(min, max)` of `column` in each data file of the table's current
/// version, from the file statistics in its Delta log, in order.
fn file_ranges(dir: &std::path::Path, name: &str, column: &str) -> Vec<(i64, i64)> {
    let mut files = std::collections::BTreeMap::new();
    for commit in commits(dir, name) {
        for line in std::fs::read_to_string(commit).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(add) = action.get("add") {
                let stats: serde_json::Value = serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
                let range = (
                    stats["minValues"][column].as_i64().unwrap(),
                    stats["maxValues"][column].as_i64().unwrap(),
                );
                files.insert(add["path"].as_str().unwrap().to_owned(), range);
            } else if let Some(remove) = action.get("remove") {
                files.remove(remove["path"].as_str().unwrap());
            }
        }
    }
    let mut ranges: Vec<_> = files.into_values().collect();
    ranges.sort();
    ranges
}

fn last_commit_metrics(dir: &std::path::Path, name: &str) -> serde_json::Value {
    let last = std::fs::read_to_string(commits(dir, name).last().unwrap()).unwrap();
    last.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find_map(|a| a.get("commitInfo").map(|c| c["operationMetrics"].clone()))
        .unwrap()
}

#[test]
fn a_merge_into_small_files_rewrites_only_the_files_its_keys_fall_in() {
    let dir = fixture("file_size");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // Files of about 16 KiB, each holding its own run of ids.
    let ranges = file_ranges(dir.path(), "accounts", "id");
    assert!(ranges.len() >= 4, "{ranges:?}");
    assert_eq!(ranges.first().unwrap().0, 1);
    assert_eq!(ranges.last().unwrap().1, 20000);
    assert!(
        ranges.windows(2).all(|w| w[0].1 < w[1].0),
        "overlapping files: {ranges:?}"
    );

    // Update ids 19001..20000 and add 20001..21000.
    let (code, stdout, stderr) = etl(dir.path(), &["build", "--vars", "{upto: 21000, round: 1}"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        results(dir.path()).contains(&"model.file_size.accounts: incremental (merge): 2000 rows".to_owned()),
        "{:?}",
        results(dir.path())
    );
    let metrics = last_commit_metrics(dir.path(), "accounts");
    let skipped = metrics["num_target_files_skipped_during_scan"].as_u64().unwrap();
    let copied = metrics["num_target_rows_copied"].as_u64().unwrap();
    assert!(skipped as usize >= ranges.len() - 2, "{metrics}");
    assert!(copied < 19_000 / 4, "the merge rewrote most of the table: {metrics}");
    assert_eq!(
        query(
            dir.path(),
            &["main.accounts"],
            "select round, count(*), count(distinct id), min(id), max(id) from main_accounts group by round order by round"
        ),
        ["0|19000|19000|1|19000", "1|2000|2000|19001|21000"]
    );
}

#[test]
fn a_model_ending_in_order_by_is_written_in_that_order() {
    let dir = fixture("file_size");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // delta-rs's writer would drop the sort: each file would hold ids from
    // the whole range.
    let ranges = file_ranges(dir.path(), "sorted", "id");
    assert!(ranges.len() >= 4, "{ranges:?}");
    assert!(
        ranges.windows(2).all(|w| w[0].1 < w[1].0),
        "overlapping files: {ranges:?}"
    );
    assert_eq!((ranges[0].0, ranges.last().unwrap().1), (1, 20000));
    // The tables registered before it was written are still readable.
    assert_eq!(
        query(dir.path(), &["main.by_round"], "select * from main_by_round"),
        ["0|20000"]
    );
}

#[test]
fn a_target_file_size_that_is_not_a_size_is_an_error() {
    let dir = fixture("file_size");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let model = dir.path().join("models/by_round.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, sql.replace("'1MiB'", "'1 parsec'")).unwrap();
    let (code, _, stderr) = etl(dir.path(), &["build", "--vars", "{round: 2}"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "error[invalid-config]: model `by_round`: `target_file_size`: unknown size unit `parsec` in `1 parsec`"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/by_round.sql:1:33"), "{stderr}");
    // The table keeps its previous version.
    assert_eq!(
        query(dir.path(), &["main.by_round"], "select * from main_by_round"),
        ["0|20000"]
    );
}

#[test]
fn a_table_made_incremental_is_built_in_full_once_not_appended_to() {
    let dir = fixture("ingest");
    let p = dir.path();
    let model = p.join("models/clicks.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(
        &model,
        sql.replace("materialized='incremental'", "materialized='table'"),
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(results(p), ["model.ingest.clicks: table: 3 rows"]);
    // The table records no files ingested: reading all of them again as
    // new would double every row.
    std::fs::write(&model, sql).unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        results(p),
        ["model.ingest.clicks: incremental (first build): 3 rows, 2 new files ingested"]
    );
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/"]);
    std::fs::write(p.join("data/2024-01-03.jsonl"), "{\"id\":4,\"page\":\"/checkout\"}\n").unwrap();
    etl_ok(p, &["build"]);
    assert_eq!(
        results(p),
        ["model.ingest.clicks: incremental (append): 1 row, 1 new file ingested"]
    );
}

/// How many times a build's debug log says it parsed the new files of a
/// source into memory, and how many times it could not keep them.
fn parses(stderr: &str) -> (usize, usize) {
    let kept = stderr
        .matches("parsed the new files of a source, kept in memory")
        .count();
    let dropped = stderr.matches("dropped the parsed new files of a source").count();
    assert_eq!(kept, dropped, "rows kept are dropped after their last reader: {stderr}");
    (
        kept,
        stderr.matches("the new files of a source, not kept in memory").count(),
    )
}

#[test]
fn new_files_read_by_several_nodes_are_parsed_once_per_build() {
    let dir = fixture("ingest");
    let p = dir.path();
    // Three readers of the new files, one of which scans them twice, and a
    // test on what arrives.
    std::fs::write(
        p.join("models/pages.sql"),
        "{{ config(materialized='incremental') }}\n\
         select page, count(*) as views from (\n\
             select page from {{ source('landing', 'clicks') }}\n\
             union all\n\
             select page from {{ source('landing', 'clicks') }} where id > 1\n\
         ) v group by page\n",
    )
    .unwrap();
    std::fs::write(
        p.join("models/ids.sql"),
        "{{ config(materialized='incremental') }}\nselect id from {{ source('landing', 'clicks') }}\n",
    )
    .unwrap();
    std::fs::write(
        p.join("models/arrivals.sql"),
        "{{ config(materialized='ephemeral') }}\nselect id from {{ source('landing', 'clicks') }}\n",
    )
    .unwrap();
    std::fs::write(
        p.join("models/arrivals.yml"),
        "version: 2\nmodels:\n  - name: arrivals\n    data_tests:\n      - row_count:\n          \
         min_value: 1\n          config: {source_files: new}\n",
    )
    .unwrap();
    let debug = [("ETL_LOG", "etl=debug".to_owned())];
    let (code, stdout, stderr) = etl_with_env(p, &["build"], &debug);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(parses(&stderr), (1, 0), "{stderr}");
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/"]);
    assert_eq!(rows(p, "main", "ids"), ["1", "2", "3"]);
    assert_eq!(rows(p, "main", "pages"), ["/cart|2", "/|3"]);

    std::fs::write(p.join("data/2024-01-03.jsonl"), "{\"id\":4,\"page\":\"/checkout\"}\n").unwrap();
    let (code, stdout, stderr) = etl_with_env(p, &["build"], &debug);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(parses(&stderr), (1, 0), "{stderr}");
    assert!(stdout.contains("tests: 1 passed"), "{stdout}");
    assert_eq!(rows(p, "main", "clicks"), ["1|/", "2|/cart", "3|/", "4|/checkout"]);
    assert_eq!(rows(p, "main", "ids"), ["1", "2", "3", "4"]);
    assert_eq!(rows(p, "main", "pages"), ["/cart|2", "/checkout|2", "/|3"]);

    // Files too large for the room under the memory limit are read where
    // they lie, by each reader, with the same rows.
    std::fs::write(p.join("data/2024-01-04.jsonl"), "{\"id\":5,\"page\":\"/about-us\"}\n").unwrap();
    let args = ["--memory-limit", "1KiB", "build", "--select", "clicks", "ids"];
    let (code, stdout, stderr) = etl_with_env(p, &args, &debug);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(parses(&stderr), (0, 2), "one per reader: {stderr}");
    assert_eq!(
        rows(p, "main", "clicks"),
        ["1|/", "2|/cart", "3|/", "4|/checkout", "5|/about-us"]
    );
    assert_eq!(rows(p, "main", "ids"), ["1", "2", "3", "4", "5"]);

    // A reader skipped after its parent failed lets the rows go too.
    std::fs::write(
        p.join("models/broken.sql"),
        "{{ config(materialized='table') }}\nselect 1 / (count(*) - count(*)) as x from {{ ref('ids') }}\n",
    )
    .unwrap();
    std::fs::write(
        p.join("models/late.sql"),
        "{{ config(materialized='incremental') }}\n\
         select id from {{ source('landing', 'clicks') }} where id > (select max(x) from {{ ref('broken') }})\n",
    )
    .unwrap();
    std::fs::write(p.join("data/2024-01-05.jsonl"), "{\"id\":6,\"page\":\"/\"}\n").unwrap();
    let (code, stdout, stderr) = etl_with_env(p, &["build"], &debug);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("SKIP  incremental late"), "{stdout}");
    // Three sets of files: the one new file of `clicks` and `ids`, the two
    // `pages` has not consumed (the last build left it out), and all of
    // them for `late`'s first build and the test.
    assert_eq!(parses(&stderr), (3, 0), "{stderr}");
}

/// The Parquet metadata of each current data file of `name`, by its path
/// in the table.
fn parquet_files(
    dir: &std::path::Path,
    name: &str,
) -> std::collections::BTreeMap<String, deltalake::parquet::file::metadata::ParquetMetaData> {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let mut files = std::collections::BTreeSet::new();
    for commit in commits(dir, name) {
        for line in std::fs::read_to_string(commit).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(add) = action.get("add") {
                files.insert(add["path"].as_str().unwrap().to_owned());
            } else if let Some(remove) = action.get("remove") {
                files.remove(remove["path"].as_str().unwrap());
            }
        }
    }
    files
        .into_iter()
        .map(|path| {
            let file = std::fs::File::open(table_dir(dir, "main", name).join(&path)).unwrap();
            let metadata = SerializedFileReader::new(file).unwrap().metadata().clone();
            (path, metadata)
        })
        .collect()
}

/// The rows of each row group of the current data files of `name`, by the
/// partition folder of the file (`day=1`, or `` unpartitioned).
fn row_groups(dir: &std::path::Path, name: &str) -> std::collections::BTreeMap<String, Vec<i64>> {
    let mut groups: std::collections::BTreeMap<String, Vec<i64>> = std::collections::BTreeMap::new();
    for (path, metadata) in parquet_files(dir, name) {
        let folder = path.rsplit_once('/').map_or("", |(folder, _)| folder).to_owned();
        let rows = groups.entry(folder).or_default();
        rows.extend(metadata.row_groups().iter().map(|g| g.num_rows()));
        rows.sort_unstable_by(|a, b| b.cmp(a));
    }
    groups
}

/// The codecs of the column chunks in the current data files of `name`
/// (`SNAPPY`, `LZ4_RAW`, `ZSTD`).
fn codecs(dir: &std::path::Path, name: &str) -> std::collections::BTreeSet<String> {
    let mut codecs = std::collections::BTreeSet::new();
    for metadata in parquet_files(dir, name).values() {
        for group in metadata.row_groups() {
            for column in group.columns() {
                // The level is not kept in the file: the codec alone.
                let codec = format!("{:?}", column.compression());
                codecs.insert(codec.split('(').next().unwrap().to_owned());
            }
        }
    }
    codecs
}

#[test]
fn parquet_compression_sets_the_codec_of_every_file_a_model_writes() {
    let dir = fixture("file_size");
    let p = dir.path();
    let set = |model: &str, from: &str, to: &str| {
        let path = p.join(format!("models/{model}.sql"));
        let sql = std::fs::read_to_string(&path).unwrap();
        assert!(sql.contains(from), "{sql}");
        std::fs::write(&path, sql.replace(from, to)).unwrap();
    };
    set(
        "accounts",
        "target_file_size='16KiB'",
        "target_file_size='16KiB', parquet_compression='lz4'",
    );
    set(
        "by_round",
        "target_file_size='1MiB'",
        "target_file_size='1MiB', parquet_compression='ZSTD(5)'",
    );
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(codecs(p, "accounts"), ["LZ4_RAW"].map(String::from).into());
    assert_eq!(codecs(p, "by_round"), ["ZSTD"].map(String::from).into());
    assert_eq!(codecs(p, "sorted"), ["SNAPPY"].map(String::from).into());

    // A merge writes its files the same way.
    let (code, stdout, stderr) = etl(p, &["build", "--vars", "{upto: 21000, round: 1}"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        results(p).contains(&"model.file_size.accounts: incremental (merge): 2000 rows".to_owned()),
        "{:?}",
        results(p)
    );
    assert_eq!(codecs(p, "accounts"), ["LZ4_RAW"].map(String::from).into());
    assert_eq!(
        query(p, &["main.accounts"], "select count(*), max(id) from main_accounts"),
        ["21000|21000"]
    );

    // An unknown codec is an error at its key, before anything runs: the
    // model keeps its table.
    set("by_round", "'ZSTD(5)'", "'lz5'");
    let (code, _, stderr) = etl(p, &["build", "--vars", "{upto: 21000, round: 2}"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "error[invalid-config]: model `by_round`: unknown `parquet_compression` `lz5` (did you mean `lz4`?); \
             use one of snappy, lz4, zstd, gzip, none"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/by_round.sql:1:58"), "{stderr}");
    assert_eq!(
        query(p, &["main.by_round"], "select * from main_by_round order by round"),
        ["0|19000", "1|1000"]
    );
    set("by_round", "'lz5'", "'zstd(99)'");
    let (code, _, stderr) = etl(p, &["build", "--vars", "{upto: 21000, round: 2}"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`parquet_compression` `zstd(99)`"), "{stderr}");
}

#[test]
fn partitioned_tables_write_row_groups_of_at_most_131072_rows() {
    // A partitioned write keeps a file open per partition value, each
    // with its row group in progress in memory: Parquet's default of
    // 1,048,576 rows per group held gigabytes at 90 partitions.
    let dir = fixture("file_size");
    let p = dir.path();
    std::fs::write(
        p.join("models/by_day.sql"),
        "{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='day') }}\n\
         select value as id, value % 2 as day from range(0, 300000)\n\
         {% if is_incremental() %}where value % 2 = 1{% endif %}\n",
    )
    .unwrap();
    std::fs::write(
        p.join("models/flat.sql"),
        "{{ config(materialized='table') }}\nselect value as id from range(0, 300000)\n",
    )
    .unwrap();
    let (code, stdout, stderr) = etl(p, &["build", "--select", "by_day", "flat"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let expected = |folders: &[&str]| {
        folders
            .iter()
            .map(|f| (f.to_string(), vec![131_072, 18_928]))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(row_groups(p, "by_day"), expected(&["day=0", "day=1"]));
    // An unpartitioned table keeps Parquet's default: one group here.
    assert_eq!(
        row_groups(p, "flat").into_values().flatten().collect::<Vec<_>>(),
        [300_000]
    );

    // An incremental run replaces one partition of the partitioned table
    // (delta-rs's replace-where): its new file is capped the same way.
    let (code, stdout, stderr) = etl(p, &["build", "--select", "by_day", "--force"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        results(p),
        ["model.file_size.by_day: incremental (insert_overwrite): 150000 rows"]
    );
    assert_eq!(row_groups(p, "by_day"), expected(&["day=0", "day=1"]));
    assert_eq!(
        query(
            p,
            &["main.by_day"],
            "select day, count(*), sum(id) from main_by_day group by day order by day"
        ),
        ["0|150000|22499850000", "1|150000|22500000000"]
    );
}
