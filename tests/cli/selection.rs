//! Selection: laws of the set operations checked on many generated
//! selectors, and dbt's own answers for a fixture project (see: issue 6).

use std::collections::BTreeSet;
use std::path::Path;

use etl::graph::{IndirectSelection, SelectArgs, SelectContext, select};

fn prepared(fixture: &str) -> etl::Prepared {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    etl::prepare(&dir, &Default::default(), &Default::default()).unwrap()
}

fn names(p: &etl::Prepared, select_: &[&str], exclude: &[&str]) -> BTreeSet<String> {
    let compiled = |_| None;
    let cx = SelectContext {
        dag: &p.dag,
        project: &p.project,
        indirect: IndirectSelection::Eager,
        state: None,
        compiled: &compiled,
        plans: &compiled,
    };
    let args = SelectArgs {
        select: select_.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        selector: None,
    };
    select(&cx, &args)
        .unwrap()
        .nodes
        .iter()
        .map(|&i| p.dag.node(i).unique_id.clone())
        .collect()
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        items[(self.0 % items.len() as u64) as usize]
    }
}

const ATOMS: &[&str] = &[
    "orders",
    "+orders",
    "orders+",
    "orders+1",
    "1+clean_totals",
    "@customers",
    "customers+",
    "clean_*",
    "tag:none",
    "resource_type:model",
    "resource_type:seed",
    "resource_type:test",
    "test_type:singular",
    "test_name:unique",
    "config.materialized:table",
    "path:models",
    "file:orders.sql",
    "quality.clean_orders",
    "nothing_here",
];

#[test]
fn union_intersection_and_exclusion_obey_set_laws() {
    let p = prepared("data_tests");
    let all = names(&p, &[], &[]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..80 {
        let (a, b, c) = (rng.pick(ATOMS), rng.pick(ATOMS), rng.pick(ATOMS));
        let (sa, sb, sc) = (names(&p, &[a], &[]), names(&p, &[b], &[]), names(&p, &[c], &[]));
        let union = names(&p, &[&format!("{a} {b}")], &[]);
        assert_eq!(union, &sa | &sb, "union of `{a}` and `{b}`");
        assert_eq!(names(&p, &[a, b], &[]), union, "repeated flags are a union");
        assert_eq!(union, names(&p, &[&format!("{b} {a}")], &[]), "union commutes");
        let inter = names(&p, &[&format!("{a},{b}")], &[]);
        assert_eq!(inter, &sa & &sb, "intersection of `{a}` and `{b}`");
        assert_eq!(inter, names(&p, &[&format!("{b},{a}")], &[]), "intersection commutes");
        let diff = names(&p, &[a], &[b]);
        assert_eq!(diff, &sa - &sb, "`{a}` excluding `{b}`");
        assert!(sa.is_subset(&all));
        // Distributivity: a,(b c) = (a,b) (a,c).
        let left = &sa & &(&sb | &sc);
        let right = names(&p, &[&format!("{a},{b} {a},{c}")], &[]);
        assert_eq!(left, right, "`{a}` over `{b}` and `{c}`");
        // Excluding everything leaves nothing; excluding nothing changes nothing.
        assert!(names(&p, &[a], &[a]).is_empty(), "`{a}` minus itself");
    }
}

/// `a "b c" d` -> [a, b c, d].
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

/// Each case of `expected.txt` (recorded by running `dbt ls --output name`
/// with dbt-core on the same fixture) answered by `etl ls`, line for line.
#[test]
fn selection_answers_what_dbt_answers() {
    let fixture_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/selection");
    let expected = std::fs::read_to_string(fixture_dir.join("expected.txt")).unwrap();
    let dir = crate::support::fixture("selection");
    let mut failures = Vec::new();
    let mut cases = 0;
    for block in expected.split("\n\n").filter(|b| b.trim_start().starts_with("$ ")) {
        let mut lines = block.trim_start_matches('\n').lines();
        let command = lines.next().unwrap().trim_start_matches("$ ").to_owned();
        let want: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
        let mut args = shell_words(&command);
        if !args.iter().any(|a| a == "--output") {
            args.extend(["--output".to_owned(), "name".to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, stdout, stderr) = crate::support::etl(dir.path(), &args);
        let got: Vec<&str> = stdout.lines().collect();
        cases += 1;
        if got != want {
            failures.push(format!(
                "$ {command}\n  dbt: {want:?}\n  etl: {got:?}\n  {}",
                stderr.trim()
            ));
        }
    }
    assert!(cases >= 60, "{cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `state:` and `result:` against an earlier run's target/ (see: issue 6).
#[test]
fn state_and_result_selectors_compare_with_an_earlier_run() {
    let dir = crate::support::fixture("basic");
    let p = dir.path();
    let (code, _, _) = crate::support::etl(p, &["build"]);
    assert_eq!(code, 0);
    let state = p.join("previous");
    crate::support::copy_dir(&p.join("target"), &state);
    let state = state.to_str().unwrap();
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ls", "--output", "name", "--state", state];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = crate::support::etl(p, &all);
        assert_eq!(code, 0, "{stderr}");
        stdout.lines().map(str::to_owned).collect()
    };
    assert!(names(&["-s", "state:modified"]).is_empty(), "nothing changed yet");
    // Change one model's SQL, another's config, and add a model.
    let model = p.join("models/marts/big_countries.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, sql.replace("population >", "population >=")).unwrap();
    let yaml = p.join("project.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(
        &yaml,
        text.replace(
            "    +materialized: view",
            "    +materialized: view\n    +tags: [staged]",
        ),
    )
    .unwrap();
    std::fs::write(p.join("models/marts/brand_new.sql"), "select 1 as x\n").unwrap();
    assert_eq!(names(&["-s", "state:new"]), ["brand_new"]);
    assert_eq!(names(&["-s", "state:modified.body"]), ["big_countries"]);
    assert_eq!(
        names(&["-s", "state:modified.configs"]),
        ["orders_with_region", "stg_orders"],
        "the staging folder's tags"
    );
    assert_eq!(
        names(&["-s", "state:modified+"]),
        ["big_countries", "orders_with_region", "revenue_by_region", "stg_orders"]
    );
    assert_eq!(
        names(&["-s", "result:success", "--resource-type", "seed"]),
        ["countries"]
    );
    // Without --state, a state selector is a usage error.
    let (code, _, stderr) = crate::support::etl(p, &["ls", "-s", "state:modified"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`state:modified` needs `--state DIR`"), "{stderr}");
}
