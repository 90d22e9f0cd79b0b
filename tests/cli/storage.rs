//! Lakes in a bucket, against a real S3-compatible server (see
//! `s3_server.rs`): the reference project built there and compared with a
//! local build, two builds racing for one table, and a store that fails.
//! See: issue 7

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::prelude::SessionContext;
use url::Url;

use crate::reference::reference_project;
use crate::s3_server::{FaultProxy, KEY_ID, S3Server, SECRET};
use crate::support::{artifact, etl_with_env, fixture, format_rows, paused_before_commit};

/// Every row of each of `tables` (`schema.name`) in the lake at `lake`,
/// sorted, without the columns in `skip`.
fn read_tables(
    lake: &Url,
    options: &BTreeMap<String, String>,
    tables: &[String],
    skip: &[&str],
) -> Vec<(String, Vec<String>)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        etl::lake::connect(&ctx, options, [lake]).unwrap();
        let mut out = Vec::new();
        for table in tables {
            let (schema, name) = table.split_once('.').unwrap();
            let url = lake.join(&format!("warehouse/{schema}/{name}/")).unwrap();
            let provider = etl::lake::delta_provider(&ctx, &url).await.unwrap();
            let columns: Vec<String> = provider
                .schema()
                .fields()
                .iter()
                .map(|f| format!("\"{}\"", f.name()))
                .filter(|c| !skip.iter().any(|s| c == &format!("\"{s}\"")))
                .collect();
            ctx.register_table("t", provider).unwrap();
            let batches = ctx
                .sql(&format!("select {} from t", columns.join(", ")))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            ctx.deregister_table("t").unwrap();
            let mut rows = format_rows(&batches);
            rows.sort();
            out.push((table.clone(), rows));
        }
        out
    })
}

/// The Delta version of `table` (`schema.name`) in the lake at `lake`.
fn version(lake: &Url, options: &BTreeMap<String, String>, table: &str) -> Option<u64> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        etl::lake::connect(&ctx, options, [lake]).unwrap();
        let (schema, name) = table.split_once('.').unwrap();
        let url = lake.join(&format!("warehouse/{schema}/{name}/")).unwrap();
        etl::lake::open_table(&ctx, &url)
            .await
            .unwrap()
            .and_then(|t| t.version())
    })
}

/// The silver and gold tables a local build of the reference project wrote.
fn reference_tables(project: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for schema in ["silver", "gold"] {
        for entry in std::fs::read_dir(project.join("lake/warehouse").join(schema)).unwrap() {
            out.push(format!("{schema}.{}", entry.unwrap().file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

/// The columns that record when a build ran, which differ between builds.
const BUILD_TIME_COLUMNS: &[&str] = &[
    "loaded_at",
    "orders_loaded_at",
    "events_loaded_at",
    "clicks_loaded_at",
    "stock_loaded_at",
];

#[test]
fn the_reference_project_builds_in_a_bucket_as_on_local_disk() {
    let server = S3Server::start();
    server.create_bucket("shop-lake");
    let (dir, _) = reference_project(2000, 5, 0.03);
    let p = dir.path();
    let uploaded = server.upload("shop-lake", "shop/bronze", &p.join("lake/bronze"));
    assert_eq!(uploaded, 8 * 5 + 1, "eight feeds of five days, and lakegen's manifest");
    // The project's own `s3` target; endpoint and keys from the usual
    // AWS variables.
    let env = vec![
        ("ETL_S3_LAKE", "s3://shop-lake/shop".to_owned()),
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_owned()),
    ];
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--target", "s3"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("target `s3` at s3://shop-lake/shop/"), "{stdout}");
    // Tables, views, exports and etl's own state are in the bucket; nothing
    // but the artifacts is written locally.
    assert!(!p.join("lake/warehouse").exists() && !p.join("lake/_etl").exists());
    let keys = server.keys("shop-lake", "shop");
    for expected in [
        "shop/warehouse/gold/sales_by_day/_delta_log/00000000000000000000.json",
        "shop/warehouse/silver/orders_clean/_delta_log/00000000000000000000.json",
    ] {
        assert!(keys.iter().any(|k| k == expected), "{expected} missing");
    }
    assert!(keys.iter().any(|k| k.starts_with("shop/_etl/tests/")));
    assert!(keys.iter().any(|k| k.starts_with("shop/exports/")));
    let manifest = artifact(p, "manifest.json");
    assert_eq!(
        manifest["nodes"]["model.shop.orders_clean"]["relation"]["location"],
        "s3://shop-lake/shop/warehouse/silver/orders_clean/"
    );

    let (code, stdout, stderr) = etl_with_env(p, &["build"], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let tables = reference_tables(p);
    assert!(tables.len() >= 15, "{tables:?}");
    let local_lake = Url::from_directory_path(p.join("lake")).unwrap();
    let bucket_lake = Url::parse("s3://shop-lake/shop/").unwrap();
    let options = server.options(&server.endpoint());
    let compare = |when: &str| {
        let local = read_tables(&local_lake, &BTreeMap::new(), &tables, BUILD_TIME_COLUMNS);
        let bucket = read_tables(&bucket_lake, &options, &tables, BUILD_TIME_COLUMNS);
        for ((table, a), (_, b)) in local.iter().zip(&bucket) {
            assert!(!a.is_empty() || table.contains("rejected"), "{table} is empty");
            assert_eq!(a.len(), b.len(), "{when}: {table}: local vs bucket row count");
            assert!(a == b, "{when}: {table}: the bucket's rows differ from the local ones");
        }
    };
    compare("full build");

    // A nightly delivery: the incremental models ingest it from the bucket.
    lakegen::append_day(&p.join("lake/bronze")).unwrap();
    let uploaded = server.upload("shop-lake", "shop/bronze", &p.join("lake/bronze"));
    assert_eq!(uploaded, 8, "a file per feed");
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--target", "s3"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let results = artifact(p, "run_results.json");
    let orders_clean = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == "model.shop.orders_clean")
        .unwrap();
    let message = orders_clean["message"].as_str().unwrap();
    assert!(
        message.starts_with("incremental (merge)") && message.contains("1 new file"),
        "{message}"
    );
    let (code, stdout, stderr) = etl_with_env(p, &["build"], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    compare("incremental build");

    // Nothing new: the bucket's state says so.
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--target", "s3"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("up to date"), "{stdout}");
}

/// The `bucket` fixture's environment: its bucket, the endpoint it reaches
/// the server through, and the keys its project reads with env_var.
fn bucket_env(endpoint: &str, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ETL_TEST_BUCKET", bucket.to_owned()),
        ("ETL_TEST_S3_ENDPOINT", endpoint.to_owned()),
        ("ETL_TEST_S3_KEY_ID", KEY_ID.to_owned()),
        ("ETL_TEST_S3_SECRET", SECRET.to_owned()),
    ]
}

fn vars(bonus: u32) -> String {
    format!("{{bonus: {bonus}}}")
}

/// Each person's score plus `bonus`, as `scores` holds it.
fn scores(lake: &Url, options: &BTreeMap<String, String>) -> Vec<String> {
    read_tables(lake, options, &["main.scores".to_owned()], &[]).remove(0).1
}

#[test]
fn two_builds_committing_one_table_at_once_end_with_one_winner() {
    let server = S3Server::start();
    server.create_bucket("race");
    let dir = fixture("bucket");
    let p = dir.path();
    server.upload("race", "project/bronze", &p.join("bronze"));
    let env = bucket_env(&server.endpoint(), "race");
    let lake = Url::parse("s3://race/project/").unwrap();
    let options = server.options(&server.endpoint());
    let (code, stdout, stderr) = etl_with_env(p, &["build"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(version(&lake, &options, "main.scores"), Some(0));

    // Build A writes its data files, then waits just before its commit...
    let release = p.join("release");
    let a = paused_before_commit(
        p,
        &["build", "--select", "scores", "--vars", &vars(100)],
        &env,
        &release,
    );
    // ...B, started now, finds the lake locked by A and stops at once.
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--select", "scores", "--vars", &vars(300)], &env);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("error[lake-locked]"), "{stderr}");
    // Were A's lock lost (a holder stalled past its lease, whose lock
    // another build took over), B would get through and commit first:
    // A's commit, computed from the version B replaced, is refused.
    assert_eq!(
        server.keys("race", "project/_etl/lock/").len(),
        2,
        "the first build's record and A's"
    );
    server.delete_prefix("race", "project/_etl/lock/");
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--select", "scores", "--vars", &vars(200)], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    std::fs::write(&release, b"").unwrap();
    let a = a.wait_with_output().unwrap();
    let (a_out, a_err) = (String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.status.code(), Some(1), "{a_out}\n{a_err}");
    assert!(
        a_err.contains("another writer committed to the table while this build was writing it"),
        "{a_err}"
    );
    assert!(a_err.contains("nothing of it was written: run it again"), "{a_err}");

    // B won: its rows, its version, and a log with no trace of A.
    assert_eq!(scores(&lake, &options), ["1|210", "2|220", "3|215"]);
    assert_eq!(version(&lake, &options, "main.scores"), Some(1));
    let log = server.keys("race", "project/warehouse/main/scores/_delta_log");
    assert_eq!(
        log,
        [
            "project/warehouse/main/scores/_delta_log/00000000000000000000.json",
            "project/warehouse/main/scores/_delta_log/00000000000000000001.json",
        ]
    );
    // Running A again commits on top of B.
    let (code, stdout, stderr) = etl_with_env(p, &["build", "--select", "scores", "--vars", &vars(100)], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(scores(&lake, &options), ["1|110", "2|120", "3|115"]);
    assert_eq!(version(&lake, &options, "main.scores"), Some(2));

    // The secret key reached the store and nothing else.
    for text in [a_out.as_ref(), a_err.as_ref(), stdout.as_str(), stderr.as_str()] {
        assert!(!text.contains(SECRET));
    }
    for name in ["manifest.json", "run_results.json"] {
        assert!(
            !artifact(p, name).to_string().contains(SECRET),
            "{name} holds the secret"
        );
    }
}

#[test]
fn store_failures_name_the_object_and_leave_every_table_at_a_committed_version() {
    let server = S3Server::start();
    server.create_bucket("faults");
    let dir = fixture("bucket");
    let p = dir.path();
    server.upload("faults", "project/bronze", &p.join("bronze"));
    let proxy = FaultProxy::start(server.port);
    let env = bucket_env(&proxy.endpoint(), "faults");
    let lake = Url::parse("s3://faults/project/").unwrap();
    let options = server.options(&server.endpoint());
    let build = |bonus: u32, extra: &[(&'static str, String)]| {
        let mut env = env.clone();
        env.extend_from_slice(extra);
        etl_with_env(p, &["build", "--vars", &vars(bonus)], &env)
    };
    let (code, stdout, stderr) = build(0, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // Two 503s on a commit are retried (the fixture allows two retries).
    proxy.fail("PUT", "scores/_delta_log/", crate::s3_server::Fault::Unavailable(2));
    let (code, stdout, stderr) = build(1, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(proxy.faults_served.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(scores(&lake, &options), ["1|11", "2|21", "3|16"]);
    assert_eq!(version(&lake, &options, "main.scores"), Some(1));
    proxy.heal();

    // A commit that keeps failing: the error names the object, the table
    // keeps its version and what depends on it is skipped.
    proxy.fail(
        "PUT",
        "scores/_delta_log/",
        crate::s3_server::Fault::Unavailable(usize::MAX),
    );
    let (code, stdout, stderr) = build(2, &[]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("faults/project/warehouse/main/scores/_delta_log/00000000000000000002.json"),
        "{stderr}"
    );
    assert!(stderr.contains("503"), "{stderr}");
    assert!(stdout.contains("SKIP"), "{stdout}");
    assert_eq!(scores(&lake, &options), ["1|11", "2|21", "3|16"]);
    assert_eq!(version(&lake, &options, "main.scores"), Some(1));
    assert_eq!(version(&lake, &options, "main.ranking"), Some(1));
    proxy.heal();

    // A store that stops answering: the request times out (2s), and with
    // no retries allowed the build says which object it was waiting for.
    proxy.fail("PUT", "scores/_delta_log/", crate::s3_server::Fault::Hang);
    let (code, stdout, stderr) = build(3, &[("ETL_TEST_S3_RETRIES", "0".to_owned())]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("faults/project/warehouse/main/scores/_delta_log/00000000000000000002.json"),
        "{stderr}"
    );
    assert!(stderr.contains("(operation timed out)"), "{stderr}");
    assert_eq!(version(&lake, &options, "main.scores"), Some(1));
    proxy.heal();

    // The server goes away mid-build, right after `people` committed a new
    // delivery: `people` is at its new version, `scores` at its old one.
    std::fs::write(
        p.join("bronze/people/day2.csv"),
        "id,name,score\n3,alan,30\n4,edsger,5\n",
    )
    .unwrap();
    server.upload("faults", "project/bronze", &p.join("bronze"));
    proxy.go_down_after("PUT", "people/_delta_log/");
    let (code, stdout, stderr) = build(4, &[("ETL_TEST_S3_RETRIES", "0".to_owned())]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    // The write's own error (its read of the log after the commit), with
    // the request that failed: a listing of `people`'s log or a read of
    // its new commit, whichever the store refused first.
    assert!(
        stderr.contains("error[execution]: building `people` failed: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("/faults?list-type=2&prefix=project%2Fwarehouse%2Fmain%2Fpeople%2F_delta_log%2F")
            || stderr.contains("/faults/project/warehouse/main/people/_delta_log/00000000000000000001.json"),
        "{stderr}"
    );
    proxy.heal();
    assert_eq!(version(&lake, &options, "main.people"), Some(1));
    assert_eq!(version(&lake, &options, "main.scores"), Some(1));
    assert_eq!(scores(&lake, &options), ["1|11", "2|21", "3|16"]);

    // Once the store is back, the next build converges.
    let (code, stdout, stderr) = build(4, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(scores(&lake, &options), ["1|14", "2|24", "3|34", "4|9"]);
    let people = read_tables(&lake, &options, &["main.people".to_owned()], &[])
        .remove(0)
        .1;
    assert_eq!(people, ["1|ada|10", "2|grace|20", "3|alan|30", "4|edsger|5"]);
}

#[test]
fn a_misspelt_storage_option_is_an_error_in_the_project_file() {
    let dir = fixture("bucket");
    let p = dir.path();
    let text = std::fs::read_to_string(p.join("project.yaml")).unwrap();
    std::fs::write(p.join("project.yaml"), text.replace("aws_allow_http", "aws_alow_http")).unwrap();
    let env = bucket_env("http://127.0.0.1:9", "nowhere");
    let (code, stdout, stderr) = etl_with_env(p, &["build"], &env);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error[invalid-storage-option]: unknown storage option `aws_alow_http` for `s3://`"),
        "{stderr}"
    );
    assert!(stderr.contains("project.yaml:"), "{stderr}");
    // A missing secret is named, and the build stops before any request.
    let env: Vec<_> = bucket_env("http://127.0.0.1:9", "nowhere")
        .into_iter()
        .filter(|(k, _)| *k != "ETL_TEST_S3_SECRET")
        .collect();
    std::fs::write(p.join("project.yaml"), &text).unwrap();
    let (code, _, stderr) = etl_with_env(p, &["build"], &env);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("environment variable `ETL_TEST_S3_SECRET` is not set and has no default"),
        "{stderr}"
    );
}
