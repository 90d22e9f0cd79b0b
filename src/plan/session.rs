//! The one DataFusion session of a build. Everything that decides how
//! queries execute (parallelism, memory, spilling, SQL options) is set here
//! and only here: this is the seam where a Ballista-backed session will be
//! swapped in for users who outgrow one machine.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::distinct::{CountBesideDistinct, SINGLE_DISTINCT_RULE};

#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Partitions per query; the number of cores when `None`.
    pub target_partitions: Option<usize>,
    /// Bytes the build may hold in memory; operators spill to disk past it.
    pub memory_limit: Option<usize>,
}

pub fn new_session(options: &SessionOptions) -> Result<SessionContext> {
    let partitions = options.target_partitions.unwrap_or_else(num_cpus::get).max(1);
    let mut config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true);
    config.options_mut().sql_parser.collect_spans = true;
    // DataFusion proves some CASE results non-null in the logical plan
    // (`case when a >= b then a else b end` with b non-null) but not in the
    // physical one, and an aggregate over such a column then fails its
    // schema check with an internal error. The data is the same either
    // way; the check is for DataFusion's own consistency.
    config.options_mut().execution.skip_physical_aggregate_schema_check = true;
    if options.memory_limit.is_some() {
        // Joins stay hash joins, which cannot spill, until one runs out of
        // memory: see `spill_joins`.
        // The pool counts what operators reserve, not the batches moving
        // between them, nor the decoded Parquet pages behind a batch: that
        // memory grows with the batch size times the operators in flight.
        // At DataFusion's 8,192 rows, a 1 GiB limit peaked at 1.8 GiB of
        // RSS on 41M orders; at 2,048 rows, 1.1 GiB, and it ran faster.
        config = config.with_batch_size(2048);
    }
    apply_env_overrides(&mut config)?;
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = options.memory_limit {
        // A fair pool shares the limit between the operators that can
        // spill, so that sorts and aggregations write to disk instead of
        // failing when concurrent models compete for memory.
        // Tracking names the operators holding the most memory when a
        // reservation fails, so that the error says what to look at.
        // The limit is the process's: the pool gets three quarters of it,
        // and the rest is for what the pool does not count (see above).
        let pool = limit / 4 * 3;
        let pool = TrackConsumersPool::new(FairSpillPool::new(pool), NonZeroUsize::new(5).expect("5 > 0"));
        runtime = runtime.with_memory_pool(Arc::new(pool));
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.build_arc()?)
        .with_default_features()
        .with_optimizer_rules(optimizer_rules())
        // Delta's writes and merges are custom plan nodes that need its planner.
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// The variable that pins DataFusion's choice of join (see
/// `apply_env_overrides`); etl leaves a pinned choice alone.
const PREFER_HASH_JOIN_VAR: &str = "DATAFUSION_OPTIMIZER_PREFER_HASH_JOIN";

/// Whether queries planned now get hash joins.
pub fn plans_hash_joins(ctx: &SessionContext) -> bool {
    ctx.state_ref().read().config().options().optimizer.prefer_hash_join
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
    if std::env::var_os(PREFER_HASH_JOIN_VAR).is_some() {
        return false;
    }
    let state = ctx.state_ref();
    state.write().config_mut().options_mut().optimizer.prefer_hash_join = false;
    true
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

/// Any DataFusion option set in the environment the way DataFusion names
/// it there (`datafusion.execution.batch_size` is
/// `DATAFUSION_EXECUTION_BATCH_SIZE`), over etl's own choices: the escape
/// hatch for tuning a query engine etl does not expose option by option.
fn apply_env_overrides(config: &mut SessionConfig) -> Result<()> {
    let keys: Vec<String> = config.options().entries().into_iter().map(|e| e.key).collect();
    for key in keys {
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

/// Parses `512MiB`, `2GiB`, `1.5GB`, `1000000` into bytes.
pub fn parse_memory_limit(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as `2GiB`"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit `{other}` in `{text}`; use KiB, MiB, GiB")),
    };
    Ok((number * factor) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_parse_with_units() {
        assert_eq!(parse_memory_limit("1GiB"), Ok(1 << 30));
        assert_eq!(parse_memory_limit("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory_limit("1.5GB"), Ok(1_500_000_000));
        assert!(parse_memory_limit("lots").is_err());
    }
}
