//! Scan records: what reading a layer found (a [`LayerRecord`]), saved
//! beside its blob, so that an image stacking the layer puts it on its view
//! without decompressing and reading it again.
//!
//! Only the `layer` job writes records, into its own output, right after
//! writing the blobs: it reads them back exactly as a base's layers are
//! read ([`super::read_base_layer`]), so a record holds what reading the
//! blob would find. Records are looked up only for the layer images of a
//! spec's `base.layers`, which the Nix library fills with `buildLayer`
//! outputs alone; a base image (`fromImage`) is always read. A record is
//! checked against the blob it stands for (its digest, as the manifest
//! names it, and its size on disk) and against the config's diff_id, not
//! against the blob's bytes: that is the point of it. Exporting and
//! `runAsRoot`, which need the layers' tars, still read every layer.
//!
//! The format is postcard (compact, and its serde types are the scan's
//! own), behind a version number; a record of another version is ignored
//! and the layer read instead.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::scan::{Changes, LayerRecord, LayerScan, Limits};
use crate::digest::Digest;
use crate::stored::{self, Pick, StoredLayer};

/// The directory of an OCI layout that holds its records, one file per
/// blob, named by the blob's hex digest.
pub const RECORDS_DIR: &str = "scans";

/// The record format's version.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    /// The blob's digest and size.
    blob: Digest,
    blob_size: u64,
    scan: LayerScan,
    changes: Changes,
}

fn record_path(layout: &Path, blob: &Digest) -> PathBuf {
    layout.join(RECORDS_DIR).join(blob.hex())
}

/// Reads every layer of the OCI layout at `layout` as a base's layers are
/// read, up to one per core at once, and saves what each reading found
/// in `<layout>/scans/`.
pub fn write_records(layout: &Path) -> Result<()> {
    let what = format!("layer {}", layout.display());
    let image = stored::open(layout, &Pick::Only, "layer")?;
    let (_, diff_ids) = super::config_of(&image, &what)?;
    let dir = layout.join(RECORDS_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let limits = Limits::from_env()?;
    crate::pool::map(image.layers.len(), crate::pool::default_jobs(), |i| {
        let blob = &image.layers[i];
        let shown = format!("{what}: {}", blob.what);
        let (record, digest) = super::read_base_layer(blob, i, &diff_ids[i], &shown, None, limits)?;
        let file = record_path(layout, &digest);
        let bytes = encode(record, digest, blob.file.size)?;
        fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))
    })?;
    Ok(())
}

/// A record's bytes: what reading a blob of `blob_size` bytes and digest
/// `blob` found.
fn encode(record: LayerRecord, blob: Digest, blob_size: u64) -> Result<Vec<u8>> {
    let saved = Saved {
        version: VERSION,
        blob,
        blob_size,
        scan: record.found?,
        changes: record.changes,
    };
    postcard::to_stdvec(&saved).context("encoding a scan record")
}

/// A record read back; none when it is of another version.
fn decode(bytes: &[u8]) -> Result<Option<Saved>> {
    // The version comes first, as a varint: a record of another version
    // is not decoded further.
    let (version, _): (u32, &[u8]) =
        postcard::take_from_bytes(bytes).context("not a scan record")?;
    if version != VERSION {
        return Ok(None);
    }
    postcard::from_bytes(bytes)
        .map(Some)
        .context("a damaged scan record")
}

/// The record saved for `blob` (layer `index` of the base, named `what`
/// in messages) in the OCI layout at `layout`, and the blob's digest; none
/// when the layout has no record of this version for it.
pub(super) fn load(
    layout: &Path,
    blob: &StoredLayer,
    index: usize,
    what: &str,
) -> Result<Option<(LayerRecord, Digest)>> {
    let Some(digest) = &blob.digest else {
        return Ok(None);
    };
    let file = record_path(layout, digest);
    let bytes = match fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let Some(mut saved) = decode(&bytes).with_context(|| file.display().to_string())? else {
        return Ok(None);
    };
    let on_disk = fs::metadata(&blob.file.path)
        .with_context(|| format!("{what}: reading {}", blob.file.path.display()))?
        .len();
    if saved.blob != *digest
        || saved.blob_size != blob.file.size
        || on_disk != blob.file.offset + blob.file.size
    {
        bail!(
            "{what}: the scan record {} is not of the blob beside it ({digest}, {} bytes)",
            file.display(),
            blob.file.size
        );
    }
    for entry in saved.changes.entries.values_mut() {
        entry.layer = index;
    }
    Ok(Some((
        LayerRecord {
            what: what.to_owned(),
            changes: saved.changes,
            found: Ok(saved.scan),
        },
        saved.blob,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::scan::{View, read_layer, tests::entries, tests::gnu_tar};

    fn read(line: &str, index: usize) -> LayerRecord {
        let tar = gnu_tar(&entries(line), 0o755, 7);
        read_layer("layer", index, &tar[..], None, Limits::default(), None)
    }

    fn digest() -> Digest {
        Digest::of(b"blob")
    }

    /// A record read back through its bytes, as layer `index`.
    fn round_trip(record: LayerRecord, index: usize) -> LayerRecord {
        let saved = decode(&encode(record, digest(), 10).unwrap())
            .unwrap()
            .unwrap();
        let mut record = LayerRecord {
            what: "layer".to_owned(),
            changes: saved.changes,
            found: Ok(saved.scan),
        };
        for e in record.changes.entries.values_mut() {
            e.layer = index;
        }
        record
    }

    /// A record read back puts on a view what the reading put there:
    /// whiteouts, entries with their data digests, and the lookups in the
    /// layers below with their errors.
    #[test]
    fn a_record_read_back_applies_as_the_reading_did() {
        let layers = [
            "d a/; d a/b/; f a/b/c c; f a/x x; l a/l b",
            "f a/.wh.x; f a/b/new n; d a/b/d/",
            "f a/l/bad z",
        ];
        let mut direct = View::default();
        let mut via_record = View::default();
        for (i, line) in layers.iter().enumerate() {
            let want = direct.apply(read(line, i)).map(|s| s.diff_id);
            let got = via_record
                .apply(round_trip(read(line, 7), i))
                .map(|s| s.diff_id);
            // The last layer writes below the first one's symlink.
            assert_eq!(got.is_err(), i == 2, "layer {i}");
            assert_eq!(
                got.map_err(|e| e.to_string()),
                want.map_err(|e| e.to_string()),
                "layer {i}"
            );
            assert_eq!(via_record, direct, "layer {i}");
        }
        assert!(direct.get(b"a/x").is_none() && direct.get(b"a/b/new").is_some());
    }

    #[test]
    fn a_record_of_another_version_is_ignored_and_a_damaged_one_refused() {
        let mut bytes = encode(read("f a x", 0), digest(), 10).unwrap();
        bytes[0] = VERSION as u8 + 1;
        assert!(decode(&bytes).unwrap().is_none());
        let bytes = encode(read("f a x", 0), digest(), 10).unwrap();
        let err = decode(&bytes[..bytes.len() / 2]).err().unwrap();
        assert!(err.to_string().contains("damaged"), "{err:#}");
    }
}
