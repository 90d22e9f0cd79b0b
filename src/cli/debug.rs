//! `etl debug`: what etl would build with, and whether it can: the
//! project, the target (and the profile it comes from), the lake's
//! storage reachable, the packages installed.

use super::{Global, Output};

pub async fn run(global: &Global, out: &Output) -> u8 {
    let mut failed = false;
    let mut line = |what: &str, result: Result<String, String>| {
        let text = match result {
            Ok(detail) => format!("{what:<10} OK     {detail}"),
            Err(detail) => {
                failed = true;
                format!("{what:<10} ERROR  {detail}")
            }
        };
        out.line(&text);
    };
    out.line(&format!("etl {}", env!("CARGO_PKG_VERSION")));
    let project = match etl::project::load(&global.project_dir, &global.load_options()) {
        Ok(project) => project,
        Err(diags) => {
            line(
                "project",
                Err(format!("{} cannot be loaded", global.project_dir.display())),
            );
            out.fatal(&diags, Some(&global.project_dir));
            return 1;
        }
    };
    line(
        "project",
        Ok(format!(
            "`{}` at {}: {} models, {} seeds, {} sources, {} data tests",
            project.name,
            project.root.display(),
            project.models.len(),
            project.seeds.len(),
            project.sources.len(),
            project.data_tests.len()
        )),
    );
    let target = &project.target;
    line(
        "target",
        Ok(format!(
            "`{}`: schema `{}`, {} SQL, {} threads",
            target.name,
            target.schema,
            match target.dialect {
                etl::project::Dialect::DuckDb => "DuckDB's",
                etl::project::Dialect::DataFusion => "DataFusion's",
            },
            target
                .threads
                .map_or_else(|| format!("{} (one per core)", num_cpus::get()), |t| t.to_string())
        )),
    );
    if let Some(notify) = &target.notify {
        let on: Vec<String> = notify
            .channels
            .iter()
            .map(|c| {
                let events: Vec<&str> = c.on.iter().map(|e| e.name()).collect();
                format!("{} on {}", c.name, events.join(", "))
            })
            .collect();
        let mut said = if on.is_empty() {
            "no channel on".to_owned()
        } else {
            on.join("; ")
        };
        if !notify.off.is_empty() {
            said.push_str(&format!(" (off, empty: {})", notify.off.join(", ")));
        }
        line("notify", Ok(said));
    }
    line(
        "packages",
        Ok(match project.packages.len() {
            0 => "none".to_owned(),
            _ => project
                .packages
                .iter()
                .map(|p| format!("`{}`", p.name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    );
    let ctx = match etl::session(&project, None) {
        Ok(ctx) => ctx,
        Err(diag) => {
            line("lake", Err(format!("{}: {}", target.lake, diag.message)));
            return 1;
        }
    };
    // A store that does not answer is retried for minutes: say so sooner.
    let reached = match tokio::time::timeout(
        std::time::Duration::from_secs(15),
        etl::lake::probe(&ctx, &target.lake, 1),
    )
    .await
    {
        Ok(reached) => reached.map_err(|e| e.to_string()),
        Err(_) => Err("no answer in 15 s".to_owned()),
    };
    line(
        "lake",
        reached
            .map(|found| match found {
                0 => format!("{} (empty: the first build writes it)", target.lake),
                _ => format!("{} (reachable)", target.lake),
            })
            .map_err(|e| format!("{}: {e}", target.lake)),
    );
    let prepared = etl::prepare(
        &global.project_dir,
        &global.load_options(),
        &global.render_options("debug"),
    );
    match prepared {
        Ok(p) => line("render", Ok(format!("{} nodes in the DAG", p.dag.order.len()))),
        Err(diags) => {
            line("render", Err(format!("{} errors (below)", diags.len())));
            out.fatal(&diags, Some(&project.root));
        }
    }
    if failed { 1 } else { 0 }
}
