//! What goes wrong reaching the lake, by kind: callers that only report it
//! show its text; those that must tell one kind from another match on it.

use deltalake::DeltaTableError;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A location that is neither a URL nor an absolute path, or a path
    /// the store cannot take.
    #[error("{0}")]
    Location(String),
    /// A target's storage options that cannot configure its store.
    #[error("{0}")]
    Options(String),
    /// The session has no store for the location's bucket.
    #[error("no object store for `{url}`: {reason}")]
    NoStore { url: String, reason: String },
    /// A request to the store failed (the reason carries its root cause:
    /// a timeout, a refused connection).
    #[error("`{at}`: {reason}")]
    Request { at: String, reason: String },
    /// No Delta table where one was expected.
    #[error("no Delta table at `{0}`")]
    NoTable(Url),
    /// A document etl keeps in the lake (a view, a commit) does not parse.
    #[error("corrupt {what} at `{at}`: {reason}")]
    Corrupt {
        what: &'static str,
        at: String,
        reason: String,
    },
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl LakeError {
    /// A failed request to the object at `at`.
    pub fn request(at: impl std::fmt::Display, err: &object_store::Error) -> LakeError {
        LakeError::Request {
            at: at.to_string(),
            reason: super::with_root_cause(err),
        }
    }
}
