//! The OCI image layout (image-spec `image-layout.md`), as a directory or as
//! a tar of that directory:
//!
//! ```text
//! oci-layout              {"imageLayoutVersion":"1.0.0"}
//! index.json              one manifest, annotated with the tag
//! blobs/sha256/<hex>      layers, config, manifest
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::Image;
use super::blobs::{LayerBlob, copy_base_blobs, write_layer_blobs};
use super::config::{BlobInfo, image_config, oci_index, oci_manifest};
use crate::archive::TarOut;
use crate::compress::Compression;
use crate::digest::Digest;

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes the layout into the empty directory `dir`.
pub fn write_dir(image: &Image, compression: Compression, dir: &Path, jobs: usize) -> Result<()> {
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).with_context(|| format!("creating {}", blob_dir.display()))?;
    let mut layers = copy_base_blobs(image, &blob_dir)?;
    layers.extend(write_layer_blobs(image, compression, &blob_dir, jobs)?);
    let docs = documents(image, &layers)?;
    for bytes in [&docs.config, &docs.manifest] {
        let path = blob_dir.join(Digest::of(bytes).hex());
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    for (name, bytes) in [("index.json", &docs.index[..]), ("oci-layout", LAYOUT)] {
        let path = dir.join(name);
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes the layout as a tar, with layer blobs first written to `scratch`.
pub fn write_archive(
    image: &Image,
    compression: Compression,
    scratch: &Path,
    jobs: usize,
    w: impl Write,
) -> Result<()> {
    let mut layers = copy_base_blobs(image, scratch)?;
    layers.extend(write_layer_blobs(image, compression, scratch, jobs)?);
    let docs = documents(image, &layers)?;
    // Every blob by digest, so a layer that appears twice is stored once,
    // in name order.
    let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
    for layer in &layers {
        blobs.insert(
            layer.info.digest.hex().to_owned(),
            Blob::File(layer.path.clone()),
        );
    }
    for bytes in [docs.config, docs.manifest] {
        blobs.insert(Digest::of(&bytes).hex().to_owned(), Blob::Bytes(bytes));
    }
    let mut tar = TarOut::new(w, image.ctx.mtime);
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    for (hex, blob) in &blobs {
        let name = format!("blobs/sha256/{hex}");
        match blob {
            Blob::File(path) => tar.file_from(&name, path)?,
            Blob::Bytes(bytes) => tar.file(&name, bytes)?,
        }
    }
    tar.file("index.json", &docs.index)?;
    tar.file("oci-layout", LAYOUT)?;
    tar.finish()?;
    Ok(())
}

enum Blob {
    File(PathBuf),
    Bytes(Vec<u8>),
}

struct Documents {
    config: Vec<u8>,
    manifest: Vec<u8>,
    index: Vec<u8>,
}

fn documents(image: &Image, layers: &[LayerBlob]) -> Result<Documents> {
    let infos: Vec<BlobInfo> = layers.iter().map(|l| l.info.clone()).collect();
    let diff_ids: Vec<Digest> = infos.iter().map(|i| i.diff_id.clone()).collect();
    let config = image_config(image, &diff_ids)?;
    let manifest = oci_manifest(&config, &infos)?;
    let index = oci_index(image, &manifest)?;
    Ok(Documents {
        config,
        manifest,
        index,
    })
}
