//! DuckDB's functions that dbt-duckdb projects call and DataFusion names
//! otherwise or lacks, registered in DuckDB sessions only (see `dialect`).
//!
//! - other names of DataFusion's own: `list_value` (`make_array`),
//!   `string_split`/`str_split` (`string_to_array`), `regexp_matches`
//!   (`regexp_like`: a boolean, as in DuckDB), `list` (`array_agg`);
//! - date parts as functions, `bigint` as in DuckDB: `year`, `month`,
//!   `day`, `dayofmonth`, `dayofweek`, `dayofyear`, `week`, `weekofyear`,
//!   `quarter`, `hour`, `minute`, `second`, `isodow`; `epoch` (seconds, a
//!   `double`); `dayname`, `monthname`;
//! - `last_day(date)`, `date_add(date, interval)` (a timestamp, as in
//!   DuckDB);
//! - `len(x)`: the characters of a string, the elements of a list;
//! - aggregates: `count_if(condition)`, `arg_max(arg, val)`/`max_by` and
//!   `arg_min(arg, val)`/`min_by` (the `arg` of the row with the largest or
//!   smallest `val`; rows with a null `val` or `arg` are skipped);
//! - the table functions `generate_series(...)` and `range(...)`, whose
//!   column is named after them (`select generate_series from
//!   generate_series(1, 3)`), where DataFusion names it `value`.

use std::sync::Arc;

use chrono::{Datelike, Months, NaiveDate};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, Int64Array};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::compute::kernels::numeric::add;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, FieldRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::Column;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::prelude::col;

/// Registers DuckDB's function names on `ctx`.
pub fn register(ctx: &SessionContext) -> Result<()> {
    for (function, aliases) in [
        ("make_array", &["list_value"][..]),
        ("string_to_array", &["string_split", "str_split"][..]),
        ("regexp_like", &["regexp_matches"][..]),
    ] {
        if let Ok(udf) = ctx.udf(function) {
            // Its own aliases are kept.
            ctx.register_udf((*udf).clone().with_aliases(aliases.iter().copied()));
        }
    }
    if let Ok(udaf) = ctx.udaf("array_agg") {
        ctx.register_udaf((*udaf).clone().with_aliases(["list"]));
    }
    let date_part = ctx.udf("date_part")?;
    for (name, part) in [
        ("year", "year"),
        ("month", "month"),
        ("day", "day"),
        ("dayofmonth", "day"),
        ("dayofweek", "dow"),
        ("dayofyear", "doy"),
        ("week", "week"),
        ("weekofyear", "week"),
        ("quarter", "quarter"),
        ("hour", "hour"),
        ("minute", "minute"),
        ("second", "second"),
        ("isodow", "isodow"),
    ] {
        ctx.register_udf(ScalarUDF::from(Fixed::first(
            name,
            &date_part,
            part,
            Some(DataType::Int64),
        )));
    }
    ctx.register_udf(ScalarUDF::from(Fixed::first(
        "epoch",
        &date_part,
        "epoch",
        Some(DataType::Float64),
    )));
    let to_char = ctx.udf("to_char")?;
    ctx.register_udf(ScalarUDF::from(Fixed::last("dayname", &to_char, "%A")));
    ctx.register_udf(ScalarUDF::from(Fixed::last("monthname", &to_char, "%B")));
    ctx.register_udf(ScalarUDF::from(LastDay::new()));
    ctx.register_udf(ScalarUDF::from(DateAdd::new()));
    ctx.register_udaf(AggregateUDF::from(CountIf::new()));
    ctx.register_udaf(AggregateUDF::from(ArgBy::new(true)));
    ctx.register_udaf(AggregateUDF::from(ArgBy::new(false)));
    let length = ctx.udf("character_length")?;
    let cardinality = ctx.udf("cardinality")?;
    ctx.register_udf(ScalarUDF::from(Len {
        signature: Signature::user_defined(Volatility::Immutable),
        text: length,
        list: cardinality,
    }));
    for name in ["generate_series", "range"] {
        if let Ok(inner) = ctx.table_function(name) {
            let named = NamedSeries {
                name,
                inner: inner.function().clone(),
            };
            ctx.register_udtf(name, Arc::new(named));
        }
    }
    Ok(())
}

/// A series table function whose one column is named after the function,
/// as DuckDB names it.
#[derive(Debug)]
struct NamedSeries {
    name: &'static str,
    inner: Arc<dyn TableFunctionImpl>,
}

impl TableFunctionImpl for NamedSeries {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let series = self.inner.call_with_args(args)?;
        let columns: Vec<Expr> = series
            .schema()
            .fields()
            .iter()
            .map(|f| col(Column::from_name(f.name())).alias(self.name))
            .collect();
        let plan = LogicalPlanBuilder::scan(self.name, provider_as_source(series), None)?
            .project(columns)?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// A DataFusion function called with one argument fixed: `year(d)` is
/// `date_part('year', d)` (as a `bigint`), `dayname(d)` is
/// `to_char(d, '%A')`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Fixed {
    name: String,
    inner: Arc<ScalarUDF>,
    fixed: String,
    /// Whether the fixed argument comes first.
    first: bool,
    cast: Option<DataType>,
    signature: Signature,
}

impl Fixed {
    fn first(name: &str, inner: &Arc<ScalarUDF>, fixed: &str, cast: Option<DataType>) -> Fixed {
        Fixed::new(name, inner, fixed, true, cast)
    }

    fn last(name: &str, inner: &Arc<ScalarUDF>, fixed: &str) -> Fixed {
        Fixed::new(name, inner, fixed, false, None)
    }

    fn new(name: &str, inner: &Arc<ScalarUDF>, fixed: &str, first: bool, cast: Option<DataType>) -> Fixed {
        Fixed {
            name: name.to_owned(),
            inner: inner.clone(),
            fixed: fixed.to_owned(),
            first,
            cast,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn with_fixed<T: Clone>(&self, args: &[T], fixed: T) -> Vec<T> {
        let mut all = args.to_vec();
        if self.first {
            all.insert(0, fixed);
        } else {
            all.push(fixed);
        }
        all
    }
}

impl ScalarUDFImpl for Fixed {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 1 {
            return plan_err!("`{}` takes one argument, not {}", self.name, arg_types.len());
        }
        // Dates and timestamps as they are; text read as a timestamp.
        Ok(match &arg_types[0] {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                vec![DataType::Timestamp(TimeUnit::Microsecond, None)]
            }
            other => vec![other.clone()],
        })
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("return_field_from_args should be called instead")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(cast) = &self.cast {
            return Ok(Arc::new(Field::new(&self.name, cast.clone(), true)));
        }
        self.inner_field(args.arg_fields, args.scalar_arguments)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = self.with_fixed(&args.args, ColumnarValue::Scalar(self.fixed_value()));
        let scalars: Vec<Option<&ScalarValue>> = vec![None; args.arg_fields.len()];
        let return_field = self.inner_field(&args.arg_fields, &scalars)?;
        let inner_args = ScalarFunctionArgs {
            args: values,
            arg_fields: self.with_fixed(&args.arg_fields, self.fixed_field()),
            number_rows: args.number_rows,
            return_field,
            config_options: args.config_options.clone(),
        };
        let out = self.inner.invoke_with_args(inner_args)?;
        match &self.cast {
            Some(to) => out.cast_to(to, None),
            None => Ok(out),
        }
    }
}

impl Fixed {
    fn fixed_value(&self) -> ScalarValue {
        ScalarValue::Utf8(Some(self.fixed.clone()))
    }

    fn fixed_field(&self) -> FieldRef {
        Arc::new(Field::new("fixed", DataType::Utf8, false))
    }

    /// What the inner function returns with the fixed argument added.
    fn inner_field(&self, fields: &[FieldRef], scalars: &[Option<&ScalarValue>]) -> Result<FieldRef> {
        let fixed = self.fixed_value();
        let fields = self.with_fixed(fields, self.fixed_field());
        let scalars = self.with_fixed(scalars, Some(&fixed));
        self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &fields,
            scalar_arguments: &scalars,
        })
    }
}

/// DuckDB's `last_day(date)`: the last day of its month, a `date`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct LastDay {
    signature: Signature,
}

impl LastDay {
    fn new() -> LastDay {
        LastDay {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for LastDay {
    fn name(&self) -> &str {
        "last_day"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [_] => Ok(vec![DataType::Date32]),
            _ => plan_err!("`last_day` takes one date"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let rows = if scalar { 1 } else { args.number_rows };
        let dates = cast_array(&args.args[0].to_array(rows)?, &DataType::Date32)?;
        let dates = dates.as_primitive::<Date32Type>();
        let last: Date32Array = dates
            .iter()
            .map(|d| {
                let date = Date32Type::to_naive_date_opt(d?)?;
                let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?;
                let next = first.checked_add_months(Months::new(1))?;
                Some(Date32Type::from_naive_date(next.pred_opt()?))
            })
            .collect();
        let array: ArrayRef = Arc::new(last);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// DuckDB's `date_add(date, interval)`: a `timestamp`, as `date +
/// interval` is in DuckDB.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateAdd {
    signature: Signature,
}

impl DateAdd {
    fn new() -> DateAdd {
        DateAdd {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

impl ScalarUDFImpl for DateAdd {
    fn name(&self) -> &str {
        "date_add"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [_, DataType::Interval(unit)] => Ok(vec![TIMESTAMP, DataType::Interval(*unit)]),
            [_, other] => plan_err!("`date_add` adds an interval to a date or timestamp, not a `{other}`"),
            _ => plan_err!("`date_add` takes a date and an interval"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(TIMESTAMP)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let at = args.args[0].to_array(rows)?;
        let by = args.args[1].to_array(rows)?;
        let sum = add(&at, &by)?;
        let sum = cast_array(&sum, &TIMESTAMP)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&sum, 0)?)
        } else {
            ColumnarValue::Array(sum)
        })
    }
}

/// DuckDB's `count_if(condition)`: the rows where it is true, a `bigint`
/// (0 over no rows).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CountIf {
    signature: Signature,
}

impl CountIf {
    fn new() -> CountIf {
        CountIf {
            signature: Signature::exact(vec![DataType::Boolean], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for CountIf {
    fn name(&self) -> &str {
        "count_if"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Counted(0)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[count]", args.name),
            DataType::Int64,
            false,
        ))])
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

#[derive(Debug)]
struct Counted(i64);

impl Accumulator for Counted {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(conditions) = values.first() else {
            return exec_err!("`count_if` takes a condition");
        };
        self.0 += conditions.as_boolean().true_count() as i64;
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let counts = cast_array(&states[0], &DataType::Int64)?;
        let counts: &Int64Array = counts.as_primitive();
        self.0 += counts.iter().flatten().sum::<i64>();
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// DuckDB's `len`: of a string, its characters; of a list, its elements;
/// a `bigint`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Len {
    signature: Signature,
    text: Arc<ScalarUDF>,
    list: Arc<ScalarUDF>,
}

impl Len {
    fn inner(&self, data_type: &DataType) -> &Arc<ScalarUDF> {
        match data_type {
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) | DataType::Map(..) => &self.list,
            _ => &self.text,
        }
    }
}

impl ScalarUDFImpl for Len {
    fn name(&self) -> &str {
        "len"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t @ (DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) | DataType::Map(..))] => {
                Ok(vec![t.clone()])
            }
            [DataType::LargeUtf8] => Ok(vec![DataType::LargeUtf8]),
            [DataType::Utf8View] => Ok(vec![DataType::Utf8View]),
            [_] => Ok(vec![DataType::Utf8]),
            _ => plan_err!("`len` takes one string or list"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let inner = self.inner(args.arg_fields[0].data_type()).clone();
        let types: Vec<DataType> = args.arg_fields.iter().map(|f| f.data_type().clone()).collect();
        let return_type = inner.return_type(&types)?;
        let inner_args = ScalarFunctionArgs {
            return_field: Arc::new(Field::new("len", return_type, true)),
            ..args
        };
        inner.invoke_with_args(inner_args)?.cast_to(&DataType::Int64, None)
    }
}

/// DuckDB's `arg_max(arg, val)` (`max_by`) and `arg_min(arg, val)`
/// (`min_by`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArgBy {
    max: bool,
    signature: Signature,
    aliases: Vec<String>,
}

impl ArgBy {
    fn new(max: bool) -> ArgBy {
        let alias = if max { "max_by" } else { "min_by" };
        ArgBy {
            max,
            signature: Signature::any(2, Volatility::Immutable),
            aliases: vec![alias.to_owned()],
        }
    }
}

impl AggregateUDFImpl for ArgBy {
    fn name(&self) -> &str {
        if self.max { "arg_max" } else { "arg_min" }
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let arg = args.exprs[0].data_type(args.schema)?;
        let val = args.exprs[1].data_type(args.schema)?;
        Ok(Box::new(Best {
            max: self.max,
            arg: ScalarValue::try_from(&arg)?,
            val: ScalarValue::try_from(&val)?,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let arg = args.input_fields[0].data_type().clone();
        let val = args.input_fields[1].data_type().clone();
        Ok(vec![
            Arc::new(Field::new(format!("{}[arg]", args.name), arg, true)),
            Arc::new(Field::new(format!("{}[val]", args.name), val, true)),
        ])
    }
}

/// The `arg` of the best `val` seen; both null before any row.
#[derive(Debug)]
struct Best {
    max: bool,
    arg: ScalarValue,
    val: ScalarValue,
}

impl Best {
    fn offer(&mut self, arg: &ArrayRef, val: &ArrayRef) -> Result<()> {
        for row in 0..val.len() {
            // As DuckDB's arg_max: rows with a null value or argument are
            // skipped (its arg_max_null would keep the latter).
            if val.is_null(row) || arg.is_null(row) {
                continue;
            }
            let candidate = ScalarValue::try_from_array(val, row)?;
            let better = self.val.is_null()
                || match candidate.partial_cmp(&self.val) {
                    Some(std::cmp::Ordering::Greater) => self.max,
                    Some(std::cmp::Ordering::Less) => !self.max,
                    _ => false,
                };
            if better {
                self.val = candidate;
                self.arg = ScalarValue::try_from_array(arg, row)?;
            }
        }
        Ok(())
    }
}

impl Accumulator for Best {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.offer(&values[0], &values[1])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.offer(&states[0], &states[1])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.arg.clone(), self.val.clone()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.arg.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.arg.size() + self.val.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use crate::plan::{SessionOptions, new_session};
    use crate::project::Dialect;

    #[tokio::test]
    async fn duckdbs_function_names_resolve_with_duckdbs_results() {
        let ctx = new_session(&SessionOptions {
            dialect: Dialect::DuckDb,
            ..SessionOptions::default()
        })
        .unwrap();
        let sql = "select year(d) as y, month(d) as m, day(d) as dd, quarter(d) as q, dayofweek(d) as dow, \
                   week(d) as w, dayname(d) as dn, monthname(d) as mn, last_day(d) as ld, \
                   date_add(d, interval 1 month) as plus, epoch(timestamp '1970-01-02') as e, \
                   list_value(1, 2) as l, string_split('a,b', ',') as s, regexp_matches('abc', 'b') as r, \
                   arrow_typeof(year(d)) as t \
                   from (values (date '2024-01-31')) v(d)";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        let row = text.lines().nth(3).unwrap();
        let cells: Vec<&str> = row.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            cells,
            [
                "2024",
                "1",
                "31",
                "1",
                "3",
                "5",
                "Wednesday",
                "January",
                "2024-01-31",
                "2024-02-29T00:00:00",
                "86400.0",
                "[1, 2]",
                "[a, b]",
                "true",
                "Int64"
            ],
            "{text}"
        );
        let sql = "select k, count_if(x > 1) as c, list(x order by x) as xs from \
                   (values (1, 1), (1, 2), (1, 3), (2, 0)) v(k, x) group by k order by k";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| 1 | 2 | [1, 2, 3] |"), "{text}");
        assert!(text.contains("| 2 | 0 | [0]       |"), "{text}");
        let empty = ctx
            .sql("select count_if(x > 1) as c from (values (1)) v(x) where x > 5")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert!(pretty_format_batches(&empty).unwrap().to_string().contains("| 0 |"));
        let series = ctx
            .sql(
                "select sum(generate_series) as g, (select sum(range) from range(1, 4)) as r, \
                 (select count(*) from generate_series(date '2024-01-01', date '2024-01-31', interval 1 day)) as days \
                 from generate_series(1, 4)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = pretty_format_batches(&series).unwrap().to_string();
        assert!(text.contains("| 10 | 6 | 31   |"), "{text}");
        let sql = "select k, arg_max(name, amount) as top, max_by(name, amount) as top2, \
                   arg_min(name, amount) as low, max(len(name)) as l, len([1, 2, 3]) as n, \
                   arrow_typeof(len([1])) as t \
                   from (values (1, 'ana', 5), (1, 'bö', 9), (1, 'cy', null), (2, 'di', null)) v(k, name, amount) \
                   group by k order by k";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "| 1 | bö  | bö   | ana | 3 | 3 | Int64 |", "{text}");
        assert_eq!(lines[4], "| 2 |     |      |     | 2 | 3 | Int64 |", "{text}");
        let sql = "select arg_max(name, amount) as top, arg_min(name, amount) as low from \
                   (values ('ana', 5), ('bo', 9), ('cy', null), ('di', 1), (null, 20)) v(name, amount)";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| bo  | di  |"), "{text}");
    }
}
