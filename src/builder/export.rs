//! The `export` job of `exportImage`: an image's file system as one tar,
//! flattened by [`crate::export`].

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use super::{Derivation, check_version};

/// `exportImage`: the file system of `fromImage` as one tar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ExportJob {
    /// The job format's version, 1.
    version: u64,
    /// The image: a docker-archive, an OCI layout or oci-archive, or a
    /// stream launcher.
    from_image: String,
    /// Of an archive with several images, the one to export; `null`: the
    /// first (the tag is then not looked at, as in dockerTools).
    #[serde(default)]
    from_image_name: Option<String>,
    /// With `from_image_name`, the tag of the one to export.
    #[serde(default)]
    from_image_tag: Option<String>,
}

impl ExportJob {
    /// Writes the tar to `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let pick = match &self.from_image_name {
            None => crate::base::Pick::Named {
                name: None,
                tag: None,
            },
            name => crate::base::Pick::Named {
                name: name.clone(),
                tag: self.from_image_tag.clone(),
            },
        };
        crate::export::export(Path::new(&self.from_image), &pick, drv.out())
    }
}
