#!/usr/bin/env python3
"""Compares etl's tables with the DuckDB port's, row for row, inside DuckDB.

    python compare.py ETL_LAKE OUT_DIR [--table NAME ...] [--rows 5] [--require-all]
                      [--memory-limit 4GB] [--threads 2] [--temp-directory DIR]

ETL_LAKE is the lake etl built (the folder holding warehouse/, e.g.
/tmp/shop/lake). For each Delta table ETL_LAKE/warehouse/<schema>/<table>/,
the `deltalake` package lists the data files of its current version (and
their partition values, which Delta keeps in its log, not in the files);
DuckDB reads them with read_parquet and compares them with
OUT_DIR/<schema>/<table>.parquet, which run.py wrote:

- the columns must have the same names (those whose name holds `loaded_at`,
  the build's time, are left out) and the same kind of type (integer,
  decimal, float, string, boolean, date, timestamp; width and precision
  may differ: etl's sum of a decimal(12,2) is a decimal(22,2), DuckDB's a
  decimal(38,2));
- the rows must be the same multiset: DuckDB groups the rows of both
  sides together and counts, for each distinct row, how many times each
  side has it (one pass over each side); the excesses are the rows of
  (etl EXCEPT ALL duckdb) and of (duckdb EXCEPT ALL etl), duplicates
  included. Values compare exactly (decimals by value, whatever their
  scale; timestamps as instants), except floating-point ones, which are
  rounded to 9 significant digits first and may then differ by a relative
  1e-9.

Nothing is loaded into Python but a few differing rows: DuckDB works
within --memory-limit and spills to --temp-directory (a fresh folder,
removed at the end, by default), so a lake of millions of orders compares
in a few GB.

Prints EQUAL or the first differing rows per table, and exits 1 on any
difference. A table of etl's that the port does not have is NOT PORTED,
a difference only with --require-all.
"""
import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

REL_TOL = 1e-9
ABS_TOL = 1e-12
# DuckDB's integer types that do not fit in a BIGINT.
WIDE_INTEGERS = {"UBIGINT", "HUGEINT", "UHUGEINT"}
INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT",
            "UTINYINT", "USMALLINT", "UINTEGER"} | WIDE_INTEGERS


def kind(duck_type):
    """The kind of a DuckDB type, as `describe` spells it: types of one
    kind compare, whatever their width or precision."""
    if duck_type == "BOOLEAN":
        return "boolean"
    if duck_type in INTEGERS:
        return "integer"
    if duck_type.startswith("DECIMAL"):
        return "decimal"
    if duck_type in ("FLOAT", "DOUBLE"):
        return "float"
    if duck_type == "VARCHAR":
        return "string"
    if duck_type == "DATE":
        return "date"
    if duck_type == "TIMESTAMP WITH TIME ZONE":
        return "timestamp(utc)"
    if duck_type.startswith("TIMESTAMP"):  # TIMESTAMP, TIMESTAMP_S, _MS, _NS
        return "timestamp(naive)"
    if duck_type == "BLOB":
        return "binary"
    return duck_type


def decimal_shape(duck_type):
    precision, scale = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duck_type).groups()
    return int(precision), int(scale)


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def literal(text):
    return "'" + text.replace("'", "''") + "'"


def normalised(column, etl_type, duck_type):
    """The SQL expression, the same on both sides, that puts a column's
    values in a form that compares across engines; None for a float column,
    which `float_key` handles."""
    c = quote(column)
    k = kind(etl_type)
    if k == "integer":
        wide = etl_type in WIDE_INTEGERS or duck_type in WIDE_INTEGERS
        return f"cast({c} as {'HUGEINT' if wide else 'BIGINT'})"
    if k == "decimal":
        (pe, se), (pd, sd) = decimal_shape(etl_type), decimal_shape(duck_type)
        scale, digits = max(se, sd), max(pe - se, pd - sd)
        if digits + scale <= 38:
            return f"cast({c} as DECIMAL({digits + scale}, {scale}))"
        # No decimal holds both: their text without trailing zeros.
        return (f"regexp_replace(regexp_replace(cast({c} as VARCHAR), "
                r"'(\.[0-9]*?)0+$', '\1'), '\.$', '')")
    if k == "float":
        return None
    if k == "timestamp(utc)":
        return f"cast({c} as TIMESTAMPTZ)"
    if k == "timestamp(naive)":
        return f"cast({c} as TIMESTAMP)"
    return c


def float_key(column):
    """A float rounded to 9 significant digits (as Python's `f"{v:.9g}"`),
    so that the last bits of two engines' arithmetic do not split a row."""
    return f"cast(printf('%.9g', cast({quote(column)} as DOUBLE)) as DOUBLE)"


def etl_relation(con, table_path, alias):
    """A SELECT over the current version of the Delta table at
    `table_path`: its data files read by read_parquet, with the partition
    values of each file, taken from the log, joined by file name."""
    dt = DeltaTable(str(table_path))
    protocol = dt.protocol()
    unsupported = set(protocol.reader_features or []) - {"timestampNtz"}
    if unsupported:
        raise ValueError(f"reader features not supported here: {sorted(unsupported)}")
    if dt.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
        raise ValueError("column mapping is not supported here (the files' column names are not the table's)")
    files = dt.file_uris()
    if not files:
        # No data file: the table's schema, with no rows.
        con.register(f"{alias}_empty", pa.schema(dt.schema().to_arrow()).empty_table())
        return f"select * from {alias}_empty"
    partitions = dt.metadata().partition_columns
    listed = "[" + ", ".join(literal(f) for f in files) + "]"
    scan = f"read_parquet({listed}, union_by_name = true, hive_partitioning = false"
    if not partitions:
        return f"select * from {scan})"
    actions = pa.table(dt.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    if len(paths) != len(files) or not all(u.endswith("/" + p) for u, p in zip(files, paths)):
        raise ValueError("file_uris() and get_add_actions() do not list the same files")
    in_files = {row[0] for row in con.execute(f"describe select * from {scan})").fetchall()}
    from_log = [p for p in partitions if p not in in_files]
    if not from_log:  # a writer that also kept them in the files
        return f"select * from {scan})"
    values = pa.table(
        {"_compare_file": files}
        | {p: actions.column(f"partition.{p}") for p in from_log}
    )
    con.register(f"{alias}_partitions", values)
    return (f"select f.* exclude (_compare_file), {', '.join(f'p.{quote(p)}' for p in from_log)} "
            f"from {scan}, filename = '_compare_file') f "
            f"join {alias}_partitions p using (_compare_file)")


def columns_of(con, relation):
    return [(name, type_) for name, type_, *_ in con.execute(f"describe {relation}").fetchall()]


def fmt(row, columns):
    return ", ".join(f"{c}={v!r}" for c, v in zip(columns, row))


def compare(con, etl_path, duck_path, show):
    """Returns (ok, message lines)."""
    con.execute(f"create or replace temp view etl_all as {etl_relation(con, etl_path, 'etl')}")
    con.execute(f"create or replace temp view duck_all as select * from read_parquet({literal(str(duck_path))})")
    keep = lambda c: "loaded_at" not in c
    etl_types = {c: t for c, t in columns_of(con, "etl_all") if keep(c)}
    duck_types = {c: t for c, t in columns_of(con, "duck_all") if keep(c)}
    out = []
    ok = True
    if set(etl_types) != set(duck_types):
        ok = False
        missing = [c for c in etl_types if c not in duck_types]
        extra = [c for c in duck_types if c not in etl_types]
        out.append(f"    columns differ: only in etl {missing}, only in duckdb {extra}")
    columns = [c for c in etl_types if c in duck_types]
    for c in columns:
        ke, kd = kind(etl_types[c]), kind(duck_types[c])
        if ke != kd:
            ok = False
            out.append(f"    column {c}: etl {etl_types[c]} ({ke}), duckdb {duck_types[c]} ({kd})")
    if not ok:
        return False, out

    n_etl = con.execute("select count(*) from etl_all").fetchone()[0]
    n_duck = con.execute("select count(*) from duck_all").fetchone()[0]
    if n_etl != n_duck:
        out.append(f"    rows: etl {n_etl:,}, duckdb {n_duck:,}")
    if not columns:
        if n_etl != n_duck:
            return False, out
        return True, [f"    {n_etl:,} rows, 0 columns"]

    floats = [c for c in columns if kind(etl_types[c]) == "float"]
    select = ", ".join(
        f"{normalised(c, etl_types[c], duck_types[c]) or float_key(c)} as {quote(c)}" for c in columns
    )
    names = ", ".join(quote(c) for c in columns)
    # Every distinct row once, with how many times each side has it: in one
    # pass over each side, the counts of (etl EXCEPT ALL duckdb) and of
    # (duckdb EXCEPT ALL etl), row by row. (The two EXCEPT ALL themselves
    # read each side twice and took 2 to 4 times as long on 10M rows.) The
    # rows whose counts differ go to the database file, on disk, however many.
    con.execute(
        f"create or replace table differing as select * from ("
        f"select {names}, count(*) filter (where _compare_side = 0) as _compare_etl, "
        f"count(*) filter (where _compare_side = 1) as _compare_duck "
        f"from (select {select}, 0 as _compare_side from etl_all "
        f"union all select {select}, 1 as _compare_side from duck_all) "
        f"group by all) where _compare_etl <> _compare_duck"
    )
    # A row as many times as one side has it more than the other.
    for view, more, less in (("only_etl", "_compare_etl", "_compare_duck"),
                             ("only_duck", "_compare_duck", "_compare_etl")):
        con.execute(f"create or replace temp view {view} as select {names} from "
                    f"(select *, unnest(range({more} - {less})) from differing where {more} > {less})")
    only_etl, only_duck = con.execute(
        "select coalesce(sum(greatest(_compare_etl - _compare_duck, 0)), 0), "
        "coalesce(sum(greatest(_compare_duck - _compare_etl, 0)), 0) from differing"
    ).fetchone()
    order = ", ".join(f"{quote(c)} nulls first" for c in columns)
    if only_etl and only_etl == only_duck and floats:
        # Floats within the tolerance that rounding to 9 digits split: the
        # two sides' differing rows, both sorted, pair up within it.
        close = " and ".join(
            f"(e.{quote(c)} is not distinct from d.{quote(c)}"
            + (f" or abs(e.{quote(c)} - d.{quote(c)}) <= greatest({REL_TOL} * "
               f"greatest(abs(e.{quote(c)}), abs(d.{quote(c)})), {ABS_TOL}))" if c in floats else ")")
            for c in columns
        )
        apart = con.execute(
            f"select count(*) from "
            f"(select *, row_number() over (order by {order}) as _compare_rn from only_etl) e "
            f"join (select *, row_number() over (order by {order}) as _compare_rn from only_duck) d "
            f"using (_compare_rn) where not ({close})"
        ).fetchone()[0]
        if apart == 0:
            only_etl = only_duck = 0
    if only_etl or only_duck or n_etl != n_duck:
        out.append(f"    {only_etl:,} rows only in etl, {only_duck:,} only in duckdb "
                   f"(of {n_etl:,} and {n_duck:,})")
        # An instant prints as text in UTC (fetching it as a datetime needs pytz).
        shown = ", ".join(
            f"cast({quote(c)} as VARCHAR)" if kind(etl_types[c]) == "timestamp(utc)" else quote(c) for c in columns
        )
        for side, table in (("etl:   ", "only_etl"), ("duckdb:", "only_duck")):
            rows = con.execute(f"select {shown} from {table} order by {order} limit {int(show)}").fetchall()
            for r in rows:
                out.append(f"      {side} {fmt(r, columns)}")
        return False, out
    return True, [f"    {n_etl:,} rows, {len(columns)} columns"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("etl_lake", help="etl's lake (the folder holding warehouse/)")
    parser.add_argument("out_dir", help="run.py's OUT_DIR")
    parser.add_argument("--table", action="append", help="compare only this table (schema/table or table); repeatable")
    parser.add_argument("--rows", type=int, default=5, help="differing rows shown per side (default 5)")
    parser.add_argument("--require-all", action="store_true", help="a table not ported is a difference too")
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB's memory_limit (default 4GB)")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB's threads (default 2)")
    parser.add_argument("--temp-directory",
                        help="where DuckDB spills and keeps the differing rows "
                             "(default a fresh folder under $TMPDIR, removed at the end)")
    args = parser.parse_args()

    lake = Path(args.etl_lake)
    warehouse = lake / "warehouse" if (lake / "warehouse").is_dir() else lake
    out = Path(args.out_dir)
    tables = sorted(
        (p.parent.parent.name, p.parent.name)
        for p in warehouse.glob("*/*/_delta_log")
    )
    if not tables:
        sys.exit(f"compare.py: no Delta table under {warehouse}/<schema>/<table>/")
    if args.table:
        wanted = set(args.table)
        tables = [t for t in tables if f"{t[0]}/{t[1]}" in wanted or t[1] in wanted]

    scratch = Path(args.temp_directory) if args.temp_directory else Path(tempfile.mkdtemp(prefix="etl-compare-"))
    scratch.mkdir(parents=True, exist_ok=True)
    database = scratch / "compare.duckdb"
    con = duckdb.connect(str(database))
    try:
        con.execute(f"set memory_limit = {literal(args.memory_limit)}")
        con.execute(f"set threads = {int(args.threads)}")
        con.execute(f"set temp_directory = {literal(str(scratch / 'spill'))}")
        # Timestamps print as UTC instants, as etl stores them.
        con.execute("set TimeZone = 'UTC'")
        con.execute("set preserve_insertion_order = false")

        equal, differ, missing = [], [], []
        for schema, table in tables:
            name = f"{schema}/{table}"
            duck_path = out / schema / f"{table}.parquet"
            if not duck_path.exists():
                missing.append(name)
                print(f"NOT PORTED {name}")
                continue
            try:
                ok, lines = compare(con, warehouse / schema / table, duck_path.resolve(), args.rows)
            except Exception as e:  # a table that cannot be read is a difference
                ok, lines = False, [f"    error: {e}"]
            print(f"{'EQUAL' if ok else 'DIFFERENT'} {name}", flush=True)
            for line in lines:
                print(line)
            (equal if ok else differ).append(name)
    finally:
        con.close()
        if args.temp_directory:
            for leftover in (database, database.with_name(database.name + ".wal"), scratch / "spill"):
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    ported = {f"{s}/{t}" for s, t in tables}
    extra = sorted(
        f"{p.parent.name}/{p.stem}" for p in out.glob("*/*.parquet")
        if f"{p.parent.name}/{p.stem}" not in ported
    )
    for name in extra if not args.table else []:
        print(f"ONLY IN DUCKDB {name}")
    print(f"\n{len(equal)} equal, {len(differ)} different, {len(missing)} not ported"
          + (f": {', '.join(differ)} differ" if differ else ""))
    sys.exit(1 if differ or (args.require_all and missing) else 0)


if __name__ == "__main__":
    main()
