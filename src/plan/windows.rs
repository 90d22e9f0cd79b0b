//! Window functions over many small partitions, evaluated a chunk of whole
//! partitions at a time.
//!
//! DataFusion evaluates a window partition by partition: for each one it
//! slices the batch, makes an evaluator or accumulator, computes its rows
//! as `ScalarValue`s and concatenates the pieces. Over few large partitions
//! that costs nothing; over one partition per event or per order (the
//! deduplication of `row_number() over (partition by event_id ...)`, a
//! visitor's clicks of a day) it is most of the query: 3.3M events took
//! 10.8 s in `BoundedWindowAggExec` and 5 s in `WindowAggExec`, where the
//! sort before them took 1.7 s.
//!
//! [`PartitionWindowExec`] does the same work for the functions models use
//! most, with the input already sorted by partition and order keys as
//! DataFusion's operators require it: it buffers input until a batch
//! starts a new partition, then evaluates every partition of the buffered
//! rows at once, each function in one typed pass over the rows with the
//! partitions' (and peer groups') boundaries found by arrow's `partition`
//! kernel. Supported, with DataFusion's results to the bit:
//!
//! - `row_number()`, `rank()`, `dense_rank()`;
//! - `lag`/`lead` with a literal offset and default, without `IGNORE NULLS`;
//! - `count`, `sum` (integers and decimals: exact, in any order), `min` and
//!   `max` (integers, decimals, dates, times, timestamps) without `DISTINCT`
//!   or `FILTER`, over the whole partition, or from its start to the
//!   current row (with its peers under `RANGE`) or to `n PRECEDING` rows.
//!
//! Anything else — other functions, floats, strings in `min`/`max`, other
//! frames, no `PARTITION BY`, an input DataFusion did not sort — keeps
//! DataFusion's operator. `etl.whole_partition_windows = false` turns the
//! rule off, and a node whose plan fails with an error of DataFusion's own
//! runs again without etl's rules.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, PrimitiveArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::kernels::partition::partition;
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{
    ArrowNativeTypeOp, DataType, Date32Type, Date64Type, Decimal128Type, Int8Type, Int16Type, Int32Type, Int64Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{ScalarValue, internal_datafusion_err};
use datafusion::error::Result;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::window::{
    PlainAggregateWindowExpr, SlidingAggregateWindowExpr, StandardWindowExpr, WindowExpr,
};
use datafusion::physical_expr::{
    LexRequirement, OrderingRequirements, PhysicalExpr, PhysicalSortExpr, PhysicalSortRequirement,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::expressions::Literal;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputDistributionRequirements,
    InputOrderMode, PlanProperties,
};
use futures::StreamExt;

use super::options::EtlOptions;

/// The rule's name, as `etl_rules` lists it.
pub(crate) const WHOLE_PARTITION_WINDOWS_RULE: &str = "whole_partition_windows";

/// Replaces DataFusion's window operators by [`PartitionWindowExec`] where
/// every function of the operator is one it evaluates.
#[derive(Debug)]
pub(crate) struct WholePartitionWindows;

impl PhysicalOptimizerRule for WholePartitionWindows {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let on = config
            .extensions
            .get::<EtlOptions>()
            .is_none_or(|etl| etl.whole_partition_windows);
        if !on {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            Ok(match PartitionWindowExec::replacing(&node)? {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        WHOLE_PARTITION_WINDOWS_RULE
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Which rows of its partition a window aggregate reads, for the row it is
/// computed for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Frame {
    /// Every row of the partition.
    Partition,
    /// From the partition's first row to `preceding` rows before the
    /// current one (0: the current row), and with `peers`, every row
    /// sharing the current row's order keys.
    UpTo { preceding: usize, peers: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregate {
    Count,
    Sum,
    Min,
    Max,
}

/// One window function of the operator, as this operator evaluates it.
#[derive(Debug, Clone)]
enum Function {
    RowNumber,
    Rank,
    DenseRank,
    /// `lag` (`offset` > 0: that many rows before) or `lead` (< 0: after).
    Shift {
        value: Arc<dyn PhysicalExpr>,
        offset: i64,
        default: Option<ScalarValue>,
    },
    Aggregate {
        kind: Aggregate,
        arg: Arc<dyn PhysicalExpr>,
        frame: Frame,
        output: DataType,
    },
}

impl Function {
    /// What `expr` computes, if this operator computes it exactly as
    /// DataFusion does; `None` leaves the window to DataFusion.
    fn of(expr: &dyn WindowExpr, input: &datafusion::arrow::datatypes::Schema) -> Option<Function> {
        let output = expr.field().ok()?.data_type().clone();
        if let Some(standard) = expr.as_any().downcast_ref::<StandardWindowExpr>() {
            let udf = standard
                .get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()?;
            // Whether DataFusion reversed the function to read its input
            // backwards, or skips nulls, is private to it but printed.
            let debug = format!("{udf:?}");
            if !debug.contains("is_reversed: false") || !debug.contains("ignore_nulls: false") {
                return None;
            }
            return match udf.fun().name() {
                "row_number" if output == DataType::UInt64 => Some(Function::RowNumber),
                "rank" if output == DataType::UInt64 => Some(Function::Rank),
                "dense_rank" if output == DataType::UInt64 => Some(Function::DenseRank),
                name @ ("lag" | "lead") => {
                    let args = udf.args();
                    let value = Arc::clone(args.first()?);
                    if value.data_type(input).ok()? != output {
                        return None;
                    }
                    let offset = match args.get(1) {
                        None => 1,
                        Some(arg) => match arg.downcast_ref::<Literal>()?.value() {
                            v if v.is_null() => 0,
                            v => match v.cast_to(&DataType::Int64).ok()? {
                                ScalarValue::Int64(Some(n)) => n,
                                _ => return None,
                            },
                        },
                    };
                    let default = match args.get(2) {
                        None => None,
                        Some(arg) => match arg.downcast_ref::<Literal>()?.value() {
                            v if v.is_null() => None,
                            v => Some(v.cast_to(&output).ok()?),
                        },
                    };
                    let offset = if name == "lag" { offset } else { offset.checked_neg()? };
                    Some(Function::Shift { value, offset, default })
                }
                _ => None,
            };
        }
        let aggregate = if let Some(plain) = expr.as_any().downcast_ref::<PlainAggregateWindowExpr>() {
            plain.get_aggregate_expr()
        } else if let Some(sliding) = expr.as_any().downcast_ref::<SlidingAggregateWindowExpr>() {
            sliding.get_aggregate_expr()
        } else {
            return None;
        };
        // The `FILTER` clause is private too, and printed last.
        let filtered = !format!("{expr:?}").ends_with("filter: None }");
        if filtered || aggregate.is_distinct() || aggregate.ignore_nulls() || !aggregate.order_bys().is_empty() {
            return None;
        }
        let [arg] = <[_; 1]>::try_from(aggregate.expressions()).ok()?;
        let arg_type = arg.data_type(input).ok()?;
        let kind = match aggregate.fun().name() {
            "count" if output == DataType::Int64 => Aggregate::Count,
            "sum" if exact_sum(&arg_type, &output) => Aggregate::Sum,
            "min" if ordered_type(&arg_type) && arg_type == output => Aggregate::Min,
            "max" if ordered_type(&arg_type) && arg_type == output => Aggregate::Max,
            _ => return None,
        };
        let frame = expr.get_window_frame();
        let unbounded = |bound: &ScalarValue| bound.is_null();
        if !matches!(&frame.start_bound, WindowFrameBound::Preceding(b) if unbounded(b)) {
            return None;
        }
        let frame = match (&frame.end_bound, frame.units) {
            (WindowFrameBound::Following(b), _) if unbounded(b) => Frame::Partition,
            (_, WindowFrameUnits::Groups) => return None,
            // Without ORDER BY every row of the partition is a peer.
            (WindowFrameBound::CurrentRow, WindowFrameUnits::Range) if expr.order_by().is_empty() => Frame::Partition,
            (WindowFrameBound::CurrentRow, units) => Frame::UpTo {
                preceding: 0,
                peers: units == WindowFrameUnits::Range,
            },
            (WindowFrameBound::Preceding(n), WindowFrameUnits::Rows) if !n.is_null() => {
                match n.cast_to(&DataType::UInt64).ok()? {
                    ScalarValue::UInt64(Some(n)) => Frame::UpTo {
                        preceding: usize::try_from(n).ok()?,
                        peers: false,
                    },
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(Function::Aggregate {
            kind,
            arg,
            frame,
            output,
        })
    }

    /// Whether it needs the groups of rows sharing their order keys.
    fn reads_peers(&self) -> bool {
        matches!(
            self,
            Function::Rank
                | Function::DenseRank
                | Function::Aggregate {
                    frame: Frame::UpTo { peers: true, .. },
                    ..
                }
        )
    }
}

/// A sum whose result does not depend on the order its values are added
/// in: integers and decimals, which DataFusion adds wrapping.
fn exact_sum(arg: &DataType, output: &DataType) -> bool {
    matches!(
        (arg, output),
        (
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64,
            DataType::Int64
        ) | (
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64,
            DataType::UInt64
        ) | (DataType::Decimal128(_, _), DataType::Decimal128(_, _))
    )
}

/// The types `min` and `max` are computed for here: totally ordered
/// primitives (no floats, whose NaNs and signed zeros DataFusion orders its
/// own way).
fn ordered_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Decimal128(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
    )
}

/// DataFusion's window operator, its functions evaluated a chunk of whole
/// partitions at a time (see the module's documentation).
#[derive(Debug)]
pub struct PartitionWindowExec {
    /// The operator it replaces: its schema, properties and requirements
    /// on the input are this one's.
    original: Arc<dyn ExecutionPlan>,
    input: Arc<dyn ExecutionPlan>,
    names: Vec<String>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<PhysicalSortExpr>,
    functions: Arc<[Function]>,
    metrics: ExecutionPlanMetricsSet,
}

impl PartitionWindowExec {
    /// This operator in place of `node`, when `node` is a window operator
    /// over sorted input whose functions it all evaluates.
    fn replacing(node: &Arc<dyn ExecutionPlan>) -> Result<Option<PartitionWindowExec>> {
        let (exprs, input) = if let Some(window) = node.downcast_ref::<BoundedWindowAggExec>() {
            if window.input_order_mode != InputOrderMode::Sorted {
                return Ok(None);
            }
            (window.window_expr(), window.input())
        } else if let Some(window) = node.downcast_ref::<WindowAggExec>() {
            (window.window_expr(), window.input())
        } else {
            return Ok(None);
        };
        let Some(first) = exprs.first() else {
            return Ok(None);
        };
        let (partition_by, order_by) = (first.partition_by(), first.order_by());
        if partition_by.is_empty() {
            // One partition: DataFusion's per-partition cost is paid once.
            return Ok(None);
        }
        let same_window = exprs.iter().all(|e| {
            e.partition_by().len() == partition_by.len()
                && e.partition_by().iter().zip(partition_by).all(|(a, b)| a.eq(b))
                && e.order_by() == order_by
        });
        if !same_window {
            return Ok(None);
        }
        let schema = input.schema();
        let Some(functions) = exprs
            .iter()
            .map(|e| Function::of(e.as_ref(), &schema))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        // Rows of a partition together, in the window's order within it.
        let required = partition_by
            .iter()
            .map(|e| PhysicalSortRequirement::new(Arc::clone(e), None))
            .chain(
                order_by
                    .iter()
                    .map(|s| PhysicalSortRequirement::new(Arc::clone(&s.expr), Some(s.options))),
            );
        if !input.equivalence_properties().ordering_satisfy_requirement(required)? {
            return Ok(None);
        }
        Ok(Some(PartitionWindowExec {
            original: Arc::clone(node),
            input: Arc::clone(input),
            names: exprs.iter().map(|e| e.name().to_owned()).collect(),
            partition_by: partition_by.to_vec(),
            order_by: order_by.to_vec(),
            functions: functions.into(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl DisplayAs for PartitionWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PartitionWindowExec: wdw=[{}]", self.names.join(", "))
    }
}

impl ExecutionPlan for PartitionWindowExec {
    fn name(&self) -> &str {
        "PartitionWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.original.properties()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.original.input_distribution_requirements()
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        let required: Vec<PhysicalSortRequirement> = self
            .partition_by
            .iter()
            .map(|e| PhysicalSortRequirement::new(Arc::clone(e), None))
            .chain(
                self.order_by
                    .iter()
                    .map(|s| PhysicalSortRequirement::new(Arc::clone(&s.expr), Some(s.options))),
            )
            .collect();
        vec![LexRequirement::new(required).map(OrderingRequirements::new)]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.original.apply_expressions(f)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let original = Arc::clone(&self.original)
            .replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))?;
        // Over an input that no longer meets its conditions, DataFusion's
        // operator stays.
        Ok(match PartitionWindowExec::replacing(&original)? {
            Some(exec) => Arc::new(exec),
            None => original,
        })
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if crate::lake::failpoint_armed("partition-window-error") {
            return Err(internal_datafusion_err!(
                "a window operator failed on purpose (ETL_FAILPOINT=partition-window-error)"
            ));
        }
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let reservation =
            MemoryConsumer::new(format!("PartitionWindowExec[{partition}]")).register(context.memory_pool());
        let state = Chunks {
            schema: self.schema(),
            partition_by: self.partition_by.clone(),
            order_by: self.order_by.iter().map(|s| Arc::clone(&s.expr)).collect(),
            functions: Arc::clone(&self.functions),
            pending: Vec::new(),
            reservation,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        let stream = futures::stream::unfold(Some((input, state)), |running| async move {
            let (mut input, mut state) = running?;
            loop {
                match input.next().await {
                    Some(Ok(batch)) => match state.push(batch) {
                        Ok(Some(out)) => return Some((Ok(out), Some((input, state)))),
                        Ok(None) => {}
                        Err(e) => return Some((Err(e), None)),
                    },
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        return match state.finish() {
                            Ok(Some(out)) => Some((Ok(out), None)),
                            Ok(None) => None,
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One output partition's stream: the rows buffered since the last chunk
/// of whole partitions went out.
struct Chunks {
    schema: datafusion::arrow::datatypes::SchemaRef,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<Arc<dyn PhysicalExpr>>,
    functions: Arc<[Function]>,
    pending: Vec<RecordBatch>,
    reservation: MemoryReservation,
    metrics: BaselineMetrics,
}

impl Chunks {
    /// Takes `batch`; when it starts a new partition, the rows before that
    /// partition (the buffered ones and the batch's first rows) are whole
    /// partitions and come out evaluated.
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let timer = self.metrics.elapsed_compute().timer();
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let keys = evaluate(&self.partition_by, &batch)?;
        let ranges = partition(&keys)?.ranges();
        let last_start = ranges.last().map_or(0, |r| r.start);
        let out = if last_start == 0 {
            // One key throughout: the partition may go on, or the batch
            // may start a new one; the next boundary tells.
            self.pending.push(batch);
            None
        } else {
            let head = batch.slice(0, last_start);
            let tail = compact_views(&batch.slice(last_start, batch.num_rows() - last_start))?;
            let mut chunk = std::mem::take(&mut self.pending);
            chunk.push(head);
            self.pending.push(tail);
            Some(compact_views(&self.evaluate_chunk(chunk)?)?)
        };
        let held: usize = self.pending.iter().map(RecordBatch::get_array_memory_size).sum();
        self.reservation.try_resize(held)?;
        timer.done();
        if let Some(b) = &out {
            self.metrics.record_output(b.num_rows());
        }
        Ok(out)
    }

    /// The last rows, once the input has ended.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        let timer = self.metrics.elapsed_compute().timer();
        let chunk = std::mem::take(&mut self.pending);
        let out = if chunk.is_empty() {
            None
        } else {
            Some(compact_views(&self.evaluate_chunk(chunk)?)?)
        };
        self.reservation.free();
        timer.done();
        self.metrics.done();
        if let Some(b) = &out {
            self.metrics.record_output(b.num_rows());
        }
        Ok(out)
    }

    /// The rows of `batches`, whole partitions, with every function's
    /// column after the input's.
    fn evaluate_chunk(&self, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
        let batch = match <[_; 1]>::try_from(batches) {
            Ok([one]) => one,
            Err(batches) => concat_batches(&batches[0].schema(), &batches)?,
        };
        let keys = evaluate(&self.partition_by, &batch)?;
        let partitions = partition(&keys)?.ranges();
        let peers = if self.functions.iter().any(Function::reads_peers) {
            let mut columns = keys;
            columns.extend(evaluate(&self.order_by, &batch)?);
            Some(partition(&columns)?.ranges())
        } else {
            None
        };
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        for function in self.functions.iter() {
            let peers = peers.as_deref().unwrap_or_default();
            columns.push(evaluate_function(function, &batch, rows, &partitions, peers)?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// `batch` with its string and binary views copied into buffers of their
/// own when the ones they point into are mostly other rows' (a sort's
/// output points into the whole sorted run). Otherwise this operator's
/// reservation, and the next sort's, count the whole run for every batch:
/// on 5M orders under `--memory-limit 1GiB`, a sort above two windows
/// asked for 258 MB to take one batch of 8,192 rows.
fn compact_views(batch: &RecordBatch) -> Result<RecordBatch> {
    /// Below this, copying costs more than what it frees.
    const SMALL: usize = 1 << 16;
    fn wasteful<T: datafusion::arrow::datatypes::ByteViewType + ?Sized>(
        array: &datafusion::arrow::array::GenericByteViewArray<T>,
    ) -> bool {
        let held: usize = array.data_buffers().iter().map(|b| b.capacity()).sum();
        held > SMALL && held > 2 * array.total_buffer_bytes_used()
    }
    let mut changed = false;
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            if let Some(strings) = column.as_string_view_opt() {
                if wasteful(strings) {
                    changed = true;
                    return Arc::new(strings.gc()) as ArrayRef;
                }
            } else if let Some(bytes) = column.as_binary_view_opt() {
                if wasteful(bytes) {
                    changed = true;
                    return Arc::new(bytes.gc()) as ArrayRef;
                }
            }
            Arc::clone(column)
        })
        .collect();
    if !changed {
        return Ok(batch.clone());
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
        .collect()
}

fn evaluate_function(
    function: &Function,
    batch: &RecordBatch,
    rows: usize,
    partitions: &[Range<usize>],
    peers: &[Range<usize>],
) -> Result<ArrayRef> {
    Ok(match function {
        Function::RowNumber => {
            let mut out = Vec::with_capacity(rows);
            for p in partitions {
                out.extend(1..=(p.len() as u64));
            }
            Arc::new(UInt64Array::from(out))
        }
        Function::Rank | Function::DenseRank => {
            let dense = matches!(function, Function::DenseRank);
            let mut out = Vec::with_capacity(rows);
            let mut groups = peers.iter().peekable();
            for p in partitions {
                let mut group_number = 0u64;
                while let Some(group) = groups.next_if(|g| g.start < p.end) {
                    group_number += 1;
                    let rank = if dense {
                        group_number
                    } else {
                        (group.start - p.start) as u64 + 1
                    };
                    out.extend(std::iter::repeat_n(rank, group.len()));
                }
            }
            Arc::new(UInt64Array::from(out))
        }
        Function::Shift { value, offset, default } => {
            let values = value.evaluate(batch)?.into_array(rows)?;
            let mut indices = Vec::with_capacity(rows);
            for p in partitions {
                for i in p.clone() {
                    let source = i as i64 - offset;
                    indices.push(
                        (source >= p.start as i64 && source < p.end as i64)
                            .then(|| u32::try_from(source).ok())
                            .flatten(),
                    );
                }
            }
            if rows > u32::MAX as usize {
                return Err(internal_datafusion_err!("a window chunk of {rows} rows"));
            }
            let indices = UInt32Array::from(indices);
            let taken = take(values.as_ref(), &indices, None)?;
            match default {
                None => taken,
                Some(default) => {
                    let inside = BooleanArray::from_iter(indices.iter().map(|i| Some(i.is_some())));
                    zip(&inside, &taken, &default.to_scalar()?)?
                }
            }
        }
        Function::Aggregate {
            kind,
            arg,
            frame,
            output,
        } => {
            let values = arg.evaluate(batch)?.into_array(rows)?;
            let values = if values.data_type() == output || *kind == Aggregate::Count {
                values
            } else {
                cast(values.as_ref(), output)?
            };
            aggregate(*kind, &values, *frame, output, partitions, peers)?
        }
    })
}

/// A window aggregate over every row: the running value of each partition
/// (`None` until a non-null value), read off where the frame ends.
fn aggregate(
    kind: Aggregate,
    values: &ArrayRef,
    frame: Frame,
    output: &DataType,
    partitions: &[Range<usize>],
    peers: &[Range<usize>],
) -> Result<ArrayRef> {
    if kind == Aggregate::Count {
        let mut running = Vec::with_capacity(values.len());
        for p in partitions {
            let mut n = 0i64;
            for i in p.clone() {
                n += i64::from(values.is_valid(i));
                running.push(Some(n));
            }
        }
        let counts = framed(&running, frame, partitions, peers, Some(0));
        return Ok(Arc::new(PrimitiveArray::<Int64Type>::from_iter(counts)));
    }
    macro_rules! typed {
        ($t:ty) => {
            typed_aggregate::<$t>(kind, values, frame, output, partitions, peers)
        };
    }
    match output {
        DataType::Int8 => typed!(Int8Type),
        DataType::Int16 => typed!(Int16Type),
        DataType::Int32 => typed!(Int32Type),
        DataType::Int64 => typed!(Int64Type),
        DataType::UInt8 => typed!(UInt8Type),
        DataType::UInt16 => typed!(UInt16Type),
        DataType::UInt32 => typed!(UInt32Type),
        DataType::UInt64 => typed!(UInt64Type),
        DataType::Decimal128(_, _) => typed!(Decimal128Type),
        DataType::Date32 => typed!(Date32Type),
        DataType::Date64 => typed!(Date64Type),
        DataType::Time32(TimeUnit::Second) => typed!(Time32SecondType),
        DataType::Time32(TimeUnit::Millisecond) => typed!(Time32MillisecondType),
        DataType::Time64(TimeUnit::Microsecond) => typed!(Time64MicrosecondType),
        DataType::Time64(TimeUnit::Nanosecond) => typed!(Time64NanosecondType),
        DataType::Timestamp(TimeUnit::Second, _) => typed!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => typed!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => typed!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => typed!(TimestampNanosecondType),
        other => Err(internal_datafusion_err!("PartitionWindowExec: no {kind:?} of {other}")),
    }
}

fn typed_aggregate<T: ArrowPrimitiveType>(
    kind: Aggregate,
    values: &ArrayRef,
    frame: Frame,
    output: &DataType,
    partitions: &[Range<usize>],
    peers: &[Range<usize>],
) -> Result<ArrayRef>
where
    T::Native: Ord,
{
    let values = values.as_primitive::<T>();
    let step: fn(T::Native, T::Native) -> T::Native = match kind {
        Aggregate::Sum => |a, b| a.add_wrapping(b),
        Aggregate::Min => |a, b| a.min(b),
        Aggregate::Max => |a, b| a.max(b),
        Aggregate::Count => unreachable!("counted apart"),
    };
    let mut running = Vec::with_capacity(values.len());
    for p in partitions {
        let mut value: Option<T::Native> = None;
        for i in p.clone() {
            if values.is_valid(i) {
                let v = values.value(i);
                value = Some(value.map_or(v, |acc| step(acc, v)));
            }
            running.push(value);
        }
    }
    let out = framed(&running, frame, partitions, peers, None);
    Ok(Arc::new(
        PrimitiveArray::<T>::from_iter(out).with_data_type(output.clone()),
    ))
}

/// Each row's value of a running aggregate (`running[i]`: over its
/// partition's rows up to `i`) at the end of its frame; `empty` for a
/// frame of no rows.
fn framed<V: Copy>(
    running: &[Option<V>],
    frame: Frame,
    partitions: &[Range<usize>],
    peers: &[Range<usize>],
    empty: Option<V>,
) -> Vec<Option<V>> {
    let mut out = Vec::with_capacity(running.len());
    match frame {
        Frame::Partition => {
            for p in partitions {
                out.extend(std::iter::repeat_n(running[p.end - 1], p.len()));
            }
        }
        Frame::UpTo { peers: true, .. } => {
            for group in peers {
                out.extend(std::iter::repeat_n(running[group.end - 1], group.len()));
            }
        }
        Frame::UpTo { preceding, .. } => {
            for p in partitions {
                for i in p.clone() {
                    out.push(if i >= p.start + preceding {
                        running[i - preceding]
                    } else {
                        empty
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    use crate::plan::{SessionOptions, new_session};

    /// Rows with partitions of 1 to 9 rows, ties in the order key, and
    /// nulls in every column but `id`.
    async fn table(ctx: &SessionContext, batch_rows: usize) {
        let mut values = Vec::new();
        let mut state = 7u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let mut id = 0;
        for k in 0..400u64 {
            let size = 1 + next(9);
            for _ in 0..size {
                id += 1;
                let key = if k % 37 == 5 {
                    "null".to_owned()
                } else {
                    format!("'k{}'", k % 150)
                };
                let o = if next(11) == 0 {
                    "null".to_owned()
                } else {
                    next(4).to_string()
                };
                let v = if next(7) == 0 {
                    "null".to_owned()
                } else {
                    (next(1000) as i64 - 300).to_string()
                };
                let d = if next(9) == 0 {
                    "null".to_owned()
                } else {
                    format!("{}.{:02}", next(500), next(100))
                };
                let ts = if next(8) == 0 {
                    "null".to_owned()
                } else {
                    format!("'2024-01-{:02}T{:02}:00:00Z'", 1 + next(28), next(24))
                };
                values.push(format!("({id}, {key}, {}, {o}, {v}, {d}, {ts})", k % 3));
            }
        }
        let sql = format!(
            "create table t as select column1 as id, column2 as k, column3 as g, cast(column4 as bigint) as o, \
             cast(column5 as bigint) as v, cast(column6 as decimal(10, 2)) as d, \
             cast(column7 as timestamp with time zone) as ts from (values {})",
            values.join(", ")
        );
        ctx.sql(&format!("set datafusion.execution.batch_size = {batch_rows}"))
            .await
            .unwrap();
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }

    /// The query's rows (sorted) and whether its plan has this operator.
    async fn run(ctx: &SessionContext, sql: &str) -> (String, bool) {
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let replaced = displayable(plan.as_ref())
            .indent(true)
            .to_string()
            .contains("PartitionWindowExec");
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        (pretty_format_batches(&batches).unwrap().to_string(), replaced)
    }

    async fn sessions(partitions: usize, batch_rows: usize) -> (SessionContext, SessionContext) {
        let on = new_session(&SessionOptions {
            target_partitions: Some(partitions),
            ..SessionOptions::default()
        })
        .unwrap();
        let off = new_session(&SessionOptions {
            target_partitions: Some(partitions),
            ..SessionOptions::default()
        })
        .unwrap();
        off.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .set("etl.whole_partition_windows", "false")
            .unwrap();
        table(&on, batch_rows).await;
        table(&off, batch_rows).await;
        (on, off)
    }

    const REPLACED: &[&str] = &[
        "row_number() over (partition by k order by o, id)",
        "row_number() over (partition by k, g order by id desc)",
        "row_number() over (partition by g % 2 order by o nulls first, id)",
        "rank() over (partition by k order by o)",
        "dense_rank() over (partition by k order by o desc nulls last)",
        "rank() over (partition by k)",
        "lag(v) over (partition by k order by o, id)",
        "lag(v, 2) over (partition by k order by o, id)",
        "lag(v, 1, -1) over (partition by k order by o, id)",
        "lead(v) over (partition by k order by o, id)",
        "lead(d, 3, 0.5) over (partition by k order by id)",
        "lag(ts) over (partition by k, g order by ts, id)",
        "lag(cast(k as varchar)) over (partition by g order by id)",
        "count(*) over (partition by k)",
        "count(v) over (partition by k order by o)",
        "count(v) over (partition by k order by o, id rows between unbounded preceding and 1 preceding)",
        "sum(v) over (partition by k)",
        "sum(v) over (partition by k order by o)",
        "sum(v) over (partition by k order by o, id rows unbounded preceding)",
        "sum(v) over (partition by k order by o, id rows between unbounded preceding and 2 preceding)",
        "sum(d) over (partition by k order by o range between unbounded preceding and current row)",
        "sum(d) over (partition by k order by o rows between unbounded preceding and unbounded following)",
        "min(v) over (partition by k order by o, id)",
        "max(ts) over (partition by k order by o, id rows between unbounded preceding and 1 preceding)",
        "max(d) over (partition by k, g)",
        "min(ts) over (partition by k order by o desc)",
    ];

    /// Each function, over batches that split partitions and at several
    /// partition counts, gives what DataFusion's own operator gives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_function_it_replaces_gives_datafusion_s_rows() {
        for (partitions, batch_rows) in [(1, 3), (2, 7), (3, 8192)] {
            let (on, off) = sessions(partitions, batch_rows).await;
            for window in REPLACED {
                let sql = format!("select id, k, o, {window} as w from t order by id");
                let (ours, replaced) = run(&on, &sql).await;
                let (theirs, kept) = run(&off, &sql).await;
                assert!(replaced, "not replaced: {window}");
                assert!(!kept, "replaced with the rule off: {window}");
                assert_eq!(
                    ours, theirs,
                    "{window} at {partitions} partitions, {batch_rows}-row batches"
                );
            }
        }
    }

    /// Several functions over one window, and two windows stacked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn functions_together_and_windows_stacked() {
        let (on, off) = sessions(2, 5).await;
        let sql = "select id, row_number() over w as rn, lag(v) over w as prev, sum(v) over w as run, \
                   max(ts) over w as latest, rank() over (partition by k order by o) as r \
                   from t window w as (partition by k order by o, id) order by id";
        let stacked = "select id, sum(starts) over (partition by k order by o, id rows unbounded preceding) as n \
                       from (select *, case when lag(o) over (partition by k order by o, id) is null then 1 else 0 \
                       end as starts from t) order by id";
        for sql in [sql, stacked] {
            let (ours, replaced) = run(&on, sql).await;
            let (theirs, _) = run(&off, sql).await;
            assert!(replaced, "{sql}");
            assert_eq!(ours, theirs, "{sql}");
        }
        // One sort for both: DataFusion reads one of them backwards, which
        // only its own operator knows how to.
        let reversed = "select id, lag(v) over (partition by k order by id desc) as a, \
                        lead(v, 2) over (partition by k order by id) as b, \
                        sum(v) over (partition by k order by id desc) as c from t order by id";
        let (ours, _) = run(&on, reversed).await;
        let (theirs, _) = run(&off, reversed).await;
        assert_eq!(ours, theirs);
    }

    /// What it does not evaluate exactly as DataFusion stays DataFusion's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_functions_and_frames_keep_datafusion_s_operator() {
        let (on, off) = sessions(2, 8192).await;
        for window in [
            "avg(v) over (partition by k)",
            "sum(cast(v as double)) over (partition by k)",
            "max(cast(k as varchar)) over (partition by g)",
            "first_value(v) over (partition by k order by id)",
            "ntile(3) over (partition by k order by id)",
            "sum(v) over (partition by k order by o, id rows between 1 preceding and 1 following)",
            "sum(v) over (partition by k order by o range between 1 preceding and current row)",
            "count(distinct v) over (partition by k)",
            "row_number() over (order by id)",
            "lag(v) ignore nulls over (partition by k order by id)",
            "sum(v) filter (where v > 0) over (partition by k)",
        ] {
            let sql = format!("select id, {window} as w from t order by id");
            let (ours, replaced) = run(&on, &sql).await;
            let (theirs, _) = run(&off, &sql).await;
            assert!(!replaced, "replaced: {window}");
            assert_eq!(ours, theirs, "{window}");
        }
    }

    /// A partition longer than many batches is held until it ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_across_many_batches() {
        let (on, off) = sessions(2, 4).await;
        let sql = "select id, row_number() over (partition by g order by id) as rn, \
                   sum(v) over (partition by g) as total, lag(id, 5) over (partition by g order by id) as back \
                   from t order by id";
        let (ours, replaced) = run(&on, sql).await;
        let (theirs, _) = run(&off, sql).await;
        assert!(replaced);
        assert_eq!(ours, theirs);
    }

    /// A sort's output points its string views into the whole sorted run:
    /// the operator's output and what it holds must not count (nor keep)
    /// the run for every batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_out_own_their_strings() {
        use std::sync::Arc;

        use datafusion::arrow::array::{AsArray, Int64Array, StringViewArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::datasource::MemTable;

        let rows = 20_000;
        let names: StringViewArray = (0..rows)
            .map(|i| Some(format!("visitor-{:08}-with-a-long-name", i / 4)))
            .collect();
        let ids = Int64Array::from_iter_values(0..rows as i64);
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8View, false),
            Field::new("id", DataType::Int64, false),
        ]));
        let whole = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(names), Arc::new(ids)]).unwrap();
        let run_bytes = whole
            .column(0)
            .as_string_view()
            .data_buffers()
            .iter()
            .map(|b| b.capacity())
            .sum::<usize>();
        // Batches of 1,000 rows, each a slice of the whole run.
        let slices: Vec<_> = (0..rows).step_by(1000).map(|at| whole.slice(at, 1000)).collect();
        let ctx = new_session(&SessionOptions {
            target_partitions: Some(1),
            ..SessionOptions::default()
        })
        .unwrap();
        let table = MemTable::try_new(Arc::clone(&schema), vec![slices]).unwrap();
        ctx.register_table("runs", Arc::new(table)).unwrap();
        let sql = "select name, id, row_number() over (partition by name order by id) as rn from runs";
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        assert!(
            displayable(plan.as_ref())
                .indent(true)
                .to_string()
                .contains("PartitionWindowExec")
        );
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), rows);
        for batch in &batches {
            let names = batch.column(0).as_string_view();
            let held: usize = names.data_buffers().iter().map(|b| b.capacity()).sum();
            let own = names.total_buffer_bytes_used();
            assert!(
                held <= (2 * own).max(1 << 16),
                "a batch of {} rows ({own} bytes of strings) holds {held} bytes of the run's {run_bytes}",
                batch.num_rows()
            );
        }
        let numbers: Vec<u64> = batches
            .iter()
            .flat_map(|b| {
                b.column(2)
                    .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(numbers.iter().filter(|&&n| n == 4).count(), rows / 4);
        assert!(batches[0].column(0).as_string_view().value(0).starts_with("visitor-"));
    }

    #[test]
    fn compact_views_copies_only_views_into_mostly_other_rows() {
        use std::sync::Arc;

        use datafusion::arrow::array::{AsArray, StringViewArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;

        let strings: StringViewArray = (0..10_000)
            .map(|i| Some(format!("a string longer than twelve {i}")))
            .collect();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(strings)]).unwrap();
        let whole = super::compact_views(&batch).unwrap();
        assert!(
            Arc::ptr_eq(whole.column(0), batch.column(0)),
            "a compact batch is copied"
        );
        let slice = batch.slice(5_000, 10);
        let compact = super::compact_views(&slice).unwrap();
        let held: usize = compact
            .column(0)
            .as_string_view()
            .data_buffers()
            .iter()
            .map(|b| b.capacity())
            .sum();
        assert!(held < 4096, "{held}");
        let values = |b: &RecordBatch| {
            b.column(0)
                .as_string_view()
                .iter()
                .map(|v| v.unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&compact), values(&slice));
        assert_eq!(values(&compact)[0], "a string longer than twelve 5000");
    }
}
