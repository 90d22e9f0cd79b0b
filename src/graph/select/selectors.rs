//! Named selections from `selectors.yml` (`--selector`), with their
//! `union`, `intersection` and `exclude` definitions.

use super::*;

pub(super) fn find_selector<'p>(project: &'p Project, name: &str) -> Result<&'p SelectorDefinition, Diagnostic> {
    project.selectors.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = project.selectors.iter().map(|s| s.name.as_str()).collect();
        let mut d = Diagnostic::error(
            Code::UnknownSelector,
            format!("no selector named `{name}` in selectors.yml"),
        );
        if let Some(best) = did_you_mean(name, names.iter().copied()) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else if names.is_empty() {
            d = d.with_help("define selectors in `selectors.yml` at the project root");
        } else {
            d = d.with_note(format!("selectors: {}", names.join(", ")));
        }
        d
    })
}

/// A selectors.yml definition: a CLI-style string, `method: value`, a full
/// mapping (`method`, `value`, `parents`, `children`, ...), or `union` /
/// `intersection` lists whose items may be `exclude: [...]`.
pub(super) fn parse_definition(project: &Project, def: &Value, stack: &mut Vec<String>) -> Result<Spec, Diagnostic> {
    let invalid = |m: String| Diagnostic::error(Code::InvalidSelector, m).with_note("in selectors.yml");
    match def {
        Value::String(s) => parse_cli(std::slice::from_ref(s), "selectors.yml:"),
        Value::Object(map) => {
            if let Some(items) = map.get("union").or_else(|| map.get("intersection")) {
                let Value::Array(items) = items else {
                    return Err(invalid("`union` and `intersection` take a list".into()));
                };
                let mut included = Vec::new();
                let mut excluded = Vec::new();
                for item in items {
                    if let Some(ex) = item.get("exclude") {
                        let Value::Array(ex) = ex else {
                            return Err(invalid("`exclude` takes a list".into()));
                        };
                        for e in ex {
                            excluded.push(parse_definition(project, e, stack)?);
                        }
                    } else {
                        included.push(parse_definition(project, item, stack)?);
                    }
                }
                let combined = if map.contains_key("union") {
                    Spec::Union(included)
                } else {
                    Spec::Intersection(included)
                };
                return Ok(if excluded.is_empty() {
                    combined
                } else {
                    Spec::Difference(Box::new(combined), Box::new(Spec::Union(excluded)))
                });
            }
            let (method, value) = if let Some(m) = map.get("method") {
                (
                    m.as_str().unwrap_or_default().to_owned(),
                    map.get("value").map(value_text).unwrap_or_default(),
                )
            } else if map.len() == 1 {
                let (k, v) = map.iter().next().expect("one key");
                (k.clone(), value_text(v))
            } else {
                return Err(invalid(format!("cannot read the selector definition `{def}`")));
            };
            if method == "selector" {
                if stack.contains(&value) {
                    return Err(invalid(format!("selector `{value}` refers to itself")));
                }
                stack.push(value.clone());
                let inner = find_selector(project, &value)?;
                let spec = parse_definition(project, &inner.definition, stack);
                stack.pop();
                return spec;
            }
            let method_parsed =
                parse_method(&method).ok_or_else(|| invalid(format!("unknown selector method `{method}`")))?;
            let flag = |k: &str| map.get(k).and_then(Value::as_bool).unwrap_or(false);
            let depth = |k: &str| map.get(k).and_then(Value::as_u64).map(|d| d as usize);
            let criterion = Criterion {
                raw: format!("{method}:{value}"),
                method: method_parsed,
                value,
                childrens_parents: flag("childrens_parents"),
                parents: (flag("parents") || depth("parents_depth").is_some()).then(|| depth("parents_depth")),
                children: (flag("children") || depth("children_depth").is_some()).then(|| depth("children_depth")),
            };
            let spec = Spec::Criterion(criterion);
            Ok(match map.get("indirect_selection").and_then(Value::as_str) {
                Some(mode) => Spec::WithIndirect(
                    Box::new(spec),
                    IndirectSelection::parse(mode)
                        .ok_or_else(|| invalid(format!("unknown indirect_selection `{mode}`")))?,
                ),
                None => spec,
            })
        }
        other => Err(invalid(format!("cannot read the selector definition `{other}`"))),
    }
}
