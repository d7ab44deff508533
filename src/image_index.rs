//! `buildImageIndex`: images built for several platforms gathered into one
//! OCI layout whose image is an index of them, every blob byte for byte.
//!
//! Each image is read where it is ([`crate::stored`]): its config and layer
//! blobs go into the layout unchanged, and its manifest is the one its
//! layout holds or, for a docker-archive, the one `stevedore push` sends
//! for it, so an image pushed alone and in the index has the same
//! digests. A `streamLayeredImage` launcher is first written as a layout
//! with gzip layers ([`crate::image::oci_layout`]), the layers `push`
//! makes of it. `index.json` names one entry, the index, under
//! `NAME:TAG`; the index lists one manifest per platform, in the order of
//! the images, each with the platform its config gives.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::image::PlatformBuilder;

use crate::compress::Compression;
use crate::image::config::{index_of_one, manifest, platform_index};
use crate::image::oci_layout::{self, LayoutBlobs};
use crate::oci::media_type::OCI_INDEX;
use crate::oci::platform::Platform;
use crate::oci::reference;
use crate::output::{AtomicDir, scratch_beside};
use crate::stored::{self, Pick};

/// Writes the layout of `images` (docker-archives, OCI layouts or
/// oci-archives, or launchers, one image each), named `name:tag`, to the
/// new directory `out`, using up to `jobs` threads for launchers' layers.
pub fn write(images: &[PathBuf], name: &str, tag: &str, out: &Path, jobs: usize) -> Result<()> {
    reference::check_name(name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
    reference::check_tag(tag).map_err(|e| anyhow::anyhow!("tag: {e}"))?;
    if images.is_empty() {
        bail!("images: give at least one image");
    }
    let dir = AtomicDir::create(out)?;
    let scratch = scratch_beside(out)?;
    let mut blobs = LayoutBlobs::default();
    let mut entries: Vec<(Vec<u8>, oci_spec::image::Platform)> = Vec::new();
    let mut platforms: Vec<Platform> = Vec::new();
    for (i, path) in images.iter().enumerate() {
        let what = format!("image {} ({})", i + 1, path.display());
        let (manifest, platform) =
            add_image(path, &scratch.path().join(i.to_string()), jobs, &mut blobs)
                .with_context(|| what.clone())?;
        if let Some(n) = platforms.iter().position(|p| clash(p, &platform)) {
            bail!(
                "{what} is for {platform}, as image {} is: an index holds one image per platform; build each image for its own architecture (or variant)",
                n + 1
            );
        }
        entries.push((manifest, oci_platform(&platform)?));
        platforms.push(platform);
    }
    let index = platform_index(&entries)?;
    let top = index_of_one(&index, OCI_INDEX, None, Some(&format!("{name}:{tag}")))?;
    for (manifest, _) in entries {
        blobs.bytes(manifest);
    }
    blobs.bytes(index);
    blobs.write_dir(dir.path(), &top)?;
    dir.commit()
}

/// Adds the config and layer blobs of the image at `path` to `blobs`;
/// returns its OCI manifest and platform. `scratch` is a new path the
/// image may be written to first (launchers, archives compressed whole).
fn add_image(
    path: &Path,
    scratch: &Path,
    jobs: usize,
    blobs: &mut LayoutBlobs,
) -> Result<(Vec<u8>, Platform)> {
    let readable = if crate::source::is_launcher(path)? {
        let image = crate::source::launcher_image(path)?;
        oci_layout::write_dir(&image, Compression::Gzip, scratch, jobs)?;
        scratch.to_owned()
    } else {
        crate::source::readable(path, scratch, crate::base::Limits::from_env()?)?
    };
    let image = stored::open(&readable, &Pick::Only, "image")?;
    let platform = config_platform(&image.config)?;
    let mut layers = Vec::new();
    for layer in &image.layers {
        let digest = layer.blob_digest()?;
        blobs.member(&digest, &layer.file);
        layers.push((layer.compression, digest, layer.file.size));
    }
    let manifest = match image.oci_manifest {
        Some(m) => m,
        None => manifest(
            &image.config,
            layers.iter().map(|(c, d, s)| (*c, d, *s)),
            false,
        )?,
    };
    blobs.bytes(image.config);
    Ok((manifest, platform))
}

/// Whether two images cannot share an index: os and architecture the
/// same, and the variant too, or one has none (it would match any).
fn clash(a: &Platform, b: &Platform) -> bool {
    a.os == b.os
        && a.architecture == b.architecture
        && (a.variant == b.variant || a.variant.is_none() || b.variant.is_none())
}

/// The platform an image config names (`os`, `architecture`, `variant`).
fn config_platform(config: &[u8]) -> Result<Platform> {
    let platform: Platform =
        serde_json::from_slice(config).context("its config is not an image config")?;
    if platform.os.is_empty() || platform.architecture.is_empty() {
        bail!("its config names no os and architecture, so it has no place in an index");
    }
    Ok(platform)
}

/// `platform` as the index entry's `platform`.
fn oci_platform(platform: &Platform) -> Result<oci_spec::image::Platform> {
    let mut builder = PlatformBuilder::default()
        .os(platform.os.as_str())
        .architecture(platform.architecture.as_str());
    if let Some(v) = &platform.variant {
        builder = builder.variant(v.clone());
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_without_a_variant_clashes_with_any_variant() {
        let p = |text: &str| text.parse::<Platform>().unwrap();
        assert!(clash(&p("linux/arm64"), &p("linux/arm64/v8")));
        assert!(clash(&p("linux/amd64"), &p("linux/amd64")));
        assert!(!clash(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(!clash(&p("linux/arm64"), &p("linux/amd64")));
        assert!(!clash(&p("linux/amd64"), &p("windows/amd64")));
    }

    #[test]
    fn a_config_gives_its_platform() {
        let p =
            config_platform(br#"{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{}}"#)
                .unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let err = config_platform(br#"{"rootfs":{}}"#).unwrap_err();
        assert!(
            err.to_string().contains("names no os and architecture"),
            "{err}"
        );
    }
}
