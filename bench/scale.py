#!/usr/bin/env python3
"""Scale harness: time etl and dbt-core (with dbt-duckdb) on the same
generated projects of N models.

For each N, `gen_project.py` writes a project under bench/projects/n<N>/,
then each command runs --repeat times (3 by default) for each tool, the two
tools taking turns so that a slower or busier moment of the machine falls on
both:

    ls       `etl ls`       vs `dbt ls`       (target/ removed first)
    compile  `etl compile`  vs `dbt compile`  (target/ removed first: cold,
                                               so no dbt partial parsing)
    run      `etl run`      vs `dbt run`      (target/ and the lake or the
                                               DuckDB file removed first)

Each figure is the median wall-clock time of the repetitions; the peak RSS
is the largest of the repetitions', read from wait4() for the process itself.
The markdown table goes to stdout, progress to stderr, and every sample to
bench/results/scale-<date>.json.

dbt is installed on first use into bench/.venv (`dbt-core<1.12` and
dbt-duckdb, from PyPI), unless --dbt names a dbt executable or --no-dbt is
given. The etl binary is $ETL_BIN, else ${CARGO_TARGET_DIR:-target}/release/etl
(relative paths from the repository root).

    cargo build --release
    python3 bench/scale.py                               # N = 100, 1000, 5000
    python3 bench/scale.py --sizes 100 1000 5000 10000 --dbt-max-run 1000
    python3 bench/scale.py --sizes 1000 --commands ls compile --no-dbt
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import gen_project  # noqa: E402

COMMANDS = ("ls", "compile", "run")
DBT_REQUIREMENTS = ["dbt-core<1.12", "dbt-duckdb"]

# Issue 8's goals for etl, in seconds: (command, N) -> limit.
GOALS = {
    ("compile", 1000): 0.5,
    ("compile", 5000): 2.0,
    ("ls", 5000): 0.3,
    ("run", 1000): 5.0,
}


def log(message):
    print(message, file=sys.stderr, flush=True)


def release_binary(name, variable, build="cargo build --release"):
    """$<variable>, else ${CARGO_TARGET_DIR:-target}/release/<name>."""
    explicit = os.environ.get(variable)
    path = Path(explicit) if explicit else Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "release" / name
    if not path.is_absolute():
        path = ROOT / path
    if not path.is_file():
        sys.exit(f"error: no {name} binary at `{path}`\nhelp: run `{build}`, or set {variable}")
    return path


def etl_binary():
    return release_binary("etl", "ETL_BIN")


def dbt_binary(explicit):
    """The dbt executable: --dbt, else bench/.venv's, installed if missing."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            sys.exit(f"error: no dbt executable at `{path}`")
        return path
    venv = BENCH / ".venv"
    dbt = venv / "bin" / "dbt"
    if dbt.is_file():
        return dbt
    log(f"installing {' and '.join(DBT_REQUIREMENTS)} into {venv}")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *DBT_REQUIREMENTS],
            check=True,
        )
    except subprocess.CalledProcessError as e:
        sys.exit(f"error: installing dbt into `{venv}` failed: `{' '.join(e.cmd)}` exited {e.returncode}\nhelp: pass `--dbt PATH` or `--no-dbt`")
    return dbt


def dbt_versions(dbt):
    """dbt-core's and dbt-duckdb's versions, read from the venv's metadata
    (`dbt --version` would ask PyPI for the latest)."""
    python = dbt.parent / "python"
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in ('dbt-core', 'dbt-duckdb', 'duckdb')}))"
    )
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        return {}


def machine():
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }


def remove(*paths):
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def clean(tool, command, project):
    """Put the project back in the state each measurement starts from."""
    remove(project / "target")
    if tool == "dbt":
        remove(project / "logs")
    if command == "run":
        if tool == "etl":
            remove(project / "lake")
        else:
            remove(project / "bench.duckdb", project / "bench.duckdb.wal")


def argv(tool, command, binary, project, threads):
    if tool == "etl":
        args = [str(binary), "--project-dir", str(project)]
        if command == "run":
            args += ["--threads", str(threads)]
        return args + [command]
    args = [str(binary), command, "--project-dir", str(project), "--profiles-dir", str(project)]
    if command == "run":
        args += ["--threads", str(threads)]
    return args


def measure(args, cwd, env):
    """Run once: wall-clock seconds, peak RSS in MiB, exit code, and the end
    of the output (kept for failures)."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        tail = output.read()[-4000:].decode(errors="replace")
    # ru_maxrss is in KiB on Linux.
    return seconds, usage.ru_maxrss / 1024, proc.returncode, tail


def bench_size(n, args, etl, dbt, env):
    project = args.work_dir / f"n{n}"
    layers, edges = gen_project.generate(project, n, seed=args.seed, with_tests=args.with_tests)
    log(f"N={n}: {layers} folders, {edges} refs, in {project}")
    rows = []
    for command in args.commands:
        tools = {"etl": etl}
        if dbt and not (command == "run" and args.dbt_max_run is not None and n > args.dbt_max_run):
            tools["dbt"] = dbt
        if command == "run" and args.etl_max_run is not None and n > args.etl_max_run:
            tools.pop("etl")
        if not tools:
            continue
        samples = {tool: [] for tool in tools}
        for rep in range(args.repeat):
            for tool, binary in tools.items():
                clean(tool, command, project)
                cmd = argv(tool, command, binary, project, args.threads)
                seconds, rss, code, tail = measure(cmd, project, env)
                sample = {"seconds": round(seconds, 4), "peak_rss_mib": round(rss, 1), "exit_code": code}
                if code != 0:
                    sample["output_tail"] = tail
                samples[tool].append(sample)
                status = "" if code == 0 else f"  exit {code}"
                log(f"  N={n} {tool} {command} #{rep + 1}: {seconds:.3f} s, {rss:.0f} MiB{status}")
        row = {"n": n, "command": command}
        for tool, runs in samples.items():
            row[tool] = {
                "argv": argv(tool, command, tools[tool], project, args.threads),
                "median_s": round(statistics.median(s["seconds"] for s in runs), 4),
                "peak_rss_mib": max(s["peak_rss_mib"] for s in runs),
                "ok": all(s["exit_code"] == 0 for s in runs),
                "samples": runs,
            }
        rows.append(row)
    return rows


def seconds_cell(result):
    if result is None:
        return "-"
    cell = f"{result['median_s']:.3f}"
    if not result["ok"]:
        codes = sorted({s["exit_code"] for s in result["samples"] if s["exit_code"] != 0})
        cell += f" (failed: exit {', '.join(map(str, codes))})"
    return cell


def goal_cell(row):
    limit = GOALS.get((row["command"], row["n"]))
    etl = row.get("etl")
    if limit is None or etl is None:
        return ""
    verdict = "met" if etl["ok"] and etl["median_s"] <= limit else "missed"
    return f"≤ {limit:g} s: {verdict}"


def table(rows):
    lines = [
        "| N | command | etl median s | dbt median s | dbt/etl | etl peak RSS MiB | dbt peak RSS MiB | etl goal |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        etl, dbt = row.get("etl"), row.get("dbt")
        ratio = ""
        if etl and dbt and etl["ok"] and dbt["ok"] and etl["median_s"] > 0:
            ratio = f"{dbt['median_s'] / etl['median_s']:.1f}×"
        rss = lambda r: f"{r['peak_rss_mib']:.0f}" if r else "-"  # noqa: E731
        lines.append(
            f"| {row['n']:,} | {row['command']} | {seconds_cell(etl)} | {seconds_cell(dbt)} | {ratio} "
            f"| {rss(etl)} | {rss(dbt)} | {goal_cell(row)} |"
        )
    return "\n".join(lines)


def failures(rows):
    """One line per failed measurement: its first error line."""
    lines = []
    for row in rows:
        for tool in ("etl", "dbt"):
            result = row.get(tool)
            if not result or result["ok"]:
                continue
            tail = next(s["output_tail"] for s in result["samples"] if s["exit_code"] != 0)
            first = next((l.strip() for l in tail.splitlines() if "error" in l.lower()), tail.strip()[-200:])
            lines.append(f"- `{tool} {row['command']}` failed at N={row['n']:,}: {first}")
    return "\n".join(lines)


def results_path(explicit, kind="scale"):
    """bench/results/<kind>-<date>[-n].json, the first free one."""
    if explicit:
        return Path(explicit)
    directory = BENCH / "results"
    stem = f"{kind}-{datetime.date.today().isoformat()}"
    path, k = directory / f"{stem}.json", 2
    while path.exists():
        path, k = directory / f"{stem}-{k}.json", k + 1
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000], help="model counts (default 100 1000 5000)")
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS), help="commands to time (default all)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command and tool, at least 3 (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="threads of `run`, for both tools (default 2)")
    parser.add_argument("--no-dbt", action="store_true", help="time etl only")
    parser.add_argument("--dbt", help="a dbt executable to use instead of bench/.venv's")
    parser.add_argument("--dbt-max-run", type=int, default=1000, help="largest N for `dbt run` (default 1000)")
    parser.add_argument("--etl-max-run", type=int, help="largest N for `etl run` (default: no limit)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated projects (default 42)")
    parser.add_argument("--with-tests", action="store_true", help="generate a not_null data test per model")
    parser.add_argument("--work-dir", type=Path, default=BENCH / "projects", help="where projects are generated (default bench/projects)")
    parser.add_argument("--json", help="results file (default bench/results/scale-<date>.json)")
    args = parser.parse_args()
    if args.repeat < 3:
        parser.error("--repeat must be at least 3: every figure is a median of three runs or more")
    args.work_dir = args.work_dir.resolve()

    etl = etl_binary()
    etl_version = subprocess.run([str(etl), "--version"], capture_output=True, text=True).stdout.strip()
    dbt = None if args.no_dbt else dbt_binary(args.dbt)
    env = dict(os.environ, DO_NOT_TRACK="1", DBT_SEND_ANONYMOUS_USAGE_STATS="false")

    rows = []
    for n in args.sizes:
        rows.extend(bench_size(n, args, etl, dbt, env))

    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "etl": {"binary": str(etl), "version": etl_version},
        "dbt": {"binary": str(dbt), **dbt_versions(dbt)} if dbt else None,
        "settings": {
            "sizes": args.sizes,
            "commands": args.commands,
            "repeat": args.repeat,
            "threads": args.threads,
            "dbt_max_run": args.dbt_max_run,
            "etl_max_run": args.etl_max_run,
            "seed": args.seed,
            "with_tests": args.with_tests,
        },
        "goals": [{"command": c, "n": n, "max_s": s} for (c, n), s in GOALS.items()],
        "results": rows,
    }
    path = results_path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    failed = failures(rows)
    if failed:
        print("\nFailures (full output in the JSON file):\n" + failed)
    log(f"wrote {path}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
