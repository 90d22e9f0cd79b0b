#!/usr/bin/env python3
"""etl's full build and DuckDB's (the port in this folder) of the same
bronze files, alternately, REPEAT times each: wall time, CPU time and peak
RSS side by side, in total and per table; then every table compared row
for row (compare.py), since a faster port that gives other numbers
measures nothing.

    python bench.py LAKE_BRONZE [--repeat 3] [--threads N] [--json FILE]

LAKE_BRONZE is a folder of bronze files (lakegen's --out). etl builds a copy
of the reference project beside them in WORK (default /tmp/etl-vs-duckdb),
from nothing each time (`build --full-refresh` on an empty lake), data
tests excluded (`--exclude resource_type:test`: the port runs none) but its
exports kept (the port writes none: that is etl's extra work). etl is
`$ETL_BIN` or the workspace's release build; run this with the port's
python (`install` prints it).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def timed(command, cwd=None):
    """Runs `command` under /usr/bin/time: (wall s, cpu s, peak MiB)."""
    stats = Path("/tmp/etl-vs-duckdb.time")
    full = ["/usr/bin/time", "-o", str(stats), "-f", "%e %U %S %M"] + command
    t0 = time.perf_counter()
    done = subprocess.run(full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bench.py: `{' '.join(command)}` failed ({done.returncode}):\n{done.stdout[-3000:]}")
    _, user, system, peak_kib = stats.read_text().split()[-4:]
    return wall, float(user) + float(system), int(peak_kib) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lake_bronze")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", default="/tmp/etl-vs-duckdb")
    parser.add_argument("--json")
    args = parser.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/etl-target"))
    etl = Path(os.environ.get("ETL_BIN", target / "release" / "etl"))
    if not etl.exists():
        sys.exit(f"bench.py: no etl at {etl}: cargo build --release, or set ETL_BIN")
    bronze = Path(args.lake_bronze).resolve()
    work = Path(args.work)
    project = work / "etl"
    duck_out = work / "duckdb"
    shutil.rmtree(work, ignore_errors=True)
    project.mkdir(parents=True)
    for part in ["project.yaml", "models", "macros", "seeds", "quality"]:
        source = ROOT / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / part)
    (project / "lake").mkdir()
    (project / "lake" / "bronze").symlink_to(bronze)

    runs = {"etl": [], "duckdb": []}
    per_table = {"etl": [], "duckdb": []}
    for rep in range(args.repeat):
        for engine in ("etl", "duckdb"):
            if engine == "etl":
                for gone in ["lake/warehouse", "lake/exports", "lake/_etl", "target"]:
                    shutil.rmtree(project / gone, ignore_errors=True)
                command = [str(etl), "--project-dir", str(project), "build", "--full-refresh",
                           "--exclude", "resource_type:test", "--threads", str(args.threads)]
            else:
                shutil.rmtree(duck_out, ignore_errors=True)
                command = [sys.executable, str(HERE / "run.py"), str(bronze), str(duck_out),
                           "--threads", str(args.threads), "--json", str(work / "duckdb.json")]
            wall, cpu, peak = timed(command)
            runs[engine].append({"wall": wall, "cpu": cpu, "peak_mib": peak})
            print(f"run {rep + 1} {engine:<6} wall {wall:7.2f} s  cpu {cpu:7.2f} s  peak {peak:7.0f} MiB", flush=True)
            if engine == "etl":
                results = json.loads((project / "target" / "run_results.json").read_text())["results"]
                per_table["etl"].append({r["unique_id"].split(".")[-1]: r["execution_time"] for r in results})
            else:
                per_table["duckdb"].append(json.loads((work / "duckdb.json").read_text())["files"])

    print()
    print(f"{'':<8}{'wall s (median)':>16}{'cpu s':>10}{'peak MiB':>10}")
    summary = {}
    for engine, rows in runs.items():
        summary[engine] = {k: statistics.median(r[k] for r in rows) for k in ("wall", "cpu", "peak_mib")}
        s = summary[engine]
        print(f"{engine:<8}{s['wall']:>16.2f}{s['cpu']:>10.2f}{s['peak_mib']:>10.0f}")
    print(f"etl / duckdb: time {summary['etl']['wall'] / summary['duckdb']['wall']:.2f}x, "
          f"peak RSS {summary['etl']['peak_mib'] / summary['duckdb']['peak_mib']:.2f}x")
    print()
    names = sorted(set(per_table["duckdb"][0]) | set(per_table["etl"][0]),
                   key=lambda n: -statistics.median(t.get(n, 0) for t in per_table["etl"]))
    print(f"{'table (by etl time)':<32}{'etl s':>9}{'duckdb s':>10}")
    tables = {}
    for name in names:
        e = statistics.median(t.get(name, 0.0) for t in per_table["etl"])
        d = statistics.median(t.get(name, 0.0) for t in per_table["duckdb"])
        tables[name] = {"etl": e, "duckdb": d}
        print(f"{name:<32}{e:>9.2f}{d:>10.2f}")
    compared = subprocess.run([sys.executable, str(HERE / "compare.py"), str(project / "lake"), str(duck_out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print()
    print(compared.stdout.strip().splitlines()[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"bronze": str(bronze), "threads": args.threads, "runs": runs, "median": summary,
             "tables": tables, "equal": compared.returncode == 0}, indent=1))
    sys.exit(compared.returncode)


if __name__ == "__main__":
    main()
