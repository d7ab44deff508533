//! The JSON documents of an image: the config (with `rootfs.diff_ids` and one
//! `history` entry per layer), the OCI manifest and index, and the legacy
//! per-layer `json` of docker-archives. All are written with
//! [`canonical_json`], built from the `oci-spec` types.

use std::collections::HashMap;

use anyhow::Result;
use oci_spec::image::{
    ANNOTATION_REF_NAME, ConfigBuilder, DescriptorBuilder, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, PlatformBuilder,
    RootFsBuilder,
};
use serde::Serialize;

use super::{Image, canonical_json};
use crate::compress::Compression;
use crate::digest::Digest;

/// What the writer learnt about one layer blob.
#[derive(Clone, Debug)]
pub struct BlobInfo {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Digest and size of the blob as stored (compressed or not).
    pub digest: Digest,
    pub size: u64,
}

/// The image config.
pub fn image_config(image: &Image, diff_ids: &[Digest]) -> Result<Vec<u8>> {
    let c = &image.config;
    let mut config = ConfigBuilder::default();
    if let Some(v) = &c.env {
        config = config.env(v.clone());
    }
    if let Some(v) = &c.cmd {
        config = config.cmd(v.clone());
    }
    if let Some(v) = &c.entrypoint {
        config = config.entrypoint(v.clone());
    }
    if let Some(v) = &c.working_dir {
        config = config.working_dir(v.clone());
    }
    if let Some(v) = &c.user {
        config = config.user(v.clone());
    }
    if let Some(v) = &c.exposed_ports {
        config = config.exposed_ports(v.keys().cloned().collect::<Vec<_>>());
    }
    if let Some(v) = &c.volumes {
        config = config.volumes(v.keys().cloned().collect::<Vec<_>>());
    }
    if let Some(v) = &c.labels {
        config = config.labels(v.clone().into_iter().collect::<HashMap<_, _>>());
    }
    if let Some(v) = &c.stop_signal {
        config = config.stop_signal(v.clone());
    }
    let history = image
        .layers
        .iter()
        .map(|layer| {
            HistoryBuilder::default()
                .created(image.created.clone())
                .created_by("stevedore")
                .comment(layer.comment.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = ImageConfigurationBuilder::default()
        .created(image.created.clone())
        .architecture(image.architecture.as_str())
        .os(image.os.as_str())
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .build()?,
        )
        .history(history);
    if let Some(v) = &image.variant {
        builder = builder.variant(v.clone());
    }
    Ok(canonical_json(&builder.build()?))
}

/// The OCI image manifest for a config blob and layer blobs.
pub fn oci_manifest(
    config: &[u8],
    layers: &[BlobInfo],
    compression: Compression,
) -> Result<Vec<u8>> {
    let layers = layers
        .iter()
        .map(|b| {
            DescriptorBuilder::default()
                .media_type(MediaType::from(compression.oci_layer_media_type()))
                .digest(&b.digest)
                .size(b.size)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .digest(&Digest::of(config))
                .size(config.len() as u64)
                .build()?,
        )
        .layers(layers)
        .build()?;
    Ok(canonical_json(&manifest))
}

/// The OCI index, naming the manifest by the image's tag.
pub fn oci_index(image: &Image, manifest: &[u8]) -> Result<Vec<u8>> {
    let mut platform = PlatformBuilder::default()
        .architecture(image.architecture.as_str())
        .os(image.os.as_str());
    if let Some(v) = &image.variant {
        platform = platform.variant(v.clone());
    }
    let descriptor = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(&Digest::of(manifest))
        .size(manifest.len() as u64)
        .platform(platform.build()?)
        .annotations(HashMap::from([
            (ANNOTATION_REF_NAME.to_owned(), image.tag.clone()),
            ("io.containerd.image.name".to_owned(), image.reference()),
        ]))
        .build()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor])
        .build()?;
    Ok(canonical_json(&index))
}

/// The per-layer `json` of the legacy docker-archive format, for loaders
/// that predate `manifest.json`.
pub fn legacy_layer_json(image: &Image, index: usize) -> Vec<u8> {
    #[derive(Serialize)]
    struct LegacyLayer<'a> {
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        parent: Option<&'a str>,
        created: &'a str,
        architecture: &'a str,
        os: &'a str,
    }
    canonical_json(&LegacyLayer {
        id: &image.layers[index].id,
        parent: index.checked_sub(1).map(|p| image.layers[p].id.as_str()),
        created: &image.created,
        architecture: &image.architecture,
        os: &image.os,
    })
}
