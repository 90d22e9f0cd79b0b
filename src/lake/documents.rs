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

/// The store and the documents of `kind`, sorted by name.
async fn list_documents(
    ctx: &SessionContext,
    root: &Url,
    kind: &str,
) -> Result<(Arc<dyn ObjectStore>, Vec<StorePath>), LakeError> {
    let store = store_for(ctx, root)?;
    let folder = path_of(&format!("{}_etl/{kind}/", root.path()))?;
    let mut names: Vec<StorePath> = store
        .list(Some(&folder))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(failed_at(root, format!("_etl/{kind}/")))?;
    names.retain(|p| p.as_ref().ends_with(".json"));
    names.sort();
    Ok((store, names))
}

/// Deletes all but the last `keep` documents of `kind` (by name, which
/// sorts by time for the runs' records). Best effort: a document that
/// cannot be deleted stays until the next time.
pub async fn prune_documents(ctx: &SessionContext, root: &Url, kind: &str, keep: usize) -> Result<usize, LakeError> {
    let (store, names) = list_documents(ctx, root, kind).await?;
    let old = names.len().saturating_sub(keep);
    let mut deleted = 0;
    for path in &names[..old] {
        if store.delete(path).await.is_ok() {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The last `count` documents of `kind`, oldest first, by name (named so
/// that names sort by time, as the runs' records are). A document that
/// does not parse is left out.
pub async fn recent_documents(
    ctx: &SessionContext,
    root: &Url,
    kind: &str,
    count: usize,
) -> Result<Vec<serde_json::Value>, LakeError> {
    let (store, names) = list_documents(ctx, root, kind).await?;
    let keep = names.len().saturating_sub(count);
    let mut out = Vec::new();
    for path in &names[keep..] {
        let Ok(got) = store.get(path).await else { continue };
        let Ok(bytes) = got.bytes().await else { continue };
        if let Ok(value) = serde_json::from_slice(&bytes) {
            out.push(value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_documents_are_read_and_the_older_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        let ctx = SessionContext::new();
        for day in 1..=5 {
            let name = format!("2024-01-0{day}T00-00-00Z_x");
            write_document(&ctx, &root, "runs", &name, &serde_json::json!({"day": day}))
                .await
                .unwrap();
        }
        let last = recent_documents(&ctx, &root, "runs", 2).await.unwrap();
        assert_eq!(last, [serde_json::json!({"day": 4}), serde_json::json!({"day": 5})]);
        assert_eq!(prune_documents(&ctx, &root, "runs", 3).await.unwrap(), 2);
        let kept = recent_documents(&ctx, &root, "runs", 10).await.unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0], serde_json::json!({"day": 3}));
    }
}
