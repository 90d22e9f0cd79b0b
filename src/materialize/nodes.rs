//! One node's build, per materialization.

use std::time::Instant;

use petgraph::graph::NodeIndex;
use serde_json::{Map, Value};

use super::planning::planned;
use super::write::{commit_of, lake_error, register_written, write_and_register};
use super::{Build, NodeResult, NodeRun, Outcome, Phases, Status};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::graph::{Materialization, Node};
use crate::lake::{self, ViewDefinition};
use datafusion::prelude::SessionContext;

use crate::plan::register_csv_file;

pub async fn build_node(build: &std::sync::Arc<Build>, index: NodeIndex) -> NodeResult {
    let started = Instant::now();
    let node = build.dag.node(index);
    if node.resource_type == crate::config::ResourceType::UnitTest {
        return super::unit_tests::run(build, index).await;
    }
    // An exposure runs nothing: in `build`, as in dbt, it says its inputs
    // are built (or is skipped with them).
    if node.resource_type == crate::config::ResourceType::Exposure {
        return NodeResult::of(node, Status::NoOp, "NO-OP".into(), started.elapsed().as_secs_f64());
    }
    let session = match header_session(build, index).await {
        Ok(Some(session)) => session,
        Ok(None) => build.base_session(index),
        Err(diag) => return NodeResult::error(node, diag, started.elapsed().as_secs_f64()),
    };
    if let Err(diag) = super::introspect::render_if_asking(build, index, &session).await {
        return NodeResult::error(node, diag, started.elapsed().as_secs_f64());
    }
    let mut run = NodeRun {
        index,
        session,
        fingerprint: None,
        ingest: None,
        plan_seconds: 0.0,
    };
    let result = build_in_session(build, &mut run, started).await;
    // Not kept past the node (up to date, or failed before writing).
    build.loaded.lock().expect("loaded tables poisoned").remove(&index);
    result
}

/// A session of the model's own when its `sql_header` sets DataFusion
/// options (`SET datafusion.execution.parquet.pushdown_filters = true`).
async fn header_session(build: &Build, index: NodeIndex) -> Result<Option<SessionContext>, Diagnostic> {
    let node = build.dag.node(index);
    // A node run again without etl's rewrites plans in a plain copy of the
    // build's session (and its header, if any, applies to that).
    let plain = if build.without_rewrites(index) {
        let plain = crate::plan::without_etl_rules(&build.registry.ctx)
            .map_err(|e| Diagnostic::error(Code::Session, format!("cannot start a plain session: {e}")))?;
        Some(plain)
    } else {
        None
    };
    // A node given sort-merge joins or room to grow keeps them, header or not.
    let roomy = |ctx| build.with_memory_choices(index, ctx);
    // Which materializations may have one is checked with the config.
    if node.config.sql_header.is_none() {
        return Ok(plain.map(roomy));
    }
    let base = roomy(plain.unwrap_or_else(|| build.registry.ctx.clone()));
    crate::plan::session_of_node(&base, node).await
}

async fn build_in_session(build: &Build, run: &mut NodeRun, started: Instant) -> NodeResult {
    let index = run.index;
    let node = build.dag.node(index);
    match up_to_date(build, run).await {
        Ok(Some(outcome)) => return success(build, node, outcome, started.elapsed().as_secs_f64()),
        Ok(None) => {}
        Err(diag) => return NodeResult::error(node, diag, started.elapsed().as_secs_f64()),
    }
    let (pre_hooks, post_hooks) = match node.resource_type {
        crate::config::ResourceType::Model | crate::config::ResourceType::Snapshot => {
            let rendered = build.rendered_now(index);
            (rendered.pre_hooks.clone(), rendered.post_hooks.clone())
        }
        crate::config::ResourceType::Seed => match build.seed_hooks.get(&node.name) {
            Some((pre, post)) => (pre.clone(), post.clone()),
            None => (Vec::new(), Vec::new()),
        },
        _ => (Vec::new(), Vec::new()),
    };
    let site = |key: &str| super::hooks::HookSite {
        what: format!("the {key} of `{}`", node.name),
        span: node
            .config
            .raw()
            .span(key)
            .cloned()
            .or_else(|| Some(Span::file(&node.path))),
        default_schema: &build.project.target.schema,
    };
    if node.materialized == Materialization::Test {
        return super::data_tests::run_test_unless_up_to_date(build, index).await;
    }
    // A node with hooks changes its table and others in several commits:
    // when one fails, what it changed is put back (see `hooks::Journal`).
    let journal = (!pre_hooks.is_empty() || !post_hooks.is_empty()).then(super::hooks::Journal::default);
    let journal = journal.as_ref();
    let outcome = match super::hooks::run_hooks(build, &run.session, &pre_hooks, &site("pre_hook"), journal).await {
        Ok(()) => materialize(build, run, journal).await,
        Err(diag) => Err(diag),
    };
    let outcome = match outcome {
        Ok(outcome) if !post_hooks.is_empty() => {
            super::hooks::run_hooks(build, &run.session, &post_hooks, &site("post_hook"), journal)
                .await
                .map(|()| outcome)
        }
        other => other,
    };
    let outcome = match (outcome, journal) {
        (Err(mut diag), Some(journal)) => {
            let undone = journal.roll_back(build).await;
            if !undone.is_empty() {
                diag.notes.push(format!(
                    "the node's writes are undone, as dbt rolls back a failed model: {}",
                    undone.join("; ")
                ));
            }
            Err(diag)
        }
        (outcome, _) => outcome,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let mut result = match outcome {
        Ok(outcome) => success(build, node, outcome, elapsed),
        Err(diag) => NodeResult::error(node, super::probe::name_the_file(build, index, diag).await, elapsed),
    };
    result.phases = Phases {
        plan: run.plan_seconds,
        commit: lake::take_commit_time(&build.registry.ctx, &build.registry.location(&node.relation)),
    };
    result
}

/// Builds the node's relation by its materialization; its table's
/// commit is noted in `journal`, when it has one.
async fn materialize(
    build: &Build,
    run: &mut NodeRun,
    journal: Option<&super::hooks::Journal>,
) -> Result<Outcome, Diagnostic> {
    let node = build.dag.node(run.index);
    let writes_table = matches!(
        node.materialized,
        Materialization::Seed | Materialization::Table | Materialization::Incremental | Materialization::Snapshot
    );
    let url = build.registry.location(&node.relation);
    if let (Some(journal), true) = (journal, writes_table) {
        journal.before_write(&build.registry.ctx, &node.relation, &url).await;
    }
    let outcome = match node.materialized {
        Materialization::Seed => seed(build, run).await,
        Materialization::Table | Materialization::Incremental => table(build, run).await,
        Materialization::View => view(build, run).await,
        Materialization::Ephemeral => ephemeral(build, run).await,
        Materialization::Snapshot => super::snapshot::snapshot(build, run).await,
        Materialization::Test | Materialization::External | Materialization::Unit | Materialization::Exposure => {
            Ok(Outcome {
                rows: None,
                version: None,
                message: "source".into(),
                up_to_date: false,
                warnings: Vec::new(),
            })
        }
    }?;
    if let (Some(journal), true, Some(version)) = (journal, writes_table, outcome.version) {
        journal.committed_up_to(&node.relation, version as u64);
    }
    Ok(outcome)
}

/// `Some` when the node's data was written from exactly what it would be
/// built from now: same compiled SQL, config and inputs (see `state`).
async fn up_to_date(build: &Build, run: &mut NodeRun) -> Result<Option<Outcome>, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let eligible = matches!(
        node.materialized,
        Materialization::Seed | Materialization::Table | Materialization::Incremental | Materialization::View
    );
    if !eligible {
        return Ok(None);
    }
    let mut stored = super::fingerprint::stored(build, index).await?;
    super::write::expect_version(build, index, &mut stored);
    // Data files gone from under the table: a node that would read or
    // keep the table as it is fails here, by name, before anything is
    // built on it; one rebuilt in full writes a whole new version.
    let in_place = node.materialized == Materialization::Incremental && build.options.incremental.contains(&node.name);
    let missing = missing_files_error(build, index, &stored.missing);
    if let (Some(diag), true) = (&missing, in_place) {
        return Err(diag.clone());
    }
    // Built from empty inputs: never up to date, and no fingerprint, so
    // that the next build builds it from its data.
    if build.options.empty {
        return Ok(None);
    }
    // A range asked for is rebuilt, whatever changed.
    let ranged = build.options.event_time_start.is_some() || build.options.event_time_end.is_some();
    let microbatch = node.config.incremental.as_ref().map(|i| &i.strategy);
    if ranged && matches!(microbatch, Some(crate::config::Strategy::Microbatch(_))) {
        return Ok(None);
    }
    // Built anyway under --full-refresh or --force, but with its
    // fingerprint, so that the next build can find it up to date.
    // A model with hooks runs every time, as in dbt: what its hooks do
    // (an audit row, a delete elsewhere) is not in its fingerprint.
    let forced = build.options.full_refresh || build.options.force || !node.config.hooks.is_empty();
    let fingerprint = super::fingerprint::fingerprint(build, index).await?;
    let version = match stored.version {
        lake::Expected::Version(v) => Some(v),
        _ => None,
    };
    let stored = if forced { None } else { stored.fingerprint };
    if stored.as_deref() == Some(fingerprint.as_str()) {
        if let Some(diag) = missing {
            return Err(diag);
        }
        let exported = exports_made_again(build, index, version).await?.unwrap_or_default();
        return Ok(Some(Outcome {
            rows: None,
            version,
            message: format!("up to date: same SQL, config and inputs as its last build{exported}"),
            up_to_date: true,
            warnings: Vec::new(),
        }));
    }
    if missing.is_some() {
        tracing::warn!(node = %node.name, "data files of its table are gone: it is rebuilt in full");
    }
    run.fingerprint = Some(fingerprint);
    Ok(None)
}

/// The error of a table some of whose data files are gone, if any are.
fn missing_files_error(build: &Build, index: NodeIndex, missing: &[String]) -> Option<Diagnostic> {
    if missing.is_empty() {
        return None;
    }
    let node = build.dag.node(index);
    let url = build.registry.location(&node.relation);
    let shown: Vec<String> = missing.iter().take(3).map(|f| format!("`{url}{f}`")).collect();
    let more = missing.len() - shown.len();
    let diag = Diagnostic::error(
        Code::MissingDataFiles,
        format!(
            "table `{}`: {} data file{} of its current version {} gone: {}{}",
            node.name,
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() == 1 { "is" } else { "are" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    )
    .with_span(Some(Span::file(&node.path)))
    .with_note("files under a table are written and removed by its commits only: something else deleted them")
    .with_help(format!(
        "restore them from a backup, or rebuild the table: `etl build --select {} --full-refresh`",
        node.name
    ));
    Some(diag)
}

fn success(build: &Build, node: &Node, outcome: Outcome, elapsed: f64) -> NodeResult {
    NodeResult {
        unique_id: node.unique_id.clone(),
        name: node.name.clone(),
        resource_type: node.resource_type,
        materialized: node.materialized,
        status: Status::Success,
        execution_time: elapsed,
        rows_affected: outcome.rows,
        failures: None,
        tested_rows: None,
        up_to_date: outcome.up_to_date,
        message: outcome.message,
        location: (node.materialized != Materialization::Ephemeral)
            .then(|| build.registry.location(&node.relation).to_string()),
        relation: node.relation.sql(),
        version: outcome.version,
        phases: Phases::default(),
        diagnostic: None,
        warnings: outcome.warnings,
    }
}

/// Writes the model's exports from its table at `version` (registered as
/// its relation), and keeps what they were made from.
async fn write_exports(
    build: &Build,
    index: NodeIndex,
    exports: &[super::export::Export],
    version: i64,
) -> Result<Vec<url::Url>, Diagnostic> {
    // `--empty` writes no rows: a BI tool's files keep the last real ones.
    if exports.is_empty() || build.options.empty {
        return Ok(Vec::new());
    }
    let node = build.dag.node(index);
    let registry = &build.registry;
    let location = registry.location(&node.relation);
    let committed_at = super::fingerprint::commit_time(build, &location, version).await;
    let started = std::time::Instant::now();
    let written = super::export::write_all(
        &registry.ctx,
        &registry.lake,
        &node.unique_id,
        &node.relation.sql(),
        exports,
        version,
        committed_at,
        &export_day(build),
    )
    .await;
    tracing::debug!(node = %node.name, seconds = started.elapsed().as_secs_f64(), "exported");
    written.map_err(|(export, e)| {
        Diagnostic::error(
            Code::Export,
            format!("exporting `{}` to `{}` failed: {e}", node.name, export.location),
        )
        .with_span(Some(Span::file(&node.path)))
        .with_note(format!("the table itself was written (version {version})"))
        .with_help("the next build writes the export again")
    })
}

/// The day of a build's dated exports: the UTC date it started.
fn export_day(build: &Build) -> String {
    build.options.started_at.format("%Y-%m-%d").to_string()
}

/// For a table found up to date: its exports written again when they were
/// not made from its version (a build killed between the two, an export
/// deleted since). The message says so.
async fn exports_made_again(
    build: &Build,
    index: NodeIndex,
    version: Option<i64>,
) -> Result<Option<String>, Diagnostic> {
    let node = build.dag.node(index);
    let exports = super::export::exports_of(node, &build.project.root);
    let Some(version) = version.filter(|_| !exports.is_empty()) else {
        return Ok(None);
    };
    let registry = &build.registry;
    let location = registry.location(&node.relation);
    let committed_at = super::fingerprint::commit_time(build, &location, version).await;
    let Some(why) = super::export::not_up_to_date(
        &registry.ctx,
        &registry.lake,
        &node.unique_id,
        &exports,
        version,
        committed_at,
        &export_day(build),
    )
    .await
    else {
        return Ok(None);
    };
    build.registry.ensure(&build.dag, &build.project, index).await?;
    let urls = write_exports(build, index, &exports, version).await?;
    let urls: Vec<String> = urls.iter().map(ToString::to_string).collect();
    Ok(Some(format!(
        "; its export did not match version {version} ({why}) and was written again: {}",
        urls.join(", ")
    )))
}

async fn seed(build: &Build, run: &mut NodeRun) -> Result<Outcome, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let project = &build.project;
    let seed = node.seed(project);
    let ctx = &build.registry.ctx;
    let temp = format!("__etl_seed_{}", node.name);
    register_csv_file(ctx, &temp, &project.root.join(&seed.path), Span::file(&seed.path)).await?;
    let result = async {
        let df = ctx
            .table(temp.as_str())
            .await
            .map_err(|e| Diagnostic::error(Code::Seed, e.to_string()))?;
        let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let types = &node.config.column_types;
        for name in types.keys() {
            if !columns.contains(name) {
                return Err(Diagnostic::error(
                    Code::UnknownColumn,
                    format!(
                        "`column_types` names `{name}`, which seed `{}` does not have",
                        node.name
                    ),
                )
                .with_span(Some(
                    node.config
                        .raw()
                        .span("column_types")
                        .cloned()
                        .unwrap_or_else(|| Span::file(&seed.path)),
                ))
                .with_suggestion(name, columns.iter().map(String::as_str))
                .with_note(format!("its columns: {}", columns.join(", "))));
            }
        }
        let sql = crate::plan::seed_select(&columns, types, &temp);
        let plan = ctx
            .sql(&sql)
            .await
            .map_err(|e| {
                Diagnostic::error(Code::Seed, format!("seed `{}`: {}", node.name, e.find_root()))
                    .with_span(Some(Span::file(&seed.path)))
            })?
            .into_unoptimized_plan();
        write_and_register(build, run, plan, &node.config.layout).await
    }
    .await;
    let _ = ctx.deregister_table(temp.as_str());
    let written = result?;
    Ok(Outcome {
        rows: Some(written.rows),
        version: Some(written.version),
        message: format!("seed: {}", super::rows_text(written.rows)),
        up_to_date: false,
        warnings: Vec::new(),
    })
}

async fn table(build: &Build, run: &mut NodeRun) -> Result<Outcome, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let exports = super::export::exports_of(node, &build.project.root);
    let (plan, _) = planned(build, run).await?;
    // `--empty`: an incremental table is checked (planned), not written:
    // a commit of no rows would also drop its record of ingested files.
    if build.options.empty && build.options.incremental.contains(&node.name) {
        register_written(build, index).await?;
        let version = match build.expected.lock().expect("expected versions poisoned").get(&index) {
            Some(lake::Expected::Version(v)) => Some(*v),
            _ => None,
        };
        return Ok(Outcome {
            rows: Some(0),
            version,
            message: "incremental: planned, kept as it is under `--empty`".into(),
            up_to_date: false,
            warnings: Vec::new(),
        });
    }
    let layout = &node.config.layout;
    let audit = super::audit::audits(build, index);
    let (written, mut message) = if node.materialized == Materialization::Incremental {
        let config = super::incremental::IncrementalConfig::of(node)?;
        let ingest = run.ingest.clone();
        let incremental = build.options.incremental.contains(&node.name);
        if let Some(ingest) = ingest.as_ref().filter(|i| incremental && i.new_files == 0) {
            // Replaying consumed files is a no-op: nothing to commit.
            register_written(build, index).await?;
            super::ingest::remember_empty_files(build, index, ingest).await;
            // Nothing committed: the table is at the version it started from.
            let version = match build.expected.lock().expect("expected versions poisoned").get(&index) {
                Some(lake::Expected::Version(v)) => Some(*v),
                _ => None,
            };
            let exported = exports_made_again(build, index, version).await?.unwrap_or_default();
            return Ok(Outcome {
                rows: Some(0),
                version,
                message: format!(
                    "incremental: no new files ({} consumed before){exported}",
                    ingest.total()
                ),
                up_to_date: false,
                warnings: ingest.warnings.clone(),
            });
        }
        let mut commit = commit_of(build, run);
        if let Some(ingest) = &ingest {
            let etl = commit
                .metadata
                .entry("etl")
                .or_insert_with(|| Value::Object(Map::new()));
            etl[super::ingest::RECORD_KEY] = serde_json::to_value(&ingest.consumed).unwrap_or_default();
            commit.app_transaction = Some((format!("etl/{}", node.unique_id), ingest.total() as i64));
        }
        // Under `--empty`, one write of no rows, not one per window.
        let applied = if config.microbatch().is_some() && !build.options.empty {
            super::incremental::microbatch::build_microbatch(build, run, &config, plan, commit).await
        } else {
            super::incremental::build_incremental(build, run, &config, plan, commit).await
        };
        // Batches that committed before one failed are readable. The
        // write's own error comes first: a first build that failed has no
        // table to read back (see: issue 23).
        let registered = register_written(build, index).await;
        let applied = applied?;
        registered?;
        let message = match &ingest {
            Some(i) => format!(
                "{}, {} new file{} ingested",
                applied.message,
                i.new_files,
                if i.new_files == 1 { "" } else { "s" }
            ),
            None => applied.message,
        };
        if audit {
            (applied.written, format!("{message}, audited before publishing"))
        } else {
            (applied.written, message)
        }
    } else if audit {
        let how = lake::TableWrite::Overwrite {
            partition_by: Vec::new(),
        };
        let commit = commit_of(build, run);
        let written = super::audit::audited_write(build, run, plan, how, layout, commit).await?;
        register_written(build, index).await?;
        let message = format!("table: {}, audited before publishing", super::rows_text(written.rows));
        (written, message)
    } else {
        let written = write_and_register(build, run, plan, layout).await?;
        let message = format!("table: {}", super::rows_text(written.rows));
        (written, message)
    };
    let ingest = run.ingest.take();
    if let Some(ingest) = &ingest {
        super::ingest::remember_empty_files(build, index, ingest).await;
    }
    // A kill here leaves the table committed and its exports behind it:
    // the next build finds the table up to date and writes them then.
    lake::crash_at("before-export");
    for url in write_exports(build, index, &exports, written.version).await? {
        message.push_str(&format!(", exported to {url}"));
    }
    Ok(Outcome {
        rows: Some(written.rows),
        version: Some(written.version),
        message,
        up_to_date: false,
        warnings: ingest.map(|ingest| ingest.warnings).unwrap_or_default(),
    })
}

async fn view(build: &Build, run: &mut NodeRun) -> Result<Outcome, Diagnostic> {
    let index = run.index;
    let node = build.dag.node(index);
    let (plan, sql) = planned(build, run).await?;
    let registry = &build.registry;
    let fingerprint = run.fingerprint.clone();
    let definition = ViewDefinition {
        fingerprint,
        unique_id: node.unique_id.clone(),
        sql: sql.clone(),
        parents: build
            .dag
            .parents(index)
            .map(|p| build.dag.node(p).unique_id.clone())
            .collect(),
    };
    let location = registry.location(&node.relation);
    lake::write_view(&registry.ctx, &location, &definition)
        .await
        .map_err(|e| lake_error(node, "storing the view", e))?;
    registry
        .register_view(index, &node.relation, plan, sql)
        .map_err(|e| lake_error(node, "registering", e))?;
    Ok(Outcome {
        rows: None,
        version: None,
        message: "view".into(),
        up_to_date: false,
        warnings: Vec::new(),
    })
}

async fn ephemeral(build: &Build, run: &mut NodeRun) -> Result<Outcome, Diagnostic> {
    // Nothing is written: planning checks the SQL before dependents inline it.
    planned(build, run).await?;
    Ok(Outcome {
        rows: None,
        version: None,
        message: "ephemeral: checked, inlined into its dependents".into(),
        up_to_date: false,
        warnings: Vec::new(),
    })
}
