//! One stable view of every fixture project, snapshotted: what `etl ls`
//! lists and what `etl compile` says (the diagnostics of the broken ones,
//! with file, line and column). A change to names, selection order, or an
//! error's wording shows up here as a diff to review.

use crate::support::*;

#[test]
fn every_fixture_lists_and_compiles_as_snapshotted() {
    insta::glob!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"),
        "*/{project.yaml,dbt_project.yml}",
        |path| {
            let project = path.parent().unwrap();
            let dir = tempfile::tempdir().unwrap();
            copy_dir(project, dir.path());
            let (ls_code, ls_out, ls_err) = etl(dir.path(), &["ls", "--output", "json"]);
            let listed: Vec<String> = ls_out
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    format!(
                        "{} {}",
                        v["resource_type"].as_str().unwrap(),
                        v["unique_id"].as_str().unwrap()
                    )
                })
                .collect();
            let clean = |text: &str| text.replace(&dir.path().display().to_string(), "[project]");
            if ls_code != 0 {
                insta::assert_snapshot!(format!("etl ls: exit {ls_code}\n{}", clean(&ls_err)));
                return;
            }
            let (code, stdout, stderr) = etl(dir.path(), &["compile"]);
            insta::assert_snapshot!(format!(
                "etl ls:\n{}\n\netl compile: exit {code}\n{stdout}{}",
                listed.join("\n"),
                clean(&stderr)
            ));
        }
    );
}
