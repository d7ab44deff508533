//! An image as the helper builds it: the checked spec turned into layer
//! sources, times and owners ([`Image`]), and the formats it is written in.

pub mod blobs;
pub mod config;
pub mod docker_archive;
pub mod format;
pub mod layer_cache;
pub mod oci_layout;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use std::os::unix::ffi::OsStringExt;

use crate::archive::Owner;
use crate::archive::plan::{LayerSettings, LayerSource};
use crate::base::{Base, BaseLayer};
use crate::digest::Digest;
use crate::oci::platform::host_architecture;
use crate::oci::{canonical_json, reference};
use crate::spec::{self, Spec};

/// A checked spec, ready to be written.
#[derive(Debug)]
pub struct Image {
    pub name: String,
    pub tag: String,
    /// RFC 3339, normalised (`1970-01-01T00:00:01Z`).
    pub created: String,
    pub ctx: LayerSettings,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub config: spec::ConfigSpec,
    /// The base image (`fromImage`), whose layers go first, unchanged.
    pub base: Option<Base>,
    /// Ids of the base's layers in a docker-archive, lowest first.
    pub base_ids: Vec<String>,
    /// The new layers, lowest first.
    pub layers: Vec<Layer>,
}

/// One layer: where its entries come from and what its history says.
#[derive(Debug)]
pub struct Layer {
    pub source: LayerSource,
    pub comment: String,
    /// Identifies the layer in a docker-archive (`<id>/layer.tar`); derived
    /// from the plan, so it is known before the layer is written.
    pub id: String,
}

impl Image {
    /// Checks a spec: names, times, and that every path exists where it
    /// should. A store path already held by a lower layer is dropped.
    /// `base` is the spec's base, opened by the caller
    /// ([`crate::source::image`] opens it).
    pub fn new(spec: Spec, base: Option<Base>) -> Result<Image> {
        reference::check_name(&spec.name).map_err(|e| anyhow::anyhow!("field name: {e}"))?;
        reference::check_tag(&spec.tag).map_err(|e| anyhow::anyhow!("field tag: {e}"))?;
        let created = match spec.created.as_deref() {
            Some("now") => OffsetDateTime::now_utc().replace_nanosecond(0)?,
            Some(t) => parse_time("created", t)?,
            None => parse_time("created", spec::DEFAULT_TIME)?,
        };
        let mtime = file_mtime(spec.created.as_deref(), spec.mtime.as_deref())?;
        let store_dir = normalise(&spec.store_dir)
            .filter(|p| p.is_absolute() && p.parent().is_some())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "field store_dir: {:?} must be an absolute directory such as /nix/store",
                    spec.store_dir
                )
            })?;
        for (field, value) in [("uname", &spec.uname), ("gname", &spec.gname)] {
            if value.is_empty() || value.contains(['\0', '\n', '/', ':']) {
                bail!("field {field}: {value:?} is not a valid user or group name");
            }
        }

        if spec.base.is_some() != base.is_some() {
            bail!("field base: the spec's base and the base opened for it disagree");
        }
        let mut layers = Vec::new();
        // Store paths the base holds are not written again.
        let mut covered: BTreeSet<OsString> = base
            .iter()
            .flat_map(|b| b.store_names(&store_dir))
            .map(OsString::from_vec)
            .collect();
        let mut parent_id = String::new();
        let mut base_ids = Vec::new();
        for layer in base.iter().flat_map(|b| &b.layers) {
            parent_id = base_layer_id(&parent_id, &layer.digest);
            base_ids.push(parent_id.clone());
        }
        for (i, layer) in spec.layers.iter().enumerate() {
            let mut paths = BTreeSet::new();
            for (j, raw) in layer.paths.iter().enumerate() {
                let field = format!("layers[{i}].paths[{j}]");
                let path = store_path(&store_dir, raw)
                    .map_err(|e| anyhow::anyhow!("field {field}: {e}"))?;
                std::fs::symlink_metadata(&path)
                    .with_context(|| format!("field {field}: store path {}", path.display()))?;
                let name = path
                    .file_name()
                    .expect("store paths have a name")
                    .to_owned();
                if !covered.contains(&name) {
                    paths.insert(path);
                }
            }
            covered.extend(paths.iter().map(|p| p.file_name().unwrap().to_owned()));
            let store_paths: Vec<PathBuf> = paths.into_iter().collect();
            let comment = if store_paths.is_empty() {
                "store paths: none (all in lower layers)".to_owned()
            } else {
                format!("store paths: {}", join_paths(&store_paths))
            };
            let source = LayerSource {
                store_paths,
                ..Default::default()
            };
            parent_id = layer_id(&parent_id, &source);
            layers.push(Layer {
                source,
                comment,
                id: parent_id.clone(),
            });
        }
        if let Some(custom) = &spec.customisation {
            let mut trees = Vec::new();
            for (i, raw) in custom.trees.iter().enumerate() {
                let field = format!("customisation.trees[{i}]");
                let tree = normalise(raw).filter(|p| p.is_absolute()).ok_or_else(|| {
                    anyhow::anyhow!("field {field}: {raw:?} must be an absolute path")
                })?;
                let md = std::fs::symlink_metadata(&tree)
                    .with_context(|| format!("field {field}: {}", tree.display()))?;
                if !md.is_dir() {
                    bail!("field {field}: {} is not a directory", tree.display());
                }
                trees.push(tree);
            }
            let comment = format!("customisation layer: {}", join_paths(&trees));
            let metadata = match &custom.metadata {
                Some(files) => files.load().context("field customisation.metadata")?,
                None => Default::default(),
            };
            let source = LayerSource {
                store_paths: Vec::new(),
                trees,
                covered: covered.clone(),
                metadata,
                base: base.as_ref().map(|b| b.view.clone()),
            };
            parent_id = layer_id(&parent_id, &source);
            layers.push(Layer {
                source,
                comment,
                id: parent_id.clone(),
            });
        }

        Ok(Image {
            name: spec.name,
            tag: spec.tag,
            created: created.format(&Rfc3339)?,
            ctx: LayerSettings {
                store_dir,
                mtime,
                store_owner: Owner {
                    uid: spec.uid,
                    gid: spec.gid,
                    uname: spec.uname,
                    gname: spec.gname,
                },
            },
            architecture: spec
                .architecture
                .unwrap_or_else(|| host_architecture().to_owned()),
            os: spec.os,
            variant: spec.variant,
            config: spec.config,
            base,
            base_ids,
            layers,
        })
    }

    /// `name:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// Every layer's docker-archive id, the base's first.
    pub fn layer_ids(&self) -> Vec<&str> {
        self.base_ids
            .iter()
            .map(String::as_str)
            .chain(self.layers.iter().map(|l| l.id.as_str()))
            .collect()
    }

    /// The base's layers, lowest first (none without a base).
    pub fn base_layers(&self) -> &[BaseLayer] {
        self.base.as_ref().map_or(&[], |b| &b.layers)
    }
}

/// The time of every file of an image, in seconds since the epoch, from the
/// spec's `created` and `mtime` (see [`Spec::mtime`]). A `created` of
/// `"now"` leaves it at [`spec::DEFAULT_TIME`], so it depends on the clock
/// only when `mtime` itself is `"now"` (dockerTools' build time).
pub fn file_mtime(created: Option<&str>, mtime: Option<&str>) -> Result<u64> {
    let mtime = match (mtime, created) {
        (Some("now"), _) => OffsetDateTime::now_utc().replace_nanosecond(0)?,
        (Some(t), _) => parse_time("mtime", t)?,
        (None, Some("now")) | (None, None) => parse_time("mtime", spec::DEFAULT_TIME)?,
        (None, Some(t)) => parse_time("created", t)?,
    };
    u64::try_from(mtime.unix_timestamp())
        .map_err(|_| anyhow::anyhow!("field mtime: {mtime} is before 1970"))
}

/// An RFC 3339 time in UTC; errors name `field`.
pub fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| {
            anyhow::anyhow!(
                "field {field}: {text:?} is not an RFC 3339 time such as {:?} ({e})",
                spec::DEFAULT_TIME
            )
        })
}

/// Removes `.` components and trailing slashes; `None` when the path has a
/// `..` component.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => return None,
            other => out.push(other),
        }
    }
    Some(out)
}

/// A store path given in the spec, normalised and checked to be a direct
/// child of the store directory.
fn store_path(store_dir: &Path, raw: &Path) -> std::result::Result<PathBuf, String> {
    let path = normalise(raw).ok_or_else(|| format!("{raw:?} must not contain \"..\""))?;
    if path.parent() != Some(store_dir) || path.file_name().is_none() {
        return Err(format!(
            "{} is outside the store directory {}; give a store path such as {}/<hash>-<name>",
            raw.display(),
            store_dir.display(),
            store_dir.display()
        ));
    }
    Ok(path)
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A layer id that depends only on the plan: the parent's id and the
/// layer's sources.
fn layer_id(parent: &str, source: &LayerSource) -> String {
    #[derive(Serialize)]
    struct Id<'a> {
        parent: &'a str,
        store_paths: &'a [PathBuf],
        trees: &'a [PathBuf],
    }
    let id = Id {
        parent,
        store_paths: &source.store_paths,
        trees: &source.trees,
    };
    Digest::of(&canonical_json(&id)).hex().to_owned()
}

/// The id of a base layer: its blob digest chained to its parent's id, so
/// that equal blobs (empty layers) still get distinct ids.
fn base_layer_id(parent: &str, digest: &Digest) -> String {
    #[derive(Serialize)]
    struct Id<'a> {
        parent: &'a str,
        blob: String,
    }
    let id = Id {
        parent,
        blob: digest.to_string(),
    };
    Digest::of(&canonical_json(&id)).hex().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn canonical_json_sorts_keys() {
        let mut m = HashMap::new();
        for k in ["b", "a", "c", "aa"] {
            m.insert(k, 1);
        }
        assert_eq!(canonical_json(&m), br#"{"a":1,"aa":1,"b":1,"c":1}"#);
    }

    #[test]
    fn store_paths_are_normalised_and_checked() {
        let store = Path::new("/nix/store");
        assert_eq!(
            store_path(store, Path::new("/nix/store/./abc-x/")).unwrap(),
            PathBuf::from("/nix/store/abc-x")
        );
        assert!(store_path(store, Path::new("/etc/passwd")).is_err());
        assert!(store_path(store, Path::new("/nix/store/abc-x/bin")).is_err());
        assert!(store_path(store, Path::new("/nix/store/../etc")).is_err());
        assert!(store_path(store, Path::new("nix/store/abc-x")).is_err());
    }
}
