#!/usr/bin/env python3
"""KPI benchmark (issue 8): the same two KPI models over the same Parquet
files, built by etl, by dbt-core with dbt-duckdb, and run by DuckDB alone.

    daily_product_kpi   per day and product: orders, units, revenue
    cohort_ltv          monthly acquisition cohorts x months since the
                        first order: customers, revenue, LTV per customer

The inputs are the reference project's cleaned orders and order lines
(silver `orders_clean` and `order_items_clean`) at --orders orders,
exported once by etl to two Parquet files. Then, --repeat times and taking
turns so that all three see the same machine:

    etl          `etl build` from an empty lake: the whole process
    dbt-duckdb   `dbt run` from an empty database file: the whole process
    DuckDB       the two CREATE TABLE ... AS statements in one in-memory
                 DuckDB: the engine alone, the floor

All three are checked to produce the same numbers. With --scale K (8 by
default) it then builds the inputs K times over (ids shifted, so K times
the orders and customers) with `etl build --memory-limit` (1GiB by
default) and reports the peak RSS; DuckDB with the same memory limit runs
next to it. --scale 0 skips that part.

    cargo build --release --workspace
    python3 bench/kpi.py                              # 5M orders
    python3 bench/kpi.py --orders 200000 --scale 0    # a quick look

The reference build the inputs come from is bench/incremental.py's
(bench/projects/incremental-<orders>/project); when it is missing, this
script makes it (lakegen, then a full `etl build`: about 7 minutes at 5M
orders). dbt-core and dbt-duckdb are installed into bench/.venv as by
scale.py. Samples go to bench/results/kpi-<date>.json.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.dont_write_bytecode = True
from incremental import copy_project  # noqa: E402
from scale import dbt_binary, dbt_versions, etl_binary, log, machine, measure, release_binary, remove  # noqa: E402

# The KPI SQL: valid DataFusion and DuckDB SQL alike. `{{ source(...) }}`
# is the only Jinja, so that DuckDB alone runs the same text with the
# calls replaced by table names.
MODELS = {
    "daily_product_kpi": """
        -- Per day and product: the revenue orders (not cancelled) that
        -- bought it, the units, and the revenue at the price paid.
        select
            o.order_date,
            i.product_id,
            count(distinct o.order_id) as orders,
            sum(i.quantity) as units,
            sum(i.quantity * i.unit_price) as revenue
        from {{ source('shop', 'order_items') }} i
        join {{ source('shop', 'orders') }} o on o.order_id = i.order_id
        where o.status <> 'cancelled'
        group by o.order_date, i.product_id
    """,
    "cohort_ltv": """
        -- Monthly acquisition cohorts (the month of a customer's first
        -- revenue order) x months since: active customers, orders,
        -- revenue, and cumulative revenue per customer of the cohort.
        with revenue_orders as (
            select customer_id, date_trunc('month', order_date) as order_month, total_amount
            from {{ source('shop', 'orders') }}
            where status <> 'cancelled'
        ),

        firsts as (
            select customer_id, min(order_month) as cohort_month
            from revenue_orders
            group by customer_id
        ),

        cohorts as (
            select cohort_month, count(*) as customers
            from firsts
            group by cohort_month
        ),

        activity as (
            select
                f.cohort_month,
                o.order_month,
                count(distinct o.customer_id) as active_customers,
                count(*) as orders,
                sum(o.total_amount) as revenue
            from revenue_orders o
            join firsts f on f.customer_id = o.customer_id
            group by f.cohort_month, o.order_month
        )

        select
            a.cohort_month,
            a.order_month,
            (extract(year from a.order_month) - extract(year from a.cohort_month)) * 12
                + extract(month from a.order_month) - extract(month from a.cohort_month) as months_since_first_order,
            c.customers,
            a.active_customers,
            a.orders,
            a.revenue,
            sum(a.revenue) over (
                partition by a.cohort_month order by a.order_month
                rows between unbounded preceding and current row
            ) / c.customers as ltv_per_customer
        from activity a
        join cohorts c on c.cohort_month = a.cohort_month
    """,
}

# What each model's result must agree on across the three tools.
CHECKS = {
    "daily_product_kpi": "count(*), sum(orders), sum(units), round(sum(revenue), 2)",
    "cohort_ltv": "count(*), sum(active_customers), sum(orders), round(sum(revenue), 2), round(sum(ltv_per_customer), 4)",
}

# The input columns the models read.
INPUTS = {
    "orders": ("orders_clean", "order_id, customer_id, order_date, status, total_amount"),
    "order_items": ("order_items_clean", "order_id, product_id, quantity, unit_price"),
}


def sql_of(name):
    return textwrap.dedent(MODELS[name]).strip() + "\n"


def run(args, cwd, what, env=None):
    seconds, rss, code, tail = measure(args, cwd, env or dict(os.environ))
    if code != 0:
        sys.exit(f"error: {what} failed (exit {code}):\n{tail}")
    return {"seconds": round(seconds, 3), "rss_mib": round(rss, 1)}


def reference_lake(orders, etl, threads):
    """The built reference project whose silver tables feed the KPIs."""
    project = BENCH / "projects" / f"incremental-{orders}" / "project"
    silver = project / "lake" / "warehouse" / "silver"
    if all((silver / table / "_delta_log").is_dir() for table, _ in INPUTS.values()):
        return project
    lakegen = release_binary("lakegen", "LAKEGEN_BIN", "cargo build --release --workspace")
    pristine = project.parent / "bronze-pristine"
    if not pristine.exists():
        log(f"generating {orders:,} orders into {pristine} ...")
        run([str(lakegen), "--out", str(pristine), "--orders", str(orders), "--days", "90"], ROOT, "lakegen")
    remove(project)
    project.mkdir(parents=True)
    copy_project(project)
    shutil.copytree(pristine, project / "lake" / "bronze")
    log("building the reference project (the KPI inputs) ...")
    run([str(etl), "--project-dir", str(project), "--threads", str(threads), "build"], ROOT, "the reference build")
    return project


def export_inputs(reference, data, etl):
    """orders.parquet and order_items.parquet in `data`, written by etl
    from the reference project's silver tables."""
    if all((data / f"{name}.parquet").is_file() for name in INPUTS):
        return
    work = data.parent / "inputs"
    remove(work, data)
    (work / "models").mkdir(parents=True)
    (work / "project.yaml").write_text(f"name: kpi_inputs\ntargets:\n  dev:\n    lake: {data}/\n")
    silver = reference / "lake" / "warehouse" / "silver"
    tables = "".join(
        f"      - name: {table}\n        format: delta\n        location: {silver / table}\n"
        for table, _ in INPUTS.values()
    )
    (work / "models" / "sources.yml").write_text(f"version: 2\nsources:\n  - name: silver\n    tables:\n{tables}")
    for name, (table, columns) in INPUTS.items():
        (work / "models" / f"{name}.sql").write_text(
            f"{{{{ config(materialized='table', export={{'format': 'parquet', 'location': '{name}.parquet'}}) }}}}\n"
            f"select {columns} from {{{{ source('silver', '{table}') }}}}\n"
        )
    log(f"exporting the KPI inputs to {data} ...")
    run([str(etl), "--project-dir", str(work), "build"], ROOT, "exporting the inputs")
    remove(data / "warehouse", data / "_etl")


def write_projects(work, data, threads):
    """The etl and dbt projects: the same model files, each tool's own way
    of pointing a source at a Parquet file."""
    etl_dir, dbt_dir = work / "etl", work / "dbt"
    remove(etl_dir, dbt_dir)
    for project in (etl_dir, dbt_dir):
        (project / "models").mkdir(parents=True)
        for name in MODELS:
            (project / "models" / f"{name}.sql").write_text("{{ config(materialized='table') }}\n" + sql_of(name))
    (etl_dir / "project.yaml").write_text("name: kpi\ntargets:\n  dev:\n    lake: ./lake\n")
    (etl_dir / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: shop\n    tables:\n"
        + "".join(f"      - name: {n}\n        format: parquet\n        location: {data / n}.parquet\n" for n in INPUTS)
    )
    (dbt_dir / "dbt_project.yml").write_text(
        "name: kpi\nversion: '1.0'\nprofile: kpi\nconfig-version: 2\nmodel-paths: [models]\n"
    )
    (dbt_dir / "profiles.yml").write_text(
        f"kpi:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {dbt_dir / 'kpi.duckdb'}\n"
        f"      threads: {threads}\n"
    )
    (dbt_dir / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: shop\n    tables:\n"
        + "".join(
            f"      - name: {n}\n        meta:\n          external_location: \"read_parquet('{data / n}.parquet')\"\n"
            for n in INPUTS
        )
    )
    return etl_dir, dbt_dir


DUCKDB_SCRIPT = """
import duckdb, json, sys, time
spec = json.loads(sys.argv[1])
con = duckdb.connect()
con.execute("set enable_progress_bar = false")
con.execute(f"set threads = {spec['threads']}")
if spec.get("memory_limit"):
    con.execute(f"set memory_limit = '{spec['memory_limit']}'")
for name, path in spec["inputs"].items():
    con.execute(f"create view {name} as select * from read_parquet('{path}')")
times = []
for _ in range(spec["repeat"]):
    start = time.perf_counter()
    for name, sql in spec["models"].items():
        con.execute(f"create or replace table {name} as {sql}")
    times.append(time.perf_counter() - start)
checks = {name: [str(v) for v in con.execute(f"select {check} from {name}").fetchone()]
          for name, check in spec["checks"].items()}
print(json.dumps({"seconds": times, "checks": checks}))
"""


def duckdb_alone(python, data, threads, repeat, memory_limit=None):
    """DuckDB's engine-only times: the two CREATE TABLE AS statements,
    timed inside one process."""
    models = {name: sql_of(name).replace("{{ source('shop', 'orders') }}", "orders").replace(
        "{{ source('shop', 'order_items') }}", "order_items") for name in MODELS}
    spec = {
        "threads": threads,
        "memory_limit": memory_limit,
        "inputs": {n: str(data / f"{n}.parquet") for n in INPUTS},
        "repeat": repeat,
        "models": models,
        "checks": CHECKS,
    }
    out = subprocess.run([str(python), "-c", DUCKDB_SCRIPT, json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: DuckDB failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def checks_of_etl(python, etl_dir):
    """The check figures of etl's tables, read by DuckDB from the Parquet
    files of their single Delta version."""
    code = (
        "import duckdb, json, sys\n"
        "spec = json.loads(sys.argv[1])\n"
        "con = duckdb.connect()\n"
        "print(json.dumps({n: [str(v) for v in con.execute(f\"select {c} from read_parquet('{spec['dir']}/{n}/*.parquet')\").fetchone()]"
        " for n, c in spec['checks'].items()}))\n"
    )
    tables = etl_dir / "lake" / "warehouse" / "main"
    spec = {"dir": str(tables), "checks": CHECKS}
    out = subprocess.run([str(python), "-c", code, json.dumps(spec)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def checks_of_dbt(python, dbt_dir):
    code = (
        "import duckdb, json, sys\n"
        "spec = json.loads(sys.argv[1])\n"
        "con = duckdb.connect(spec['db'], read_only=True)\n"
        "print(json.dumps({n: [str(v) for v in con.execute(f'select {c} from main.{n}').fetchone()]"
        " for n, c in spec['checks'].items()}))\n"
    )
    spec = {"db": str(dbt_dir / "kpi.duckdb"), "checks": CHECKS}
    out = subprocess.run([str(python), "-c", code, json.dumps(spec)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def scaled_inputs(python, data, scaled, k):
    """The inputs k times over: copy i shifts order and customer ids past
    the originals, so that there are k times the orders and customers."""
    if all((scaled / f"{n}.parquet").is_file() for n in INPUTS):
        return
    scaled.mkdir(parents=True, exist_ok=True)
    code = (
        "import duckdb, sys\n"
        "data, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "con = duckdb.connect()\n"
        "shift = 'select max(order_id) + 1 from read_parquet(\\'' + data + '/orders.parquet\\')'\n"
        "ids = con.execute(shift).fetchone()[0]\n"
        "cust = con.execute('select max(customer_id) + 1 from read_parquet(\\'' + data + '/orders.parquet\\')').fetchone()[0]\n"
        "con.execute(f\"copy (select order_id + c * {ids} as order_id, customer_id + c * {cust} as customer_id, order_date, status, total_amount"
        " from read_parquet('{data}/orders.parquet'), range({k}) r(c)) to '{out}/orders.parquet' (format parquet)\")\n"
        "con.execute(f\"copy (select order_id + c * {ids} as order_id, product_id, quantity, unit_price"
        " from read_parquet('{data}/order_items.parquet'), range({k}) r(c)) to '{out}/order_items.parquet' (format parquet)\")\n"
    )
    log(f"writing the inputs {k} times over to {scaled} ...")
    subprocess.run([str(python), "-c", code, str(data), str(scaled), str(k)], check=True)


def median(samples):
    return round(statistics.median(s["seconds"] for s in samples), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5_000_000, help="orders of the reference lake (default 5M)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool (median; default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--scale", type=int, default=8, help="the memory run's data, times the inputs (0: skip)")
    parser.add_argument("--memory-limit", default="1GiB", help="the memory run's --memory-limit (default 1GiB)")
    parser.add_argument("--no-dbt", action="store_true", help="leave out dbt-duckdb")
    parser.add_argument("--dbt", help="a dbt executable to use instead of bench/.venv's")
    parser.add_argument("--json", type=Path, help="where to write the samples")
    args = parser.parse_args()
    if args.repeat < 3:
        log("note: fewer than 3 runs: the figures are not medians of 3")

    etl = etl_binary()
    dbt = dbt_binary(args.dbt)  # its venv's Python has DuckDB, for the floor
    python = dbt.parent / "python"
    work = BENCH / "projects" / f"kpi-{args.orders}"
    data = work / "data"
    if not all((data / f"{n}.parquet").is_file() for n in INPUTS):
        export_inputs(reference_lake(args.orders, etl, args.threads), data, etl)
    etl_dir, dbt_dir = write_projects(work, data, args.threads)
    env = dict(os.environ, DO_NOT_TRACK="1", DBT_SEND_ANONYMOUS_USAGE_STATS="false")

    etl_build = [str(etl), "--project-dir", str(etl_dir), "--threads", str(args.threads), "build"]
    dbt_run = [str(dbt), "run", "--project-dir", str(dbt_dir), "--profiles-dir", str(dbt_dir)]
    samples = {"etl": [], "dbt-duckdb": []}
    for rep in range(args.repeat):
        remove(etl_dir / "lake", etl_dir / "target")
        samples["etl"].append(run(etl_build, ROOT, "etl build"))
        log(f"etl build ({rep + 1}/{args.repeat}): {samples['etl'][-1]['seconds']:.2f} s")
        if not args.no_dbt:
            remove(dbt_dir / "kpi.duckdb", dbt_dir / "kpi.duckdb.wal", dbt_dir / "target", dbt_dir / "logs")
            samples["dbt-duckdb"].append(run(dbt_run, dbt_dir, "dbt run", env))
            log(f"dbt run ({rep + 1}/{args.repeat}): {samples['dbt-duckdb'][-1]['seconds']:.2f} s")
    duck = duckdb_alone(python, data, args.threads, args.repeat)
    duck_median = round(statistics.median(duck["seconds"]), 3)
    log(f"DuckDB alone: {', '.join(f'{s:.2f}' for s in duck['seconds'])} s")

    # The three must have computed the same thing.
    agree = {"etl": checks_of_etl(python, etl_dir)}
    if not args.no_dbt:
        agree["dbt-duckdb"] = checks_of_dbt(python, dbt_dir)
    for tool, checks in agree.items():
        if checks != duck["checks"]:
            sys.exit(f"error: {tool}'s KPIs differ from DuckDB's:\n  {tool}: {checks}\n  DuckDB: {duck['checks']}")

    etl_median = median(samples["etl"])
    rows = [("etl build (whole process)", etl_median, max(s["rss_mib"] for s in samples["etl"]))]
    if not args.no_dbt:
        rows.append(("dbt run, dbt-duckdb (whole process)", median(samples["dbt-duckdb"]),
                     max(s["rss_mib"] for s in samples["dbt-duckdb"])))
    rows.append(("DuckDB alone (engine only)", duck_median, None))
    print(f"\nKPI pair on {args.orders:,} orders, {args.threads} threads; medians of {args.repeat}\n")
    print("| run | seconds | peak RSS MiB | etl / this |")
    print("|---|---:|---:|---:|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.2f} | {'' if rss is None else f'{rss:.0f}'} | {etl_median / seconds:.2f} |")
    ratio = etl_median / duck_median
    print(f"\netl / DuckDB = {ratio:.2f} (goal <= 1.2: {'met' if ratio <= 1.2 else 'missed'}); "
          f"goal: faster than dbt Fusion's 2.25 s measured on this machine: {'met' if etl_median < 2.25 else 'missed'}")

    memory = None
    if args.scale:
        scaled = work / f"data-x{args.scale}"
        scaled_inputs(python, data, scaled, args.scale)
        big_dir, _ = write_projects(work / f"x{args.scale}", scaled, args.threads)
        big = [str(etl), "--project-dir", str(big_dir), "--threads", str(args.threads),
               "--memory-limit", args.memory_limit, "build"]
        runs = []
        for rep in range(args.repeat):
            remove(big_dir / "lake", big_dir / "target")
            log(f"etl build --memory-limit {args.memory_limit} on {args.scale}x the data ({rep + 1}/{args.repeat}) ...")
            seconds, rss, code, tail = measure(big, ROOT, dict(os.environ))
            runs.append({"seconds": round(seconds, 3), "rss_mib": round(rss, 1), "exit": code})
            if code != 0:
                print(tail)
                break
        duck_big = duckdb_alone(python, scaled, args.threads, 1, memory_limit=args.memory_limit.replace("i", ""))
        finished = all(r["exit"] == 0 for r in runs)
        if finished and checks_of_etl(python, big_dir) != duck_big["checks"]:
            sys.exit(f"error: etl's KPIs on {args.scale}x the data differ from DuckDB's")
        seconds = statistics.median(r["seconds"] for r in runs)
        rss = max(r["rss_mib"] for r in runs)
        memory = {"runs": runs, "seconds": round(seconds, 3), "rss_mib": rss,
                  "exit": max(r["exit"] for r in runs), "duckdb_seconds": round(duck_big["seconds"][0], 3),
                  "checks": duck_big["checks"]}
        ok = finished and rss <= 1536
        print(f"\n{args.scale}x the data under --memory-limit {args.memory_limit}: "
              f"{'finished' if finished else 'failed'}, median {seconds:.1f} s of {len(runs)}, "
              f"peak RSS {rss:.0f} MiB (goal <= 1536 MiB and finishing: {'met' if ok else 'missed'}); "
              f"results {'agree with DuckDB' if finished else 'not checked'}; "
              f"DuckDB alone, memory_limit {args.memory_limit}: {duck_big['seconds'][0]:.1f} s")

    out = args.json or BENCH / "results" / f"kpi-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "etl_version": subprocess.run([str(etl), "--version"], capture_output=True, text=True).stdout.strip(),
        "dbt": dbt_versions(dbt),
        "orders": args.orders,
        "threads": args.threads,
        "etl": samples["etl"],
        "dbt_duckdb": samples["dbt-duckdb"],
        "duckdb_engine_seconds": duck["seconds"],
        "checks": duck["checks"],
        "ratio_etl_duckdb": round(ratio, 3),
        "memory": memory,
    }, indent=2) + "\n")
    log(f"samples written to {out}")


if __name__ == "__main__":
    main()
