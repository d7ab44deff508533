//! The `blob-layout` job of `pullImageFromManifest`: the lock file's
//! manifest and the blobs fetched one by one, as an OCI layout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{Derivation, check_version};
use crate::digest::Digest;

/// The image of a lock file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct BlobLayoutJob {
    /// The job format's version, 1.
    version: u64,
    /// The lock file: the manifest as the registry has it.
    manifest: PathBuf,
    /// The `fetch-blob` outputs, by digest.
    blobs: BTreeMap<String, PathBuf>,
    /// `NAME:TAG` the layout names the image by.
    tag: String,
}

impl BlobLayoutJob {
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let manifest = std::fs::read(&self.manifest)
            .with_context(|| format!("reading the manifest {}", self.manifest.display()))?;
        let mut blobs = BTreeMap::new();
        for (digest, path) in &self.blobs {
            let d: Digest = match digest.parse() {
                Ok(d) => d,
                Err(e) => bail!("attribute stevedore.blobs: {e}"),
            };
            blobs.insert(d, path.clone());
        }
        crate::pull::layout_from_blobs(&manifest, &blobs, Some(&self.tag), drv.out())
            .with_context(|| format!("imageManifest {}", self.manifest.display()))
    }
}
