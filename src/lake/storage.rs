//! The object stores a build reads and writes through: one store per bucket
//! (`s3://`, `gs://`, `az://`), built by `object_store` from the provider's
//! usual environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...) with the
//! target's `options` over them, and registered once on the build's
//! DataFusion session. Sources, Delta tables, views and etl's state all
//! reach storage through these registered stores, so that one set of
//! credentials, timeouts and retries applies to everything a build touches.
//!
//! Delta commits need no lock service: `object_store` writes each commit
//! with a conditional put (`If-None-Match: *` on S3), so of two builds
//! committing the same table version exactly one succeeds.

use std::collections::BTreeMap;
use std::sync::{Arc, Once};

use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use deltalake::logstore::{LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, RetryConfig};

use super::LakeError;
use url::Url;

use super::observed::{self, CommitClock};

/// The object stores etl knows, by URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    S3,
    Gcs,
    Azure,
}

impl Provider {
    fn of(url: &Url) -> Option<Provider> {
        match url.scheme() {
            "s3" | "s3a" => Some(Provider::S3),
            "gs" | "gcs" => Some(Provider::Gcs),
            "az" | "azure" | "abfs" | "abfss" | "adl" => Some(Provider::Azure),
            _ => None,
        }
    }

    const SCHEMES: &[&str] = &["s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "adl"];
}

/// Options that are not the provider's own: how often and how long a
/// failed request is retried (`object_store` retries 5xx answers, timeouts
/// and dropped connections with exponential backoff).
const RETRY_OPTIONS: &[&str] = &["max_retries", "retry_timeout"];

/// Checks one `options` key of a target whose lake is at `lake`: unknown
/// keys are errors, so that a misspelt endpoint never sends a build to the
/// provider's default one.
pub fn check_option(lake: &Url, key: &str) -> Result<(), LakeError> {
    let lower = key.to_ascii_lowercase();
    if RETRY_OPTIONS.contains(&lower.as_str()) {
        return Ok(());
    }
    let known = match Provider::of(lake) {
        Some(Provider::S3) => lower.parse::<AmazonS3ConfigKey>().is_ok(),
        Some(Provider::Gcs) => lower.parse::<GoogleConfigKey>().is_ok(),
        Some(Provider::Azure) => lower.parse::<AzureConfigKey>().is_ok(),
        None => {
            return Err(LakeError::Options(format!(
                "storage option `{key}` has no use with a lake at `{lake}`: options configure object stores ({})",
                Provider::SCHEMES.join("://, ") + "://"
            )));
        }
    };
    if known {
        Ok(())
    } else {
        Err(LakeError::Options(format!(
            "unknown storage option `{key}` for `{}://`",
            lake.scheme()
        )))
    }
}

/// The target's storage options, kept in the session so that a bucket
/// first met late (an export to another bucket) gets the same settings.
#[derive(Debug, Default)]
struct StorageOptions(BTreeMap<String, String>);

/// Sets up `ctx` to reach storage with `options`, and registers the store
/// of every bucket among `locations` (the lake root and the sources) now,
/// so that a bad setting fails the build before anything runs. Local paths
/// use the session's own file store.
pub fn connect<'a>(
    ctx: &SessionContext,
    options: &BTreeMap<String, String>,
    locations: impl IntoIterator<Item = &'a Url>,
) -> Result<(), String> {
    register_log_stores();
    let clock = Arc::new(CommitClock::default());
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .set_extension(Arc::new(StorageOptions(options.clone())));
        state.config_mut().set_extension(clock.clone());
    }
    let file = Url::parse("file:///").expect("a valid URL");
    ctx.register_object_store(&file, observed::wrap(Arc::new(LocalFileSystem::new()), clock));
    for url in locations {
        ensure_store(ctx, url).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Registers the store of `url`'s bucket on `ctx` unless it has one.
pub fn ensure_store(ctx: &SessionContext, url: &Url) -> Result<(), LakeError> {
    let Some(provider) = Provider::of(url) else {
        return Ok(());
    };
    let bucket = bucket_url(url)?;
    let key = ObjectStoreUrl::parse(bucket.as_str()).map_err(|e| LakeError::Location(e.to_string()))?;
    if ctx.runtime_env().object_store(&key).is_ok() {
        return Ok(());
    }
    let (options, clock) = {
        let state = ctx.state_ref();
        let state = state.read();
        let config = state.config();
        (
            config.get_extension::<StorageOptions>().unwrap_or_default(),
            config.get_extension::<CommitClock>().unwrap_or_default(),
        )
    };
    let store = bucket_store(provider, &bucket, &options.0)?;
    ctx.register_object_store(&bucket, observed::wrap(store, clock));
    Ok(())
}

/// Seconds spent writing the commits of the table at `url` since the last
/// call (0 when the session was not set up by [`connect`]).
pub fn take_commit_time(ctx: &SessionContext, url: &Url) -> f64 {
    let clock = ctx.state_ref().read().config().get_extension::<CommitClock>();
    let path = url.path().trim_start_matches('/');
    clock.map_or(0.0, |c| c.take(path).as_secs_f64())
}

/// `scheme://bucket/`: the key DataFusion's registry files a store under.
fn bucket_url(url: &Url) -> Result<Url, LakeError> {
    let bucket = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| LakeError::Location(format!("`{url}` names no bucket")))?;
    Url::parse(&format!("{}://{bucket}/", url.scheme())).map_err(|e| LakeError::Location(format!("`{url}`: {e}")))
}

fn bucket_store(
    provider: Provider,
    bucket: &Url,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, LakeError> {
    let retry = retry_config(options)?;
    let provider_options = options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| !RETRY_OPTIONS.contains(&k.as_str()));
    let failed = |e: object_store::Error| LakeError::NoStore {
        url: bucket.to_string(),
        reason: e.to_string(),
    };
    let store: Arc<dyn ObjectStore> = match provider {
        Provider::S3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(bucket.as_str()).with_retry(retry);
            for (key, value) in provider_options {
                let key = key
                    .parse::<AmazonS3ConfigKey>()
                    .map_err(|e| LakeError::Options(e.to_string()))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(failed)?)
        }
        Provider::Gcs => {
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_url(bucket.as_str())
                .with_retry(retry);
            for (key, value) in provider_options {
                let key = key
                    .parse::<GoogleConfigKey>()
                    .map_err(|e| LakeError::Options(e.to_string()))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(failed)?)
        }
        Provider::Azure => {
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_url(bucket.as_str())
                .with_retry(retry);
            for (key, value) in provider_options {
                let key = key
                    .parse::<AzureConfigKey>()
                    .map_err(|e| LakeError::Options(e.to_string()))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(failed)?)
        }
    };
    Ok(store)
}

fn retry_config(options: &BTreeMap<String, String>) -> Result<RetryConfig, LakeError> {
    let mut retry = RetryConfig::default();
    for (key, value) in options {
        match key.to_ascii_lowercase().as_str() {
            "max_retries" => {
                retry.max_retries = value
                    .parse()
                    .map_err(|_| LakeError::Options(format!("`max_retries` must be a number, not `{value}`")))?;
            }
            "retry_timeout" => {
                retry.retry_timeout = humantime::parse_duration(value).map_err(|e| {
                    LakeError::Options(format!(
                        "`retry_timeout` must be a duration such as `30s`, not `{value}`: {e}"
                    ))
                })?;
            }
            _ => {}
        }
    }
    Ok(retry)
}

/// Delta's log stores for the object-store schemes: its default log store,
/// which commits with a conditional put. deltalake registers only local
/// schemes itself; the stores come from the session (see `lake::table_at`).
fn register_log_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factories = deltalake::logstore::logstore_factories();
        for scheme in Provider::SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("a valid URL");
            factories.entry(url).or_insert_with(|| Arc::new(ConditionalPutLogStore));
        }
    });
}

struct ConditionalPutLogStore;

impl LogStoreFactory for ConditionalPutLogStore {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn options_are_checked_against_the_lake_provider() {
        let s3 = Url::parse("s3://lake/shop/").unwrap();
        assert!(check_option(&s3, "AWS_ENDPOINT_URL").is_ok());
        assert!(check_option(&s3, "aws_allow_http").is_ok());
        assert!(check_option(&s3, "retry_timeout").is_ok());
        let err = check_option(&s3, "aws_endpont_url").unwrap_err();
        assert!(matches!(err, LakeError::Options(_)), "{err:?}");
        assert_eq!(err.to_string(), "unknown storage option `aws_endpont_url` for `s3://`");
        let gs = Url::parse("gs://lake/").unwrap();
        assert!(check_option(&gs, "google_service_account").is_ok());
        let local = Url::parse("file:///data/lake/").unwrap();
        assert!(
            check_option(&local, "region")
                .unwrap_err()
                .to_string()
                .contains("has no use")
        );
    }

    #[test]
    fn retry_options_parse_durations_and_counts() {
        let options: BTreeMap<String, String> = [("max_retries", "2"), ("RETRY_TIMEOUT", "1500ms")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let retry = retry_config(&options).unwrap();
        assert_eq!(retry.max_retries, 2);
        assert_eq!(retry.retry_timeout, Duration::from_millis(1500));
        let bad: BTreeMap<String, String> = [("max_retries".to_owned(), "many".to_owned())].into();
        assert_eq!(
            retry_config(&bad).unwrap_err().to_string(),
            "`max_retries` must be a number, not `many`"
        );
    }

    #[test]
    fn stores_are_filed_by_bucket() {
        let url = Url::parse("s3://lake/shop/warehouse/silver/orders/").unwrap();
        assert_eq!(bucket_url(&url).unwrap().as_str(), "s3://lake/");
    }
}
