//! Snapshots as dbt defines them: `{% snapshot name %} ... {% endsnapshot %}`
//! blocks in the files of `snapshot-paths`, and (dbt 1.9) `snapshots:`
//! entries of a properties file naming a `relation:`. Each becomes a
//! [`Model`] of [`ResourceType::Snapshot`] whose template is its block's
//! body, at the same lines and columns as in its file, so that errors
//! point where the user wrote them.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::{Diagnostics, Model, SourceFile};
use crate::config::{RawConfig, ResourceType};
use crate::diagnostic::{Code, Diagnostic, Span};

/// The snapshots of one file: each with its name and its template (the
/// file with everything outside its block blanked, newlines kept).
pub(super) fn blocks(path: &Path, text: &str, errors: &mut Diagnostics) -> Vec<(String, String)> {
    let open = Regex::new(r"\{%[-+]?\s*snapshot\s+([A-Za-z_][A-Za-z0-9_]*)\s*[-+]?%\}").expect("a valid pattern");
    let close = Regex::new(r"\{%[-+]?\s*endsnapshot\s*[-+]?%\}").expect("a valid pattern");
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(start) = open.captures_at(text, at) {
        let whole = start.get(0).expect("a match");
        let name = start[1].to_owned();
        let Some(end) = close.find_at(text, whole.end()) else {
            errors.push(
                Diagnostic::error(
                    Code::JinjaSyntax,
                    format!("`{{% snapshot {name} %}}` has no `{{% endsnapshot %}}`"),
                )
                .with_span(Some(Span::at_offset(path, text, whole.start(), whole.len()))),
            );
            break;
        };
        if let Some(nested) = open.find(&text[whole.end()..end.start()]) {
            let offset = whole.end() + nested.start();
            errors.push(
                Diagnostic::error(Code::JinjaSyntax, "a snapshot block inside another one".to_string())
                    .with_span(Some(Span::at_offset(path, text, offset, nested.len())))
                    .with_help(format!("close `{name}` with `{{% endsnapshot %}}` first")),
            );
            break;
        }
        found.push((name, blank_outside(text, whole.end(), end.start())));
        at = end.end();
    }
    if found.is_empty() && !text.trim().is_empty() && errors.is_empty() {
        errors.push(
            Diagnostic::error(
                Code::InvalidConfig,
                "a file under `snapshot-paths` with no `{% snapshot name %} ... {% endsnapshot %}` block".to_string(),
            )
            .with_span(Some(Span::file(path)))
            .with_help("wrap the snapshot's query in a snapshot block, or move the file out of the snapshot folder"),
        );
    }
    found
}

/// The snapshots of `files` under `dirs` (a project's or a package's): a
/// snapshot's fqn holds its file's name, then its own, as in dbt.
pub(super) fn of_files(
    files: Vec<(PathBuf, String)>,
    owner: &str,
    dirs: &[String],
    config: impl Fn(&[String]) -> RawConfig,
    errors: &mut Diagnostics,
) -> Vec<Model> {
    let mut out = Vec::new();
    for (path, text) in files {
        for (name, template) in blocks(&path, &text, errors) {
            let mut fqn = super::fqn_of(owner, dirs, &path);
            fqn.push(name.clone());
            let config = config(&fqn);
            let file = SourceFile {
                path: path.clone(),
                text: template,
                block: Some(name),
            };
            out.push(snapshot(file, fqn, config));
        }
    }
    out
}

/// `text` with every character outside `start..end` a space, but newlines.
fn blank_outside(text: &str, start: usize, end: usize) -> String {
    let blank = |s: &str| -> String { s.chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect() };
    format!("{}{}{}", blank(&text[..start]), &text[start..end], blank(&text[end..]))
}

/// A snapshot of a properties file: `select * from {{ <relation> }}`, on
/// the line of its `relation:` so that a wrong name is reported there.
pub(super) fn from_relation(file: &Path, relation: &str, line: usize, fqn: Vec<String>, config: RawConfig) -> Model {
    let text = format!(
        "{}select * from {{{{ {} }}}}\n",
        "\n".repeat(line.saturating_sub(1)),
        relation.trim()
    );
    snapshot(
        SourceFile {
            path: file.to_path_buf(),
            text,
            block: fqn.last().cloned(),
        },
        fqn,
        config,
    )
}

pub(super) fn snapshot(file: SourceFile, fqn: Vec<String>, config: RawConfig) -> Model {
    let mut model = Model::new(file, fqn, config);
    model.resource_type = ResourceType::Snapshot;
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_keeps_its_lines_and_columns() {
        let text = "-- orders\n{% snapshot orders_snap %}\nselect * from {{ ref('o') }}\n{% endsnapshot %}\n";
        let mut errors = Vec::new();
        let found = blocks(Path::new("snapshots/o.sql"), text, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(found.len(), 1);
        let (name, body) = &found[0];
        assert_eq!(name, "orders_snap");
        assert_eq!(body.len(), text.len());
        assert_eq!(body.lines().nth(2), Some("select * from {{ ref('o') }}"));
        assert_eq!(body.lines().nth(1).map(str::trim), Some(""));
    }

    #[test]
    fn two_blocks_and_an_unclosed_one() {
        let text = "{%- snapshot a -%}select 1{%- endsnapshot -%}\n{% snapshot b %}select 2{% endsnapshot %}";
        let mut errors = Vec::new();
        let found = blocks(Path::new("s.sql"), text, &mut errors);
        let names: Vec<_> = found.iter().map(|(n, b)| (n.as_str(), b.trim())).collect();
        assert_eq!(names, vec![("a", "select 1"), ("b", "select 2")]);

        let found = blocks(Path::new("s.sql"), "\n{% snapshot c %}\nselect 3\n", &mut errors);
        assert!(found.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].span.as_ref().map(|s| s.line), Some(2));
    }
}
