//! A crash on purpose, for the crash tests: with `ETL_FAILPOINT=before-commit`
//! in the environment, the process aborts at its first write into a
//! `_delta_log/` folder, that is after a write has put its data files in
//! place and before its commit exists. Nothing else changes, and without
//! the variable this module does nothing.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::logstore::{ObjectStoreFactory, ObjectStoreRef, StorageConfig};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use url::Url;

const VARIABLE: &str = "ETL_FAILPOINT";

/// Installs the failpoint for local tables when the variable asks for it.
pub fn install_from_env() {
    if std::env::var(VARIABLE).as_deref() == Ok("before-commit") {
        let factories = deltalake::logstore::object_store_factories();
        factories.insert(Url::parse("file://").expect("a valid URL"), Arc::new(CrashingFactory));
    }
}

struct CrashingFactory;

impl ObjectStoreFactory for CrashingFactory {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> deltalake::DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        Ok((Arc::new(CrashBeforeCommit(Arc::from(store))), path))
    }
}

#[derive(Debug)]
struct CrashBeforeCommit(Arc<dyn ObjectStore>);

impl fmt::Display for CrashBeforeCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CrashBeforeCommit({})", self.0)
    }
}

fn crash_if_commit(path: &Path) {
    if path.as_ref().contains("_delta_log/") {
        // Like a kill -9: no destructor, no flush, no commit.
        std::process::abort();
    }
}

#[async_trait]
impl ObjectStore for CrashBeforeCommit {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        crash_if_commit(location);
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        crash_if_commit(location);
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        crash_if_commit(to);
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        crash_if_commit(to);
        self.0.rename_opts(from, to, options).await
    }
}
