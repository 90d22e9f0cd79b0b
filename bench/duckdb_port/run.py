#!/usr/bin/env python3
"""Runs the DuckDB port of etl's reference pipeline.

    python run.py LAKE_BRONZE OUT_DIR [--threads N] [--memory-limit 4GB]
                  [--database FILE] [--only NN]

Runs sql/NN_*.sql in order in one DuckDB connection, reading the bronze
files under LAKE_BRONZE (the folder holding orders/, customers/, ...) and the
seeds of the project (../../seeds), then writes each table it created,
named <schema>_<table>, to OUT_DIR/<schema>/<table>.parquet (LZ4_RAW, as etl
writes). Prints the time of each SQL file and of each table's export, the
total wall and CPU time, and the peak RSS of the process.
"""
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
SQL_DIR = HERE / "sql"
SEEDS_DIR = HERE.parent.parent / "seeds"
SCHEMAS = ("reference", "silver", "gold")


def cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def sql_literal_path(path):
    return str(Path(path).resolve()).replace("'", "''")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lake_bronze", help="folder of the bronze files (…/lake/bronze)")
    parser.add_argument("out_dir", help="where the Parquet files go, as OUT_DIR/<schema>/<table>.parquet")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("DUCKDB_THREADS", os.cpu_count() or 1)))
    parser.add_argument("--memory-limit", default=os.environ.get("DUCKDB_MEMORY_LIMIT"),
                        help="DuckDB's memory_limit, e.g. 4GB (default: DuckDB's, 80%% of RAM)")
    parser.add_argument("--database", default=":memory:",
                        help="DuckDB database file (default in memory; a file lets DuckDB spill less)")
    parser.add_argument("--seeds", default=str(SEEDS_DIR), help="folder of the seed CSV files")
    parser.add_argument("--compression", default="lz4_raw", help="Parquet compression (default lz4_raw, as etl)")
    parser.add_argument("--json", help="also write the timings to this JSON file")
    args = parser.parse_args()

    bronze = Path(args.lake_bronze)
    if not bronze.is_dir():
        sys.exit(f"run.py: {bronze} is not a folder")
    out = Path(args.out_dir)

    wall0 = time.perf_counter()
    cpu0 = cpu_seconds()
    con = duckdb.connect(args.database)
    con.execute(f"set threads = {int(args.threads)}")
    if args.memory_limit:
        con.execute(f"set memory_limit = '{args.memory_limit}'")
    # Every timestamp is an instant in UTC, as etl's Timestamp(us, "UTC"):
    # naive strings are read as UTC and cast(ts as date) is the UTC day.
    con.execute("set TimeZone = 'UTC'")
    con.execute("set preserve_insertion_order = false")

    files = sorted(SQL_DIR.glob("[0-9][0-9]_*.sql"))
    timings = {}
    limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
    print(f"duckdb {duckdb.__version__}, {args.threads} threads, memory_limit {limit}, {len(files)} SQL files")
    for f in files:
        sql = (f.read_text()
               .replace("@BRONZE@", sql_literal_path(bronze))
               .replace("@SEEDS@", sql_literal_path(args.seeds)))
        t0 = time.perf_counter()
        con.execute(sql)
        timings[f.stem.split("_", 1)[1]] = time.perf_counter() - t0
        print(f"  {f.name:<40} {timings[f.stem.split('_', 1)[1]]:8.3f}s")

    tables = con.execute(
        "select table_name from duckdb_tables() where schema_name = 'main' order by table_name"
    ).fetchall()
    t_export = time.perf_counter()
    for (name,) in tables:
        schema, _, table = name.partition("_")
        if schema not in SCHEMAS or not table:
            continue
        target = out / schema / f"{table}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        con.execute(
            f"copy {name} to '{sql_literal_path(target)}' (format parquet, compression '{args.compression}')"
        )
        rows = con.execute(f"select count(*) from {name}").fetchone()[0]
        print(f"  write {schema}/{table:<33} {rows:>10,} rows {time.perf_counter() - t0:8.3f}s")
    export = time.perf_counter() - t_export
    con.close()

    wall = time.perf_counter() - wall0
    cpu = cpu_seconds() - cpu0
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Finished: wall {wall:.2f}s (of which Parquet export {export:.2f}s), "
          f"CPU {cpu:.2f}s, peak RSS {peak:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"wall": wall, "cpu": cpu, "peak_mib": peak, "export": export, "files": timings}, indent=1))


if __name__ == "__main__":
    main()
