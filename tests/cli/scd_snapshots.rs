//! Snapshots (dbt's SCD type 2) as etl runs them night after night: one
//! commit per run, `etl snapshot` and `etl run` each building their own
//! nodes, a killed run leaving the history as it was, and wrong settings
//! reported where they are written. (Their rows are compared with
//! dbt-duckdb's in dbt_oracle.rs.)

use std::path::Path;

use crate::support::*;

fn lake_rows(p: &Path, schema: &str, name: &str) -> Vec<String> {
    rows_in(&p.join("dev.lake"), schema, name)
}

fn delta_versions(p: &Path, schema: &str, name: &str) -> usize {
    let log = p.join("dev.lake/warehouse").join(schema).join(name).join("_delta_log");
    std::fs::read_dir(log)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count()
}

/// Order 1 changes, 3 is gone, 4 is new.
fn next_day(p: &Path) {
    std::fs::write(
        p.join("seeds/raw_orders.csv"),
        "id,status,amount,updated_at\n\
         1,shipped,10.50,2024-01-03 08:00:00\n\
         2,placed,20.00,2024-01-01 11:30:00.5\n\
         4,placed,7.00,2024-01-03 12:00:00.25\n",
    )
    .unwrap();
}

/// `id|status|updated_at|valid_to` of orders_ts.
fn history(p: &Path) -> Vec<String> {
    let mut rows: Vec<String> = lake_rows(p, "snapshots", "orders_ts")
        .into_iter()
        .map(|row| {
            let f: Vec<&str> = row.split('|').collect();
            format!("{}|{}|{}|{}", f[0], f[1], f[3], f[7])
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn each_snapshot_run_is_one_commit_and_keeps_every_version() {
    let dir = fixture("dbt_snapshot");
    let p = dir.path();
    etl_ok(p, &["seed"]);
    // `etl run` builds models, not snapshots; `etl snapshot` only them.
    let (stdout, _) = etl_ok(p, &["snapshot"]);
    assert!(stdout.contains("snapshot orders_ts"), "{stdout}");
    assert!(!stdout.contains("check_history"), "{stdout}");
    assert_eq!(delta_versions(p, "snapshots", "orders_ts"), 1);

    next_day(p);
    etl_ok(p, &["seed"]);
    let (stdout, _) = etl_ok(p, &["run"]);
    assert!(!stdout.contains("snapshot "), "{stdout}");
    assert_eq!(delta_versions(p, "snapshots", "orders_ts"), 1);
    let (stdout, _) = etl_ok(p, &["snapshot", "--select", "orders_ts"]);
    // One version added (order 4, order 1's new one) and one closed.
    assert!(stdout.contains("3 rows"), "{stdout}");
    assert_eq!(delta_versions(p, "snapshots", "orders_ts"), 2);
    assert_eq!(
        history(p),
        [
            "1|placed|2024-01-01T10:00:00|2024-01-03T08:00:00",
            "1|shipped|2024-01-03T08:00:00|NULL",
            "2|placed|2024-01-01T11:30:00.500|NULL",
            "3|shipped|2024-01-02T09:00:00|NULL",
            "4|placed|2024-01-03T12:00:00.250|NULL",
        ]
    );
    // Nothing changed: no commit, no version.
    let (stdout, _) = etl_ok(p, &["snapshot", "--select", "orders_ts"]);
    assert!(stdout.contains("0 rows"), "{stdout}");
    assert_eq!(history(p).len(), 5);
    assert_eq!(delta_versions(p, "snapshots", "orders_ts"), 2);
    let results = artifact(p, "run_results.json");
    assert_eq!(results["results"][0]["message"], "snapshot (no change): 0 rows");
    // --full-refresh keeps a snapshot's history, as in dbt.
    etl_ok(p, &["snapshot", "--full-refresh"]);
    assert_eq!(history(p).len(), 5);
    let (stdout, _) = etl_ok(p, &["ls", "--resource-type", "snapshot", "--output", "name"]);
    assert_eq!(stdout, "customers_snap\norders_check\norders_ts\n");
}

#[test]
fn a_snapshot_run_killed_before_its_commit_leaves_the_history_as_it_was() {
    let dir = fixture("dbt_snapshot");
    let p = dir.path();
    etl_ok(p, &["build"]);
    next_day(p);
    etl_ok(p, &["seed"]);
    let before = history(p);
    let mut run = paused_before_commit(p, &["snapshot", "--select", "orders_ts"], &[], &p.join("release"));
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(history(p), before);
    assert_eq!(delta_versions(p, "snapshots", "orders_ts"), 1);
    // The next run makes the change once.
    etl_ok(p, &["snapshot"]);
    let after = history(p);
    assert_eq!(after.len(), 5, "{after:?}");
    assert_eq!(delta_versions(p, "snapshots", "orders_ts"), 2);
}

#[test]
fn a_failing_snapshot_query_changes_nothing() {
    let dir = fixture("dbt_snapshot");
    let p = dir.path();
    etl_ok(p, &["build"]);
    let before = history(p);
    // A status the query cannot cast: the run fails as it reads the rows.
    let sql = p.join("snapshots/orders.sql");
    let text = std::fs::read_to_string(&sql).unwrap();
    std::fs::write(
        &sql,
        text.replacen("select id, status,", "select id, cast(status as int) as status,", 1),
    )
    .unwrap();
    let (code, stdout, stderr) = etl(p, &["snapshot", "--select", "orders_ts"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("building snapshot `orders_ts` failed") || stderr.contains("building `orders_ts` failed"),
        "{stderr}"
    );
    assert_eq!(history(p), before);
    assert_eq!(delta_versions(p, "snapshots", "orders_ts"), 1);
}

#[test]
fn wrong_snapshot_settings_are_errors_at_their_line() {
    let dir = fixture("dbt_snapshot");
    let p = dir.path();
    std::fs::write(
        p.join("snapshots/more.sql"),
        "{% snapshot no_key %}\n\
         {{ config(strategy='timestamp', updated_at='updated_at') }}\n\
         select 1 as id\n\
         {% endsnapshot %}\n\
         {% snapshot wrong_column %}\n\
         {{ config(unique_key='id', strategy='check', check_cols=['colour']) }}\n\
         select id, status from {{ ref('raw_orders') }}\n\
         {% endsnapshot %}\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["compile"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("snapshot `no_key` needs a `unique_key`"), "{stderr}");
    assert!(stderr.contains("--> snapshots/more.sql:2:"), "{stderr}");

    std::fs::write(
        p.join("snapshots/more.sql"),
        "{% snapshot wrong_column %}\n\
         {{ config(unique_key='id', strategy='check', check_cols=['colour']) }}\n\
         select id, status from {{ ref('raw_orders') }}\n\
         {% endsnapshot %}\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build", "--select", "+wrong_column"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("snapshot `wrong_column`: `check_cols` names `colour`, which is not a column of its query"),
        "{stderr}"
    );
    assert!(stderr.contains("--> snapshots/more.sql:2:"), "{stderr}");

    std::fs::write(p.join("snapshots/more.sql"), "\n{% snapshot open %}\nselect 1 as id\n").unwrap();
    let (code, _, stderr) = etl(p, &["ls"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`{% snapshot open %}` has no `{% endsnapshot %}`"),
        "{stderr}"
    );
    assert!(stderr.contains("--> snapshots/more.sql:2:1"), "{stderr}");
}

#[test]
fn a_snapshots_hooks_run_around_it_and_a_failing_one_undoes_its_run() {
    let dir = fixture("dbt_snapshot");
    let p = dir.path();
    std::fs::write(
        p.join("snapshots/audited.sql"),
        "{% snapshot audited %}\n\
         {{ config(unique_key='id', strategy='check', check_cols='all',\n\
                   post_hook=\"delete from {{ this }} where status = 'cancelled'\") }}\n\
         select id, status from {{ ref('raw_orders') }}\n\
         {% endsnapshot %}\n",
    )
    .unwrap();
    std::fs::write(
        p.join("seeds/raw_orders.csv"),
        "id,status,amount,updated_at\n1,placed,1,2024-01-01\n2,cancelled,2,2024-01-01\n",
    )
    .unwrap();
    etl_ok(p, &["build", "--select", "+audited"]);
    let ids: Vec<String> = lake_rows(p, "main", "audited")
        .into_iter()
        .map(|r| r.split('|').take(2).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(ids, ["1|placed"]);
    // A post-hook that fails: the run's merge is undone.
    let text = std::fs::read_to_string(p.join("snapshots/audited.sql")).unwrap();
    std::fs::write(
        p.join("snapshots/audited.sql"),
        text.replace("where status = 'cancelled'", "where colour = 'red'"),
    )
    .unwrap();
    std::fs::write(
        p.join("seeds/raw_orders.csv"),
        "id,status,amount,updated_at\n1,paid,1,2024-01-02\n",
    )
    .unwrap();
    etl_ok(p, &["seed"]);
    let before = lake_rows(p, "main", "audited");
    let (code, _, stderr) = etl(p, &["snapshot", "--select", "audited"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the node's writes are undone"), "{stderr}");
    assert_eq!(lake_rows(p, "main", "audited"), before);
}
