//! The `--storage` option shared by the commands that talk to a store.

use tapelog_store::StoreUploader;
use tapelog_store::url::{StorageOptions, open_storage};

use super::CliError;

/// Where recordings and uploads are kept.
#[derive(clap::Args, Clone)]
pub struct StorageArgs {
    /// A directory (the embedded default: `tapelog-data/log/records`, upstream's
    /// `<data_dir>/log/records`), `file:///dir`, `memory://`, `s3://bucket/prefix?…`,
    /// `gs://bucket/prefix?…`, `azblob://<account host>#session_container=…` (these three in
    /// Teleport's layouts, with Teleport's options) or `az://container/prefix` (tapelog's own
    /// layout). Credentials come from the store's usual variables (`AWS_*`,
    /// `AZURE_STORAGE_*`, `GOOGLE_*`); see docs/storage.md.
    #[arg(
        long,
        env = "TAPELOG_STORAGE",
        default_value = "tapelog-data/log/records"
    )]
    pub storage: String,
    /// Endpoint of an S3-compatible server (default: `AWS_ENDPOINT_URL`, else AWS).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region of the bucket (default: `AWS_REGION` / `AWS_DEFAULT_REGION`).
    #[arg(long)]
    pub region: Option<String>,
    /// Allow plain HTTP to a non-loopback endpoint (loopback endpoints may always use it).
    #[arg(long)]
    pub allow_http: bool,
}

impl StorageArgs {
    /// Opens the store: a path without a scheme is a local directory (created if missing).
    pub fn open(&self) -> Result<StoreUploader, CliError> {
        if !self.storage.contains("://") {
            let dir = std::path::absolute(&self.storage).map_err(|source| CliError::Write {
                path: self.storage.clone(),
                source,
            })?;
            return Ok(StoreUploader::local(&dir)?);
        }
        let mut opts = StorageOptions::from_env();
        if self.endpoint.is_some() {
            opts.endpoint = self.endpoint.clone();
        }
        if self.region.is_some() {
            opts.region = self.region.clone();
        }
        opts.allow_http |= self.allow_http;
        Ok(open_storage(&self.storage, &opts)?)
    }
}
