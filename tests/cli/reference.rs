//! The reference project (the repository root) on a lake generated with
//! known dirt: what the README promises about silver and gold holds. See:
//! issue 3.

use std::collections::BTreeSet;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;

use crate::support::*;

/// A copy of the reference project with a freshly generated bronze lake.
pub fn reference_project(orders: u64, days: u32, dirt_rate: f64) -> (tempfile::TempDir, lakegen::Manifest) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for item in ["models", "macros", "seeds", "quality"] {
        copy_dir(&root.join(item), &dir.path().join(item));
    }
    std::fs::copy(root.join("project.yaml"), dir.path().join("project.yaml")).unwrap();
    let start: lakegen::Date = "2024-03-01".parse().unwrap();
    let config = lakegen::Config::for_total_orders(7, orders, days, start, dirt_rate);
    let manifest = lakegen::generate(&config, days, &dir.path().join("lake/bronze")).unwrap();
    (dir, manifest)
}

fn count(project: &Path, table: &str, filter: &str) -> u64 {
    let rows = query(
        project,
        &[table],
        &format!("select count(*) from {} {filter}", table.replace('.', "_")),
    );
    rows[0].parse().unwrap()
}

#[test]
fn the_reference_project_cleans_a_generated_lake_as_promised() {
    let (dir, manifest) = reference_project(3000, 6, 0.03);
    let p = dir.path();
    let hook = Webhook::start();
    let env = [("SHOP_NOTIFY_WEBHOOK", format!("{}/shop", hook.url))];
    let (code, stdout, stderr) = etl_with_env(p, &["build"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains(", 0 failed, 0 skipped; tests:"), "{stdout}");

    // The day's summary reached the webhook: the last day's revenue and
    // orders, its top 10 products, every entity's reject rate against its
    // thresholds, every bronze feed fresh.
    assert!(stdout.contains("Told webhook (summary)"), "{stdout}");
    let summary = &hook.posted("/shop")[0].body;
    let revenue_orders = "from silver_orders_clean where status <> 'cancelled'";
    let last_day = query(
        p,
        &["silver.orders_clean"],
        &format!("select cast(max(order_date) as varchar) {revenue_orders}"),
    );
    let day = query(
        p,
        &["silver.orders_clean"],
        &format!(
            "select count(*), cast(sum(total_amount) as double) {revenue_orders} and order_date = date '{}'",
            last_day[0]
        ),
    );
    let figure = &summary["figures"][0];
    assert_eq!(
        figure["columns"],
        serde_json::json!(["day", "orders", "revenue", "average_order_value"])
    );
    assert_eq!(figure["rows"][0][0], last_day[0].as_str());
    let (orders, revenue) = (&figure["rows"][0][1], figure["rows"][0][2].as_f64().unwrap());
    assert_eq!(format!("{orders}|{revenue}"), day[0]);
    let top = summary["figures"][1]["rows"].as_array().unwrap();
    assert_eq!(top.len(), 10, "{}", summary["figures"][1]);
    assert!(
        top.windows(2).all(|w| w[0][4].as_f64() >= w[1][4].as_f64()),
        "by revenue: {top:?}"
    );
    let rates: Vec<(&str, &str, &str)> = summary["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["entity"].as_str().unwrap(),
                r["warn_if"].as_str().unwrap(),
                r["error_if"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rates,
        [
            ("clicks_validated", ">2%", ">5%"),
            ("customers_validated", ">2%", ">5%"),
            ("order_events_validated", ">2%", ">5%"),
            ("order_items_validated", ">2%", ">5%"),
            ("orders_validated", ">2%", ">5%"),
            ("stock_validated", ">4%", ">8%"),
            ("suppliers_validated", ">10%", ">25%"),
        ]
    );
    let fresh: Vec<&str> = summary["freshness"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "pass")
        .map(|f| f["source"].as_str().unwrap())
        .collect();
    assert_eq!(fresh.len(), 8, "{}", summary["freshness"]);

    // One row per order.
    let orders = count(p, "silver.orders_clean", "");
    assert!(orders > 2500, "{orders}");
    let distinct = query(
        p,
        &["silver.orders_clean"],
        "select count(distinct order_id) from silver_orders_clean",
    );
    assert_eq!(distinct, [orders.to_string()]);

    // Every bronze row is kept or rejected with the reason the generator
    // gave it (orders keep one row per order, counting its versions).
    for (entity, clean, kept) in [
        ("customers", "customers_clean", "count(*)"),
        ("orders", "orders_clean", "sum(versions)"),
        ("order_items", "order_items_clean", "count(*)"),
        ("order_events", "order_events_clean", "count(*)"),
        ("clicks", "clicks_clean", "count(*)"),
        ("suppliers", "suppliers_clean", "sum(copies)"),
        ("stock", "stock_clean", "sum(copies)"),
    ] {
        let stats = &manifest.stats.entities[entity];
        let kept: u64 = query(
            p,
            &[&format!("silver.{clean}")],
            &format!("select {kept} from silver_{clean}"),
        )[0]
        .parse()
        .unwrap();
        let reasons = query(
            p,
            &[&format!("silver.{entity}_rejected")],
            &format!("select reject_reason, count(*) from silver_{entity}_rejected group by 1 order by 1"),
        );
        let expected: Vec<String> = stats
            .rejects
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{reason}|{n}"))
            .collect();
        assert_eq!(reasons, expected, "{entity}: rejects by reason");
        assert_eq!(
            kept + stats.rejected(),
            stats.rows,
            "{entity}: every bronze row is accounted for"
        );
    }

    // No raw email or name in any silver or gold table.
    let raw = raw_pii(p);
    assert!(raw.len() > 1000, "{}", raw.len());
    for schema in ["silver", "gold"] {
        for entry in std::fs::read_dir(p.join("lake/warehouse").join(schema)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert_no_pii(p, schema, &name, &raw);
        }
    }

    // Gold totals reconcile with orders_clean.
    let revenue = query(
        p,
        &["silver.orders_clean"],
        "select round(sum(total_amount), 2) from silver_orders_clean where status <> 'cancelled'",
    );
    for (gold, column) in [
        ("kpis_produit", "revenue"),
        ("ventes_geo", "revenue"),
        ("sales_by_day", "revenue"),
        ("revenue_by_channel", "revenue"),
        ("fct_orders", "revenue"),
        ("customer_ltv", "lifetime_value"),
        ("dim_customer", "lifetime_value"),
        ("revenue_by_customer_country", "revenue"),
        ("click_behaviour", "revenue"),
    ] {
        let total = query(
            p,
            &[&format!("gold.{gold}")],
            &format!("select round(sum({column}), 2) from gold_{gold}"),
        );
        assert_eq!(total, revenue, "{gold}");
    }
    let aov = query(
        p,
        &["gold.average_order_value"],
        "select period, round(sum(revenue), 2) from gold_average_order_value group by 1 order by 1",
    );
    let r = &revenue[0];
    assert_eq!(aov, [format!("all|{r}"), format!("day|{r}"), format!("month|{r}")]);
    star_schema_holds(p, &manifest);
    // The BI exports are there, every KPI table as CSV and Parquet, sorted
    // as configured; the two dated ones with the day's copy.
    for export in [
        "kpis_produit",
        "ventes_geo",
        "ltv_cohorts",
        "produits_premium",
        "sales_by_day",
        "revenue_by_channel",
        "customer_ltv",
        "top_products_daily",
        "top_products_monthly",
        "average_order_value",
        "revenue_by_customer_country",
        "click_behaviour",
        "order_event_delays",
    ] {
        let csv = std::fs::read_to_string(p.join(format!("lake/exports/{export}.csv"))).unwrap();
        assert!(csv.lines().count() > 1, "{export}");
        assert!(p.join(format!("lake/exports/{export}.parquet")).is_file(), "{export}");
        let dated = p.join(format!("lake/exports/{export}"));
        assert_eq!(
            dated.is_dir(),
            ["kpis_produit", "sales_by_day"].contains(&export),
            "{export}"
        );
    }
    let days: Vec<String> = std::fs::read_to_string(p.join("lake/exports/sales_by_day.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    let mut sorted = days.clone();
    sorted.sort();
    assert_eq!(days, sorted, "sales_by_day.csv is by day");
}

/// The star schema of a built reference project: the calendar, sessions
/// computed here from the page views, the top 10, and what the generator
/// says it wrote.
fn star_schema_holds(p: &Path, manifest: &lakegen::Manifest) {
    // The calendar covers whole years, with ISO weeks and the seed's holidays.
    let calendar = query(
        p,
        &["gold.dim_date"],
        "select count(*), min(date_day), max(date_day) from gold_dim_date",
    );
    assert_eq!(calendar, ["366|2024-01-01|2024-12-31"]);
    let days = query(
        p,
        &["gold.dim_date"],
        "select date_day, iso_year, iso_week, iso_day_of_week, weekday_name, is_weekend, is_holiday, holiday_name \
         from gold_dim_date where date_day in ('2024-01-01', '2024-05-08', '2024-05-20', '2024-12-29', '2024-12-30') \
         order by date_day",
    );
    assert_eq!(
        days,
        [
            "2024-01-01|2024|1|1|Monday|false|true|Jour de l'an",
            "2024-05-08|2024|19|3|Wednesday|false|true|Victoire 1945",
            "2024-05-20|2024|21|1|Monday|false|true|Lundi de Pentecôte",
            "2024-12-29|2024|52|7|Sunday|true|false|NULL",
            "2024-12-30|2025|1|1|Monday|false|false|NULL",
        ]
    );

    // Every order once; every valid stock row once; suppliers all listed.
    assert_eq!(count(p, "gold.fct_orders", ""), count(p, "silver.orders_clean", ""));
    assert_eq!(count(p, "gold.fct_stock_daily", ""), count(p, "silver.stock_clean", ""));
    let stock = &manifest.stats.entities["stock"];
    assert_eq!(
        count(p, "silver.stock_clean", "") + stock.rejected() + stock.noise["duplicate_snapshot"],
        stock.rows
    );
    let suppliers = &manifest.stats.entities["suppliers"];
    assert_eq!(
        count(p, "gold.dim_supplier", ""),
        suppliers.rows - suppliers.rejected() - suppliers.noise["duplicate_row"]
    );

    // Sessions, recomputed here from the page views: a visitor's views more
    // than 30 minutes apart, or on another day, start a new session.
    let views = query(
        p,
        &["gold.fct_clicks"],
        "select visitor_id, cast(date_part('epoch', ts) as bigint), session_id from gold_fct_clicks \
         order by visitor_id, ts",
    );
    let mut sessions = 0;
    let mut previous: Option<(String, i64)> = None;
    let mut ids = BTreeSet::new();
    for row in &views {
        let mut f = row.split('|');
        let (visitor, ts, session) = (
            f.next().unwrap(),
            f.next().unwrap().parse::<i64>().unwrap(),
            f.next().unwrap(),
        );
        let new = match &previous {
            Some((v, t)) => v != visitor || ts - t > 1800 || ts / 86_400 != t / 86_400,
            None => true,
        };
        sessions += usize::from(new);
        ids.insert(session.to_owned());
        previous = Some((visitor.to_owned(), ts));
    }
    assert!(
        sessions > 1000 && sessions < views.len(),
        "{sessions} of {}",
        views.len()
    );
    assert_eq!(ids.len(), sessions, "sessions in fct_clicks");
    let behaviour = query(
        p,
        &["gold.click_behaviour"],
        "select sum(sessions), sum(page_views) from gold_click_behaviour",
    );
    assert_eq!(behaviour, [format!("{sessions}|{}", views.len())]);

    // The day's best seller is the product with the most revenue that day.
    let best = query(
        p,
        &["gold.product_days"],
        "select product_id from gold_product_days where order_date = (select min(order_date) from gold_product_days) \
         order by revenue desc, product_id limit 1",
    );
    let top = query(
        p,
        &["gold.top_products_daily"],
        "select product_id from gold_top_products_daily where rank = 1 order by order_date limit 1",
    );
    assert_eq!(top, best);
    assert_eq!(count(p, "gold.top_products_monthly", "where rank = 1"), 1);

    // Every event of the lake's clean events is counted once by its day.
    assert_eq!(
        query(
            p,
            &["gold.order_event_delays"],
            "select sum(events) from gold_order_event_delays"
        ),
        [count(p, "silver.order_events_clean", "").to_string()]
    );
}

#[test]
fn a_dirt_rate_of_8_percent_fails_the_build_on_the_reject_rate() {
    let (dir, _) = reference_project(1500, 4, 0.08);
    let (code, stdout, stderr) = etl(dir.path(), &["build"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAIL reject_rate_orders_validated_reject_reason: "),
        "{stdout}"
    );
    assert!(stdout.contains("over `error_if >5%`"), "{stdout}");
    // Nothing built on rejected-heavy input was published.
    assert!(!table_dir(dir.path(), "silver", "orders_clean").exists());
    assert!(!table_dir(dir.path(), "gold", "kpis_produit").exists());
}

/// Every email and name of the bronze customers files.
fn raw_pii(project: &Path) -> BTreeSet<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let location = project.join("lake/bronze/customers/");
        let options = datafusion::prelude::CsvReadOptions::new()
            .file_extension(".csv.gz")
            .file_compression_type(
                datafusion::datasource::file_format::file_compression_type::FileCompressionType::GZIP,
            )
            .schema_infer_max_records(0);
        let df = ctx.read_csv(location.to_str().unwrap(), options).await.unwrap();
        let batches = df
            .select_columns(&["first_name", "last_name", "email"])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = BTreeSet::new();
        for row in format_rows(&batches) {
            let mut parts = row.split('|');
            let (first, last, email) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            out.insert(format!("{first} {last}"));
            if last.len() >= 4 {
                out.insert(last.to_owned());
            }
            if !email.trim().is_empty() && email != "NULL" {
                out.insert(email.trim().to_lowercase());
            }
        }
        out
    })
}

fn assert_no_pii(project: &Path, schema: &str, table: &str, raw: &BTreeSet<String>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let url = url::Url::from_directory_path(table_dir(project, schema, table)).unwrap();
        let provider = etl::lake::delta_provider(&ctx, &url).await.unwrap();
        let batches = ctx.read_table(provider).unwrap().collect().await.unwrap();
        for batch in batches {
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                // Rejected clicks keep their (invalid) address, to show why.
                let banned = ["email", "first_name", "last_name"].contains(&field.name().as_str())
                    || (field.name() == "ip" && !table.ends_with("_rejected"));
                assert!(!banned, "{schema}.{table} has a `{}` column", field.name());
                let text = datafusion::arrow::compute::cast(column, &DataType::Utf8).unwrap();
                let text = text.as_string::<i32>();
                for i in 0..text.len() {
                    if text.is_null(i) {
                        continue;
                    }
                    let v = text.value(i);
                    assert!(
                        !v.contains('@'),
                        "{schema}.{table}.{}: `{v}` looks like an email",
                        field.name()
                    );
                    assert!(
                        !raw.contains(v),
                        "{schema}.{table}.{}: `{v}` is raw personal data",
                        field.name()
                    );
                }
            }
        }
    });
}

/// Every table of the reference project, its rows sorted, without the
/// columns that record when a build ran.
fn all_tables(project: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for schema in ["silver", "gold"] {
        let dir = project.join("lake/warehouse").join(schema);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let table = format!("{schema}.{name}");
            let columns: Vec<String> = {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                let url = url::Url::from_directory_path(table_dir(project, schema, &name)).unwrap();
                let provider = runtime
                    .block_on(etl::lake::delta_provider(&SessionContext::new(), &url))
                    .unwrap();
                provider
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .filter(|c| !c.ends_with("loaded_at"))
                    .collect()
            };
            let select = format!("select {} from {schema}_{name}", columns.join(", "));
            let mut rows = query(project, &[&table], &select);
            rows.sort();
            out.push((table, rows));
        }
    }
    out
}

#[test]
fn a_nightly_incremental_build_leaves_the_rows_a_full_rebuild_leaves() {
    let (dir, _) = reference_project(3000, 12, 0.03);
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for _ in 0..2 {
        lakegen::append_day(&p.join("lake/bronze")).unwrap();
    }
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let results = artifact(p, "run_results.json");
    let message = |id: &str| {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == id)
            .map(|r| r["message"].as_str().unwrap().to_owned())
            .unwrap()
    };
    // Each ingesting model read the two new files of each feed it reads.
    for model in [
        "orders_clean",
        "order_events_clean",
        "clicks_clean",
        "order_items_clean",
        "customers_clean",
        "customers_rejected",
        "stock_clean",
        "stock_rejected",
    ] {
        let m = message(&format!("model.shop.{model}"));
        assert!(m.contains(", 2 new files ingested"), "{model}: {m}");
    }
    assert!(message("model.shop.orders_clean").starts_with("incremental (merge)"));
    // The star schema's facts are built incrementally too.
    for (model, strategy) in [
        ("fct_orders", "incremental (merge)"),
        ("customer_ltv", "incremental (merge)"),
        ("fct_order_lines", "incremental (insert_overwrite)"),
        ("fct_clicks", "incremental (insert_overwrite)"),
        ("fct_stock_daily", "incremental (insert_overwrite)"),
        ("click_behaviour", "incremental (delete+insert)"),
        ("order_event_delays", "incremental (delete+insert)"),
        ("dim_customer", "incremental (merge)"),
        ("revenue_by_customer_country", "incremental (delete+insert)"),
    ] {
        let m = message(&format!("model.shop.{model}"));
        assert!(m.starts_with(strategy), "{model}: {m}");
    }
    // Only the days the new versions touch are recomputed (orders change
    // status for days after they are created), not all 14.
    let m = message("model.shop.sales_by_day");
    assert!(m.starts_with("incremental (insert_overwrite)"), "{m}");
    let days: u64 = m
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..14).contains(&days), "{m}");
    // The days events were ingested on: the two new ones, not all 14.
    let m = message("model.shop.order_event_delays");
    assert!(m.starts_with("incremental (delete+insert): 2 rows"), "{m}");
    // The row count of every bronze file is kept in the lake, the new
    // days' learnt as the ingesting models read them: the reconciliation
    // test counts bronze from these, and its passing shows them exact.
    assert_eq!(message("test.shop.bronze_rows_accounted"), "no failing rows");
    for feed in ["orders", "order_items", "order_events", "customers", "clicks", "stock"] {
        let doc = std::fs::read_to_string(p.join(format!("lake/_etl/row_counts/bronze.{feed}.json"))).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let counted = doc["files"].as_object().unwrap();
        let files = std::fs::read_dir(p.join("lake/bronze").join(feed)).unwrap().count();
        assert_eq!(counted.len(), files, "{feed}: {doc}");
        assert!(
            counted.values().all(|f| f["rows"].as_u64().unwrap() > 0),
            "{feed}: {doc}"
        );
    }
    let incremental = all_tables(p);

    let (code, stdout, stderr) = etl(p, &["build", "--full-refresh"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let full = all_tables(p);
    assert_eq!(incremental.len(), full.len());
    for ((table, a), (_, b)) in incremental.iter().zip(&full) {
        assert_eq!(a.len(), b.len(), "{table}: incremental vs full refresh row count");
        assert!(a == b, "{table}: incremental rows differ from a full refresh");
    }
}

#[test]
fn a_night_killed_after_some_of_its_commits_gives_the_rows_of_an_uninterrupted_night() {
    // See: issue 23. Killed once order_events_clean had committed the new
    // day, the next build relabelled the whole day as duplicate events in
    // order_events_rejected: it compared with the build's start time.
    let (dir, _) = reference_project(3000, 8, 0.03);
    let p = dir.path();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The same project, moved, runs the same night uninterrupted.
    let twin = tempfile::tempdir().unwrap();
    copy_dir(p, twin.path());
    for project in [p, twin.path()] {
        lakegen::append_day(&project.join("lake/bronze")).unwrap();
    }
    killed_at(p, &["build"], "before-commit@order_events_rejected");
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = etl(twin.path(), &["build"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (rerun, uninterrupted) = (all_tables(p), all_tables(twin.path()));
    assert_eq!(rerun.len(), uninterrupted.len());
    for ((table, a), (_, b)) in rerun.iter().zip(&uninterrupted) {
        assert_eq!(a.len(), b.len(), "{table}: row count after a kill and a rerun");
        assert!(a == b, "{table}: rows differ after a kill and a rerun");
    }
}

#[test]
fn compile_plans_every_model_and_reports_each_misspelt_column_with_nothing_run() {
    // See: issue 26. Two mistakes in two gold models, found together,
    // each at its line and column, before anything is written.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    let (stdout, _) = etl_ok(p, &["compile"]);
    assert!(
        stdout.contains("Checked 48 models against their inputs' schemas, no data read"),
        "{stdout}"
    );
    let edit = |file: &str, from: &str, to: &str| edit_file(p, file, from, to);
    edit(
        "models/gold/kpis_produit.sql",
        "sum(revenue) as revenue",
        "sum(revenu) as revenue",
    );
    edit(
        "models/gold/revenue_by_channel.sql",
        "        channel,",
        "        chanel,",
    );
    let (code, stdout, stderr) = etl(p, &["compile"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 nodes of the selection do not plan: nothing was run"),
        "{stdout}"
    );
    assert!(stderr.contains("error[sql]: No field named revenu."), "{stderr}");
    assert!(stderr.contains("--> models/gold/kpis_produit.sql:9:13"), "{stderr}");
    assert!(stderr.contains("error[sql]: No field named chanel."), "{stderr}");
    assert!(
        stderr.contains("--> models/gold/revenue_by_channel.sql:5:9"),
        "{stderr}"
    );
    assert!(!p.join("lake/warehouse").exists(), "nothing was written");
}

#[test]
fn a_model_that_compiles_fails_at_run_time_only_for_its_data() {
    // A cast the data decides: it plans, and fails on a value.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    std::fs::write(
        p.join("models/gold/ids_as_numbers.sql"),
        "select cast(channel as int) as id from {{ ref('orders_clean') }}\n",
    )
    .unwrap();
    etl_ok(p, &["compile", "--select", "ids_as_numbers"]);
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("ERROR table ids_as_numbers"), "{stdout}");
    assert!(
        stderr.contains("building `ids_as_numbers` failed: Cast error"),
        "{stderr}"
    );
    assert!(stdout.contains("51 succeeded, 1 failed"), "{stdout}");
}

#[test]
fn lineage_follows_revenue_back_to_bronze_and_an_email_to_its_anonymised_columns() {
    // See: issue 26. Checked by hand against the SQL: kpis_produit sums
    // product_days, which sums order_items_clean's revenue, which the
    // ephemeral order_items_validated computes as quantity * unit_price.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    let (stdout, _) = etl_ok(p, &["lineage", "shop.kpis_produit.revenue"]);
    let expected = [
        "kpis_produit.revenue",
        "└─ aggregated from product_days.revenue",
        "   └─ aggregated from order_items_clean.revenue",
        "      └─ passed through from order_items_validated.revenue",
        "         ├─ computed from source.bronze.order_items.quantity",
        "         └─ computed from source.bronze.order_items.unit_price",
        "rows filtered or joined on: product_days.product_id, products_clean.product_id",
    ];
    assert_eq!(stdout, expected.join("\n") + "\n");
    // The e-mail is hashed once, in customers_validated; what reads it
    // gets the hash, and the rows it rejects.
    let (stdout, _) = etl_ok(p, &["lineage", "source.bronze.customers.email", "--downstream"]);
    let expected = [
        "source.bronze.customers.email",
        "├─ computed into customers_validated.email_hash",
        "│  ├─ passed through into customers_clean.email_hash",
        "│  │  └─ passed through into dim_customer.email_hash",
        "│  └─ passed through into customers_rejected.email_hash",
        "└─ computed into customers_validated.reject_reason",
        "   ├─ passed through into customers_rejected.reject_reason",
        "   ├─ filters the rows of customers_clean",
        "   └─ filters the rows of customers_rejected",
    ];
    assert_eq!(stdout, expected.join("\n") + "\n");
    // As JSON, for tools.
    let (stdout, _) = etl_ok(
        p,
        &[
            "lineage",
            "bronze.customers.email",
            "--downstream",
            "--log-format",
            "json",
        ],
    );
    let event: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(event["tree"]["unique_id"], "source.shop.bronze.customers");
    assert_eq!(event["tree"]["branches"][0]["how"], "computed");

    // The manifest `etl compile` writes carries the same lineage, also
    // when the check finds the models planned as last time.
    etl_ok(p, &["compile"]);
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("target/manifest.json")).unwrap()).unwrap();
    let (stdout, _) = etl_ok(p, &["compile", "--log-format", "json", "--timings"]);
    let event = |name: &str| -> serde_json::Value {
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == name)
            .unwrap()
    };
    let checked = event("checked");
    // `--timings`: each stage, the check's as the event says.
    let timings = event("timings");
    let stages: Vec<&str> = timings["phases"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        stages,
        [
            "load",
            "render",
            "graph",
            "select",
            "check",
            "write compiled (beside check)",
            "manifest (beside check)",
            "write manifest"
        ]
    );
    assert!(timings["phases"]["check"].as_f64().unwrap() >= checked["seconds"].as_f64().unwrap());
    assert!(timings["wall"].as_f64().unwrap() >= timings["phases"]["check"].as_f64().unwrap());
    // Also the two whose SQL holds the run's start time (`loaded_at`): the
    // key holds the timestamp's place.
    assert_eq!(
        (checked["planned"].as_u64(), checked["cached"].as_u64()),
        (Some(48), Some(48)),
        "{checked}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("target/manifest.json")).unwrap()).unwrap();
    for (id, node) in first["nodes"].as_object().unwrap() {
        assert_eq!(node["lineage"], manifest["nodes"][id]["lineage"], "{id}");
        assert_eq!(
            node["etl_plan"]["columns"], manifest["nodes"][id]["etl_plan"]["columns"],
            "{id}"
        );
    }
    let lineage = &manifest["nodes"]["model.shop.kpis_produit"]["lineage"];
    assert_eq!(
        lineage["columns"]["revenue"],
        serde_json::json!([{"unique_id": "model.shop.product_days", "column": "revenue", "how": "aggregated"}])
    );
    assert_eq!(
        lineage["columns"]["margin"].as_array().unwrap().len(),
        3,
        "revenue, units and cost: {}",
        lineage["columns"]["margin"]
    );

    // What cannot be answered says why.
    let (code, _, stderr) = etl(p, &["lineage", "kpis_produit.revenu"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`kpis_produit` has no column `revenu`; its columns: product_id, name, category"),
        "{stderr}"
    );
    let (code, _, stderr) = etl(p, &["lineage", "kpis.revenue"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`kpis` is not a model, seed, snapshot or source of this project"),
        "{stderr}"
    );
}

/// Every table's Delta version, by folder.
fn table_versions(lake: &Path) -> BTreeSet<(String, usize)> {
    let mut out = BTreeSet::new();
    for schema in std::fs::read_dir(lake.join("warehouse")).unwrap().flatten() {
        for table in std::fs::read_dir(schema.path()).unwrap().flatten() {
            let log = table.path().join("_delta_log");
            if log.is_dir() {
                let commits = std::fs::read_dir(&log).unwrap().count();
                out.insert((table.path().display().to_string(), commits));
            }
        }
    }
    out
}

#[test]
fn build_checks_every_model_it_runs_before_writing_anything() {
    // See: issue 26. The night after a bad edit: two misspelt columns in
    // two gold models fail the build before any table, even the new
    // day's silver, is written.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    etl_ok(p, &["build"]);
    lakegen::append_day(&p.join("lake/bronze")).unwrap();
    let edit = |file: &str, from: &str, to: &str| edit_file(p, file, from, to);
    edit(
        "models/gold/kpis_produit.sql",
        "sum(revenue) as revenue",
        "sum(revenu) as revenue",
    );
    edit(
        "models/gold/revenue_by_channel.sql",
        "        channel,",
        "        chanel,",
    );
    let before = table_versions(&p.join("lake"));
    let runs = std::fs::read_dir(p.join("lake/_etl/runs")).unwrap().count();
    let (code, stdout, stderr) = etl(p, &["build"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("error[sql]: No field named revenu."), "{stderr}");
    assert!(stderr.contains("--> models/gold/kpis_produit.sql:9:13"), "{stderr}");
    assert!(stderr.contains("error[sql]: No field named chanel."), "{stderr}");
    assert!(
        stderr.contains("--> models/gold/revenue_by_channel.sql:5:9"),
        "{stderr}"
    );
    assert!(!stdout.contains("OK "), "nothing ran: {stdout}");
    assert_eq!(table_versions(&p.join("lake")), before, "no table changed");
    assert_eq!(std::fs::read_dir(p.join("lake/_etl/runs")).unwrap().count(), runs);
    // Fixed, the night runs and reads the new day.
    edit(
        "models/gold/kpis_produit.sql",
        "sum(revenu) as revenue",
        "sum(revenue) as revenue",
    );
    edit(
        "models/gold/revenue_by_channel.sql",
        "        chanel,",
        "        channel,",
    );
    let (stdout, _) = etl_ok(p, &["build"]);
    assert!(stdout.contains("51 succeeded"), "{stdout}");
}

#[test]
fn the_check_plans_again_a_model_whose_input_changed_though_its_sql_did_not() {
    // The build's check keeps what it planned (target/check_cache.json)
    // and plans again only what changed: a silver column renamed must
    // fail the gold model that reads it, whose own SQL is the same; also
    // after the project is copied, and with the cache file corrupt.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    etl_ok(p, &["build"]);
    let cache = p.join("target/check_cache.json");
    assert!(cache.is_file());
    let rename = |project: &Path, from: &str, to: &str| {
        edit_file(project, "models/silver/products/products_clean.sql", from, to)
    };
    let no_cost = |project: &Path| {
        let (code, stdout, stderr) = etl(project, &["build"]);
        assert_eq!(code, 2, "{stdout}\n{stderr}");
        assert!(stderr.contains("No field named p.cost."), "{stderr}");
        assert!(stderr.contains("--> models/gold/kpis_produit.sql:"), "{stderr}");
    };
    rename(p, "    cost,\n", "    cost as unit_cost,\n");
    no_cost(p);
    rename(p, "    cost as unit_cost,\n", "    cost,\n");
    let (stdout, _) = etl_ok(p, &["build"]);
    assert!(stdout.contains("51 succeeded (38 up to date), 0 failed"), "{stdout}");
    // A copy of the project, with its target/ and its lake.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(p, copy.path());
    rename(copy.path(), "    cost,\n", "    cost as unit_cost,\n");
    no_cost(copy.path());
    // A corrupt cache is no cache.
    std::fs::write(&cache, "{\"model.shop.kpis_produit\": {\"key\": 1").unwrap();
    let (stdout, _) = etl_ok(p, &["build"]);
    assert!(stdout.contains("51 succeeded (38 up to date), 0 failed"), "{stdout}");
    rename(p, "    cost,\n", "    cost as unit_cost,\n");
    no_cost(p);
}

#[test]
fn compile_checks_an_incremental_model_both_ways_once_its_table_exists() {
    // `{% if is_incremental() %}` is rendered only on an existing table:
    // before the first build the branch is not SQL yet; after it, a typo
    // in it is reported by `compile` and stops `build`.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    let path = p.join("models/gold/product_days.sql");
    let text = std::fs::read_to_string(&path).unwrap();
    let typo = text.replacen(
        "(select min(order_id) from orders)",
        "(select min(order_idd) from orders)",
        1,
    );
    assert_ne!(typo, text);
    std::fs::write(&path, &typo).unwrap();
    let (stdout, _) = etl_ok(p, &["compile"]);
    assert!(stdout.contains("Checked 48 models against"), "{stdout}");
    std::fs::write(&path, &text).unwrap();
    etl_ok(p, &["build"]);
    let (stdout, _) = etl_ok(p, &["compile"]);
    assert!(
        stdout.contains("Checked 48 models (27 incremental ones both ways: as a full build and on their tables)"),
        "{stdout}"
    );
    std::fs::write(&path, &typo).unwrap();
    let (code, stdout, stderr) = etl(p, &["compile"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("No field named order_idd. Did you mean 'orders.order_id'?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(with is_incremental() true: its table exists)"),
        "{stderr}"
    );
    assert!(stderr.contains("--> models/gold/product_days.sql:33:33"), "{stderr}");
    let (code, _, stderr) = etl(p, &["build"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--> models/gold/product_days.sql:33:33"), "{stderr}");
}

#[test]
fn state_modified_is_judged_on_the_plan_and_the_manifest_says_what_a_change_breaks() {
    // See: issue 26. Against a state written by `etl compile`: comments,
    // whitespace and a renamed CTE are not a modification; a retyped
    // column read downstream is a breaking change, an added one is not.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    etl_ok(p, &["compile"]);
    let state = tempfile::tempdir().unwrap();
    copy_dir(&p.join("target"), state.path());
    let state_dir = state.path().to_str().unwrap();
    let edit = |file: &str, from: &str, to: &str| {
        let path = p.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    let modified = || {
        let (stdout, _) = etl_ok(
            p,
            &[
                "ls",
                "--select",
                "state:modified",
                "--resource-type",
                "model",
                "--output",
                "name",
                "--state",
                state_dir,
            ],
        );
        stdout.lines().map(str::to_owned).collect::<BTreeSet<String>>()
    };
    edit(
        "models/gold/kpis_produit.sql",
        "with sold as (",
        "-- summed per product\nWITH   sales_sum AS (",
    );
    edit(
        "models/gold/kpis_produit.sql",
        "left join sold s",
        "left join sales_sum s",
    );
    edit(
        "models/gold/kpis_produit.sql",
        "sum(units) as units,",
        "sum(units)   as units, -- units sold",
    );
    assert!(!modified().contains("kpis_produit"), "{:?}", modified());
    // The same text edits with a real change are one.
    edit(
        "models/gold/kpis_produit.sql",
        "sum(orders) as orders",
        "max(orders) as orders",
    );
    assert!(modified().contains("kpis_produit"));
    edit(
        "models/gold/kpis_produit.sql",
        "max(orders) as orders",
        "sum(orders) as orders",
    );

    edit(
        "models/silver/orders/orders_clean.sql",
        "coalesce(v.total_amount, t.items_total) as total_amount,",
        "cast(coalesce(v.total_amount, t.items_total) as double) as total_amount,",
    );
    edit("models/gold/sales_by_day.sql", "select\n", "select\n    1 as one,\n");
    let (stdout, _) = etl_ok(p, &["compile", "--state", state_dir]);
    assert!(
        stdout.contains(
            "  orders_clean: `total_amount` DECIMAL(38,2) -> DOUBLE; breaking: read by fct_orders.revenue, \
             fct_orders.total_amount, revenue_orders.revenue, customer_ltv.lifetime_value, \
             customer_ltv.average_order_value, customer_ltv.segment"
        ),
        "{stdout}"
    );
    // sales_by_day gains a column (and its revenue follows orders_clean's
    // type); nothing reads it.
    assert!(
        stdout.contains("  sales_by_day: `one` added, `revenue` DECIMAL(38,2) -> DOUBLE; not breaking"),
        "{stdout}"
    );
    assert!(!stdout.contains("  kpis_produit:"), "{stdout}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("target/manifest.json")).unwrap()).unwrap();
    let change = &manifest["nodes"]["model.shop.orders_clean"]["etl_change"];
    assert_eq!(change["breaking"], true);
    assert_eq!(change["retyped"][0]["column"], "total_amount");
    assert_eq!(
        change["read_by"],
        serde_json::json!([
            "model.shop.fct_orders.revenue",
            "model.shop.fct_orders.total_amount",
            "model.shop.revenue_orders.revenue",
            "model.shop.customer_ltv.lifetime_value",
            "model.shop.customer_ltv.average_order_value",
            "model.shop.customer_ltv.segment"
        ])
    );
    assert_eq!(
        manifest["nodes"]["model.shop.sales_by_day"]["etl_change"]["breaking"],
        false
    );
    assert!(manifest["nodes"]["model.shop.kpis_produit"]["etl_change"].is_null());
}

#[test]
fn the_check_reports_only_the_selection_and_reads_what_it_does_not_build_from_the_lake() {
    // A half-edited silver model does not stop a build of a gold model
    // that reads its table; `compile` of that gold model says it could not
    // be checked rather than failing for a model it was not asked about.
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    etl_ok(p, &["build"]);
    // An incremental ancestor on its table (product_days) planned the
    // second way without a false error.
    let (stdout, _) = etl_ok(p, &["compile", "--select", "kpis_produit"]);
    assert!(stdout.contains("Checked"), "{stdout}");
    edit_file(
        p,
        "models/silver/products/products_clean.sql",
        "    cost,\n",
        "    cots,\n",
    );
    let (stdout, _) = etl_ok(p, &["build", "--select", "kpis_produit", "--force"]);
    assert!(stdout.contains("1 succeeded"), "{stdout}");
    let (stdout, _) = etl_ok(p, &["compile", "--select", "kpis_produit"]);
    assert!(
        stdout.contains("not checked: `kpis_produit` (`products_clean` does not plan)"),
        "{stdout}"
    );
    // Selected, the broken model is reported.
    let (code, _, stderr) = etl(p, &["build", "--select", "products_clean+"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("No field named cots."), "{stderr}");
}

/// `--log-format json` reports what the running nodes are doing while the
/// build runs (issue 30): `progress` events with rows read so far from the
/// scans' own metrics. Text to a pipe gets no live lines.
#[test]
fn a_long_build_says_what_it_is_doing() {
    let (dir, _) = reference_project(3000, 4, 0.03);
    let p = dir.path();
    let (code, stdout, _) = etl_with_env(
        p,
        &["build", "--log-format", "json", "--threads", "1"],
        &[("ETL_PROGRESS_SECONDS", "0.05".into())],
    );
    assert_eq!(code, 0, "{stdout}");
    let events: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let progress: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "progress").collect();
    assert!(progress.len() >= 3, "{} progress events", progress.len());
    for event in &progress {
        let running = event["running"].as_array().unwrap();
        // One thread: one node at a time.
        assert_eq!(running.len(), 1, "{event}");
        assert!(running[0]["node"].as_str().unwrap().contains(' '), "{event}");
        assert!(running[0]["elapsed"].as_f64().unwrap() >= 0.0);
        assert!(event["spilled_bytes"].as_u64().is_some());
    }
    // Some node was caught with rows read, and no count exceeds the rows
    // the lake could give it.
    let read: Vec<u64> = progress
        .iter()
        .map(|e| e["running"][0]["rows_read"].as_u64().unwrap())
        .collect();
    assert!(read.iter().any(|&r| r > 0), "{read:?}");
    assert!(read.iter().all(|&r| r < 1_000_000), "{read:?}");
    // Text to a pipe: the finished lines only.
    let (code, stdout, _) = etl(p, &["build", "--force", "--select", "orders_clean"]);
    assert_eq!(code, 0);
    assert!(!stdout.contains("rows read"), "{stdout}");
    assert!(!stdout.contains('\r'), "{stdout}");
}

#[test]
fn a_small_memory_limit_builds_the_readme_sample_every_time() {
    // Every sort held 10 MB per partition for merging its spills: under
    // 64 MiB the sorts of fct_clicks took most of the pool, and which got
    // there first decided whether it failed (4 builds of 4 on this lake).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for item in ["models", "macros", "seeds", "quality", "lake/bronze"] {
        copy_dir(&root.join(item), &dir.path().join(item));
    }
    std::fs::copy(root.join("project.yaml"), dir.path().join("project.yaml")).unwrap();
    let args = [
        "build",
        "--full-refresh",
        "--memory-limit",
        "64MiB",
        "--exclude",
        "resource_type:test",
    ];
    for _ in 0..3 {
        let (code, stdout, stderr) = etl(dir.path(), &args);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(stdout.contains("51 succeeded, 0 failed"), "{stdout}");
    }
    assert_eq!(
        count(dir.path(), "gold.fct_clicks", ""),
        count(dir.path(), "silver.clicks_clean", "")
    );
}
