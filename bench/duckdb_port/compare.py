#!/usr/bin/env python3
"""Compares etl's tables with the DuckDB port's, row for row.

    python compare.py ETL_LAKE OUT_DIR [--table NAME ...] [--rows 5] [--require-all]

ETL_LAKE is the lake etl built (the folder holding warehouse/, e.g.
/tmp/shop/lake); each Delta table ETL_LAKE/warehouse/<schema>/<table>/ is
read with the `deltalake` package and compared with
OUT_DIR/<schema>/<table>.parquet, which run.py wrote:

- the columns must have the same names (those whose name holds `loaded_at`,
  the build's time, are left out) and the same kind of type (integer,
  decimal, float, string, boolean, date, timestamp; width and precision
  may differ: etl's sum of a decimal(12,2) is a decimal(22,2), DuckDB's a
  decimal(38,2));
- the rows must be the same multiset: both sides are sorted and compared
  whole, order and duplicates included; values compare exactly, except
  floating-point ones, which may differ by a relative 1e-9.

Prints EQUAL or the first differing rows per table, and exits 1 on any
difference. A table of etl's that the port does not have is NOT PORTED,
a difference only with --require-all.
"""
import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

REL_TOL = 1e-9
ABS_TOL = 1e-12


def kind(t):
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp" + ("(utc)" if t.tz else "(naive)")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    return str(t)


def column_values(col):
    """A column as Python values that compare across engines: timestamps as
    microseconds since the epoch (both sides store UTC instants), dates as
    dates, decimals as Decimal, floats as float, strings as str."""
    t = col.type
    if pa.types.is_timestamp(t):
        col = col.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64())
    elif pa.types.is_string_view(t) or pa.types.is_large_string(t):
        col = col.cast(pa.string())
    return col.to_pylist()


def float_key(v):
    if v is None or math.isnan(v):
        return v if v is None else "NaN"
    return float(f"{v:.9g}")


def rows_of(table, columns):
    cols = []
    for name in columns:
        col = table.column(name)
        values = column_values(col)
        if pa.types.is_floating(col.type):
            values = [float_key(v) for v in values]
        cols.append(values)
    return list(zip(*cols)) if cols else [() for _ in range(table.num_rows)]


def sort_key(row):
    # None first, then values; a bool stays apart from the integers.
    return tuple((0, 0) if v is None else (1, str(type(v) is bool), v) for v in row)


def rows_close(a, b, float_cols):
    for i, (x, y) in enumerate(zip(a, b)):
        if x == y:
            continue
        if i in float_cols and isinstance(x, float) and isinstance(y, float):
            if math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL):
                continue
        return False
    return True


def fmt(row, columns):
    return ", ".join(f"{c}={v!r}" for c, v in zip(columns, row))


def compare(name, etl_path, duck_path, show):
    """Returns (ok, message lines)."""
    etl = DeltaTable(str(etl_path)).to_pyarrow_table()
    duck = pq.read_table(str(duck_path))
    out = []
    keep = lambda c: "loaded_at" not in c
    etl_cols = [c for c in etl.column_names if keep(c)]
    duck_cols = [c for c in duck.column_names if keep(c)]
    ok = True
    if set(etl_cols) != set(duck_cols):
        ok = False
        missing = [c for c in etl_cols if c not in duck_cols]
        extra = [c for c in duck_cols if c not in etl_cols]
        out.append(f"    columns differ: only in etl {missing}, only in duckdb {extra}")
    columns = [c for c in etl_cols if c in duck_cols]
    for c in columns:
        ke, kd = kind(etl.schema.field(c).type), kind(duck.schema.field(c).type)
        if ke != kd:
            ok = False
            out.append(f"    column {c}: etl {etl.schema.field(c).type} ({ke}), "
                       f"duckdb {duck.schema.field(c).type} ({kd})")
    if not ok:
        return False, out
    if etl.num_rows != duck.num_rows:
        out.append(f"    rows: etl {etl.num_rows:,}, duckdb {duck.num_rows:,}")
    float_cols = {i for i, c in enumerate(columns) if pa.types.is_floating(etl.schema.field(c).type)}
    e_rows, d_rows = Counter(rows_of(etl, columns)), Counter(rows_of(duck, columns))
    only_etl = sorted((e_rows - d_rows).elements(), key=sort_key)
    only_duck = sorted((d_rows - e_rows).elements(), key=sort_key)
    if only_etl or only_duck:
        # Floats within the tolerance that rounding to 9 digits split.
        if len(only_etl) == len(only_duck) and float_cols and all(
            rows_close(a, b, float_cols) for a, b in zip(only_etl, only_duck)
        ):
            only_etl = only_duck = []
    if only_etl or only_duck or etl.num_rows != duck.num_rows:
        out.append(f"    {len(only_etl):,} rows only in etl, {len(only_duck):,} only in duckdb "
                   f"(of {etl.num_rows:,} and {duck.num_rows:,})")
        for r in only_etl[:show]:
            out.append(f"      etl:    {fmt(r, columns)}")
        for r in only_duck[:show]:
            out.append(f"      duckdb: {fmt(r, columns)}")
        return False, out
    return True, [f"    {etl.num_rows:,} rows, {len(columns)} columns"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("etl_lake", help="etl's lake (the folder holding warehouse/)")
    parser.add_argument("out_dir", help="run.py's OUT_DIR")
    parser.add_argument("--table", action="append", help="compare only this table (schema/table or table); repeatable")
    parser.add_argument("--rows", type=int, default=5, help="differing rows shown per side (default 5)")
    parser.add_argument("--require-all", action="store_true", help="a table not ported is a difference too")
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

    equal, differ, missing = [], [], []
    for schema, table in tables:
        name = f"{schema}/{table}"
        duck_path = out / schema / f"{table}.parquet"
        if not duck_path.exists():
            missing.append(name)
            print(f"NOT PORTED {name}")
            continue
        try:
            ok, lines = compare(name, warehouse / schema / table, duck_path, args.rows)
        except Exception as e:  # a table that cannot be read is a difference
            ok, lines = False, [f"    error: {e}"]
        print(f"{'EQUAL' if ok else 'DIFFERENT'} {name}")
        for line in lines:
            print(line)
        (equal if ok else differ).append(name)
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
