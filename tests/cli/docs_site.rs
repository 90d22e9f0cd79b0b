//! `etl docs generate` and `etl docs serve` on the reference project: the
//! site's data (lineage, table stats, the quality report that grows build
//! after build), and the site driven in headless Chromium (issue 26).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::reference::reference_project;
use crate::support::*;

/// Each entity's reject rate as the build printed it:
/// `WARN reject_rate_orders_validated_reject_reason: 81 failing rows (3.01% of 2,693 rows), ...`.
fn printed_rates(stdout: &str) -> serde_json::Map<String, serde_json::Value> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(" reject_rate_")?.1;
            let entity = rest.split_once("_reject_reason:")?.0;
            let rate = rest.split_once(" (")?.1.split_once(" of ")?.0;
            Some((entity.to_owned(), serde_json::Value::from(rate)))
        })
        .collect()
}

/// The site's data, as the page reads it.
fn site_data(project: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(project.join("target/docs/data.js")).unwrap();
    let json = text
        .strip_prefix("window.ETL_DOCS = ")
        .and_then(|t| t.trim_end().strip_suffix(';'))
        .expect("data.js assigns window.ETL_DOCS");
    serde_json::from_str(json).unwrap()
}

fn node<'a>(data: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    data["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("{id} in the site"))
}

#[test]
fn the_quality_report_grows_build_after_build_with_the_rates_the_build_printed() {
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    let (first, _) = etl_ok(p, &["build"]);
    lakegen::append_day(&p.join("lake/bronze")).unwrap();
    let (second, _) = etl_ok(p, &["build"]);
    let (stdout, _) = etl_ok(p, &["docs", "generate"]);
    assert!(
        stdout.contains("Docs site written to target/docs/ (the last 2 runs in its quality report)"),
        "{stdout}"
    );
    for file in [
        "index.html",
        "app.js",
        "style.css",
        "cytoscape.min.js",
        "cytoscape-dagre.min.js",
    ] {
        let len = std::fs::metadata(p.join("target/docs").join(file)).unwrap().len();
        assert!(len > 1000, "{file}: {len} bytes");
    }
    let data = site_data(p);
    assert_eq!(data["runs"].as_array().unwrap().len(), 2);
    // One point per build, each the rate that build printed (a build
    // prints the rates over their threshold; the others passed).
    let rates = data["quality"]["rates"].as_array().unwrap();
    assert_eq!(rates.len(), 7, "one per validated entity: {rates:?}");
    for r in rates {
        assert_eq!(r["points"].as_array().unwrap().len(), 2, "{r}");
    }
    let printed = [printed_rates(&first), printed_rates(&second)];
    // Over 2% at a dirt rate of 4%: the five entities warned above 2%
    // (stock above 4%, suppliers above 10%: a short list).
    for entity in [
        "orders_validated",
        "order_items_validated",
        "order_events_validated",
        "customers_validated",
        "clicks_validated",
    ] {
        assert!(printed[0].contains_key(entity), "{entity}: {first}");
    }
    let warn_above = |entity: &str| match entity {
        "stock_validated" => 4.0,
        "suppliers_validated" => 10.0,
        _ => 2.0,
    };
    for (k, printed) in printed.iter().enumerate() {
        for r in rates {
            let entity = r["entity"].as_str().unwrap().trim_start_matches("model.shop.");
            let point = &r["points"][k];
            let shown = format!("{:.2}%", point["rate"].as_f64().unwrap());
            match printed.get(entity) {
                Some(rate) => {
                    assert_eq!(&serde_json::Value::from(shown), rate, "{entity}, build {}", k + 1);
                    assert_eq!(point["status"], "warn");
                }
                None => {
                    assert_eq!(point["status"], "pass", "{entity}, build {}: {point}", k + 1);
                    assert!(point["rate"].as_f64().unwrap() <= warn_above(entity), "{point}");
                }
            }
        }
    }
    // The rejected rows by reason, after each build.
    let rejected = data["quality"]["rejected"].as_array().unwrap();
    let orders = rejected
        .iter()
        .find(|r| r["model"] == "model.shop.orders_rejected")
        .unwrap();
    assert_eq!(orders["points"].as_array().unwrap().len(), 2);
    let kept = rows(p, "silver", "orders_rejected").len() as u64;
    assert_eq!(orders["points"][1]["rows"], kept);

    // A table's size and versions, from its Delta log.
    let kpis = node(&data, "model.shop.kpis_produit");
    let table_rows = rows(p, "gold", "kpis_produit").len() as u64;
    assert_eq!(kpis["table"]["rows"], table_rows);
    assert_eq!(kpis["table"]["version"], 1, "built twice");
    assert_eq!(kpis["table"]["history"][0]["added_rows"], table_rows);
    assert_eq!(kpis["history"].as_array().unwrap().len(), 2, "its result in each run");
    // Columns with types, descriptions and lineage.
    let revenue = kpis["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "revenue")
        .unwrap();
    assert_eq!(revenue["type"], "DECIMAL(38,2)");
    assert_eq!(revenue["description"], "Sum of quantity * unit price paid.");
    assert_eq!(
        revenue["from"],
        serde_json::json!([{"unique_id": "model.shop.product_days", "column": "revenue", "how": "aggregated"}])
    );
    // Its tests, each with its result in both runs.
    let tests = kpis["tests"].as_array().unwrap();
    assert!(tests.iter().any(|t| t["name"] == "unique_kpis_produit_product_id"));
    assert!(tests.iter().all(|t| t["history"].as_array().unwrap().len() == 2));
}

#[test]
fn docs_serve_serves_the_site_and_nothing_outside_it() {
    let (dir, _) = reference_project(200, 2, 0.04);
    let p = dir.path();
    // Before generate: said what to do.
    let (code, _, stderr) = etl(p, &["docs", "serve", "--port", "0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no docs site in"), "{stderr}");
    assert!(stderr.contains("run `etl docs generate` first"), "{stderr}");
    etl_ok(p, &["docs", "generate"]);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["docs", "serve", "--port", &port.to_string()])
        .current_dir(p)
        .env("ETL_LOG", "off")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let get = |path: &str| -> String {
        for _ in 0..100 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("etl docs serve did not listen on {port}");
    };
    let index = get("/");
    let data = get("/data.js");
    let outside = get("/../project.yaml");
    let hidden = get("/.app.js.tmp");
    server.kill().unwrap();
    let _ = server.wait();
    assert!(index.lines().next().unwrap().ends_with(" 200 OK"), "{index}");
    assert!(index.contains("Content-Type: text/html"), "{index}");
    assert!(index.contains("<title>etl docs</title>"));
    assert!(data.contains("window.ETL_DOCS = "));
    assert!(outside.lines().next().unwrap().contains(" 404 "), "{outside}");
    assert!(hidden.lines().next().unwrap().contains(" 404 "), "{hidden}");
}

#[test]
fn the_site_works_in_headless_chromium() {
    // Chromium and playwright-core come from the package registries, by
    // the project's script (idempotent: quick once installed).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    install("install-browser", "Debian's and npm's registries");
    let (dir, _) = reference_project(300, 3, 0.04);
    let p = dir.path();
    let (stdout, _) = etl_ok(p, &["build"]);
    let rates = printed_rates(&stdout);
    // The five feeds warned above 2%, stock above 4% at this lake's 4.3%.
    assert_eq!(rates.len(), 6, "{stdout}");
    assert!(rates.contains_key("stock_validated"), "{stdout}");
    etl_ok(p, &["docs", "generate"]);
    // Screenshots for the README, under target/.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-site");
    let run = Command::new("node")
        .arg(root.join("tests/browser/site.mjs"))
        .arg(p.join("target/docs"))
        .arg(serde_json::Value::Object(rates).to_string())
        .arg(&shots)
        .output()
        .expect("node runs tests/browser/site.mjs");
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["errors"], serde_json::json!([]));
    assert!(shots.join("graph.png").is_file());
}
