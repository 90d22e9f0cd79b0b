//! `selectors.yml`: named selections, read for `--selector`.

use super::*;

/// One entry of `selectors.yml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Used when no `--select` is given.
    #[serde(default)]
    pub default: bool,
    pub definition: Value,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SelectorsFile {
    #[serde(default)]
    pub(super) selectors: Vec<SelectorDefinition>,
}

pub(super) fn read_selectors(root: &Path, errors: &mut Diagnostics) -> Vec<SelectorDefinition> {
    let path = PathBuf::from("selectors.yml");
    if !root.join(&path).exists() {
        return Vec::new();
    }
    let Some(text) = read(root, &path, errors) else {
        return Vec::new();
    };
    match yaml::parse::<SelectorsFile>(&path, &text) {
        Ok(file) => {
            if file.selectors.iter().filter(|s| s.default).count() > 1 {
                errors.push(
                    Diagnostic::error(Code::InvalidSelector, "more than one selector sets `default: true`")
                        .with_span(Some(Span::file(&path))),
                );
            }
            file.selectors
        }
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}
