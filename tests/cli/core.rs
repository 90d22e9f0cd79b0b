//! The core engine: loading, rendering, the DAG, materializations, errors.

use datafusion::prelude::SessionContext;

use crate::support::*;

#[test]
fn build_writes_seeds_tables_views_and_inlines_ephemerals() {
    let dir = fixture("basic");
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Finished in"), "{stdout}");
    assert!(stdout.contains("5 succeeded, 0 failed, 0 skipped"), "{stdout}");

    // Seed typing: population cast to bigint, read back as integers.
    assert_eq!(
        rows(dir.path(), "main", "countries"),
        vec![
            "DE|Germany|Europe|84",
            "FR|France|Europe|68",
            "US|United States|Americas|335"
        ]
    );
    // The ephemeral model is inlined: revenue of paid orders per region.
    assert_eq!(
        rows(dir.path(), "marts", "revenue_by_region"),
        vec!["Americas|1|3.0", "Europe|2|17.75"]
    );
    // `+export: csv` writes a copy for BI tools beside the warehouse.
    let csv = std::fs::read_to_string(dir.path().join("lake/exports/revenue_by_region.csv")).unwrap();
    // `order_by` sorts it: a table itself keeps no row order.
    assert_eq!(csv, "region,orders,revenue\nEurope,2,17.75\nAmericas,1,3.0\n");
    // Alias and a var default.
    assert_eq!(rows(dir.path(), "marts", "large_countries"), vec!["DE|84", "US|335"]);
    // The view is stored, not materialized as data, and evaluates on show.
    let view_dir = table_dir(dir.path(), "main", "stg_orders");
    assert!(view_dir.join("_etl_view.json").exists());
    assert!(!view_dir.join("_delta_log").exists());
    assert!(!table_dir(dir.path(), "main", "orders_with_region").exists());
    let (code, stdout, _) = etl(dir.path(), &["show", "stg_orders", "--limit", "10"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("4 rows of `stg_orders` (view)"), "{stdout}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    // A query of the project's relations, written as a model is.
    let (code, stdout, stderr) = etl(
        dir.path(),
        &[
            "--log-format",
            "json",
            "show",
            "--inline",
            "select region, orders from {{ ref('revenue_by_region') }} where orders > {{ var('min_orders', 1) }}",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), r#"{"region":"Europe","orders":2}"#);
    let (code, _, stderr) = etl(dir.path(), &["show", "--inline", "select * from {{ ref('nope') }}"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("error[unknown-ref]: `ref('nope')`"), "{stderr}");

    // Artifacts: manifest with locations and dependencies, run results per node.
    let manifest = artifact(dir.path(), "manifest.json");
    let node = &manifest["nodes"]["model.basic.revenue_by_region"];
    assert_eq!(node["config"]["materialized"], "table");
    assert_eq!(
        node["depends_on"]["nodes"],
        serde_json::json!(["model.basic.orders_with_region"])
    );
    let location = node["relation"]["location"].as_str().unwrap();
    assert!(
        location.starts_with("file://") && location.ends_with("/lake/warehouse/marts/revenue_by_region/"),
        "{location}"
    );
    let results = artifact(dir.path(), "run_results.json");
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    let seed = results
        .iter()
        .find(|r| r["unique_id"] == "seed.basic.countries")
        .unwrap();
    assert_eq!(seed["status"], "success");
    assert_eq!(seed["rows_affected"], 3);

    // Built again with nothing changed: up to date, no new version.
    let (code, stdout, _) = etl(dir.path(), &["build", "--select", "revenue_by_region"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("1 succeeded (1 up to date)"), "{stdout}");
    let log = table_dir(dir.path(), "marts", "revenue_by_region").join("_delta_log");
    assert!(!log.join("00000000000000000001.json").exists());
    // Forced: overwritten in a new Delta version, same rows.
    let (code, _, _) = etl(dir.path(), &["build", "--select", "revenue_by_region", "--force"]);
    assert_eq!(code, 0);
    assert_eq!(
        rows(dir.path(), "marts", "revenue_by_region"),
        vec!["Americas|1|3.0", "Europe|2|17.75"]
    );
    assert!(log.join("00000000000000000001.json").exists());
}

#[test]
fn only_what_changed_is_built_again() {
    // See: issue 4 (skip what did not change).
    let dir = fixture("basic");
    etl_ok(dir.path(), &["build"]);
    let up_to_date = |dir: &std::path::Path| -> Vec<String> {
        let results = artifact(dir, "run_results.json");
        let mut ids: Vec<String> = results["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["etl_up_to_date"] == true)
            .map(|r| r["unique_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (_, stdout, _) = etl(dir.path(), &["build"]);
    assert!(stdout.contains("5 succeeded (4 up to date)"), "{stdout}");
    assert_eq!(
        up_to_date(dir.path()),
        [
            "model.basic.big_countries",
            "model.basic.revenue_by_region",
            "model.basic.stg_orders",
            "seed.basic.countries"
        ]
    );
    // A new source file: the view over it and what reads it (through the
    // view and the ephemeral model) are built again; the rest is not.
    std::fs::write(
        dir.path().join("data/orders_2024-01-03.jsonl"),
        "{\"order_id\":9,\"country\":\"US\",\"amount\":4.0,\"status\":\"paid\"}\n",
    )
    .unwrap();
    etl_ok(dir.path(), &["build"]);
    assert_eq!(
        up_to_date(dir.path()),
        ["model.basic.big_countries", "seed.basic.countries"],
        "revenue_by_region and the view are rebuilt"
    );
    assert_eq!(
        rows(dir.path(), "marts", "revenue_by_region"),
        vec!["Americas|2|7.0", "Europe|2|17.75"]
    );
    // A changed seed rebuilds it and what reads it, nothing else.
    let seed = dir.path().join("seeds/countries.csv");
    let text = std::fs::read_to_string(&seed).unwrap();
    std::fs::write(&seed, text.replace("France", "République française")).unwrap();
    etl_ok(dir.path(), &["build"]);
    assert_eq!(up_to_date(dir.path()), ["model.basic.stg_orders"]);
}

#[test]
fn vars_from_the_command_line_override_the_project() {
    let dir = fixture("basic");
    let (code, _, stderr) = etl(dir.path(), &["build", "--vars", "{min_amount: 5, min_population: 70}"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows(dir.path(), "marts", "revenue_by_region"), vec!["Europe|2|17.75"]);
    assert_eq!(rows(dir.path(), "marts", "large_countries"), vec!["DE|84", "US|335"]);
}

#[test]
fn compile_writes_sql_with_ephemeral_ctes_and_runs_nothing() {
    let dir = fixture("basic");
    let (code, stdout, _) = etl(dir.path(), &["compile"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Compiled 4 models"), "{stdout}");
    let sql = std::fs::read_to_string(dir.path().join("target/compiled/models/marts/revenue_by_region.sql")).unwrap();
    assert!(sql.starts_with("with __dbt__cte__orders_with_region as (\n"), "{sql}");
    assert!(sql.contains("from \"main\".\"stg_orders\" o"), "{sql}");
    assert!(sql.contains("),\n     paid as ("), "{sql}");
    assert!(!dir.path().join("lake/warehouse").exists());
    // Compiled again: a file whose SQL is the same is not rewritten (its
    // inode stays), one whose model changed is.
    use std::os::unix::fs::MetadataExt;
    let compiled = |name: &str| dir.path().join("target/compiled/models").join(name);
    let inode = |name: &str| std::fs::metadata(compiled(name)).unwrap().ino();
    let (same, changed) = (inode("marts/revenue_by_region.sql"), inode("staging/stg_orders.sql"));
    let model = dir.path().join("models/staging/stg_orders.sql");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, format!("{text}\n-- edited\n")).unwrap();
    etl_ok(dir.path(), &["compile"]);
    assert_eq!(inode("marts/revenue_by_region.sql"), same);
    assert_ne!(inode("staging/stg_orders.sql"), changed);
    assert!(
        std::fs::read_to_string(compiled("staging/stg_orders.sql"))
            .unwrap()
            .contains("-- edited")
    );
}

#[test]
fn ephemerals_read_by_ephemerals_are_inlined_before_their_readers() {
    // `z_first` sorts after `a_second` by name and is written after it: its
    // CTE must still come first, as `a_second` reads it.
    let dir = fixture("basic");
    let models = dir.path().join("models/staging");
    std::fs::write(
        models.join("a_second.sql"),
        "{{ config(materialized='ephemeral') }}\nselect region, amount * 2 as doubled from {{ ref('z_first') }}",
    )
    .unwrap();
    std::fs::write(
        models.join("z_first.sql"),
        "{{ config(materialized='ephemeral') }}\n\
         select region, amount from {{ ref('orders_with_region') }} where status = 'paid'",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("models/marts/doubled_by_region.sql"),
        "select region, sum(doubled) as doubled from {{ ref('a_second') }}\n\
         where region in (select region from {{ ref('z_first') }}) group by region",
    )
    .unwrap();
    etl_ok(dir.path(), &["compile", "--select", "doubled_by_region"]);
    let sql = std::fs::read_to_string(dir.path().join("target/compiled/models/marts/doubled_by_region.sql")).unwrap();
    let at = |cte: &str| {
        sql.find(&format!("__dbt__cte__{cte} as ("))
            .unwrap_or_else(|| panic!("{cte}: {sql}"))
    };
    assert!(at("orders_with_region") < at("z_first"), "{sql}");
    assert!(at("z_first") < at("a_second"), "{sql}");
    etl_ok(dir.path(), &["build", "--select", "+doubled_by_region"]);
    assert_eq!(
        rows(dir.path(), "marts", "doubled_by_region"),
        vec!["Americas|6.0", "Europe|35.5"]
    );
}

#[test]
fn ls_lists_nodes_like_dbt() {
    let dir = fixture("basic");
    let (code, stdout, _) = etl(dir.path(), &["ls", "--output", "name"]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        // dbt's order: by unique_id (models, then seeds, then sources).
        vec![
            "big_countries",
            "orders_with_region",
            "revenue_by_region",
            "stg_orders",
            "countries",
            "raw.orders"
        ]
    );
    let (_, stdout, _) = etl(
        dir.path(),
        &["ls", "--select", "+revenue_by_region", "--resource-type", "model"],
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "basic.staging.orders_with_region",
            "basic.marts.revenue_by_region",
            "basic.staging.stg_orders"
        ]
    );
}

#[test]
fn ref_cycle_is_an_error_printing_the_cycle() {
    let dir = fixture("ref_cycle");
    let (code, _, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("error[cycle]: the models form a cycle: a -> b -> c -> a"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/a.sql:1:18"), "{stderr}");
}

#[test]
fn the_library_builds_a_project_as_the_cli_does() {
    // See: issue 27. `etl::build` is the whole build; the CLI only prints.
    let dir = fixture("basic");
    let render = etl::render::RenderOptions {
        invocation_id: "library-test".into(),
        ..Default::default()
    };
    let prepared = etl::prepare(dir.path(), &Default::default(), &render).unwrap();
    let options = etl::BuildOptions {
        mode: etl::Mode::Build,
        selecting: etl::Selecting {
            select: vec!["+revenue_by_region".into()],
            indirect_selection: "eager".into(),
            ..Default::default()
        },
        threads: Some(2),
        memory_limit: None,
        full_refresh: false,
        force: false,
        event_time_start: None,
        event_time_end: None,
        defer: None,
        empty: false,
        figures: Vec::new(),
        live: Default::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut started = None;
    let mut reported = Vec::new();
    let outcome = runtime
        .block_on(etl::build(prepared, &options, |progress| match progress {
            etl::Progress::Started { nodes, threads, .. } => started = Some((nodes, threads)),
            etl::Progress::Node { result, .. } => reported.push(result.unique_id.clone()),
            etl::Progress::Warnings(w) => assert!(w.is_empty(), "{w:?}"),
        }))
        .unwrap_or_else(|d| panic!("{d:?}"));
    assert!(!outcome.failed());
    assert_eq!(started, Some((4, 2)));
    reported.sort();
    assert_eq!(
        reported,
        [
            "model.basic.orders_with_region",
            "model.basic.revenue_by_region",
            "model.basic.stg_orders",
            "seed.basic.countries",
        ]
    );
    assert_eq!(
        rows(dir.path(), "marts", "revenue_by_region"),
        vec!["Americas|1|3.0", "Europe|2|17.75"]
    );
    let results = artifact(dir.path(), "run_results.json");
    assert_eq!(results["metadata"]["invocation_id"], "library-test");
    assert_eq!(results["results"].as_array().unwrap().len(), 4);

    // The lake's lock is let go once the build is done: its one record
    // says so.
    let records: Vec<_> = std::fs::read_dir(dir.path().join("lake/_etl/lock"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    let record: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
    assert_eq!(record["released"], true, "{record}");
    assert_eq!(record["invocation_id"], "library-test", "{record}");
}

#[test]
fn sources_without_a_location_read_the_lake_or_their_external_location() {
    // See: issue 24. As a dbt-duckdb project declares them: the seed loaded
    // with `+schema: raw` is the source `jaffle.raw_customers`, and
    // `payments` names its file in `meta.external_location`.
    let dir = fixture("sources_on_seeds");
    let p = dir.path();
    // Nothing needs to exist to list or compile.
    let (ls, _) = etl_ok(p, &["ls", "--resource-type", "source"]);
    assert_eq!(
        ls,
        "source:on_seeds.jaffle.payments\nsource:on_seeds.jaffle.raw_customers\n"
    );
    etl_ok(p, &["compile"]);
    // The seed is built before the model that reads it through the source,
    // however many nodes run at once (with 4, the model used to start
    // beside the seed and find no table).
    let (stdout, _) = etl_ok(p, &["build", "--threads", "4"]);
    let order: Vec<&str> = stdout.lines().filter(|l| l.contains(" OK ")).collect();
    assert!(
        order[0].contains("seed raw_customers") && order[1].contains("table customers"),
        "{stdout}"
    );
    assert_eq!(rows(p, "main", "customers"), ["1|Ana|1750", "2|Bo|0", "3|Cy|2000"]);
    let manifest = artifact(p, "manifest.json");
    let location = manifest["sources"]["source.on_seeds.jaffle.raw_customers"]["relation"]["location"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(location.ends_with("/lake/warehouse/raw/raw_customers/"), "{location}");

    // A new seed row reaches the model through the source.
    let seed = p.join("seeds/raw_customers.csv");
    let text = std::fs::read_to_string(&seed).unwrap();
    std::fs::write(&seed, format!("{text}4,Di\n")).unwrap();
    etl_ok(p, &["build", "--threads", "4"]);
    assert_eq!(rows(p, "main", "customers").len(), 4);

    // A source nobody loaded says what it stands for.
    let yml = p.join("models/sources.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(&yml, format!("{text}      - name: raw_orders\n")).unwrap();
    std::fs::write(
        p.join("models/orders.sql"),
        "select * from {{ source('jaffle', 'raw_orders') }}\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["build", "--select", "orders"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error[missing-source]: source `jaffle.raw_orders`: no Delta table at")
            && stderr.contains("help: with no `location`, a source is the lake's table `raw.raw_orders`"),
        "{stderr}"
    );
    std::fs::write(&yml, text).unwrap();
    std::fs::remove_file(p.join("models/orders.sql")).unwrap();

    // A view writes no table for a source to read: said, not ignored.
    std::fs::write(
        p.join("models/raw_view.sql"),
        "{{ config(materialized='view', schema='raw') }}\nselect 1 as id\n",
    )
    .unwrap();
    let yml = p.join("models/sources.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(&yml, format!("{text}      - name: raw_view\n")).unwrap();
    let (code, _, stderr) = etl(p, &["compile"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "error[missing-location]: source `jaffle.raw_view` has no `location`, and the lake's `raw.raw_view` is \
             the view `raw_view`, which writes no table"
        ),
        "{stderr}"
    );
    std::fs::write(&yml, text).unwrap();
    std::fs::remove_file(p.join("models/raw_view.sql")).unwrap();

    // The project file's `sources:` tree configures the tables below it.
    let project = p.join("project.yaml");
    let text = std::fs::read_to_string(&project).unwrap();
    std::fs::write(
        &project,
        format!("{text}sources:\n  jaffle:\n    payments:\n      +tags: [finance]\n"),
    )
    .unwrap();
    let (ls, _) = etl_ok(p, &["ls", "--select", "tag:finance"]);
    assert_eq!(ls, "source:on_seeds.jaffle.payments\n");
    std::fs::write(
        &project,
        format!("{text}sources:\n  jaffle:\n    paymnts:\n      +tags: [finance]\n"),
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["ls"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[unknown-config-path]: `jaffle.paymnts` matches no folder or file"),
        "{stderr}"
    );
}

#[test]
fn dbt_features_etl_does_not_act_on_are_said_not_ignored() {
    // See: issue 24. What changes nothing etl writes is a warning at its
    // line, and the project builds.
    let dir = fixture("dbt_unsupported");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build", "--threads", "1"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for (message, at) in [
        (
            "`analyses`: analyses are not compiled by etl yet",
            "models/properties.yml:19:3",
        ),
        ("`metrics`: metrics are not read by etl", "models/properties.yml:22:3"),
        (
            "model `orders`: `constraints`: constraints are not enforced by etl yet",
            "models/properties.yml:5:7",
        ),
        ("a lake has no grants: `grants` is ignored", "dbt_project.yml:11:5"),
        (
            "descriptions are kept in the manifest; `persist_docs` is ignored",
            "dbt_project.yml:9:5",
        ),
    ] {
        let found = stderr
            .find(&format!("warning[unsupported]: {message}"))
            .unwrap_or_else(|| panic!("no `{message}` in:\n{stderr}"));
        assert!(
            stderr[found..].lines().nth(1).unwrap_or_default().ends_with(at),
            "{stderr}"
        );
    }
    assert_eq!(stderr.matches("warning[").count(), 5, "{stderr}");
    // Its unit test and exposure, supported since, run.
    assert!(stdout.contains("PASS  unit_test orders_keeps_amounts"), "{stdout}");
    assert!(stdout.contains("NO-OP exposure weekly_report"), "{stdout}");

    // What would change what is built is refused, at its line, before
    // anything runs.
    std::fs::write(
        p.join("models/audited.sql"),
        "{{ config(materialized='incremental', unique_key='x', incremental_strategy='merge', \
         merge_update_condition='DBT_INTERNAL_SOURCE.x > 0') }}\nselect 1 as x\n",
    )
    .unwrap();
    let (code, _, stderr) = etl(p, &["compile"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr
            .contains("error[unsupported]: `merge_update_condition` (dbt-duckdb's merge) is not supported by etl yet"),
        "{stderr}"
    );
    assert!(stderr.contains(" --> models/audited.sql:1:"), "{stderr}");
    std::fs::remove_file(p.join("models/audited.sql")).unwrap();
    // A hook that is not SQL is an error at its key.
    let project = p.join("dbt_project.yml");
    let text = std::fs::read_to_string(&project).unwrap();
    std::fs::write(&project, format!("{text}on-run-end:\n  - {{done: true}}\n")).unwrap();
    let (code, _, stderr) = etl(p, &["ls"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error[invalid-config]: `on-run-end` is SQL or a list of SQL; got {\"done\":true}\n  --> dbt_project.yml:17:3"),
        "{stderr}"
    );
}

#[test]
fn wrong_config_values_are_reported_by_compile_each_at_the_line_that_set_it() {
    // See: issue 27. Set in a `config()` call, a properties file and the
    // project file's tree; all reported at once, before anything runs.
    let dir = fixture("bad_config");
    let (code, stdout, stderr) = etl(dir.path(), &["compile"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let expected = [
        (
            "error[invalid-config]: unknown incremental_strategy `merg`",
            "models/orders.sql:3:5",
        ),
        (
            "error[invalid-config]: `unique_key` must list names, and `1` is not one",
            "models/orders.sql:4:5",
        ),
        (
            "error[invalid-config]: `audit` is true or false, not `\"yes\"`",
            "models/properties.yml:5:14",
        ),
        (
            "error[invalid-config]: model `customers`: unknown `parquet_compression` `lz5` (did you mean `lz4`?)",
            "models/properties.yml:6:28",
        ),
        (
            "error[invalid-config]: unknown export format `xlsx`",
            "project.yaml:9:5",
        ),
    ];
    for (message, at) in expected {
        let found = stderr
            .find(message)
            .unwrap_or_else(|| panic!("no `{message}` in:\n{stderr}"));
        let location = stderr[found..].lines().nth(1).unwrap_or_default();
        assert_eq!(location, format!(" --> {at}"), "{stderr}");
    }
    assert_eq!(stderr.matches("error[").count(), expected.len(), "{stderr}");
    assert!(stderr.contains("help: did you mean `merge`?"), "{stderr}");

    let (code, _, stderr) = etl(dir.path(), &["ls"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!dir.path().join("lake").exists(), "nothing was built");
}

#[test]
fn unknown_ref_names_file_line_and_the_closest_model() {
    let dir = fixture("unknown_ref");
    let (code, _, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim_end(),
        "error[unknown-ref]: `ref('stg_order')` does not match any model or seed\n \
         --> models/orders.sql:2:9\n  |\n2 | from {{ ref('stg_order') }}\n  |         ^^^^^^^^^^^^^^^^\n\
         help: did you mean `stg_orders`?"
    );
    assert!(!dir.path().join("lake").exists(), "nothing may be written");
}

#[test]
fn yaml_typo_is_an_error_with_did_you_mean() {
    let dir = fixture("yaml_typo");
    let (code, _, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("error[unknown-key]: unknown key `descripton`"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/props.yml:4:5"), "{stderr}");
    assert!(stderr.contains("help: did you mean `description`?"), "{stderr}");
}

#[test]
fn sql_error_points_at_the_template_line() {
    let dir = fixture("sql_error");
    // Found by the check at the start of the build: exit 2, nothing run.
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stderr.contains("amount_typo"), "{stderr}");
    // Line 6 of the template, although Jinja's loop moved it in the SQL.
    assert!(stderr.contains("--> models/bad.sql:6:5"), "{stderr}");
    assert!(!stdout.contains("succeeded"), "{stdout}");
}

#[test]
fn a_failed_model_skips_its_descendants_and_the_rest_goes_on() {
    let dir = fixture("partial_failure");
    let (code, stdout, stderr) = etl(dir.path(), &["build", "--threads", "1"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("2 succeeded, 1 failed, 1 skipped"), "{stdout}");
    assert!(stdout.contains("SKIP  table after_broken"), "{stdout}");
    assert_eq!(rows(dir.path(), "main", "sibling"), vec!["2"]);
    assert!(!table_dir(dir.path(), "main", "broken").join("_delta_log").exists());
    let results = artifact(dir.path(), "run_results.json");
    let statuses: Vec<(String, String)> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(statuses.contains(&("model.partial_failure.after_broken".into(), "skipped".into())));
    assert!(statuses.contains(&("model.partial_failure.broken".into(), "error".into())));
}

#[test]
fn a_failed_rebuild_keeps_the_previous_version_readable() {
    let dir = fixture("partial_failure");
    std::fs::write(
        dir.path().join("models/broken.sql"),
        "{{ config(materialized='table') }}select id from {{ ref('good') }}",
    )
    .unwrap();
    let (code, _, _) = etl(dir.path(), &["build"]);
    assert_eq!(code, 0);
    assert_eq!(rows(dir.path(), "main", "broken"), vec!["1"]);
    std::fs::write(
        dir.path().join("models/broken.sql"),
        "{{ config(materialized='table') }}select cast('x' as int) as id from {{ ref('good') }}",
    )
    .unwrap();
    let (code, _, _) = etl(dir.path(), &["build", "--select", "broken"]);
    assert_eq!(code, 1);
    assert_eq!(rows(dir.path(), "main", "broken"), vec!["1"]);
}

#[test]
fn csv_parquet_and_delta_sources_are_read() {
    let dir = fixture("sources");
    // A Parquet file, written with DataFusion.
    let events = dir.path().join("data/events");
    std::fs::create_dir_all(&events).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ctx = SessionContext::new();
        let sql = format!(
            "copy (select * from (values (1, 'click'), (2, 'view')) as t(id, kind)) to '{}' stored as parquet",
            events.join("part-0.parquet").display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    });
    // The Delta source is the seed table.
    let (code, _, stderr) = etl(dir.path(), &["seed"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = etl(dir.path(), &["run"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        rows(dir.path(), "main", "joined"),
        vec!["1|one|click|9.5", "2|two|view|1.25"]
    );
    // Gzip-compressed NDJSON, told by the `.jsonl.gz` suffix.
    assert_eq!(rows(dir.path(), "main", "warn_logs"), vec!["info|1", "warn|2"]);
}

#[test]
fn a_missing_source_file_names_the_yaml_line() {
    let dir = fixture("sources");
    let (code, _, _) = etl(dir.path(), &["seed"]);
    assert_eq!(code, 0);
    // data/events/ holds no Parquet file.
    let (code, stdout, stderr) = etl(dir.path(), &["run"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("error[missing-source]: source `files.events`: no files match"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/sources.yml:11:15"), "{stderr}");
}

#[test]
fn a_source_without_files_is_checked_with_its_declared_columns() {
    // See: issue 26. data/events/ holds no file yet: its declared columns
    // stand for it, so what reads it is checked before the files come.
    let dir = fixture("sources");
    let p = dir.path();
    etl_ok(p, &["seed"]);
    let yml = p.join("models/sources.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    let declared = text.replacen(
        "        format: parquet\n",
        "        format: parquet\n        columns:\n          - {name: id, data_type: bigint}\n          - {name: kind, data_type: varchar}\n",
        1,
    );
    assert_ne!(declared, text);
    std::fs::write(&yml, &declared).unwrap();
    let (stdout, _) = etl_ok(p, &["compile"]);
    assert!(stdout.contains("Checked 2 models against"), "{stdout}");
    let model = p.join("models/joined.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, sql.replacen("e.kind", "e.knd", 1)).unwrap();
    let (code, _, stderr) = etl(p, &["compile"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("No field named e.knd."), "{stderr}");
    assert!(stderr.contains("--> models/joined.sql:1:23"), "{stderr}");
    // A column declared without a type: the source's columns are not
    // known, and what reads it is not checked (the build says why).
    std::fs::write(
        &yml,
        declared.replacen("{name: kind, data_type: varchar}", "{name: kind}", 1),
    )
    .unwrap();
    let (stdout, _) = etl_ok(p, &["compile"]);
    assert!(
        stdout.contains("not checked: `joined` (source `files.events` cannot be read: `etl build` says why)"),
        "{stdout}"
    );
}

#[test]
fn json_log_format_prints_one_object_per_line() {
    let dir = fixture("basic");
    let (code, stdout, _) = etl(dir.path(), &["build", "--log-format", "json", "--select", "countries"]);
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event"], "node_finished");
    assert_eq!(lines[0]["result"]["rows_affected"], 3);
    assert_eq!(lines[1]["event"], "run_finished");
    assert_eq!(lines[1]["success"], 1);
}

#[test]
fn no_project_is_exit_code_two() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("error[no-project]"), "{stderr}");
}

#[test]
fn a_dbt_project_runs_unchanged() {
    let dir = fixture("dbt_project");
    let (code, stdout, stderr) = etl_with_env(dir.path(), &["build"], &[("ETL_LOG", "etl=info".to_owned())]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("5 succeeded, 0 failed, 0 skipped; tests: 6 passed, 0 warned, 0 failed"),
        "{stdout}"
    );
    // `log()` reaches the log, with the model it came from.
    assert!(
        stderr.contains("payment methods: credit_card, coupon, bank_transfer model=stg_payments"),
        "{stderr}"
    );
    // Project-scoped vars, a `{% call %}` block pivoting payments, a macro
    // with a default argument, and seed column_types set per seed.
    assert_eq!(
        rows(dir.path(), "main", "orders"),
        [
            "1|1|2024-01-01|completed|10.0|0.0|0.0|10.0",
            "2|3|2024-01-02|completed|7.5|2.5|0.0|10.0",
            "3|2|2024-01-03|returned|0.0|0.0|3.0|3.0",
        ]
    );
    // dbt's names: in full for ls, shortened with dbt's hash for files
    // when they reach 64 characters.
    let (_, names, _) = etl(dir.path(), &["ls", "--resource-type", "test", "--output", "name"]);
    assert!(
        names.contains("accepted_values_orders_status__placed__shipped__completed__return_pending__returned\n"),
        "{names}"
    );
    etl_ok(dir.path(), &["compile"]);
    assert!(
        dir.path()
            .join("target/compiled/models/accepted_values_orders_1ce6ab157c285f7cd2ac656013faf758.sql")
            .exists()
    );
}

#[test]
fn memory_limit_is_parsed_and_a_bad_one_is_a_usage_error() {
    let dir = fixture("basic");
    let (code, stdout, stderr) = etl(dir.path(), &["build", "--memory-limit", "256MiB"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, _, stderr) = etl(dir.path(), &["build", "--memory-limit", "lots"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("error[invalid-memory-limit]"), "{stderr}");
}

#[test]
fn declared_csv_columns_must_follow_the_header() {
    let dir = fixture("sources");
    let yml = dir.path().join("models/sources.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    let typed = |columns: &str| {
        text.replace(
            "          header: true\n",
            &format!("          header: true\n        columns: {columns}\n"),
        )
    };
    // In the header's order: read with exactly these types.
    std::fs::write(
        &yml,
        typed("[{name: id, data_type: bigint}, {name: label, data_type: varchar}]"),
    )
    .unwrap();
    let (code, stdout, _) = etl(dir.path(), &["show", "files.items"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("│ 1  ┆ one   │"), "{stdout}");
    // Swapped: every value would land in the wrong column, so it is an error.
    std::fs::write(
        &yml,
        typed("[{name: label, data_type: varchar}, {name: id, data_type: bigint}]"),
    )
    .unwrap();
    let (code, _, stderr) = etl(dir.path(), &["show", "files.items"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error[source-columns]: the declared columns of `files.items` do not match the header"),
        "{stderr}"
    );
    assert!(stderr.contains("declared: label, id"), "{stderr}");
    assert!(stderr.contains("header:   id, label"), "{stderr}");
}

#[test]
fn retry_runs_only_what_the_last_run_left_undone() {
    let dir = fixture("partial_failure");
    let (code, _, _) = etl(dir.path(), &["build"]);
    assert_eq!(code, 1);
    std::fs::write(dir.path().join("models/broken.sql"), "select 1 as id\n").unwrap();
    let (code, stdout, stderr) = etl(dir.path(), &["retry"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let results = artifact(dir.path(), "run_results.json");
    let ids: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unique_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["model.partial_failure.broken", "model.partial_failure.after_broken"],
        "only the failed model and the one it skipped"
    );
    let (code, stdout, _) = etl(dir.path(), &["retry"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Nothing to retry"), "{stdout}");
}

#[test]
fn a_corrupt_source_file_is_named() {
    let dir = fixture("sources");
    let logs = dir.path().join("data/logs");
    // Not gzip at all: reading the schema fails, on that file.
    std::fs::write(logs.join("2024-01-03.jsonl.gz"), b"not gzip at all").unwrap();
    let (code, _, stderr) = etl(dir.path(), &["run", "--select", "warn_logs"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error[source-schema]"), "{stderr}");
    assert!(stderr.contains("the unreadable file is `/"), "{stderr}");
    assert!(stderr.contains("data/logs/2024-01-03.jsonl.gz`"), "{stderr}");
    // Written as a file:// URL (as `{{ target.lake }}` renders), the file
    // is still shown as a path.
    let yml = dir.path().join("models/sources.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    std::fs::write(
        &yml,
        text.replace("location: data/logs/", &format!("location: {url}data/logs/")),
    )
    .unwrap();
    let (code, _, stderr) = etl(dir.path(), &["run", "--select", "warn_logs"]);
    assert_eq!(code, 1, "{stderr}");
    let shown = dir.path().join("data/logs/2024-01-03.jsonl.gz");
    assert!(
        stderr.contains(&format!("the unreadable file is `{}`", shown.display())),
        "{stderr}"
    );
    std::fs::write(&yml, text).unwrap();
    // Valid gzip, a broken line, typed columns (no inference): the read
    // fails while building, and the failing file is named.
    std::fs::remove_file(logs.join("2024-01-03.jsonl.gz")).unwrap();
    let yml = dir.path().join("models/sources.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(
        &yml,
        text.replace(
            "        location: data/logs/*.jsonl.gz\n",
            "        location: data/logs/*.jsonl.gz\n        columns: [{name: id, data_type: bigint}, {name: level, data_type: varchar}]\n",
        ),
    )
    .unwrap();
    let mut broken = flate2_free_gzip(b"{\"id\":4,\"level\":\"info\"}\n{broken\n");
    std::fs::write(logs.join("2024-01-04.jsonl.gz"), &mut broken).unwrap();
    let (code, _, stderr) = etl(dir.path(), &["run", "--select", "warn_logs"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("data/logs/2024-01-04.jsonl.gz` (source `files.logs`)"),
        "{stderr}"
    );
    assert!(
        !table_dir(dir.path(), "main", "warn_logs").join("_delta_log").exists(),
        "no table was written"
    );
    // Typed columns and a file that is no gzip at all: the decoder's I/O
    // error while building names the file too.
    std::fs::write(logs.join("2024-01-04.jsonl.gz"), b"garbage\n").unwrap();
    let (code, _, stderr) = etl(dir.path(), &["run", "--select", "warn_logs"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("data/logs/2024-01-04.jsonl.gz` (source `files.logs`)"),
        "{stderr}"
    );
}

/// Gzip of `data`, written by the system's gzip (the tests have no
/// compression crate).
fn flate2_free_gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout
}

/// DataFusion proves the CASE below non-null in the logical plan but not in
/// the physical one; aggregating the union of it with a non-null column
/// used to fail with an internal schema-check error. See: issue 8
#[test]
fn an_aggregate_over_a_case_that_datafusion_proves_non_null_builds() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("models")).unwrap();
    std::fs::write(p.join("project.yaml"), "name: nulls\n").unwrap();
    let models = [
        (
            "t",
            "{{ config(materialized='table') }}\nselect 1 as id, 11 as a union all select 2, 5",
        ),
        (
            "t2",
            "{{ config(materialized='table') }}\nselect id, max(a) + 1 as a from {{ ref('t') }} group by id",
        ),
        (
            "v",
            "{{ config(materialized='view') }}\nselect t2.id, case when t2.a >= t.a then t2.a else t.a end as a\n\
             from {{ ref('t2') }} t2 join {{ ref('t') }} t on t.id = t2.id",
        ),
        (
            "u",
            "{{ config(materialized='table') }}\nwith p as (select id, a from {{ ref('v') }} union all \
             select id, a from {{ ref('t') }})\nselect id, max(a) as a from p group by id",
        ),
    ];
    for (name, sql) in models {
        std::fs::write(p.join("models").join(format!("{name}.sql")), sql).unwrap();
    }
    let (code, stdout, stderr) = etl(p, &["run"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(rows(p, "main", "u"), ["1|12", "2|6"]);
}

/// `--timings` says where a build's time went. See: issue 8
#[test]
fn timings_show_each_phase_and_the_slowest_nodes() {
    let dir = fixture("basic");
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build", "--timings"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report = &stdout[stdout.find("Where the time went").expect("a timings report")..];
    for phase in ["load", "render", "graph", "session", "plan", "execute", "commit"] {
        assert!(report.contains(&format!("│ {phase} ")), "{phase} missing:\n{report}");
    }
    assert!(report.contains("table revenue_by_region"), "{report}");
    // Per node in run_results.json: a table plans and commits, a seed's
    // commit is timed too, a test neither plans a model nor commits.
    let results = artifact(p, "run_results.json");
    let phases = |id: &str| {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == id)
            .map(|r| {
                (
                    r["etl_phases"]["plan"].as_f64().unwrap(),
                    r["etl_phases"]["commit"].as_f64().unwrap(),
                )
            })
            .unwrap()
    };
    let (plan, commit) = phases("model.basic.revenue_by_region");
    assert!(plan > 0.0 && commit > 0.0, "{plan} {commit}");
    assert!(phases("seed.basic.countries").1 > 0.0);
    // Without the flag, no report; with --log-format json, an event.
    let (_, stdout, _) = etl(p, &["build", "--force"]);
    assert!(!stdout.contains("Where the time went"));
    let (_, stdout, _) = etl(p, &["build", "--force", "--timings", "--log-format", "json"]);
    let event: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "timings")
        .expect("a timings event");
    assert!(event["phases"]["commit"].as_f64().unwrap() > 0.0, "{event}");
    assert!(!event["slowest"].as_array().unwrap().is_empty());
}

/// Under `--memory-limit`, a hash join larger than the limit fails, and
/// the model is run again with sort-merge joins, whose sorts spill. A
/// choice pinned in the environment is left alone: DataFusion options
/// there go over etl's. Here they also make the join small enough to run
/// in a debug build (two partitions, 1 MiB sort reservations).
#[test]
fn an_aggregate_that_cannot_spill_gets_room_past_the_default_budget_but_never_past_the_users() {
    let dir = fixture("memory_distinct");
    let env = [
        ("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "2".to_owned()),
        ("ETL_DEFAULT_MEMORY_LIMIT", "1MiB".to_owned()),
        ("ETL_LOG", "warn".to_owned()),
    ];
    let expected = vec!["0|66667|99999.0", "1|66667|100000.0", "2|66666|99999.5"];
    // Its own limit: the node fails alone too, and says what to do.
    let (code, stdout, stderr) = etl_with_env(dir.path(), &["--memory-limit", "1MiB", "build"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("Resources exhausted"), "{stderr}");
    assert!(stderr.contains("it ran out of memory alone too"), "{stderr}");
    assert!(stderr.contains("raise `--memory-limit`"), "{stderr}");
    assert!(!dir.path().join("lake/warehouse/main/distinct_ids/_delta_log").exists());
    assert!(
        !dir.path()
            .join("lake/warehouse/main/distinct_ids_with_header/_delta_log")
            .exists()
    );

    // The default budget: alone, then with room to grow, and a warning.
    let (code, stdout, stderr) = etl_with_env(dir.path(), &["build"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(rows(dir.path(), "main", "distinct_ids"), expected);
    assert_eq!(rows(dir.path(), "main", "distinct_ids_with_header"), expected);
    // (With hash joins planned until then, the retry alone also turns them off.)
    assert!(stderr.contains("running it again alone"), "{stderr}");
    assert!(
        stderr.contains("out of memory alone within the default budget of 1 MiB"),
        "{stderr}"
    );
    assert!(stderr.contains("warning[memory-budget]"), "{stderr}");
    let results = artifact(dir.path(), "run_results.json");
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for result in results {
        let message = result["message"].as_str().unwrap();
        assert!(
            message.contains("(ran out of memory alone within the default budget of 1 MiB; run again with up to "),
            "{message}"
        );
    }

    let (code, stdout, stderr) = etl_with_env(
        dir.path(),
        &["build"],
        &[("ETL_DEFAULT_MEMORY_LIMIT", "lots".to_owned())],
    );
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("ETL_DEFAULT_MEMORY_LIMIT"), "{stderr}");
}

#[test]
fn a_join_larger_than_the_memory_limit_finishes_and_datafusion_options_come_from_the_environment() {
    let dir = fixture("memory");
    let small = |prefer_hash_join: Option<&str>| {
        let mut env = vec![
            ("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "2".to_owned()),
            (
                "DATAFUSION_EXECUTION_SORT_SPILL_RESERVATION_BYTES",
                "1048576".to_owned(),
            ),
        ];
        if let Some(prefer) = prefer_hash_join {
            env.push(("DATAFUSION_OPTIMIZER_PREFER_HASH_JOIN", prefer.to_owned()));
        }
        env
    };
    let message = |dir: &std::path::Path| {
        let results = artifact(dir, "run_results.json");
        results["results"][0]["message"].as_str().unwrap().to_owned()
    };
    let args = ["--memory-limit", "12MiB", "build"];
    let (code, stdout, stderr) = etl_with_env(dir.path(), &args, &small(None));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(rows(dir.path(), "main", "pairs"), vec!["1000000|499999500000"]);
    assert!(
        message(dir.path())
            .ends_with("(ran out of memory with hash joins; run again alone with sort-merge joins, which spill)"),
        "{}",
        message(dir.path())
    );

    let (code, stdout, stderr) = etl_with_env(
        dir.path(),
        &["--force", "--memory-limit", "12MiB", "build"],
        &small(Some("true")),
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("Resources exhausted"), "{stderr}");
    assert!(stderr.contains("HashJoinInput"), "{stderr}");
    assert!(stderr.contains("the table keeps its previous version"), "{stderr}");

    let (code, stdout, stderr) = etl_with_env(
        dir.path(),
        &["--force", "--memory-limit", "12MiB", "build"],
        &small(Some("false")),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(rows(dir.path(), "main", "pairs"), vec!["1000000|499999500000"]);
    assert!(
        !message(dir.path()).contains("out of memory"),
        "{}",
        message(dir.path())
    );

    let (code, _, stderr) = etl_with_env(
        dir.path(),
        &["build"],
        &[("DATAFUSION_EXECUTION_BATCH_SIZE", "lots".to_owned())],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("DATAFUSION_EXECUTION_BATCH_SIZE"), "{stderr}");
}

/// The first node whose hash join runs out of memory gets sort-merge joins
/// alone: the next one still plans hash joins (and here runs out too, so
/// it is the second), and from then on every node plans sort-merge joins.
#[test]
fn one_hash_join_out_of_memory_changes_its_node_alone_and_a_second_the_rest_of_the_build() {
    let dir = fixture("memory");
    // Three copies of the join, each after a table built before them all.
    std::fs::write(
        dir.path().join("models/base.sql"),
        "{{ config(materialized='table') }} select 1 as one",
    )
    .unwrap();
    edit_file(
        dir.path(),
        "models/pairs.sql",
        "as id),",
        "as id from {{ ref('base') }}),",
    );
    let pairs = std::fs::read_to_string(dir.path().join("models/pairs.sql")).unwrap();
    for copy in ["pairs_b", "pairs_c"] {
        std::fs::write(dir.path().join(format!("models/{copy}.sql")), &pairs).unwrap();
    }
    // A reader of them and of the table built before them: the sessions
    // the joins ran again in shared the build's tables, and took none away.
    std::fs::write(
        dir.path().join("models/pairs_read.sql"),
        "{{ config(materialized='table') }} select p.n, b.one from {{ ref('pairs') }} p \
         join {{ ref('pairs_b') }} q using (n) cross join {{ ref('base') }} b",
    )
    .unwrap();
    let env = [
        ("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "2".to_owned()),
        (
            "DATAFUSION_EXECUTION_SORT_SPILL_RESERVATION_BYTES",
            "1048576".to_owned(),
        ),
        ("ETL_LOG", "warn".to_owned()),
    ];
    let (code, stdout, stderr) = etl_with_env(
        dir.path(),
        &["--memory-limit", "12MiB", "--threads", "1", "build"],
        &env,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in ["pairs", "pairs_b", "pairs_c"] {
        assert_eq!(rows(dir.path(), "main", name), vec!["1000000|499999500000"], "{name}");
    }
    assert_eq!(rows(dir.path(), "main", "pairs_read"), vec!["1000000|1"]);
    let alone = "out of memory with hash joins; running it again alone with sort-merge joins";
    let rest = "out of memory with hash joins, the second node so; running it again alone, and the rest of the build, with sort-merge joins";
    assert_eq!(stderr.matches(alone).count(), 1, "{stderr}");
    assert_eq!(stderr.matches(rest).count(), 1, "{stderr}");
    // The first two ran twice; the third planned sort-merge joins at once.
    let results = artifact(dir.path(), "run_results.json");
    let messages: Vec<String> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_owned())
        .collect();
    let again = messages
        .iter()
        .filter(|m| {
            m.ends_with("(ran out of memory with hash joins; run again alone with sort-merge joins, which spill)")
        })
        .count();
    assert_eq!(again, 2, "{messages:?}");
    // base, the third copy and the reader.
    assert_eq!(
        messages.iter().filter(|m| !m.contains("out of memory")).count(),
        3,
        "{messages:?}"
    );
}

/// A sort whose spill files outgrow the room they have fails cleanly: the
/// error says how much room there was and where, and the table keeps
/// what it held. The room is the disk's free space, or the cap set in
/// the environment under DataFusion's name, as here; the folder is the
/// one the environment names.
#[test]
fn a_spill_past_its_room_fails_saying_how_much_and_where_and_changes_no_table() {
    let dir = fixture("memory");
    std::fs::remove_file(dir.path().join("models/pairs.sql")).unwrap();
    std::fs::write(
        dir.path().join("models/sorted.sql"),
        "{{ config(materialized='table') }} with a as (select unnest(range(0, 1000000)) as id) \
         select id, id * 7 % 1000 as k from a order by k, id desc",
    )
    .unwrap();
    let args = ["--memory-limit", "12MiB", "--threads", "1", "build", "--full-refresh"];
    let base = [("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "2".to_owned())];
    let (code, stdout, stderr) = etl_with_env(dir.path(), &args, &base);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let before = rows(dir.path(), "main", "sorted").len();
    assert_eq!(before, 1_000_000);

    let spills = tempfile::tempdir().unwrap();
    let mut env = base.to_vec();
    env.push(("DATAFUSION_RUNTIME_TEMP_DIRECTORY", spills.path().display().to_string()));
    env.push(("DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE", "1M".to_owned()));
    env.push(("ETL_LOG", "warn".to_owned()));
    // Two threads: the room may have been other nodes', so it runs again
    // alone before it fails.
    let mut two = args.to_vec();
    two[3] = "2";
    let (code, stdout, stderr) = etl_with_env(dir.path(), &two, &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let output = format!("{stdout}{stderr}");
    assert!(output.contains("exceeded the allowable limit of 1024.0 KB"), "{output}");
    let room = format!(
        "spill files may take at most 1 MiB in {} (DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE)",
        spills.path().display()
    );
    assert!(output.contains(&room), "{output}");
    assert!(
        output.contains("help: raise DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE"),
        "{output}"
    );
    assert_eq!(
        stderr
            .matches("no room for its spill files beside other nodes'; running it again alone")
            .count(),
        1,
        "{stderr}"
    );
    let results = artifact(dir.path(), "run_results.json");
    let message = results["results"][0]["message"].as_str().unwrap();
    assert!(
        message.ends_with("(no room for its spill files beside other nodes'; run again alone)"),
        "{message}"
    );
    assert_eq!(rows(dir.path(), "main", "sorted").len(), before);

    // DataFusion's own memory limit is not etl's to take.
    let (code, _, stderr) = etl_with_env(
        dir.path(),
        &["build"],
        &[("DATAFUSION_RUNTIME_MEMORY_LIMIT", "1G".to_owned())],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`DATAFUSION_RUNTIME_MEMORY_LIMIT=1G` in the environment"),
        "{stderr}"
    );
}

/// The columns of the Delta table written for `schema.name`.
fn columns(project: &std::path::Path, schema: &str, name: &str) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let url = url::Url::from_directory_path(table_dir(project, schema, name)).unwrap();
        let provider = etl::lake::delta_provider(&ctx, &url).await.unwrap();
        provider.schema().fields().iter().map(|f| f.name().clone()).collect()
    })
}

#[test]
fn a_cte_read_twice_is_computed_once_and_the_rows_are_the_same() {
    let dir = fixture("shared_subplans");
    let debug = [("ETL_LOG", "etl=debug".to_owned())];
    let (code, stdout, stderr) = etl_with_env(dir.path(), &["--threads", "1", "build"], &debug);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // `cohorts` shares its `firsts` between its two readers;
    // `cohorts_unshared` turned that off in its `sql_header`.
    let shared: Vec<&str> = stderr.lines().filter(|l| l.contains("runs once")).collect();
    assert_eq!(shared.len(), 1, "{stderr}");
    assert!(shared[0].contains("readers=2"), "{stderr}");
    assert!(shared[0].contains("aggr=[min(main.orders.month)]"), "{stderr}");

    // Per first month: customers, their lines and amounts, counted here.
    let mut first = std::collections::BTreeMap::new();
    for v in 1..=20000i64 {
        let (customer, month) = (v % 500, (v * 7919) % 12);
        first
            .entry(customer)
            .and_modify(|m: &mut i64| *m = (*m).min(month))
            .or_insert(month);
    }
    let mut cohorts = std::collections::BTreeMap::new();
    for v in 1..=60000i64 {
        let cohort = cohorts.entry(first[&(v % 500)]).or_insert((0, 0, 0));
        cohort.1 += 1;
        cohort.2 += v % 100;
    }
    for month in first.values() {
        cohorts.get_mut(month).unwrap().0 += 1;
    }
    let mut expected: Vec<String> = cohorts
        .iter()
        .map(|(month, (customers, lines, amount))| format!("{month}|{customers}|{lines}|{amount}"))
        .collect();
    expected.sort();
    assert!(expected.len() > 1, "{expected:?}");
    assert_eq!(rows(dir.path(), "main", "cohorts"), expected);
    assert_eq!(rows(dir.path(), "main", "cohorts_unshared"), expected);

    // Turned off for the whole build from the environment.
    let off = [
        ("ETL_LOG", "etl=debug".to_owned()),
        ("ETL_SHARE_REPEATED_SUBPLANS", "false".to_owned()),
    ];
    let (code, stdout, stderr) = etl_with_env(dir.path(), &["build", "--force", "--select", "cohorts"], &off);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stderr.contains("runs once"), "{stderr}");
    assert_eq!(rows(dir.path(), "main", "cohorts"), expected);
}

#[test]
fn a_sql_header_sets_datafusion_options_for_its_model_alone() {
    let dir = fixture("sql_header");
    let (code, stdout, stderr) = etl(dir.path(), &["--memory-limit", "12MiB", "build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The join asked for sort-merge: it spills under the limit, with no
    // hash-join attempt that ran out of memory first.
    assert_eq!(rows(dir.path(), "main", "pairs"), vec!["1000000|499999500000"]);
    let results = artifact(dir.path(), "run_results.json");
    let message = |name: &str| {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == format!("model.sql_header.{name}"))
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(message("pairs"), "table: 1 row");
    // Identifiers keep their case in `cased` only, and still do when it
    // merges new rows into its table.
    assert_eq!(columns(dir.path(), "main", "cased"), ["id", "TenTimes"]);
    assert_eq!(columns(dir.path(), "main", "plain"), ["id", "tentimes"]);
    let (code, stdout, stderr) = etl(dir.path(), &["build", "--force", "--select", "cased"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("incremental cased"), "{stdout}");
    assert_eq!(rows(dir.path(), "main", "cased"), ["1|10", "2|20", "3|30"]);
    assert_eq!(columns(dir.path(), "main", "cased"), ["id", "TenTimes"]);

    // Anything but settings of the query is refused, where it is written,
    // and changes no table.
    let before = rows(dir.path(), "main", "plain");
    let model = dir.path().join("models/plain.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(
        &model,
        sql.replace(
            "config(materialized='table')",
            "config(materialized='table', sql_header='drop table main.ids')",
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = etl(dir.path(), &["build", "--select", "plain"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "error[invalid-config]: model `plain`: `sql_header` may only hold `SET datafusion.<option> = <value>` \
             statements, not `DROP TABLE main.ids`"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/plain.sql:1:33"), "{stderr}");

    // A header on a view has no query to apply to: a config error, which
    // `compile` reports too, at the key (see: issue 27).
    std::fs::write(
        dir.path().join("models/v.sql"),
        "{{ config(materialized='view', sql_header='set datafusion.execution.batch_size = 10') }}\nselect 1 as x\n",
    )
    .unwrap();
    let (code, stdout, stderr) = etl(dir.path(), &["compile"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("model `v`: `sql_header` applies to the query of a table or incremental model"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/v.sql:1:32"), "{stderr}");
    assert_eq!(rows(dir.path(), "main", "plain"), before);
    assert_eq!(rows(dir.path(), "main", "ids"), ["1", "2", "3"]);
}

#[test]
fn debug_says_what_etl_builds_with_and_whether_the_lake_answers() {
    let dir = fixture("basic");
    let (code, stdout, stderr) = etl(dir.path(), &["debug"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[1].starts_with("project    OK     `basic` at "), "{stdout}");
    assert!(lines[4].starts_with("lake       OK     file://"), "{stdout}");
    assert!(lines[4].ends_with("(empty: the first build writes it)"), "{stdout}");
    assert_eq!(lines[5], "render     OK     6 nodes in the DAG", "{stdout}");
    // `etl parse` writes the manifest and nothing else.
    let (stdout, _) = etl_ok(dir.path(), &["parse"]);
    assert!(stdout.starts_with("Parsed 6 nodes in "), "{stdout}");
    assert!(dir.path().join("target/manifest.json").exists());
    assert!(!dir.path().join("target/compiled").exists());
    assert!(!dir.path().join("lake").exists());

    // A bucket that does not answer is an error, and the exit code says so.
    let p = dir.path();
    let project = std::fs::read_to_string(p.join("project.yaml")).unwrap();
    std::fs::write(
        p.join("project.yaml"),
        format!("{project}\ntarget: cloud\ntargets:\n  cloud:\n    lake: s3://etl-nowhere/lake/\n"),
    )
    .unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "x".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "y".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let (code, stdout, _) = crate::support::etl_with_env(p, &["debug"], &env);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("lake       ERROR  s3://etl-nowhere/lake/: "),
        "{stdout}"
    );
}

#[test]
fn init_makes_a_project_that_builds_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _) = etl_ok(dir.path(), &["init", "my_shop"]);
    assert!(stdout.starts_with("Made `my_shop`"), "{stdout}");
    let project = dir.path().join("my_shop");
    let (stdout, _) = etl_ok(&project, &["build"]);
    assert!(
        stdout.contains("3 succeeded, 0 failed, 0 skipped; tests: 2 passed, 0 warned, 0 failed"),
        "{stdout}"
    );
    assert_eq!(rows(&project, "main", "customers_by_country"), ["PT|2", "SE|1"]);
    // Never over a folder that exists.
    let (code, _, stderr) = etl(dir.path(), &["init", "my_shop"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/my_shop` exists already"), "{stderr}");
}

#[test]
fn a_selection_runs_in_dag_order_through_nodes_it_leaves_out() {
    // `--select p c` with p -> v -> c: c waits for p though v is not
    // selected (it ran first and kept p's old rows).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("models")).unwrap();
    std::fs::write(p.join("project.yaml"), "name: order\nmodels:\n  +materialized: table\n").unwrap();
    std::fs::write(p.join("models/p.sql"), "select {{ var('n', 1) }} as x\n").unwrap();
    std::fs::write(
        p.join("models/v.sql"),
        "{{ config(materialized='view') }}\nselect x from {{ ref('p') }}\n",
    )
    .unwrap();
    std::fs::write(p.join("models/c.sql"), "select x from {{ ref('v') }}\n").unwrap();
    etl_ok(p, &["build"]);
    for n in 2..6 {
        let vars = format!("{{n: {n}}}");
        let (stdout, _) = etl_ok(p, &["build", "--select", "p", "c", "--vars", &vars, "--threads", "2"]);
        let at = |name: &str| stdout.find(&format!("table {name} ")).unwrap();
        assert!(at("p") < at("c"), "{stdout}");
        assert_eq!(rows(p, "main", "c"), [n.to_string()]);
    }
}

#[test]
fn a_malformed_seed_row_is_an_error_at_its_line_and_the_table_stays() {
    let dir = fixture("basic");
    let p = dir.path();
    etl_ok(p, &["build"]);
    let seed = std::fs::read_dir(p.join("seeds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|x| x == "csv"))
        .unwrap();
    let name = seed.file_stem().unwrap().to_str().unwrap().to_owned();
    let before = rows(p, "main", &name);
    let text = std::fs::read_to_string(&seed).unwrap();
    let line = text.lines().count() + 1;
    std::fs::write(&seed, format!("{text}1,2,3,4,5,6,7,8,9\n")).unwrap();
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error[seed]: cannot read seed: "), "{stderr}");
    assert!(stderr.contains(&format!("--> seeds/{name}.csv:{line}:1")), "{stderr}");
    assert_eq!(rows(p, "main", &name), before);
}
