//! The whole output of the commands users run most, snapshotted: `build`
//! (a first build, the next one with nothing changed, one with failing
//! tests, one with a SQL error), `test`, `show` and `ls`. One node at a
//! time (`--threads 1`), so that the order is the DAG's; times, paths and
//! the lake's URL are filtered. A change of wording, order or numbers
//! shows up as a diff to review. See: issue 27.

use std::path::Path;

use crate::support::*;

/// `etl <args>` in `dir`: exit code, stdout and stderr as one text, with
/// what changes from run to run replaced.
fn run(dir: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = etl(dir, args);
    let text = format!(
        "$ etl {}\nexit {code}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" ")
    );
    let project = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    text.replace(&format!("file://{}/", project.display()), "file://[project]/")
        .replace(&project.display().to_string(), "[project]")
        .replace(&dir.display().to_string(), "[project]")
}

/// `text` with the data rows of its printed table (`│ ...` lines) sorted.
fn sorted_rows(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let rows: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with('│')).collect();
    let (Some(&first), Some(&last)) = (rows.get(1), rows.last()) else {
        return text.to_owned();
    };
    // The first `│` line is the header.
    let mut body: Vec<&str> = lines[first..=last].to_vec();
    body.sort();
    let mut out: Vec<&str> = lines[..first].to_vec();
    out.extend(body);
    out.extend(&lines[last + 1..]);
    out.join("\n") + "\n"
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        filters => vec![
            // Durations: `0.15s`, `12.3 s`, `1.2ms`.
            (r"\b\d+(\.\d+)?\s?(ms|s)\b", "[time]"),
            // Dates and times in messages.
            (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?", "[timestamp]"),
        ],
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn build_then_build_again_show_and_ls() {
    let dir = fixture("basic");
    let p = dir.path();
    snapshot("basic_build", &run(p, &["build", "--threads", "1"]));
    snapshot("basic_build_again", &run(p, &["build", "--threads", "1"]));
    // A table keeps no row order (its files are written in parallel):
    // the rows are compared sorted.
    snapshot("basic_show", &sorted_rows(&run(p, &["show", "revenue_by_region"])));
    snapshot("basic_ls", &run(p, &["ls"]));
    snapshot(
        "basic_select_nothing",
        &run(p, &["build", "--threads", "1", "--select", "nonexistent"]),
    );
}

#[test]
fn a_build_with_failing_tests_and_the_tests_alone() {
    let dir = fixture("data_tests");
    let p = dir.path();
    snapshot("data_tests_build", &run(p, &["build", "--threads", "1"]));
    snapshot("data_tests_test", &run(p, &["test", "--threads", "1"]));
}

#[test]
fn errors_as_users_see_them() {
    for (fixture_name, args) in [
        ("sql_error", &["build", "--threads", "1"][..]),
        ("unknown_ref", &["build"][..]),
        ("ref_cycle", &["build"][..]),
        ("yaml_typo", &["build"][..]),
        ("bad_config", &["build"][..]),
    ] {
        let dir = fixture(fixture_name);
        snapshot(&format!("error_{fixture_name}"), &run(dir.path(), args));
    }
}
