//! dbt-duckdb as the oracle: a dbt project of our own writing is built by
//! dbt-core + dbt-duckdb (installed by `scripts/install-dbt-oracle`, pinned,
//! from PyPI) and by etl, unchanged, and their tables are compared row by
//! row: the same columns, the same values.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::support::{etl_ok, fixture, format_rows};

/// The virtualenv's bin folder with `dbt` and `python`.
fn oracle() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| PathBuf::from(crate::support::install("install-dbt-oracle", "python3 and PyPI")))
}

/// Runs dbt in `dir` (its own profiles.yml), as a dbt user would: seeds
/// first (dbt does not order a source after the seed that loads it).
fn dbt(dir: &Path, args: &[&str]) {
    let (code, out) = dbt_exit(dir, args);
    assert_eq!(code, 0, "`dbt {}` failed:\n{out}", args.join(" "));
}

/// [`dbt`], for a run that may fail: its exit code and output.
fn dbt_exit(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(oracle().join("dbt"))
        .args(args)
        .args(["--project-dir", ".", "--profiles-dir", "."])
        .current_dir(dir)
        .env("DO_NOT_TRACK", "1")
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .expect("dbt runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs a Python `script` in the oracle's virtualenv, which prints
/// `same` when what it checks holds.
fn prints_same(script: &str) {
    let out = Command::new(oracle().join("python"))
        .args(["-c", script])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "same");
}

/// Each result of a run_results.json: unique_id → status.
fn statuses(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("target/run_results.json")).unwrap()).unwrap();
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Each of `tables` (`schema.table`) of the DuckDB file, as Parquet files
/// `<dir>/oracle/<schema>.<table>.parquet`.
fn export(dir: &Path, database: &str, tables: &[&str]) {
    let script = format!(
        "import duckdb, os\n\
         con = duckdb.connect({database:?}, read_only=True)\n\
         os.makedirs('oracle', exist_ok=True)\n\
         for t in {tables:?}:\n    con.execute(f\"copy (select * from {{t}}) to 'oracle/{{t}}.parquet' (format parquet)\")\n"
    );
    let out = Command::new(oracle().join("python"))
        .args(["-c", &script])
        .current_dir(dir)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Column names and sorted rows of a table read by DataFusion.
fn read(ctx: &SessionContext, sql_table: &str) -> (Vec<String>, Vec<String>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let df = ctx.table(sql_table).await.unwrap();
        let columns = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let mut rows = format_rows(&df.collect().await.unwrap());
        rows.sort();
        (columns, rows)
    })
}

/// Builds `fixture` with dbt and with etl and compares `tables`.
fn same_as_dbt(fixture_name: &str, lake: &str, tables: &[&str]) {
    same_as_dbt_after(fixture_name, lake, tables, &[]);
}

/// The rows of a file dbt and etl each wrote, read by DataFusion, sorted.
fn file_rows(dir: &Path, file: &str) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let path = dir.join(file);
        let path = path.to_str().unwrap();
        let df = if file.ends_with(".csv") {
            ctx.read_csv(path, datafusion::prelude::CsvReadOptions::new())
                .await
                .unwrap()
        } else {
            ctx.read_parquet(path, ParquetReadOptions::default()).await.unwrap()
        };
        let mut rows = format_rows(&df.collect().await.unwrap());
        rows.sort();
        rows
    })
}

/// [`same_as_dbt`], with each of `next_nights` changing each project (its
/// seeds) after the build before it, and the last build compared.
fn same_as_dbt_after(
    fixture_name: &str,
    lake: &str,
    tables: &[&str],
    next_nights: &[&dyn Fn(&Path)],
) -> (tempfile::TempDir, tempfile::TempDir) {
    let theirs = fixture(fixture_name);
    if theirs.path().join("packages.yml").exists() {
        dbt(theirs.path(), &["deps"]);
    }
    let ours = fixture(fixture_name);
    for night in 0..=next_nights.len() {
        if night > 0 {
            let change = next_nights[night - 1];
            change(theirs.path());
            change(ours.path());
        }
        dbt(theirs.path(), &["seed"]);
        dbt(theirs.path(), &["build"]);
        etl_ok(ours.path(), &["build"]);
    }
    export(theirs.path(), "dev.duckdb", tables);

    let ctx = SessionContext::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (i, table) in tables.iter().enumerate() {
        let (schema, name) = table.split_once('.').unwrap();
        runtime.block_on(async {
            let parquet = theirs.path().join(format!("oracle/{table}.parquet"));
            ctx.register_parquet(
                format!("dbt_{i}"),
                parquet.to_str().unwrap(),
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
            let dir = ours.path().join(lake).join("warehouse").join(schema).join(name);
            let url = url::Url::from_directory_path(dir).unwrap();
            let provider = etl::lake::delta_provider(&ctx, &url).await.unwrap();
            ctx.register_table(format!("etl_{i}"), provider).unwrap();
        });
        let (dbt_columns, dbt_rows) = read(&ctx, &format!("dbt_{i}"));
        let (etl_columns, etl_rows) = read(&ctx, &format!("etl_{i}"));
        assert_eq!(etl_columns, dbt_columns, "columns of {table}");
        // Money keeps its type: a decimal or a double in dbt-duckdb is the
        // same in etl. (Integers and strings differ in width only: DuckDB
        // sums integers into a hugeint, and Parquet has no such type.)
        let types = |name: &str| {
            runtime.block_on(async {
                let df = ctx.table(name).await.unwrap();
                df.schema()
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect::<Vec<_>>()
            })
        };
        let (dbt_types, etl_types) = (types(&format!("dbt_{i}")), types(&format!("etl_{i}")));
        for ((column, theirs), ours) in dbt_columns.iter().zip(&dbt_types).zip(&etl_types) {
            if theirs.is_decimal() || theirs.is_floating() {
                assert_eq!(ours, theirs, "type of {table}.{column}");
            }
        }
        assert_eq!(etl_rows, dbt_rows, "rows of {table}");
        assert!(!etl_rows.is_empty(), "{table} has rows to compare");
    }
    (theirs, ours)
}

#[test]
fn a_dbt_duckdb_project_gives_dbt_duckdbs_rows() {
    // A duckdb profile, the project's own generate_schema_name, sources on
    // seeds in `raw`, integer cents divided into dollars, `numeric` casts,
    // `strftime`, `date_diff` and `//`, camelCase CSV headers read with
    // unquoted names of any case and aliases that keep their case.
    same_as_dbt(
        "dbt_duckdb",
        "dev.lake",
        &[
            "raw.raw_orders",
            "raw.raw_customers",
            "main_marts.customers",
            "main_marts.monthly",
            "main_marts.product_lines",
            "main_marts.order_calendar",
            "main_marts.date_spine",
        ],
    );
}

#[test]
fn dbts_jinja_runtime_gives_dbt_duckdbs_rows() {
    // dbt's cross-database macros (`dbt.dateadd`, `dbt.datediff`,
    // `dbt.listagg`...), `return()` of a mapping and of a list, the
    // project's own `adapter.dispatch`, `namespace.macro()` and Python's
    // `.items()`: the SQL differs (etl's `etl__` implementations against
    // dbt-duckdb's), the rows do not.
    same_as_dbt("dbt_macros", "dev.lake", &["main.event_facts", "main.kinds"]);
}

#[test]
fn a_package_s_macros_and_tests_give_dbt_duckdbs_rows() {
    // A local package: `money.macro()` dispatched to the project's own
    // implementation first (`dispatch:`), to the package's otherwise; a
    // surrogate key built with `{% do fields.append() %}`; the package's
    // generic test `money.positive`; its seed and model, built with the
    // project's and read with `ref('money', 'fx')`; its snapshot, read by
    // the project; its unit test, with a fixture file of its own.
    same_as_dbt(
        "dbt_packages",
        "dev.lake",
        &[
            "main.payment_facts",
            "main.fx_rates",
            "main.fx",
            "main.fx_usage",
            "main.fx_history_ids",
        ],
    );
}

#[test]
fn hooks_change_the_lake_as_dbt_duckdbs_do() {
    // on-run-start's `create or replace table`, a model's pre_hook and
    // post_hooks (insert, delete, update on `{{ this }}`), the project's
    // post-hook, and on-run-end with `results` and `schemas`.
    same_as_dbt("dbt_hooks", "dev.lake", &["main.orders", "main.run_log"]);
}

#[test]
fn a_dbt_duckdb_shop_with_everything_at_once_gives_dbt_duckdbs_rows() {
    // Issue 24's whole: a duckdb profile, the project's own schema naming,
    // sources on seeds in `raw`, a local package with dispatch and a list
    // that grows, dbt's cross-database macros, project and model hooks
    // (DML on the model's own table and an audit table), and integer cents.
    same_as_dbt(
        "dbt_shop",
        "dev.lake",
        &[
            "raw.raw_orders",
            "main_marts.customers",
            "main_marts.monthly",
            "main.audit",
        ],
    );
}

#[test]
fn templates_that_ask_the_warehouse_give_dbt_duckdbs_rows() {
    // Rendered again as they run, with `execute` true: a star macro over
    // `adapter.get_columns_in_relation`, a pivot over `run_query`'s
    // values, `statement` / `load_result`, `adapter.get_relation`, a
    // singular test and an on-run-end hook that query the lake.
    same_as_dbt(
        "dbt_introspection",
        "dev.lake",
        &[
            "main.payments",
            "main.payments_pivoted",
            "main.method_counts",
            "main.run_audit",
            "main.payment_log",
        ],
    );
}

#[test]
fn incremental_merges_give_dbt_duckdbs_rows_on_the_next_night() {
    // `merge_exclude_columns`, `merge_update_columns`,
    // `incremental_predicates` on DBT_INTERNAL_DEST (a row of the table
    // outside them is not matched: its key lands twice, as in dbt), and
    // dbt-duckdb's default strategy with a unique_key, delete+insert (two
    // new rows with one key both land).
    let next_night = |dir: &Path| {
        std::fs::write(
            dir.join("seeds/raw_customers.csv"),
            "id,name,status,first_seen,updated_day\n\
             1,Ana B,active,2024-02-01,3\n\
             2,Bo,active,2024-02-02,3\n\
             3,Cy,new,2024-01-03,2\n\
             4,Di,new,2024-02-04,3\n\
             4,Di,paid,2024-02-04,3\n",
        )
        .unwrap();
    };
    same_as_dbt_after(
        "dbt_merge",
        "dev.lake",
        &["main.customers", "main.statuses", "main.events"],
        &[&next_night],
    );
}

#[test]
fn snapshots_give_dbt_duckdbs_rows_over_three_runs() {
    // Night 2: order 1 changes (a later updated_at), 3 is gone, 4 is new;
    // customer (1, us) is gone, (2, eu) changes, (3, eu) is new. Night 3:
    // order 3 comes back, 2 changes its amount without a new updated_at
    // (the timestamp strategy keeps it, the check strategy does not), 4 is
    // gone; (1, us) comes back, (2, eu) is gone.
    let second = |dir: &Path| {
        std::fs::write(
            dir.join("seeds/raw_orders.csv"),
            "id,status,amount,updated_at\n\
             1,shipped,10.50,2024-01-03 08:00:00\n\
             2,placed,20.00,2024-01-01 11:30:00.5\n\
             4,placed,7.00,2024-01-03 12:00:00.25\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("seeds/raw_customers.csv"),
            "id,region,name,updated_at\n1,eu,Ana,2024-01-01\n2,eu,Bob,2024-01-02\n3,eu,Cy,2024-01-02\n",
        )
        .unwrap();
    };
    let third = |dir: &Path| {
        std::fs::write(
            dir.join("seeds/raw_orders.csv"),
            "id,status,amount,updated_at\n\
             1,shipped,10.50,2024-01-03 08:00:00\n\
             2,placed,25.00,2024-01-01 11:30:00.5\n\
             3,returned,5.25,2024-01-04 00:00:00\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("seeds/raw_customers.csv"),
            "id,region,name,updated_at\n1,eu,Ana,2024-01-01\n1,us,Ana,2024-01-03\n3,eu,Cy,2024-01-02\n",
        )
        .unwrap();
    };
    let (theirs, ours) = same_as_dbt_after(
        "dbt_snapshot",
        "dev.lake",
        &["snapshots.orders_ts", "main.check_history", "main.customers_history"],
        &[&second, &third],
    );
    // The manifest loads with dbt's class; snapshots are named, placed
    // and configured as dbt has them.
    let script = format!(
        "import json\n\
         from dbt.artifacts.schemas.manifest import WritableManifest\n\
         ours = json.load(open({ours:?}))\n\
         WritableManifest.from_dict(ours)\n\
         theirs = json.load(open({theirs:?}))\n\
         snaps = [k for k, v in theirs['nodes'].items() if v['resource_type'] == 'snapshot']\n\
         assert len(snaps) == 3, snaps\n\
         for k in snaps:\n\
         \x20   o, t = ours['nodes'][k], theirs['nodes'][k]\n\
         \x20   assert o['resource_type'] == 'snapshot', o\n\
         \x20   for f in ['fqn', 'schema', 'alias']:\n\
         \x20       assert o[f] == t[f], (k, f, o[f], t[f])\n\
         \x20   for f in ['strategy', 'unique_key', 'updated_at', 'check_cols', 'hard_deletes']:\n\
         \x20       assert o['config'].get(f) == t['config'].get(f), (k, f, o['config'].get(f), t['config'].get(f))\n\
         \x20   assert sorted(o['depends_on']['nodes']) == sorted(t['depends_on']['nodes']), k\n\
         print('same')\n",
        ours = ours.path().join("target/manifest.json"),
        theirs = theirs.path().join("target/manifest.json"),
    );
    prints_same(&script);
}

#[test]
fn unit_tests_pass_and_fail_as_dbt_duckdbs_do() {
    // Rows given as YAML, CSV (inline, and a fixture file) and SQL; vars
    // and macros overridden; an incremental model with `is_incremental`
    // and `this`; one test wrong on purpose. Each passes or fails as in
    // dbt, alone (`test --select test_type:unit`, once the inputs exist,
    // as dbt needs them) and in `build`, where the failing one skips its
    // model and what is built on it.
    let theirs = fixture("dbt_unit_tests");
    let ours = fixture("dbt_unit_tests");
    // What a change reaches: an exposure's inputs, a model's unit tests
    // and exposures, listed as dbt lists them.
    let ls = ["ls", "-s", "+exposure:weekly_revenue", "customer_value+"];
    let (code, listed) = dbt_exit(theirs.path(), &[&["-q"][..], &ls].concat());
    assert_eq!(code, 0, "{listed}");
    let (ours_listed, _) = etl_ok(ours.path(), &ls);
    assert_eq!(ours_listed.trim(), listed.trim());
    dbt(theirs.path(), &["seed"]);
    dbt(theirs.path(), &["run"]);
    etl_ok(ours.path(), &["seed"]);
    etl_ok(ours.path(), &["run"]);
    let unit = ["test", "--select", "test_type:unit"];
    let (code, out) = dbt_exit(theirs.path(), &unit);
    assert_eq!(code, 1, "{out}");
    let (code, stdout, stderr) = crate::support::etl(ours.path(), &unit);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let expected = statuses(theirs.path());
    assert_eq!(expected.len(), 8, "{expected:?}");
    assert_eq!(
        expected
            .get("unit_test.unit_shop.customers.wrong_on_purpose")
            .map(String::as_str),
        Some("fail")
    );
    assert_eq!(statuses(ours.path()), expected);
    assert!(
        stdout.contains(
            "| +/- | id | valid_email | signup_date |\n\
             |-----|----|-------------|-------------|\n\
             | -   | 1  | false       | 2024-01-01  |\n\
             | +   | 1  | true        | 2024-01-01  |"
        ),
        "{stdout}"
    );

    let (code, out) = dbt_exit(theirs.path(), &["build"]);
    assert_eq!(code, 1, "{out}");
    let (code, stdout, stderr) = crate::support::etl(ours.path(), &["build"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    // dbt skips the other unit tests of a model one failed on when they
    // happen to run after it: they pass or are skipped there, by the order
    // of the run; etl runs them (they pass).
    let mut expected = statuses(theirs.path());
    // etl reports an ephemeral model as checked; dbt lists none.
    let mut ours_now = statuses(ours.path());
    assert_eq!(
        ours_now.remove("model.unit_shop.paid_orders").as_deref(),
        Some("success")
    );
    for sibling in ["emails_are_checked", "a_seed_is_read_as_it_is", "quoted_csv_cells"] {
        let id = format!("unit_test.unit_shop.customers.{sibling}");
        assert!(matches!(expected.remove(&id).as_deref(), Some("pass" | "skipped")));
        assert_eq!(ours_now.remove(&id).as_deref(), Some("pass"), "{id}");
    }
    assert_eq!(
        expected.get("model.unit_shop.customer_value").map(String::as_str),
        Some("skipped")
    );
    assert_eq!(ours_now, expected);

    // The manifest's unit tests load with dbt's class, as dbt lists them.
    let script = format!(
        "import json\n\
         from dbt.artifacts.schemas.manifest import WritableManifest\n\
         ours = json.load(open({ours:?}))\n\
         WritableManifest.from_dict(ours)\n\
         theirs = json.load(open({theirs:?}))\n\
         assert sorted(ours['unit_tests']) == sorted(theirs['unit_tests']), (sorted(ours['unit_tests']), sorted(theirs['unit_tests']))\n\
         for k, t in theirs['unit_tests'].items():\n\
         \x20   o = ours['unit_tests'][k]\n\
         \x20   for f in ['model', 'fqn', 'depends_on', 'overrides', 'expect', 'name']:\n\
         \x20       assert o[f] == t[f], (k, f, o[f], t[f])\n\
         \x20   assert [g['input'] for g in o['given']] == [g['input'] for g in t['given']], k\n\
         for k, t in theirs['exposures'].items():\n\
         \x20   o = ours['exposures'][k]\n\
         \x20   assert {{f: v for f, v in o.items() if f != 'created_at'}} == {{f: v for f, v in t.items() if f != 'created_at'}}, (o, t)\n\
         assert len(theirs['exposures']) == 1\n\
         assert sorted(ours['disabled']) == sorted(theirs['disabled']) == ['model.unit_shop.legacy'], (ours['disabled'], theirs['disabled'])\n\
         for m in ['model.unit_shop.customers', 'model.unit_shop.customer_value']:\n\
         \x20   assert sorted(ours['child_map'][m]) == sorted(theirs['child_map'][m]), (m, ours['child_map'][m], theirs['child_map'][m])\n\
         print('same')\n",
        ours = ours.path().join("target/manifest.json"),
        theirs = theirs.path().join("target/manifest.json"),
    );
    prints_same(&script);
}

#[test]
fn external_sources_and_models_give_dbt_duckdbs_rows_and_files() {
    // A source read with `read_csv(...)` in `external_location`, and
    // dbt-duckdb's `external` models: to a location of the project's, and
    // by default to `<external_root>/<name>.parquet`.
    let (theirs, ours) = same_as_dbt_after(
        "dbt_external",
        "ext",
        &["main.orders", "main.order_totals", "main.daily"],
        &[],
    );
    for file in ["out/orders.parquet", "ext/order_totals.parquet", "out/daily.csv"] {
        let (dbt_rows, etl_rows) = (file_rows(theirs.path(), file), file_rows(ours.path(), file));
        assert!(!dbt_rows.is_empty(), "{file} has rows");
        assert_eq!(etl_rows, dbt_rows, "rows of {file}");
    }
}

#[test]
fn manifest_run_results_and_catalog_load_with_dbts_own_artifact_classes() {
    // Tools that read dbt's artifacts load them with dbt's schemas: etl's
    // manifest.json, run_results.json and catalog.json (`etl docs
    // generate`) load with dbt-core's own classes
    // (which check every field), and the manifest's parent_map and
    // child_map of models, seeds and sources are dbt's.
    let theirs = fixture("dbt_duckdb");
    dbt(theirs.path(), &["parse"]);
    let ours = fixture("dbt_duckdb");
    etl_ok(ours.path(), &["build"]);
    let (stdout, _) = etl_ok(ours.path(), &["docs", "generate"]);
    assert_eq!(
        stdout,
        "Catalog of 9 relations and 2 sources written to target/catalog.json\n\
         Docs site written to target/docs/ (the last 1 run in its quality report): open \
         target/docs/index.html, or run `etl docs serve`\n"
    );
    let script = format!(
        "import json, sys\n\
         from dbt.artifacts.schemas.manifest import WritableManifest\n\
         from dbt.artifacts.schemas.run import RunResultsArtifact\n\
         from dbt.artifacts.schemas.catalog import CatalogArtifact\n\
         ours = json.load(open({ours:?}))\n\
         WritableManifest.from_dict(ours)\n\
         RunResultsArtifact.from_dict(json.load(open({results:?})))\n\
         catalog = json.load(open({catalog:?}))\n\
         CatalogArtifact.from_dict(catalog)\n\
         customers = catalog['nodes']['model.shop_duck.customers']\n\
         assert customers['metadata']['type'] == 'BASE TABLE', customers\n\
         assert list(customers['columns'])[:2] == ['customer_id', 'name'], customers\n\
         assert customers['columns']['lifetime_tax']['type'] == 'DECIMAL(38,2)', customers\n\
         theirs = json.load(open({theirs:?}))\n\
         keep = lambda ids: sorted(i for i in ids if not i.startswith('test.'))\n\
         for name in ['parent_map', 'child_map']:\n\
         \x20   for node, linked in theirs[name].items():\n\
         \x20       if node.startswith('test.'): continue\n\
         \x20       assert keep(ours[name][node]) == keep(linked), (name, node, ours[name][node], linked)\n\
         for node, theirs_node in theirs['nodes'].items():\n\
         \x20   if node.startswith('test.'): continue\n\
         \x20   called = set(ours['nodes'][node]['depends_on']['macros'])\n\
         \x20   assert set(theirs_node['depends_on']['macros']) - {{'macro.dbt.is_incremental'}} <= called, (node, called)\n\
         \x20   assert all(m in ours['macros'] for m in called), (node, called)\n\
         print('same')\n",
        ours = ours.path().join("target/manifest.json"),
        results = ours.path().join("target/run_results.json"),
        catalog = ours.path().join("target/catalog.json"),
        theirs = theirs.path().join("target/manifest.json"),
    );
    prints_same(&script);
}
