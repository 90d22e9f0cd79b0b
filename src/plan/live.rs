//! What the running nodes of a build are doing, while they run: rows read
//! from their scans and rows coming out of their queries so far, from
//! DataFusion's own metrics, for a live display (`etl build` on a terminal)
//! or periodic progress events (`--log-format json`).
//!
//! A node runs inside [`in_node`], which makes its [`LiveNode`] the one
//! every physical plan created in that task reports to: the
//! [`WatchLivePlans`] rule, the last of the session's, keeps the plan's
//! scans and root, whose `output_rows` metrics grow as batches pass. The
//! plan itself is left exactly as the other rules made it: rebuilding it
//! to insert counting operators would make its operators anew, and some
//! (a shared subplan, a join's dynamic filter) carry state that a copy
//! does not. Plans made outside a node (or in a task the node did not
//! start) are not watched.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::common::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::disk_manager::DiskManager;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

tokio::task_local! {
    static NODE: Arc<LiveNode>;
}

/// The nodes of a build running now.
#[derive(Debug, Default)]
pub struct Live {
    running: Mutex<BTreeMap<usize, Arc<LiveNode>>>,
    next: AtomicUsize,
    /// Where the build's operators spill, once it has started.
    disk: std::sync::OnceLock<Arc<DiskManager>>,
}

/// One running node's counters.
#[derive(Debug)]
pub struct LiveNode {
    /// The node's name and materialization (`incremental orders_clean`).
    pub label: String,
    started: Instant,
    /// The scans and roots of the plans made for the node so far.
    plans: Mutex<Vec<Watched>>,
    key: usize,
}

#[derive(Debug)]
struct Watched {
    /// Each scan, with the operator reading it: a scan of rows in memory
    /// (a parsed source's cache) keeps no metrics, its reader does.
    scans: Vec<(Arc<dyn ExecutionPlan>, Option<Arc<dyn ExecutionPlan>>)>,
    root: Arc<dyn ExecutionPlan>,
}

fn scans_of(
    plan: &Arc<dyn ExecutionPlan>,
    parent: Option<&Arc<dyn ExecutionPlan>>,
    scans: &mut Vec<(Arc<dyn ExecutionPlan>, Option<Arc<dyn ExecutionPlan>>)>,
) {
    let children = plan.children();
    if children.is_empty() {
        scans.push((Arc::clone(plan), parent.cloned()));
    }
    for child in children {
        scans_of(child, Some(plan), scans);
    }
}

impl LiveNode {
    fn rows(&self) -> (u64, u64) {
        let metric = |p: &Arc<dyn ExecutionPlan>| p.metrics().and_then(|m| m.output_rows()).map(|n| n as u64);
        let output_rows = |p: &Arc<dyn ExecutionPlan>| metric(p).unwrap_or(0);
        let plans = self.plans.lock().expect("watched plans poisoned");
        let read = plans
            .iter()
            .flat_map(|w| &w.scans)
            .map(|(scan, reader)| metric(scan).or_else(|| reader.as_ref().and_then(metric)).unwrap_or(0))
            .sum();
        // A write's root is its sink, which counts the rows it wrote at
        // the end: what flows into it so far is the rows out.
        let flowing = |root: &Arc<dyn ExecutionPlan>| {
            let mut plan = Arc::clone(root);
            loop {
                let rows = output_rows(&plan);
                match plan.children()[..] {
                    [child] if rows == 0 => plan = Arc::clone(child),
                    _ => return rows,
                }
            }
        };
        let out = plans.iter().map(|w| flowing(&w.root)).sum();
        (read, out)
    }
}

/// A running node as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub label: String,
    pub elapsed: Duration,
    /// Rows its scans have given so far.
    pub rows_read: u64,
    /// Rows its queries have produced so far (those it writes, for a model).
    pub rows_out: u64,
}

impl Live {
    /// A node starting: its counters, until [`Live::finish`].
    pub fn start(&self, label: String) -> Arc<LiveNode> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let node = Arc::new(LiveNode {
            label,
            started: Instant::now(),
            plans: Mutex::new(Vec::new()),
            key,
        });
        self.running
            .lock()
            .expect("live nodes poisoned")
            .insert(key, Arc::clone(&node));
        node
    }

    /// The build's session, whose spill files [`Live::spilled`] reports.
    pub fn watch_spills(&self, ctx: &datafusion::prelude::SessionContext) {
        let _ = self.disk.set(Arc::clone(&ctx.runtime_env().disk_manager));
    }

    /// Bytes the build's operators hold in spill files now.
    pub fn spilled(&self) -> u64 {
        self.disk.get().map_or(0, |d| d.used_disk_space())
    }

    pub fn finish(&self, node: &LiveNode) {
        self.running.lock().expect("live nodes poisoned").remove(&node.key);
    }

    /// The nodes running now, the longest-running first.
    pub fn running(&self) -> Vec<Running> {
        let running = self.running.lock().expect("live nodes poisoned");
        running
            .values()
            .map(|n| {
                let (rows_read, rows_out) = n.rows();
                Running {
                    label: n.label.clone(),
                    elapsed: n.started.elapsed(),
                    rows_read,
                    rows_out,
                }
            })
            .collect()
    }
}

/// Runs `work` as `node`'s: the plans it creates count their rows in it.
pub async fn in_node<F: Future>(node: Arc<LiveNode>, work: F) -> F::Output {
    NODE.scope(node, work).await
}

/// Keeps the scans and root of each plan created inside [`in_node`] for
/// its node's counts; the plan is returned as it came.
#[derive(Debug)]
pub(crate) struct WatchLivePlans;

impl PhysicalOptimizerRule for WatchLivePlans {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let Ok(node) = NODE.try_with(Arc::clone) else {
            return Ok(plan);
        };
        let mut scans = Vec::new();
        scans_of(&plan, None, &mut scans);
        node.plans.lock().expect("watched plans poisoned").push(Watched {
            scans,
            root: Arc::clone(&plan),
        });
        Ok(plan)
    }

    fn name(&self) -> &str {
        "watch_live_plans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::collect;

    use super::*;
    use crate::plan::{SessionOptions, new_session};

    /// Inside a node, its plans report the rows they read and give.
    #[tokio::test]
    async fn a_node_s_plans_count_its_rows() {
        let ctx = new_session(&SessionOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (1..=1000).map(|x| format!("{x}\n")).collect();
        std::fs::write(dir.path().join("t.csv"), format!("x\n{rows}")).unwrap();
        ctx.register_csv("t", dir.path().join("t.csv").to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let live = Live::default();
        let node = live.start("table big".into());
        let sql = "select x % 7 as k, count(*) as n from t where x > 100 group by x % 7";
        let rows = in_node(Arc::clone(&node), async {
            let logical = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
            let state = ctx.state();
            let unwatched = state
                .query_planner()
                .create_physical_plan(&logical, &state)
                .await
                .unwrap();
            let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
            // The plan is DataFusion's, untouched.
            assert_eq!(
                datafusion::physical_plan::displayable(plan.as_ref())
                    .indent(true)
                    .to_string(),
                datafusion::physical_plan::displayable(unwatched.as_ref())
                    .indent(true)
                    .to_string()
            );
            let running = live.running();
            assert_eq!(running.len(), 1);
            assert_eq!((running[0].rows_read, running[0].rows_out), (0, 0));
            collect(plan, ctx.task_ctx()).await.unwrap()
        })
        .await;
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
        let running = live.running();
        assert_eq!(
            (running[0].label.as_str(), running[0].rows_read, running[0].rows_out),
            ("table big", 1000, 7)
        );
        live.finish(&node);
        assert!(live.running().is_empty());
        // Outside a node nothing is kept.
        ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        assert_eq!(node.plans.lock().unwrap().len(), 2);
    }
}
