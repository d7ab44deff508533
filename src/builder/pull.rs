//! The `pull` job of `pullImage`: a fixed-output derivation, a
//! docker-archive pulled by digest ([`crate::pull`]).

use anyhow::Result;
use serde::Deserialize;

use super::{Derivation, check_version};

/// `pullImage`: an image pulled by digest into a docker-archive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PullJob {
    /// The job format's version, 1.
    version: u64,
    /// `HOST/REPO`.
    image_name: String,
    /// The manifest (or index) digest, `sha256:...`.
    image_digest: String,
    /// The name the archive gives the image.
    final_image_name: String,
    /// The tag the archive gives the image.
    final_image_tag: String,
    /// The platform picked from an index: its OS.
    os: String,
    /// Its architecture, in OCI terms.
    arch: String,
    /// Its variant; `null`: any.
    #[serde(default)]
    variant: Option<String>,
    /// false: plain http and any certificate are accepted.
    tls_verify: bool,
}

impl PullJob {
    /// Pulls the image into `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let src = crate::oci::Reference::parse(
            "imageName and imageDigest",
            &format!("docker://{}@{}", self.image_name, self.image_digest),
        )?;
        let opts = crate::pull::PullOptions {
            format: crate::pull::PullFormat::DockerArchive,
            platform: crate::oci::Platform {
                os: self.os.clone(),
                architecture: self.arch.clone(),
                variant: self.variant.clone(),
            },
            tag: Some(format!(
                "{}:{}",
                self.final_image_name, self.final_image_tag
            )),
            jobs: 3,
        };
        let conn = crate::registry::Connection {
            tls_verify: self.tls_verify,
            ..Default::default()
        };
        let pulled = crate::pull::pull(&src, drv.out(), &conn, &opts)?;
        eprintln!("pulled {pulled}");
        Ok(())
    }
}
