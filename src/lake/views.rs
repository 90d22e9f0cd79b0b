//! Views: a view is stored as its compiled SQL in `_etl_view.json` in its
//! own folder, beside the tables it reads, and planned again by whatever
//! reads it.

use super::*;

/// A view as stored in the lake: its compiled SQL and the relations it
/// reads, so that it can be evaluated without the project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDefinition {
    pub unique_id: String,
    pub sql: String,
    pub parents: Vec<String>,
    /// What the view was built from (see `materialize::fingerprint`).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

pub(super) const VIEW_FILE: &str = "_etl_view.json";

/// Writes a view definition (one object put: atomic on every store) and
/// removes a Delta table left at the same place by an earlier build.
pub async fn write_view(ctx: &SessionContext, url: &Url, view: &ViewDefinition) -> Result<(), LakeError> {
    let store = store_for(ctx, url)?;
    let body = serde_json::to_vec_pretty(view).map_err(|e| LakeError::Corrupt {
        what: "view definition",
        at: url.to_string(),
        reason: e.to_string(),
    })?;
    store
        .put(&store_path(url, VIEW_FILE)?, PutPayload::from(body))
        .await
        .map_err(failed_at(url, VIEW_FILE))?;
    let prefix = path_of(url.path())?;
    let stale: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(failed_at(url, ""))?;
    for object in stale {
        if object.location.filename() != Some(VIEW_FILE) {
            let at = object_url(url, &object.location);
            store
                .delete(&object.location)
                .await
                .map_err(|e| LakeError::request(at, &e))?;
        }
    }
    Ok(())
}

/// Reads the view stored at `url`, if any.
pub async fn read_view(ctx: &SessionContext, url: &Url) -> Result<Option<ViewDefinition>, LakeError> {
    let store = store_for(ctx, url)?;
    match store.get(&store_path(url, VIEW_FILE)?).await {
        Ok(result) => {
            let bytes = result.bytes().await.map_err(failed_at(url, VIEW_FILE))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LakeError::Corrupt {
                    what: "view definition",
                    at: url.to_string(),
                    reason: e.to_string(),
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(failed_at(url, VIEW_FILE)(e)),
    }
}

/// Removes a view definition once a table has replaced it.
pub async fn remove_view(ctx: &SessionContext, url: &Url) -> Result<(), LakeError> {
    let store = store_for(ctx, url)?;
    match store.delete(&store_path(url, VIEW_FILE)?).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(failed_at(url, VIEW_FILE)(e)),
    }
}
