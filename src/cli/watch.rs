//! `etl build --watch`: for feeds that land all day. Lists the files of the
//! sources the selection reads, builds when they change (new, rewritten or
//! removed files), one build at a time, and stops on SIGTERM or Ctrl-C once
//! the running build has committed or rolled back (exit 0).
//!
//! Each build is an ordinary `etl build` of the selection: what the new
//! files do not feed is up to date and not run, and incremental models
//! read only the new files. A project edited while watching is prepared
//! again for the next build; a broken edit is reported and watching goes
//! on.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use etl::Mode;
use etl::config::ResourceType;
use etl::graph::Defined;
use etl::project::SourceFormat;

use super::{Global, Output, build, invocation_id};

/// Set by the first SIGTERM or SIGINT; a second one ends the process at once.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // Only async-signal-safe calls here. A build cut short leaves the
        // lake as its last commit did (see docs/incremental.md#crashes).
        unsafe { libc::_exit(130) };
    }
}

fn install_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic or calls _exit.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// A file as seen by a listing: where, how big, when last written.
type Seen = BTreeSet<(String, u64, i64)>;

pub async fn run(global: &Global, out: &Output, interval: Duration) -> u8 {
    install_handlers();
    let mut built: Option<Seen> = None;
    let mut builds = 0u64;
    loop {
        match listing(global, out).await {
            Ok(files) if built.as_ref() == Some(&files) => {}
            Ok(files) => {
                let changed = match &built {
                    None => files.len(),
                    Some(before) => files.symmetric_difference(before).count(),
                };
                builds += 1;
                if out.json() {
                    out.event(json!({"event": "watch_build", "build": builds, "changed_files": changed}));
                } else if builds > 1 {
                    out.line(&format!(
                        "\n{} changed in the sources: building (watch build {builds})",
                        plural(changed, "file")
                    ));
                }
                let code = build::run(global, out, Mode::Build).await;
                // A build that could not run (a held lock, a broken edit)
                // is tried again at the next change or interval.
                built = (code != 2).then_some(files);
            }
            // Reported; the next interval lists again.
            Err(()) => {}
        }
        if wait(interval).await {
            break;
        }
    }
    if out.json() {
        out.event(json!({"event": "watch_stopped", "builds": builds}));
    } else {
        out.line(&format!(
            "\nStopped watching after {}",
            plural(builds as usize, "build")
        ));
    }
    0
}

/// Sleeps `interval`, waking early for a stop signal: whether one came.
async fn wait(interval: Duration) -> bool {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        if STOP.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
    }
    STOP.load(Ordering::SeqCst)
}

/// The files of the file sources the selection reads, prepared from the
/// project as it is now.
async fn listing(global: &Global, out: &Output) -> Result<Seen, ()> {
    // The project's warnings are the build's to print, not every listing's.
    let prepared = etl::prepare(
        &global.project_dir,
        &global.load_options(),
        &global.render_options(&invocation_id()),
    )
    .map_err(|diags| out.fatal(&diags, Some(&global.project_dir)))?;
    let selected = etl::select(&prepared, &global.selecting())
        .map_err(|diag| out.fatal(&[diag], Some(&prepared.project.root)))?
        .nodes;
    let ctx = global.session(&prepared.project, out).map_err(|_| ())?;
    let dag = &prepared.dag;
    let mut read = BTreeSet::new();
    for &node in &selected {
        for index in dag.ancestors(node).into_iter().chain([node]) {
            if let (ResourceType::Source, Defined::Source(i)) =
                (&dag.graph[index].resource_type, &dag.graph[index].defined)
            {
                read.insert(*i);
            }
        }
    }
    let mut seen = Seen::new();
    for i in read {
        let source = &prepared.project.sources[i];
        // A Delta source's new rows are a new commit in its log.
        let files = match source.format {
            SourceFormat::Delta => continue,
            _ => etl::plan::list_source_files(&ctx, source).await,
        };
        match files {
            Ok(files) => seen.extend(
                files
                    .into_iter()
                    .map(|f| (f.location.to_string(), f.size, f.last_modified.timestamp_micros())),
            ),
            // A folder that does not exist yet has no file to build from.
            Err(diag) if diag.code == etl::diagnostic::Code::MissingSource => {}
            Err(diag) => {
                out.diagnostics(&[diag], Some(&prepared.project.root));
                return Err(());
            }
        }
    }
    Ok(seen)
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
