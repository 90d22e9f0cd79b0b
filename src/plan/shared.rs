//! One physical optimizer rule and the plan node it places: a part of a
//! query that appears twice or more, identical, runs once, and each of its
//! readers reads the same rows.
//!
//! DataFusion plans a CTE where it is referenced, so a CTE read twice is
//! computed twice: `firsts` in a cohort report (each customer's first
//! month) is read by the cohort sizes and by the join that tags each order
//! with its cohort, and both copies aggregate every order. Where two
//! physical subplans are the same text (operators, expressions, files,
//! partitioning) and hold an aggregate or a window, the rule puts one
//! `SharedSubplanExec` over them in every place; the first reader runs the
//! subplan's partitions and keeps their rows, in the memory pool or, when
//! the pool refuses, in a spill file, and each partition's rows are dropped
//! after its last reader. DuckDB materializes such CTEs the same way.
//!
//! Not shared: subplans with a volatile expression (each `random()` draws
//! its own values), with a dynamic filter (filled in at run time by an
//! operator above one copy only), with an operator the rule does not know
//! (it cannot tell what such a node computes), under a recursive query
//! (which runs its plan again), or reading the value of a scalar subquery
//! that is filled in above it, where one of its readers may run before the
//! value exists (see `subqueries_filled_for_every_reader`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::ArrayData;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_datafusion_err, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, SpillFile, TaskContext};
use datafusion::logical_expr::physical_planning_context::ScalarSubqueryResults;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet, SpillMetrics};
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use datafusion::physical_plan::spill::SpillManager;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, displayable};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt, stream};

use super::options::EtlOptions;

/// Operators whose result is a function of their inputs and expressions
/// alone: a subplan made of these (and nothing else) can be run once for
/// several readers.
const KNOWN: &[&str] = &[
    "DataSourceExec",
    "DeltaScan",
    "DeltaScanExec",
    "FilterExec",
    "ProjectionExec",
    "AggregateExec",
    "RepartitionExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "CooperativeExec",
    "HashJoinExec",
    "SortMergeJoinExec",
    "NestedLoopJoinExec",
    "CrossJoinExec",
    "SortExec",
    "SortPreservingMergeExec",
    "BoundedWindowAggExec",
    "WindowAggExec",
    "UnionExec",
];

/// Operators worth keeping the result of: an aggregate's or a window's
/// input is read whole to make it. A repeated scan or join alone is
/// cheaper to run twice than to hold.
const WORTH_KEEPING: &[&str] = &["AggregateExec", "BoundedWindowAggExec", "WindowAggExec"];

#[derive(Debug, Default)]
pub(crate) struct ShareRepeatedSubplans;

impl PhysicalOptimizerRule for ShareRepeatedSubplans {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let on = config
            .extensions
            .get::<EtlOptions>()
            .is_none_or(|etl| etl.share_repeated_subplans);
        if !on || any_node(&plan, &|node| node.name() == "RecursiveQueryExec") {
            return Ok(plan);
        }
        let mut plan = plan;
        let mut refused = HashSet::new();
        // The largest repeated subplan first: the repeats inside it then
        // run once with it, and are no longer repeats.
        while let Some(text) = largest_repeated(&plan, &refused) {
            if !subqueries_filled_for_every_reader(&plan, &text) {
                tracing::debug!(
                    "a repeated subplan not shared: a scalar subquery in it gets its value above it, \
                     after one of its readers runs"
                );
                refused.insert(text);
                continue;
            }
            let mut shared = None;
            let mut readers = 0;
            plan = replace(&plan, &text, &mut shared, &mut readers)?;
            if let Some(shared) = shared {
                shared.state.readers.store(readers, Ordering::Relaxed);
                tracing::debug!(
                    readers,
                    subplan = %displayable(shared.state.input.as_ref()).one_line(),
                    "a subplan read in several places runs once"
                );
            }
        }
        Ok(plan)
    }

    fn name(&self) -> &str {
        "share_repeated_subplans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// What makes two subplans the same: their whole text (every file a scan
/// reads, in DataFusion's verbose form) and schema, and for scans of rows
/// held in memory, which print only their sizes, the rows themselves.
fn text_of(node: &Arc<dyn ExecutionPlan>) -> String {
    let mut text = format!("{}{:?}", displayable(node.as_ref()).indent(true), node.schema());
    rows_in_memory(node, &mut text);
    text
}

/// Where the rows of each in-memory scan under `node` live: two scans of
/// the same table share their buffers; two tables of the same shape and
/// sizes do not.
fn rows_in_memory(node: &Arc<dyn ExecutionPlan>, text: &mut String) {
    if let Some(memory) = in_memory(node) {
        for batch in memory.partitions().iter().flatten() {
            match batch.columns().first().map(|column| column.to_data()) {
                Some(data) => {
                    let at = first_buffer(&data).unwrap_or(memory as *const MemorySourceConfig as usize);
                    text.push_str(&format!(" rows@{at:x}+{}:{}", data.offset(), data.len()));
                }
                None => text.push_str(&format!(" rows@{:x}", memory as *const MemorySourceConfig as usize)),
            }
        }
    }
    for child in node.children() {
        rows_in_memory(child, text);
    }
}

fn in_memory(node: &Arc<dyn ExecutionPlan>) -> Option<&MemorySourceConfig> {
    node.downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<MemorySourceConfig>()
}

fn first_buffer(data: &ArrayData) -> Option<usize> {
    data.buffers()
        .first()
        .map(|buffer| buffer.as_ptr() as usize)
        .or_else(|| data.child_data().iter().find_map(first_buffer))
}

/// The text of the largest subplan that appears more than once and may be
/// shared, looking neither into nor at subplans already shared.
fn largest_repeated(plan: &Arc<dyn ExecutionPlan>, refused: &HashSet<String>) -> Option<String> {
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut candidates = Vec::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if node.is::<SharedSubplanExec>() {
            continue;
        }
        let text = text_of(&node);
        let entry = seen.entry(text).or_insert_with_key(|_| (0, size(&node)));
        entry.0 += 1;
        if entry.0 == 2 {
            candidates.push((entry.1, node.clone()));
        }
        stack.extend(node.children().into_iter().cloned());
    }
    candidates.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    candidates
        .into_iter()
        .filter(|(_, node)| shareable(node))
        .map(|(_, node)| text_of(&node))
        .find(|text| !refused.contains(text))
}

/// Whether every uncorrelated scalar subquery that the subplan `text`
/// reads the value of (a `ScalarSubqueryExpr`) has that value before any
/// reader of the subplan runs, when it is run once for all of them.
///
/// DataFusion plans the scalar subqueries of a query level apart, and a
/// `ScalarSubqueryExec` at the top of the level runs them and fills in
/// their values before it runs its input (its first child); the
/// expressions below only read the values. A subquery planned inside the
/// subplan is filled in by it. One planned above it is filled in before a
/// reader runs only if that reader is in the input of the
/// `ScalarSubqueryExec` that owns it: a reader inside another subquery
/// (`(select max(n) from busy)` beside `from busy`) runs before the
/// level's values exist. The copy that runs is the first one `replace`
/// meets, so its subqueries must be filled in wherever a reader is.
fn subqueries_filled_for_every_reader(plan: &Arc<dyn ExecutionPlan>, text: &str) -> bool {
    let mut places = Vec::new();
    readers_of(plan, text, &mut Vec::new(), &mut places);
    let Some((first, _)) = places.first() else {
        return true;
    };
    let (owned, read) = subqueries_in(first);
    if read.is_empty()
        && !displayable(first.as_ref())
            .indent(true)
            .to_string()
            .contains("scalar_subquery(")
    {
        return true;
    }
    if read.is_empty() {
        // A subquery's value printed where no expression was found to
        // read it: etl cannot tell who fills it in.
        return false;
    }
    places.iter().all(|(_, filled)| {
        read.iter()
            .filter(|results| !owned.iter().any(|o| ScalarSubqueryResults::ptr_eq(o, results)))
            .all(|results| filled.iter().any(|f| ScalarSubqueryResults::ptr_eq(f, results)))
    })
}

/// Each place of the subplan `text` in `node`, in the order `replace`
/// meets them, with the scalar subquery values filled in before it runs.
fn readers_of(
    node: &Arc<dyn ExecutionPlan>,
    text: &str,
    filled: &mut Vec<ScalarSubqueryResults>,
    places: &mut Vec<(Arc<dyn ExecutionPlan>, Vec<ScalarSubqueryResults>)>,
) {
    if node.is::<SharedSubplanExec>() {
        return;
    }
    if text_of(node) == text {
        places.push((Arc::clone(node), filled.clone()));
        return;
    }
    let owner = node.downcast_ref::<ScalarSubqueryExec>();
    for (i, child) in node.children().into_iter().enumerate() {
        match owner {
            // Its input runs once its subqueries have their values.
            Some(exec) if i == 0 => {
                filled.push(exec.results().clone());
                readers_of(child, text, filled, places);
                filled.pop();
            }
            _ => readers_of(child, text, filled, places),
        }
    }
}

/// The scalar subquery values the subplan fills in itself, and those its
/// expressions read.
fn subqueries_in(node: &Arc<dyn ExecutionPlan>) -> (Vec<ScalarSubqueryResults>, Vec<ScalarSubqueryResults>) {
    fn reads(expr: &Arc<dyn PhysicalExpr>, read: &mut Vec<ScalarSubqueryResults>) {
        if let Some(subquery) = expr.downcast_ref::<ScalarSubqueryExpr>() {
            read.push(subquery.results().clone());
        }
        for child in expr.children() {
            reads(child, read);
        }
    }
    fn walk(
        node: &Arc<dyn ExecutionPlan>,
        owned: &mut Vec<ScalarSubqueryResults>,
        read: &mut Vec<ScalarSubqueryResults>,
    ) {
        if let Some(exec) = node.downcast_ref::<ScalarSubqueryExec>() {
            owned.push(exec.results().clone());
        }
        let _ = node.apply_expressions(&mut |expr: &Arc<dyn PhysicalExpr>| {
            reads(expr, read);
            Ok(TreeNodeRecursion::Continue)
        });
        for child in node.children() {
            walk(child, owned, read);
        }
    }
    let (mut owned, mut read) = (Vec::new(), Vec::new());
    walk(node, &mut owned, &mut read);
    (owned, read)
}

fn size(node: &Arc<dyn ExecutionPlan>) -> usize {
    1 + node.children().into_iter().map(size).sum::<usize>()
}

fn any_node(node: &Arc<dyn ExecutionPlan>, test: &dyn Fn(&Arc<dyn ExecutionPlan>) -> bool) -> bool {
    test(node) || node.children().into_iter().any(|child| any_node(child, test))
}

/// Whether running `node` once for all its readers gives each of them
/// what running it for each would.
fn shareable(node: &Arc<dyn ExecutionPlan>) -> bool {
    let known = !any_node(node, &|n| !KNOWN.contains(&n.name()) || !identified_scan(n));
    let worth = any_node(node, &|n| WORTH_KEEPING.contains(&n.name()));
    known && worth && !any_node(node, &|n| changes_between_runs(n.as_ref()))
}

/// Whether `node`, when it is a scan, is one `text_of` tells apart from
/// any other: of files, or of rows in memory.
fn identified_scan(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<DataSourceExec>().is_none_or(|scan| {
        let source = scan.data_source();
        source.downcast_ref::<FileScanConfig>().is_some() || source.downcast_ref::<MemorySourceConfig>().is_some()
    })
}

/// A volatile expression or a dynamic filter in `node`'s own expressions.
fn changes_between_runs(node: &dyn ExecutionPlan) -> bool {
    let mut found = false;
    let visit = node.apply_expressions(&mut |expr: &Arc<dyn PhysicalExpr>| {
        found = is_volatile(expr) || has_dynamic_filter(expr);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    // An operator that cannot list its expressions is not shared.
    found || visit.is_err()
}

fn has_dynamic_filter(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.is::<DynamicFilterPhysicalExpr>() || expr.children().into_iter().any(has_dynamic_filter)
}

/// `node` with every subplan whose text is `text` replaced by one shared
/// node (`shared`), counting the places in `readers`.
fn replace(
    node: &Arc<dyn ExecutionPlan>,
    text: &str,
    shared: &mut Option<Arc<SharedSubplanExec>>,
    readers: &mut usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    if node.is::<SharedSubplanExec>() {
        return Ok(Arc::clone(node));
    }
    if text_of(node) == text {
        *readers += 1;
        let one = shared.get_or_insert_with(|| Arc::new(SharedSubplanExec::new(Arc::clone(node), 0)));
        return Ok(Arc::clone(one) as Arc<dyn ExecutionPlan>);
    }
    let children = node.children();
    if children.is_empty() {
        return Ok(Arc::clone(node));
    }
    let mut changed = false;
    let mut new_children = Vec::with_capacity(children.len());
    for child in children {
        let new_child = replace(child, text, shared, readers)?;
        changed |= !Arc::ptr_eq(child, &new_child);
        new_children.push(new_child);
    }
    if changed {
        Arc::clone(node).replace_children(
            new_children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    } else {
        Ok(Arc::clone(node))
    }
}

/// Runs its input once, whichever of its readers asks first, and hands
/// every reader the same rows.
#[derive(Debug)]
pub(crate) struct SharedSubplanExec {
    properties: Arc<PlanProperties>,
    state: Arc<State>,
}

struct State {
    input: Arc<dyn ExecutionPlan>,
    /// The readers of each partition, set once the rule has placed the
    /// node everywhere.
    readers: AtomicUsize,
    /// The run of the input, started by the first reader. It is a task of
    /// its own, so that a reader dropped before the rows are kept (a join
    /// whose other side came out empty) stops nothing the others wait
    /// for; dropping the plan stops it.
    run: Mutex<Option<Run>>,
    metrics: ExecutionPlanMetricsSet,
}

type Run = Shared<BoxFuture<'static, std::result::Result<Arc<Vec<Mutex<Slot>>>, Arc<DataFusionError>>>>;

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("input", &self.input.name())
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

/// One partition's rows and the readers still to read them.
struct Slot {
    rows: Option<Arc<Kept>>,
    left: usize,
}

enum Kept {
    /// In memory, counted in the pool until the last reader is done.
    Memory {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        _reservation: MemoryReservation,
    },
    /// In a spill file (none when the partition had no rows).
    Disk {
        file: Option<Arc<dyn SpillFile>>,
        manager: SpillManager,
    },
}

impl SharedSubplanExec {
    fn new(input: Arc<dyn ExecutionPlan>, readers: usize) -> SharedSubplanExec {
        let of_input = input.properties();
        // Rows come out once the whole input has been read.
        let properties = PlanProperties::new(
            of_input.eq_properties.clone(),
            of_input.partitioning.clone(),
            EmissionType::Final,
            of_input.boundedness,
        );
        SharedSubplanExec {
            properties: Arc::new(properties),
            state: Arc::new(State {
                input,
                readers: AtomicUsize::new(readers),
                run: Mutex::new(None),
                metrics: ExecutionPlanMetricsSet::new(),
            }),
        }
    }

    fn readers(&self) -> usize {
        self.state.readers.load(Ordering::Relaxed)
    }
}

impl State {
    /// Partition `partition`'s rows, running the input first when no
    /// reader has.
    async fn read(self: Arc<Self>, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let run = {
            let mut run = self
                .run
                .lock()
                .map_err(|_| internal_datafusion_err!("a reader of a shared subplan panicked"))?;
            let run = run.get_or_insert_with(|| {
                let readers = self.readers.load(Ordering::Relaxed).max(1);
                let task = SpawnedTask::spawn(keep_all(
                    Arc::clone(&self.input),
                    self.metrics.clone(),
                    readers,
                    context,
                ));
                async move {
                    match task.join_unwind().await {
                        Ok(kept) => kept.map(Arc::new).map_err(Arc::new),
                        Err(e) => Err(Arc::new(DataFusionError::ExecutionJoin(Box::new(e)))),
                    }
                }
                .boxed()
                .shared()
            });
            run.clone()
        };
        let slots = run.await.map_err(DataFusionError::Shared)?;
        let kept = {
            let mut slot = slots[partition]
                .lock()
                .map_err(|_| internal_datafusion_err!("a reader of a shared subplan panicked"))?;
            let kept = slot.rows.clone().ok_or_else(|| {
                internal_datafusion_err!("partition {partition} of a shared subplan read more often than planned")
            })?;
            slot.left = slot.left.saturating_sub(1);
            if slot.left == 0 {
                slot.rows = None;
            }
            kept
        };
        Self::rows_of(kept)
    }

    /// A stream of the rows `kept` holds.
    fn rows_of(kept: Arc<Kept>) -> Result<SendableRecordBatchStream> {
        match kept.as_ref() {
            Kept::Memory { schema, batches, .. } => {
                let schema = Arc::clone(schema);
                // Each batch handed out holds `kept`, and with it the
                // reservation, until the stream is dropped.
                let batches = batches.clone().into_iter().map(move |batch| {
                    let _held = &kept;
                    Ok(batch)
                });
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream::iter(batches))))
            }
            Kept::Disk { file: None, manager } => Ok(Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(manager.schema()),
                stream::empty(),
            ))),
            Kept::Disk {
                file: Some(file),
                manager,
            } => manager.read_spill_as_stream(Arc::clone(file), None),
        }
    }
}

/// Runs every partition of the input at once, each in its own task.
async fn keep_all(
    input: Arc<dyn ExecutionPlan>,
    metrics: ExecutionPlanMetricsSet,
    readers: usize,
    context: Arc<TaskContext>,
) -> Result<Vec<Mutex<Slot>>> {
    let partitions = input.properties().partitioning.partition_count();
    let budget = Arc::new(Budget(AtomicUsize::new(match context.memory_pool().memory_limit() {
        MemoryLimit::Finite(limit) => limit / 4,
        MemoryLimit::Infinite | MemoryLimit::Unknown => UNLIMITED_BUDGET,
    })));
    let mut tasks = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let rows = input.execute(partition, Arc::clone(&context))?;
        let spill = SpillManager::new(
            context.runtime_env(),
            SpillMetrics::new(&metrics, partition),
            input.schema(),
        );
        // It gives way like a sort or an aggregate: past its fair share of
        // a shared pool, its rows go to disk.
        let reservation = MemoryConsumer::new(format!("SharedSubplanExec[{partition}]"))
            .with_can_spill(true)
            .register(context.memory_pool());
        tasks.push(SpawnedTask::spawn(keep(rows, reservation, Arc::clone(&budget), spill)));
    }
    let mut slots = Vec::with_capacity(partitions);
    for task in tasks {
        let kept = task
            .join_unwind()
            .await
            .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
        slots.push(Mutex::new(Slot {
            rows: Some(Arc::new(kept)),
            left: readers,
        }));
    }
    Ok(slots)
}

/// The bytes a shared subplan keeps in memory, over all its partitions,
/// when the build has no memory limit: past them its rows go to disk, so
/// that a large CTE read twice does not hold all its rows where each
/// reader used to stream them.
const UNLIMITED_BUDGET: usize = 1 << 30;

/// What a shared subplan may still keep in memory: a quarter of the memory
/// pool, or `UNLIMITED_BUDGET`, whatever the pool itself would grant.
struct Budget(AtomicUsize);

impl Budget {
    fn take(&self, bytes: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(bytes))
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Reads one partition of the input to its end: into memory while the
/// budget and the pool grant it, then into a spill file.
async fn keep(
    mut input: SendableRecordBatchStream,
    reservation: MemoryReservation,
    budget: Arc<Budget>,
    spill: SpillManager,
) -> Result<Kept> {
    let mut batches = Vec::new();
    let mut buffers = HashSet::new();
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let bytes = new_bytes(&batch, &mut buffers);
        if budget.take(bytes) {
            if reservation.try_grow(bytes).is_ok() {
                batches.push(batch);
                continue;
            }
            budget.give(bytes);
        }
        // Full: this partition's rows go to disk.
        let mut file = spill.create_in_progress_file("SharedSubplanExec")?;
        for kept in batches.drain(..).chain(std::iter::once(batch)) {
            file.append_batch(&kept)?;
        }
        budget.give(reservation.size());
        reservation.free();
        while let Some(batch) = input.next().await {
            file.append_batch(&batch?)?;
        }
        return Ok(Kept::Disk {
            file: file.finish()?,
            manager: spill,
        });
    }
    Ok(Kept::Memory {
        schema: input.schema(),
        batches,
        _reservation: reservation,
    })
}

/// The bytes of `batch`'s buffers not already counted in `seen`: an
/// aggregate hands out its result as slices of one set of arrays, and each
/// slice's own size would count all of them.
fn new_bytes(batch: &RecordBatch, seen: &mut HashSet<usize>) -> usize {
    fn of(data: &ArrayData, seen: &mut HashSet<usize>) -> usize {
        let mut bytes = 0;
        let nulls = data.nulls().map(|n| n.buffer());
        for buffer in data.buffers().iter().chain(nulls) {
            if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                bytes += buffer.capacity();
            }
        }
        bytes + data.child_data().iter().map(|child| of(child, seen)).sum::<usize>()
    }
    batch.columns().iter().map(|column| of(&column.to_data(), seen)).sum()
}

impl DisplayAs for SharedSubplanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedSubplanExec: readers={}", self.readers())
    }
}

impl ExecutionPlan for SharedSubplanExec {
    fn name(&self) -> &str {
        "SharedSubplanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.state.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|children| internal_datafusion_err!("SharedSubplanExec takes 1 input, not {}", children.len()))?;
        // A new node runs its input on its own; the readers placed with
        // this one are still counted, so that none finds its rows gone.
        Ok(Arc::new(SharedSubplanExec::new(input, self.readers())))
    }

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SharedSubplanExec::new(
            Arc::clone(&self.state.input),
            self.readers(),
        )))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let partitions = self.state.input.properties().partitioning.partition_count();
        if crate::lake::failpoint_armed("shared-subplan-error") {
            return internal_err!("a shared subplan failed on purpose (ETL_FAILPOINT=shared-subplan-error)");
        }
        if partition >= partitions {
            return internal_err!("SharedSubplanExec has {partitions} partitions, not {}", partition + 1);
        }
        let state = Arc::clone(&self.state);
        let batches = stream::once(state.read(partition, context)).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), batches)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.state.metrics.clone_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, UnboundedMemoryPool};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::memory::MemoryStream;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::plan::{SessionOptions, new_session};

    /// Customers 0..500 with orders in months `(v * 7919) % 12`.
    async fn orders() -> SessionContext {
        let ctx = new_session(&SessionOptions {
            target_partitions: Some(2),
            ..SessionOptions::default()
        })
        .unwrap();
        ctx.sql(
            "create table orders as select value % 500 as customer_id, (value * 7919) % 12 as month \
             from generate_series(1, 20000)",
        )
        .await
        .unwrap();
        ctx
    }

    /// Per first month: the customers whose first order it is, and all
    /// their orders, counted here from the same rows.
    fn cohorts() -> BTreeMap<i64, (i64, i64)> {
        let mut first = BTreeMap::new();
        let mut orders = BTreeMap::new();
        for v in 1..=20000i64 {
            let (customer, month) = (v % 500, (v * 7919) % 12);
            first
                .entry(customer)
                .and_modify(|m: &mut i64| *m = (*m).min(month))
                .or_insert(month);
            *orders.entry(customer).or_insert(0) += 1;
        }
        let mut cohorts = BTreeMap::new();
        for (customer, month) in first {
            let cohort = cohorts.entry(month).or_insert((0, 0));
            cohort.0 += 1;
            cohort.1 += orders[&customer];
        }
        cohorts
    }

    const COHORTS: &str = "
        with firsts as (
            select customer_id, min(month) as first_month from orders group by customer_id
        ),
        sizes as (select first_month, count(*) as customers from firsts group by first_month),
        activity as (
            select f.first_month, count(*) as orders
            from orders o join firsts f on f.customer_id = o.customer_id
            group by f.first_month
        )
        select s.first_month, s.customers, a.orders
        from sizes s join activity a on a.first_month = s.first_month
        order by s.first_month";

    fn plan_text(plan: &Arc<dyn ExecutionPlan>) -> String {
        displayable(plan.as_ref()).indent(true).to_string()
    }

    fn column(batches: &[RecordBatch], index: usize) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let column = b
                    .column(index)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("an Int64 column");
                column.iter().map(|v| v.expect("no nulls")).collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_cte_read_twice_runs_once_and_both_readers_get_all_its_rows() {
        let ctx = orders().await;
        let plan = ctx.sql(COHORTS).await.unwrap().create_physical_plan().await.unwrap();
        let text = plan_text(&plan);
        assert_eq!(text.matches("SharedSubplanExec: readers=2").count(), 2, "{text}");
        // One aggregate of the orders by customer under both places: the
        // first month of each customer is computed once.
        let shared = text.split("SharedSubplanExec").nth(1).unwrap_or_default();
        assert!(
            shared.contains("gby=[customer_id@0 as customer_id], aggr=[min(orders.month)]"),
            "{text}"
        );

        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        let expected = cohorts();
        assert_eq!(column(&batches, 0), expected.keys().copied().collect::<Vec<_>>());
        assert_eq!(column(&batches, 1), expected.values().map(|c| c.0).collect::<Vec<_>>());
        assert_eq!(column(&batches, 2), expected.values().map(|c| c.1).collect::<Vec<_>>());
        assert_eq!(column(&batches, 1).iter().sum::<i64>(), 500);
        assert_eq!(column(&batches, 2).iter().sum::<i64>(), 20000);
    }

    #[tokio::test]
    async fn a_reader_dropped_while_the_rows_are_made_stops_nothing_the_others_need() {
        let ctx = orders().await;
        let plan = ctx.sql(COHORTS).await.unwrap().create_physical_plan().await.unwrap();
        let mut shared = vec![plan];
        while !shared[0].is::<SharedSubplanExec>() {
            let children: Vec<_> = shared.remove(0).children().into_iter().cloned().collect();
            shared.extend(children);
        }
        let shared = shared.remove(0);
        let mut first = shared.execute(0, ctx.task_ctx()).unwrap();
        // Polled once, which starts the run, then dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), first.next()).await;
        drop(first);
        let mut customers = 0;
        for partition in 0..2 {
            let rows: Vec<RecordBatch> = shared
                .execute(partition, ctx.task_ctx())
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            customers += rows.iter().map(RecordBatch::num_rows).sum::<usize>();
        }
        assert_eq!(customers, 500);
    }

    #[tokio::test]
    async fn a_sql_header_turns_sharing_off_for_its_model_alone() {
        let build = orders().await;
        let model = crate::plan::session_with_header(&build, "SET etl.share_repeated_subplans = false")
            .await
            .map_err(|d| d.render(std::path::Path::new(".")))
            .unwrap();
        let plan = model.sql(COHORTS).await.unwrap().create_physical_plan().await.unwrap();
        assert!(!plan_text(&plan).contains("SharedSubplanExec"), "{}", plan_text(&plan));
        let batches = collect(plan, model.task_ctx()).await.unwrap();
        assert_eq!(column(&batches, 2), cohorts().values().map(|c| c.1).collect::<Vec<_>>());

        let plan = build.sql(COHORTS).await.unwrap().create_physical_plan().await.unwrap();
        assert!(
            plan_text(&plan).contains("SharedSubplanExec"),
            "the build's session still shares"
        );
    }

    #[tokio::test]
    async fn tables_of_the_same_shape_and_size_are_told_apart() {
        let ctx = orders().await;
        ctx.sql("create table a as select value % 10 as k, value as v from generate_series(1, 1000)")
            .await
            .unwrap();
        ctx.sql("create table b as select value % 10 as k, value * 2 as v from generate_series(1, 1000)")
            .await
            .unwrap();
        let sql = "select x.k, x.total, y.total as other \
                   from (select k, sum(v) as total from a t group by k) x \
                   join (select k, sum(v) as total from b t group by k) y on x.k = y.k order by x.k";
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        assert!(!plan_text(&plan).contains("SharedSubplanExec"), "{}", plan_text(&plan));
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        let (totals, others) = (column(&batches, 1), column(&batches, 2));
        assert_eq!(totals.iter().sum::<i64>(), 500_500);
        assert_eq!(others.iter().sum::<i64>(), 1_001_000);
    }

    /// One row, `x = 3`: the second scan of it gives it once `gate` has a
    /// permit, the others at once.
    #[derive(Debug)]
    struct Gated {
        schema: SchemaRef,
        gate: Arc<tokio::sync::Semaphore>,
        scans: AtomicUsize,
    }

    impl datafusion::physical_plan::streaming::PartitionStream for Gated {
        fn schema(&self) -> &SchemaRef {
            &self.schema
        }

        fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
            let (schema, gate) = (Arc::clone(&self.schema), Arc::clone(&self.gate));
            let waits = self.scans.fetch_add(1, Ordering::SeqCst) == 1;
            let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![3]))]);
            let rows = stream::once(async move {
                if waits {
                    let _open = gate.acquire().await;
                }
                batch.map_err(Into::into)
            });
            Box::pin(RecordBatchStreamAdapter::new(schema, rows))
        }
    }

    /// The texts of the subplans a plan shares.
    fn shared_subplans(text: &str) -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("SharedSubplanExec") {
                let below: Vec<&str> = lines[i + 1..]
                    .iter()
                    .take_while(|l| indent(l) > indent(line))
                    .copied()
                    .collect();
                out.push(below.join("\n"));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_subplan_whose_scalar_subquery_is_filled_in_above_it_is_not_shared() {
        // See: issue 23 (`ScalarSubqueryExpr evaluated before the subquery
        // was executed` in product_days, 3 nights in 24). `busy` reads the
        // value of `(select x from gate)`, which the top of the query fills
        // in; `(select max(n) from busy)` runs before the top's input, so a
        // `busy` shared with it would read the value before it exists. The
        // top's scan of `gate` waits, the subquery's copy does not (the
        // top runs its subqueries in order, and the one in its projection
        // comes first: it starts the copy's scan first, through its own
        // level): that ordering is certain.
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let ctx = orders().await;
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let gated = Gated {
            schema: Arc::clone(&schema),
            gate: Arc::clone(&gate),
            scans: AtomicUsize::new(0),
        };
        let table = datafusion::catalog::streaming::StreamingTable::try_new(schema, vec![Arc::new(gated)]).unwrap();
        ctx.register_table("gate", Arc::new(table)).unwrap();
        let sql = "
            with recent as (
                select customer_id, month from orders where month >= (select x from gate)
            ),
            busy as (select customer_id, count(*) as n from recent group by customer_id)
            select (select max(n) from busy) as most, count(*) as customers, sum(n) as orders from busy";
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let text = plan_text(&plan);
        for shared in shared_subplans(&text) {
            assert!(!shared.contains("scalar_subquery"), "{text}");
        }
        let opener = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                gate.add_permits(100);
            })
        };
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        opener.await.unwrap();
        let (mut per_customer, mut orders) = (BTreeMap::new(), 0);
        for v in 1..=20000i64 {
            if (v * 7919) % 12 >= 3 {
                *per_customer.entry(v % 500).or_insert(0i64) += 1;
                orders += 1;
            }
        }
        assert_eq!(column(&batches, 0), [*per_customer.values().max().unwrap()]);
        assert_eq!(column(&batches, 1), [per_customer.len() as i64]);
        assert_eq!(column(&batches, 2), [orders]);

        // Read twice by the top's input, both readers run after the value
        // is filled in: that part is still shared.
        let both_below = "
            with busy as (
                select customer_id, count(*) as n from orders
                where month >= (select min(month) + 3 from orders) group by customer_id
            )
            select a.customer_id, a.n from busy a join busy b on a.customer_id = b.customer_id and a.n = b.n";
        let plan = ctx.sql(both_below).await.unwrap().create_physical_plan().await.unwrap();
        let text = plan_text(&plan);
        assert!(
            shared_subplans(&text).iter().any(|s| s.contains("scalar_subquery")),
            "{text}"
        );
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        assert_eq!(column(&batches, 1).iter().sum::<i64>(), orders);
    }

    #[tokio::test]
    async fn subplans_that_may_differ_between_runs_are_not_shared() {
        let ctx = orders().await;
        let volatile = "with r as (select customer_id, min(month + random()) as m from orders group by customer_id) \
                        select a.customer_id from r a join r b on a.customer_id = b.customer_id and a.m = b.m";
        let plan = ctx.sql(volatile).await.unwrap().create_physical_plan().await.unwrap();
        assert!(!plan_text(&plan).contains("SharedSubplanExec"), "{}", plan_text(&plan));

        // A repeated scan without an aggregate is read twice, not held.
        let scans = "select a.customer_id from orders a join orders b on a.customer_id = b.customer_id";
        let plan = ctx.sql(scans).await.unwrap().create_physical_plan().await.unwrap();
        assert!(!plan_text(&plan).contains("SharedSubplanExec"), "{}", plan_text(&plan));
    }

    /// Keeps `batches` as one partition with `pool` and `budget`, and reads
    /// them back; whether they went to disk.
    async fn kept(batches: &[RecordBatch], pool: Arc<dyn MemoryPool>, budget: usize) -> (Vec<RecordBatch>, bool) {
        let schema = batches[0].schema();
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&pool))
            .build_arc()
            .unwrap();
        let metrics = ExecutionPlanMetricsSet::new();
        let spill = SpillManager::new(runtime, SpillMetrics::new(&metrics, 0), Arc::clone(&schema));
        let input = MemoryStream::try_new(batches.to_vec(), schema, None).unwrap();
        let reservation = MemoryConsumer::new("test").register(&pool);
        let left = Arc::new(Budget(AtomicUsize::new(budget)));
        let kept = keep(Box::pin(input), reservation, Arc::clone(&left), spill)
            .await
            .unwrap();
        let on_disk = matches!(kept, Kept::Disk { .. });
        if on_disk {
            // What the rows held before they went to disk is given back.
            assert_eq!(pool.reserved(), 0);
            assert_eq!(left.0.load(Ordering::Relaxed), budget);
        } else {
            assert_eq!(pool.reserved(), budget - left.0.load(Ordering::Relaxed));
        }
        let rows = State::rows_of(Arc::new(kept)).unwrap().try_collect().await.unwrap();
        (rows, on_disk)
    }

    #[tokio::test]
    async fn rows_past_the_pool_or_the_budget_go_to_a_spill_file_and_read_back_whole() {
        let ctx = orders().await;
        let batches = ctx
            .sql("select customer_id, month from orders order by customer_id, month")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let cases: [(Arc<dyn MemoryPool>, usize, bool); 3] = [
            (Arc::new(GreedyMemoryPool::new(bytes / 3)), usize::MAX / 2, true),
            (Arc::new(UnboundedMemoryPool::default()), bytes / 3, true),
            (Arc::new(UnboundedMemoryPool::default()), bytes * 2, false),
        ];
        for (pool, budget, to_disk) in cases {
            let (read, on_disk) = kept(&batches, pool, budget).await;
            assert_eq!(on_disk, to_disk, "pool or budget of a third: to disk");
            assert_eq!(column(&read, 0), column(&batches, 0));
            assert_eq!(column(&read, 1), column(&batches, 1));
        }
    }

    #[test]
    fn slices_of_one_batch_count_its_buffers_once() {
        let values = Int64Array::from_iter_values(0..10_000);
        let batch = RecordBatch::try_from_iter([("v", Arc::new(values) as Arc<dyn Array>)]).unwrap();
        let whole = new_bytes(&batch, &mut HashSet::new());
        assert!(whole >= 80_000, "{whole}");
        let mut seen = HashSet::new();
        let sliced: usize = (0..10)
            .map(|i| new_bytes(&batch.slice(i * 1000, 1000), &mut seen))
            .sum();
        assert_eq!(sliced, whole);
    }
}
