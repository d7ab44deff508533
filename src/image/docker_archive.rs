//! The docker-archive format, as `docker save` wrote it before OCI layouts:
//!
//! ```text
//! <layer id>/VERSION      "1.0"
//! <layer id>/json         legacy layer metadata (id, parent)
//! <layer id>/layer.tar    the layer, compressed or not
//! ...
//! <config hex>.json       the image config
//! manifest.json           [{"Config", "RepoTags", "Layers"}]
//! repositories            {"<name>": {"<tag>": "<top layer id>"}}
//! ```
//!
//! `manifest.json` serves current loaders (podman, Docker, skopeo), the
//! `repositories` file and per-layer `json` the old ones. Layers come first
//! and the config last, because the config holds the layers' digests: that
//! is what lets [`stream`] write the whole archive in one pass.
//!
//! [`ArchiveWriter`] is the one writer of docker-archives: a build's,
//! `pull`'s (members named by digest) and `merge`'s (members of other
//! archives) go through it.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::Image;
use super::blobs::LayerBlob;
use super::config::{image_config, legacy_layer_json};
use crate::archive::plan::plan_layer;
use crate::archive::{TarOut, write_layer};
use crate::digest::{Digest, HashingWriter};
use crate::oci::canonical_json;

/// Writes an uncompressed docker-archive, reading every file once and
/// holding no layer in memory or on disk. Each layer is hashed on a thread
/// of its own ([`HashingWriter::threaded`]), beside the one that reads its
/// files, so that the writer only copies into the output (into a pipe, as
/// often as not).
pub fn stream(image: &Image, w: impl Write) -> Result<()> {
    let mut tar = TarOut::new(w, image.ctx.mtime);
    let mut diff_ids = base_layers(image, &mut tar)?;
    let below = diff_ids.len();
    for (i, layer) in image.layers.iter().enumerate() {
        let i = below + i;
        layer_preamble(image, i, &mut tar)?;
        let plan = plan_layer(&image.ctx, &layer.source)?;
        tar.begin_file(&layer_name(image, i), plan.size)?;
        let mut hashing = HashingWriter::threaded(tar.inner());
        write_layer(&image.ctx, &plan, &mut hashing)
            .with_context(|| format!("writing layer {}", i + 1))?;
        let (_, diff_id, _) = hashing.finish();
        tar.end_file(plan.size)?;
        diff_ids.push(diff_id);
    }
    finish(image, &diff_ids, tar)
}

/// Writes a docker-archive from layer blobs already on disk.
pub fn from_blobs(image: &Image, blobs: &[LayerBlob], w: impl Write) -> Result<()> {
    let mut tar = TarOut::new(w, image.ctx.mtime);
    let mut diff_ids = base_layers(image, &mut tar)?;
    let below = diff_ids.len();
    for (i, blob) in blobs.iter().enumerate() {
        layer_preamble(image, below + i, &mut tar)?;
        tar.file_from(&layer_name(image, below + i), &blob.path)?;
        diff_ids.push(blob.info.diff_id.clone());
    }
    finish(image, &diff_ids, tar)
}

/// Copies the base image's layers, byte for byte; returns their diff_ids.
fn base_layers(image: &Image, tar: &mut TarOut<impl Write>) -> Result<Vec<Digest>> {
    let mut diff_ids = Vec::new();
    for (i, layer) in image.base_layers().iter().enumerate() {
        layer_preamble(image, i, tar)?;
        tar.begin_file(&layer_name(image, i), layer.file.size)?;
        layer.copy_to(i, tar.inner())?;
        tar.end_file(layer.file.size)?;
        diff_ids.push(layer.diff_id.clone());
    }
    Ok(diff_ids)
}

fn layer_name(image: &Image, index: usize) -> String {
    format!("{}/layer.tar", image.layer_ids()[index])
}

fn layer_preamble(image: &Image, index: usize, tar: &mut TarOut<impl Write>) -> Result<()> {
    let id = image.layer_ids()[index];
    tar.file(&format!("{id}/VERSION"), b"1.0")?;
    tar.file(&format!("{id}/json"), &legacy_layer_json(image, index))
}

fn finish(image: &Image, diff_ids: &[Digest], tar: TarOut<impl Write>) -> Result<()> {
    let mut archive = ArchiveWriter::from_tar(tar);
    let config = image_config(image, diff_ids)?;
    let config_name = format!("{}.json", Digest::of(&config).hex());
    archive.tar().file(&config_name, &config)?;
    let ids = image.layer_ids();
    archive.image(manifest_entry(
        config_name,
        vec![image.reference()],
        (0..ids.len()).map(|i| layer_name(image, i)).collect(),
    ));
    if let Some(top) = ids.last() {
        archive.tag(&image.name, &image.tag, Value::String((*top).to_owned()));
    }
    archive.finish()?;
    Ok(())
}

/// An entry of `manifest.json`: the config's member, the image's tags and
/// its layers' members, lowest first.
pub fn manifest_entry(config: String, repo_tags: Vec<String>, layers: Vec<String>) -> Value {
    json!({ "Config": config, "RepoTags": repo_tags, "Layers": layers })
}

/// Writes a docker-archive: the caller writes the layer and config members
/// into [`ArchiveWriter::tar`] and names each image and tag; `finish`
/// adds `manifest.json` (and `repositories` when a tag was named), in
/// sorted JSON.
pub struct ArchiveWriter<W: Write> {
    tar: TarOut<W>,
    manifest: Vec<Value>,
    repositories: BTreeMap<String, BTreeMap<String, Value>>,
}

impl<W: Write> ArchiveWriter<W> {
    /// An archive whose every member has the time `mtime`.
    pub fn new(w: W, mtime: u64) -> ArchiveWriter<W> {
        ArchiveWriter::from_tar(TarOut::new(w, mtime))
    }

    fn from_tar(tar: TarOut<W>) -> ArchiveWriter<W> {
        ArchiveWriter {
            tar,
            manifest: Vec::new(),
            repositories: BTreeMap::new(),
        }
    }

    /// Where the members go.
    pub fn tar(&mut self) -> &mut TarOut<W> {
        &mut self.tar
    }

    /// Adds an image: an entry of `manifest.json` ([`manifest_entry`], or
    /// one taken from another archive).
    pub fn image(&mut self, entry: Value) {
        self.manifest.push(entry);
    }

    /// Adds `repo:tag` to the legacy `repositories` file, naming the top
    /// layer's id.
    pub fn tag(&mut self, repo: &str, tag: &str, top_layer: Value) {
        self.repositories
            .entry(repo.to_owned())
            .or_default()
            .insert(tag.to_owned(), top_layer);
    }

    /// Writes `manifest.json` and `repositories`, and ends the tar.
    pub fn finish(mut self) -> Result<W> {
        self.tar
            .file("manifest.json", &canonical_json(&self.manifest))?;
        if !self.repositories.is_empty() {
            self.tar
                .file("repositories", &canonical_json(&self.repositories))?;
        }
        self.tar.finish()
    }
}
