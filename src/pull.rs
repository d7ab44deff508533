//! `stevedore pull` and `pullImage`: an image from a registry
//! ([`crate::registry::fetch`]) written as a docker-archive or an OCI
//! layout, atomically ([`crate::output`]). The docker-archive is
//! deterministic: fixed names (`<digest>.tar`, `<digest>.json`), a fixed
//! time, sorted JSON, and the layer blobs as pulled, byte for byte. So
//! `pullImage` has the same hash everywhere.

use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::image::config::index_of_one;
use crate::image::docker_archive::{ArchiveWriter, manifest_entry};
use crate::image::oci_layout::LayoutBlobs;
use crate::oci::{Platform, Reference};
use crate::output::{AtomicDir, AtomicFile};
use crate::registry::Connection;
use crate::registry::fetch;

/// Output formats of a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullFormat {
    DockerArchive,
    OciDir,
}

#[derive(Clone, Debug)]
pub struct PullOptions {
    pub format: PullFormat,
    pub platform: Platform,
    /// `NAME:TAG` the output names the image by.
    pub tag: Option<String>,
    pub jobs: usize,
}

/// The time of every entry of the docker-archive written.
const ARCHIVE_MTIME: u64 = 1;

/// Where the image goes, created before anything is fetched.
enum Output {
    Dir(AtomicDir),
    File(AtomicFile),
}

/// Pulls `src` into `out`; returns `HOST/REPO@sha256:...` of the image
/// manifest pulled.
pub fn pull(src: &Reference, out: &Path, conn: &Connection, opts: &PullOptions) -> Result<String> {
    if let Some(tag) = &opts.tag {
        check_tag_ref(tag)?;
    }
    // The output first: a bad one is refused before any download.
    let output = match opts.format {
        PullFormat::OciDir => Output::Dir(AtomicDir::create(out)?),
        PullFormat::DockerArchive => Output::File(AtomicFile::create(out)?),
    };
    let fetched = fetch::fetch(src, out, conn, &opts.platform, opts.jobs)?;
    let tag = opts.tag.as_deref();
    match output {
        Output::Dir(dir) => {
            write_oci_dir(&dir, &fetched, tag)?;
            dir.commit()?;
        }
        Output::File(file) => write_docker_archive(file, &fetched, tag)?,
    }
    let digest = fetched.digest.clone();
    fetched.done();
    Ok(format!("{}@{digest}", src.name()))
}

/// An OCI layout of an image whose blobs were fetched one by one
/// (`pullImageFromManifest`): `manifest`, the lock file's bytes, and
/// `blobs`, a file for each blob it names (config and layers), each
/// checked against its digest and size. The layout is written at `out`,
/// its image named `tag` (`NAME:TAG`).
pub fn layout_from_blobs(
    manifest: &[u8],
    blobs: &std::collections::BTreeMap<crate::digest::Digest, std::path::PathBuf>,
    tag: Option<&str>,
    out: &Path,
) -> Result<()> {
    if let Some(tag) = tag {
        check_tag_ref(tag)?;
    }
    let media_type = serde_json::from_slice::<serde_json::Value>(manifest)
        .context("the manifest is not JSON")?
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(crate::oci::media_type::OCI_MANIFEST)
        .to_owned();
    let digest = crate::digest::Digest::of(manifest);
    let wanted = fetch::image_blobs("the manifest", &digest, manifest, &media_type)?;
    let dir = AtomicDir::create(out)?;
    let mut layout = LayoutBlobs::default();
    for blob in std::iter::once(&wanted.config).chain(&wanted.layers) {
        let path = blobs
            .get(&blob.digest)
            .with_context(|| format!("{}: no file was given for it", blob.what))?;
        let (got, size) = file_digest(path)?;
        if got != blob.digest || size != blob.size {
            bail!(
                "{}: {} has digest {got} and {size} bytes, not what the manifest says",
                blob.what,
                path.display()
            );
        }
        layout.file(&blob.digest, path);
    }
    layout.bytes(manifest.to_vec());
    let index = index_of_one(manifest, &media_type, None, tag)?;
    layout.write_dir(dir.path(), &index)?;
    dir.commit()
}

/// The digest and size of a file's bytes.
fn file_digest(path: &Path) -> Result<(crate::digest::Digest, u64)> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hashing = crate::digest::HashingReader::new(file);
    std::io::copy(&mut hashing, &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(hashing.finish())
}

/// `NAME:TAG` for the output.
fn check_tag_ref(tag: &str) -> Result<()> {
    let Some((name, t)) = tag.rsplit_once(':').filter(|(_, t)| !t.contains('/')) else {
        bail!("--tag {tag:?} must be NAME:TAG, as in hello:latest");
    };
    crate::oci::reference::check_name(name).map_err(|e| anyhow::anyhow!("--tag: {e}"))?;
    crate::oci::reference::check_tag(t).map_err(|e| anyhow::anyhow!("--tag: {e}"))?;
    Ok(())
}

/// An OCI layout with the manifest as pulled.
fn write_oci_dir(dir: &AtomicDir, fetched: &fetch::Fetched, tag: Option<&str>) -> Result<()> {
    let mut blobs = LayoutBlobs::default();
    for (layer, path) in fetched.layers.iter().zip(&fetched.paths) {
        blobs.file(&layer.digest, path);
    }
    blobs.bytes(fetched.config_bytes.clone());
    blobs.bytes(fetched.manifest.clone());
    let index = index_of_one(&fetched.manifest, &fetched.media_type, None, tag)?;
    blobs.write_dir(dir.path(), &index)
}

/// A docker-archive: layers as `<hex>.tar` (the blobs as pulled; loaders
/// detect their compression), the config as `<hex>.json`, and
/// `manifest.json`.
fn write_docker_archive(
    mut file: AtomicFile,
    fetched: &fetch::Fetched,
    tag: Option<&str>,
) -> Result<()> {
    let mut archive = ArchiveWriter::new(
        BufWriter::with_capacity(256 * 1024, file.file()),
        ARCHIVE_MTIME,
    );
    let mut written = std::collections::BTreeSet::new();
    let mut names = Vec::new();
    for (layer, path) in fetched.layers.iter().zip(&fetched.paths) {
        let name = format!("{}.tar", layer.digest.hex());
        if written.insert(name.clone()) {
            archive.tar().file_from(&name, path)?;
        }
        names.push(name);
    }
    let config_name = format!("{}.json", fetched.config.digest.hex());
    archive.tar().file(&config_name, &fetched.config_bytes)?;
    archive.image(manifest_entry(
        config_name,
        tag.map(|t| vec![t.to_owned()]).unwrap_or_default(),
        names,
    ));
    archive
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing the archive")?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::layout_from_blobs;
    use crate::digest::Digest;
    use crate::oci::media_type::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};

    /// A lock file for a config and one layer, and their blob files.
    fn lock(dir: &std::path::Path) -> (Vec<u8>, BTreeMap<Digest, PathBuf>) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = vec![0u8; 1024];
        let mut blobs = BTreeMap::new();
        for (name, bytes) in [("config", &config[..]), ("layer", &layer[..])] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            blobs.insert(Digest::of(bytes), path);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": Digest::of(config).to_string(), "size": config.len() },
            "layers": [ { "mediaType": OCI_LAYER_TAR, "digest": Digest::of(&layer).to_string(), "size": layer.len() } ],
        });
        (serde_json::to_vec(&manifest).unwrap(), blobs)
    }

    #[test]
    fn a_lock_and_its_blobs_make_a_layout_naming_the_lock_as_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, blobs) = lock(dir.path());
        let out = dir.path().join("layout");
        layout_from_blobs(&manifest, &blobs, Some("base:v1"), &out).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            Digest::of(&manifest).to_string()
        );
        let stored = out.join("blobs/sha256").join(Digest::of(&manifest).hex());
        assert_eq!(std::fs::read(stored).unwrap(), manifest);
        for (digest, path) in &blobs {
            let copy = out.join("blobs/sha256").join(digest.hex());
            assert_eq!(std::fs::read(copy).unwrap(), std::fs::read(path).unwrap());
        }
    }

    #[test]
    fn a_missing_or_different_blob_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, mut blobs) = lock(dir.path());
        let out = dir.path().join("layout");
        let layer = blobs.keys().nth(1).cloned().unwrap();
        let path = blobs.remove(&layer).unwrap();
        let err = format!(
            "{:#}",
            layout_from_blobs(&manifest, &blobs, None, &out).unwrap_err()
        );
        assert!(err.contains("no file was given for it"), "{err}");
        std::fs::write(&path, b"other bytes").unwrap();
        blobs.insert(layer, path);
        let err = format!(
            "{:#}",
            layout_from_blobs(&manifest, &blobs, None, &out).unwrap_err()
        );
        assert!(err.contains("not what the manifest says"), "{err}");
        assert!(!out.exists(), "a layout was left behind");
    }
}
