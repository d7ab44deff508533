//! `mergeImages`: several docker-archives made into one that holds every
//! image of every input, so one `docker load` or `podman load` loads them
//! all.
//!
//! An input may be compressed as a whole (gzip or zstd, found from its
//! first bytes), be a `streamLayeredImage` launcher (streamed once into a
//! scratch archive), and hold several images. An OCI layout or
//! oci-archive is taken as the docker-archive that holds the same blobs
//! (`oci_input`). Layer blobs, configs and legacy per-layer files
//! (`<id>/VERSION`, `<id>/json`) are copied byte for byte, compressed or
//! not, never re-tarred. A member named by several
//! images, of one input or of several, is written once; a name that an
//! earlier input holds with other bytes (the same layer id, compressed
//! another way) is renamed after the blob's digest. `manifest.json` lists
//! every input's entries in input order, unchanged apart from those names
//! (and `./` taken off), so an untagged image stays untagged; the legacy
//! `repositories` files are merged repository by repository, tag by tag (a
//! later input's tag wins).
//!
//! The output is an uncompressed tar through [`ArchiveWriter`]: members in the
//! order the manifests first name them, then `manifest.json` and
//! `repositories`, all with mtime 1 and owner root. The same inputs give
//! the same bytes.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::base::scan::{self, Limits};
use crate::digest::Digest;
use crate::image::docker_archive::ArchiveWriter;
use crate::oci::platform::Platform;
use crate::output::AtomicFile;
use crate::stored::{self, BlobFile, Blobs, DirBlobs, TarBlobs};

/// mtime of every member of the merged archive.
const MTIME: u64 = 1;

/// Writes one docker-archive holding every image of `inputs` to `out`.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<()> {
    if inputs.is_empty() {
        bail!("merge: give at least one image");
    }
    let mut target = AtomicFile::create(out)?;
    let scratch = tempfile::Builder::new()
        .prefix("stevedore-merge-")
        .tempdir()
        .context("creating a scratch directory")?;
    let limits = Limits::from_env()?;

    let mut members = Members::default();
    let mut manifest: Vec<Value> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        let what = format!("image {}", input.display());
        let (index, entries) = if std::fs::metadata(input)
            .with_context(|| what.clone())?
            .is_dir()
        {
            oci_input(&DirBlobs(input.clone()))
                .with_context(|| format!("{what} (an OCI layout)"))?
        } else {
            let readable = crate::source::readable(
                input,
                &scratch.path().join(format!("input-{i}.tar")),
                limits,
            )
            .with_context(|| what.clone())?;
            let index = stored::members(&readable).with_context(|| what.clone())?;
            if let Some(manifest_file) = index.get("manifest.json") {
                let entries: Vec<Value> = serde_json::from_slice(&manifest_file.read()?)
                    .with_context(|| format!("{what}: manifest.json is not a list of images"))?;
                (index, entries)
            } else if index.contains_key("index.json") {
                oci_input(&TarBlobs(index.clone()))
                    .with_context(|| format!("{what} (an oci-archive)"))?
            } else {
                bail!(
                    "{what} is not a docker-archive or OCI layout: it has no manifest.json or index.json"
                );
            }
        };
        if entries.is_empty() {
            bail!("{what}: it holds no image");
        }
        let mut renamed = BTreeMap::new();
        for (n, mut entry) in entries.into_iter().enumerate() {
            renamed.extend(
                add_entry(&mut entry, &index, &mut members, i)
                    .with_context(|| format!("{what}: manifest.json entry {}", n + 1))?,
            );
            manifest.push(entry);
        }
        if let Some(file) = index.get("repositories") {
            let repos: BTreeMap<String, BTreeMap<String, Value>> =
                serde_json::from_slice(&file.read()?).with_context(|| {
                    format!("{what}: repositories is not an object of repositories and tags")
                })?;
            for (repo, tags) in repos {
                let tags = tags.into_iter().map(|(tag, id)| {
                    let id = match id.as_str().and_then(|id| renamed.get(id)) {
                        Some(new) => Value::String(new.clone()),
                        None => id,
                    };
                    (tag, id)
                });
                repositories.entry(repo).or_default().extend(tags);
            }
        }
    }

    {
        let w = BufWriter::with_capacity(256 * 1024, target.file());
        let mut archive = ArchiveWriter::new(w, MTIME);
        for m in &members.list {
            let tar = archive.tar();
            tar.begin_file(&m.name, m.file.size)?;
            m.file.copy_to(tar.inner()).with_context(|| {
                format!("copying {} of image {}", m.name, inputs[m.input].display())
            })?;
            tar.end_file(m.file.size)?;
        }
        for entry in manifest {
            archive.image(entry);
        }
        for (repo, tags) in repositories {
            for (tag, top) in tags {
                archive.tag(&repo, &tag, top);
            }
        }
        archive.finish()?;
    }
    target.commit()
}

/// A member of the output, and where its bytes come from.
struct Member {
    name: String,
    file: BlobFile,
    /// The input that first named it (for messages).
    input: usize,
}

/// The members of the output so far, each name once.
#[derive(Default)]
struct Members {
    list: Vec<Member>,
    by_name: BTreeMap<String, usize>,
    /// Digests of blobs compared so far, by file and offset.
    digests: BTreeMap<(PathBuf, u64), Digest>,
}

impl Members {
    fn digest(&mut self, file: &BlobFile) -> Result<Digest> {
        let key = (file.path.clone(), file.offset);
        if let Some(d) = self.digests.get(&key) {
            return Ok(d.clone());
        }
        let d = file.digest()?;
        self.digests.insert(key, d.clone());
        Ok(d)
    }

    /// Whether `name` is free (`Some(true)`), already holds these bytes
    /// (`Some(false)`), or holds other bytes (`None`).
    fn fits(&mut self, name: &str, file: &BlobFile) -> Result<Option<bool>> {
        let Some(&at) = self.by_name.get(name) else {
            return Ok(Some(true));
        };
        let have = self.list[at].file.clone();
        if have.path == file.path && have.offset == file.offset {
            return Ok(Some(false));
        }
        let same = have.size == file.size && self.digest(&have)? == self.digest(file)?;
        Ok(if same { Some(false) } else { None })
    }

    fn push(&mut self, name: String, file: BlobFile, input: usize) {
        self.by_name.insert(name.clone(), self.list.len());
        self.list.push(Member { name, file, input });
    }

    /// Places a layer or config: under its own name, or, when an earlier
    /// input holds other bytes under that name (stevedore's layer ids do
    /// not depend on compression, so a gzip and a zstd image share them),
    /// under a name made from its digest. Returns the name it has in the
    /// output, and whether it is new there.
    fn place(&mut self, name: &str, file: &BlobFile) -> Result<(String, bool)> {
        if let Some(new) = self.fits(name, file)? {
            return Ok((name.to_owned(), new));
        }
        let hex = self.digest(file)?.hex().to_owned();
        let renamed = match name.strip_suffix("/layer.tar") {
            Some(_) => format!("{hex}/layer.tar"),
            None => format!("{hex}.json"),
        };
        match self.fits(&renamed, file)? {
            Some(new) => Ok((renamed, new)),
            None => {
                bail!("{name} clashes with a member of an earlier image, and so does {renamed}")
            }
        }
    }
}

/// Adds the layers and config an entry of `manifest.json` names, with
/// their legacy files, and rewrites the entry's names to those of the
/// output (`./` taken off; renamed when they clash). `RepoTags` must be
/// absent, null or a list of strings. Returns the layer directories
/// renamed.
fn add_entry(
    entry: &mut Value,
    index: &BTreeMap<String, BlobFile>,
    members: &mut Members,
    input: usize,
) -> Result<BTreeMap<String, String>> {
    let obj = entry
        .as_object_mut()
        .context("is not an object with Config and Layers")?;
    match obj.get("RepoTags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) if tags.iter().all(Value::is_string) => {}
        Some(_) => bail!("RepoTags is not a list of strings"),
    }
    let lookup = |name: &str| {
        index
            .get(name)
            .cloned()
            .with_context(|| format!("names {name:?}, which is not in the archive"))
    };
    let mut renamed_dirs = BTreeMap::new();
    let layers = obj
        .get_mut("Layers")
        .and_then(Value::as_array_mut)
        .context("has no Layers list")?;
    for layer in layers.iter_mut() {
        let name = member_name(layer).context("a layer")?;
        let file = lookup(&name)?;
        let (out_name, new) = members.place(&name, &file)?;
        if let (Some(dir), Some(out_dir)) = (
            name.strip_suffix("/layer.tar"),
            out_name.strip_suffix("/layer.tar"),
        ) {
            // The legacy files of the layer go with it; they only serve
            // old loaders, so on a clash the first is kept.
            for legacy in ["VERSION", "json"] {
                if let Some(f) = index.get(&format!("{dir}/{legacy}")) {
                    let to = format!("{out_dir}/{legacy}");
                    if members.fits(&to, f)? == Some(true) {
                        members.push(to, f.clone(), input);
                    }
                }
            }
            if dir != out_dir {
                renamed_dirs.insert(dir.to_owned(), out_dir.to_owned());
            }
        }
        if new {
            members.push(out_name.clone(), file, input);
        }
        *layer = Value::String(out_name);
    }
    let config = obj.get_mut("Config").context("has no Config")?;
    let name = member_name(config).context("Config")?;
    let file = lookup(&name)?;
    let (out_name, new) = members.place(&name, &file)?;
    if new {
        members.push(out_name.clone(), file, input);
    }
    *config = Value::String(out_name);
    Ok(renamed_dirs)
}

/// A member name from the manifest, normalised: no `./`, and neither
/// absolute nor with `..`.
fn member_name(value: &Value) -> Result<String> {
    let raw = value.as_str().context("is not a string")?;
    let name = scan::normalise_name(raw.as_bytes())
        .map_err(|why| anyhow::anyhow!("{raw:?} {why}"))?
        .with_context(|| format!("{raw:?} names no file"))?;
    // From a str, split at '/': still UTF-8.
    Ok(String::from_utf8(name).expect("a normalised str is UTF-8"))
}

/// The images of an OCI layout (`file` finds its files) as a
/// docker-archive has them: members `<hex>/layer.tar` and `<hex>.json`
/// that are the blobs, byte for byte, and one `manifest.json` entry per
/// image of `index.json`, tagged with its `io.containerd.image.name`
/// annotation (or its ref name when that is a whole `name:tag`), untagged
/// otherwise. An image for several platforms (an index of images, or
/// entries that differ by platform) gives its image for this machine, as
/// a base image does ([`stored::layout::layout_manifests`]).
fn oci_input(blobs: &dyn Blobs) -> Result<(BTreeMap<String, BlobFile>, Vec<Value>)> {
    #[derive(serde::Deserialize)]
    struct BlobDescriptor {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        digest: String,
        size: u64,
    }
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(default)]
        config: Option<BlobDescriptor>,
        #[serde(default)]
        layers: Vec<BlobDescriptor>,
    }
    let blob = |d: &BlobDescriptor, what: &str| -> Result<(Digest, BlobFile)> {
        let digest: Digest = d
            .digest
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{what}: {e}"))?;
        let f = blobs.file(&format!("blobs/sha256/{}", digest.hex()))?;
        if f.size != d.size {
            bail!(
                "{what} ({digest}) has {} bytes but its descriptor says {}",
                f.size,
                d.size
            );
        }
        Ok((digest, f))
    };
    let mut members = BTreeMap::new();
    let mut entries = Vec::new();
    for (n, m) in stored::layout::layout_manifests(blobs, &Platform::host())?
        .into_iter()
        .enumerate()
    {
        let what = format!("image {} of index.json (manifest {})", n + 1, m.digest);
        let doc: Manifest = serde_json::from_slice(&m.bytes)
            .with_context(|| format!("{what} is not an image manifest"))?;
        let config = doc
            .config
            .as_ref()
            .with_context(|| format!("{what} has no config"))?;
        let (config_digest, config_file) = blob(config, &format!("the config of {what}"))?;
        let config_name = format!("{}.json", config_digest.hex());
        members.insert(config_name.clone(), config_file);
        let mut layers = Vec::new();
        for (k, layer) in doc.layers.iter().enumerate() {
            let at = format!("layer {} of {what}", k + 1);
            crate::oci::media_type::layer_compression(&layer.media_type)
                .with_context(|| at.clone())?;
            let (d, f) = blob(layer, &at)?;
            let name = format!("{}/layer.tar", d.hex());
            members.insert(name.clone(), f);
            layers.push(Value::String(name));
        }
        let tag = m.reference().map(str::to_owned);
        entries.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": tag.map(|t| vec![t]),
            "Layers": layers,
        }));
    }
    Ok((members, entries))
}
