//! The selection syntax: `[@][N+]method:value[+N]` criteria, unions and
//! intersections, parsed from the command line.

use super::*;

/// The parsed form of a selection.
#[derive(Debug, Clone)]
pub(super) enum Spec {
    All,
    Criterion(Criterion),
    Union(Vec<Spec>),
    Intersection(Vec<Spec>),
    Difference(Box<Spec>, Box<Spec>),
    /// A selectors.yml definition with its own indirect selection.
    WithIndirect(Box<Spec>, IndirectSelection),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Criterion {
    /// The text as written, for messages.
    pub(super) raw: String,
    pub(super) method: Method,
    pub(super) value: String,
    pub(super) childrens_parents: bool,
    /// `Some(None)`: all ancestors; `Some(Some(n))`: n generations.
    pub(super) parents: Option<Option<usize>>,
    pub(super) children: Option<Option<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Method {
    Fqn,
    Tag,
    Path,
    File,
    Source,
    Config(Vec<String>),
    ResourceType,
    TestType,
    TestName,
    Package,
    State,
    Result,
    Exposure,
}

pub(super) const METHODS: &[&str] = &[
    "fqn",
    "tag",
    "path",
    "file",
    "source",
    "config",
    "resource_type",
    "test_type",
    "test_name",
    "package",
    "state",
    "result",
    "exposure",
];

pub(super) fn parse_cli(args: &[String], flag: &str) -> Result<Spec, Diagnostic> {
    let mut union = Vec::new();
    for arg in args {
        let mut offset = 0;
        for word in arg.split(' ') {
            if !word.is_empty() {
                let mut parts = Vec::new();
                let mut part_offset = offset;
                for part in word.split(',') {
                    parts.push(Spec::Criterion(parse_criterion(part).map_err(
                        |(message, at, len)| position_error(flag, arg, part_offset + at, len.max(1), message),
                    )?));
                    part_offset += part.len() + 1;
                }
                union.push(if parts.len() == 1 {
                    parts.remove(0)
                } else {
                    Spec::Intersection(parts)
                });
            }
            offset += word.len() + 1;
        }
    }
    Ok(Spec::Union(union))
}

/// A malformed selector, shown with a caret under the culprit.
pub(super) fn position_error(flag: &str, arg: &str, at: usize, len: usize, message: String) -> Diagnostic {
    let lead = format!("{flag} ");
    let caret = format!(
        "{}{}",
        " ".repeat(lead.len() + arg[..at.min(arg.len())].chars().count()),
        "^".repeat(len)
    );
    let (message, help) = match message.split_once("\nhelp: ") {
        Some((m, h)) => (m.to_owned(), Some(h.to_owned())),
        None => (message, None),
    };
    let mut diag = Diagnostic::error(Code::InvalidSelector, message).with_note(format!("{lead}{arg}\n{caret}"));
    if let Some(h) = help {
        diag = diag.with_help(h);
    }
    diag
}

pub(super) type ParseError = (String, usize, usize);

/// `[@][N+][method:]value[+[N]]`.
pub(super) fn parse_criterion(text: &str) -> Result<Criterion, ParseError> {
    let mut rest = text;
    let mut at = 0;
    let childrens_parents = rest.starts_with('@');
    if childrens_parents {
        rest = &rest[1..];
        at += 1;
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let mut parents = None;
    if rest[digits.len()..].starts_with('+') {
        parents = Some(if digits.is_empty() {
            None
        } else {
            Some(digits.parse().unwrap_or(usize::MAX))
        });
        rest = &rest[digits.len() + 1..];
        at += digits.len() + 1;
    }
    if childrens_parents && parents.is_some() {
        return Err(("`@` and a `+` before the name cannot be combined".into(), 0, at));
    }
    let mut children = None;
    if let Some(plus) = rest.rfind('+') {
        let depth = &rest[plus + 1..];
        if depth.chars().all(|c| c.is_ascii_digit()) {
            children = Some(if depth.is_empty() {
                None
            } else {
                Some(depth.parse().unwrap_or(usize::MAX))
            });
            rest = &rest[..plus];
        }
    }
    // `@` comes first or not at all: `+@@tag:((` is a typo to point at,
    // not a name that matches no node.
    if let Some(i) = rest.find('@') {
        return Err((
            format!(
                "unexpected `@` in the selector `{text}`\nhelp: `@` comes first, once: `@name` selects `name`, its \
                 children and their parents"
            ),
            at + i,
            1,
        ));
    }
    let (method, value, value_at) = match rest.split_once(':') {
        Some((m, v)) if !m.is_empty() && m.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') => {
            (Some(m), v, at + m.len() + 1)
        }
        _ => (None, rest, at),
    };
    if value.is_empty() {
        let what = method.map_or("a node name".to_owned(), |m| format!("a value after `{m}:`"));
        return Err((format!("the selector `{text}` needs {what}"), value_at, 1));
    }
    let method = match method {
        None => default_method(value),
        Some(m) => parse_method(m).ok_or_else(|| {
            let mut message = format!("unknown selector method `{m}`");
            let head = m.split('.').next().unwrap_or(m);
            if let Some(best) = did_you_mean(head, METHODS.iter().copied()) {
                message.push_str(&format!("\nhelp: did you mean `{best}:`?"));
            } else {
                message.push_str(&format!("\nhelp: methods: {}", METHODS.join(", ")));
            }
            (message, at, m.len())
        })?,
    };
    // Nor do names, tags and the other values hold these (paths may).
    let unusual = |c: char| {
        matches!(
            c,
            '(' | ')' | '{' | '}' | ';' | '|' | '"' | '\'' | '<' | '>' | '=' | '!' | '`'
        )
    };
    if !matches!(method, Method::Path | Method::File) {
        if let Some(i) = value.find(unusual) {
            let c = value[i..].chars().next().unwrap_or_default();
            return Err((
                format!(
                    "unexpected `{c}` in the selector `{text}`\nhelp: a selector is `[@][N+][method:]value[+[N]]`; \
                     values are names, globs (`*`, `?`, `[ab]`), tags or paths"
                ),
                value_at + i,
                1,
            ));
        }
    }
    if matches!(method, Method::TestType) && !matches!(value, "generic" | "singular" | "schema" | "data" | "unit") {
        return Err((
            format!("`test_type:{value}` is not a test type\nhelp: use `test_type:generic` or `test_type:singular`"),
            value_at,
            value.len(),
        ));
    }
    if matches!(method, Method::ResourceType) && !RESOURCE_TYPES.contains(&value) {
        return Err((
            format!(
                "`resource_type:{value}` is not a resource type\nhelp: use one of {}",
                RESOURCE_TYPES.join(", ")
            ),
            value_at,
            value.len(),
        ));
    }
    if matches!(method, Method::Source) && value.split('.').count() > 3 {
        return Err((
            format!(
                "`source:{value}` has too many parts\nhelp: write `source:name`, `source:name.table` or `source:project.name.table`"
            ),
            value_at,
            value.len(),
        ));
    }
    if matches!(method, Method::State) && !STATES.contains(&value) {
        return Err((
            format!("`state:{value}` is not a state\nhelp: use {}", STATES.join(", ")),
            value_at,
            value.len(),
        ));
    }
    Ok(Criterion {
        raw: text.to_owned(),
        method,
        value: value.to_owned(),
        childrens_parents,
        parents,
        children,
    })
}

/// dbt's resource types (those etl does not have select nothing).
pub(super) const RESOURCE_TYPES: &[&str] = &[
    "model",
    "seed",
    "source",
    "test",
    "snapshot",
    "analysis",
    "exposure",
    "metric",
    "semantic_model",
    "saved_query",
    "unit_test",
    "function",
];

pub(super) const STATES: &[&str] = &[
    "new",
    "modified",
    "modified.body",
    "modified.configs",
    "modified.contract",
];

pub(super) fn parse_method(m: &str) -> Option<Method> {
    Some(match m {
        "fqn" => Method::Fqn,
        "tag" => Method::Tag,
        "path" => Method::Path,
        "file" => Method::File,
        "source" => Method::Source,
        "resource_type" => Method::ResourceType,
        "test_type" => Method::TestType,
        "test_name" => Method::TestName,
        "package" => Method::Package,
        "state" => Method::State,
        "result" => Method::Result,
        "exposure" => Method::Exposure,
        _ => {
            let key = m.strip_prefix("config.")?;
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return None;
            }
            Method::Config(key.split('.').map(str::to_owned).collect())
        }
    })
}

/// dbt's default for a bare value: a path when it looks like one, a file
/// when it names one, else the fully qualified name.
pub(super) fn default_method(value: &str) -> Method {
    if value.contains('/') || value.contains('\\') {
        Method::Path
    } else if [".sql", ".py", ".csv"]
        .iter()
        .any(|e| value.to_ascii_lowercase().ends_with(e))
    {
        Method::File
    } else {
        Method::Fqn
    }
}
