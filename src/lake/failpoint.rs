//! Failures on purpose, for the crash and conflict tests. With
//! `ETL_FAILPOINT` in the environment, the first write into a `_delta_log/` folder (after a
//! write has put its data files in place, before its commit exists):
//!
//! - `before-commit`: aborts the process, like a `kill -9`;
//! - `before-commit@<text>`: the same, at the first commit of a table
//!   whose path holds `<text>` (`before-commit@order_events_rejected`);
//! - `pause-before-commit`: creates the file named by
//!   `ETL_FAILPOINT_RELEASE` with `.waiting` appended, then waits until the
//!   file `ETL_FAILPOINT_RELEASE` itself exists, and carries on. A test
//!   lets another build commit in between.
//!
//! And at named points of a node's build ([`crash_at`], [`armed`]):
//!
//! - `before-export`: aborts the process after a table's commit, before
//!   its exports are written;
//! - `shared-subplan-error`: a shared subplan (see `plan::shared`) fails
//!   with an internal error, as a bug in that rewrite would.
//!
//! Without the variable this module does nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

const VARIABLE: &str = "ETL_FAILPOINT";
const RELEASE: &str = "ETL_FAILPOINT_RELEASE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// At the first commit of a table whose path holds the text (any
    /// table when it is empty).
    Crash(String),
    Pause,
}

/// The failpoint the environment asks for, if any.
pub fn mode() -> Option<Mode> {
    let value = std::env::var(VARIABLE).ok()?;
    match value.split_once('@') {
        Some(("before-commit", table)) => Some(Mode::Crash(table.to_owned())),
        None if value == "before-commit" => Some(Mode::Crash(String::new())),
        None if value == "pause-before-commit" => Some(Mode::Pause),
        _ => None,
    }
}

/// Whether `ETL_FAILPOINT` names `point`.
pub fn armed(point: &str) -> bool {
    std::env::var(VARIABLE).is_ok_and(|v| v == point)
}

/// Aborts the process, like a `kill -9`, when `ETL_FAILPOINT` names
/// `point`.
pub fn crash_at(point: &str) {
    if std::env::var(VARIABLE).is_ok_and(|v| v == point) {
        std::process::abort();
    }
}

/// Only the first commit of the process pauses.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// Called before each commit write to the table at `table` (see
/// `observed`).
pub async fn before_commit(mode: &Mode, table: &str) {
    match mode {
        // Like a kill -9: no destructor, no flush, no commit.
        Mode::Crash(only) if table.contains(only.as_str()) => std::process::abort(),
        Mode::Crash(_) => {}
        Mode::Pause => {
            let Some(release) = std::env::var_os(RELEASE).map(PathBuf::from) else {
                return;
            };
            if PAUSED.swap(true, Ordering::SeqCst) {
                return;
            }
            let mut waiting = release.clone().into_os_string();
            waiting.push(".waiting");
            let _ = std::fs::write(&waiting, b"");
            while !release.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}
