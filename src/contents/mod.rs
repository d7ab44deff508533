//! What an image holds, as one model ([`Contents`]): its layers with their
//! digests and sizes, the store paths (or files) each layer adds, the
//! config and platforms, and what Nix knows of every store path (narHash,
//! narSize, references). `inspect`, `sbom`, `diff` and `why` all read it.
//!
//! Images are read with the existing readers only: [`crate::source`] turns
//! a launcher into an archive, [`crate::stored`] reads archives and layouts
//! in place, and [`crate::base`] reads every layer as hostile input into a
//! view of the file system, which says which layer holds which path. What
//! Nix knows of the store paths comes, first found first, from a closure
//! graph given by the caller (the Nix library's `exportReferencesGraph`),
//! from the Nix database in the image (`includeNixDB`), or from the host's
//! store when it has the paths (`nix-store --dump-db`).

mod diff;
mod graph;
mod name;
mod remote;
pub mod sbom;
mod show;
mod why;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::base::{Base, EntryKind, Limits, Pick};
use crate::closure::Graph;
use crate::digest::Digest;

pub use diff::{Diff, diff};
pub use graph::GraphSource;
pub use name::{NameVersion, parse_name};
pub use remote::open_remote;
pub use why::why;

/// The store directory images hold their store paths in.
pub const STORE_DIR: &str = "/nix/store";

/// The version of the JSON [`Contents`] is written as (`inspect --json`).
pub const JSON_VERSION: u64 = 1;

/// What an image holds (docs/inspect.md gives its JSON form).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contents {
    /// The version of this document's form.
    pub version: u64,
    /// The image as it was named on the command line.
    pub image: String,
    /// The names the image is stored under (`name:tag`), if any.
    pub names: Vec<String>,
    /// The image's id: the digest of its config. The same in every format
    /// and compression.
    pub id: Digest,
    /// Bytes of the config.
    pub config_size: u64,
    /// The digest of the image manifest, where the image has one (OCI
    /// layouts, registries).
    pub manifest: Option<Digest>,
    /// The config's `created`.
    pub created: Option<String>,
    /// The image's platform; every platform of a multi-platform image.
    pub platforms: Vec<Platform>,
    /// The image config, as stored.
    pub config: Value,
    /// The layers, lowest first.
    pub layers: Vec<Layer>,
    /// Every store path the image holds, with what Nix knows of it.
    pub store_paths: BTreeMap<String, StorePath>,
    /// Where narHash and references came from, if from anywhere.
    pub graph: Option<GraphSource>,
}

/// An image platform.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One layer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// The blob's digest, as stored (compressed or not).
    pub digest: Digest,
    /// The digest of the uncompressed tar.
    pub diff_id: Option<Digest>,
    /// `none`, `gzip` or `zstd`; `None` for a registry media type the
    /// helper does not read.
    pub compression: Option<crate::compress::Compression>,
    /// Bytes of the blob as stored (what a push sends).
    pub compressed_size: u64,
    /// Bytes of the uncompressed tar; unknown for a layer not downloaded.
    pub size: Option<u64>,
    /// The history entry's comment.
    pub comment: Option<String>,
    /// The store paths the layer holds, by path.
    pub store_paths: Vec<LayerStorePath>,
    /// The other files and symbolic links the layer holds (directories
    /// left out), by path; for a layer not downloaded, none.
    pub files: Vec<File>,
}

/// A store path, as one layer holds it.
#[derive(Clone, Debug, Serialize)]
pub struct LayerStorePath {
    pub path: String,
    /// Bytes of its files; unknown for a layer not downloaded.
    pub size: Option<u64>,
}

/// A file or symbolic link outside the store.
#[derive(Clone, Debug, Serialize)]
pub struct File {
    /// Absolute, as seen in the container.
    pub path: String,
    /// `file`, `symlink`, `char`, `block` or `fifo`.
    pub kind: &'static str,
    pub size: u64,
    /// A link's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What is known of one store path of the image.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorePath {
    /// The index (from 0) of the layer that holds it.
    pub layer: usize,
    /// Bytes of its files in the image; unknown for a layer not
    /// downloaded.
    pub size: Option<u64>,
    /// `sha256:<base16>`.
    pub nar_hash: Option<String>,
    pub nar_size: Option<u64>,
    /// The store paths it refers to, itself left out; `None` when unknown.
    pub references: Option<BTreeSet<String>>,
    /// What the Nix library was told of the package (`meta`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// A package's `meta`, as far as an SBOM carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<License>,
}

/// A license: its SPDX identifier where it has one, its name otherwise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct License {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spdx_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where the store-path facts come from, besides the image itself.
#[derive(Default)]
pub struct Facts<'a> {
    /// A closure graph (exportReferencesGraph); first in line.
    pub graph: Option<&'a Graph>,
    /// `meta` of store paths, by path.
    pub meta: BTreeMap<String, Meta>,
    /// Whether the host's store may be asked (never in a Nix build).
    pub host_store: bool,
}

/// Reads the image at `path` (a launcher, docker-archive, OCI layout or
/// oci-archive), every layer, and what `facts` and the image's own Nix
/// database know of its store paths.
pub fn open(path: &Path, facts: &Facts) -> Result<Contents> {
    let scratch = crate::base::scratch_dir()?;
    let limits = Limits::from_env()?;
    let readable = crate::source::readable(path, &scratch.path().join("image.tar"), limits)
        .with_context(|| format!("image {}", path.display()))?;
    let pick = Pick::Named {
        name: None,
        tag: None,
    };
    let stored = crate::stored::open(&readable, &pick, "image")?;
    let platforms = match crate::stored::open_index(&readable, "image")? {
        Some(index) => index
            .platforms
            .iter()
            .map(|p| Platform {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
            })
            .collect(),
        None => Vec::new(),
    };
    let base = Base::open(path, &readable, scratch, &pick, false)?;
    let mut contents = from_base(path, &stored, &base)?;
    if !platforms.is_empty() {
        contents.platforms = platforms;
    }
    graph::add_facts(&mut contents, Some(&base), facts)?;
    Ok(contents)
}

/// The model of an image whose layers were read into `base`.
fn from_base(path: &Path, stored: &crate::stored::StoredImage, base: &Base) -> Result<Contents> {
    let mut contents = Contents::from_config(
        path.display().to_string(),
        stored.names.clone(),
        &stored.config,
        stored.oci_manifest.as_deref().map(Digest::of),
    )?;
    let comments = contents.layer_comments(base.layers.len());
    for (i, layer) in base.layers.iter().enumerate() {
        contents.layers.push(Layer {
            digest: layer.digest.clone(),
            diff_id: Some(layer.diff_id.clone()),
            compression: Some(layer.compression),
            compressed_size: layer.file.size,
            size: Some(layer.tar_size),
            comment: comments[i].clone(),
            store_paths: Vec::new(),
            files: Vec::new(),
        });
    }
    // The view is the file system the layers add up to: each entry names
    // the layer that holds it.
    let store = STORE_DIR.trim_start_matches('/');
    let mut sizes: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (name, entry) in base.view.iter() {
        let name = String::from_utf8_lossy(&name).into_owned();
        let Some(in_store) = name.strip_prefix(store).and_then(|r| r.strip_prefix('/')) else {
            if let Some(file) = file_of(&name, entry) {
                contents.layers[entry.layer].files.push(file);
            }
            continue;
        };
        let (top, below) = match in_store.split_once('/') {
            Some((top, _)) => (top, true),
            None => (in_store, false),
        };
        let path = format!("{STORE_DIR}/{top}");
        let size = if entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        let slot = sizes.entry(path).or_insert((entry.layer, 0));
        if !below {
            slot.0 = entry.layer;
        }
        slot.1 += size;
    }
    for (path, (layer, size)) in sizes {
        contents.layers[layer].store_paths.push(LayerStorePath {
            path: path.clone(),
            size: Some(size),
        });
        contents.store_paths.insert(
            path,
            StorePath {
                layer,
                size: Some(size),
                ..Default::default()
            },
        );
    }
    for layer in &mut contents.layers {
        layer.files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(contents)
}

/// A file of the view outside the store, or `None` for a directory.
fn file_of(name: &str, entry: &crate::base::ViewEntry) -> Option<File> {
    let (kind, target) = match entry.kind {
        EntryKind::Dir => return None,
        EntryKind::File => ("file", None),
        EntryKind::Symlink => ("symlink", Some(&entry.link)),
        EntryKind::CharDevice { .. } => ("char", None),
        EntryKind::BlockDevice { .. } => ("block", None),
        EntryKind::Fifo => ("fifo", None),
    };
    Some(File {
        path: format!("/{name}"),
        kind,
        size: if entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        },
        target: target.map(|t| String::from_utf8_lossy(t).into_owned()),
    })
}

impl Contents {
    /// The parts every image has: names, id, created, platform and config.
    fn from_config(
        image: String,
        mut names: Vec<String>,
        config_bytes: &[u8],
        manifest: Option<Digest>,
    ) -> Result<Contents> {
        let config: Value = serde_json::from_slice(config_bytes)
            .with_context(|| format!("image {image}: the config is not JSON"))?;
        let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
        names.sort();
        names.dedup();
        Ok(Contents {
            version: JSON_VERSION,
            names,
            id: Digest::of(config_bytes),
            config_size: config_bytes.len() as u64,
            manifest,
            created: text("created"),
            platforms: vec![Platform {
                os: text("os").unwrap_or_default(),
                architecture: text("architecture").unwrap_or_default(),
                variant: text("variant"),
            }],
            layers: Vec::new(),
            store_paths: BTreeMap::new(),
            graph: None,
            config,
            image,
        })
    }

    /// The comment of each of `count` layers: the config's history entries
    /// that are not `empty_layer`, in order.
    fn layer_comments(&self, count: usize) -> Vec<Option<String>> {
        let mut comments: Vec<Option<String>> = self
            .config
            .get("history")
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .filter(|e| e.get("empty_layer").and_then(Value::as_bool) != Some(true))
                    .map(|e| {
                        e.get("comment")
                            .or_else(|| e.get("created_by"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        comments.resize(count, None);
        comments
    }

    /// The image's name for documents: its first stored name, else the
    /// argument it was read from.
    pub fn display_name(&self) -> &str {
        self.names.first().map_or(&self.image, String::as_str)
    }

    /// The roots of the image's store paths: those no other store path of
    /// the image refers to (every path, when references are unknown).
    pub fn roots(&self) -> Vec<&str> {
        let referred: BTreeSet<&str> = self
            .store_paths
            .iter()
            .flat_map(|(p, s)| {
                s.references
                    .iter()
                    .flatten()
                    .filter(move |r| *r != p)
                    .map(String::as_str)
            })
            .collect();
        self.store_paths
            .keys()
            .map(String::as_str)
            .filter(|p| !referred.contains(p))
            .collect()
    }
}

/// Reads any image argument: `docker://HOST/REPO:TAG` (its manifest and
/// config only) or an image on disk.
pub fn open_any(
    image: &str,
    facts: &Facts,
    conn: &crate::registry::Connection,
    platform: &crate::oci::Platform,
) -> Result<Contents> {
    if image.starts_with("docker://") {
        open_remote(image, facts, conn, platform)
    } else {
        open(Path::new(image), facts)
    }
}
