//! A data test's settings: how its failures are counted and judged
//! (`fail_calc`, `warn_if`, `error_if`, `severity`, `limit`), whether they
//! are kept (`store_failures`) and which files it reads (`source_files`).

use super::Checker;

/// `>10`, `!=0`, `>= 5%`: a comparison of the failure count.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub op: &'static str,
    pub value: f64,
    pub percent: bool,
}

impl Threshold {
    pub fn parse(text: &str) -> Option<Threshold> {
        let t = text.trim();
        let (op, rest) = ["!=", "<>", ">=", "<=", "==", ">", "<", "="]
            .iter()
            .find_map(|op| t.strip_prefix(op).map(|r| (*op, r)))?;
        let op = match op {
            "<>" => "!=",
            "==" => "=",
            other => other,
        };
        let rest = rest.trim();
        let (number, percent) = match rest.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (rest, false),
        };
        Some(Threshold {
            op,
            value: number.parse().ok()?,
            percent,
        })
    }

    /// Whether `failures` (out of `total` rows, for percentages) crosses it.
    pub fn crossed(&self, failures: f64, total: Option<f64>) -> bool {
        let x = if self.percent {
            match total {
                Some(t) if t > 0.0 => failures * 100.0 / t,
                _ => 0.0,
            }
        } else {
            failures
        };
        match self.op {
            "!=" => x != self.value,
            ">=" => x >= self.value,
            "<=" => x <= self.value,
            ">" => x > self.value,
            "<" => x < self.value,
            _ => x == self.value,
        }
    }
}

/// A test's config, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TestConfig {
    /// `severity: error` (the default) or `warn`.
    pub severity_error: bool,
    pub fail_calc: String,
    pub warn_if: Threshold,
    pub error_if: Threshold,
    pub limit: Option<u64>,
    pub store_failures: bool,
    /// `source_files: new`: the test reads only the files the build ingests
    /// from its file sources.
    pub new_files_only: bool,
    /// `where`: the tested relation is filtered by it.
    pub filter: Option<String>,
}

impl TestConfig {
    /// Whether its count is of failing rows, and compared as a count: what
    /// a test must be for a pass on part of a table to mean a pass on it.
    pub fn counts_rows(&self) -> bool {
        let calc: String = self.fail_calc.chars().filter(|c| !c.is_whitespace()).collect();
        calc.eq_ignore_ascii_case("count(*)") && !self.warn_if.percent && !self.error_if.percent
    }
}

pub(super) fn test_config(c: &mut Checker<'_>, generic: bool) -> Option<TestConfig> {
    let severity_error = match c.text("severity")?.map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("error") => true,
        Some("warn") => false,
        Some(s) => {
            let s = s.to_owned();
            c.fail("severity", format!("`severity` is `error` or `warn`, not `{s}`"));
            return None;
        }
    };
    let threshold = |c: &mut Checker<'_>, key: &str| -> Option<Threshold> {
        let raw = c.text(key)?.unwrap_or_else(|| "!=0".into());
        let parsed = Threshold::parse(&raw);
        if parsed.is_none() {
            c.fail(
                key,
                format!("`{key}: {raw}` is not a threshold; write a comparison such as `>10`, `!=0` or `>5%`"),
            );
        }
        parsed
    };
    let warn_if = threshold(c, "warn_if")?;
    let error_if = threshold(c, "error_if")?;
    if (warn_if.percent || error_if.percent) && !generic {
        let key = if warn_if.percent { "warn_if" } else { "error_if" };
        c.fail(
            key,
            "percentage thresholds compare with the tested relation's rows: only generic tests have one".into(),
        );
        return None;
    }
    let limit = c.whole_number("limit")?;
    let store_failures = c.flag("store_failures")?.unwrap_or(false);
    let new_files_only = match c.text("source_files")?.as_deref() {
        None | Some("all") => false,
        Some("new") => true,
        Some(other) => {
            let other = other.to_owned();
            c.fail(
                "source_files",
                format!("`source_files` is `all` (the default) or `new` (the files this build ingests), not `{other}`"),
            );
            return None;
        }
    };
    Some(TestConfig {
        severity_error,
        fail_calc: c.text("fail_calc")?.unwrap_or_else(|| "count(*)".into()),
        warn_if,
        error_if,
        limit,
        store_failures,
        new_files_only,
        filter: c.string("where")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_dbt_comparisons_and_percentages() {
        let t = Threshold::parse(">10").unwrap();
        assert!(!t.crossed(10.0, None));
        assert!(t.crossed(11.0, None));
        let t = Threshold::parse("!=0").unwrap();
        assert!(!t.crossed(0.0, None));
        assert!(t.crossed(1.0, None));
        let t = Threshold::parse(">= 5%").unwrap();
        assert!(t.crossed(5.0, Some(100.0)));
        assert!(!t.crossed(4.0, Some(100.0)));
        assert!(!t.crossed(3.0, Some(0.0)), "no rows: no percentage");
        assert_eq!(Threshold::parse("<>0").unwrap().op, "!=");
        assert!(Threshold::parse("more than 3").is_none());
        assert!(Threshold::parse(">x").is_none());
    }
}
