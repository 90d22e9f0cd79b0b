//! Model contracts: with `contract: {enforced: true}`, the columns a model's
//! query produces must be exactly the columns declared in its properties
//! file, with the declared types. Checked on the plan, before anything is
//! written, so a broken contract never reaches the lake.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::prelude::SessionContext;

use super::sql_type;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::project::Model;

/// Compares the plan's schema with the model's declared columns.
pub async fn check_contract(ctx: &SessionContext, model: &Model, schema: &DFSchema) -> Result<(), Diagnostic> {
    let span = Some(Span::file(model.properties_file.as_ref().unwrap_or(&model.file.path)));
    if model.columns.is_empty() {
        return Err(Diagnostic::error(
            Code::Contract,
            format!("model `{}` enforces a contract but declares no columns", model.name),
        )
        .with_span(span)
        .with_help("list its columns with a `data_type` each under `columns:` in its properties file"));
    }
    let mut problems = Vec::new();
    for column in &model.columns {
        let Some(declared) = column.data_type.as_deref() else {
            problems.push(format!("`{}` is declared without a `data_type`", column.name));
            continue;
        };
        let expected = sql_type(ctx, declared).await.map_err(|e| {
            Diagnostic::error(
                Code::InvalidType,
                format!("column `{}` of `{}`: {e}", column.name, model.name),
            )
            .with_span(span.clone())
        })?;
        match schema.fields().iter().find(|f| f.name() == &column.name) {
            None => problems.push(format!(
                "`{}` ({declared}) is declared but the query does not return it",
                column.name
            )),
            Some(field) if family(field.data_type()) != family(&expected) => problems.push(format!(
                "`{}` is declared `{declared}` ({}) but the query returns {}",
                column.name,
                family(&expected),
                family(field.data_type())
            )),
            Some(_) => {}
        }
    }
    for field in schema.fields() {
        if !model.columns.iter().any(|c| &c.name == field.name()) {
            problems.push(format!(
                "`{}` ({}) is returned by the query but not declared",
                field.name(),
                family(field.data_type())
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut diag = Diagnostic::error(
        Code::Contract,
        format!(
            "model `{}` breaks its contract: {} column{} differ{}",
            model.name,
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            if problems.len() == 1 { "s" } else { "" }
        ),
    )
    .with_span(span)
    .with_help("change the query, or the declared columns if the change is intended")
    .with_note("nothing was written: the table keeps its previous version");
    for p in problems {
        diag = diag.with_note(p);
    }
    Err(diag)
}

/// A type as a contract compares it: string types are one type, as are
/// timestamp units; precision and scale of decimals count.
fn family(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "binary".into()
        }
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Dictionary(_, value) => family(value),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn string_and_timestamp_variants_compare_equal() {
        assert_eq!(family(&DataType::Utf8View), family(&DataType::Utf8));
        assert_eq!(
            family(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            family(&DataType::Timestamp(TimeUnit::Nanosecond, None))
        );
        assert_ne!(family(&DataType::Int32), family(&DataType::Int64));
        assert_ne!(
            family(&DataType::Decimal128(10, 2)),
            family(&DataType::Decimal128(10, 3))
        );
    }
}
