//! YAML reading with positions.
//!
//! serde-saphyr keeps the line and column of every error and of every
//! [`Spanned`] value; this file turns its errors into [`Diagnostic`]s and adds
//! the did-you-mean that an unknown key deserves.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Spanned};

use crate::diagnostic::{Code, Diagnostic, Span, did_you_mean};

/// Parses `text` (the content of `file`, a project-relative path) as `T`.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Diagnostic> {
    serde_saphyr::from_str(text).map_err(|err| yaml_diagnostic(file, &err))
}

/// The span of a YAML location in `file`.
pub fn span(file: &Path, location: &Location) -> Option<Span> {
    (location.line() > 0).then(|| Span::new(file, location.line() as usize, location.column() as usize, 0))
}

/// The span of a spanned string value, underlining the value itself.
pub fn span_of(file: &Path, value: &Spanned<String>) -> Option<Span> {
    span(file, &value.referenced).map(|mut s| {
        s.len = value.value.chars().count();
        s
    })
}

fn yaml_diagnostic(file: &Path, err: &serde_saphyr::Error) -> Diagnostic {
    let span = err.location().and_then(|l| span(file, &l));
    let mut inner = err;
    while let serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error;
    }
    match inner {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => {
            let span = span.map(|mut s| {
                s.len = field.chars().count();
                s
            });
            let diag = Diagnostic::error(Code::UnknownKey, format!("unknown key `{field}`"))
                .with_span(span)
                .with_label("not a known key here");
            match did_you_mean(field, expected.iter().copied()) {
                Some(best) => diag.with_help(format!("did you mean `{best}`?")),
                None => diag.with_help(format!(
                    "expected one of {}",
                    expected.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
                )),
            }
        }
        serde_saphyr::Error::SerdeMissingField { field, .. } => {
            Diagnostic::error(Code::MissingKey, format!("missing required key `{field}`")).with_span(span)
        }
        _ => {
            let message = plain_message(err);
            Diagnostic::error(Code::InvalidYaml, message).with_span(span)
        }
    }
}

/// serde-saphyr's message without its own location suffix, which the
/// diagnostic already shows.
fn plain_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default().trim().to_owned();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Model {
        name: String,
        materialized: Option<String>,
    }

    #[test]
    fn unknown_key_points_at_the_key_and_suggests_the_close_one() {
        let err = parse::<Model>(Path::new("p.yml"), "name: a\nmaterialised: table\n").unwrap_err();
        assert_eq!(err.code, Code::UnknownKey);
        assert_eq!(err.message, "unknown key `materialised`");
        let span = err.span.unwrap();
        assert_eq!((span.line, span.col), (2, 1));
        assert_eq!(err.help, vec!["did you mean `materialized`?".to_owned()]);
    }

    #[test]
    fn malformed_yaml_keeps_its_line() {
        let err = parse::<Model>(Path::new("p.yml"), "name: a\n  bad: [unclosed\n").unwrap_err();
        assert_eq!(err.code, Code::InvalidYaml);
        assert!(err.span.unwrap().line >= 2);
    }
}
