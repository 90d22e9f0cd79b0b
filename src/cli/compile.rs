//! `etl compile`: render every selected model to target/compiled/, run
//! nothing; `etl parse`: load and render the project and write
//! target/manifest.json.

use etl::artifacts;
use etl::diagnostic::{Code, Diagnostic};
use etl::graph::ResourceType;

use super::{Global, Output, invocation_id};

pub async fn run(global: &Global, out: &Output) -> u8 {
    let started = std::time::Instant::now();
    let invocation = invocation_id();
    let prepared = match global.prepare(out, &invocation) {
        Ok(p) => std::sync::Arc::new(p),
        Err(code) => return code,
    };
    let mut stages = prepared.timings.clone();
    let root = prepared.project.root.clone();
    let selected_at = std::time::Instant::now();
    let selection = match global.selection(&prepared, out) {
        Ok(nodes) => nodes,
        Err(code) => return code,
    };
    stages.push(("select", selected_at.elapsed().as_secs_f64()));
    // The compiled files and the manifest's body are written on a thread
    // of their own while the check plans: making 5,000 new files is
    // mostly the kernel's time, which the check need not wait for.
    let writing = {
        let (prepared, selection, invocation) = (prepared.clone(), selection.clone(), invocation.clone());
        tokio::task::spawn_blocking(move || {
            let at = std::time::Instant::now();
            let written = artifacts::write_compiled(&prepared.project, &prepared.dag, &selection, &prepared.rendered);
            let wrote = at.elapsed().as_secs_f64();
            let manifest = artifacts::manifest(&prepared.project, &prepared.dag, &prepared.rendered, &invocation);
            (written, manifest, wrote, at.elapsed().as_secs_f64() - wrote)
        })
    };
    let checked_at = std::time::Instant::now();
    let checked = check(global, &prepared, &selection).await;
    stages.push(("check", checked_at.elapsed().as_secs_f64()));
    let (written, mut manifest, wrote, manifested) = match writing.await {
        Ok(done) => done,
        Err(e) => {
            let diag = Diagnostic::error(Code::Internal, format!("writing target/compiled/ stopped: {e}"));
            out.fatal(&[diag], Some(&root));
            return 2;
        }
    };
    stages.push(("write compiled (beside check)", wrote));
    stages.push(("manifest (beside check)", manifested));
    if let Err(e) = written {
        out.fatal(
            &[Diagnostic::error(Code::Io, format!("cannot write target/: {e}"))],
            Some(&root),
        );
        return 2;
    }
    report_compiled(out, &prepared, &selection);
    let (code, checked) = match checked {
        Ok(checked) => (report_check(out, &root, &checked), checked.0),
        Err(diag) => {
            out.fatal(&[diag], Some(&root));
            (2, etl::check::Checked::default())
        }
    };
    let finished_at = std::time::Instant::now();
    // The manifest, with the plan and lineage of every model planned.
    artifacts::add_plans(&mut manifest, &prepared.dag, &checked.plans, &checked.lineage);
    // Against `--state`: each changed model, breaking or not.
    if let Some(dir) = &global.state {
        match artifacts::read_state(dir) {
            Ok(state) => {
                let changes = etl::check::changes(&prepared.dag, &state, &checked);
                report_changes(out, &prepared.dag, &changes);
                for (&i, change) in &changes {
                    let id = &prepared.dag.node(i).unique_id;
                    if let Some(entry) = manifest["nodes"].get_mut(id) {
                        entry["etl_change"] = change.to_json(&prepared.dag);
                    }
                }
            }
            Err(e) => {
                out.fatal(&[Diagnostic::error(Code::InvalidState, e)], Some(&root));
                return 2;
            }
        }
    }
    if let Err(e) = artifacts::write_json(&prepared.project, "manifest.json", &manifest) {
        out.fatal(
            &[Diagnostic::error(
                Code::Io,
                format!("cannot write target/manifest.json: {e}"),
            )],
            Some(&root),
        );
        return 2;
    }
    stages.push(("write manifest", finished_at.elapsed().as_secs_f64()));
    if global.timings {
        out.stages(&stages, started.elapsed().as_secs_f64());
    }
    // The command ends here: the process's exit frees these at once,
    // where dropping them piece by piece took 0.1 s at 5,000 models.
    std::mem::forget((manifest, checked, prepared));
    code
}

/// `Compiled N models ... to target/compiled/`, and which of them were
/// compiled as parsed because they ask the lake.
fn report_compiled(out: &Output, prepared: &etl::Prepared, selection: &[petgraph::graph::NodeIndex]) {
    let count = |t: ResourceType| {
        selection
            .iter()
            .filter(|&&i| prepared.dag.node(i).resource_type == t)
            .count()
    };
    let (models, tests) = (count(ResourceType::Model), count(ResourceType::Test));
    let snapshots = count(ResourceType::Snapshot);
    if out.json() {
        out.event(serde_json::json!({"event": "compiled", "models": models, "snapshots": snapshots, "tests": tests}));
        return;
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut what = plural(models, "model");
    if snapshots > 0 {
        let joint = if tests > 0 { ", " } else { " and " };
        what = format!("{what}{joint}{}", plural(snapshots, "snapshot"));
    }
    if tests > 0 {
        what = format!("{what} and {}", plural(tests, "data test"));
    }
    out.line(&format!("Compiled {what} to target/compiled/"));
    // As dbt parses them: `execute` false, nothing asked of the lake.
    let asking: Vec<&str> = selection
        .iter()
        .map(|&i| prepared.dag.node(i))
        .filter(|n| {
            matches!(
                n.resource_type,
                ResourceType::Model | ResourceType::Snapshot | ResourceType::Test
            )
        })
        .filter(|n| {
            n.rendered(&prepared.rendered.models, &prepared.rendered.tests)
                .introspects
        })
        .map(|n| n.name.as_str())
        .collect();
    if !asking.is_empty() {
        out.line(&format!(
            "note: {} read `execute` or ask the lake (`run_query`, `adapter.get_columns_in_relation`, \
             ...): compiled as parsed, with `execute` false; `etl build` renders them again as they run",
            asking.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
}

/// Plans every selected model against its inputs' schemas (no data
/// read), with the lineage of the models planned; an error only when no
/// session can be made.
async fn check(
    global: &Global,
    prepared: &etl::Prepared,
    selection: &[petgraph::graph::NodeIndex],
) -> Result<(etl::check::Checked, f64), Diagnostic> {
    let ctx = etl::session(&prepared.project, global.memory_limit.as_deref())?;
    let second = etl::session(&prepared.project, global.memory_limit.as_deref())?;
    let started = std::time::Instant::now();
    let checked = etl::check::check_both_ways(prepared, selection, ctx, second).await;
    Ok((checked, started.elapsed().as_secs_f64()))
}

/// What the check found: exit 2 with each model that does not plan, at
/// its line.
fn report_check(out: &Output, root: &std::path::Path, (checked, seconds): &(etl::check::Checked, f64)) -> u8 {
    if out.json() {
        out.event(serde_json::json!({
            "event": "checked", "planned": checked.planned, "cached": checked.cached, "both_ways": checked.both_ways, "errors": checked.errors.len(),
            "skipped": checked.skipped, "seconds": seconds,
        }));
    }
    if !checked.errors.is_empty() {
        out.fatal(&checked.errors, Some(root));
        if !out.json() {
            let n = checked.errors.len();
            out.line(&format!(
                "{n} node{} of the selection do{} not plan: nothing was run",
                if n == 1 { "" } else { "s" },
                if n == 1 { "es" } else { "" }
            ));
        }
        return 2;
    }
    if !out.json() {
        let both = match checked.both_ways {
            0 => String::new(),
            n => format!(
                " ({n} incremental one{} both ways: as a full build and on {} table{})",
                if n == 1 { "" } else { "s" },
                if n == 1 { "its" } else { "their" },
                if n == 1 { "" } else { "s" }
            ),
        };
        let line = format!(
            "Checked {} model{}{both} against their inputs' schemas, no data read",
            checked.planned,
            if checked.planned == 1 { "" } else { "s" }
        );
        out.line(&line);
        for skipped in &checked.skipped {
            out.line(&format!("  not checked: {skipped}"));
        }
    }
    0
}

/// One line per model changed since the state: breaking (what reads a
/// column removed or retyped) or not.
fn report_changes(
    out: &Output,
    dag: &etl::graph::Dag,
    changes: &std::collections::BTreeMap<petgraph::graph::NodeIndex, etl::check::Change>,
) {
    if out.json() {
        for (&i, change) in changes {
            out.event(serde_json::json!({"event": "changed", "unique_id": dag.node(i).unique_id, "change": change.to_json(dag)}));
        }
        return;
    }
    if changes.is_empty() {
        return;
    }
    let breaking = changes.values().filter(|c| c.breaking()).count();
    out.line(&format!(
        "Changed since the state: {} model{} ({breaking} breaking for what reads {})",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" },
        if changes.len() == 1 { "it" } else { "them" }
    ));
    for (&i, change) in changes {
        let mut what: Vec<String> = change.added.iter().map(|c| format!("`{c}` added")).collect();
        what.extend(change.removed.iter().map(|c| format!("`{c}` removed")));
        what.extend(
            change
                .retyped
                .iter()
                .map(|(c, was, now)| format!("`{c}` {was} -> {now}")),
        );
        let columns = if what.is_empty() {
            "same columns".to_owned()
        } else {
            what.join(", ")
        };
        let verdict = if change.breaking() {
            let readers: Vec<String> = change
                .broken
                .iter()
                .map(|(n, c)| {
                    let name = &dag.node(*n).name;
                    if c.is_empty() {
                        format!("{name} (its rows)")
                    } else {
                        format!("{name}.{c}")
                    }
                })
                .collect();
            format!("breaking: read by {}", readers.join(", "))
        } else {
            "not breaking".to_owned()
        };
        out.line(&format!("  {}: {columns}; {verdict}", dag.node(i).name));
    }
}

pub fn parse(global: &Global, out: &Output) -> u8 {
    let invocation = invocation_id();
    let started = std::time::Instant::now();
    let prepared = match global.prepare(out, &invocation) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let manifest = artifacts::manifest(&prepared.project, &prepared.dag, &prepared.rendered, &invocation);
    match artifacts::write_json(&prepared.project, "manifest.json", &manifest) {
        Ok(_) => {
            let nodes = prepared.dag.order.len();
            if out.json() {
                out.event(serde_json::json!({"event": "parsed", "nodes": nodes}));
            } else {
                out.line(&format!(
                    "Parsed {nodes} nodes in {:.2}s to target/manifest.json",
                    started.elapsed().as_secs_f64()
                ));
            }
            0
        }
        Err(e) => {
            out.fatal(
                &[Diagnostic::error(
                    Code::Io,
                    format!("cannot write target/manifest.json: {e}"),
                )],
                Some(&prepared.project.root),
            );
            2
        }
    }
}
