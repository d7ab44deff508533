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
use crate::stored::BlobFile;

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes the layout into the empty directory `dir`.
pub fn write_dir(image: &Image, compression: Compression, dir: &Path, jobs: usize) -> Result<()> {
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).with_context(|| format!("creating {}", blob_dir.display()))?;
    let mut layers = copy_base_blobs(image, &blob_dir)?;
    layers.extend(write_layer_blobs(image, compression, &blob_dir, jobs)?);
    let (blobs, index) = documents(image, &layers)?;
    blobs.write_dir(dir, &index)
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
    let (blobs, index) = documents(image, &layers)?;
    blobs.write_tar(w, image.ctx.mtime, &index)
}

/// The blobs of a layout being written, each once, by digest: the one
/// writer of OCI layouts, for builds and for `pull`.
#[derive(Default)]
pub struct LayoutBlobs(BTreeMap<String, Blob>);

enum Blob {
    File(PathBuf),
    /// Part of a file: a member of an archive.
    Member(BlobFile),
    Bytes(Vec<u8>),
}

impl LayoutBlobs {
    /// Adds a blob whose bytes are the file at `path`.
    pub fn file(&mut self, digest: &Digest, path: &Path) {
        self.0
            .entry(digest.hex().to_owned())
            .or_insert_with(|| Blob::File(path.to_owned()));
    }

    /// Adds a blob whose bytes are `file`'s, which may be a member of an
    /// archive.
    pub fn member(&mut self, digest: &Digest, file: &BlobFile) {
        self.0
            .entry(digest.hex().to_owned())
            .or_insert_with(|| Blob::Member(file.clone()));
    }

    /// Adds a blob (a config, a manifest).
    pub fn bytes(&mut self, bytes: Vec<u8>) {
        self.0
            .insert(Digest::of(&bytes).hex().to_owned(), Blob::Bytes(bytes));
    }

    /// Writes the layout into the directory `dir`, whose
    /// `blobs/sha256/` may already hold some of the files.
    pub fn write_dir(self, dir: &Path, index: &[u8]) -> Result<()> {
        let blob_dir = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blob_dir)
            .with_context(|| format!("creating {}", blob_dir.display()))?;
        for (hex, blob) in &self.0 {
            let target = blob_dir.join(hex);
            match blob {
                Blob::File(path) if *path == target || target.exists() => {}
                Blob::File(path) => fs::copy(path, &target)
                    .map(drop)
                    .with_context(|| format!("writing {}", target.display()))?,
                Blob::Member(file) => copy_member(file, &target)?,
                Blob::Bytes(bytes) => fs::write(&target, bytes)
                    .with_context(|| format!("writing {}", target.display()))?,
            }
        }
        for (name, bytes) in [("index.json", index), ("oci-layout", LAYOUT)] {
            let path = dir.join(name);
            fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Writes the layout as a tar whose members have the time `mtime`,
    /// blobs in name order.
    pub fn write_tar(self, w: impl Write, mtime: u64, index: &[u8]) -> Result<()> {
        let mut tar = TarOut::new(w, mtime);
        tar.dir("blobs/")?;
        tar.dir("blobs/sha256/")?;
        for (hex, blob) in &self.0 {
            let name = format!("blobs/sha256/{hex}");
            match blob {
                Blob::File(path) => tar.file_from(&name, path)?,
                Blob::Member(file) => {
                    tar.begin_file(&name, file.size)?;
                    file.copy_to(tar.inner())?;
                    tar.end_file(file.size)?;
                }
                Blob::Bytes(bytes) => tar.file(&name, bytes)?,
            }
        }
        tar.file("index.json", index)?;
        tar.file("oci-layout", LAYOUT)?;
        tar.finish()?;
        Ok(())
    }
}

/// Copies the blob `file` to the new file `target`.
fn copy_member(file: &BlobFile, target: &Path) -> Result<()> {
    let mut out =
        fs::File::create(target).with_context(|| format!("writing {}", target.display()))?;
    file.copy_to(&mut out)
        .with_context(|| format!("writing {}", target.display()))
}

/// The blobs of a built image (layers, config, manifest) and its index.
fn documents(image: &Image, layers: &[LayerBlob]) -> Result<(LayoutBlobs, Vec<u8>)> {
    let infos: Vec<BlobInfo> = layers.iter().map(|l| l.info.clone()).collect();
    let diff_ids: Vec<Digest> = infos.iter().map(|i| i.diff_id.clone()).collect();
    let config = image_config(image, &diff_ids)?;
    let manifest = oci_manifest(&config, &infos)?;
    let index = oci_index(image, &manifest)?;
    let mut blobs = LayoutBlobs::default();
    for layer in layers {
        blobs.file(&layer.info.digest, &layer.path);
    }
    blobs.bytes(config);
    blobs.bytes(manifest);
    Ok((blobs, index))
}
