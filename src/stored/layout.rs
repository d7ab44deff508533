//! Reading an OCI image layout (a directory, or an oci-archive's members):
//! `index.json`, indexes nested at most `INDEX_DEPTH` (4) deep, manifests
//! checked against their digests and sizes, and the image for a platform.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{BlobFile, Pick, StoredImage, StoredLayer, blob_name, parse_digest};
use crate::digest::Digest;
use crate::oci::media_type::{self, OCI_INDEX, OCI_MANIFEST};
use crate::oci::platform::{self, Platform};

/// A multi-platform image of an OCI layout, every blob of every platform
/// found and its documents checked, in the order a registry takes them.
pub struct IndexImage {
    /// The config and layer blobs of every image the index leads to, each
    /// once.
    pub blobs: Vec<NamedBlob>,
    /// Every image manifest and inner index, each after those it names:
    /// put by digest.
    pub manifests: Vec<IndexDocument>,
    /// The index `index.json` names: put under the tag, last.
    pub index: IndexDocument,
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
pub struct IndexDocument {
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

/// An image manifest of an OCI layout, checked against its digest and
/// size, and the `index.json` entry that leads to it.
pub struct LayoutManifest {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    /// The annotations of that entry: the image's names.
    pub annotations: BTreeMap<String, String>,
}

impl LayoutManifest {
    /// `NAME:TAG` the entry names the image by: its
    /// `io.containerd.image.name`, or its ref name when that is a whole
    /// `NAME:TAG` rather than a tag alone.
    pub fn reference(&self) -> Option<&str> {
        self.annotations
            .get(CONTAINERD_NAME)
            .or_else(|| {
                self.annotations
                    .get(REF_NAME)
                    .filter(|r| r.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/')))
            })
            .map(String::as_str)
    }
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
pub(super) fn read_index_image(blobs: &dyn Blobs) -> Result<Option<IndexImage>> {
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
) -> IndexDocument {
    let media_type = [&doc.media_type, &entry.media_type]
        .into_iter()
        .find(|t| !t.is_empty())
        .map_or(default, String::as_str)
        .to_owned();
    IndexDocument {
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

pub(super) fn read_image(
    root: &Path,
    blobs: &dyn Blobs,
    pick: &Pick,
    platform: &Platform,
) -> Result<StoredImage> {
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
    let found = image_of(blobs, group, platform)?;
    // The full reference first, where the layout records one; else the
    // OCI ref name, which is a tag.
    let names = match (found.reference(), group[0].1.names()) {
        (Some(full), _) => vec![full.to_owned()],
        (None, (Some(full), _)) => vec![full.clone()],
        (None, (None, tag)) => tag.into_iter().cloned().collect(),
    };
    let LayoutManifest {
        digest,
        bytes: manifest,
        ..
    } = found;
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
        layers.push(StoredLayer {
            digest: Some(d.clone()),
            diff_id: None,
            compression: media_type::layer_compression(&layer.media_type)
                .with_context(|| what.clone())?,
            what: format!("{what} ({} in {})", blob_name(&d), root.display()),
            file,
        });
    }
    Ok(StoredImage {
        config: config_bytes,
        layers,
        oci_manifest: Some(manifest),
        names,
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

        fn open(&self, entries: &[Value]) -> Result<StoredImage> {
            let index = json!({ "schemaVersion": 2, "manifests": entries });
            std::fs::write(self.0.path().join("index.json"), index.to_string()).unwrap();
            let any = Pick::Named {
                name: None,
                tag: None,
            };
            super::super::open(self.0.path(), &any, "fromImage")
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
