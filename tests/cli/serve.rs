//! `etl serve` as BI tools use it: psql (Debian) and psycopg + SQLAlchemy
//! (PyPI, pinned), installed by `scripts/install-pg-clients`, connect to a
//! server the test starts on a free loopback port.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::support::*;

/// The virtualenv's bin folder with psycopg and SQLAlchemy; psql on the PATH.
fn clients() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| PathBuf::from(install("install-pg-clients", "Debian's and PyPI's registries")))
}

/// A running `etl serve`, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(p: &Path, password: &str) -> Server {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("etl"));
    let mut child = cleared(&mut command)
        .arg("--project-dir")
        .arg(p)
        .args(["serve", "--port", "0", "--log-format", "json"])
        .env("ETL_SERVE_PASSWORD", password)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(event["event"], "serving", "{event}");
    assert_eq!(event["password"], true, "{event}");
    Server {
        child,
        port: event["port"].as_u64().unwrap() as u16,
    }
}

/// `psql -At -c sql` as user etl: whether it succeeded, its stdout lines,
/// its stderr.
fn psql(port: u16, password: &str, sql: &str) -> (bool, Vec<String>, String) {
    clients();
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "etl", "-d", "etl"])
        .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "20")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_and_sqlalchemy_read_the_lake_and_see_a_new_build_without_a_restart() {
    let dir = fixture("basic");
    let p = dir.path();
    etl_ok(p, &["build"]);
    let server = serve(p, "s3cret");
    let port = server.port;
    let ok = |sql: &str| -> Vec<String> {
        let (ok, rows, stderr) = psql(port, "s3cret", sql);
        assert!(ok, "`{sql}`: {stderr}");
        rows
    };

    // The tables, by schema, as psql lists them.
    assert_eq!(
        ok(r"\dt marts.*"),
        [
            "marts|large_countries|table|postgres",
            "marts|revenue_by_region|table|postgres"
        ]
    );
    let read = "select * from marts.revenue_by_region order by revenue desc";
    let expected = |p: &Path| {
        query(
            p,
            &["marts.revenue_by_region"],
            "select * from marts_revenue_by_region order by revenue desc",
        )
    };
    let before = ok(read);
    assert_eq!(before, expected(p));
    assert!(!before.is_empty());
    // A join across schemas: a seed's table and a model's.
    let joined = ok(
        "select l.code, c.region from main.countries c join marts.large_countries l on l.code = c.code order by l.code",
    );
    assert_eq!(
        joined.len(),
        ok("select count(*) from marts.large_countries")[0]
            .parse::<usize>()
            .unwrap()
    );
    assert!(!joined.is_empty());

    // Errors are Postgres errors; the server goes on.
    let (done, _, stderr) = psql(port, "s3cret", "select nope from marts.revenue_by_region");
    assert!(!done);
    assert!(stderr.contains("No field named nope"), "{stderr}");
    let (done, _, stderr) = psql(port, "s3cret", "drop table marts.revenue_by_region");
    assert!(!done);
    assert!(
        stderr.contains("cannot execute DROP: `etl serve` is read-only; tables are written by `etl build`"),
        "{stderr}"
    );
    let (done, _, stderr) = psql(port, "wrong", "select 1");
    assert!(!done);
    assert!(
        stderr.contains("Password authentication failed for user \"etl\""),
        "{stderr}"
    );
    assert_eq!(ok("select 1"), ["1"]);

    // A build lands new rows: the next query sees them.
    std::fs::write(
        p.join("data/orders_2024-01-03.jsonl"),
        "{\"order_id\":100,\"country\":\"FR\",\"amount\":1000.0,\"status\":\"paid\"}\n",
    )
    .unwrap();
    etl_ok(p, &["build"]);
    let after = ok(read);
    assert_ne!(after, before);
    assert_eq!(after, expected(p));

    // psycopg, and SQLAlchemy's engine and inspector, as a BI tool uses them.
    let script = p.join("client.py");
    std::fs::write(
        &script,
        r#"import sys
import psycopg
from sqlalchemy import create_engine, inspect, text
port = int(sys.argv[1])
with psycopg.connect(host="127.0.0.1", port=port, user="etl", password="s3cret", dbname="etl") as conn:
    print(conn.execute("select count(*) from marts.revenue_by_region").fetchone()[0])
engine = create_engine(f"postgresql+psycopg://etl:s3cret@127.0.0.1:{port}/etl")
print(",".join(inspect(engine).get_table_names(schema="marts")))
with engine.connect() as c:
    print(c.execute(text("select sum(orders) from marts.revenue_by_region")).scalar())
"#,
    )
    .unwrap();
    let out = Command::new(clients().join("python"))
        .arg(&script)
        .arg(port.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], after.len().to_string());
    assert_eq!(lines[1], "large_countries,revenue_by_region");
    assert_eq!(lines[2], ok("select sum(orders) from marts.revenue_by_region")[0]);
}

#[test]
fn serve_beyond_loopback_needs_a_password() {
    let dir = fixture("basic");
    let (code, _, stderr) = etl(dir.path(), &["serve", "--bind", "0.0.0.0", "--port", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "`etl serve --bind 0.0.0.0` lets other machines in: set a password for user `etl` in ETL_SERVE_PASSWORD"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = etl(dir.path(), &["serve", "--bind", "localhost:1", "--port", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`--bind localhost:1`"), "{stderr}");
}

#[test]
fn psql_joins_the_reference_projects_facts_and_dimensions() {
    // See: issue 29. What a BI tool asks of the star schema: revenue by
    // the customers' segment and by weekend, a fact joined to two
    // dimensions, equal to the same query on the Delta tables.
    let (dir, _) = crate::reference::reference_project(1500, 4, 0.03);
    let p = dir.path();
    etl_ok(p, &["build"]);
    let server = serve(p, "s3cret");
    let sql = |fct: &str, cust: &str, date: &str| {
        format!(
            "select c.segment, d.is_weekend, count(*) as orders, sum(o.revenue) as revenue \
             from {fct} o join {cust} c on c.customer_id = o.customer_id \
             join {date} d on d.date_day = o.order_date \
             where o.is_revenue group by c.segment, d.is_weekend order by c.segment, d.is_weekend"
        )
    };
    let (done, served, stderr) = psql(
        server.port,
        "s3cret",
        &sql("gold.fct_orders", "gold.dim_customer", "gold.dim_date"),
    );
    assert!(done, "{stderr}");
    let expected = query(
        p,
        &["gold.fct_orders", "gold.dim_customer", "gold.dim_date"],
        &sql("gold_fct_orders", "gold_dim_customer", "gold_dim_date"),
    );
    // psql spells booleans t/f.
    let expected: Vec<String> = expected
        .iter()
        .map(|r| r.replace("|true|", "|t|").replace("|false|", "|f|"))
        .collect();
    assert_eq!(served, expected);
    assert!(served.len() >= 4, "{served:?}");
    let (done, listed, stderr) = psql(server.port, "s3cret", r"\dt gold.*");
    assert!(done, "{stderr}");
    for table in ["gold|dim_date|table|postgres", "gold|fct_orders|table|postgres"] {
        assert!(listed.iter().any(|l| l == table), "{table}: {listed:?}");
    }
}
