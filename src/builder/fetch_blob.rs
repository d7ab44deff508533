//! The `fetch-blob` job of `pullImageFromManifest`: one blob of a
//! registry as a fixed-output derivation, its digest the output hash.

use anyhow::{Result, bail};
use serde::Deserialize;

use super::{Derivation, check_version};
use crate::digest::Digest;
use crate::registry::fetch::{Wanted, fetch_blob};

/// One blob: a layer or the config the lock file names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FetchBlobJob {
    /// The job format's version, 1.
    version: u64,
    /// `HOST/REPO`.
    image_name: String,
    /// The blob's digest, `sha256:...`.
    digest: String,
    /// Its size in bytes, as the manifest says.
    size: u64,
    /// false: plain http and any certificate are accepted.
    tls_verify: bool,
}

impl FetchBlobJob {
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let digest: Digest = match self.digest.parse() {
            Ok(d) => d,
            Err(e) => bail!("attribute stevedore.digest: {e}"),
        };
        let src = crate::oci::Reference::parse(
            "imageName",
            &format!("docker://{}@{digest}", self.image_name),
        )?;
        let conn = crate::registry::Connection {
            tls_verify: self.tls_verify,
            ..Default::default()
        };
        let wanted = Wanted {
            what: format!("blob {digest} of {}", self.image_name),
            digest,
            size: self.size,
        };
        fetch_blob(&src, &wanted, drv.out(), &conn)
    }
}
