//! The one DataFusion session of a build. Everything that decides how
//! queries execute (parallelism, memory, spilling, SQL options) is set here
//! and only here: this is the seam where a Ballista-backed session will be
//! swapped in for users who outgrow one machine.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::common::config::{ConfigExtension, ConfigOptions, ExtensionOptions, SpillCompression};
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::dialect_from_str;

use crate::diagnostic::{Code, Diagnostic};

use super::dialect;
use super::distinct::{COUNT_BESIDE_DISTINCT_RULE, CountBesideDistinct, SINGLE_DISTINCT_RULE};
use super::options::EtlOptions;
use super::shared::ShareRepeatedSubplans;
use super::windows::{WHOLE_PARTITION_WINDOWS_RULE, WholePartitionWindows};
use crate::project::Dialect;

#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Partitions per query; the number of cores when `None`.
    pub target_partitions: Option<usize>,
    /// Bytes the build may hold in memory; operators spill to disk past it.
    pub memory_limit: Option<usize>,
    /// The budget when `memory_limit` is `None`, instead of the machine's
    /// share (see [`default_memory_limit`]); like it, a node that cannot
    /// run alone within it gets room to grow (see [`with_room_to_grow`]).
    pub default_memory_limit: Option<usize>,
    /// Whose SQL semantics queries have.
    pub dialect: Dialect,
}

pub fn new_session(options: &SessionOptions) -> Result<SessionContext> {
    let partitions = options.target_partitions.unwrap_or_else(num_cpus::get).max(1);
    let mut config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true)
        .with_option_extension(EtlOptions::default());
    config.options_mut().sql_parser.collect_spans = true;
    if options.dialect == Dialect::DuckDb {
        config.options_mut().set("datafusion.sql_parser.dialect", "duckdb")?;
        // Names keep their case; they match columns of any case when
        // planned (see `identifiers`).
        config.options_mut().sql_parser.enable_ident_normalization = false;
    }
    // DataFusion proves some CASE results non-null in the logical plan
    // (`case when a >= b then a else b end` with b non-null) but not in the
    // physical one, and an aggregate over such a column then fails its
    // schema check with an internal error. The data is the same either
    // way; the check is for DataFusion's own consistency.
    config.options_mut().execution.skip_physical_aggregate_schema_check = true;
    // Spill files in LZ4 frames: the window sort of the 5M-order lake's
    // 19.3M events had 1,636 MiB on disk at once uncompressed, 793 MiB so,
    // and ran no slower; the 50M-order build spilled tens of gigabytes at
    // once. DATAFUSION_EXECUTION_SPILL_COMPRESSION overrides it.
    config.options_mut().execution.spill_compression = SpillCompression::Lz4Frame;
    // Rows already hash-partitioned on some of a group-by's keys (by the
    // join on `order_id` under `group by order_date, product_id, order_id`)
    // can be aggregated where they are. DataFusion repartitions them anyway
    // when there are fewer than 4 partitions, to gain parallelism, but at
    // the session's own partition count there is none to gain: on 2 cores
    // that was a second shuffle of every joined row (the KPI pair went from
    // 2.6 s to 2.4 s without it).
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.subset_repartition_threshold = optimizer.subset_repartition_threshold.min(partitions);
    // A filter whose share of rows DataFusion cannot work out (a CASE, a
    // regex, `is null` of a computed column) is taken to keep them all,
    // not DataFusion's fifth. The estimate picks a hash join's build side,
    // the one held in memory: at a fifth, orders_clean's 19.6M valid order
    // versions (a cleaning filter keeps 97% of 20.2M) looked smaller than
    // their 9.3M lines' totals, were built on, ran out of the 5M build's
    // default budget, and ran again with sort-merge joins: 45-46 s; built
    // on the totals, 27 s, and the whole build 207 s instead of 221-227.
    // Taking all rows never mistakes a large side for a small one.
    optimizer.default_filter_selectivity = 100;
    if options.memory_limit.is_some() {
        // Joins stay hash joins, which cannot spill, until one runs out of
        // memory: see `spill_joins`.
        // The pool counts what operators reserve, not the batches moving
        // between them, nor the decoded Parquet pages behind a batch: that
        // memory grows with the batch size times the operators in flight.
        // At DataFusion's 8,192 rows, a 1 GiB limit peaked at 1.8 GiB of
        // RSS on 41M orders; at 2,048 rows, 1.1 GiB, and it ran faster.
        // The machine's default budget keeps 8,192 rows: on 5M orders
        // they are faster and their peak is within it (see `default_memory_limit`).
        config = config.with_batch_size(2048);
    }
    let budget = Budget {
        limit: options
            .memory_limit
            .or(options.default_memory_limit)
            .or_else(default_memory_limit),
        explicit: options.memory_limit.is_some(),
    };
    // The limit is the process's: the pool gets three quarters of it, and
    // the rest is for what the pool does not count (see above).
    let pool_size = budget.limit.map(|limit| limit / 4 * 3);
    if let Some(pool_size) = pool_size {
        // Every sort holds DataFusion's 10 MB per partition for merging
        // its spills, whether it spills or not: under a small budget the
        // sorts of one model took most of the pool, and which of them got
        // there first decided whether it failed (the sample project's
        // fct_clicks under `--memory-limit 64MiB` failed in 4 builds of 6,
        // in none of 5 with 1.5 MB). At most a 32nd of the pool each.
        let execution = &mut config.options_mut().execution;
        execution.sort_spill_reservation_bytes = execution.sort_spill_reservation_bytes.min(pool_size / 32);
    }
    apply_env_overrides(&mut config)?;
    let (mut runtime, mut config) = super::spill::runtime_from_env(RuntimeEnvBuilder::new(), config)?;
    config = config.with_extension(Arc::new(budget.clone()));
    if let Some(pool_size) = pool_size {
        // A fair pool shares the limit between the operators that can
        // spill, so that sorts and aggregations write to disk instead of
        // failing when concurrent models compete for memory.
        // Tracking names the operators holding the most memory when a
        // reservation fails, so that the error says what to look at.
        let pool = TrackConsumersPool::new(FairSpillPool::new(pool_size), NonZeroUsize::new(5).expect("5 > 0"));
        runtime = runtime.with_memory_pool(Arc::new(pool));
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.build_arc()?)
        .with_default_features()
        .with_optimizer_rules(optimizer_rules())
        .with_physical_optimizer_rule(Arc::new(WholePartitionWindows))
        .with_physical_optimizer_rule(Arc::new(ShareRepeatedSubplans))
        // Last: it watches the plan the others made.
        .with_physical_optimizer_rule(Arc::new(super::live::WatchLivePlans))
        // Delta's writes and merges are custom plan nodes that need its planner.
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    let ctx = SessionContext::new_with_state(state);
    if options.dialect == Dialect::DuckDb {
        dialect::register_duckdb_functions(&ctx)?;
    }
    Ok(ctx)
}

/// The memory a session was given: the user's (`--memory-limit`, a
/// target's `memory_limit:`) or the machine's default share.
#[derive(Debug, Clone)]
struct Budget {
    limit: Option<usize>,
    explicit: bool,
}

/// A copy of `ctx` (same tables, object stores, spill files and caches)
/// with room for one query that ran out of memory alone within the
/// machine's default budget: a pool of half the machine's memory, first
/// come first served, so that an operator that cannot spill (a hash set
/// per group, a big aggregate state) gets what it asks for while the
/// machine has it. `None` when the user set the budget (theirs holds) or
/// there is none.
pub fn with_room_to_grow(ctx: &SessionContext) -> Option<SessionContext> {
    let (_, room) = room_to_grow(ctx)?;
    let state = ctx.state();
    let pool = TrackConsumersPool::new(
        GreedyMemoryPool::new(room / 4 * 3),
        NonZeroUsize::new(5).expect("5 > 0"),
    );
    let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
        .with_memory_pool(Arc::new(pool))
        .build_arc()
        .ok()?;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .build();
    Some(SessionContext::new_with_state(state))
}

/// The default budget of `ctx` and the room [`with_room_to_grow`] gives
/// past it; `None` when it gives none.
pub fn room_to_grow(ctx: &SessionContext) -> Option<(usize, usize)> {
    let budget = ctx.state_ref().read().config().get_extension::<Budget>()?;
    let old = budget.limit.filter(|_| !budget.explicit)?;
    let room = machine_memory()? / 2;
    (room > old).then_some((old, room))
}

/// The share of the machine's memory a build takes when neither
/// `--memory-limit` nor the target's `memory_limit:` says: one part in
/// `MEMORY_SHARE` of the physical memory, or of the cgroup's limit when
/// the process runs in a smaller one (a container), and at least
/// [`MIN_DEFAULT_LIMIT`] where the machine has twice that. Past it sorts
/// and aggregations spill and hash joins fall back to sort-merge joins,
/// so a build does not die of memory, nor take the machine's: 2 GiB on a
/// 24 GiB machine.
const MEMORY_SHARE: usize = 12;
const MIN_DEFAULT_LIMIT: usize = 1 << 30;

/// The budget of a build that was given none (see [`MEMORY_SHARE`]);
/// `None` when the machine's memory cannot be read.
pub fn default_memory_limit() -> Option<usize> {
    let room = machine_memory()?;
    Some((room / MEMORY_SHARE).max(MIN_DEFAULT_LIMIT).min(room / 2))
}

/// The physical memory, or the cgroup's limit when it is smaller.
fn machine_memory() -> Option<usize> {
    match (physical_memory(), cgroup_memory_limit()) {
        (Some(physical), Some(cgroup)) => Some(physical.min(cgroup)),
        (physical, cgroup) => physical.or(cgroup),
    }
}

fn physical_memory() -> Option<usize> {
    // SAFETY: sysconf reads a system constant and has no preconditions.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages > 0 && page_size > 0).then(|| (pages as usize).saturating_mul(page_size as usize))
}

/// The memory limit of the cgroup the process runs in (v2, then v1), if
/// it has one.
fn cgroup_memory_limit() -> Option<usize> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| cgroup_limit_of(&text))
}

/// A cgroup's `memory.max` (`max`: none) or v1 `memory.limit_in_bytes`
/// (a huge number: none).
fn cgroup_limit_of(text: &str) -> Option<usize> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes as usize)
}

/// The variable that pins DataFusion's choice of join (see
/// `apply_env_overrides`); etl leaves a pinned choice alone.
const PREFER_HASH_JOIN_VAR: &str = "DATAFUSION_OPTIMIZER_PREFER_HASH_JOIN";

/// Whether queries planned now get hash joins.
pub fn plans_hash_joins(ctx: &SessionContext) -> bool {
    ctx.state_ref().read().config().options().optimizer.prefer_hash_join
}

/// Whether the environment pinned DataFusion's choice of join: etl then
/// leaves it alone.
pub fn joins_pinned() -> bool {
    std::env::var_os(PREFER_HASH_JOIN_VAR).is_some()
}

/// A copy of `ctx` (same tables, memory pool, object stores) whose
/// queries get sort-merge joins: for one node whose hash join ran out of
/// memory (see [`spill_joins`] for why they are the fallback).
pub fn with_sort_merge_joins(ctx: &SessionContext) -> SessionContext {
    copy_with(ctx, |mut config| {
        config.options_mut().optimizer.prefer_hash_join = false;
        config
    })
}

/// A copy of `ctx` (its catalog, memory pool and rules) with its config
/// changed by `change`.
fn copy_with(ctx: &SessionContext, change: impl FnOnce(SessionConfig) -> SessionConfig) -> SessionContext {
    let state = ctx.state();
    // Without it, building the state would put an empty default catalog in
    // place of the build's, shared with it: every table registered so far
    // would be gone for every node.
    let config = change(state.config().clone().with_create_default_catalog_and_schema(false));
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    SessionContext::new_with_state(state)
}

/// `ctx`'s copy whose queries run in one partition: each operator one
/// instance (one sort, not one per partition). DataFusion's fair pool
/// gives each spilling operator an equal share of the budget, whatever
/// the others use: under a small `--memory-limit`, a sort that needs more
/// than its share for one batch fails although most of the pool is free.
/// With one partition its share doubles (on 2 cores).
pub fn with_one_partition(ctx: &SessionContext) -> SessionContext {
    copy_with(ctx, |config| config.with_target_partitions(1))
}

/// After a query ran out of memory: every query planned from now on gets
/// sort-merge joins instead of hash joins. A hash join holds its whole
/// build side in memory and cannot spill; a sort-merge join sorts both
/// sides, and sorts spill, so a join larger than the memory limit still
/// finishes. It is also slower (a nightly build on 10M orders under
/// `--memory-limit 8GiB` took 239 s with sort-merge joins throughout and
/// 158 s with hash joins), which is why it is the fallback and not the
/// rule. Returns false, changing nothing, when the environment pinned the
/// choice.
pub fn spill_joins(ctx: &SessionContext) -> bool {
    if joins_pinned() {
        return false;
    }
    let state = ctx.state_ref();
    state.write().config_mut().options_mut().optimizer.prefer_hash_join = false;
    true
}

/// The session one model is planned and run in when its `sql_header`
/// config sets DataFusion options: a copy of the build's session, sharing
/// its tables, memory pool and object stores, with the header's
/// `SET datafusion.<option> = <value>` statements applied to it alone.
/// The build's session is untouched. Made again for each attempt, so that
/// a build that switched to sort-merge joins passes that on (unless the
/// header sets the join itself).
///
/// Any other statement is refused (a header that created or dropped a
/// table would change the build's catalog), and so are
/// `datafusion.runtime.*` options: memory and spilling are the build's
/// (`--memory-limit`).
pub async fn session_with_header(ctx: &SessionContext, header: &str) -> Result<SessionContext, Diagnostic> {
    let invalid = |message: String| Diagnostic::error(Code::InvalidConfig, message);
    let state = SessionStateBuilder::new_from_existing(ctx.state()).build();
    let statements = {
        let dialect = &state.config().options().sql_parser.dialect;
        let dialect =
            dialect_from_str(dialect).ok_or_else(|| invalid(format!("unsupported SQL dialect `{dialect}`")))?;
        DFParser::parse_sql_with_dialect(header, dialect.as_ref())
            .map_err(|e| invalid(format!("`sql_header` does not parse: {}", e.find_root())))?
    };
    let session = SessionContext::new_with_state(state);
    for statement in statements {
        let text = statement.to_string();
        let failed =
            |e: datafusion::error::DataFusionError| invalid(format!("`sql_header`: `{text}`: {}", e.find_root()));
        let plan = session.state().statement_to_plan(statement).await.map_err(failed)?;
        let LogicalPlan::Statement(Statement::SetVariable(set)) = &plan else {
            return Err(invalid(format!(
                "`sql_header` may only hold `SET datafusion.<option> = <value>` statements, not `{text}`"
            )));
        };
        if set.variable.starts_with("datafusion.runtime.") {
            return Err(invalid(format!(
                "`sql_header` cannot set `{}`: memory and spilling are shared by the whole build \
                 (use `--memory-limit`)",
                set.variable
            )));
        }
        let options = option_keys(session.state().config().options());
        if !options.contains(&set.variable.to_lowercase()) {
            return Err(invalid(format!(
                "`sql_header` sets `{}`, which is not a DataFusion option",
                set.variable
            ))
            .with_suggestion(&set.variable, options.iter().map(String::as_str)));
        }
        session.execute_logical_plan(plan).await.map_err(failed)?;
    }
    Ok(session)
}

/// etl's own rewrites of a query's plan, by the names the warnings use:
/// those on in `ctx`.
pub fn etl_rules(ctx: &SessionContext) -> Vec<&'static str> {
    let state = ctx.state();
    let mut rules = Vec::new();
    let sharing = state
        .config()
        .options()
        .extensions
        .get::<EtlOptions>()
        .is_none_or(|etl| etl.share_repeated_subplans);
    if sharing {
        rules.push("share_repeated_subplans");
    }
    let windows = state
        .config()
        .options()
        .extensions
        .get::<EtlOptions>()
        .is_none_or(|etl| etl.whole_partition_windows);
    if windows {
        rules.push(WHOLE_PARTITION_WINDOWS_RULE);
    }
    if state
        .optimizers()
        .iter()
        .any(|rule| rule.name() == COUNT_BESIDE_DISTINCT_RULE)
    {
        rules.push(COUNT_BESIDE_DISTINCT_RULE);
    }
    rules
}

/// A copy of `ctx` (same tables, memory pool and object stores) that plans
/// queries as DataFusion alone does: without etl's optimizer rules, its
/// shared subplans, or its repartitioning threshold. A node whose plan
/// failed with an error of DataFusion's own runs again in it: a bug in one
/// of etl's rewrites costs time, never a night.
pub fn without_etl_rules(ctx: &SessionContext) -> Result<SessionContext> {
    let state = ctx.state();
    let mut config = state.config().clone().with_create_default_catalog_and_schema(false);
    config.options_mut().set("etl.share_repeated_subplans", "false")?;
    config.options_mut().set("etl.whole_partition_windows", "false")?;
    config.options_mut().optimizer.subset_repartition_threshold =
        ConfigOptions::default().optimizer.subset_repartition_threshold;
    // What the environment pins still holds.
    apply_env_overrides(&mut config)?;
    config.options_mut().set("etl.share_repeated_subplans", "false")?;
    config.options_mut().set("etl.whole_partition_windows", "false")?;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .with_optimizer_rules(Optimizer::new().rules)
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// DataFusion's optimizer rules, with etl's own where they must run.
fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let at = rules
        .iter()
        .position(|rule| rule.name() == SINGLE_DISTINCT_RULE)
        .unwrap_or(0);
    rules.insert(at, Arc::new(CountBesideDistinct));
    rules
}

/// Every option a session takes, by its full name: DataFusion's
/// (`datafusion.execution.batch_size`) and etl's (`etl.share_repeated_subplans`).
fn option_keys(options: &ConfigOptions) -> Vec<String> {
    let datafusion = options
        .entries()
        .into_iter()
        .map(|e| e.key)
        .filter(|key| key.starts_with("datafusion."));
    let etl = EtlOptions::default()
        .entries()
        .into_iter()
        .map(|e| format!("{}.{}", EtlOptions::PREFIX, e.key));
    datafusion.chain(etl).collect()
}

/// Any DataFusion option set in the environment the way DataFusion names
/// it there (`datafusion.execution.batch_size` is
/// `DATAFUSION_EXECUTION_BATCH_SIZE`), over etl's own choices: the escape
/// hatch for tuning a query engine etl does not expose option by option.
/// etl's options go the same way (`ETL_SHARE_REPEATED_SUBPLANS`).
fn apply_env_overrides(config: &mut SessionConfig) -> Result<()> {
    for key in option_keys(config.options()) {
        let var = key.to_uppercase().replace('.', "_");
        if let Ok(value) = std::env::var(&var) {
            config
                .options_mut()
                .set(&key, &value)
                .map_err(|e| e.context(format!("`{var}={value}` in the environment")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_cgroup_without_a_limit_has_none() {
        assert_eq!(cgroup_limit_of("max\n"), None);
        assert_eq!(cgroup_limit_of("9223372036854771712\n"), None);
        assert_eq!(cgroup_limit_of("2147483648\n"), Some(2 << 30));
        assert_eq!(cgroup_limit_of("garbage"), None);
    }

    #[test]
    fn the_default_budget_is_a_share_of_the_machine() {
        let physical = physical_memory().expect("the machine's memory");
        let limit = default_memory_limit().expect("a default");
        let room = cgroup_memory_limit().map_or(physical, |c| c.min(physical));
        assert!(limit <= room / 2, "{limit} of {room}");
        assert!(limit >= (room / MEMORY_SHARE).min(room / 2), "{limit} of {room}");
    }

    /// The retry in one partition plans its queries for one partition, over
    /// the build's own tables; the build keeps its partitions.
    #[tokio::test]
    async fn one_partition_is_a_copy_of_the_build_session_with_its_tables() {
        let ctx = new_session(&SessionOptions {
            target_partitions: Some(2),
            memory_limit: Some(64 << 20),
            ..Default::default()
        })
        .unwrap();
        ctx.sql("create view t as select value as k from generate_series(1, 1000)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let one = with_one_partition(&ctx);
        assert_eq!(one.state().config().target_partitions(), 1);
        assert_eq!(ctx.state().config().target_partitions(), 2);
        let rows = one
            .sql("select count(*) as n from t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n, 1000);
        // The memory limit is the build's: the copy shares its pool.
        assert!(Arc::ptr_eq(
            &one.runtime_env().memory_pool,
            &ctx.runtime_env().memory_pool
        ));
    }

    /// A filter DataFusion cannot estimate over the larger side of a left
    /// join leaves that side the probe: the smaller side, an aggregate
    /// here, is the one held in memory.
    #[tokio::test]
    async fn a_join_builds_on_the_smaller_side_whatever_a_filter_it_cannot_estimate() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::datasource::MemTable;
        let ctx = new_session(&SessionOptions {
            target_partitions: Some(2),
            ..Default::default()
        })
        .unwrap();
        let table = |rows: i64| {
            let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from_iter_values(0..rows))],
            )
            .unwrap();
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
        };
        ctx.register_table("big", table(100_000)).unwrap();
        ctx.register_table("small", table(30_000)).unwrap();
        let plan = ctx
            .sql(
                "explain select b.k, s.n from (select k from big where case when k % 7 = 3 then null else k end \
                 is not null) b left join (select k, count(*) as n from small group by k) s on s.k = b.k",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
            .unwrap()
            .to_string();
        let join = text.lines().find(|l| l.contains("HashJoinExec")).expect("a hash join");
        // Swapped: the aggregate of `small` is the left, built side.
        assert!(join.contains("join_type=Right"), "{text}");
    }

    #[tokio::test]
    async fn a_session_given_no_limit_has_the_default_one() {
        use datafusion::execution::memory_pool::MemoryLimit;
        let ctx = new_session(&SessionOptions::default()).unwrap();
        let expected = default_memory_limit().unwrap() / 4 * 3;
        assert!(matches!(ctx.runtime_env().memory_pool.memory_limit(), MemoryLimit::Finite(n) if n == expected));
        // ... and keeps DataFusion's batches (a given limit shrinks them).
        assert_eq!(ctx.state().config().batch_size(), 8192);
    }

    /// The rows of a sort that spills under a 16 MiB budget, and the bytes
    /// its spill files held, in a session made as etl makes it.
    async fn spilled_sort(compression: Option<&str>) -> (Vec<String>, usize) {
        use datafusion::physical_plan::{ExecutionPlan, collect};
        fn spilled(plan: &Arc<dyn ExecutionPlan>) -> usize {
            let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0);
            own + plan.children().into_iter().map(spilled).sum::<usize>()
        }
        let options = SessionOptions {
            memory_limit: Some(16 << 20),
            target_partitions: Some(1),
            ..SessionOptions::default()
        };
        let ctx = new_session(&options).unwrap();
        ctx.sql("set datafusion.execution.sort_spill_reservation_bytes = 65536")
            .await
            .unwrap();
        if let Some(compression) = compression {
            let set = format!("set datafusion.execution.spill_compression = '{compression}'");
            ctx.sql(&set).await.unwrap();
        }
        let sql = "select value, md5(cast(value as varchar)) as h from range(0, 400000) order by h";
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let first = datafusion::arrow::util::pretty::pretty_format_batches(&[batches[0].slice(0, 1)])
            .unwrap()
            .to_string();
        (vec![rows.to_string(), first], spilled(&plan))
    }

    #[tokio::test]
    async fn spill_files_are_compressed() {
        let (rows, compressed) = spilled_sort(None).await;
        let (same, plain) = spilled_sort(Some("uncompressed")).await;
        assert_eq!(rows, same);
        assert_eq!(rows[0], "400000");
        // md5('5329') sorts first of the 400,000.
        assert!(
            rows[1].contains("| 5329  | 00003e3b9e5336685200ae85d21b4f5e |"),
            "{}",
            rows[1]
        );
        assert!(plain > 0, "the sort did not spill");
        // Random hex digits (LZ4 has no entropy coding) and integers: a
        // quarter off here (17.0 MB of 22.4), half of real events' spills.
        assert!(compressed * 5 < plain * 4, "{compressed} bytes compressed, {plain} not");
    }

    #[tokio::test]
    async fn a_group_by_over_rows_joined_on_one_of_its_keys_is_not_shuffled_again() {
        use datafusion::physical_plan::displayable;

        let build = new_session(&SessionOptions {
            target_partitions: Some(2),
            ..SessionOptions::default()
        })
        .unwrap();
        // Enough rows on both sides for a partitioned hash join.
        for (table, rows) in [("orders", 300_000), ("lines", 600_000)] {
            build
                .sql(&format!(
                    "create table {table} as select value % 150000 as order_id, value % 7 as product_id \
                     from generate_series(1, {rows})"
                ))
                .await
                .unwrap();
        }
        let sql = "select o.order_id, l.product_id, count(*) as n from lines l \
                   join orders o on o.order_id = l.order_id group by o.order_id, l.product_id";
        let plan = build.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let plan = displayable(plan.as_ref()).indent(true).to_string();
        assert!(plan.contains("HashJoinExec: mode=Partitioned"), "{plan}");
        assert!(plan.contains("AggregateExec: mode=SinglePartitioned"), "{plan}");
        assert_eq!(
            plan.matches("RepartitionExec").count(),
            2,
            "only the join's inputs: {plan}"
        );
    }

    fn pushdown(ctx: &SessionContext) -> bool {
        ctx.state().config().options().execution.parquet.pushdown_filters
    }

    #[tokio::test]
    async fn a_sql_header_sets_options_in_a_session_of_its_own_sharing_the_tables() {
        let build = new_session(&SessionOptions::default()).unwrap();
        let header = "set datafusion.execution.parquet.pushdown_filters = true;\n\
                      SET datafusion.execution.batch_size = 1024";
        let model = session_with_header(&build, header).await.unwrap();
        assert!(pushdown(&model));
        assert_eq!(model.state().config().options().execution.batch_size.get(), 1024);
        assert!(!pushdown(&build), "the build's session is untouched");
        assert_eq!(build.state().config().options().execution.batch_size.get(), 8192);

        // A table registered in the build's session later is readable.
        build.sql("create view v as select 7 as x").await.unwrap();
        let rows = model.sql("select x from v").await.unwrap().collect().await.unwrap();
        assert_eq!(rows[0].num_rows(), 1);

        // After the build switched to sort-merge joins, a new model
        // session has them too.
        spill_joins(&build);
        let later = session_with_header(&build, header).await.unwrap();
        assert!(!plans_hash_joins(&later));
    }

    #[tokio::test]
    async fn a_sql_header_holds_only_settings_of_the_query() {
        let build = new_session(&SessionOptions::default()).unwrap();
        let refused = |header: &'static str| {
            let build = build.clone();
            async move {
                session_with_header(&build, header)
                    .await
                    .err()
                    .expect("refused")
                    .render(Path::new("."))
            }
        };
        let err = refused("create table t as select 1").await;
        assert!(
            err.contains("may only hold `SET datafusion.<option> = <value>`"),
            "{err}"
        );
        assert!(err.contains("CREATE TABLE t AS SELECT 1"), "{err}");
        assert!(!build.table_exist("t").unwrap());

        let err = refused("set datafusion.runtime.memory_limit = '1G'").await;
        assert!(err.contains("cannot set `datafusion.runtime.memory_limit`"), "{err}");
        assert!(err.contains("--memory-limit"), "{err}");

        let err = refused("set datafusion.execution.parquet.pushdown_filter = true").await;
        assert!(
            err.contains("sets `datafusion.execution.parquet.pushdown_filter`, which is not a DataFusion option"),
            "{err}"
        );
        assert!(
            err.contains("did you mean `datafusion.execution.parquet.pushdown_filters`?"),
            "{err}"
        );

        let err = refused("set datafusion.execution.batch_size = many").await;
        assert!(err.contains("batch_size"), "{err}");

        let err = refused("set datafusion.execution.batch_size 1024 1024").await;
        assert!(err.contains("does not parse"), "{err}");
    }
}

/// The session `node` plans and runs in: `base` with the node's
/// `sql_header` applied, when it has one. A header that is not only
/// settings is the node's config error, at the key.
pub async fn session_of_node(
    base: &SessionContext,
    node: &crate::graph::Node,
) -> Result<Option<SessionContext>, Diagnostic> {
    let Some(header) = &node.config.sql_header else {
        return Ok(None);
    };
    let session = session_with_header(base, header).await;
    session.map(Some).map_err(|mut diag| {
        diag.message = format!("model `{}`: {}", node.name, diag.message);
        let span = node
            .config
            .raw()
            .span("sql_header")
            .cloned()
            .unwrap_or_else(|| crate::diagnostic::Span::file(&node.path));
        diag.with_span(Some(span))
    })
}
