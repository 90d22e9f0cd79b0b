//! Which file broke a read. DataFusion reports a malformed JSON line or CSV
//! row without the file it came from; when a node fails that way, the files
//! of the sources it reads are read one by one to name the culprit.

use petgraph::graph::NodeIndex;

use super::Build;
use crate::diagnostic::Diagnostic;
use crate::graph::ResourceType;

/// Whether an error message looks like a file that could not be parsed.
fn is_parse_error(message: &str) -> bool {
    [
        "Json error",
        "CSV error",
        "Csv error",
        "Parquet error",
        "Parser error",
        "Invalid UTF8",
        "corrupt",
        // A truncated or non-gzip file behind a `.gz` name.
        "Io error",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Adds to `diag` the first source file that fails to read on its own.
pub async fn name_the_file(build: &Build, index: NodeIndex, diag: Diagnostic) -> Diagnostic {
    if !is_parse_error(&diag.message) {
        return diag;
    }
    let dag = &build.dag;
    let mut sources: Vec<NodeIndex> = dag
        .ancestors(index)
        .into_iter()
        .filter(|&i| dag.node(i).resource_type == ResourceType::Source)
        .collect();
    sources.sort();
    for s in sources {
        let source = dag.node(s).source(&build.project);
        if source.format == crate::project::SourceFormat::Delta {
            continue;
        }
        let Ok(files) = crate::plan::list_source_files(&build.registry.ctx, source).await else {
            continue;
        };
        for file in files {
            let one = std::slice::from_ref(&file);
            let Ok(provider) =
                crate::plan::source_files_provider(&build.registry.ctx, &build.registry.row_counts, source, one).await
            else {
                continue;
            };
            let read = async { build.registry.ctx.read_table(provider)?.collect().await };
            if let Err(e) = read.await {
                let shown = crate::plan::shown_file(source, &file.location);
                if diag.message.contains(&shown) {
                    // Named already, by the read that failed.
                    return diag;
                }
                return diag.with_note(format!(
                    "the unreadable file is `{shown}` (source `{}.{}`): {}",
                    source.source_name,
                    source.name,
                    e.find_root()
                ));
            }
        }
    }
    diag
}
