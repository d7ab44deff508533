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
//!
//! The layers are read in two phases. First, up to one per core at once,
//! each on its own: blob size and digest, decompression, diff_id, and every
//! entry with the checks that need no other layer, into a record of names
//! and metadata ([`scan::read_layer`]). Then, in layer order, each record
//! goes on the view with the checks that need the layers below
//! ([`View::apply`]), as soon as the records below it have. The view, and
//! the error when a layer is refused (the lowest layer's, its first entry's),
//! are those of reading the layers one after the other.

mod guard;
pub mod record;
pub mod scan;
mod view;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::compress::Compression;
use crate::digest::{Digest, HashingReader};
pub use crate::stored::Pick;
use crate::stored::{self, BlobFile, StoredLayer};
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
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// The uncompressed tar, when asked for (exporting, `runAsRoot`).
    pub tar: Option<PathBuf>,
}

impl BaseLayer {
    /// The blob's bytes.
    pub fn reader(&self) -> Result<impl Read + use<>> {
        self.file.reader()
    }

    /// Copies the blob, byte for byte, to `w`; `index` names it in
    /// messages (base layer `index + 1`).
    pub fn copy_to(&self, index: usize, w: &mut impl Write) -> Result<()> {
        let copied = std::io::copy(&mut self.reader()?, w)
            .with_context(|| format!("copying base layer {}", index + 1))?;
        if copied != self.file.size {
            bail!(
                "base layer {} has {copied} bytes, not {}: it changed while being read",
                index + 1,
                self.file.size
            );
        }
        Ok(())
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
    /// How many of `layers`, the last ones, came from stacked layer images.
    pub stacked_layers: usize,
    /// The store path names the base image holds without the stacked
    /// layers (as [`Base::store_names`] in `/nix/store`).
    pub unstacked_store_names: Vec<Vec<u8>>,
    /// The file system its layers add up to.
    pub view: std::sync::Arc<View>,
    /// Holds decompressed archives and kept layer tars.
    _scratch: tempfile::TempDir,
}

impl Base {
    /// Reads the image at `path`, which [`crate::stored`] reads at
    /// `readable` (the path itself, or a file in `scratch` that holds it
    /// expanded); `scratch` lives as long as the base. With `keep_tars`,
    /// each layer's uncompressed tar is kept in `scratch`, so files can be
    /// read back quickly ([`Base::open_file`]).
    pub fn open(
        path: &Path,
        readable: &Path,
        scratch: tempfile::TempDir,
        pick: &Pick,
        keep_tars: bool,
    ) -> Result<Base> {
        Base::open_stacked(Some((path, readable)), scratch, pick, keep_tars, &[])
    }

    /// As [`Base::open`], with the layers of the images at `stacked`
    /// (OCI layouts, such as nix2container's `buildLayer` writes) on top,
    /// in order: their layers, diff_ids and history follow the base's.
    /// With no `base` (`(path, readable)`), the first stacked image is the
    /// bottom one. A stacked layer with a scan record ([`record`]) is not
    /// read again, unless its tar is to be kept.
    pub fn open_stacked(
        base: Option<(&Path, &Path)>,
        scratch: tempfile::TempDir,
        pick: &Pick,
        keep_tars: bool,
        stacked: &[PathBuf],
    ) -> Result<Base> {
        let limits = Limits::from_env()?;
        let Some(path) = base.map(|b| b.0).or(stacked.first().map(PathBuf::as_path)) else {
            bail!("field base: neither a path nor layers");
        };
        let mut layers_in = Vec::new();
        // The layout each layer's record would be in (stacked layers only).
        let mut record_dirs: Vec<Option<&Path>> = Vec::new();
        let mut config = None;
        let mut diff_ids = Vec::new();
        if let Some((path, readable)) = base {
            let blobs = stored::open(readable, pick, "fromImage")?;
            let what = format!("fromImage {}", path.display());
            let (base_config, ids) = config_of(&blobs, &what)?;
            diff_ids = ids;
            config = Some(base_config);
            record_dirs.resize(blobs.layers.len(), None);
            layers_in = blobs.layers;
        }
        for layer_image in stacked {
            let what = format!("layer {}", layer_image.display());
            let more = stored::open(layer_image, &Pick::Only, "layer")?;
            let (more_config, more_ids) = config_of(&more, &what)?;
            match &mut config {
                Some(c) => stack_config(c, &more_config, &more_ids),
                None => config = Some(more_config),
            }
            diff_ids.extend(more_ids);
            record_dirs.resize(record_dirs.len() + more.layers.len(), Some(layer_image));
            layers_in.extend(more.layers);
        }
        let config = config.expect("a base or a stacked image gave the config");
        let unstacked = record_dirs.iter().take_while(|d| d.is_none()).count();
        let store_dir = crate::nixdb::STORE_DIR.trim_start_matches('/').as_bytes();
        let mut unstacked_store_names = Vec::new();
        let mut view = View::default();
        let mut layers = Vec::with_capacity(layers_in.len());
        crate::pool::in_order(
            layers_in.len(),
            crate::pool::default_jobs(),
            |i| {
                let what = format!("fromImage {}: {}", path.display(), layers_in[i].what);
                let recorded = match record_dirs[i] {
                    Some(dir) if !keep_tars => record::load(dir, &layers_in[i], i, &what),
                    _ => Ok(None),
                };
                let tar_path = keep_tars.then(|| scratch.path().join(format!("layer-{i}.tar")));
                let read = match recorded {
                    Ok(Some((mut record, digest))) => {
                        let checked = match &record.found {
                            Ok(found) => check_diff_id(found, &diff_ids[i], &what),
                            Err(_) => Ok(()),
                        };
                        if let Err(e) = checked {
                            record.fail(e);
                        }
                        Ok((record, digest))
                    }
                    Ok(None) => read_base_layer(
                        &layers_in[i],
                        i,
                        &diff_ids[i],
                        &what,
                        tar_path.as_deref(),
                        limits,
                    ),
                    Err(e) => Err(e),
                };
                (read, tar_path)
            },
            |i, (read, tar_path)| {
                let (record, digest) = read?;
                let scan = view.apply(record)?;
                if i + 1 == unstacked {
                    unstacked_store_names = view.children(store_dir);
                }
                let blob = &layers_in[i];
                layers.push(BaseLayer {
                    file: blob.file.clone(),
                    digest,
                    diff_id: diff_ids[i].clone(),
                    compression: blob.compression,
                    tar_size: scan.size,
                    tar: tar_path,
                });
                Ok(())
            },
        )?;
        Ok(Base {
            path: path.to_owned(),
            config,
            stacked_layers: layers.len() - unstacked,
            unstacked_store_names,
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
        let mut tar = crate::compress::Compression::sniff(&head)
            .decoder(blob)
            .context("starting zstd")?;
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

/// The first phase of reading a base layer, which needs no other layer:
/// the blob read as hostile input ([`scan::read_layer`]), its uncompressed
/// tar kept at `keep`, and its size, digest and diff_id checked (an error
/// there is the record's). The digest is the blob's, as read.
fn read_base_layer(
    blob: &StoredLayer,
    index: usize,
    want_diff_id: &Digest,
    what: &str,
    keep: Option<&Path>,
    limits: Limits,
) -> Result<(scan::LayerRecord, Digest)> {
    let mut keep = match keep {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut hashing = HashingReader::new(BufReader::with_capacity(256 * 1024, blob.file.reader()?));
    let mut record = scan::read_layer(
        what,
        index,
        &mut hashing,
        Some(blob.file.size),
        limits,
        keep.as_mut().map(|w| w as &mut dyn Write),
    );
    // After an error of the reading, the rest is neither read nor checked,
    // and the digest is of what was read.
    let rest = if record.found.is_ok() {
        std::io::copy(&mut hashing, &mut std::io::sink())
            .with_context(|| format!("{what}: reading"))
            .and_then(|_| match keep {
                Some(mut w) => w.flush().context("writing a layer tar"),
                None => Ok(()),
            })
    } else {
        Ok(())
    };
    let (digest, size) = hashing.finish();
    if let Ok(found) = &record.found {
        let checked = rest.and_then(|()| {
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
            check_diff_id(found, want_diff_id, what)
        });
        if let Err(e) = checked {
            record.fail(e);
        }
    }
    Ok((record, digest))
}

/// That a layer's tar is the one the config names.
fn check_diff_id(found: &scan::LayerScan, want: &Digest, what: &str) -> Result<()> {
    if found.diff_id != *want {
        bail!(
            "{what}: the layer's diff_id is {}, not the {want} of the config",
            found.diff_id
        );
    }
    Ok(())
}

/// A new scratch directory for a base: expanded archives, kept layer tars.
pub fn scratch_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("stevedore-base-")
        .tempdir()
        .context("creating a scratch directory")
}

/// The config of a stored image and its `rootfs.diff_ids`, one for each
/// layer; `what` names the image.
fn config_of(image: &stored::StoredImage, what: &str) -> Result<(Value, Vec<Digest>)> {
    let config: Value = serde_json::from_slice(&image.config)
        .with_context(|| format!("{what}: the config is not JSON"))?;
    let diff_ids = config_diff_ids(&config, what)?;
    if diff_ids.len() != image.layers.len() {
        bail!(
            "{what}: the config lists {} diff_ids for {} layers",
            diff_ids.len(),
            image.layers.len()
        );
    }
    Ok((config, diff_ids))
}

/// The `rootfs.diff_ids` of an image config; `what` names the image.
fn config_diff_ids(config: &Value, what: &str) -> Result<Vec<Digest>> {
    config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .with_context(|| format!("{what}: the config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| {
            d.as_str()
                .and_then(|s| s.parse::<Digest>().ok())
                .with_context(|| format!("{what}: diff_id {d} is not a sha256 digest"))
        })
        .collect()
}

/// Appends a stacked layer image's diff_ids and history to the config.
fn stack_config(config: &mut Value, layer: &Value, diff_ids: &[Digest]) {
    if let Some(Value::Array(ids)) = config.pointer_mut("/rootfs/diff_ids") {
        ids.extend(diff_ids.iter().map(|d| Value::String(d.to_string())));
    }
    let history = layer
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Value::Object(map) = config {
        match map.get_mut("history") {
            Some(Value::Array(h)) => h.extend(history),
            _ => {
                map.insert("history".to_owned(), Value::Array(history));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::EntryType::*;

    use scan::tests::Spec;

    fn layer(entries: &[Spec]) -> Vec<u8> {
        scan::tests::gnu_tar(entries, 0o755, 7)
    }

    /// A layer of entries written as [`scan::tests::entries`] reads them.
    fn layer_of(line: &str) -> Vec<u8> {
        layer(&scan::tests::entries(line))
    }

    /// The layers one after the other, each read and applied in turn.
    fn one_by_one(layers: &[Vec<u8>]) -> Result<View> {
        let mut view = View::default();
        for (i, l) in layers.iter().enumerate() {
            let what = format!("layer {}", i + 1);
            view.apply(scan::read_layer(
                &what,
                i,
                &l[..],
                None,
                Limits::default(),
                None,
            ))?;
        }
        Ok(view)
    }

    /// The layers read on `threads` threads, the lower ones slowest, so
    /// that they finish in reverse order.
    fn at_once(layers: &[Vec<u8>], threads: usize) -> Result<View> {
        let mut view = View::default();
        crate::pool::in_order(
            layers.len(),
            threads,
            |i| {
                std::thread::sleep(std::time::Duration::from_millis(
                    5 * (layers.len() - i) as u64,
                ));
                let what = format!("layer {}", i + 1);
                scan::read_layer(&what, i, &layers[i][..], None, Limits::default(), None)
            },
            |_, record| view.apply(record).map(drop),
        )?;
        Ok(view)
    }

    fn sample_layers() -> Vec<Vec<u8>> {
        vec![
            layer_of(
                "d etc/; f etc/a a; f etc/b b; f opt/x/y y; f usr/bin/sh sh; l bin usr/bin; d lib/; f lib/f f",
            ),
            layer_of(
                "f etc/.wh.a; f opt/.wh..wh..opq; f opt/z z; f etc/b b, again; l lib usr/lib; f usr/bin/sh sh 2; h usr/bin/bash usr/bin/sh",
            ),
            layer_of("f .wh.usr; f usr/lib/g g; d etc/; d etc/b/; f etc/b/c c"),
            layer_of("f .wh..wh..opq; l lib usr/lib; d srv/d/; f srv/d/e e"),
            layer_of("f srv/d now a file; p srv/f; d lib; f lib/h h"),
        ]
    }

    #[test]
    fn layers_read_at_once_add_up_as_read_one_by_one() {
        let layers = sample_layers();
        for n in 1..=layers.len() {
            let want = one_by_one(&layers[..n]).unwrap();
            assert!(!want.is_empty());
            for threads in [1, 2, 3, 8] {
                assert_eq!(at_once(&layers[..n], threads).unwrap(), want, "{n} layers");
            }
        }
    }

    #[test]
    fn the_error_is_the_lowest_layers_and_the_first_in_it() {
        let ok = layer(&[("bin", Symlink, b"", "usr/bin"), ("etc", Regular, b"", "")]);
        // A write through a lower layer's symlink, before an error of the
        // layer's own, and one through a file below.
        let through_symlink = layer(&[
            ("bin/sh", Regular, b"x", ""),
            ("empty", Symlink, b"", "x"),
            ("h", Link, b"", "missing"),
        ]);
        let under_file = layer(&[("etc/passwd", Regular, b"x", "")]);
        let own_error = layer(&[("a/../../x", Regular, b"", "")]);
        let mut cut = layer(&[("a", Regular, b"x", "")]);
        cut.truncate(600);
        let cases: &[(&[&Vec<u8>], &str)] = &[
            (
                &[&ok, &through_symlink, &own_error],
                "layer 2: entry \"bin/sh\" is below \"bin\", a symlink: writing through it could leave the root",
            ),
            (
                &[&ok, &under_file, &through_symlink],
                "layer 2: entry \"etc/passwd\" is below \"etc\", which is not a directory",
            ),
            (
                &[&ok, &own_error, &through_symlink, &cut],
                "layer 2: entry \"a/../../x\" has a \"..\" component",
            ),
            (
                &[&ok, &ok, &cut, &own_error],
                "layer 3: broken tar header after entry a",
            ),
        ];
        for (layers, want) in cases {
            let layers: Vec<Vec<u8>> = layers.iter().map(|l| (*l).clone()).collect();
            let one = format!("{:#}", one_by_one(&layers).unwrap_err());
            assert!(one.starts_with(want), "{one}");
            for threads in [1, 2, 4] {
                let err = format!("{:#}", at_once(&layers, threads).unwrap_err());
                assert_eq!(err, one, "{threads} threads");
            }
        }
    }
}
