//! Whole lakes, checked through the public API the etl tests use: the bytes
//! are reproducible, an appended day is the day a longer run writes, and the
//! files hold exactly what `_lakegen.json` says, found by reading them back
//! with rules written independently of the generator (as the models will).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use flate2::read::GzDecoder;
use lakegen::{COUNTRIES, Config, Manifest};
use serde_json::Value;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lakegen-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(seed: u64, orders_per_day: f64, dirt_rate: f64) -> Config {
    Config {
        seed,
        orders_per_day,
        start: "2024-01-01".parse().unwrap(),
        dirt_rate,
    }
}

/// Every file of a lake (manifest included) by path relative to its root, as raw bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The data lines of every file of one entity, in day order then file order.
fn lines(root: &Path, entity: &str) -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = fs::read_dir(root.join(entity))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let mut text = String::new();
        GzDecoder::new(fs::File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let day = path.file_name().unwrap().to_string_lossy()[..10].to_owned();
        let skip = usize::from(path.to_string_lossy().ends_with(".csv.gz"));
        out.extend(text.lines().skip(skip).map(|l| (day.clone(), l.to_owned())));
    }
    out
}

/// Splits one CSV row, honouring quotes.
fn csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

fn is_date(y: i64, m: i64, d: i64) -> bool {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The format of a signup date, or None when it is not a real date.
fn signup_format(s: &str) -> Option<&'static str> {
    let parts = |sep| s.split(sep).map(num).collect::<Option<Vec<i64>>>();
    let (format, y, m, d) = if s.len() == 10 && s.as_bytes()[4] == b'-' {
        let p = parts('-')?;
        ("iso", p[0], p[1], p[2])
    } else if s.len() == 10 && s.as_bytes()[2] == b'/' {
        let p = parts('/')?;
        ("signup_date_dd_mm_yyyy", p[2], p[1], p[0])
    } else if s.len() == 10 && s.as_bytes()[4] == b'/' {
        let p = parts('/')?;
        ("signup_date_yyyy_mm_dd_slash", p[0], p[1], p[2])
    } else if s.len() == 8 {
        let n = num(s)?;
        ("signup_date_yyyymmdd", n / 10000, n / 100 % 100, n % 100)
    } else {
        return None;
    };
    is_date(y, m, d).then_some(format)
}

/// The spelling of an order_ts, or None when it is not a timestamp.
fn order_ts_format(s: &str) -> Option<&'static str> {
    let valid_clock = |c: &str| {
        let p: Option<Vec<i64>> = c.split(':').map(num).collect();
        matches!(p.as_deref(), Some([h, m, s]) if *h < 24 && *m < 60 && *s < 60)
    };
    let valid_date = |d: &str| {
        let p: Option<Vec<i64>> = d.split('-').map(num).collect();
        matches!(p.as_deref(), Some([y, m, d]) if is_date(*y, *m, *d))
    };
    if let Some(n) = num(s) {
        return (n > 1_000_000_000).then_some("order_ts_epoch");
    }
    if s.len() == 20 && s.ends_with('Z') && &s[10..11] == "T" {
        return (valid_date(&s[..10]) && valid_clock(&s[11..19])).then_some("utc");
    }
    if s.len() == 19 && &s[10..11] == " " {
        return (valid_date(&s[..10]) && valid_clock(&s[11..])).then_some("order_ts_naive");
    }
    if s.len() == 25 && &s[10..11] == "T" && matches!(&s[19..20], "+" | "-") {
        return (valid_date(&s[..10]) && valid_clock(&s[11..19])).then_some("order_ts_offset");
    }
    None
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn seconds(ts: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant), for years after 1970.
    let y = if m <= 2 { y - 1 } else { y };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| num(p).is_some_and(|n| n <= 255) && p.len() <= 3)
}

/// What reading a lake back finds: counts per (entity, kind) and the facts
/// the cross-entity checks need.
#[derive(Default)]
struct Reading {
    rows: BTreeMap<&'static str, u64>,
    kinds: BTreeMap<(&'static str, String), u64>,
    /// Customer ids with a clean row, and with a rejected row.
    customers: HashSet<u64>,
    rejected_customers: HashSet<u64>,
    /// Order ids with a created version; customer of every order.
    order_customer: HashMap<u64, u64>,
    /// Clean versions: (order, status, updated_at, total or None).
    versions: Vec<(u64, String, String, Option<f64>)>,
    /// Sum of quantity * unit price of each order's clean lines, in cents.
    line_totals: HashMap<u64, i64>,
    /// Clean events: (order, event type, event_ts).
    events: Vec<(u64, String, String)>,
    click_customers: Vec<u64>,
    /// Supplier ids with a valid row; supplier of every product.
    suppliers: HashSet<u64>,
    product_supplier: HashMap<u64, u64>,
    /// Valid stock rows: (date, product, units on hand).
    stock: Vec<(String, u64, u64)>,
}

impl Reading {
    fn count(&mut self, entity: &'static str, kind: &str) {
        *self.kinds.entry((entity, kind.to_owned())).or_default() += 1;
    }

    fn of(root: &Path) -> Reading {
        let mut r = Reading::default();
        let codes: HashSet<&str> = COUNTRIES.iter().map(|c| c.code).collect();

        for (_, line) in lines(root, "customers") {
            *r.rows.entry("customers").or_default() += 1;
            let f = csv(&line);
            assert_eq!(f.len(), 6, "{line}");
            let id: u64 = f[0].parse().unwrap();
            let email = &f[3];
            let date = signup_format(&f[5]);
            if email.is_empty() {
                r.count("customers", "missing_email");
            }
            if date.is_none() {
                r.count("customers", "invalid_signup_date");
            }
            if email.is_empty() || date.is_none() {
                r.rejected_customers.insert(id);
                continue;
            }
            r.customers.insert(id);
            if email.trim() != email {
                r.count("customers", "email_whitespace");
            } else if email.to_lowercase() != *email {
                r.count("customers", "email_case");
            }
            assert!(email.trim().contains('@'), "{line}");
            if f[4] != f[4].to_uppercase() {
                r.count("customers", "country_lowercase");
            }
            assert!(codes.contains(f[4].to_uppercase().as_str()), "{line}");
            if date != Some("iso") {
                r.count("customers", date.unwrap());
            }
        }

        let mut seen_versions = HashSet::new();
        for (day, line) in lines(root, "orders") {
            *r.rows.entry("orders").or_default() += 1;
            if !seen_versions.insert((day.clone(), line.clone())) {
                r.count("orders", "duplicate_version");
            }
            let v: Value = serde_json::from_str(&line).unwrap();
            let order_id = v["order_id"].as_u64().unwrap();
            let channel = v["channel"].as_str().unwrap();
            let ts = order_ts_format(v["order_ts"].as_str().unwrap());
            let updated_at = v["updated_at"].as_str().unwrap();
            assert!(
                updated_at.starts_with(&day),
                "a version lands on the day of its updated_at: {line}"
            );
            if ts.is_none() {
                r.count("orders", "invalid_order_ts");
            }
            let normal_channel = channel.trim().to_lowercase();
            if !["web", "mobile", "store"].contains(&normal_channel.as_str()) {
                r.count("orders", "unknown_channel");
            }
            if ts.is_none() || !["web", "mobile", "store"].contains(&normal_channel.as_str()) {
                continue;
            }
            if ts != Some("utc") {
                r.count("orders", ts.unwrap());
            }
            if channel != normal_channel {
                r.count("orders", "channel_case");
            }
            let status = v["status"].as_str().unwrap();
            if status != status.trim().to_lowercase() {
                r.count("orders", "status_case");
            }
            if v["total_amount"].is_null() {
                r.count("orders", "null_total_amount");
            }
            let customer = v["customer_id"].as_u64().unwrap();
            assert_eq!(*r.order_customer.entry(order_id).or_insert(customer), customer);
            r.versions.push((
                order_id,
                status.trim().to_lowercase(),
                updated_at.to_owned(),
                v["total_amount"].as_f64(),
            ));
        }

        for (_, line) in lines(root, "order_items") {
            *r.rows.entry("order_items").or_default() += 1;
            let f = csv(&line);
            let order_id: u64 = f[0].parse().unwrap();
            let quantity: i64 = f[3].parse().unwrap();
            if quantity <= 0 {
                r.count("order_items", "non_positive_quantity");
            } else if f[4].is_empty() {
                r.count("order_items", "missing_unit_price");
            } else if !r.order_customer.contains_key(&order_id) {
                r.count("order_items", "orphan_order_id");
            } else {
                let cents = (f[4].parse::<f64>().unwrap() * 100.0).round() as i64;
                *r.line_totals.entry(order_id).or_default() += quantity * cents;
            }
        }

        let mut seen_events = HashSet::new();
        for (day, line) in lines(root, "order_events") {
            *r.rows.entry("order_events").or_default() += 1;
            let v: Value = serde_json::from_str(&line).unwrap();
            let ingested_at = v["ingested_at"].as_str().unwrap();
            assert!(
                ingested_at.starts_with(&day),
                "an event lands on the day of its ingested_at: {line}"
            );
            if !seen_events.insert(v["event_id"].as_str().unwrap().to_owned()) {
                r.count("order_events", "duplicate_event");
                continue;
            }
            let event_ts = v["event_ts"].as_str().unwrap();
            if seconds(ingested_at) - seconds(event_ts) >= 86_400 {
                r.count("order_events", "late_arrival");
            }
            r.events.push((
                v["order_id"].as_u64().unwrap(),
                v["event_type"].as_str().unwrap().to_owned(),
                event_ts.to_owned(),
            ));
        }

        for (_, line) in lines(root, "clicks") {
            *r.rows.entry("clicks").or_default() += 1;
            let v: Value = serde_json::from_str(&line).unwrap();
            if !is_ipv4(v["ip"].as_str().unwrap()) {
                r.count("clicks", "invalid_ip");
                continue;
            }
            assert!(["web", "mobile"].contains(&v["channel"].as_str().unwrap()), "{line}");
            match v["customer_id"].as_u64() {
                Some(id) => r.click_customers.push(id),
                None => r.count("clicks", "anonymous_visitor"),
            }
        }
        for (_, line) in lines(root, "products") {
            *r.rows.entry("products").or_default() += 1;
            let f = csv(&line);
            assert_eq!(f.len(), 6, "{line}");
            r.product_supplier.insert(f[0].parse().unwrap(), f[5].parse().unwrap());
        }

        let mut seen_suppliers = HashSet::new();
        for (day, line) in lines(root, "suppliers") {
            *r.rows.entry("suppliers").or_default() += 1;
            assert_eq!(day, lines(root, "customers")[0].0, "suppliers are listed on day 0 only");
            if !seen_suppliers.insert(line.clone()) {
                r.count("suppliers", "duplicate_row");
                continue;
            }
            let f = csv(&line);
            assert_eq!(f.len(), 4, "{line}");
            if !matches!(num(&f[3]), Some(days) if days > 0) {
                r.count("suppliers", "invalid_lead_time");
                continue;
            }
            r.suppliers.insert(f[0].parse().unwrap());
            if f[1].trim() != f[1] {
                r.count("suppliers", "name_whitespace");
            }
            if f[2] != f[2].to_uppercase() {
                r.count("suppliers", "country_lowercase");
            }
            assert!(codes.contains(f[2].to_uppercase().as_str()), "{line}");
        }

        let mut seen_stock = HashSet::new();
        for (day, line) in lines(root, "stock") {
            *r.rows.entry("stock").or_default() += 1;
            if !seen_stock.insert(line.clone()) {
                r.count("stock", "duplicate_snapshot");
                continue;
            }
            let f = csv(&line);
            assert_eq!(f.len(), 3, "{line}");
            let product: u64 = f[1].parse().unwrap();
            let on_hand: i64 = f[2].parse().unwrap();
            if on_hand < 0 {
                r.count("stock", "negative_on_hand");
                continue;
            }
            if !r.product_supplier.contains_key(&product) {
                r.count("stock", "unknown_product");
                continue;
            }
            let date = if f[0] == day {
                f[0].clone()
            } else {
                assert_eq!(signup_format(&f[0]), Some("signup_date_dd_mm_yyyy"), "{line}");
                r.count("stock", "snapshot_date_dd_mm_yyyy");
                let (d, m, y) = (&f[0][0..2], &f[0][3..5], &f[0][6..10]);
                format!("{y}-{m}-{d}")
            };
            assert_eq!(date, day, "a snapshot lands in the file of its day: {line}");
            r.stock.push((date, product, on_hand as u64));
        }
        r
    }
}

#[test]
fn the_same_seed_writes_the_same_bytes() {
    let (a, b, c) = (TempDir::new(), TempDir::new(), TempDir::new());
    lakegen::generate(&config(7, 150.0, 0.03), 4, &a.0).unwrap();
    lakegen::generate(&config(7, 150.0, 0.03), 4, &b.0).unwrap();
    lakegen::generate(&config(8, 150.0, 0.03), 4, &c.0).unwrap();
    let (fa, fb, fc) = (files(&a.0), files(&b.0), files(&c.0));
    assert_eq!(fa.len(), 8 * 4 + 1);
    assert!(fa == fb, "two runs with seed 7 differ");
    assert_ne!(
        fa["orders/2024-01-02.jsonl.gz"], fc["orders/2024-01-02.jsonl.gz"],
        "seeds 7 and 8 agree"
    );
}

#[test]
fn an_appended_day_is_the_day_a_longer_run_writes() {
    // 16 days: the last appended days re-simulate a full window of earlier orders.
    let cfg = config(3, 60.0, 0.05);
    let (appended, whole) = (TempDir::new(), TempDir::new());
    lakegen::generate(&cfg, 14, &appended.0).unwrap();
    lakegen::append_day(&appended.0).unwrap();
    let manifest = lakegen::append_day(&appended.0).unwrap();
    let expected = lakegen::generate(&cfg, 16, &whole.0).unwrap();
    assert_eq!(manifest, expected);
    assert_eq!(manifest.days, 16);
    assert_eq!(manifest.end.to_string(), "2024-01-16");
    let (fa, fw) = (files(&appended.0), files(&whole.0));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fw.keys().collect::<Vec<_>>());
    for (path, bytes) in &fa {
        assert!(
            bytes == &fw[path],
            "`{path}` differs between the appended lake and the longer run"
        );
    }
}

#[test]
fn appending_to_a_lake_from_another_version_is_refused() {
    let dir = TempDir::new();
    lakegen::generate(&config(1, 20.0, 0.03), 1, &dir.0).unwrap();
    let path = dir.0.join(lakegen::MANIFEST_FILE);
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace(lakegen::VERSION, "0.0.0-other");
    fs::write(&path, text).unwrap();
    let err = lakegen::append_day(&dir.0).unwrap_err();
    assert!(err.to_string().contains("0.0.0-other"), "{err}");
}

/// A lake dirty enough that every kind appears many times.
fn dirty_lake() -> (TempDir, Manifest, Reading) {
    let dir = TempDir::new();
    let manifest = lakegen::generate(&config(11, 250.0, 0.06), 12, &dir.0).unwrap();
    let reading = Reading::of(&dir.0);
    (dir, manifest, reading)
}

#[test]
fn the_manifest_counts_what_the_files_hold() {
    let (dir, manifest, reading) = dirty_lake();
    assert_eq!(lakegen::read_manifest(&dir.0).unwrap(), manifest);
    for (entity, stats) in &manifest.stats.entities {
        assert_eq!(reading.rows[entity.as_str()], stats.rows, "rows of {entity}");
        for (kind, &count) in stats.rejects.iter().chain(&stats.noise) {
            // Out-of-order rows cannot be told from the file alone.
            if kind == "out_of_order" {
                assert!(count > 0);
                continue;
            }
            let found = reading
                .kinds
                .get(&(entity_name(entity), kind.clone()))
                .copied()
                .unwrap_or(0);
            assert_eq!(found, count, "{entity}: {kind}");
            assert!(count > 0, "{entity}: no {kind} at all");
        }
    }
    let found: u64 = reading.kinds.values().sum();
    let declared: u64 = manifest
        .stats
        .entities
        .values()
        .flat_map(|e| e.rejects.iter().chain(&e.noise))
        .filter(|(k, _)| *k != "out_of_order")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(found, declared, "the reading found kinds the manifest does not name");
    assert_eq!(manifest.stats.orders_created, reading.order_customer.len() as u64);
}

fn entity_name(name: &str) -> &'static str {
    lakegen::ENTITIES.into_iter().find(|e| *e == name).unwrap()
}

#[test]
fn every_order_total_is_the_sum_of_its_clean_lines() {
    let (_dir, _, reading) = dirty_lake();
    let mut checked = 0;
    for (order, _, _, total) in &reading.versions {
        let lines = reading.line_totals[order];
        if let Some(total) = total {
            assert_eq!((total * 100.0).round() as i64, lines, "order {order}");
            checked += 1;
        }
    }
    assert!(checked > 1000);
    for order in reading.order_customer.keys() {
        assert!(
            reading.line_totals.contains_key(order),
            "order {order} has no clean line"
        );
    }
}

#[test]
fn rejects_never_touch_a_customer_who_orders_or_clicks() {
    let (_dir, _, reading) = dirty_lake();
    assert!(reading.rejected_customers.len() > 100);
    for (order, customer) in &reading.order_customer {
        assert!(
            reading.customers.contains(customer),
            "order {order}: customer {customer} has no clean row"
        );
    }
    for customer in &reading.click_customers {
        assert!(
            reading.customers.contains(customer),
            "a click from customer {customer} with no clean row"
        );
    }
}

#[test]
fn events_match_the_status_changes_of_the_orders() {
    let (_dir, _, reading) = dirty_lake();
    let changes: HashSet<(u64, String, String)> = reading
        .versions
        .iter()
        .map(|(o, status, at, _)| (*o, format!("ORDER_{}", status.to_uppercase()), at.clone()))
        .collect();
    let events: HashSet<(u64, String, String)> = reading.events.iter().cloned().collect();
    assert_eq!(events.len(), reading.events.len(), "one event per change");
    for e in &events {
        assert!(changes.contains(e), "event without a version: {e:?}");
    }
    // Late events of the last days have not landed yet; earlier ones all have.
    for c in &changes {
        assert!(
            c.2.as_str() >= "2024-01-09" || events.contains(c),
            "version without an event: {c:?}"
        );
    }
}

#[test]
fn every_product_has_a_listed_supplier_and_a_daily_snapshot() {
    let (_dir, manifest, reading) = dirty_lake();
    assert!(reading.suppliers.len() >= 12, "{}", reading.suppliers.len());
    for (product, supplier) in &reading.product_supplier {
        assert!(
            reading.suppliers.contains(supplier),
            "product {product}: supplier {supplier}"
        );
    }
    // Every product on the catalogue that day has exactly one valid row, or
    // its negative reject instead.
    let mut per_day: BTreeMap<&str, HashSet<u64>> = BTreeMap::new();
    for (date, product, _) in &reading.stock {
        assert!(
            per_day.entry(date).or_default().insert(*product),
            "{date} {product} twice"
        );
    }
    let negatives = manifest.stats.entity("stock").unwrap().rejects["negative_on_hand"];
    let rows: usize = per_day.values().map(HashSet::len).sum();
    assert_eq!(per_day.len(), 12);
    let catalogue_days: u64 = lines(&_dir.0, "products")
        .iter()
        .map(|(day, _)| per_day.keys().filter(|d| **d >= day.as_str()).count() as u64)
        .sum();
    assert_eq!(rows as u64 + negatives, catalogue_days);
    // Stock runs out on the last day of a restocking cycle, never below zero.
    assert!(reading.stock.iter().any(|(_, _, n)| *n == 0));
    assert!(reading.stock.iter().all(|(_, _, n)| *n < 200));
}

#[test]
fn reject_rates_follow_the_dirt_rate() {
    for (rate, low, high) in [(0.03, 0.02, 0.05), (0.08, 0.05, 0.11)] {
        let dir = TempDir::new();
        let manifest = lakegen::generate(&config(5, 400.0, rate), 8, &dir.0).unwrap();
        for (name, e) in &manifest.stats.entities {
            let share = e.rejected() as f64 / e.rows as f64;
            if name == "products" {
                assert_eq!(e.rejected(), 0);
            } else {
                assert!(low < share && share < high, "{name} at dirt rate {rate}: {share}");
            }
        }
    }
}

#[test]
fn every_appends_a_day_per_interval_as_a_feed_does() {
    let dir = TempDir::new();
    lakegen::generate(&config(3, 50.0, 0.03), 2, &dir.0).unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lakegen"))
        .arg("--out")
        .arg(&dir.0)
        .args(["--append-day", "--every", "300ms", "--times", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Two waits between three days.
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    let manifest = lakegen::read_manifest(&dir.0).unwrap();
    assert_eq!(manifest.days, 5);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("appended 2024-01-03 (3 days)"), "{stdout}");
    assert!(stdout.contains("appended 2024-01-05 (5 days)"), "{stdout}");
    // Whole files only: nothing left under a temporary name.
    for entity in lakegen::ENTITIES {
        for file in fs::read_dir(dir.0.join(entity)).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".tmp"), "{entity}/{name}");
        }
    }
}
