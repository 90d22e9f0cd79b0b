//! Mapping positions in rendered SQL back to the template.
//!
//! minijinja does not say which template line produced which output line, so
//! the map is recovered by aligning the two texts line by line (a diff): lines
//! that come through unchanged map exactly, and a line that Jinja rewrote
//! (a `{{ ref() }}` substituted, a macro expanded) maps to the template line
//! it replaced. That is precise for the common case, an error in plain SQL,
//! and lands on the right template line for the rest.

use similar::{DiffOp, TextDiff};

#[derive(Debug, Clone, Default)]
pub struct LineMap {
    /// For each rendered line (0-based), the template line (0-based) and
    /// whether the two lines are identical (columns then map one to one).
    lines: Vec<(usize, bool)>,
}

impl LineMap {
    pub fn build(template: &str, rendered: &str) -> LineMap {
        let diff = TextDiff::from_lines(template, rendered);
        let mut lines = Vec::new();
        for op in diff.ops() {
            match *op {
                DiffOp::Equal { old_index, len, .. } => {
                    lines.extend((0..len).map(|i| (old_index + i, true)));
                }
                DiffOp::Insert { old_index, new_len, .. } => {
                    // Output with no template line of its own: a macro's
                    // expansion; point at the line before, which called it.
                    let at = old_index.saturating_sub(1);
                    lines.extend((0..new_len).map(|_| (at, false)));
                }
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_len,
                    ..
                } => {
                    lines.extend((0..new_len).map(|i| (old_index + i.min(old_len.saturating_sub(1)), false)));
                }
                DiffOp::Delete { .. } => {}
            }
        }
        LineMap { lines }
    }

    /// The template position (1-based line, column) of a rendered position.
    /// `token` is the text at that position, used to find the column on a
    /// line Jinja rewrote.
    pub fn template_position(&self, template: &str, line: usize, col: usize, token: Option<&str>) -> (usize, usize) {
        let Some(&(tline, exact)) = self.lines.get(line.saturating_sub(1)) else {
            return (line, col);
        };
        if exact {
            return (tline + 1, col);
        }
        let text = template.lines().nth(tline).unwrap_or_default();
        let tcol = token
            .filter(|t| !t.is_empty())
            .and_then(|t| text.find(t))
            .map(|byte| text[..byte].chars().count() + 1)
            .unwrap_or_else(|| text.chars().take_while(|c| c.is_whitespace()).count() + 1);
        (tline + 1, tcol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_lines_map_exactly_after_a_removed_block() {
        let template = "{% set x = 1 %}\nselect a,\n  {{ ref('m') }} as r\nfrom t\nwhere bogus\n";
        let rendered = "\nselect a,\n  \"main\".\"m\" as r\nfrom t\nwhere bogus\n";
        let map = LineMap::build(template, rendered);
        assert_eq!(map.template_position(template, 5, 7, None), (5, 7));
        assert_eq!(map.template_position(template, 3, 3, Some("ref('m')")), (3, 6));
    }

    #[test]
    fn macro_expansion_lines_map_to_the_calling_line() {
        let template = "select\n{{ cols() }}\nfrom t\n";
        let rendered = "select\n  a,\n  b,\n  c\nfrom t\n";
        let map = LineMap::build(template, rendered);
        assert_eq!(map.template_position(template, 3, 3, Some("b")).0, 2);
        assert_eq!(map.template_position(template, 5, 1, None), (3, 1));
    }
}
