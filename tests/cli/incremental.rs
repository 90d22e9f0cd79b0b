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
            "model.incr.events_by_key: incremental (delete+insert): 3 rows",
            "model.incr.events_latest: incremental (merge): 3 rows",
            "model.incr.events_log: incremental (append): 3 rows",
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

    // Nothing new: the incremental build changes no row.
    let (code, _, _) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0);
    assert_eq!(all_rows(dir.path()), incremental, "a build without new data is a no-op");
}

#[test]
fn on_schema_change_fails_appends_or_ignores_new_columns() {
    let dir = fixture("incremental");
    etl(dir.path(), &["build"]);
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
    etl(dir.path(), &["build"]);
    std::fs::write(dir.path().join("data/2024-01-03.csv"), DAY_3).unwrap();
    let (code, _, _) = etl(dir.path(), &["build", "--full-refresh", "-s", "events_log"]);
    assert_eq!(code, 0);
    assert_eq!(
        results(dir.path()),
        ["model.incr.events_log: incremental (append): 3 rows; `full_refresh: false` kept it from being rebuilt"]
    );
    assert_eq!(rows(dir.path(), "main", "events_log").len(), 6);
}
