//! `etl build --watch` under a feed that lands all day: lakegen appends a
//! day every second while the watcher builds what lands, and SIGTERM stops
//! it cleanly. See: issue 29.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::reference::reference_project;
use crate::support::*;

/// `etl build --watch` on `p`, its JSON events sent down a channel.
fn watch(p: &std::path::Path) -> (Child, Receiver<serde_json::Value>) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("etl"));
    let mut child = cleared(&mut command)
        .arg("--project-dir")
        .arg(p)
        .args(["build", "--watch", "--interval", "1s", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = send.send(event);
            }
        }
    });
    (child, receive)
}

/// The next event named `name`, within two minutes (a debug build of the
/// reference project takes seconds).
fn next(events: &Receiver<serde_json::Value>, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if event["event"] == name => return event,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("no `{name}` event within two minutes"),
            Err(RecvTimeoutError::Disconnected) => panic!("etl ended before a `{name}` event"),
        }
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the watcher to end, at most a minute: its exit code.
fn exit_code(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited, not killed by a signal");
        }
        assert!(Instant::now() < deadline, "still running a minute after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_builds_what_the_generator_appends_and_stops_on_sigterm() {
    let (dir, _) = reference_project(300, 2, 0.03);
    let p = dir.path();
    let bronze = p.join("lake/bronze");
    let (mut child, events) = watch(p);

    // The first build, of everything there is.
    assert_eq!(next(&events, "watch_build")["build"], 1);
    let first = next(&events, "run_finished");
    assert_eq!(first["error"], 0, "{first}");
    assert!(first["success"].as_u64().unwrap() > 40, "{first}");

    // Nothing lands: nothing is built, however many intervals pass.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        events.try_iter().all(|e| e["event"] != "watch_build"),
        "a build with no new file"
    );

    // The generator appends two days, a second apart, while the watcher
    // runs: their sixteen files are built, in one build or several
    // depending on where the listings fall.
    for _ in 0..2 {
        lakegen::append_day(&bronze).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    let (mut changed, mut builds) = (0, 1);
    while changed < 16 {
        let build = next(&events, "watch_build");
        builds += 1;
        assert_eq!(build["build"], builds, "{build}");
        changed += build["changed_files"].as_u64().unwrap();
        let finished = next(&events, "run_finished");
        assert_eq!(finished["error"], 0, "{finished}");
    }
    assert_eq!(changed, 16);
    // Every file of the lake is in the tables: the stock of the four days.
    let days = query(
        p,
        &["silver.stock_clean"],
        "select count(distinct snapshot_date) from silver_stock_clean",
    );
    assert_eq!(days, ["4"]);

    // SIGTERM while idle: it stops at once, exit 0.
    sigterm(&child);
    assert_eq!(exit_code(&mut child), 0);
    let stopped = events.iter().find(|e| e["event"] == "watch_stopped").unwrap();
    assert_eq!(stopped["builds"], builds, "{stopped}");
}

#[test]
fn sigterm_during_a_watched_build_lets_it_commit_then_exits_0() {
    let (dir, _) = reference_project(300, 2, 0.03);
    let p = dir.path();
    let (mut child, events) = watch(p);
    assert_eq!(next(&events, "watch_build")["build"], 1);
    // The first node has finished: the build is under way.
    next(&events, "node_finished");
    sigterm(&child);
    // The build goes on to its end, then the watcher stops.
    let finished = next(&events, "run_finished");
    assert_eq!(finished["error"], 0, "{finished}");
    assert_eq!(exit_code(&mut child), 0);
    // Its tables are committed: the next build has nothing to do.
    let (stdout, _) = etl_ok(p, &["build"]);
    assert!(stdout.contains("(38 up to date)"), "{stdout}");
}
