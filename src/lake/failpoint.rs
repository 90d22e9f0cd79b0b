//! Failures on purpose, for the crash and conflict tests. With
//! `ETL_FAILPOINT` in the environment, the first write into a `_delta_log/` folder (after a
//! write has put its data files in place, before its commit exists):
//!
//! - `before-commit`: aborts the process, like a `kill -9`;
//! - `pause-before-commit`: creates the file named by
//!   `ETL_FAILPOINT_RELEASE` with `.waiting` appended, then waits until the
//!   file `ETL_FAILPOINT_RELEASE` itself exists, and carries on. A test
//!   lets another build commit in between.
//!
//! Without the variable this module does nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

const VARIABLE: &str = "ETL_FAILPOINT";
const RELEASE: &str = "ETL_FAILPOINT_RELEASE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Crash,
    Pause,
}

/// The failpoint the environment asks for, if any.
pub fn mode() -> Option<Mode> {
    match std::env::var(VARIABLE).as_deref() {
        Ok("before-commit") => Some(Mode::Crash),
        Ok("pause-before-commit") => Some(Mode::Pause),
        _ => None,
    }
}

/// Only the first commit of the process pauses.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// Called before each commit write (see `observed`).
pub async fn before_commit(mode: Mode) {
    match mode {
        // Like a kill -9: no destructor, no flush, no commit.
        Mode::Crash => std::process::abort(),
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
