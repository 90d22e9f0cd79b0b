//! The lake as a catalog: a schema per folder of `warehouse/`, a table per
//! Delta table in it, each opened at its latest committed version when a
//! query names it (a build's new rows are seen by the next query, without
//! restarting the server). Schemas registered by the server itself
//! (`pg_catalog`) sit beside them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use url::Url;

/// The lake at `warehouse` (its `warehouse/` folder, as a URL ending in
/// `/`), read through `ctx`'s object stores.
pub struct LakeCatalog {
    ctx: SessionContext,
    warehouse: Url,
    registered: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl std::fmt::Debug for LakeCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeCatalog")
            .field("warehouse", &self.warehouse.as_str())
            .finish()
    }
}

impl LakeCatalog {
    pub fn new(ctx: SessionContext, warehouse: Url) -> LakeCatalog {
        LakeCatalog {
            ctx,
            warehouse,
            registered: RwLock::new(BTreeMap::new()),
        }
    }
}

/// The folders right under `url`, by name, and with `tables` only those
/// holding a Delta commit; folders of etl's own (`_etl_staging`) left out.
async fn folders(ctx: &SessionContext, url: &Url, tables: bool) -> Vec<String> {
    let Ok(store) = crate::lake::store_for(ctx, url) else {
        return Vec::new();
    };
    let prefix = object_store::path::Path::from_url_path(url.path()).ok();
    let Ok(listed) = store.list_with_delimiter(prefix.as_ref()).await else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for name in listed.common_prefixes.iter().filter_map(|p| p.filename()) {
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let Ok(folder) = url.join(&format!("{name}/")) else {
            continue;
        };
        if !tables || crate::lake::has_commits(ctx, &folder).await {
            names.push(name.to_owned());
        }
    }
    names.sort();
    names
}

/// `future`, from the catalog's synchronous methods, which DataFusion
/// calls inside the server's runtime.
fn wait<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = wait(folders(&self.ctx, &self.warehouse, false));
        names.extend(self.registered.read().expect("catalog lock").keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(schema) = self.registered.read().expect("catalog lock").get(name) {
            return Some(schema.clone());
        }
        let url = self.warehouse.join(&format!("{name}/")).ok()?;
        Some(Arc::new(LakeSchema {
            ctx: self.ctx.clone(),
            url,
        }))
    }

    fn register_schema(&self, name: &str, schema: Arc<dyn SchemaProvider>) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .registered
            .write()
            .expect("catalog lock")
            .insert(name.to_owned(), schema))
    }
}

/// One schema of the lake: its Delta tables.
struct LakeSchema {
    ctx: SessionContext,
    url: Url,
}

impl std::fmt::Debug for LakeSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeSchema").field("url", &self.url.as_str()).finish()
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        wait(folders(&self.ctx, &self.url, true))
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Ok(url) = self.url.join(&format!("{name}/")) else {
            return Ok(None);
        };
        // One read of the Delta log: the provider is the latest version.
        match crate::lake::delta_provider(&self.ctx, &url).await {
            Ok(provider) => Ok(Some(provider)),
            Err(crate::lake::LakeError::NoTable(_)) => Ok(None),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.url
            .join(&format!("{name}/"))
            .is_ok_and(|url| wait(crate::lake::has_commits(&self.ctx, &url)))
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "`{name}`: the lake is read-only over `etl serve`; tables are written by `etl build`"
        )))
    }
}
