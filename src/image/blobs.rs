//! Writes layer blobs into a directory, several layers at once. Each worker
//! plans, tars, hashes and compresses one layer in a single pass; the results
//! are collected by layer index, so the output never depends on scheduling.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::Image;
use super::config::BlobInfo;
use crate::archive::plan::{LayerSettings, plan_layer};
use crate::archive::{LayerSource, write_layer};
use crate::compress::Compression;
use crate::digest::HashingWriter;

/// A layer blob on disk, named by its digest.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    pub info: BlobInfo,
    pub path: PathBuf,
}

const WRITE_BUFFER: usize = 256 * 1024;

/// Writes every layer of `image` as `<dir>/<hex digest>`, using up to `jobs`
/// threads.
pub fn write_layer_blobs(
    image: &Image,
    compression: Compression,
    dir: &Path,
    jobs: usize,
) -> Result<Vec<LayerBlob>> {
    let count = image.layers.len();
    let streams = jobs.min(count);
    crate::pool::map(count, jobs, |i| {
        write_one(
            &image.ctx,
            &image.layers[i].source,
            compression,
            dir,
            i,
            streams,
        )
        .with_context(|| format!("writing layer {} of {count}", i + 1))
    })
}

/// Copies the base image's layer blobs, byte for byte, into `dir` as
/// `<dir>/<hex digest>`.
pub fn copy_base_blobs(image: &Image, dir: &Path) -> Result<Vec<LayerBlob>> {
    let mut blobs = Vec::new();
    for (i, layer) in image.base_layers().iter().enumerate() {
        let path = dir.join(layer.digest.hex());
        let tmp = dir.join(format!(".base-{i}.partial"));
        let mut out = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        layer.copy_to(i, &mut out)?;
        fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
        blobs.push(LayerBlob {
            info: BlobInfo {
                diff_id: layer.diff_id.clone(),
                digest: layer.digest.clone(),
                size: layer.file.size,
                compression: layer.compression,
            },
            path,
        });
    }
    Ok(blobs)
}

fn write_one(
    ctx: &LayerSettings,
    source: &LayerSource,
    compression: Compression,
    dir: &Path,
    index: usize,
    streams: usize,
) -> Result<LayerBlob> {
    let tmp = dir.join(format!(".layer-{index}.partial"));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let file = BufWriter::with_capacity(WRITE_BUFFER, file);
    let (file, info) = write_blob(ctx, source, compression, streams, file)?;
    file.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|mut f| f.flush())
        .with_context(|| format!("writing {}", tmp.display()))?;
    let path = dir.join(info.digest.hex());
    fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(LayerBlob { info, path })
}

/// Plans a layer, then writes its tar to `w` compressed, in one pass that
/// hashes both the tar (its diff_id) and the blob; returns `w` and what
/// the blob is. The one maker of layer blobs, for files and for pushes;
/// `streams` is how many are made at once (see [`Compression::encoder`]).
pub fn write_blob<W: Write>(
    ctx: &LayerSettings,
    source: &LayerSource,
    compression: Compression,
    streams: usize,
    w: W,
) -> Result<(W, BlobInfo)> {
    let plan = plan_layer(ctx, source)?;
    if compression == Compression::None {
        let mut tar = HashingWriter::new(w);
        write_layer(ctx, &plan, &mut tar)?;
        let (w, diff_id, size) = tar.finish();
        let info = BlobInfo {
            digest: diff_id.clone(),
            diff_id,
            size,
            compression,
        };
        return Ok((w, info));
    }
    let mut tar = HashingWriter::new(compression.encoder(HashingWriter::new(w), streams)?);
    write_layer(ctx, &plan, &mut tar)?;
    let (encoder, diff_id, _) = tar.finish();
    let (w, digest, size) = encoder.finish().context("compressing layer")?.finish();
    Ok((
        w,
        BlobInfo {
            diff_id,
            digest,
            size,
            compression,
        },
    ))
}
