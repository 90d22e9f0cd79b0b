//! Documents etl keeps in the lake beside the data, one small JSON object
//! each at `<lake>/_etl/<kind>/<name>.json` (a data test's last result,
//! the files a model ingested, what exports were made from), written in
//! one put: atomic on every store.

use super::*;

/// A small JSON document etl keeps in the lake beside the data (the last
/// result of each data test): `<root>/_etl/<kind>/<name>.json`.
pub(super) fn document_path(root: &Url, kind: &str, name: &str) -> Result<StorePath, LakeError> {
    path_of(&format!("{}_etl/{kind}/{name}.json", root.path()))
}

pub async fn read_document(ctx: &SessionContext, root: &Url, kind: &str, name: &str) -> Option<serde_json::Value> {
    let store = store_for(ctx, root).ok()?;
    let bytes = store
        .get(&document_path(root, kind, name).ok()?)
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the document in one put: atomic on every store.
pub async fn write_document(
    ctx: &SessionContext,
    root: &Url,
    kind: &str,
    name: &str,
    value: &serde_json::Value,
) -> Result<(), LakeError> {
    let store = store_for(ctx, root)?;
    let body = serde_json::to_vec_pretty(value).map_err(|e| LakeError::Corrupt {
        what: "state document",
        at: format!("{root}_etl/{kind}/{name}.json"),
        reason: e.to_string(),
    })?;
    store
        .put(&document_path(root, kind, name)?, PutPayload::from(body))
        .await
        .map(drop)
        .map_err(failed_at(root, format!("_etl/{kind}/{name}.json")))
}
