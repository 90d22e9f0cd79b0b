//! Running the binary on fixture copies and reading back what it wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;

/// Runs the project's `scripts/<script>` (which installs what a test
/// needs from the package registries, `needs` says which) and returns
/// what it prints, trimmed.
pub fn install(script: &str, needs: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("bash runs scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed (it needs {needs}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn fixture(name: &str) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, dir.path());
    dir
}

/// Replaces the first `from` in the project's `file` with `to`; `from`
/// must be there.
pub fn edit_file(project: &Path, file: &str, from: &str, to: &str) {
    let path = project.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} holds no `{from}`");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub fn etl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    etl_with_env(dir, args, &[])
}

/// [`etl`] where the run must pass (exit 0): its stdout and stderr.
pub fn etl_ok(dir: &Path, args: &[&str]) -> (String, String) {
    let (code, stdout, stderr) = etl(dir, args);
    assert_eq!(code, 0, "`etl {}` failed:\n{stdout}\n{stderr}", args.join(" "));
    (stdout, stderr)
}

/// The environment every etl a test runs starts from: nothing of the
/// shell's (an `ETL_TARGET` or a `DATAFUSION_*` there would change what
/// the test sees), only what the test sets after.
pub fn cleared(command: &mut Command) -> &mut Command {
    command.env_clear().env("NO_COLOR", "1").env("ETL_LOG", "off")
}

/// [`etl`] with more environment variables.
pub fn etl_with_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("etl"));
    let output = cleared(&mut command)
        .arg("--project-dir")
        .arg(dir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `etl --project-dir dir <args>` started in the background, paused by
/// `ETL_FAILPOINT=pause-before-commit` before its first commit: returns
/// once it waits there, for `release` to exist.
pub fn paused_before_commit(dir: &Path, args: &[&str], env: &[(&str, String)], release: &Path) -> std::process::Child {
    let mut waiting = release.as_os_str().to_owned();
    waiting.push(".waiting");
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("etl"));
    let child = cleared(&mut command)
        .arg("--project-dir")
        .arg(dir)
        .args(args)
        .env("ETL_FAILPOINT", "pause-before-commit")
        .env("ETL_FAILPOINT_RELEASE", release)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !Path::new(&waiting).exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the build never reached its commit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// Runs `etl --project-dir dir <args>` with `ETL_FAILPOINT=failpoint`,
/// which kills it on the way (a `kill -9` at a chosen moment).
pub fn killed_at(dir: &Path, args: &[&str], failpoint: &str) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("etl"));
    let status = cleared(&mut command)
        .arg("--project-dir")
        .arg(dir)
        .args(args)
        .env("ETL_FAILPOINT", failpoint)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "`ETL_FAILPOINT={failpoint}` aborts the build");
}

pub fn artifact(project: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(project.join("target").join(name)).unwrap()).unwrap()
}

pub fn table_dir(project: &Path, schema: &str, name: &str) -> PathBuf {
    project.join("lake/warehouse").join(schema).join(name)
}

/// The rows of the Delta table written for `schema.name`, each row as
/// `a|b|c`, sorted.
pub fn rows(project: &Path, schema: &str, name: &str) -> Vec<String> {
    rows_in(&project.join("lake"), schema, name)
}

/// [`rows`] of a table in the lake at `lake`.
pub fn rows_in(lake: &Path, schema: &str, name: &str) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let url = url::Url::from_directory_path(lake.join("warehouse").join(schema).join(name)).unwrap();
        let provider = etl::lake::delta_provider(&ctx, &url).await.unwrap();
        let batches = ctx.read_table(provider).unwrap().collect().await.unwrap();
        let mut out = format_rows(&batches);
        out.sort();
        out
    })
}

/// Runs `query` over the Delta tables written for `tables` (each
/// `schema.name`, registered as `schema_name`); rows as `a|b|c`, in the
/// query's order.
pub fn query(project: &Path, tables: &[&str], query: &str) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        for table in tables {
            let (schema, name) = table.split_once('.').unwrap();
            let url = url::Url::from_directory_path(table_dir(project, schema, name)).unwrap();
            let provider = etl::lake::delta_provider(&ctx, &url).await.unwrap();
            ctx.register_table(format!("{schema}_{name}"), provider).unwrap();
        }
        let batches = ctx.sql(query).await.unwrap().collect().await.unwrap();
        format_rows(&batches)
    })
}

pub fn format_rows(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

/// A webhook endpoint on a free loopback port that keeps what is POSTed
/// to it: each request's path, headers and JSON body. A path that starts
/// with `/flaky` answers 500 to its first two requests.
pub struct Webhook {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Posted>>>,
    server: std::sync::Arc<tiny_http::Server>,
}

#[derive(Debug, Clone)]
pub struct Posted {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Webhook {
    pub fn start() -> Webhook {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (serving, keeping) = (server.clone(), received.clone());
        std::thread::spawn(move || {
            let mut flaky = 0;
            for mut request in serving.incoming_requests() {
                let mut text = String::new();
                let _ = request.as_reader().read_to_string(&mut text);
                let path = request.url().to_owned();
                if path.starts_with("/flaky") && flaky < 2 {
                    flaky += 1;
                    let _ = request.respond(tiny_http::Response::from_string("busy").with_status_code(500));
                    continue;
                }
                let headers = request
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string().to_lowercase(), h.value.to_string()))
                    .collect();
                keeping.lock().unwrap().push(Posted {
                    path,
                    headers,
                    body: serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
                });
                let _ = request.respond(tiny_http::Response::from_string("ok"));
            }
        });
        Webhook { url, received, server }
    }

    /// What was posted so far to paths starting with `path`.
    pub fn posted(&self, path: &str) -> Vec<Posted> {
        let all = self.received.lock().unwrap();
        all.iter().filter(|p| p.path.starts_with(path)).cloned().collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
