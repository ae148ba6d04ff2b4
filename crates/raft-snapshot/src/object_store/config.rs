//! Where backups go: [`ObjectStoreConfig`] (a URL plus the settings object stores need) and
//! [`open_object_store`], which builds the matching [`ObjectStore`].

use crate::error::{Error, Result};
use crate::object_store::{CloudStore, LocalDirStore, ObjectStore};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Where snapshots are uploaded and how to reach it.
///
/// `url` chooses the store:
///
/// | URL | store |
/// |---|---|
/// | `s3://bucket/prefix` | Amazon S3, or any S3-compatible service with `endpoint` set |
/// | `gs://bucket/prefix` | Google Cloud Storage |
/// | `az://container/prefix` | Azure Blob Storage |
/// | `file:///path` | a local directory ([`LocalDirStore`]: fsynced, renamed into place) |
///
/// Credentials come from the environment the way the `object_store` crate's users expect
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT`, web identity and instance metadata for S3;
/// `GOOGLE_SERVICE_ACCOUNT`/`GOOGLE_APPLICATION_CREDENTIALS` for GCS;
/// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY` and the other `AZURE_*`
/// variables for Azure), and any of the crate's configuration keys can be given in
/// `options` (e.g. `aws_access_key_id`, `google_service_account_key`,
/// `azure_storage_account_key`), which win over the environment. The fields below win over
/// both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// The store and the key prefix under which every blob goes.
    pub url: String,
    /// Endpoint of an S3-compatible service (MinIO, Ceph RGW, SeaweedFS, ...), e.g.
    /// `http://127.0.0.1:9000`. S3 only.
    pub endpoint: Option<String>,
    /// The region (S3).
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style
    /// (`bucket.endpoint/key`); most S3-compatible services want this. S3 only.
    pub path_style: bool,
    /// Allow plain HTTP; by default allowed exactly when `endpoint` starts with `http://`.
    pub allow_http: Option<bool>,
    /// Further configuration keys of the `object_store` crate for the URL's scheme.
    pub options: BTreeMap<String, String>,
    /// Attempts per request after the first (retried with exponential backoff on
    /// connection errors, timeouts, 5xx and throttling answers).
    pub max_retries: usize,
    /// First backoff between retries (doubling up to `max_backoff`).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest backoff between retries.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Give up retrying a request after this long.
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// Timeout of one request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Size of the parts of a multipart upload (at least 5 MiB); smaller objects go up in
    /// one request.
    pub part_size: usize,
    /// Parts of one upload in flight at once.
    pub upload_concurrency: usize,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            url: String::new(),
            endpoint: None,
            region: None,
            path_style: false,
            allow_http: None,
            options: BTreeMap::new(),
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            retry_timeout: Duration::from_secs(180),
            request_timeout: Duration::from_secs(60),
            part_size: 16 << 20,
            upload_concurrency: 4,
        }
    }
}

impl ObjectStoreConfig {
    /// A configuration for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        ObjectStoreConfig {
            url: url.into(),
            ..ObjectStoreConfig::default()
        }
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// Whether plain HTTP is allowed (see [`allow_http`](Self::allow_http)).
    fn allows_http(&self) -> bool {
        self.allow_http.unwrap_or_else(|| {
            self.endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
        })
    }

    fn client(&self) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_allow_http(self.allows_http())
    }
}

fn invalid(config: &ObjectStoreConfig, reason: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("object store {:?}: {reason}", config.url))
}

/// Parses the configuration keys of one scheme.
fn keys<K: FromStr>(config: &ObjectStoreConfig) -> Result<Vec<(K, String)>>
where
    K::Err: std::fmt::Display,
{
    config
        .options
        .iter()
        .map(|(k, v)| {
            K::from_str(k)
                .map(|key| (key, v.clone()))
                .map_err(|e| invalid(config, format!("option {k:?}: {e}")))
        })
        .collect()
}

/// Builds the object store `config` names. Fails with [`Error::Invalid`] on a URL, scheme
/// or option that makes no sense; credentials are looked up when the first request needs
/// them.
pub fn open_object_store(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>> {
    let url = url::Url::parse(&config.url).map_err(|e| invalid(config, e))?;
    if url.scheme() == "file" {
        let dir = url
            .to_file_path()
            .map_err(|()| invalid(config, "not a local absolute path"))?;
        return Ok(Arc::new(LocalDirStore::new(dir)?));
    }
    let bucket = url.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(invalid(config, "no bucket or container in the URL"));
    }
    let root = Path::parse(url.path().trim_matches('/')).map_err(|e| invalid(config, e))?;
    let s3_only = config.endpoint.is_some() || config.region.is_some() || config.path_style;
    // object_store's HTTP client runs rustls on the process's default provider; the rest of
    // the toolkit uses ring, so install ring's unless the process chose one (then this
    // fails harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store: Arc<dyn object_store::ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env()
                .with_url(config.url.as_str())
                .with_retry(config.retry())
                .with_client_options(config.client());
            for (k, v) in keys::<AmazonS3ConfigKey>(config)? {
                b = b.with_config(k, v);
            }
            if let Some(e) = &config.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &config.region {
                b = b.with_region(r);
            }
            if config.path_style {
                b = b.with_virtual_hosted_style_request(false);
            }
            Arc::new(b.build().map_err(|e| invalid(config, e))?)
        }
        "gs" if !s3_only => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(config.url.as_str())
                .with_retry(config.retry())
                .with_client_options(config.client());
            for (k, v) in keys::<GoogleConfigKey>(config)? {
                b = b.with_config(k, v);
            }
            Arc::new(b.build().map_err(|e| invalid(config, e))?)
        }
        "az" | "azure" | "abfs" | "abfss" if !s3_only => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(config.url.as_str())
                .with_retry(config.retry())
                .with_client_options(config.client());
            for (k, v) in keys::<AzureConfigKey>(config)? {
                b = b.with_config(k, v);
            }
            Arc::new(b.build().map_err(|e| invalid(config, e))?)
        }
        "gs" | "az" | "azure" | "abfs" | "abfss" => {
            return Err(invalid(
                config,
                "endpoint, region and path_style apply to s3:// URLs only",
            ));
        }
        other => {
            return Err(invalid(
                config,
                format!("unsupported scheme {other:?} (s3, gs, az or file)"),
            ));
        }
    };
    Ok(Arc::new(CloudStore::new(
        store,
        root,
        config.url.clone(),
        config.part_size,
        config.upload_concurrency,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_and_options_are_typed_errors() {
        for url in ["", "not a url", "s3://", "ftp://host/x", "gs:///x"] {
            let r = open_object_store(&ObjectStoreConfig::new(url));
            assert!(matches!(r, Err(Error::Invalid(_))), "{url}: {:?}", r.err());
        }
        let mut c = ObjectStoreConfig::new("s3://bucket/p");
        c.options.insert("no_such_key".into(), "1".into());
        assert!(matches!(open_object_store(&c), Err(Error::Invalid(_))));
        let mut c = ObjectStoreConfig::new("gs://bucket/p");
        c.path_style = true;
        assert!(matches!(open_object_store(&c), Err(Error::Invalid(_))));
    }

    #[test]
    fn config_reads_from_toml_like_json_with_defaults() {
        let c: ObjectStoreConfig = serde_json::from_str(
            r#"{"url": "s3://b/x", "endpoint": "http://127.0.0.1:9000", "path_style": true,
                "initial_backoff": "50ms", "options": {"aws_access_key_id": "k"}}"#,
        )
        .unwrap();
        assert_eq!(c.initial_backoff, Duration::from_millis(50));
        assert_eq!(c.max_retries, 10);
        assert!(c.allows_http());
        assert!(!ObjectStoreConfig::new("s3://b").allows_http());
        assert!(serde_json::from_str::<ObjectStoreConfig>(r#"{"urll": "x"}"#).is_err());
    }
}
