//! Micro-benchmarks of the hot paths that do not touch data: loading and
//! rendering a project, building its DAG, and selecting nodes on a
//! 10,000-model graph (issue 6's goal: a selection under 50 ms).
//!
//! `cargo bench --bench hot_paths` (release build; prints medians).

use std::fmt::Write as _;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use etl::graph::{IndirectSelection, SelectArgs, SelectContext, select};

/// A layered project: `layers` folders of `per_layer` models, each reading
/// one to three models of the layer before, with a config() call, a for
/// loop and an if, and a properties file per folder with a test per model.
fn write_project(dir: &Path, layers: usize, per_layer: usize) {
    std::fs::write(dir.join("project.yaml"), "name: bench\n").unwrap();
    for layer in 0..layers {
        let folder = dir.join(format!("models/layer_{layer}"));
        std::fs::create_dir_all(&folder).unwrap();
        let mut yml = String::from("version: 2\nmodels:\n");
        for i in 0..per_layer {
            let name = format!("m_{layer}_{i}");
            let mut sql = format!(
                "{{{{ config(materialized='{}', tags=['layer_{layer}']) }}}}\nselect\n",
                if layer % 2 == 0 { "view" } else { "table" }
            );
            sql.push_str("{% for c in ['a', 'b', 'c'] %}    {{ loop.index }} as {{ c }},\n{% endfor %}");
            sql.push_str("{% if target.name == 'dev' %}    1 as dev{% else %}    0 as dev{% endif %}\n");
            if layer == 0 {
                sql.push_str("from (select 1) t\n");
            } else {
                let refs = 1 + i % 3;
                for r in 0..refs {
                    let parent = format!("m_{}_{}", layer - 1, (i * 7 + r * 13) % per_layer);
                    let join = if r == 0 { "from" } else { "cross join" };
                    writeln!(sql, "{join} {{{{ ref('{parent}') }}}} r{r}").unwrap();
                }
            }
            std::fs::write(folder.join(format!("{name}.sql")), sql).unwrap();
            writeln!(yml, "  - name: {name}\n    description: model {i} of layer {layer}\n    columns:\n      - name: a\n        tests: [not_null]").unwrap();
        }
        std::fs::write(folder.join("schema.yml"), yml).unwrap();
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    // 10,000 models (and as many tests): 20 layers of 500.
    write_project(dir.path(), 20, 500);
    let load = etl::project::LoadOptions::default();
    let render = etl::render::RenderOptions::default();

    let mut group = c.benchmark_group("10k models");
    group.sample_size(10);
    group.bench_function("load", |b| b.iter(|| etl::project::load(dir.path(), &load).unwrap()));
    let project = etl::project::load(dir.path(), &load).unwrap();
    group.bench_function("render", |b| {
        b.iter(|| etl::render::render_project(&project, &render).unwrap())
    });
    let rendered = etl::render::render_project(&project, &render).unwrap();
    group.bench_function("dag", |b| b.iter(|| etl::graph::build(&project, &rendered).unwrap()));
    let dag = etl::graph::build(&project, &rendered).unwrap();
    group.finish();

    let compiled = |_| None;
    let cx = SelectContext {
        dag: &dag,
        project: &project,
        indirect: IndirectSelection::Eager,
        state: None,
        compiled: &compiled,
    };
    let mut group = c.benchmark_group("select on 20k nodes");
    for selector in [
        "+m_19_250",
        "m_0_0+",
        "@m_10_10",
        "tag:layer_3,config.materialized:table",
        "m_1*",
    ] {
        let args = SelectArgs {
            select: vec![selector.to_owned()],
            ..Default::default()
        };
        group.bench_function(selector, |b| b.iter(|| select(&cx, &args).unwrap()));
    }
    group.finish();
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
