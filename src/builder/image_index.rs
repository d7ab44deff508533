//! The `image-index` job of `buildImageIndex`: images for several
//! platforms in one OCI layout, written by [`crate::image_index`].

use std::path::PathBuf;

use anyhow::Result;
use serde::Deserialize;

use super::{Derivation, check_version, image::output_hash};

/// `buildImageIndex`: one image per platform, under one name and tag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImageIndexJob {
    /// The job format's version, 1.
    version: u64,
    /// The repository name of the index.
    name: String,
    /// Its tag; `null`: the hash part of `$out`'s store path.
    #[serde(default)]
    tag: Option<String>,
    /// The images, one per platform, in the order the index lists them.
    images: Vec<String>,
}

impl ImageIndexJob {
    /// Writes the layout to `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let images: Vec<PathBuf> = self.images.iter().map(PathBuf::from).collect();
        let tag = self.tag.clone().unwrap_or_else(|| output_hash(&drv.out));
        crate::image_index::write(
            &images,
            &self.name,
            &tag,
            drv.out(),
            crate::pool::default_jobs(),
        )
    }
}
