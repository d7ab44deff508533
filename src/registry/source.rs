//! What `push` and `load` read: any image stevedore writes.
//!
//! - An OCI layout directory, or an `oci-archive` (that layout in a tar):
//!   the manifest, config and layer blobs as they are, named by digest.
//! - A docker-archive: `manifest.json`, the config and each `layer.tar`
//!   (compressed or not); the config's `diff_ids` are what the build
//!   recorded.
//! - A `streamLayeredImage` launcher (or a spec): nothing written yet; its
//!   layers are made from the store while they are pushed.
//!
//! Tar members are read in place, by offset: nothing is unpacked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX,
};
use crate::compress::Compression;
use crate::digest::Digest;
use crate::image::Image;
use crate::spec::Spec;

/// Where a blob's bytes are: a file, or a member of a tar.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

impl BlobFile {
    /// Reads the whole blob (configs and manifests).
    pub fn read(&self) -> Result<Vec<u8>> {
        let mut file =
            File::open(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::with_capacity(self.size as usize);
        file.take(self.size)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", self.path.display()))?;
        if bytes.len() as u64 != self.size {
            bail!("{} is shorter than its index says", self.path.display());
        }
        Ok(bytes)
    }

    /// The digest of the blob's bytes.
    pub fn digest(&self) -> Result<Digest> {
        let mut file =
            File::open(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut hashing = crate::digest::HashingWriter::new(std::io::sink());
        let n = std::io::copy(&mut file.take(self.size), &mut hashing)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let (_, digest, _) = hashing.finish();
        if n != self.size {
            bail!("{} is shorter than its index says", self.path.display());
        }
        Ok(digest)
    }
}

/// The digest of a compressed layer blob and of its uncompressed tar (its
/// diff_id), in one pass.
pub fn digest_and_diff_id(file: &BlobFile, compression: Compression) -> Result<(Digest, Digest)> {
    let mut f =
        File::open(&file.path).with_context(|| format!("reading {}", file.path.display()))?;
    f.seek(SeekFrom::Start(file.offset))?;
    let mut compressed = crate::digest::HashingReader::new(std::io::BufReader::with_capacity(
        256 * 1024,
        f.take(file.size),
    ));
    let mut tar = crate::digest::HashingWriter::new(std::io::sink());
    let failed = |e| anyhow::anyhow!("its {compression:?} data is damaged ({e})");
    match compression {
        Compression::None => {
            std::io::copy(&mut compressed, &mut tar).map_err(failed)?;
        }
        Compression::Gzip => {
            let mut decoder = flate2::read::MultiGzDecoder::new(&mut compressed);
            std::io::copy(&mut decoder, &mut tar).map_err(failed)?;
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(&mut compressed).map_err(failed)?;
            std::io::copy(&mut decoder, &mut tar).map_err(failed)?;
        }
    }
    // Whatever follows the compressed stream is part of the blob too.
    std::io::copy(&mut compressed, &mut std::io::sink()).map_err(failed)?;
    let (digest, n) = compressed.finish();
    if n != file.size {
        bail!("{} is shorter than its index says", file.path.display());
    }
    Ok((digest, tar.finish().1))
}

/// A layer stored as a blob.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    /// Known from an OCI manifest; a docker-archive's compressed layers
    /// are hashed when pushed.
    pub digest: Option<Digest>,
    /// The uncompressed digest the build recorded (docker-archive configs).
    pub diff_id: Option<Digest>,
    pub compression: Compression,
    pub file: BlobFile,
    /// How messages name the layer: `layer 2 (abc.../layer.tar)`.
    pub what: String,
}

/// An image whose blobs exist.
pub struct BlobImage {
    pub config: Vec<u8>,
    pub layers: Vec<LayerBlob>,
    /// The manifest as an OCI layout holds it, pushed unchanged.
    pub oci_manifest: Option<Vec<u8>>,
}

/// A push source.
pub enum Source {
    Blobs(BlobImage),
    /// A launcher or spec: `spec` is its path.
    Launcher {
        image: Box<Image>,
        spec: PathBuf,
    },
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ManifestDoc {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Which image of an archive or layout holding several to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pick {
    /// The archive must hold exactly one image (`push`).
    #[default]
    Only,
    /// The first image, or the one whose tag is `name:tag` (either may be
    /// left out), as dockerTools' `fromImageName` and `fromImageTag` pick.
    Named {
        name: Option<String>,
        tag: Option<String>,
    },
}

impl Pick {
    /// Whether a `RepoTags` entry or OCI ref name (`name:tag`, or a tag
    /// alone) is the one asked for. A registry or `localhost/` prefix on
    /// the archive's side still matches (`podman save` writes them).
    fn matches(&self, repo_tag: &str) -> bool {
        let Pick::Named { name, tag } = self else {
            return true;
        };
        let (have_name, have_tag) = match repo_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (repo_tag, "latest"),
        };
        let name_ok = name
            .as_deref()
            .is_none_or(|want| have_name == want || have_name.ends_with(&format!("/{want}")));
        let tag_ok = tag.as_deref().is_none_or(|want| have_tag == want);
        name_ok && tag_ok
    }

    fn matches_tag(&self, tag: &str) -> bool {
        match self {
            Pick::Only => true,
            Pick::Named { tag: want, .. } => want.as_deref().is_none_or(|w| w == tag),
        }
    }

    fn is_any(&self) -> bool {
        matches!(
            self,
            Pick::Named {
                name: None,
                tag: None
            }
        )
    }

    fn describe(&self) -> String {
        match self {
            Pick::Only => "the only image".into(),
            Pick::Named { name, tag } => format!(
                "{}:{}",
                name.as_deref().unwrap_or("*"),
                tag.as_deref().unwrap_or("*")
            ),
        }
    }
}

/// Reads a push source, detecting its kind.
pub fn open(path: &Path) -> Result<Source> {
    let mut head = [0u8; 2];
    let md = std::fs::metadata(path).with_context(|| format!("source {}", path.display()))?;
    if !md.is_dir() {
        let n = File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .with_context(|| format!("reading source {}", path.display()))?;
        if n >= 1 && (head.starts_with(b"#!") || head[0] == b'{') {
            let image = Image::from_spec(Spec::load(path)?)?;
            return Ok(Source::Launcher {
                image: Box::new(image),
                spec: path.to_owned(),
            });
        }
    }
    open_blobs(path, &Pick::Only, "source").map(Source::Blobs)
}

/// Reads an image whose blobs exist: an OCI layout directory, an
/// oci-archive or a docker-archive. `what` starts error messages
/// (`source`, `fromImage`).
pub fn open_blobs(path: &Path, pick: &Pick, what: &str) -> Result<BlobImage> {
    let md = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    if md.is_dir() {
        return oci_layout(path, &DirBlobs(path.to_owned()), pick)
            .with_context(|| format!("{what} {} (an OCI layout)", path.display()));
    }
    let members = tar_index(path).with_context(|| format!("{what} {}", path.display()))?;
    if members.contains_key("manifest.json") {
        docker_archive(path, &members, pick)
            .with_context(|| format!("{what} {} (a docker-archive)", path.display()))
    } else if members.contains_key("index.json") {
        oci_layout(path, &TarBlobs(members), pick)
            .with_context(|| format!("{what} {} (an oci-archive)", path.display()))
    } else {
        bail!(
            "{what} {}: not an image (a docker-archive, an OCI layout or oci-archive, or a streamLayeredImage launcher)",
            path.display()
        )
    }
}

/// The members of a tar: name (without `./`) to position and size.
pub fn tar_index(path: &Path) -> Result<BTreeMap<String, BlobFile>> {
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut members = BTreeMap::new();
    let entries = archive
        .entries()
        .with_context(|| format!("{}: not a tar archive", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: not a tar archive", path.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .with_context(|| format!("{}: a member name is not valid", path.display()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        members.insert(
            name,
            BlobFile {
                path: path.to_owned(),
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
        );
    }
    Ok(members)
}

/// Where an OCI layout's files are.
pub trait Blobs {
    fn file(&self, name: &str) -> Result<BlobFile>;
}

pub struct DirBlobs(pub PathBuf);

impl Blobs for DirBlobs {
    fn file(&self, name: &str) -> Result<BlobFile> {
        let path = self.0.join(name);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{name} is missing"))?
            .len();
        Ok(BlobFile {
            path,
            offset: 0,
            size,
        })
    }
}

pub struct TarBlobs(pub BTreeMap<String, BlobFile>);

impl Blobs for TarBlobs {
    fn file(&self, name: &str) -> Result<BlobFile> {
        self.0
            .get(name)
            .cloned()
            .with_context(|| format!("{name} is missing"))
    }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn parse_digest(text: &str, what: &str) -> Result<Digest> {
    text.parse()
        .map_err(|e: String| anyhow::anyhow!("{what}: {e}"))
}

/// The compression an OCI or Docker layer media type says.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar" | DOCKER_LAYER_TAR => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip" | DOCKER_LAYER_GZIP => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd" => Compression::Zstd,
        other => bail!("layer media type {other:?} is not a tar, tar+gzip or tar+zstd layer"),
    })
}

fn oci_layout(root: &Path, blobs: &dyn Blobs, pick: &Pick) -> Result<BlobImage> {
    let index: ManifestDoc = serde_json::from_slice(&blobs.file("index.json")?.read()?)
        .context("index.json is not an OCI index")?;
    let entry = match (index.manifests.as_slice(), pick) {
        ([], _) => bail!("index.json names no manifest"),
        ([one], Pick::Only) => one,
        (many, Pick::Only) => bail!(
            "index.json names {} manifests; push takes a layout with one image",
            many.len()
        ),
        (many, _) if pick.is_any() => &many[0],
        (many, _) => many
            .iter()
            .find(|m| {
                // The full reference when the layout records one; else
                // the OCI ref name, which is a tag.
                match m.annotations.get("io.containerd.image.name") {
                    Some(full) => pick.matches(full),
                    None => m
                        .annotations
                        .get("org.opencontainers.image.ref.name")
                        .is_some_and(|t| pick.matches_tag(t)),
                }
            })
            .with_context(|| format!("index.json has no image {}", pick.describe()))?,
    };
    if entry.media_type == OCI_INDEX || entry.media_type == DOCKER_LIST {
        bail!("index.json names an index of images; push takes a layout with one image");
    }
    let digest = parse_digest(&entry.digest, "index.json")?;
    let manifest = blobs.file(&blob_name(&digest))?.read()?;
    if Digest::of(&manifest) != digest {
        bail!("manifest {digest} does not match its digest");
    }
    let doc: ManifestDoc =
        serde_json::from_slice(&manifest).with_context(|| format!("manifest {digest}"))?;
    let config = doc
        .config
        .with_context(|| format!("manifest {digest} has no config"))?;
    let config_digest = parse_digest(&config.digest, "manifest config")?;
    let config_bytes = blobs.file(&blob_name(&config_digest))?.read()?;
    if Digest::of(&config_bytes) != config_digest {
        bail!("config {config_digest} does not match its digest");
    }
    let mut layers = Vec::new();
    for (i, layer) in doc.layers.iter().enumerate() {
        let what = format!("layer {}", i + 1);
        let d = parse_digest(&layer.digest, &what)?;
        let file = blobs.file(&blob_name(&d))?;
        if file.size != layer.size {
            bail!(
                "{what} ({d}) has {} bytes but the manifest says {}",
                file.size,
                layer.size
            );
        }
        layers.push(LayerBlob {
            digest: Some(d.clone()),
            diff_id: None,
            compression: layer_compression(&layer.media_type).with_context(|| what.clone())?,
            what: format!("{what} ({} in {})", blob_name(&d), root.display()),
            file,
        });
    }
    Ok(BlobImage {
        config: config_bytes,
        layers,
        oci_manifest: Some(manifest),
    })
}

fn docker_archive(
    path: &Path,
    members: &BTreeMap<String, BlobFile>,
    pick: &Pick,
) -> Result<BlobImage> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let member = |name: &str| {
        members
            .get(name.trim_start_matches("./"))
            .cloned()
            .with_context(|| format!("manifest.json names {name:?}, which is not in the archive"))
    };
    let manifest: Vec<Entry> = serde_json::from_slice(&member("manifest.json")?.read()?)
        .context("manifest.json is not a docker-archive manifest")?;
    let entry = match (manifest.as_slice(), pick) {
        ([], _) => bail!("manifest.json lists no image"),
        ([one], Pick::Only) => one,
        (many, Pick::Only) => bail!(
            "manifest.json lists {} images; push takes an archive with one",
            many.len()
        ),
        (many, _) if pick.is_any() => &many[0],
        (many, _) => many
            .iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| pick.matches(t)))
            .with_context(|| format!("manifest.json has no image tagged {}", pick.describe()))?,
    };
    let config = member(&entry.config)?.read()?;
    let parsed: Config = serde_json::from_slice(&config)
        .with_context(|| format!("{} is not an image config", entry.config))?;
    if parsed.rootfs.diff_ids.len() != entry.layers.len() {
        bail!(
            "the config has {} diff_ids for {} layers",
            parsed.rootfs.diff_ids.len(),
            entry.layers.len()
        );
    }
    let mut layers = Vec::new();
    for (i, (name, diff_id)) in entry.layers.iter().zip(&parsed.rootfs.diff_ids).enumerate() {
        let what = format!("layer {} ({name} in {})", i + 1, path.display());
        let file = member(name)?;
        let compression = sniff_compression(&file)?;
        let diff_id = parse_digest(diff_id, &what)?;
        layers.push(LayerBlob {
            digest: (compression == Compression::None).then(|| diff_id.clone()),
            diff_id: Some(diff_id),
            compression,
            file,
            what,
        });
    }
    Ok(BlobImage {
        config,
        layers,
        oci_manifest: None,
    })
}

/// A layer's compression, from its first bytes.
fn sniff_compression(file: &BlobFile) -> Result<Compression> {
    let mut f = File::open(&file.path)?;
    f.seek(SeekFrom::Start(file.offset))?;
    let mut magic = [0u8; 4];
    let n = f.take(file.size).read(&mut magic)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

/// The OCI media type of a config blob and the Docker one, by format.
pub fn config_media_type(docker: bool) -> &'static str {
    if docker {
        DOCKER_CONFIG
    } else {
        super::OCI_CONFIG
    }
}

/// The manifest media type by format.
pub fn manifest_media_type(docker: bool) -> &'static str {
    if docker {
        DOCKER_MANIFEST
    } else {
        super::OCI_MANIFEST
    }
}
