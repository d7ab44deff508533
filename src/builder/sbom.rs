//! The `sbom` job: an image's software bill of materials (`passthru.sbom`,
//! `passthru.spdx`), from the image, the closure graph Nix exported and
//! the `meta` the library was given ([`crate::contents::sbom`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::{Derivation, check_version};
use crate::contents::sbom::{self, SbomFormat};
use crate::contents::{self, Facts, Meta};

/// A bill of materials of an image of the Nix library.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SbomJob {
    /// The job format's version, 1.
    version: u64,
    /// `cyclonedx` or `spdx`.
    format: SbomFormat,
    /// The image: a launcher, docker-archive or oci-archive.
    image: String,
    /// The `exportReferencesGraph` attribute holding the image's closure.
    graph: String,
    /// `meta` of the contents that have one.
    #[serde(default)]
    components: Vec<Component>,
}

/// A store path and what its derivation's `meta` says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Component {
    path: String,
    meta: Meta,
}

impl SbomJob {
    /// Writes the document to `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let graph = drv.exported_graph(&self.graph)?;
        let meta: BTreeMap<String, Meta> = self
            .components
            .iter()
            .map(|c| (c.path.clone(), c.meta.clone()))
            .collect();
        let facts = Facts {
            graph: Some(&graph),
            meta,
            host_store: false,
        };
        let image = contents::open(Path::new(&self.image), &facts)?;
        let doc = sbom::write(&image, self.format)?;
        fs::write(drv.out(), doc).with_context(|| format!("writing {}", drv.out().display()))
    }
}
