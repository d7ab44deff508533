//! Media types of the OCI image spec and of Docker's schema 2, and what a
//! layer's media type says of its compression: the only place their
//! strings are written.

use anyhow::{Result, bail};

use crate::compress::Compression;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// The empty config of an artifact manifest (`{}`), as OCI 1.1 names it.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// A CycloneDX SBOM in JSON, as an artifact type and a layer's media type.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";

/// The OCI media type of a layer compressed with `compression`.
pub fn oci_layer(compression: Compression) -> &'static str {
    match compression {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// The Docker schema 2 media type of such a layer; schema 2 has no zstd.
pub fn docker_layer(compression: Compression) -> Option<&'static str> {
    match compression {
        Compression::None => Some(DOCKER_LAYER_TAR),
        Compression::Gzip => Some(DOCKER_LAYER_GZIP),
        Compression::Zstd => None,
    }
}

/// The compression an OCI or Docker layer media type says.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    Ok(match media_type {
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => Compression::None,
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Compression::Gzip,
        OCI_LAYER_ZSTD => Compression::Zstd,
        other => bail!("layer media type {other:?} is not a tar, tar+gzip or tar+zstd layer"),
    })
}

/// The media type of a config blob, Docker's or OCI's.
pub fn config(docker: bool) -> &'static str {
    if docker { DOCKER_CONFIG } else { OCI_CONFIG }
}

/// The media type of an image manifest, Docker's or OCI's.
pub fn manifest(docker: bool) -> &'static str {
    if docker {
        DOCKER_MANIFEST
    } else {
        OCI_MANIFEST
    }
}

/// Whether a media type is that of an index of images (or a Docker
/// manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}
