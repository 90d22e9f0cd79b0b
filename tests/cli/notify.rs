//! `notify:` as a scheduled build uses it: a webhook server (in the test)
//! and an SMTP server requiring STARTTLS and a login (aiosmtpd, from
//! PyPI, installed by `scripts/install-smtp-test-server`) on loopback
//! hear of the day's summary, a failed build and a build that could not
//! run; a channel that is down is retried and leaves the build's result
//! as it was; a stale source is a warning, then an error.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

fn smtp_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| PathBuf::from(install("install-smtp-test-server", "PyPI")))
}

/// The SMTP server, stopped when dropped; its messages in `dir`.
struct Smtp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    fn start() -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smtp_test_server.py");
        let mut child = Command::new(smtp_python())
            .arg(script)
            .arg(dir.path())
            .arg(port.to_string())
            .args(["etl", "s3cret"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), format!("ready {port}"));
        Smtp { child, port, dir }
    }

    /// Each message received: (its envelope, its text).
    fn messages(&self) -> Vec<(Value, String)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|eml| {
                let envelope = std::fs::read_to_string(eml.with_extension("json")).unwrap();
                (
                    serde_json::from_str(&envelope).unwrap(),
                    std::fs::read_to_string(eml).unwrap(),
                )
            })
            .collect()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ALERTS_SMTP_HOST", "localhost".to_owned()),
            ("ALERTS_SMTP_PORT", self.port.to_string()),
            ("ALERTS_SMTP_USER", "etl".to_owned()),
            ("ALERTS_SMTP_PASSWORD", "s3cret".to_owned()),
            ("ALERTS_SMTP_CA", self.dir.path().join("ca.pem").display().to_string()),
        ]
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The subject and body of an e-mail (quoted-printable soft breaks joined).
fn subject_and_body(message: &str) -> (String, String) {
    let (head, body) = message.split_once("\r\n\r\n").unwrap();
    let subject = head
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap()
        .to_owned();
    (subject, body.replace("=\r\n", "").replace("=3D", "="))
}

fn build(dir: &Path, args: &[&str], env: &[(&'static str, String)]) -> (i32, String, String) {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    etl_with_env(dir, &all, env)
}

#[test]
fn the_days_summary_a_failure_and_a_build_that_cannot_run_reach_the_webhooks_and_the_mailbox() {
    let hook = Webhook::start();
    let smtp = Smtp::start();
    let dir = fixture("notify");
    let p = dir.path();
    let mut env = smtp.env();
    env.push(("ALERTS_WEBHOOK", format!("{}/ops", hook.url)));
    env.push(("ALERTS_SLACK", format!("{}/slack", hook.url)));
    env.push(("ALERTS_TOKEN", "t0ken".to_owned()));

    // The first build of the day: its summary, to the webhook and by mail.
    let (code, stdout, stderr) = build(p, &[], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("Told ops (summary)"), "{stdout}");
    assert!(stdout.contains("Told mail (summary)"), "{stdout}");
    let ops = hook.posted("/ops");
    assert_eq!(ops.len(), 1);
    let summary = &ops[0].body;
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["outcome"], "success");
    assert_eq!(
        summary["headline"],
        "etl build of `alerts` (dev) succeeded: 2 nodes, 2 tests"
    );
    assert_eq!(summary["counts"], serde_json::json!({"success": 2, "pass": 2}));
    assert!(
        ops[0]
            .headers
            .contains(&("authorization".to_owned(), "Bearer t0ken".to_owned()))
    );
    // The newest two days of `daily`, the third left out.
    let revenue = &summary["figures"][0];
    assert_eq!(revenue["title"], "Revenue by day");
    assert_eq!(
        revenue["rows"],
        serde_json::json!([["2024-01-03", 1, 12.0], ["2024-01-02", 1, 7.25]])
    );
    assert_eq!(revenue["truncated"], true);
    let broken = &summary["figures"][1];
    assert!(broken["error"].as_str().unwrap().contains("no_such_column"), "{broken}");
    // One rejected order of five: 20%, under its 25% warning.
    assert_eq!(
        summary["rates"],
        serde_json::json!([{"test": "reject_rate_orders_reject_reason", "entity": "orders", "failures": 1,
            "rows": 5, "percent": 20.0, "warn_if": ">25%", "error_if": ">50%", "status": "pass"}])
    );
    assert_eq!(summary["freshness"][0]["source"], "shop.orders");
    assert_eq!(summary["freshness"][0]["status"], "pass");
    assert!(
        summary["where_to_look"]
            .as_array()
            .unwrap()
            .contains(&Value::from("https://scheduler.alerts.example/dags/alerts"))
    );
    assert!(hook.posted("/slack").is_empty(), "slack hears of failures only");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    let (envelope, text) = &mails[0];
    assert_eq!(envelope["tls"], true, "STARTTLS before the login");
    assert_eq!(envelope["login"], "etl");
    assert_eq!(envelope["to"], serde_json::json!(["data-team@alerts.example"]));
    let (subject, body) = subject_and_body(text);
    assert_eq!(subject, "etl build of `alerts` (dev) succeeded: 2 nodes, 2 tests");
    assert!(body.contains("| 2024-01-03 | 1      | 12.0    |"), "{body}");
    assert!(body.contains("Where to look"), "{body}");

    // The day's second build, as good: nobody is told again.
    let (code, stdout, _) = build(p, &[], &env);
    assert_eq!(code, 0);
    assert!(!stdout.contains("Told"), "{stdout}");
    assert_eq!((hook.posted("/ops").len(), smtp.messages().len()), (1, 1));

    // A failed test: every channel on failure hears of it, exit code 1.
    let (code, stdout, _) = build(p, &["--vars", "{max_revenue: 10}"], &env);
    assert_eq!(code, 1, "{stdout}");
    let failure = &hook.posted("/ops")[1].body;
    assert_eq!(
        (&failure["event"], &failure["outcome"]),
        (&Value::from("failure"), &Value::from("failure"))
    );
    assert_eq!(failure["failed"][0]["name"], "revenue_under_max");
    assert_eq!(failure["failed"][0]["status"], "fail");
    assert!(
        failure["where_to_look"][1].as_str().unwrap().contains("`etl retry`"),
        "{failure}"
    );
    let slack = &hook.posted("/slack")[0].body;
    assert_eq!(
        slack["text"],
        "etl build of `alerts` (dev) failed: 2 nodes, 2 tests, 1 test failed"
    );
    assert_eq!(slack["blocks"][0]["type"], "header");
    let blocks = slack["blocks"].to_string();
    assert!(
        blocks.contains("*Failed*\\n- FAIL revenue_under_max (test)"),
        "{blocks}"
    );
    let (subject, _) = subject_and_body(&smtp.messages()[1].1);
    assert_eq!(
        subject,
        "etl build of `alerts` (dev) failed: 2 nodes, 2 tests, 1 test failed"
    );

    // A model that does not render: the build cannot run, and says so.
    edit_file(p, "models/daily.sql", "{{ ref('orders') }}", "{{ ref('order') }}");
    let (code, _, _) = build(p, &[], &env);
    assert_eq!(code, 2);
    let cannot = &hook.posted("/ops")[2].body;
    assert_eq!(cannot["event"], "failure");
    let error = cannot["errors"][0].as_str().unwrap();
    assert!(
        error.contains("order") && error.contains("models/daily.sql:"),
        "{error}"
    );
    assert!(
        cannot["headline"]
            .as_str()
            .unwrap()
            .starts_with("etl build of `alerts` (dev) could not run: "),
        "{cannot}"
    );
    assert_eq!(hook.posted("/slack").len(), 2);
    assert_eq!(smtp.messages().len(), 3);
}

#[test]
fn a_channel_that_is_down_is_retried_and_the_build_keeps_its_result() {
    let hook = Webhook::start();
    let dir = fixture("notify");
    let p = dir.path();

    // Two 500s, then an answer: told at the third attempt.
    let env = vec![("ALERTS_WEBHOOK", format!("{}/flaky", hook.url))];
    let (code, stdout, _) = etl_with_env(p, &["debug"], &env);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("notify     OK     ops on failure, warning, summary (off, empty: slack, mail)"),
        "{stdout}"
    );
    let (code, stdout, _) = build(p, &[], &env);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("Told ops (summary, at attempt 3)"), "{stdout}");
    assert_eq!(hook.posted("/flaky").len(), 1);

    // Nobody listening: three attempts (`retries: 2`), a warning, and the
    // build's exit code as it was. The summary is not marked sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = fixture("notify");
    let p = dir.path();
    let env = vec![("ALERTS_WEBHOOK", format!("http://127.0.0.1:{closed}/ops?token=hidden"))];
    let (code, stdout, stderr) = build(p, &[], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("warning[notify]: ops was not told of this summary (3 attempts)"),
        "{all}"
    );
    assert!(!all.contains("hidden"), "a webhook's URL is a secret: {all}");
    assert!(all.contains("note: kept in target/notify/outbox/ops/"), "{all}");
    assert!(!p.join("target/notify.json").exists());
    let (code, stdout, stderr) = build(p, &["--vars", "{max_revenue: 10}"], &env);
    assert_eq!(code, 1, "a failed build stays failed: {stdout}");
    assert!(
        stderr.contains("warning[notify]: ops was not told of this failure (1 attempt): it still does not answer"),
        "one attempt at what it missed, none more while it is down: {stderr}"
    );
    let kept = std::fs::read_dir(p.join("target/notify/outbox/ops")).unwrap().count();
    assert_eq!(kept, 2);

    // Back up: what it missed first, marked late, oldest first, then this
    // build's message; the outbox is empty again.
    let env = vec![("ALERTS_WEBHOOK", format!("{}/back", hook.url))];
    let (code, stdout, _) = build(p, &[], &env);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("Told ops (summary, and 2 messages of earlier builds it missed)"),
        "{stdout}"
    );
    let back: Vec<(String, bool, String)> = hook
        .posted("/back")
        .iter()
        .map(|p| {
            let b = &p.body;
            (
                b["event"].as_str().unwrap().to_owned(),
                b["late"].as_bool().unwrap(),
                b["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("summary", true, "success"),
        ("failure", true, "failure"),
        ("summary", false, "success"),
    ]
    .map(|(e, l, o)| (e.to_owned(), l, o.to_owned()));
    assert_eq!(back, expected);
    assert_eq!(
        std::fs::read_dir(p.join("target/notify/outbox/ops")).unwrap().count(),
        0
    );

    // `etl notify test`: a message that only says the channel works.
    let (code, stdout, _) = etl_with_env(p, &["notify", "test", "--channel", "ops"], &env);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout.trim(), "Told ops (test)");
    let test = &hook.posted("/back")[3].body;
    assert_eq!(test["event"], "test");
    assert_eq!(
        test["headline"],
        "etl notify test of `alerts` (dev): this channel works"
    );
    let (code, _, stderr) = etl_with_env(p, &["notify", "test", "--channel", "opz"], &env);
    assert_eq!(code, 2);
    assert!(stderr.contains("no channel of this target is named `opz`"), "{stderr}");
    assert!(stderr.contains("did you mean `ops`?"), "{stderr}");
    let down = vec![("ALERTS_WEBHOOK", format!("http://127.0.0.1:{closed}/ops"))];
    let (code, _, stderr) = etl_with_env(p, &["notify", "test"], &down);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("warning[notify]: ops was not told of this test (3 attempts)"),
        "{stderr}"
    );
}

#[test]
fn a_source_whose_newest_file_is_old_warns_then_fails_the_build() {
    let hook = Webhook::start();
    let dir = fixture("notify");
    let p = dir.path();
    let env = vec![("ALERTS_WEBHOOK", format!("{}/ops", hook.url))];
    let age = |days: u64| {
        let file = std::fs::File::options()
            .write(true)
            .open(p.join("data/orders.csv"))
            .unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
            .unwrap();
    };

    age(3);
    let (code, stdout, stderr) = build(p, &[], &env);
    assert_eq!(code, 0, "a stale source is a warning: {stdout}\n{stderr}");
    assert!(
        stderr.contains("warning[freshness]: source `shop.orders` is stale: newest file is 3.0 days old (warn after 2.0 days, error after 10.0 days)"),
        "{stderr}"
    );
    let told = &hook.posted("/ops")[0].body;
    assert_eq!(
        (&told["event"], &told["outcome"]),
        (&Value::from("summary"), &Value::from("warning"))
    );
    assert_eq!(told["freshness"][0]["status"], "warn");
    assert!(
        told["headline"]
            .as_str()
            .unwrap()
            .ends_with("succeeded with warnings: 2 nodes, 2 tests, 1 source stale"),
        "{told}"
    );

    // The day's summary was sent: a warning is still told.
    let (code, _, _) = build(p, &[], &env);
    assert_eq!(code, 0);
    assert_eq!(hook.posted("/ops")[1].body["event"], "warning");

    age(11);
    let (code, stdout, stderr) = build(p, &[], &env);
    assert_eq!(code, 1, "past error_after the build fails: {stdout}\n{stderr}");
    assert!(
        stderr.contains("error[freshness]: source `shop.orders` is stale"),
        "{stderr}"
    );
    let told = &hook.posted("/ops")[2].body;
    assert_eq!(
        (&told["event"], &told["outcome"]),
        (&Value::from("failure"), &Value::from("failure"))
    );

    // `etl source freshness` reads the same file times.
    let (code, stdout, _) = etl(p, &["source", "freshness"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("ERROR STALE freshness of shop.orders"), "{stdout}");
}
