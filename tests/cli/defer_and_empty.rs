//! What a developer or CI runs before touching production: `--defer
//! --state` (build the changed models here, read the others from where the
//! state's run wrote them) and `--empty` (check a change's SQL and
//! schemas without reading data).

use std::path::Path;

use crate::support::*;

/// A second checkout of `prod`'s project with a lake of its own, empty.
fn dev_copy_of(prod: &Path) -> tempfile::TempDir {
    let dev = tempfile::tempdir().unwrap();
    copy_dir(prod, dev.path());
    std::fs::remove_dir_all(dev.path().join("lake/warehouse")).ok();
    std::fs::remove_dir_all(dev.path().join("lake/_etl")).ok();
    std::fs::remove_dir_all(dev.path().join("lake/exports")).ok();
    std::fs::remove_dir_all(dev.path().join("target")).ok();
    dev
}

fn revenue(p: &Path) -> Vec<String> {
    rows(p, "marts", "revenue_by_region")
}

#[test]
fn a_deferred_build_reads_what_it_does_not_build_from_the_states_lake() {
    let prod = fixture("basic");
    etl_ok(prod.path(), &["build"]);
    let state = prod.path().join("target");
    let state = state.to_str().unwrap();
    let dev = dev_copy_of(prod.path());
    let d = dev.path();

    // Without defer the parents are missing here.
    let (code, _, stderr) = etl(d, &["build", "--select", "revenue_by_region"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("`countries` has not been built yet"), "{stderr}");
    let (code, _, stderr) = etl(d, &["build", "--select", "revenue_by_region", "--defer"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[missing-state]: `--defer` reads the relations of an earlier run"),
        "{stderr}"
    );

    let deferred = ["build", "--select", "revenue_by_region", "--defer", "--state", state];
    etl_ok(d, &deferred);
    assert_eq!(revenue(d), revenue(prod.path()));
    // Only the selected model is written here.
    assert!(!d.join("lake/warehouse/main/countries").exists());

    // Production moves on (its seed renames a region): the deferred model
    // is not up to date any more.
    std::fs::write(
        prod.path().join("seeds/countries.csv"),
        "code,name,region,population\nFR,France,EU,68\nUS,United States,Americas,335\nDE,Germany,EU,84\n",
    )
    .unwrap();
    etl_ok(prod.path(), &["build"]);
    assert_ne!(revenue(d), revenue(prod.path()));
    let (stdout, _) = etl_ok(d, &deferred);
    assert!(!stdout.contains("up to date"), "{stdout}");
    assert_eq!(revenue(d), revenue(prod.path()));
    let (stdout, _) = etl_ok(d, &deferred);
    assert!(stdout.contains("up to date"), "{stdout}");

    // A relation this lake has is read here, unless the state is favored.
    std::fs::write(
        d.join("seeds/countries.csv"),
        "code,name,region,population\nFR,France,Europa,68\nUS,United States,America,335\nDE,Germany,Europa,84\n",
    )
    .unwrap();
    etl_ok(d, &["seed"]);
    etl_ok(d, &deferred);
    assert!(revenue(d).iter().any(|r| r.starts_with("Europa|")), "{:?}", revenue(d));
    let mut favored = deferred.to_vec();
    favored.push("--favor-state");
    etl_ok(d, &favored);
    assert_eq!(revenue(d), revenue(prod.path()));
}

#[test]
fn an_empty_build_writes_no_rows_and_counts_no_file_as_read() {
    let dir = fixture("basic");
    let p = dir.path();
    let (stdout, _) = etl_ok(p, &["build", "--empty"]);
    assert!(
        stdout.contains("table revenue_by_region                              0 rows"),
        "{stdout}"
    );
    assert_eq!(revenue(p), Vec::<String>::new());
    // Seeds load as always; exports keep their last real rows.
    assert_eq!(rows(p, "main", "countries").len(), 3);
    assert!(!p.join("lake/exports/revenue_by_region.csv").exists());
    // The next build reads the data: nothing was up to date.
    let (stdout, _) = etl_ok(p, &["build"]);
    assert!(!stdout.contains("up to date"), "{stdout}");
    assert_eq!(revenue(p).len(), 2);

    // An incremental model that ingests files: `--empty` ingests none.
    let dir = fixture("ingest");
    let p = dir.path();
    etl_ok(p, &["build", "--empty"]);
    assert_eq!(rows(p, "main", "clicks"), Vec::<String>::new());
    etl_ok(p, &["build"]);
    let all = rows(p, "main", "clicks");
    assert!(!all.is_empty());
    etl_ok(p, &["build", "--empty"]);
    etl_ok(p, &["build"]);
    assert_eq!(rows(p, "main", "clicks"), all, "no file is read twice");
}

#[test]
fn an_empty_first_build_leaves_incremental_models_to_be_built_in_full() {
    // A watermark (`max(ordered_at) from this`) and microbatch windows:
    // after `--empty` on a new lake, the next build reads everything.
    // (The microbatch model's windows end on 2024-01-03, not today.)
    for (fixture_name, schema, table, flags) in [
        ("dbt_unit_tests", "main", "orders_inc", ["--exclude", "test_type:unit"]),
        ("microbatch", "main", "versions", ["--event-time-end", "2024-01-03"]),
    ] {
        let with = |first: &[&'static str]| [first, &flags[..]].concat();
        let full = fixture(fixture_name);
        etl_ok(full.path(), &with(&["build"]));
        let lake = if full.path().join("dev.lake").exists() {
            "dev.lake"
        } else {
            "lake"
        };
        let expected = rows_in(&full.path().join(lake), schema, table);
        assert!(!expected.is_empty(), "{fixture_name}");

        let dir = fixture(fixture_name);
        let p = dir.path();
        let (stdout, _) = etl_ok(p, &with(&["build", "--empty"]));
        assert!(stdout.contains(&format!(" {table} ")), "{stdout}");
        assert_eq!(rows_in(&p.join(lake), schema, table), Vec::<String>::new());
        etl_ok(p, &with(&["build"]));
        assert_eq!(rows_in(&p.join(lake), schema, table), expected, "{fixture_name}");
    }
}

#[test]
fn a_deferred_view_reads_its_inputs_by_this_projects_names() {
    // Production's stored view names production's schemas; a developer's
    // target has its own: the view is planned with this project's SQL.
    let prod = fixture("basic");
    let p = prod.path();
    std::fs::write(
        p.join("models/staging/stg_countries.sql"),
        "select code, region from {{ ref('countries') }}\n",
    )
    .unwrap();
    std::fs::write(
        p.join("models/marts/regions.sql"),
        "select region, count(*) as countries from {{ ref('stg_countries') }} group by region\n",
    )
    .unwrap();
    etl_ok(p, &["build"]);
    let dev = dev_copy_of(p);
    let d = dev.path();
    let project = std::fs::read_to_string(d.join("project.yaml")).unwrap();
    std::fs::write(
        d.join("project.yaml"),
        format!("{project}\ntargets:\n  dev:\n    lake: ./lake\n    schema: alice\n"),
    )
    .unwrap();
    let state = p.join("target");
    // What was read in the state's lake is logged (as users see it).
    let (code, stdout, stderr) = etl_with_env(
        d,
        &[
            "build",
            "--select",
            "regions",
            "--defer",
            "--state",
            state.to_str().unwrap(),
        ],
        &[("ETL_LOG", "etl=info".into())],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("deferred: its SQL reads the state's lake node=stg_countries"),
        "{stderr}"
    );
    assert!(
        stderr.contains("deferred: read from the state's lake node=countries"),
        "{stderr}"
    );
    assert_eq!(rows(d, "marts", "regions"), rows(p, "marts", "regions"));
    assert_eq!(rows(d, "marts", "regions"), ["Americas|1", "Europe|2"]);
}
