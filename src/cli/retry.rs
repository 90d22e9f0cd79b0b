//! `etl retry`: runs again what the last run left undone — the nodes whose
//! result in target/run_results.json is `error`, `fail` or `skipped` — with
//! the command that run used.

use std::collections::BTreeSet;

use etl::diagnostic::{Code, Diagnostic};

use etl::Mode;

use super::build::run_only;
use super::{Global, Output};

pub async fn run(global: &Global, out: &Output) -> u8 {
    let path = global.project_dir.join("target/run_results.json");
    let results: serde_json::Value = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            out.fatal(
                &[
                    Diagnostic::error(Code::NoPreviousRun, format!("cannot read `{}`: {e}", path.display()))
                        .with_help("`etl retry` re-runs what the last build, run, seed or test left undone"),
                ],
                None,
            );
            return 2;
        }
    };
    let which = results["args"]["which"].as_str().unwrap_or("build");
    let Some(mode) = Mode::from_name(which) else {
        out.fatal(
            &[Diagnostic::error(
                Code::NoPreviousRun,
                format!("the last command, `{which}`, cannot be retried"),
            )],
            None,
        );
        return 2;
    };
    let undone: BTreeSet<String> = results["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| matches!(r["status"].as_str(), Some("error" | "fail" | "skipped")))
        .filter_map(|r| r["unique_id"].as_str().map(str::to_owned))
        .collect();
    if undone.is_empty() {
        out.line(&format!("Nothing to retry: the last `etl {which}` left nothing undone"));
        return 0;
    }
    run_only(global, out, mode, Some(&undone)).await
}
