#!/usr/bin/env python3
"""Generate a layered benchmark project that both etl and dbt-core (with
dbt-duckdb) accept, unchanged.

The project has N models in folders of 100 (`models/layer_00/`,
`models/layer_01/`, ...), one folder per layer of the DAG; below 1,000
models the folders are smaller, so that there are always ten layers. Every model past
the first layer refs one to three models of earlier layers, chosen by a
seeded pseudo-random generator, so the same arguments always write the same
files. Every model has a `{{ config(materialized=...) }}` call, a `{% for %}`
loop and an `{% if %}` block; the SQL is trivial and works on three rows, so
a run measures the engine's per-model overhead rather than its data speed.

Each model returns the columns `id` (1 to 3), `a`, `b`, `c`, `n_parents` and
`env`, and one row per id whatever its parents, so row counts and values stay
small at any depth. Even layers are tables and odd layers views, and a view
refs only tables: a view is never stacked on a view, which keeps the SQL a
table reads through views one level deep in both engines.

Files written into OUT:

    dbt_project.yml        name `bench`, profile `bench`
    profiles.yml           dbt-duckdb, database file OUT/bench.duckdb, 2 threads
    models/layer_XX/*.sql  the models
    models/layer_XX/_models.yml   properties of the folder's models
    .bench_project         marks OUT as generated, so it may be replaced

etl reads `dbt_project.yml` and the profile: its `external_root` is etl's
lake, `OUT/lake/`, with the tables at `OUT/lake/warehouse/main/<model>/`
(dbt-duckdb keeps its tables in the database file), and the SQL has DuckDB's
semantics in both. Both tools compile into `OUT/target/`.

    python3 bench/gen_project.py --models 1000 --out bench/projects/n1000
"""

import argparse
import random
import shutil
import sys
from pathlib import Path

MARKER = ".bench_project"
COLUMNS = ("a", "b", "c")


def layer_name(layer, width):
    return f"layer_{layer:0{width}d}"


def model_name(layer, index, width):
    return f"m_{layer:0{width}d}_{index:03d}"


def materialization(layer):
    # Layer 0 and every even layer are tables; odd layers are views.
    return "table" if layer % 2 == 0 else "view"


def layer_sizes(models, per_folder):
    layers = (models + per_folder - 1) // per_folder
    sizes = [per_folder] * layers
    sizes[-1] = models - per_folder * (layers - 1)
    return sizes


def choose_parents(rng, layer, sizes):
    """One to three distinct (layer, index) parents from earlier layers: the
    first from the layer just before, the others from any earlier layer a
    model of this layer may read (a view reads tables only)."""
    count = rng.randint(1, 3)
    parents = [(layer - 1, rng.randrange(sizes[layer - 1]))]
    if materialization(layer) == "view":
        allowed = [l for l in range(layer) if materialization(l) == "table"]
    else:
        allowed = list(range(layer))
    tries = 0
    while len(parents) < count and tries < 20:
        tries += 1
        other = rng.choice(allowed)
        candidate = (other, rng.randrange(sizes[other]))
        if candidate not in parents:
            parents.append(candidate)
    return parents


def env_block(indent):
    # The `{% if %}` block every model carries: dbt's profile target and
    # etl's default target are both named `dev`.
    return (
        f"{{%- if target.name == 'dev' %}}\n{indent}'dev' as env\n"
        f"{{%- else %}}\n{indent}'other' as env\n{{%- endif %}}\n"
    )


def first_layer_sql():
    return (
        "{{ config(materialized='table') }}\n"
        "{% set cols = ['a', 'b', 'c'] %}\n"
        "{%- for i in range(1, 4) %}\n"
        "select\n"
        "    {{ i }} as id,\n"
        "    {%- for c in cols %}\n"
        "    {{ i * 10 + loop.index }} as {{ c }},\n"
        "    {%- endfor %}\n"
        "    0 as n_parents,\n"
        + env_block("    ")
        + "{%- if not loop.last %}\nunion all\n{%- endif %}\n"
        "{%- endfor %}\n"
    )


def union_sql(layer, refs):
    """Stack the parents and keep one row per id: the greatest value of each
    column plus its position, and how many parent rows were stacked."""
    selects = "\n    union all\n".join(
        f"    select id{{% for c in cols %}}, {{{{ c }}}}{{% endfor %}} from {{{{ ref('{r}') }}}}"
        for r in refs
    )
    return (
        f"{{{{ config(materialized='{materialization(layer)}') }}}}\n"
        "{% set cols = ['a', 'b', 'c'] %}\n"
        "with parents as (\n"
        f"{selects}\n"
        ")\n"
        "select\n"
        "    id,\n"
        "    {%- for c in cols %}\n"
        "    max({{ c }}) + {{ loop.index }} as {{ c }},\n"
        "    {%- endfor %}\n"
        "    count(*) as n_parents,\n"
        + env_block("    ")
        + "from parents\n"
        "group by id\n"
    )


def greatest(aliases):
    """The greatest of `alias.{{ c }}` over the aliases, as a CASE (both
    engines have GREATEST, but CASE is the plainest common SQL)."""
    col = [f"{a}.{{{{ c }}}}" for a in aliases]
    if len(col) == 2:
        return f"case when {col[0]} >= {col[1]} then {col[0]} else {col[1]} end"
    return (
        f"case when {col[0]} >= {col[1]} and {col[0]} >= {col[2]} then {col[0]}"
        f" when {col[1]} >= {col[2]} then {col[1]} else {col[2]} end"
    )


def join_sql(layer, refs):
    """Join the parents on `id` (each has one row per id) and keep the
    greatest value of each column plus its position."""
    aliases = [f"r{i}" for i in range(len(refs))]
    joins = "".join(
        f"join {{{{ ref('{r}') }}}} {a} on {a}.id = r0.id\n"
        for r, a in zip(refs[1:], aliases[1:])
    )
    return (
        f"{{{{ config(materialized='{materialization(layer)}') }}}}\n"
        "{% set cols = ['a', 'b', 'c'] %}\n"
        "select\n"
        "    r0.id,\n"
        "    {%- for c in cols %}\n"
        f"    {greatest(aliases)} + {{{{ loop.index }}}} as {{{{ c }}}},\n"
        "    {%- endfor %}\n"
        f"    {len(refs)} as n_parents,\n"
        + env_block("    ")
        + f"from {{{{ ref('{refs[0]}') }}}} r0\n"
        + joins
    )


def properties(folder, models, with_tests):
    lines = ["version: 2", "models:"]
    for name, description in models:
        lines += [
            f"  - name: {name}",
            f"    description: \"{description}\"",
            "    config:",
            f"      tags: [{folder}]",
            "    columns:",
            "      - name: id",
            "        description: Row key, 1 to 3",
        ]
        if with_tests:
            lines.append("        data_tests: [not_null]")
        lines += [
            "      - name: a",
            "        description: Greatest `a` of the parents, plus one",
        ]
    return "\n".join(lines) + "\n"


def dbt_project_yml():
    return (
        "# Generated by bench/gen_project.py: read by etl and by dbt-core.\n"
        "name: bench\n"
        'version: "1.0.0"\n'
        "config-version: 2\n"
        "profile: bench\n"
        'model-paths: ["models"]\n'
        "models:\n"
        "  bench:\n"
        "    +materialized: view\n"
    )


def profiles_yml(out):
    # An absolute path: dbt resolves a relative one from its working
    # directory, not from the project.
    db = (out / "bench.duckdb").resolve()
    lake = (out / "lake").resolve()
    return (
        "# Generated by bench/gen_project.py: dbt-duckdb's tables in the database\n"
        "# file; etl's lake at external_root.\n"
        "bench:\n"
        "  target: dev\n"
        "  outputs:\n"
        "    dev:\n"
        "      type: duckdb\n"
        f"      path: '{db}'\n"
        f"      external_root: '{lake}'\n"
        "      schema: main\n"
        "      threads: 2\n"
    )


def prepare(out):
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            sys.exit(f"error: `{out}` exists and was not written by gen_project.py; not replacing it")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def default_per_folder(models):
    # 100 a folder, but at least ten layers, so that small projects have refs.
    return max(1, min(100, (models + 9) // 10))


def generate(out, models, per_folder=None, seed=42, with_tests=False):
    """Write the project into `out` (replacing an earlier generated one)
    and return the number of folders and of ref() calls written."""
    if per_folder is None:
        per_folder = default_per_folder(models)
    if models < 1 or per_folder < 1:
        raise ValueError("--models and --per-folder must be at least 1")
    out = Path(out)
    prepare(out)
    rng = random.Random(seed)
    sizes = layer_sizes(models, per_folder)
    width = max(2, len(str(len(sizes) - 1)))
    edges = 0
    for layer, size in enumerate(sizes):
        folder = layer_name(layer, width)
        folder_dir = out / "models" / folder
        folder_dir.mkdir(parents=True)
        described = []
        for index in range(size):
            name = model_name(layer, index, width)
            if layer == 0:
                sql = first_layer_sql()
                description = f"Model {index} of layer {layer}: three constant rows"
            else:
                refs = [model_name(l, i, width) for l, i in choose_parents(rng, layer, sizes)]
                edges += len(refs)
                if len(refs) > 1 and rng.random() < 0.5:
                    sql = join_sql(layer, refs)
                    description = f"Model {index} of layer {layer}: join of {len(refs)} parents"
                else:
                    sql = union_sql(layer, refs)
                    description = f"Model {index} of layer {layer}: union of {len(refs)} parents"
            (folder_dir / f"{name}.sql").write_text(sql)
            described.append((name, description))
        (folder_dir / "_models.yml").write_text(properties(folder, described, with_tests))
    (out / "dbt_project.yml").write_text(dbt_project_yml())
    (out / "profiles.yml").write_text(profiles_yml(out))
    (out / MARKER).write_text(f"models={models} per_folder={per_folder} seed={seed} tests={with_tests}\n")
    return len(sizes), edges


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", "-n", type=int, required=True, help="number of models")
    parser.add_argument("--out", "-o", type=Path, required=True, help="project directory (replaced if generated before)")
    parser.add_argument(
        "--per-folder",
        type=int,
        help="models per folder, one folder per layer (default 100, fewer below 1,000 models: ten folders)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the ref choices (default 42)")
    parser.add_argument("--with-tests", action="store_true", help="add a not_null data test on each model's id")
    args = parser.parse_args()
    try:
        layers, edges = generate(args.out, args.models, args.per_folder, args.seed, args.with_tests)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {args.models} models in {layers} folders, {edges} refs, to {args.out}")


if __name__ == "__main__":
    main()
