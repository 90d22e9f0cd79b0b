//! Failures on purpose, for the crash and conflict tests. With
//! `ETL_FAILPOINT` in the environment, every store a build writes through
//! is wrapped, and its first write into a `_delta_log/` folder (after a
//! write has put its data files in place, before its commit exists):
//!
//! - `before-commit`: aborts the process, like a `kill -9`;
//! - `pause-before-commit`: creates the file named by
//!   `ETL_FAILPOINT_RELEASE` with `.waiting` appended, then waits until the
//!   file `ETL_FAILPOINT_RELEASE` itself exists, and carries on. A test
//!   lets another build commit in between.
//!
//! Without the variable this module does nothing.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

const VARIABLE: &str = "ETL_FAILPOINT";
const RELEASE: &str = "ETL_FAILPOINT_RELEASE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Crash,
    Pause,
}

fn mode() -> Option<Mode> {
    match std::env::var(VARIABLE).as_deref() {
        Ok("before-commit") => Some(Mode::Crash),
        Ok("pause-before-commit") => Some(Mode::Pause),
        _ => None,
    }
}

/// Whether the environment asks for a failpoint.
pub fn armed() -> bool {
    mode().is_some()
}

/// `store`, wrapped when a failpoint is armed.
pub fn wrap(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    match mode() {
        Some(mode) => Arc::new(FailBeforeCommit { inner: store, mode }),
        None => store,
    }
}

#[derive(Debug)]
struct FailBeforeCommit {
    inner: Arc<dyn ObjectStore>,
    mode: Mode,
}

impl fmt::Display for FailBeforeCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailBeforeCommit({})", self.inner)
    }
}

/// Only the first commit of the process pauses.
static PAUSED: AtomicBool = AtomicBool::new(false);

impl FailBeforeCommit {
    async fn before_write(&self, path: &Path) {
        if !path.as_ref().contains("_delta_log/") {
            return;
        }
        match self.mode {
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
}

#[async_trait]
impl ObjectStore for FailBeforeCommit {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.before_write(location).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.before_write(location).await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.before_write(to).await;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.before_write(to).await;
        self.inner.rename_opts(from, to, options).await
    }
}
