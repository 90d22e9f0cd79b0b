#!/usr/bin/env python3
"""Soak harness (issue "The nightly build must never fail by chance or
ingest twice"): the reference project built night after night the ways
users build it, then compared with one full build of the same days.

A sequence is one project and its lake over several nights:

    1. the project files (project.yaml, models, macros, seeds, quality) are
       copied to <work>/seq<i>/project/, and lakegen writes a fresh bronze
       lake into its lake/bronze (--orders over --days, seed --seed + i);
    2. night 0: `etl build` from an empty lake;
    3. nights 1..--nights: lakegen --append-day, then the night's build,
       in one of these scenarios, drawn with a seeded generator:
         plain  `etl --project-dir P --threads T build`
         moved  the project is moved first, by a rename (mv) or by a copy
                that gives every file a new mtime and the removal of the old
                directory (cp -r; rm -r); the sequence goes on from there
         kill   the build is killed (SIGKILL) at a random moment, uniform in
                0.05..1.0 x the median of the plain nights so far, then run
                again; the night is the second build's
         race   two builds start at the same moment: at least one must exit
                0, and the other exit 0 or stop with `error[lake-locked]`
                (exit 2); one more build after them must exit 0
       and with a CPU hog beside it (one busy process per core) on some
       nights, or on every night of some sequences (--hog);
    4. the bronze lake is copied into <work>/seq<i>/full/ with fresh project
       files and built once from scratch; every Delta table of the
       warehouse (silver, gold, reference, ...) and every export must hold
       the same rows in both, as multisets, columns ending in `loaded_at`
       (when a build ran) aside. Rows of the full build held more times,
       and duplicates where the full build has none, are what a double
       ingestion looks like, and are named as such.

The thread count of each sequence cycles through --threads (1, 2, 4, 8).
A night fails when the build that decides it exits non-zero (races: see
above); its output, stderr and target/run_results.json are kept in
<work>/failed/seq<i>-night<k>-<scenario>/, and every error or failed test of
run_results.json is counted by node and first line of its message (its
numbers and work paths blanked; etl's own first error line when it wrote no
results, and timeouts after --timeout seconds). A sequence whose tables
differ from the full build's has "diverged".

    python3 bench/soak.py                                  # 4 sequences of 10 nights
    python3 bench/soak.py --sequences 8 --nights 20 --kill-rate 0.3
    python3 bench/soak.py --sequences 1 --nights 3 --orders 5000 --days 5   # a quick look
    python3 bench/soak.py --s3                             # 1 sequence of 30 nights on S3 (moto)

With --s3 the lake is in a bucket of the moto server the tests use
(scripts/install-s3-test-server, scripts/s3_test_server.py, on a free port
of 127.0.0.1): the project's `s3` target, ETL_S3_LAKE=s3://soak-<i>/shop/,
each night's new bronze files uploaded before its build. "moved" then moves
the project directory, which still points at the same bucket. The bucket's
warehouse and exports are downloaded for the comparison with a local full
build. --nights defaults to 30 there, --sequences to 1.

Progress goes to stderr, one line per night; the summary (failed nights,
kills and how many landed mid-build, races, moves, diverged sequences,
failures by node and error) to stdout; every night to
bench/results/soak-<date>.json, written again after each sequence. Exits 1
if a night failed or a sequence diverged. Work directories of sequences
that passed are removed unless --keep; those of failed ones are kept.

The Delta tables are read with deltalake (delta-rs) and pyarrow, pinned and
installed by bench/soak-setup into ${ETL_SOAK_VENV:-~/.cache/etl-soak-venv}:
when they cannot be imported, the script runs bench/soak-setup and starts
again under that virtualenv's python. The binaries are $ETL_BIN and
$LAKEGEN_BIN, else ${CARGO_TARGET_DIR:-target}/release/{etl,lakegen}.
"""

import argparse
import atexit
import collections
import csv
import datetime
import hashlib
import hmac
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.dont_write_bytecode = True
from incremental import copy_project  # noqa: E402
from scale import etl_binary, log, machine, release_binary, results_path  # noqa: E402

SCENARIOS = ("plain", "hog", "moved", "kill", "race")
BUILD_TIME_SUFFIX = "loaded_at"
S3_KEY_ID = "etl-test-key"
S3_SECRET = "etl-test-secret-do-not-print"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ---------------------------------------------------------------------------
# Processes: every child is started in its own process group and killed with
# it when the harness ends, however it ends.

CHILDREN = []


def spawn(args, cwd=None, env=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True)
    CHILDREN.append(proc)
    return proc


def kill(proc, sig=signal.SIGKILL):
    """Sends `sig` to the process group of `proc` and reaps it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def kill_all():
    for proc in list(CHILDREN):
        kill(proc)


def on_signal(signum, _frame):
    kill_all()
    sys.exit(128 + signum)


atexit.register(kill_all)


class Hog:
    """One busy process per core (or `n`) beside a build, while in `with`."""

    def __init__(self, active, n):
        self.active, self.n, self.procs = active, n, []

    def __enter__(self):
        if self.active:
            self.procs = [spawn([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            kill(proc)
        self.procs = []


# ---------------------------------------------------------------------------
# Builds.


class Build:
    """One etl process: its output goes to <logs>/<name>.out and .err."""

    def __init__(self, argv, env, logs, name):
        self.name = name
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        self.out, self.err = open(self.out_path, "wb"), open(self.err_path, "wb")
        self.start = time.perf_counter()
        self.proc = spawn(argv, cwd=ROOT, env=env, stdout=self.out, stderr=self.err)
        self.code, self.seconds, self.timed_out, self.killed_at, self.ended = None, None, False, None, None

    def wait(self, timeout):
        try:
            self.proc.wait(timeout=max(0.0, timeout - (time.perf_counter() - self.start)))
        except subprocess.TimeoutExpired:
            self.timed_out = True
        return self.finish()

    @staticmethod
    def wait_all(builds, timeout):
        """Waits for builds running at once, each timed to its own end."""
        while any(b.ended is None for b in builds):
            for b in builds:
                if b.ended is None and b.proc.poll() is not None:
                    b.ended = time.perf_counter()
            if any(b.ended is None and time.perf_counter() - b.start > timeout for b in builds):
                break
            time.sleep(0.02)
        for b in builds:
            if b.ended is None:
                b.timed_out = True
            b.finish()

    def kill_after(self, delay, timeout):
        """SIGKILL after `delay` seconds, unless it ended first. True if the
        kill landed while it was running."""
        try:
            self.proc.wait(timeout=delay)
            self.finish()
            return False
        except subprocess.TimeoutExpired:
            self.killed_at = round(time.perf_counter() - self.start, 3)
            self.finish()
            return True

    def finish(self):
        if self.code is None and self.seconds is None:
            kill(self.proc)  # a no-op when it has exited
            self.seconds = (self.ended or time.perf_counter()) - self.start
            self.code = None if self.timed_out else self.proc.returncode
            self.out.close()
            self.err.close()
        return self

    def stderr(self):
        return ANSI.sub("", self.err_path.read_text(errors="replace"))

    def sample(self):
        s = {"name": self.name, "exit_code": self.code, "seconds": round(self.seconds, 3)}
        if self.timed_out:
            s["timed_out"] = True
        if self.killed_at is not None:
            s["killed_at_s"] = self.killed_at
        return s


def invocation_id(project):
    try:
        return json.loads((project / "target" / "run_results.json").read_text())["metadata"]["invocation_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def first_error_line(text):
    lines = [l.strip() for l in ANSI.sub("", text).splitlines() if l.strip()]
    for line in lines:
        if line.startswith("error") or "panicked at" in line:
            return line
    return lines[-1] if lines else ""


def build_failures(project, build, before):
    """(node, first line of its error) for each error or failed test of the
    run_results.json this build wrote; the process's own error when it wrote
    none (etl could not run, was killed, timed out)."""
    found = []
    if invocation_id(project) not in (None, before):
        results = json.loads((project / "target" / "run_results.json").read_text())
        for r in results.get("results", []):
            if r.get("status") in ("error", "fail"):
                message = (r.get("message") or "").strip().splitlines()
                found.append((r.get("unique_id", "?"), ANSI.sub("", message[0]) if message else ""))
    if not found:
        if build.timed_out:
            found.append(("<etl>", f"timed out after {build.seconds:.1f} s"))
        else:
            line = first_error_line(build.stderr())
            found.append(("<etl>", line or f"exit {build.code}, nothing on stderr"))
    return found


# ---------------------------------------------------------------------------
# S3: the moto server of the tests, spoken to in HTTP with the tests' keys
# (requests signed with AWS Signature V4, as any S3 client does: moto serves
# an anonymous GET of an object a 403).


def sigv4_headers(method, host, path, query, body, region="us-east-1"):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body or b"").hexdigest()
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, canonical_query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
                           signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + S3_SECRET).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={S3_KEY_ID}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    del headers["host"]
    return headers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, logs):
        out = subprocess.run(["bash", str(ROOT / "scripts" / "install-s3-test-server")], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"error: scripts/install-s3-test-server failed (it needs python3 and PyPI):\n{out.stderr}")
        python = out.stdout.strip()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(logs / "moto.log", "wb")
        self.proc = spawn([python, str(ROOT / "scripts" / "s3_test_server.py"), str(self.port)],
                          stdout=self.log, stderr=self.log)
        start = time.monotonic()
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit(f"error: the S3 test server exited ({self.proc.returncode}); see {logs / 'moto.log'}")
                if time.monotonic() - start > 30:
                    sys.exit("error: the S3 test server did not start in 30 s")
                time.sleep(0.05)

    def stop(self):
        kill(self.proc)
        self.log.close()

    def request(self, method, path, data=None, query=None):
        quoted = "/" + urllib.parse.quote(path, safe="/-_.~")
        url = self.endpoint + quoted
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote, safe="-_.~")
        headers = sigv4_headers(method, f"127.0.0.1:{self.port}", quoted, query or {}, data)
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        if data is not None:
            # Not urllib's default form type, whose body the server would
            # parse as a form and store empty.
            req.add_header("Content-Type", "application/octet-stream")
            req.add_header("Content-Length", str(len(data)))
        for attempt in range(5):
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    return resp.read()
            except (urllib.error.URLError, ConnectionError) as e:
                if isinstance(e, urllib.error.HTTPError) and e.code < 500 or attempt == 4:
                    raise RuntimeError(f"S3 {method} {path}: {e}") from e
                time.sleep(0.5 * (attempt + 1))

    def create_bucket(self, bucket):
        self.request("PUT", bucket, data=b"")

    def keys(self, bucket, prefix):
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        keys, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self.request("GET", bucket, query=query))
            keys += [c.find(f"{ns}Key").text for c in root.findall(f"{ns}Contents")]
            token_el = root.find(f"{ns}NextContinuationToken")
            if root.findtext(f"{ns}IsTruncated") != "true" or token_el is None:
                return keys
            token = token_el.text

    def upload(self, bucket, prefix, directory, done):
        """Puts the files under `directory` not in `done` (relative paths)
        at bucket/prefix/...: a file is uploaded once, as it lands."""
        count = 0
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory).as_posix()
            if path.is_file() and relative not in done:
                self.request("PUT", f"{bucket}/{prefix}/{relative}", data=path.read_bytes())
                done.add(relative)
                count += 1
        return count

    def download(self, bucket, prefix, directory):
        keys = self.keys(bucket, prefix + "/")
        for key in keys:
            path = directory / key[len(prefix) + 1:]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.request("GET", f"{bucket}/{key}"))
        return len(keys)


# ---------------------------------------------------------------------------
# Comparison of two lakes.


def norm(value):
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else float(f"{value:.12g}")
    if isinstance(value, (list, tuple)):
        return tuple(norm(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, norm(v)) for k, v in value.items()))
    return value


def plain(value):
    """A hashable form of a value read from Arrow (lists, structs, maps)."""
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, plain(v)) for k, v in value.items()))
    return value


def arrow_rows(table, columns):
    if not columns:
        return [()] * table.num_rows
    return [tuple(plain(v) for v in row) for row in zip(*(table.column(c).to_pylist() for c in columns))]


def floats_close(a, b):
    """Rows equal up to 1e-9 (relative) in their floats, the rest equal."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) and isinstance(y, float):
            if not (x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(x) and math.isnan(y))):
                return False
        elif x != y:
            return False
    return True


def tolerant_equal(rows_a, rows_b):
    """Multisets equal once floats may differ in their last bits (sums
    added in another order): rows matched on their other columns."""
    def groups(rows):
        g = collections.defaultdict(list)
        for row in rows:
            g[tuple(v if not isinstance(v, float) else None for v in row)].append(row)
        return g
    ga, gb = groups(rows_a), groups(rows_b)
    if ga.keys() != gb.keys():
        return False
    for key, a in ga.items():
        b = gb[key]
        if len(a) != len(b):
            return False
        key_fn = lambda r: tuple(-math.inf if isinstance(v, float) and math.isnan(v) else v for v in r if isinstance(v, float))  # noqa: E731
        if not all(floats_close(x, y) for x, y in zip(sorted(a, key=key_fn), sorted(b, key=key_fn))):
            return False
    return True


def show_row(columns, row):
    text = ", ".join(f"{c}={v!r}" for c, v in zip(columns, row))
    return text if len(text) <= 300 else text[:297] + "..."


def compare_rows(columns, seq_rows, full_rows, examples=3):
    a = collections.Counter(tuple(norm(v) for v in r) for r in seq_rows)
    b = collections.Counter(tuple(norm(v) for v in r) for r in full_rows)
    report = {"rows": len(seq_rows), "full_rows": len(full_rows)}
    if a == b:
        report["equal"] = True
        return report
    if tolerant_equal(seq_rows, full_rows):
        report.update(equal=True, within_float_tolerance=True)
        return report
    only_a, only_b = a - b, b - a
    dup_a = sum(n - 1 for n in a.values() if n > 1)
    dup_b = sum(n - 1 for n in b.values() if n > 1)
    report.update(
        equal=False,
        only_in_sequence=sum(only_a.values()),
        only_in_full=sum(only_b.values()),
        examples_only_in_sequence=[show_row(columns, r) for r in list(only_a)[:examples]],
        examples_only_in_full=[show_row(columns, r) for r in list(only_b)[:examples]],
    )
    # What a file ingested twice looks like: rows of the full build held
    # more times here, and duplicates where the full build has none.
    extra = sum(n for row, n in only_a.items() if row in b)
    if extra:
        report["extra_copies"] = extra
    if dup_a and not dup_b:
        report["duplicated_rows"] = dup_a
    return report


def read_delta(path):
    """(columns, [(type)...], rows) of a Delta table, build-time columns
    aside, columns in name order."""
    from deltalake import DeltaTable
    table = DeltaTable(str(path)).to_pyarrow_table()
    columns = sorted(c for c in table.column_names if not c.endswith(BUILD_TIME_SUFFIX))
    types = [str(table.schema.field(c).type) for c in columns]
    return columns, types, arrow_rows(table, columns)


NUMBER = re.compile(r"^-?\d*\.\d+(e[-+]?\d+)?$|^-?\d+e[-+]?\d+$", re.I)


def read_csv(path):
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    if not lines:
        return [], []
    header = lines[0]
    keep = [i for i, c in enumerate(header) if not c.endswith(BUILD_TIME_SUFFIX)]
    conv = lambda v: float(v) if NUMBER.match(v) else v  # noqa: E731
    return [header[i] for i in keep], [tuple(conv(row[i]) if i < len(row) else None for i in keep) for row in lines[1:]]


def lake_objects(lake):
    """Delta tables, views and exports of a lake, by name."""
    tables, views, exports = {}, {}, {}
    warehouse = lake / "warehouse"
    if warehouse.is_dir():
        for schema in sorted(p for p in warehouse.iterdir() if p.is_dir()):
            for node in sorted(p for p in schema.iterdir() if p.is_dir()):
                name = f"{schema.name}.{node.name}"
                if (node / "_delta_log").is_dir():
                    tables[name] = node
                elif (node / "_etl_view.json").is_file():
                    views[name] = node
    if (lake / "exports").is_dir():
        for path in sorted((lake / "exports").rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                exports[path.relative_to(lake / "exports").as_posix()] = path
    return tables, views, exports


def compare_lakes(seq_lake, full_lake):
    """Per table and export: equal, or how they differ."""
    seq, full = lake_objects(seq_lake), lake_objects(full_lake)
    report = {"tables": {}, "exports": {}, "missing": [], "extra": []}
    for kind, a, b in (("table", seq[0], full[0]), ("view", seq[1], full[1]), ("export", seq[2], full[2])):
        report["missing"] += [f"{kind} {n}" for n in sorted(b.keys() - a.keys())]
        report["extra"] += [f"{kind} {n}" for n in sorted(a.keys() - b.keys())]
    for name in sorted(seq[0].keys() & full[0].keys()):
        try:
            cols_a, types_a, rows_a = read_delta(seq[0][name])
            cols_b, types_b, rows_b = read_delta(full[0][name])
        except Exception as e:  # noqa: BLE001 - an unreadable table is a finding
            report["tables"][name] = {"equal": False, "error": f"cannot read: {e}"}
            continue
        if (cols_a, types_a) != (cols_b, types_b):
            report["tables"][name] = {"equal": False, "schema": list(zip(cols_a, types_a)),
                                      "full_schema": list(zip(cols_b, types_b)),
                                      "rows": len(rows_a), "full_rows": len(rows_b)}
            continue
        report["tables"][name] = compare_rows(cols_a, rows_a, rows_b)
    for name in sorted(seq[2].keys() & full[2].keys()):
        path_a, path_b = seq[2][name], full[2][name]
        if name.endswith(".csv"):
            (cols_a, rows_a), (cols_b, rows_b) = read_csv(path_a), read_csv(path_b)
            if cols_a != cols_b:
                report["exports"][name] = {"equal": False, "header": cols_a, "full_header": cols_b}
            else:
                report["exports"][name] = compare_rows(cols_a, rows_a, rows_b)
        elif name.endswith(".parquet"):
            import pyarrow.parquet as pq
            ta, tb = pq.read_table(path_a), pq.read_table(path_b)
            cols = sorted(c for c in ta.column_names if not c.endswith(BUILD_TIME_SUFFIX))
            cols_b = sorted(c for c in tb.column_names if not c.endswith(BUILD_TIME_SUFFIX))
            if cols != cols_b:
                report["exports"][name] = {"equal": False, "header": cols, "full_header": cols_b}
            else:
                report["exports"][name] = compare_rows(cols, arrow_rows(ta, cols), arrow_rows(tb, cols))
    report["equal"] = (not report["missing"] and not report["extra"]
                       and all(r["equal"] for r in report["tables"].values())
                       and all(r["equal"] for r in report["exports"].values()))
    return report


def differences(comparison, examples=True):
    """One line per difference of a comparison (and a few rows of each)."""
    lines = [f"missing (the full build has it): {m}" for m in comparison["missing"]]
    lines += [f"extra (the full build has none): {m}" for m in comparison["extra"]]
    for kind in ("tables", "exports"):
        for name, r in comparison[kind].items():
            if r["equal"]:
                continue
            if "error" in r:
                lines.append(f"{name}: {r['error']}")
                continue
            if "full_schema" in r or "full_header" in r:
                lines.append(f"{name}: columns differ: {r.get('schema') or r.get('header')} "
                             f"vs full {r.get('full_schema') or r.get('full_header')}")
                continue
            line = (f"{name}: {r['rows']} rows vs {r['full_rows']} in the full build; "
                    f"{r['only_in_sequence']} only here, {r['only_in_full']} only in the full build")
            if r.get("extra_copies"):
                line += f"; {r['extra_copies']} EXTRA COPIES of rows the full build holds"
            if r.get("duplicated_rows"):
                line += f"; DUPLICATED ROWS: {r['duplicated_rows']} (the full build has none)"
            if r.get("extra_copies") or r.get("duplicated_rows"):
                line += ": ingested twice?"
            lines.append(line)
            if examples:
                lines += [f"    only here:          {e}" for e in r["examples_only_in_sequence"]]
                lines += [f"    only in full build: {e}" for e in r["examples_only_in_full"]]
    return lines


# ---------------------------------------------------------------------------
# A sequence.


def run_tool(argv, what, timeout=1200):
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


class Sequence:
    def __init__(self, index, args, bins, s3, typical):
        self.index, self.args, self.etl, self.lakegen, self.s3 = index, args, bins[0], bins[1], s3
        self.typical = typical  # durations of plain nights so far, all sequences
        self.rng = random.Random(f"{args.seed}-{index}")
        self.threads = args.threads[index % len(args.threads)]
        self.hog_all = args.hog == "always" or (args.hog == "some" and "hog" in args.scenarios
                                                and self.rng.random() < args.hog_sequence_rate)
        self.dir = args.work_dir / f"seq{index}"
        self.project = self.dir / "project"
        self.logs = self.dir / "logs"
        self.moves = 0
        self.bucket = f"soak-{index}"
        self.uploaded = set()
        self.nights = []
        self.env = dict(os.environ, NO_COLOR="1")
        if s3:
            self.env.update(
                ETL_S3_LAKE=f"s3://{self.bucket}/shop/",
                AWS_ENDPOINT_URL=s3.endpoint,
                AWS_ACCESS_KEY_ID=S3_KEY_ID,
                AWS_SECRET_ACCESS_KEY=S3_SECRET,
                AWS_REGION="us-east-1",
                AWS_ALLOW_HTTP="true",
            )

    # -- the night's scenario

    def draw(self):
        a = self.args
        weights = {"kill": a.kill_rate, "race": a.race_rate, "moved": a.move_rate}
        r, scenario = self.rng.random(), "plain"
        for name, rate in weights.items():
            if name in a.scenarios:
                if r < rate:
                    scenario = name
                    break
                r -= rate
        hog = self.hog_all or (a.hog == "some" and "hog" in a.scenarios and self.rng.random() < a.hog_rate)
        if "plain" not in a.scenarios and scenario == "plain" and not hog:
            hog = "hog" in a.scenarios and a.hog != "never"
            if not hog:
                scenario = self.rng.choice([s for s in a.scenarios if s in weights])
        return scenario, hog

    def argv(self):
        argv = [str(self.etl), "--project-dir", str(self.project), "--threads", str(self.threads)]
        if self.s3:
            argv += ["--target", "s3"]
        return argv + ["build"]

    def land(self):
        """The new bronze files reach the lake the build reads."""
        if self.s3:
            self.s3.upload(self.bucket, "shop/bronze", self.project / "lake" / "bronze", self.uploaded)

    def move(self):
        """mv, or cp -r (new mtimes) then rm -r, alternately."""
        self.moves += 1
        new = self.dir / f"project-m{self.moves}"
        how = "mv" if self.moves % 2 else "cp -r; rm -r"
        if how == "mv":
            shutil.move(str(self.project), str(new))
        else:
            shutil.copytree(self.project, new, symlinks=True, copy_function=shutil.copy)
            shutil.rmtree(self.project)
        self.project = new
        return how

    def kill_delay(self, night0_seconds):
        base = statistics.median(self.typical) if self.typical else 0.5 * night0_seconds
        return round(self.rng.uniform(0.05, 1.0) * base, 3)

    def night(self, k, scenario, hog, night0_seconds=None):
        a = self.args
        label = scenario if not hog else ("hog" if scenario == "plain" else f"{scenario}+hog")
        record = {"seq": self.index, "night": k, "scenario": scenario, "hog": hog, "label": label,
                  "threads": self.threads, "builds": []}
        name = f"night{k}-{label}"
        if scenario == "moved":
            record["move"] = self.move()
        self.land()
        before = invocation_id(self.project)
        decisive, ok, failures = None, True, []
        with Hog(hog, a.hog_procs):
            if scenario == "kill":
                first = Build(self.argv(), self.env, self.logs, f"{name}-killed")
                delay = self.kill_delay(night0_seconds or 10)
                landed = first.kill_after(delay, a.timeout)
                record["builds"].append(first.sample())
                record.update(kill_delay_s=delay, kill_landed=landed)
                before = invocation_id(self.project)
                decisive = Build(self.argv(), self.env, self.logs, f"{name}-rerun").wait(a.timeout)
                record["builds"].append(decisive.sample())
            elif scenario == "race":
                one = Build(self.argv(), self.env, self.logs, f"{name}-a")
                two = Build(self.argv(), self.env, self.logs, f"{name}-b")
                Build.wait_all([one, two], a.timeout)
                record["builds"] += [one.sample(), two.sample()]
                winner, other = (one, two) if one.code == 0 or two.code != 0 else (two, one)
                locked = other.code == 2 and "lake-locked" in other.stderr()
                record["race"] = {"codes": [one.code, two.code], "locked_out": locked}
                if winner.code != 0 or not (other.code == 0 or locked):
                    ok = False
                    decisive = other if winner.code == 0 else winner
                    for b in (one, two):
                        if b.code != 0 and not (b.code == 2 and "lake-locked" in b.stderr()):
                            failures += build_failures(self.project, b, before)
                if ok:
                    # Nothing is left to do: this build must pass, and
                    # (said in the record) find everything up to date.
                    before = invocation_id(self.project)
                    after = Build(self.argv(), self.env, self.logs, f"{name}-after").wait(a.timeout)
                    record["builds"].append(after.sample())
                    record["race"]["after_not_up_to_date"] = self.not_up_to_date(before)
                    decisive = after
            else:
                decisive = Build(self.argv(), self.env, self.logs, name).wait(a.timeout)
                record["builds"].append(decisive.sample())
        if ok and decisive.code != 0:
            ok = False
            failures += build_failures(self.project, decisive, before)
        # Two racing builds share target/: each may name the other's errors.
        failures = list(dict.fromkeys(failures))
        record.update(exit_code=decisive.code, seconds=round(decisive.seconds, 3), ok=ok,
                      failures=[list(f) for f in failures])
        if ok and label == "plain" and k > 0:
            self.typical.append(decisive.seconds)
        if not ok:
            record["failed_dir"] = str(self.keep_failure(record, name))
        self.nights.append(record)
        extra = ""
        if scenario == "kill":
            extra = f"  (killed at {record['kill_delay_s']:.2f} s, {'mid-build' if record['kill_landed'] else 'after it ended'})"
        elif scenario == "race":
            extra = f"  (exits {record['race']['codes']}{', one locked out' if record['race']['locked_out'] else ''})"
        elif scenario == "moved":
            extra = f"  ({record['move']})"
        log(f"seq {self.index} night {k:>2}  {label:<11} t={self.threads}  {record['seconds']:7.2f} s  "
            f"exit {'timeout' if decisive.timed_out else decisive.code}  {'ok' if ok else 'FAILED'}{extra}")
        for node, message in failures:
            log(f"      {node}: {message}")
        return record

    def not_up_to_date(self, before):
        if invocation_id(self.project) in (None, before):
            return None
        results = json.loads((self.project / "target" / "run_results.json").read_text())["results"]
        return sum(1 for r in results if not r.get("etl_up_to_date") and r.get("status") == "success")

    def keep_failure(self, record, name):
        where = self.args.work_dir / "failed" / f"seq{self.index}-{name}"
        where.mkdir(parents=True, exist_ok=True)
        for path in self.logs.glob(f"{name}*"):
            shutil.copy(path, where / path.name)
        results = self.project / "target" / "run_results.json"
        if results.is_file():
            shutil.copy(results, where / "run_results.json")
        (where / "night.json").write_text(json.dumps(record, indent=2) + "\n")
        return where

    # -- the whole sequence

    def run(self):
        a = self.args
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.project.mkdir(parents=True)
        self.logs.mkdir()
        copy_project(self.project)
        bronze = self.project / "lake" / "bronze"
        run_tool([str(self.lakegen), "--out", str(bronze), "--orders", str(a.orders), "--days", str(a.days),
                  "--seed", str(a.seed + self.index)], "lakegen")
        if self.s3:
            self.s3.create_bucket(self.bucket)
        log(f"seq {self.index}: {a.orders:,} orders over {a.days} days, --threads {self.threads}"
            f"{', hog on every night' if self.hog_all else ''}{', lake in s3://' + self.bucket + '/shop/' if self.s3 else ''}"
            f", in {self.dir}")
        first = self.night(0, "plain", self.hog_all)
        first["scenario"] = "initial"
        for k in range(1, a.nights + 1):
            run_tool([str(self.lakegen), "--out", str(self.project / "lake" / "bronze"), "--append-day"],
                     "lakegen --append-day")
            scenario, hog = self.draw()
            self.night(k, scenario, hog, first["seconds"])
        result = {"index": self.index, "threads": self.threads, "hog_every_night": self.hog_all,
                  "s3": bool(self.s3), "dir": str(self.dir), "nights": self.nights}
        result.update(self.compare())
        return result

    def compare(self):
        """One full build of the same bronze, then every table compared."""
        full = self.dir / "full"
        copy_project(full)
        shutil.copytree(self.project / "lake" / "bronze", full / "lake" / "bronze")
        env = dict(os.environ, NO_COLOR="1")
        before = invocation_id(full)
        build = Build([str(self.etl), "--project-dir", str(full), "build"], env, self.logs, "full").wait(self.args.timeout)
        out = {"full_build": build.sample()}
        if build.code != 0:
            failures = build_failures(full, build, before)
            out.update(full_build_failed=True, full_build_failures=[list(f) for f in failures], diverged=None)
            where = self.args.work_dir / "failed" / f"seq{self.index}-full"
            where.mkdir(parents=True, exist_ok=True)
            for path in self.logs.glob("full.*"):
                shutil.copy(path, where / path.name)
            log(f"seq {self.index}: the full build FAILED (exit {build.code}): no comparison")
            for node, message in failures:
                log(f"      {node}: {message}")
            return out
        lake = self.project / "lake"
        if self.s3:
            lake = self.dir / "s3-lake"
            n = sum(self.s3.download(self.bucket, f"shop/{p}", lake / p) for p in ("warehouse", "exports"))
            out["downloaded_objects"] = n
        comparison = compare_lakes(lake, full / "lake")
        out.update(comparison=comparison, diverged=not comparison["equal"])
        tables = len(comparison["tables"]) + len(comparison["exports"])
        if comparison["equal"]:
            log(f"seq {self.index}: equal to the full build ({len(comparison['tables'])} tables, "
                f"{len(comparison['exports'])} exports; full build {build.seconds:.1f} s)")
        else:
            log(f"seq {self.index}: DIVERGED from the full build ({tables} tables and exports compared):")
            for line in differences(comparison):
                log(f"      {line}")
        return out


# ---------------------------------------------------------------------------


def ensure_deltalake():
    """Imports deltalake and pyarrow, else starts again under
    bench/soak-setup's python."""
    try:
        import deltalake  # noqa: F401
        import pyarrow  # noqa: F401
        return
    except ImportError:
        if os.environ.get("ETL_SOAK_REEXEC"):
            sys.exit(f"error: deltalake and pyarrow cannot be imported by {sys.executable}\n"
                     "help: run `bash bench/soak-setup` and use the python it prints")
    out = subprocess.run(["bash", str(BENCH / "soak-setup")], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: bench/soak-setup failed (it needs python3 and PyPI):\n{out.stderr}")
    python = out.stdout.strip()
    log(f"re-running under {python} (deltalake, pyarrow)")
    os.execve(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]], dict(os.environ, ETL_SOAK_REEXEC="1"))


def error_kind(message, work_dir):
    """A failure's first line with its counts and work paths blanked, so
    that the same error on other nights and sequences counts once."""
    message = message.replace(str(work_dir), "<work>")
    message = re.sub(r"<work>/seq\d+/[^/`' ]+", "<project>", message)
    return re.sub(r"\d[\d,._]*", "N", message)


def summarize(sequences, work_dir):
    nights = [n for s in sequences for n in s["nights"]]
    failed = [n for n in nights if not n["ok"]]
    by_error, example = collections.Counter(), {}
    found = [f for n in failed for f in n["failures"]]
    found += [f for s in sequences for f in s.get("full_build_failures", [])]
    for node, message in found:
        key = (node, error_kind(message, work_dir))
        by_error[key] += 1
        example.setdefault(key, message)
    kills = [n for n in nights if n["scenario"] == "kill"]
    return {
        "sequences": len(sequences),
        "nights": len(nights),
        "failed_nights": len(failed),
        "failed_by_scenario": dict(collections.Counter(n["label"] for n in failed)),
        "kills": len(kills),
        "kills_mid_build": sum(1 for n in kills if n["kill_landed"]),
        "races": sum(1 for n in nights if n["scenario"] == "race"),
        "races_locked_out": sum(1 for n in nights if n["scenario"] == "race" and n["race"]["locked_out"]),
        "moves": sum(1 for n in nights if n["scenario"] == "moved"),
        "hog_nights": sum(1 for n in nights if n["hog"]),
        "diverged": sum(1 for s in sequences if s.get("diverged")),
        "full_builds_failed": sum(1 for s in sequences if s.get("full_build_failed")),
        "failures_by_error": [{"node": node, "error": kind, "example": example[(node, kind)], "count": count}
                              for (node, kind), count in by_error.most_common()],
    }


def print_summary(summary, sequences, results_file):
    s = summary
    print(f"\nnights run: {s['nights']} in {s['sequences']} sequence(s); failed nights: {s['failed_nights']}"
          + (f" ({', '.join(f'{k}: {v}' for k, v in s['failed_by_scenario'].items())})" if s["failed_by_scenario"] else ""))
    print(f"kills: {s['kills']} ({s['kills_mid_build']} landed mid-build); races: {s['races']} "
          f"({s['races_locked_out']} with one build locked out); moves: {s['moves']}; nights with a CPU hog: {s['hog_nights']}")
    print(f"sequences diverged from their full build: {s['diverged']}"
          + (f"; full builds failed: {s['full_builds_failed']}" if s["full_builds_failed"] else ""))
    if s["failures_by_error"]:
        print("\nFailures by node and error:")
        for f in s["failures_by_error"]:
            print(f"  {f['count']:>3}x  {f['node']}: {f['example']}")
        print("\nFailed nights (logs kept):")
        for seq in sequences:
            for n in seq["nights"]:
                if not n["ok"]:
                    print(f"  seq {n['seq']} night {n['night']} {n['label']} (t={n['threads']}, exit {n['exit_code'] if n['exit_code'] is not None else 'timeout'}): {n['failed_dir']}")
    for seq in sequences:
        if seq.get("diverged"):
            print(f"\nseq {seq['index']} (t={seq['threads']}) diverged from its full build (example rows above and in the JSON):")
            for line in differences(seq["comparison"], examples=False):
                print(f"  {line}")
    print(f"\nsamples: {results_file}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, help="sequences (default 4, one per thread count; 1 with --s3)")
    parser.add_argument("--nights", type=int, help="nights per sequence after night 0 (default 10; 30 with --s3)")
    parser.add_argument("--threads", default="1,2,4,8", help="etl --threads of each sequence, in turn (default 1,2,4,8)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"scenarios that may be drawn (default {','.join(SCENARIOS)})")
    parser.add_argument("--kill-rate", type=float, default=0.2, help="share of nights killed then run again (0.2)")
    parser.add_argument("--race-rate", type=float, default=0.1, help="share of nights with two builds at once (0.1)")
    parser.add_argument("--move-rate", type=float, default=0.15, help="share of nights after a move of the project (0.15)")
    parser.add_argument("--hog", choices=("always", "never", "some"), default="some",
                        help="CPU hog beside every build, none, or some (default): whole sequences "
                             "(--hog-sequence-rate) and single nights (--hog-rate)")
    parser.add_argument("--hog-rate", type=float, default=0.25, help="share of nights with a hog, with --hog some (0.25)")
    parser.add_argument("--hog-sequence-rate", type=float, default=0.25,
                        help="share of sequences with a hog on every night, with --hog some (0.25)")
    parser.add_argument("--hog-procs", type=int, default=os.cpu_count(), help="busy processes of the hog (default: cores)")
    parser.add_argument("--orders", type=int, default=20000, help="orders over the first --days days (default 20000)")
    parser.add_argument("--days", type=int, default=30, help="days of the initial lake (default 30)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the scenarios and of lakegen (+ sequence index)")
    parser.add_argument("--s3", action="store_true", help="the lake in a bucket of the tests' moto server")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds before a build is killed and failed (1200)")
    parser.add_argument("--work-dir", type=Path, help="where sequences run (default bench/projects/soak/<time>/)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories of sequences that passed")
    parser.add_argument("--json", help="results file (default bench/results/soak-<date>.json)")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}: choose among {', '.join(SCENARIOS)}")
    if args.nights is None:
        args.nights = 30 if args.s3 else 10
    if args.sequences is None:
        args.sequences = 1 if args.s3 else 4
    if not args.threads or min(args.threads) < 1:
        parser.error("--threads takes positive counts, e.g. 1,2,4,8")
    if sum(getattr(args, f"{s}_rate") for s in ("kill", "race", "move")) > 1:
        parser.error("--kill-rate + --race-rate + --move-rate must be at most 1")
    ensure_deltalake()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    etl = etl_binary()
    lakegen = release_binary("lakegen", "LAKEGEN_BIN", "cargo build --release --workspace")
    etl_version = subprocess.run([str(etl), "--version"], capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.work_dir = (args.work_dir or BENCH / "projects" / "soak" / stamp).resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    out = results_path(args.json, "soak")
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"soak: {args.sequences} sequence(s) x {args.nights} nights, {etl_version}, work dir {args.work_dir}")

    import deltalake
    import pyarrow
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "etl": {"binary": str(etl), "version": etl_version},
        "lakegen": str(lakegen),
        "readers": {"deltalake": deltalake.__version__, "pyarrow": pyarrow.__version__},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sequences": [],
    }
    s3 = None
    typical = []
    try:
        if args.s3:
            s3 = S3Server(args.work_dir)
            log(f"S3 test server (moto) at {s3.endpoint}")
        for i in range(args.sequences):
            seq = Sequence(i, args, (etl, lakegen), s3, typical)
            try:
                result = seq.run()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                # The harness's own failure (lakegen, S3 uploads, disk): stop.
                kill_all()
                report["harness_error"] = str(e)
                report["summary"] = summarize(report["sequences"], args.work_dir)
                out.write_text(json.dumps(report, indent=2, default=str) + "\n")
                sys.exit(f"error: sequence {i}: {e}")
            report["sequences"].append(result)
            report["summary"] = summarize(report["sequences"], args.work_dir)
            out.write_text(json.dumps(report, indent=2, default=str) + "\n")
            passed = all(n["ok"] for n in result["nights"]) and result.get("diverged") is False
            if passed and not args.keep:
                shutil.rmtree(seq.dir, ignore_errors=True)
                result["dir_removed"] = True
    finally:
        if s3:
            s3.stop()
        kill_all()
    report["summary"] = summarize(report["sequences"], args.work_dir)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_summary(report["summary"], report["sequences"], out)
    s = report["summary"]
    sys.exit(1 if s["failed_nights"] or s["diverged"] or s["full_builds_failed"] else 0)


if __name__ == "__main__":
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    finally:
        kill_all()
        sys.stdout.flush()
        sys.stderr.flush()
    # Not a normal exit: delta-rs's runtime sometimes aborts the
    # interpreter's shutdown ("terminate called without an active
    # exception"), which would turn the exit code into 134.
    os._exit(code)
