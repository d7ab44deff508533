//! What `push` and `load` read: any image stevedore writes.
//!
//! - An OCI layout directory, or an `oci-archive` (that layout in a tar):
//!   the manifest, config and layer blobs as they are, named by digest.
//!   A multi-platform image (an index of images, nested or not, or
//!   `index.json` entries that differ by platform) is read for this
//!   machine's platform ([`Platform::host`]) when one image is wanted, and
//!   whole when it is pushed ([`IndexImage`]).
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

use crate::compress::Compression;
use crate::digest::Digest;
use crate::image::Image;
use crate::oci::media_type::{self, OCI_INDEX, OCI_MANIFEST};
use crate::oci::platform::{self, Platform};
use crate::spec::Spec;

/// Where a blob's bytes are: a file, or a member of a tar.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// The largest document (manifest, index, config, `manifest.json`) read
/// whole into memory; a blob that says it is larger is refused before a
/// byte is read.
pub const DOCUMENT_LIMIT: u64 = 16 << 20;

impl BlobFile {
    /// Reads the whole blob (configs and manifests), up to
    /// [`DOCUMENT_LIMIT`].
    pub fn read(&self) -> Result<Vec<u8>> {
        if self.size > DOCUMENT_LIMIT {
            bail!(
                "{} is {} bytes; documents (manifests, indexes, configs) are read whole, up to {DOCUMENT_LIMIT} bytes",
                self.path.display(),
                self.size
            );
        }
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
    /// An OCI layout whose image is an index of images for several
    /// platforms: pushed as it is.
    Index(IndexImage),
    /// A launcher or spec: `spec` is its path.
    Launcher {
        image: Box<Image>,
        spec: PathBuf,
    },
}

/// A multi-platform image of an OCI layout, every blob of every platform
/// found and its documents checked, in the order a registry takes them.
pub struct IndexImage {
    /// The config and layer blobs of every image the index leads to, each
    /// once.
    pub blobs: Vec<NamedBlob>,
    /// Every image manifest and inner index, each after those it names:
    /// put by digest.
    pub manifests: Vec<Document>,
    /// The index `index.json` names: put under the tag, last.
    pub index: Document,
    /// The platforms of the index's entries, for messages.
    pub platforms: Vec<Platform>,
}

/// A blob of a layout, and how messages name it.
pub struct NamedBlob {
    pub digest: Digest,
    pub file: BlobFile,
    pub what: String,
    /// A config rather than a layer.
    pub config: bool,
}

/// A manifest or index as a layout holds it, checked against its digest
/// and size.
pub struct Document {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

impl Descriptor {
    /// The names `index.json` gives the image: entries for several
    /// platforms of one image share them.
    fn names(&self) -> (Option<&String>, Option<&String>) {
        (
            self.annotations.get(CONTAINERD_NAME),
            self.annotations.get(REF_NAME),
        )
    }
}

/// The annotation for the full reference (containerd, podman).
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a tag, or a whole reference.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How deep indexes may nest in a layout: skopeo and podman write one
/// level; this bounds what a crafted layout can ask to be followed.
const INDEX_DEPTH: usize = 4;

#[derive(Deserialize)]
struct ManifestDoc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
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

/// Reads a push source, detecting its kind. An OCI layout whose image is
/// an index of images for several platforms is pushed as it is.
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
    if let Stored::Layout(blobs, kind) = stored(path, "source")? {
        let index = layout_index(blobs.as_ref())
            .with_context(|| format!("source {} ({kind})", path.display()))?;
        if let Some(index) = index {
            return Ok(Source::Index(index));
        }
    }
    open_blobs(path, &Pick::Only, "source").map(Source::Blobs)
}

/// Reads an image whose blobs exist: an OCI layout directory, an
/// oci-archive or a docker-archive. `what` starts error messages
/// (`source`, `fromImage`). A layout's index of images for several
/// platforms gives its image for this machine ([`Platform::host`]).
pub fn open_blobs(path: &Path, pick: &Pick, what: &str) -> Result<BlobImage> {
    match stored(path, what)? {
        Stored::Layout(blobs, kind) => oci_layout(path, blobs.as_ref(), pick)
            .with_context(|| format!("{what} {} ({kind})", path.display())),
        Stored::DockerArchive(members) => docker_archive(path, &members, pick)
            .with_context(|| format!("{what} {} (a docker-archive)", path.display())),
    }
}

/// What an image path that is not a launcher holds.
enum Stored {
    /// An OCI layout (a directory, or an oci-archive's members), and which
    /// of the two, for messages.
    Layout(Box<dyn Blobs>, &'static str),
    /// A docker-archive's members.
    DockerArchive(BTreeMap<String, BlobFile>),
}

fn stored(path: &Path, what: &str) -> Result<Stored> {
    let md = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    if md.is_dir() {
        return Ok(Stored::Layout(
            Box::new(DirBlobs(path.to_owned())),
            "an OCI layout",
        ));
    }
    let members = tar_index(path).with_context(|| format!("{what} {}", path.display()))?;
    if members.contains_key("manifest.json") {
        Ok(Stored::DockerArchive(members))
    } else if members.contains_key("index.json") {
        Ok(Stored::Layout(
            Box::new(TarBlobs(members)),
            "an oci-archive",
        ))
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
        let md = std::fs::metadata(&path).with_context(|| format!("{name} is missing"))?;
        // A fifo or a device would never end, or never start.
        if !md.is_file() {
            bail!("{name} is not a regular file");
        }
        let size = md.len();
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

/// An image manifest of an OCI layout, checked against its digest and
/// size, and the `index.json` entry that leads to it.
pub struct LayoutManifest {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    /// The annotations of that entry: the image's names.
    pub annotations: BTreeMap<String, String>,
}

/// The entries of `index.json`, by position, grouped by image: entries
/// that have a platform and the same names are one image for several
/// platforms; any other entry is an image alone. Groups are in the order
/// of their first entry.
fn images(entries: &[Descriptor]) -> Vec<Vec<(usize, &Descriptor)>> {
    let mut groups: Vec<Vec<(usize, &Descriptor)>> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let same = groups.iter_mut().find(|g| {
            let first = g[0].1;
            entry.platform.is_some() && first.platform.is_some() && first.names() == entry.names()
        });
        match same {
            Some(group) => group.push((n, entry)),
            None => groups.push(vec![(n, entry)]),
        }
    }
    groups
}

fn read_index(blobs: &dyn Blobs) -> Result<ManifestDoc> {
    serde_json::from_slice(&blobs.file("index.json")?.read()?)
        .context("index.json is not an OCI index")
}

/// Every image of an OCI layout, in `index.json` order, each followed to
/// its manifest for `platform`: an entry that is an index of images (or a
/// Docker manifest list), and entries that name one image for several
/// platforms, give that platform's manifest.
pub fn layout_manifests(blobs: &dyn Blobs, platform: &Platform) -> Result<Vec<LayoutManifest>> {
    let index = read_index(blobs)?;
    images(&index.manifests)
        .iter()
        .map(|group| image_of(blobs, group, platform))
        .collect()
}

/// The image manifest a group of `index.json` entries ([`images`]) leads
/// to for `platform`.
fn image_of(
    blobs: &dyn Blobs,
    group: &[(usize, &Descriptor)],
    platform: &Platform,
) -> Result<LayoutManifest> {
    let &(n, entry) = match group {
        [one] => one,
        many => platform::choose(many, |(_, d)| d.platform.as_ref(), platform)
            .map_err(|e| anyhow::anyhow!("index.json {e}"))?,
    };
    let (digest, bytes) = follow(
        blobs,
        entry,
        &format!("manifest {} of index.json", n + 1),
        platform,
        0,
    )?;
    Ok(LayoutManifest {
        digest,
        bytes,
        annotations: entry.annotations.clone(),
    })
}

/// Reads the document `entry` names (`what` in messages) and checks it
/// against the entry's digest and size.
fn read_document(
    blobs: &dyn Blobs,
    entry: &Descriptor,
    what: &str,
) -> Result<(Digest, Vec<u8>, ManifestDoc)> {
    let digest = parse_digest(&entry.digest, what)?;
    let file = blobs
        .file(&blob_name(&digest))
        .with_context(|| format!("{what} ({digest})"))?;
    if file.size != entry.size {
        bail!(
            "{what} ({digest}) has {} bytes but its descriptor says {}",
            file.size,
            entry.size
        );
    }
    let bytes = file.read()?;
    if Digest::of(&bytes) != digest {
        bail!("{what} ({digest}) does not match its digest");
    }
    let doc = serde_json::from_slice(&bytes)
        .with_context(|| format!("{what} ({digest}) is not a manifest or an index"))?;
    Ok((digest, bytes, doc))
}

/// Whether a media type is that of an index of images (or a Docker
/// manifest list).
fn says_index(media_type: &str) -> bool {
    media_type::is_index(media_type)
}

/// Whether a document is an index of images, by its media type or, when
/// it names none, its shape.
fn is_index(doc: &ManifestDoc) -> bool {
    says_index(&doc.media_type) || (doc.config.is_none() && !doc.manifests.is_empty())
}

/// Follows `entry` (`what` in messages) to an image manifest: an index,
/// at most [`INDEX_DEPTH`] deep, to its entry for `platform`. `depth`
/// counts the indexes followed to `entry`.
fn follow(
    blobs: &dyn Blobs,
    entry: &Descriptor,
    what: &str,
    platform: &Platform,
    depth: usize,
) -> Result<(Digest, Vec<u8>)> {
    let index = if says_index(&entry.media_type) {
        read_document(blobs, entry, "the index")
            .with_context(|| format!("{what} is an index of images"))?
            .2
    } else {
        let (digest, bytes, doc) = read_document(blobs, entry, what)?;
        if !is_index(&doc) {
            return Ok((digest, bytes));
        }
        doc
    };
    follow_index(blobs, &index, platform, depth)
        .with_context(|| format!("{what} is an index of images"))
}

/// The image manifest `index` leads to for `platform`; `depth` counts the
/// indexes followed before it.
fn follow_index(
    blobs: &dyn Blobs,
    index: &ManifestDoc,
    platform: &Platform,
    depth: usize,
) -> Result<(Digest, Vec<u8>)> {
    if depth >= INDEX_DEPTH {
        bail!("indexes nest more than {INDEX_DEPTH} deep");
    }
    let next = platform::choose(&index.manifests, |d| d.platform.as_ref(), platform)
        .map_err(|e| anyhow::anyhow!("it {e}"))?;
    let what = format!("its entry for {platform}");
    follow(blobs, next, &what, platform, depth + 1)
}

/// The multi-platform image of a layout whose `index.json` names one
/// index of images, read whole: every manifest of every platform, and
/// every blob they name, found. `None` when the layout's image is not an
/// index. Entries of `index.json` for several platforms of one image are
/// refused: there is no index of them to push.
fn layout_index(blobs: &dyn Blobs) -> Result<Option<IndexImage>> {
    let index = read_index(blobs)?;
    let groups = images(&index.manifests);
    let [group] = groups.as_slice() else {
        return Ok(None);
    };
    let &(n, entry) = match group.as_slice() {
        [one] => one,
        many => {
            let platforms: Vec<String> = many
                .iter()
                .filter_map(|(_, d)| d.platform.as_ref().map(Platform::to_string))
                .collect();
            bail!(
                "index.json names one image for several platforms ({}) but no index of them; push takes a layout whose index.json names one image or one index",
                platforms.join(", ")
            );
        }
    };
    let what = format!("manifest {} of index.json", n + 1);
    let (digest, bytes, doc) = read_document(blobs, entry, &what)?;
    if !says_index(&entry.media_type) && !is_index(&doc) {
        return Ok(None);
    }
    let mut image = IndexImage {
        blobs: Vec::new(),
        manifests: Vec::new(),
        platforms: doc
            .manifests
            .iter()
            .filter_map(|d| d.platform.clone())
            .collect(),
        index: document(entry, &doc, digest, bytes, OCI_INDEX),
    };
    let mut seen = std::collections::BTreeSet::new();
    collect_index(blobs, &doc, 0, &mut image, &mut seen)
        .with_context(|| format!("{what} is an index of images"))?;
    Ok(Some(image))
}

/// A document with its media type: its own, else its descriptor's, else
/// `default`.
fn document(
    entry: &Descriptor,
    doc: &ManifestDoc,
    digest: Digest,
    bytes: Vec<u8>,
    default: &str,
) -> Document {
    let media_type = [&doc.media_type, &entry.media_type]
        .into_iter()
        .find(|t| !t.is_empty())
        .map_or(default, String::as_str)
        .to_owned();
    Document {
        digest,
        media_type,
        bytes,
    }
}

/// Adds the manifests `index` names to `image`, each after the blobs and
/// manifests it names; blobs in `seen` are not added again.
fn collect_index(
    blobs: &dyn Blobs,
    index: &ManifestDoc,
    depth: usize,
    image: &mut IndexImage,
    seen: &mut std::collections::BTreeSet<Digest>,
) -> Result<()> {
    if depth >= INDEX_DEPTH {
        bail!("indexes nest more than {INDEX_DEPTH} deep");
    }
    for (k, entry) in index.manifests.iter().enumerate() {
        let what = match &entry.platform {
            Some(p) => format!("its entry for {p}"),
            None => format!("its entry {}", k + 1),
        };
        let (digest, bytes, doc) = read_document(blobs, entry, &what)?;
        if says_index(&entry.media_type) || is_index(&doc) {
            collect_index(blobs, &doc, depth + 1, image, seen)
                .with_context(|| format!("{what} is an index of images"))?;
            image
                .manifests
                .push(document(entry, &doc, digest, bytes, OCI_INDEX));
            continue;
        }
        let config = doc
            .config
            .as_ref()
            .with_context(|| format!("{what} ({digest}) has no config"))?;
        let named = std::iter::once((config, "config".to_owned(), true)).chain(
            doc.layers
                .iter()
                .enumerate()
                .map(|(i, l)| (l, format!("layer {}", i + 1), false)),
        );
        for (d, name, is_config) in named {
            let blob_digest = parse_digest(&d.digest, &name)?;
            if !seen.insert(blob_digest.clone()) {
                continue;
            }
            let file = blobs
                .file(&blob_name(&blob_digest))
                .with_context(|| format!("{what}: {name} ({blob_digest})"))?;
            if file.size != d.size {
                bail!(
                    "{what}: {name} ({blob_digest}) has {} bytes but the manifest says {}",
                    file.size,
                    d.size
                );
            }
            image.blobs.push(NamedBlob {
                what: format!("{name} of the {what} ({})", blob_name(&blob_digest)),
                digest: blob_digest,
                file,
                config: is_config,
            });
        }
        image
            .manifests
            .push(document(entry, &doc, digest, bytes, OCI_MANIFEST));
    }
    Ok(())
}

fn oci_layout(root: &Path, blobs: &dyn Blobs, pick: &Pick) -> Result<BlobImage> {
    let index = read_index(blobs)?;
    let groups = images(&index.manifests);
    let group = match (groups.as_slice(), pick) {
        ([], _) => bail!("index.json names no manifest"),
        ([one], Pick::Only) => one,
        (many, Pick::Only) => bail!(
            "index.json names {} images; push takes a layout with one image",
            many.len()
        ),
        (many, _) if pick.is_any() => &many[0],
        (many, _) => many
            .iter()
            .find(|group| {
                // The full reference when the layout records one; else
                // the OCI ref name, which is a tag.
                match group[0].1.names() {
                    (Some(full), _) => pick.matches(full),
                    (None, tag) => tag.is_some_and(|t| pick.matches_tag(t)),
                }
            })
            .with_context(|| format!("index.json has no image {}", pick.describe()))?,
    };
    let LayoutManifest {
        digest,
        bytes: manifest,
        ..
    } = image_of(blobs, group, &Platform::host())?;
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
            compression: media_type::layer_compression(&layer.media_type)
                .with_context(|| what.clone())?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// An OCI layout directory being written: blobs by digest.
    struct Layout(tempfile::TempDir);

    impl Layout {
        fn new() -> Layout {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
            Layout(dir)
        }

        /// Adds a blob; returns its descriptor.
        fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
            let digest = Digest::of(bytes);
            std::fs::write(self.0.path().join(blob_name(&digest)), bytes).unwrap();
            json!({ "mediaType": media_type, "digest": digest.to_string(), "size": bytes.len() })
        }

        /// An image manifest for `architecture` with one empty layer.
        fn image(&self, architecture: &str) -> Value {
            let layer = self.blob("application/vnd.oci.image.layer.v1.tar", &[0; 1024]);
            let config = json!({
                "architecture": architecture,
                "os": "linux",
                "rootfs": { "type": "layers", "diff_ids": [layer["digest"]] },
            });
            let config = self.blob(
                crate::oci::media_type::OCI_CONFIG,
                config.to_string().as_bytes(),
            );
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config,
                "layers": [layer],
            });
            let mut d = self.blob(OCI_MANIFEST, manifest.to_string().as_bytes());
            d["platform"] = json!({ "os": "linux", "architecture": architecture });
            d
        }

        /// An index of `entries`, with the host's platform.
        fn index(&self, entries: &[Value]) -> Value {
            let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries });
            let mut d = self.blob(OCI_INDEX, index.to_string().as_bytes());
            d["platform"] = json!({ "os": "linux", "architecture": Platform::host().architecture });
            d
        }

        fn open(&self, entries: &[Value]) -> Result<BlobImage> {
            let index = json!({ "schemaVersion": 2, "manifests": entries });
            std::fs::write(self.0.path().join("index.json"), index.to_string()).unwrap();
            let any = Pick::Named {
                name: None,
                tag: None,
            };
            open_blobs(self.0.path(), &any, "fromImage")
        }
    }

    fn host() -> String {
        Platform::host().architecture
    }

    #[test]
    fn indexes_are_followed_at_most_four_deep() {
        let layout = Layout::new();
        let image = layout.image(&host());
        let mut entry = image.clone();
        for _ in 0..INDEX_DEPTH {
            entry = layout.index(&[layout.image("s390x"), entry]);
        }
        let opened = layout.open(std::slice::from_ref(&entry)).unwrap();
        let manifest = layout
            .0
            .path()
            .join("blobs/sha256")
            .join(&image["digest"].as_str().unwrap()[7..]);
        assert_eq!(
            opened.oci_manifest.unwrap(),
            std::fs::read(manifest).unwrap()
        );

        let deeper = layout.index(&[entry]);
        let err = format!("{:#}", layout.open(&[deeper]).err().unwrap());
        assert!(err.contains("indexes nest more than 4 deep"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn an_index_is_checked_against_its_size_and_digest() {
        let layout = Layout::new();
        let mut index = layout.index(&[layout.image(&host())]);
        index["size"] = json!(index["size"].as_u64().unwrap() + 1);
        let err = format!("{:#}", layout.open(&[index.clone()]).err().unwrap());
        assert!(
            err.contains("manifest 1 of index.json is an index of images"),
            "{err}"
        );
        assert!(err.contains("bytes but its descriptor says"), "{err}");

        index["size"] = json!(index["size"].as_u64().unwrap() - 1);
        let digest: Digest = index["digest"].as_str().unwrap().parse().unwrap();
        let path = layout.0.path().join(blob_name(&digest));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] = b' ';
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", layout.open(&[index]).err().unwrap());
        assert!(err.contains("does not match its digest"), "{err}");
    }

    #[test]
    fn entries_that_differ_by_platform_are_one_image() {
        let layout = Layout::new();
        let named = |mut d: Value| {
            d["annotations"] = json!({ REF_NAME: "v1" });
            d
        };
        let other = named(layout.image("s390x"));
        let mine = named(layout.image(&host()));
        let opened = layout.open(&[other.clone(), mine.clone()]).unwrap();
        assert_eq!(
            Digest::of(&opened.oci_manifest.unwrap()).to_string(),
            mine["digest"]
        );
        // One entry alone is the image, whatever its platform.
        assert!(layout.open(std::slice::from_ref(&other)).is_ok());

        let third = named(layout.image("ppc64le"));
        let err = format!("{:#}", layout.open(&[other, third]).err().unwrap());
        assert!(
            err.ends_with(&format!(
                "index.json has no image for linux/{}; its platforms are linux/s390x, linux/ppc64le",
                host()
            )),
            "{err}"
        );
    }
}
