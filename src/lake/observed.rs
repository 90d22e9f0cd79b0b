//! The one wrapper around every store a build writes through. It watches
//! the writes into `_delta_log/` folders, that is the Delta commits: it
//! times them per table, for `--timings`, and runs the failpoints of the
//! crash and conflict tests (see `failpoint`) just before them. Every
//! other call passes straight through.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use super::failpoint;

const LOG_FOLDER: &str = "_delta_log/";

/// Time spent writing commits, by table folder (its path in the store,
/// ending in `/`).
#[derive(Debug, Default)]
pub struct CommitClock(Mutex<HashMap<String, Duration>>);

impl CommitClock {
    /// The commit time recorded for the table at `path` since the last
    /// call, and forgets it.
    pub fn take(&self, path: &str) -> Duration {
        self.0
            .lock()
            .expect("commit clock poisoned")
            .remove(path)
            .unwrap_or_default()
    }

    fn add(&self, table: &str, spent: Duration) {
        *self
            .0
            .lock()
            .expect("commit clock poisoned")
            .entry(table.to_owned())
            .or_default() += spent;
    }
}

/// `store`, observed.
pub fn wrap(store: Arc<dyn ObjectStore>, clock: Arc<CommitClock>) -> Arc<dyn ObjectStore> {
    Arc::new(Observed {
        inner: store,
        clock,
        failpoint: failpoint::mode(),
    })
}

#[derive(Debug)]
struct Observed {
    inner: Arc<dyn ObjectStore>,
    clock: Arc<CommitClock>,
    failpoint: Option<failpoint::Mode>,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Observed({})", self.inner)
    }
}

impl Observed {
    /// The table folder of a commit file, or `None` for any other object.
    async fn before_write<'a>(&self, path: &'a Path) -> Option<&'a str> {
        let path = path.as_ref();
        let table = &path[..path.find(LOG_FOLDER)?];
        if let Some(mode) = &self.failpoint {
            failpoint::before_commit(mode, table).await;
        }
        Some(table)
    }

    fn after_write(&self, table: Option<&str>, started: Instant) {
        if let Some(table) = table {
            self.clock.add(table, started.elapsed());
        }
    }
}

#[async_trait]
impl ObjectStore for Observed {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let table = self.before_write(location).await;
        let started = Instant::now();
        let result = self.inner.put_opts(location, payload, opts).await;
        self.after_write(table, started);
        result
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
        let table = self.before_write(to).await;
        let started = Instant::now();
        let result = self.inner.copy_opts(from, to, options).await;
        self.after_write(table, started);
        result
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let table = self.before_write(to).await;
        let started = Instant::now();
        let result = self.inner.rename_opts(from, to, options).await;
        self.after_write(table, started);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn commits_are_timed_per_table_and_other_writes_are_not() {
        let clock = Arc::new(CommitClock::default());
        let store = wrap(Arc::new(InMemory::new()), clock.clone());
        let commit = Path::from("lake/warehouse/main/a/_delta_log/00000000000000000000.json");
        store.put(&commit, PutPayload::from("{}")).await.unwrap();
        store
            .put(
                &Path::from("lake/warehouse/main/b/part-0.parquet"),
                PutPayload::from("x"),
            )
            .await
            .unwrap();
        assert!(clock.take("lake/warehouse/main/a/") > Duration::ZERO);
        assert_eq!(clock.take("lake/warehouse/main/a/"), Duration::ZERO, "taken once");
        assert_eq!(clock.take("lake/warehouse/main/b/"), Duration::ZERO);
    }
}
