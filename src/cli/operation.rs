//! `etl run-operation <macro> --args '{key: value}'`: runs a macro of the
//! project against the lake, as dbt's run-operation does: its queries
//! (`run_query`, `statement`) run, and its log lines are printed.

use clap::Args;
use etl::diagnostic::{Code, Diagnostic};

use super::{Global, Output, invocation_id};

#[derive(Args, Debug)]
pub struct OperationArgs {
    /// The macro: `name`, or `package.name`.
    name: String,
    /// Its keyword arguments, as a YAML (or JSON) mapping.
    #[arg(long, default_value = "{}")]
    args: String,
}

pub async fn run(global: &Global, args: &OperationArgs, out: &Output) -> u8 {
    let parsed: Result<serde_json::Value, String> = serde_saphyr::from_str(&args.args).map_err(|e| e.to_string());
    let arguments = match parsed {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(serde_json::Value::Null) => serde_json::Map::new(),
        Ok(other) => {
            let diag = Diagnostic::error(
                Code::InvalidArgument,
                format!("`--args` is a mapping of argument names to values, not `{other}`"),
            );
            out.fatal(&[diag], None);
            return 2;
        }
        Err(e) => {
            let diag = Diagnostic::error(Code::InvalidArgument, format!("`--args` is not YAML: {e}"));
            out.fatal(&[diag], None);
            return 2;
        }
    };
    let prepared = match global.prepare(out, &invocation_id()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let root = prepared.project.root.clone();
    match etl::run_operation(prepared, &args.name, &arguments).await {
        Ok(logs) => {
            for line in logs {
                out.line(&line);
            }
            out.line(&format!("Ran `{}`", args.name));
            0
        }
        Err(diags) => {
            out.fatal(&diags, Some(&root));
            // A wrong name or argument, or a lake another build holds,
            // ran nothing: 2, as for `etl build`.
            let usage = diags
                .iter()
                .any(|d| matches!(d.code, Code::UnknownNode | Code::InvalidArgument | Code::LakeLocked));
            if usage { 2 } else { 1 }
        }
    }
}
