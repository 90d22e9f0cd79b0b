//! Exposures (`exposures:` in a properties file): the dashboards,
//! notebooks and applications that read the project's models, with their
//! owner. They are not built; they name what a change reaches downstream
//! (`etl ls -s +exposure:weekly_revenue`) and appear in the manifest.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::properties::ExposureProperties;
use super::unit_tests::{Input, parse_input};
use super::{Diagnostics, yaml};
use crate::config::RawConfig;
use crate::diagnostic::{Code, Diagnostic, Span};

/// An exposure, checked.
#[derive(Debug, Clone)]
pub struct Exposure {
    pub name: String,
    pub package: String,
    pub fqn: Vec<String>,
    pub path: PathBuf,
    pub span: Option<Span>,
    pub kind: String,
    pub owner: Value,
    /// What it reads, each with where it is written.
    pub depends_on: Vec<(Input, Option<Span>)>,
    pub description: String,
    pub label: Option<String>,
    pub maturity: Option<String>,
    pub url: Option<String>,
    pub config: RawConfig,
}

const KINDS: &[&str] = &["dashboard", "notebook", "analysis", "ml", "application"];
const MATURITIES: &[&str] = &["low", "medium", "high"];

pub(super) fn exposure(
    package: &str,
    file: &Path,
    props: ExposureProperties,
    errors: &mut Diagnostics,
    warnings: &mut Diagnostics,
) -> Option<Exposure> {
    let name = props.name.value.clone();
    let mut ok = true;
    let mut fail = |message: String, span: Option<Span>, choices: Option<(&str, &[&str])>| {
        let mut diag = Diagnostic::error(Code::InvalidConfig, format!("exposure `{name}`: {message}")).with_span(span);
        if let Some((value, choices)) = choices {
            diag = diag.with_suggestion(value, choices.iter().copied());
        }
        errors.push(diag);
        ok = false;
    };
    if !KINDS.contains(&props.kind.value.as_str()) {
        fail(
            format!("`type: {}` is not one of {}", props.kind.value, KINDS.join(", ")),
            yaml::span_of(file, &props.kind),
            Some((&props.kind.value, KINDS)),
        );
    }
    if let Some(maturity) = &props.maturity
        && !MATURITIES.contains(&maturity.value.as_str())
    {
        fail(
            format!("`maturity: {}` is not one of {}", maturity.value, MATURITIES.join(", ")),
            yaml::span_of(file, maturity),
            Some((&maturity.value, MATURITIES)),
        );
    }
    let owner_named = props
        .owner
        .value
        .as_object()
        .is_some_and(|o| o.contains_key("name") || o.contains_key("email"));
    if !owner_named {
        fail(
            "`owner` needs a `name` or an `email`".into(),
            yaml::span(file, &props.owner.referenced),
            None,
        );
    }
    let mut depends_on = Vec::new();
    for entry in &props.depends_on {
        let span = yaml::span_of(file, entry);
        // dbt's semantic layer: etl has no metrics to link.
        if entry.value.trim_start().starts_with("metric(") {
            warnings.push(
                Diagnostic::warning(
                    Code::Unsupported,
                    format!("exposure `{name}`: `{}`: metrics are not read by etl", entry.value),
                )
                .with_span(span),
            );
            continue;
        }
        match parse_input(&entry.value) {
            Some(input @ (Input::Ref(_) | Input::Source(..))) => depends_on.push((input, span)),
            _ => fail(
                format!("`{}` is not `ref('model')` or `source('source', 'table')`", entry.value),
                span,
                None,
            ),
        }
    }
    let mut config = super::tree::check_config(file, props.config, errors)?;
    for (key, value) in [("tags", props.tags), ("meta", props.meta)] {
        if let Some(value) = value {
            config.insert(key.to_owned(), value, yaml::span(file, &props.name.referenced));
        }
    }
    ok.then(|| Exposure {
        fqn: vec![package.to_owned(), name.clone()],
        span: yaml::span_of(file, &props.name),
        name,
        package: package.to_owned(),
        path: file.to_path_buf(),
        kind: props.kind.value,
        owner: props.owner.value,
        depends_on,
        description: props.description.unwrap_or_default(),
        label: props.label,
        maturity: props.maturity.map(|m| m.value),
        url: props.url,
        config,
    })
}
