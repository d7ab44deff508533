//! The `merge` job of `mergeImages`: several images in one docker-archive,
//! written by [`crate::merge`].

use std::path::PathBuf;

use anyhow::Result;
use serde::Deserialize;

use super::{Derivation, check_version};

/// `mergeImages`: every image of `images` in one docker-archive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MergeJob {
    /// The job format's version, 1.
    version: u64,
    /// The images, in the order the archive's `manifest.json` lists them.
    images: Vec<String>,
}

impl MergeJob {
    /// Writes the merged archive to `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let images: Vec<PathBuf> = self.images.iter().map(PathBuf::from).collect();
        crate::merge::merge(&images, drv.out())
    }
}
