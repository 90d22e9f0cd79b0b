#!/usr/bin/env python3
"""Incremental benchmark (issue 4): the reference project on a generated
lake of 90 days and at least 5M orders.

    1. full build from a clean lake (`etl build`), --full-repeat times;
    2. lakegen appends one day, then an incremental `etl build`; repeated
       --repeat times, a new day each time;
    3. a build with nothing new, --repeat times;
    4. the same no-op build on the reference project's own sample lake.

It prints each figure (median of the repetitions, peak RSS), the ratio
incremental / full, and the goals: incremental at most 5% of full, no-op at
most 0.3 s. Samples go to bench/results/incremental-<date>.json.

    cargo build --release --workspace
    python3 bench/incremental.py                      # 5M orders, 90 days
    python3 bench/incremental.py --orders 200000      # a quick look
    python3 bench/incremental.py --orders 10000000 --memory-limit 8GiB

The lake is written under bench/projects/incremental-<orders>/ (about 250
bytes per order) and kept, so a second run skips generating it; --fresh
starts over. The binaries are $ETL_BIN and $LAKEGEN_BIN, else
${CARGO_TARGET_DIR:-target}/release/{etl,lakegen}.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.dont_write_bytecode = True
from scale import etl_binary, log, machine, measure, release_binary  # noqa: E402

PROJECT_FILES = ["project.yaml", "models", "macros", "quality", "seeds"]


def copy_project(to):
    """The reference project's files (not its lake) into `to`."""
    for item in PROJECT_FILES:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, to / item, dirs_exist_ok=True)
        else:
            to.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, to / item)


def run(args, cwd, what):
    seconds, rss, code, tail = measure(args, cwd, dict(os.environ))
    if code != 0:
        sys.exit(f"error: {what} failed (exit {code}):\n{tail}")
    return {"seconds": round(seconds, 3), "rss_mib": round(rss, 1)}


def summary(samples):
    return {
        "median_s": round(statistics.median(s["seconds"] for s in samples), 3),
        "peak_rss_mib": max(s["rss_mib"] for s in samples),
        "samples": samples,
    }


def slowest_nodes(project, n=12):
    """Where a build's time went: its slowest nodes, from run_results.json."""
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    results.sort(key=lambda r: r["execution_time"], reverse=True)
    return [{"node": r["unique_id"], "seconds": round(r["execution_time"], 3)} for r in results[:n]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5_000_000, help="orders over the first --days days")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3, help="incremental and no-op runs (median)")
    parser.add_argument("--full-repeat", type=int, default=3,
                        help="full builds, each from a clean lake (median; 1 saves time on big lakes)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--fresh", action="store_true", help="generate the lake again")
    parser.add_argument("--memory-limit", help="etl's --memory-limit for every build (10M orders need one on 24 GiB)")
    parser.add_argument("--json", type=Path, help="where to write the samples")
    args = parser.parse_args()
    if min(args.repeat, args.full_repeat) < 3:
        log("note: fewer than 3 runs: the figures are not medians of 3")

    etl = etl_binary()
    lakegen = release_binary("lakegen", "LAKEGEN_BIN", "cargo build --release --workspace")
    work = BENCH / "projects" / f"incremental-{args.orders}"
    pristine = work / "bronze-pristine"
    if args.fresh and work.exists():
        shutil.rmtree(work)
    if not pristine.exists():
        log(f"generating {args.orders:,} orders over {args.days} days into {pristine} ...")
        gen = run(
            [str(lakegen), "--out", str(pristine), "--orders", str(args.orders), "--days", str(args.days)],
            ROOT,
            "lakegen",
        )
        log(f"  generated in {gen['seconds']:.1f} s")
    project = work / "project"
    etl_build = [str(etl), "--project-dir", str(project), "--threads", str(args.threads)]
    if args.memory_limit:
        etl_build += ["--memory-limit", args.memory_limit]
    etl_build.append("build")

    # Each full build starts from a clean lake; the last one's lake takes
    # the new days.
    fulls = []
    for i in range(args.full_repeat):
        if project.exists():
            shutil.rmtree(project)
        project.mkdir(parents=True)
        copy_project(project)
        shutil.copytree(pristine, project / "lake" / "bronze")
        fulls.append(run(etl_build, ROOT, "the full build"))
        log(f"full build ({i + 1}/{args.full_repeat}): {fulls[-1]['seconds']:.2f} s, {fulls[-1]['rss_mib']:.0f} MiB")
    full = {"seconds": round(statistics.median(f["seconds"] for f in fulls), 3),
            "rss_mib": max(f["rss_mib"] for f in fulls), "samples": fulls}

    incremental = []
    for i in range(args.repeat):
        run([str(lakegen), "--out", str(project / "lake" / "bronze"), "--append-day"], ROOT, "lakegen --append-day")
        incremental.append(run(etl_build, ROOT, "the incremental build"))
        incremental[-1]["slowest"] = slowest_nodes(project)
        log(f"incremental build +1 day ({i + 1}/{args.repeat}): {incremental[-1]['seconds']:.2f} s")

    noop = []
    for i in range(args.repeat):
        noop.append(run(etl_build, ROOT, "the no-op build"))
        log(f"no-op build ({i + 1}/{args.repeat}): {noop[-1]['seconds']:.3f} s")

    # The reference project as shipped: its sample lake, built once, then
    # built again with nothing new.
    sample = work / "sample"
    if sample.exists():
        shutil.rmtree(sample)
    sample.mkdir()
    copy_project(sample)
    shutil.copytree(ROOT / "lake" / "bronze", sample / "lake" / "bronze")
    sample_build = [str(etl), "--project-dir", str(sample), "build"]
    run(sample_build, ROOT, "the sample build")
    sample_noop = [run(sample_build, ROOT, "the sample no-op build") for _ in range(args.repeat)]

    inc, nop, snop = summary(incremental), summary(noop), summary(sample_noop)
    ratio = inc["median_s"] / full["seconds"]
    rows = [
        ("full build", f"{full['seconds']:.2f}", f"{full['rss_mib']:.0f}", ""),
        ("incremental build, +1 day", f"{inc['median_s']:.2f}", f"{inc['peak_rss_mib']:.0f}",
         f"{ratio:.1%} of full (goal <= 5%: {'met' if ratio <= 0.05 else 'missed'})"),
        ("no-op build", f"{nop['median_s']:.3f}", f"{nop['peak_rss_mib']:.0f}", ""),
        ("no-op build, reference sample lake", f"{snop['median_s']:.3f}", f"{snop['peak_rss_mib']:.0f}",
         f"goal <= 0.3 s: {'met' if snop['median_s'] <= 0.3 else 'missed'}"),
    ]
    limit = f", --memory-limit {args.memory_limit}" if args.memory_limit else ""
    print(f"\n{args.orders:,} orders over {args.days} days, {args.threads} threads{limit}; medians of {args.repeat}\n")
    print("| build | seconds | peak RSS MiB | |")
    print("|---|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nincremental / full = {ratio:.3f}")

    out = args.json or BENCH / "results" / f"incremental-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "orders": args.orders,
        "days": args.days,
        "threads": args.threads,
        "memory_limit": args.memory_limit,
        "full": full,
        "incremental": inc,
        "noop": nop,
        "sample_noop": snop,
        "ratio": round(ratio, 4),
    }, indent=2) + "\n")
    log(f"samples written to {out}")


if __name__ == "__main__":
    main()
