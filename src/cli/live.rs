//! What a build is doing while it runs: on a terminal, a live line per
//! running node under the finished ones (its time, rows read and rows out
//! so far, and what the build has spilled to disk); with `--log-format
//! json`, a `progress` event every `ETL_PROGRESS_SECONDS` (10) seconds while
//! nodes run. Nothing when text goes to a file or a pipe.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use etl::materialize::thousands;
use etl::plan::live::{Live, Running};

use super::{LogFormat, Output};

/// How often the live lines are redrawn.
const REDRAW: Duration = Duration::from_millis(200);

/// The display of a build's running nodes, until dropped.
pub struct Watch<'a> {
    task: Option<tokio::task::JoinHandle<()>>,
    bars: Option<MultiProgress>,
    out: &'a Output,
}

impl<'a> Watch<'a> {
    /// Starts showing `live` as `out` says: bars on a terminal, events
    /// in JSON, nothing otherwise.
    pub fn start(live: &Arc<Live>, out: &'a Output) -> Watch<'a> {
        let mut watch = Watch {
            task: None,
            bars: None,
            out,
        };
        if out.json() {
            let every = std::env::var("ETL_PROGRESS_SECONDS")
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| *s > 0.0)
                .map_or(Duration::from_secs(10), Duration::from_secs_f64);
            let live = Arc::clone(live);
            watch.task = Some(tokio::spawn(async move {
                let out = Output::new(LogFormat::Json);
                let started = std::time::Instant::now();
                loop {
                    tokio::time::sleep(every).await;
                    let running = live.running();
                    if running.is_empty() {
                        continue;
                    }
                    out.event(progress_event(started.elapsed(), &running, live.spilled()));
                }
            }));
        } else if std::io::stdout().is_terminal() {
            let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            out.draw_above(Some(bars.clone()));
            let (live, shown) = (Arc::clone(live), bars.clone());
            watch.task = Some(tokio::spawn(async move {
                let style = ProgressStyle::with_template("{spinner} {msg}").expect("a valid template");
                let mut lines: HashMap<String, ProgressBar> = HashMap::new();
                loop {
                    tokio::time::sleep(REDRAW).await;
                    let running = live.running();
                    let spilled = live.spilled();
                    lines.retain(|label, bar| {
                        let keep = running.iter().any(|r| &r.label == label);
                        if !keep {
                            bar.finish_and_clear();
                            shown.remove(bar);
                        }
                        keep
                    });
                    for node in &running {
                        let bar = lines.entry(node.label.clone()).or_insert_with(|| {
                            let bar = shown.add(ProgressBar::new_spinner().with_style(style.clone()));
                            bar.enable_steady_tick(REDRAW);
                            bar
                        });
                        bar.set_message(line(node, spilled));
                    }
                }
            }));
            watch.bars = Some(bars);
        }
        watch
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bars) = self.bars.take() {
            let _ = bars.clear();
            self.out.draw_above(None);
        }
    }
}

/// A running node's live line.
fn line(node: &Running, spilled: u64) -> String {
    let mut text = format!(
        "{:<44} {:>7.1}s  {} rows read, {} out",
        node.label,
        node.elapsed.as_secs_f64(),
        thousands(node.rows_read),
        thousands(node.rows_out),
    );
    if spilled > 0 {
        text.push_str(&format!("  (build spilling {} MiB)", spilled / (1 << 20)));
    }
    text
}

fn progress_event(elapsed: Duration, running: &[Running], spilled: u64) -> serde_json::Value {
    json!({
        "event": "progress",
        "elapsed": elapsed.as_secs_f64(),
        "spilled_bytes": spilled,
        "running": running.iter().map(|r| json!({
            "node": r.label,
            "elapsed": r.elapsed.as_secs_f64(),
            "rows_read": r.rows_read,
            "rows_out": r.rows_out,
        })).collect::<Vec<_>>(),
    })
}
