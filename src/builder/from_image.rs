//! The `base` attribute of the image, run-as-root and nix-db jobs:
//! `fromImage`, `fromImageName` and `fromImageTag` as Nix hands them over.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;

use crate::spec;

/// `fromImage`, `fromImageName`, `fromImageTag`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseAttrs {
    /// The base image: a docker-archive (compressed as a whole or not), an
    /// OCI layout or oci-archive, or a stream launcher; none when only
    /// `layers` make the image (nix2container's `buildImage` without
    /// `fromImage`).
    #[serde(default)]
    pub path: Option<String>,
    /// Of an archive with several images, the one with this name;
    /// `null`: the first.
    #[serde(default)]
    pub name: Option<String>,
    /// Of an archive with several images, the one with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Layer images (`buildLayer` results, OCI layouts) whose layers go on
    /// top of the base's, in order.
    #[serde(default)]
    pub layers: Vec<String>,
}

impl BaseAttrs {
    /// The spec's `base`.
    pub fn spec(&self) -> spec::BaseSpec {
        spec::BaseSpec {
            path: self.path.as_ref().map(PathBuf::from),
            name: self.name.clone(),
            tag: self.tag.clone(),
            layers: self.layers.iter().map(PathBuf::from).collect(),
        }
    }

    /// Reads the base image.
    pub fn open(&self, keep_tars: bool) -> Result<crate::base::Base> {
        let pick = crate::base::Pick::Named {
            name: self.name.clone(),
            tag: self.tag.clone(),
        };
        let layers: Vec<PathBuf> = self.layers.iter().map(PathBuf::from).collect();
        let path = self.path.as_deref().map(Path::new);
        crate::source::open_base_stacked(path, &pick, keep_tars, &layers)
    }
}
