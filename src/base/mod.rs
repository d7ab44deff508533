//! Base images (`fromImage`): an image whose layers go under the new ones
//! unchanged, byte for byte, so their digests stay what they were.
//!
//! [`Base::open`] takes any image stevedore reads: a docker-archive (also
//! one compressed as a whole, as dockerTools' `buildImage` writes with a
//! compressor), an OCI layout or oci-archive, a `pullImage` result, or a
//! `streamLayeredImage` launcher (streamed once into a scratch archive).
//! Every layer is read once as hostile input ([`scan`]): the blob digest
//! and diff_id are checked against the manifest and config, and the layers
//! add up to a [`View`] of the base's file system, with which the new
//! layers leave out what the base already has.

pub mod export;
pub mod scan;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::compress::Compression;
use crate::digest::{Digest, HashingReader};
pub use crate::registry::source::Pick;
use crate::registry::source::{self, BlobFile};
pub use scan::{EntryKind, Limits, View, ViewEntry};

/// One layer of a base image, as stored.
#[derive(Clone, Debug)]
pub struct BaseLayer {
    /// Where the blob's bytes are (a file, or a member of a tar).
    pub file: BlobFile,
    /// Digest and size of the blob as stored (compressed or not).
    pub digest: Digest,
    pub diff_id: Digest,
    pub compression: Compression,
    /// The uncompressed tar, when asked for (exporting, `runAsRoot`).
    pub tar: Option<PathBuf>,
}

impl BaseLayer {
    /// The blob's bytes.
    pub fn reader(&self) -> Result<impl Read + use<>> {
        let mut f = File::open(&self.file.path)
            .with_context(|| format!("reading {}", self.file.path.display()))?;
        f.seek(SeekFrom::Start(self.file.offset))?;
        Ok(f.take(self.file.size))
    }

    /// The layer id of docker-archives: the blob's digest.
    pub fn id(&self) -> &str {
        self.digest.hex()
    }
}

/// A base image, read and checked.
#[derive(Debug)]
pub struct Base {
    /// The path it was read from.
    pub path: PathBuf,
    /// The image config, as the base has it.
    pub config: Value,
    pub layers: Vec<BaseLayer>,
    /// The file system its layers add up to.
    pub view: std::sync::Arc<View>,
    /// Holds decompressed archives and kept layer tars.
    _scratch: tempfile::TempDir,
}

impl Base {
    /// Reads the image at `path`. With `keep_tars`, each layer's
    /// uncompressed tar is kept in a scratch directory, so files can be read
    /// back quickly ([`Base::open_file`]).
    pub fn open(path: &Path, pick: &Pick, keep_tars: bool) -> Result<Base> {
        let scratch = tempfile::Builder::new()
            .prefix("stevedore-base-")
            .tempdir()
            .context("creating a scratch directory")?;
        let limits = Limits::from_env()?;
        let readable = readable(path, &scratch.path().join("base.tar"), limits)
            .with_context(|| format!("fromImage {}", path.display()))?;
        let blobs = source::open_blobs(&readable, pick, "fromImage")?;
        let config: Value = serde_json::from_slice(&blobs.config)
            .with_context(|| format!("fromImage {}: the config is not JSON", path.display()))?;
        let diff_ids: Vec<Digest> = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .with_context(|| {
                format!(
                    "fromImage {}: the config has no rootfs.diff_ids",
                    path.display()
                )
            })?
            .iter()
            .map(|d| {
                d.as_str()
                    .and_then(|s| s.parse::<Digest>().ok())
                    .with_context(|| {
                        format!(
                            "fromImage {}: diff_id {d} is not a sha256 digest",
                            path.display()
                        )
                    })
            })
            .collect::<Result<_>>()?;
        if diff_ids.len() != blobs.layers.len() {
            bail!(
                "fromImage {}: the config lists {} diff_ids for {} layers",
                path.display(),
                diff_ids.len(),
                blobs.layers.len()
            );
        }
        let mut view = View::default();
        let mut layers = Vec::with_capacity(blobs.layers.len());
        for (i, (blob, want_diff_id)) in blobs.layers.iter().zip(diff_ids).enumerate() {
            let what = format!("fromImage {}: {}", path.display(), blob.what);
            let tar_path = keep_tars.then(|| scratch.path().join(format!("layer-{i}.tar")));
            let mut keep = match &tar_path {
                Some(p) => Some(BufWriter::new(
                    File::create(p).with_context(|| format!("creating {}", p.display()))?,
                )),
                None => None,
            };
            let mut f = File::open(&blob.file.path)
                .with_context(|| format!("reading {}", blob.file.path.display()))?;
            f.seek(SeekFrom::Start(blob.file.offset))?;
            let mut hashing =
                HashingReader::new(BufReader::with_capacity(256 * 1024, f.take(blob.file.size)));
            let found = scan::scan_layer(
                &mut view,
                &what,
                i,
                &mut hashing,
                Some(blob.file.size),
                limits,
                keep.as_mut().map(|w| w as &mut dyn Write),
            )?;
            std::io::copy(&mut hashing, &mut std::io::sink())
                .with_context(|| format!("{what}: reading"))?;
            if let Some(mut w) = keep {
                w.flush().context("writing a layer tar")?;
            }
            let (digest, size) = hashing.finish();
            if size != blob.file.size {
                bail!(
                    "{what}: the blob has {size} bytes, not the {} its index says",
                    blob.file.size
                );
            }
            if let Some(d) = &blob.digest
                && *d != digest
            {
                bail!("{what}: the blob's digest is {digest}, not the {d} of its manifest");
            }
            if found.diff_id != want_diff_id {
                bail!(
                    "{what}: the layer's diff_id is {}, not the {want_diff_id} of the config",
                    found.diff_id
                );
            }
            layers.push(BaseLayer {
                file: blob.file.clone(),
                digest,
                diff_id: want_diff_id,
                compression: blob.compression,
                tar: tar_path,
            });
        }
        Ok(Base {
            path: path.to_owned(),
            config,
            layers,
            view: std::sync::Arc::new(view),
            _scratch: scratch,
        })
    }

    /// The store path names (`<hash>-<name>`) the base holds below
    /// `store_dir` (`/nix/store`).
    pub fn store_names(&self, store_dir: &Path) -> Vec<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let rel = store_dir.strip_prefix("/").unwrap_or(store_dir);
        self.view.children(rel.as_os_str().as_bytes())
    }

    /// The data of a file of the view: read from the kept layer tar, or
    /// else by decompressing its layer again up to the file (cheap for one
    /// file, such as the Nix database; keep the tars to read many).
    pub fn open_file(&self, entry: &ViewEntry) -> Result<Box<dyn Read>> {
        let layer = &self.layers[entry.layer];
        if let Some(tar) = &layer.tar {
            let mut f = File::open(tar).with_context(|| format!("reading {}", tar.display()))?;
            f.seek(SeekFrom::Start(entry.offset))?;
            return Ok(Box::new(f.take(entry.size)));
        }
        let mut blob = BufReader::new(layer.reader()?);
        let head = blob.fill_buf()?.get(..4).unwrap_or_default().to_vec();
        let mut tar = scan::decoder(&head, blob)?;
        let skipped = std::io::copy(&mut (&mut tar).take(entry.offset), &mut std::io::sink())
            .with_context(|| format!("reading {}", self.path.display()))?;
        if skipped != entry.offset {
            bail!("{}: a layer changed while it was read", self.path.display());
        }
        Ok(Box::new(tar.take(entry.size)))
    }

    /// The history entries of the base's config.
    pub fn history(&self) -> Vec<Value> {
        self.config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

/// A file stevedore can index for `path`: a directory (an OCI layout) or
/// an uncompressed archive as it is; an archive compressed as a whole is
/// decompressed, and a launcher or spec streamed, to the new file
/// `scratch`.
pub fn readable(path: &Path, scratch: &Path, limits: Limits) -> Result<PathBuf> {
    let md = std::fs::metadata(path)?;
    if md.is_dir() {
        return Ok(path.to_owned());
    }
    let mut head = [0u8; 4];
    let n = File::open(path)?.read(&mut head)?;
    let head = &head[..n];
    if head.starts_with(b"#!") || head.starts_with(b"{") {
        let spec = crate::spec::Spec::load(path)?;
        let image = crate::image::Image::from_spec(spec)?;
        let mut w = BufWriter::new(File::create(scratch)?);
        crate::image::docker_archive::stream(&image, &mut w)?;
        w.flush()?;
        return Ok(scratch.to_owned());
    }
    if scan::sniff(head) == Compression::None {
        return Ok(path.to_owned());
    }
    let mut w = BufWriter::new(File::create(scratch)?);
    let mut r = scan::decoder(head, BufReader::new(File::open(path)?))?;
    let mut copied = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).context("decompressing the archive")?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > limits.max_layer_bytes {
            bail!(
                "the archive expands to more than {} bytes (the limit; set {} to change it)",
                limits.max_layer_bytes,
                scan::MAX_LAYER_BYTES_VAR
            );
        }
        w.write_all(&buf[..n])?;
    }
    w.flush()?;
    Ok(scratch.to_owned())
}
