//! DuckDB's SQL semantics, for projects moved from dbt-duckdb
//! (`sql_dialect: duckdb`, or a `duckdb` profile).
//!
//! They are the planner's, not a rewrite of the SQL text: DuckDB's parser
//! dialect; `/` on two integers divides as DuckDB does (a fraction, where
//! DataFusion and Postgres truncate: `1234 / 100` is 12.34, not 12),
//! planned so from the SQL; `//` is the integer division; `round` of a
//! double rounds its exact value, ties away from zero; and the DuckDB
//! functions dbt users write most resolve: `strftime`, `strptime`,
//! `epoch_ms`, `date_diff`/`datediff`; `sum` of a decimal is a
//! `decimal(38, s)` and `avg` of one a `double`, as DuckDB types them.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, Int64Builder};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::arrow::datatypes::{Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, GroupsAccumulator, ReversedUDAF, SetMonotonicity,
};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, cast,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// DuckDB's division, planned from the SQL: `a / b` on two integers
/// divides their `double` values; `a // b` is DataFusion's `/` on
/// integers, which truncates.
#[derive(Debug)]
pub struct Division;

impl ExprPlanner for Division {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        let integer = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_integer());
        if !(integer(&expr.left) && integer(&expr.right)) {
            return Ok(PlannerResult::Original(expr));
        }
        let (left, right) = match expr.op {
            BinaryOperator::Divide => (cast(expr.left, DataType::Float64), cast(expr.right, DataType::Float64)),
            BinaryOperator::DuckIntegerDivide => (expr.left, expr.right),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let divided = BinaryExpr::new(Box::new(left), Operator::Divide, Box::new(right));
        Ok(PlannerResult::Planned(Expr::BinaryExpr(divided)))
    }
}

/// Registers DuckDB's function names on `ctx`.
pub fn register_duckdb_functions(ctx: &SessionContext) -> Result<()> {
    ctx.state_ref().write().register_expr_planner(Arc::new(Division))?;
    for (function, aliases) in [
        ("to_char", &["strftime"][..]),
        ("to_timestamp", &["strptime"][..]),
        ("to_timestamp_millis", &["epoch_ms"][..]),
    ] {
        if let Ok(udf) = ctx.udf(function) {
            // Its own aliases are kept.
            ctx.register_udf((*udf).clone().with_aliases(aliases.iter().copied()));
        }
    }
    ctx.register_udf(ScalarUDF::from(DateDiff::new()));
    super::duckdb_functions::register(ctx)?;
    if let Ok(round) = ctx.udf("round") {
        ctx.register_udf(ScalarUDF::from(DuckRound { inner: round }));
    }
    for (name, kind) in [("sum", DecimalAggregate::Sum), ("avg", DecimalAggregate::Avg)] {
        if let Ok(inner) = ctx.udaf(name) {
            let signature = Signature::user_defined(inner.signature().volatility);
            ctx.register_udaf(AggregateUDF::from(DuckAggregate { inner, kind, signature }));
        }
    }
    Ok(())
}

/// What DuckDB's `sum` and `avg` of a decimal give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DecimalAggregate {
    /// `decimal(38, s)`, where DataFusion gives `decimal(p + 10, s)`.
    Sum,
    /// A `double`, where DataFusion gives `decimal(p + 4, s + 4)`.
    Avg,
}

/// DataFusion's `sum` or `avg`, typed as DuckDB types them on a decimal
/// (`decimal(38, s)` and `double`): dbt-duckdb's money columns keep the
/// types their models had there. Other types are DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DuckAggregate {
    inner: Arc<AggregateUDF>,
    kind: DecimalAggregate,
    /// The arguments are coerced by `coerce_types`, as the inner
    /// function's signature coerces them, and then DuckDB's way.
    signature: Signature,
}

impl AggregateUDFImpl for DuckAggregate {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let fields: Vec<FieldRef> = arg_types
            .iter()
            .map(|t| Arc::new(Field::new("argument", t.clone(), true)))
            .collect();
        let coerced: Vec<DataType> = fields_with_udf(&fields, self.inner.as_ref())?
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Ok(match (self.kind, coerced.as_slice()) {
            (DecimalAggregate::Avg, [t]) if t.is_decimal() => vec![DataType::Float64],
            _ => coerced,
        })
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match (self.kind, arg_types) {
            (DecimalAggregate::Sum, [DataType::Decimal128(_, scale)]) => Ok(DataType::Decimal128(38, *scale)),
            _ => self.inner.return_type(arg_types),
        }
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    // The accumulators are made for the return type in `args`.
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(args)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner.reverse_udf()
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.inner().set_monotonicity(data_type)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// DuckDB's `round` of a `double`: to the nearest of the number's exact
/// binary value, ties away from zero. DataFusion multiplies by 10^n first,
/// which can round twice: `round(2.675, 2)` is 2.68 there (2.675 is
/// 2.67499999... in binary) and 2.67 in DuckDB. Other types round as
/// DataFusion rounds them.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DuckRound {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for DuckRound {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: datafusion::logical_expr::ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.first().map(ColumnarValue::data_type) != Some(DataType::Float64) {
            return self.inner.invoke_with_args(args);
        }
        let rows = args.number_rows;
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let values = args.args[0].to_array(rows)?;
        let values = values.as_primitive::<Float64Type>();
        let places = match args.args.get(1) {
            Some(places) => cast_array(&places.to_array(rows)?, &DataType::Int64)?,
            None => Arc::new(Int64Array::from(vec![0; rows])) as ArrayRef,
        };
        let places = places.as_primitive::<Int64Type>();
        let rounded: Float64Array = (0..rows)
            .map(|i| (!values.is_null(i) && !places.is_null(i)).then(|| duckdb_round(values.value(i), places.value(i))))
            .collect();
        let array: ArrayRef = Arc::new(rounded);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// `x` rounded to `places` decimals (tens, hundreds... when negative), as
/// DuckDB rounds a `double`.
fn duckdb_round(x: f64, places: i64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let places = places.clamp(-308, 308) as i32;
    let scale = 10f64.powi(places.abs());
    let y = if places >= 0 { x * scale } else { x / scale };
    if !y.is_finite() {
        return x;
    }
    // Away from a tie, the scaled product rounds right; near one, it may
    // have rounded onto or off the tie: decide on the exact decimal digits.
    if ((y - y.trunc()).abs() - 0.5).abs() > 1e-6 {
        let r = y.round();
        return if places >= 0 { r / scale } else { r * scale };
    }
    // Every digit of the binary value (at most 1,074 after the point).
    let exact = format!("{:.1100}", x.abs());
    let (whole, fraction) = exact.split_once('.').unwrap_or((&exact, ""));
    let digits: String;
    let (kept, next) = if places >= 0 {
        let n = places as usize;
        digits = format!("{whole}{}", &fraction[..n.min(fraction.len())]);
        (digits.as_str(), fraction.as_bytes().get(n).copied().unwrap_or(b'0'))
    } else {
        let drop = places.unsigned_abs() as usize;
        if drop > whole.len() {
            return 0.0_f64.copysign(x);
        }
        let keep = &whole[..whole.len() - drop];
        (
            if keep.is_empty() { "0" } else { keep },
            whole.as_bytes()[whole.len() - drop],
        )
    };
    let kept: u64 = kept.parse().unwrap_or(0);
    let magnitude = (kept + u64::from(next >= b'5')) as f64;
    let magnitude = if places >= 0 {
        magnitude / scale
    } else {
        magnitude * scale
    };
    magnitude.copysign(x)
}

/// DuckDB's `date_diff(part, start, end)` (also `datediff`): how many
/// boundaries of `part` lie between two dates or timestamps, as a
/// `bigint`: `date_diff('month', '2024-01-31', '2024-02-01')` is 1.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateDiff {
    signature: Signature,
    aliases: Vec<String>,
}

impl DateDiff {
    fn new() -> Self {
        DateDiff {
            signature: Signature::user_defined(Volatility::Immutable),
            aliases: vec!["datediff".to_owned()],
        }
    }
}

/// The parts `date_diff` counts.
const PARTS: &[&str] = &[
    "year",
    "quarter",
    "month",
    "week",
    "day",
    "hour",
    "minute",
    "second",
    "millisecond",
    "microsecond",
];

impl ScalarUDFImpl for DateDiff {
    fn name(&self) -> &str {
        "date_diff"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!(
                "date_diff takes a part, a start and an end: got {} arguments",
                arg_types.len()
            );
        }
        let time = DataType::Timestamp(TimeUnit::Microsecond, None);
        Ok(vec![DataType::Utf8, time.clone(), time])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [part, start, end] = args.args.as_slice() else {
            return exec_err!("date_diff takes three arguments");
        };
        let part = match part {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(p))) => p.to_lowercase(),
            _ => return exec_err!("date_diff's part must be a constant such as 'day'"),
        };
        let part = part.trim_end_matches('s').to_owned();
        let Some(part) = PARTS.iter().find(|p| **p == part) else {
            return exec_err!("date_diff: unknown part `{part}`; the parts are {}", PARTS.join(", "));
        };
        let start = start.to_array(rows)?;
        let end = end.to_array(rows)?;
        let (start, end) = (
            start.as_primitive::<TimestampMicrosecondType>(),
            end.as_primitive::<TimestampMicrosecondType>(),
        );
        let mut out = Int64Builder::with_capacity(rows);
        for i in 0..rows {
            if start.is_null(i) || end.is_null(i) {
                out.append_null();
            } else {
                out.append_option(boundaries(part, start.value(i), end.value(i)));
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// Boundaries of `part` between two instants in microseconds.
fn boundaries(part: &str, start: i64, end: i64) -> Option<i64> {
    let at = |us: i64| DateTime::from_timestamp_micros(us).map(|t| t.naive_utc());
    let (a, b) = (at(start)?, at(end)?);
    let months = |t: &NaiveDateTime| i64::from(t.year()) * 12 + i64::from(t.month0());
    let days = |t: &NaiveDateTime| t.date().signed_duration_since(chrono::NaiveDate::MIN).num_days();
    let floor = |us: i64, unit: i64| us.div_euclid(unit);
    Some(match part {
        "year" => i64::from(b.year() - a.year()),
        "quarter" => months(&b).div_euclid(3) - months(&a).div_euclid(3),
        "month" => months(&b) - months(&a),
        // Weeks start on Monday, as DuckDB's do.
        "week" => {
            let monday = |t: &NaiveDateTime| days(t) - i64::from(t.weekday().num_days_from_monday());
            (monday(&b) - monday(&a)).div_euclid(7)
        }
        "day" => days(&b) - days(&a),
        "hour" => floor(end, 3_600_000_000) - floor(start, 3_600_000_000),
        "minute" => floor(end, 60_000_000) - floor(start, 60_000_000),
        "second" => floor(end, 1_000_000) - floor(start, 1_000_000),
        "millisecond" => floor(end, 1_000) - floor(start, 1_000),
        _ => end - start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{SessionOptions, new_session};
    use crate::project::Dialect;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    async fn rows(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    fn duckdb() -> SessionContext {
        new_session(&SessionOptions {
            dialect: Dialect::DuckDb,
            ..SessionOptions::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn integers_divide_into_fractions_under_duckdb_and_truncate_otherwise() {
        let sql = "select amount / 100 as dollars, amount // 100 as whole, arrow_typeof(amount / 100) as t \
                   from (values (1234), (-1250)) v(amount) order by amount";
        let expected = "+---------+-------+---------+\n\
                        | dollars | whole | t       |\n\
                        +---------+-------+---------+\n\
                        | -12.5   | -12   | Float64 |\n\
                        | 12.34   | 12    | Float64 |\n\
                        +---------+-------+---------+";
        assert_eq!(rows(&duckdb(), sql).await, expected);
        // A node that runs again without etl's rules, or with a SQL
        // header, keeps the semantics.
        let again = crate::plan::without_etl_rules(&duckdb()).unwrap();
        assert_eq!(rows(&again, sql).await, expected);
        let header = crate::plan::session_with_header(&duckdb(), "set datafusion.execution.batch_size = 100;")
            .await
            .unwrap();
        assert_eq!(rows(&header, sql).await, expected);
        let plain = new_session(&SessionOptions::default()).unwrap();
        let truncated = rows(&plain, "select 1234 / 100 as dollars").await;
        assert!(truncated.contains("| 12      |"), "{truncated}");
    }

    #[tokio::test]
    async fn a_divided_column_changes_type_through_views_unions_and_aggregates() {
        let ctx = duckdb();
        ctx.sql("create view cents as select * from (values (1, 1234), (1, 28), (2, 5)) v(k, c)")
            .await
            .unwrap();
        let sql = "with d as (select k, c / 100 as x from cents) \
                   select k, sum(x) as s from d group by k \
                   union all select 9, 7 / 2 order by k";
        let expected = "+---+-------+\n\
                        | k | s     |\n\
                        +---+-------+\n\
                        | 1 | 12.62 |\n\
                        | 2 | 0.05  |\n\
                        | 9 | 3.5   |\n\
                        +---+-------+";
        assert_eq!(rows(&ctx, sql).await, expected);
        // `(x / 100)::numeric(16,2)`: the newer jaffle shop's tax.
        let tax = rows(&ctx, "select (28 / 100)::numeric(16,2) as tax").await;
        assert!(tax.contains("| 0.28 |"), "{tax}");
    }

    #[tokio::test]
    async fn sums_and_averages_of_decimals_are_typed_as_duckdb_types_them() {
        let sql = "select sum(x) as s, avg(x) as a, arrow_typeof(sum(x)) as ts, arrow_typeof(avg(x)) as ta, \
                   sum(i) as si, arrow_typeof(sum(i)) as tsi \
                   from (select cast(c as decimal(10, 2)) as x, cast(c * 100 as int) as i \
                   from (values (1.25), (2.50), (0.10)) v(c))";
        let duck = rows(&duckdb(), sql).await;
        assert!(
            duck.contains("| 3.85 | 1.2833333333333334 | Decimal128(38, 2) | Float64 | 385 | Int64 |"),
            "{duck}"
        );
        // Grouped, and over a window: the same types.
        let grouped = rows(
            &duckdb(),
            "select k, sum(x) over (partition by k) as w, arrow_typeof(sum(x) over ()) as tw from \
             (select k, cast(c as decimal(10, 2)) as x from (values (1, 1.25), (1, 2.5), (2, 0.1)) v(k, c)) \
             order by k, w",
        )
        .await;
        assert!(grouped.contains("| 1 | 3.75 | Decimal128(38, 2) |"), "{grouped}");
        let plain = new_session(&SessionOptions::default()).unwrap();
        let datafusion = rows(&plain, sql).await;
        assert!(
            datafusion.contains("Decimal128(20, 2) | Decimal128(14, 6)"),
            "{datafusion}"
        );
    }

    #[tokio::test]
    async fn duckdb_functions_resolve() {
        let ctx = duckdb();
        // DuckDB's rounding of doubles: the exact binary value, ties away
        // from zero (each figure is what DuckDB 2.0 gives).
        let rounded = rows(
            &ctx,
            "select round(cast(2414.685 as double), 2) as a, round(cast(2.675 as double), 2) as b, \
             round(cast(0.125 as double), 2) as c, round(cast(-2.5 as double)) as d, \
             round(cast(1234.5678 as double), -2) as e, round(cast(25 as double), -1) as f, \
             round(cast(3.14159 as double), 3) as g, round(cast(1e300 as double), 2) as h",
        )
        .await;
        assert!(
            rounded.contains("| 2414.68 | 2.67 | 0.13 | -3.0 | 1200.0 | 30.0 | 3.142 | 1e300 |"),
            "{rounded}"
        );
        let sql = "select strftime(timestamp '2024-03-05 10:00:00', '%Y/%m/%d') as s, \
                   epoch_ms(86400000) as e, \
                   date_diff('month', date '2024-01-31', date '2024-02-01') as m, \
                   datediff('day', timestamp '2024-01-31 23:59:00', timestamp '2024-02-01 00:01:00') as d, \
                   date_diff('week', date '2024-03-03', date '2024-03-04') as w, \
                   date_diff('hours', timestamp '2024-01-01 10:59:00', timestamp '2024-01-01 08:00:00') as h, \
                   date_diff('year', date '2023-12-31', date '2024-01-01') as y";
        let expected = "+------------+---------------------+---+---+---+----+---+\n\
                        | s          | e                   | m | d | w | h  | y |\n\
                        +------------+---------------------+---+---+---+----+---+\n\
                        | 2024/03/05 | 1970-01-02T00:00:00 | 1 | 1 | 1 | -2 | 1 |\n\
                        +------------+---------------------+---+---+---+----+---+";
        assert_eq!(rows(&ctx, sql).await, expected);
        let err = ctx
            .sql("select date_diff('fortnight', date '2024-01-01', date '2024-02-01')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("date_diff: unknown part `fortnight`"), "{err}");
    }
}
