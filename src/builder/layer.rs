//! The `layer` job: nix2container's `buildLayer`, one derivation per
//! layer group, written as an OCI layout that images stack without recompressing.
//!
//! The layout holds the group's layers (store layers planned by popularity,
//! then the `copyToRoot` trees with `perms` applied) and a config that
//! lists their diff_ids and history; `store-paths.json` beside it names the
//! store paths the layers hold, so the layers above leave them out without
//! reading the blobs, and `scans/` holds what reading each blob finds
//! ([`crate::base::record`]), so the images that stack the layers need not
//! read them either.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::from_image::BaseAttrs;
use super::metadata::{tree_metadata, write_metadata};
use super::{Derivation, check_version};
use crate::compress::Compression;
use crate::image::Image;
use crate::image::format::{self, Format};
use crate::layering::{self, Strategy};
use crate::spec::{
    self, ConfigSpec, CustomisationSpec, EntryMetadata, LayerSpec, MetadataFiles, Spec,
};

/// The file of a layer's output that lists the store paths it holds.
pub const STORE_PATHS_FILE: &str = "store-paths.json";

/// A `buildLayer` layer group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LayerJob {
    /// The job format's version, 1.
    version: u64,
    /// The `exportReferencesGraph` attribute: the closure of `deps` and
    /// `copyToRoot`.
    #[serde(default)]
    graph: Option<String>,
    /// Instead of `graph`: exactly these store paths, in one store layer
    /// (an explicit list of buildLayeredImage's `layering`).
    #[serde(default)]
    paths: Option<Vec<String>>,
    /// Store paths left out (`ignore`, and the `copyToRoot` paths, whose
    /// contents go to `/` instead).
    #[serde(default)]
    exclude: Vec<String>,
    /// The outputs of the layers below (`layers`, nested ones included):
    /// the store paths they hold are left out.
    #[serde(default)]
    below: Vec<String>,
    /// buildImage's `fromImage`, for its top layer: the store paths it
    /// holds are left out.
    #[serde(default)]
    base: Option<BaseAttrs>,
    /// `copyToRoot`: trees whose contents go to `/`, in a layer above the
    /// store layers.
    #[serde(default)]
    trees: Vec<String>,
    /// Metadata files of further trees (the Nix database's).
    #[serde(default)]
    tree_metadata: Vec<String>,
    /// `perms`: modes and owners set on the trees' entries.
    #[serde(default)]
    perms: Vec<Perm>,
    /// Store layers to split the closure into (by popularity).
    #[serde(default = "one")]
    max_layers: usize,
    /// `metadata`: the history entry of each layer.
    #[serde(default)]
    history: History,
    /// Layer compression.
    #[serde(default = "gzip")]
    compress: Compression,
    /// RFC 3339 time of the history entries, and of every file unless
    /// `mtime` is given.
    #[serde(default)]
    created: Option<String>,
    /// RFC 3339 time of every file.
    #[serde(default)]
    mtime: Option<String>,
    /// Owner of the store files, as an image's `uid`, `gid`, `uname` and
    /// `gname`.
    #[serde(default)]
    uid: u64,
    #[serde(default)]
    gid: u64,
    #[serde(default = "root_name")]
    uname: String,
    #[serde(default = "root_name")]
    gname: String,
    /// OCI architecture of the layout's config.
    #[serde(default)]
    architecture: Option<String>,
}

/// One `perms` entry: entries below `path` whose source path matches
/// `regex` get `mode` (octal, as a string) and the owner given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Perm {
    path: String,
    regex: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    uid: Option<u64>,
    #[serde(default)]
    gid: Option<u64>,
    /// Accepted as nix2container takes them; the tar carries numeric ids
    /// (docs/spec.md, "Customisation metadata").
    #[serde(default, rename = "uname")]
    _uname: Option<String>,
    #[serde(default, rename = "gname")]
    _gname: Option<String>,
}

/// nix2container's `metadata`: the history of each layer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// `store-paths.json`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StorePaths {
    version: u64,
    paths: Vec<String>,
}

fn gzip() -> Compression {
    Compression::Gzip
}
fn one() -> usize {
    1
}
fn root_name() -> String {
    "root".to_owned()
}

impl LayerJob {
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        if self.max_layers == 0 {
            bail!("attribute stevedore.maxLayers: 0 leaves no layer; use 1 or more");
        }
        let plan = match (&self.graph, &self.paths) {
            (Some(graph), None) => self.plan_closure(drv, graph)?,
            (None, Some(paths)) => self.plan_paths(paths)?,
            _ => bail!(
                "attribute stevedore: give graph (a closure) or paths (one layer's store paths), not both"
            ),
        };
        let held: Vec<String> = plan.iter().flatten().cloned().collect();
        let PermsMetadata {
            trees: tree_perms,
            store: store_perms,
        } = self.perms_metadata(&held)?;
        let customisation = (!self.trees.is_empty()).then(|| -> Result<CustomisationSpec> {
            let perms_file = PathBuf::from("perms-metadata.json");
            write_metadata(tree_perms, &perms_file)?;
            let perms_file = fs::canonicalize(&perms_file)?;
            let mut files = vec![perms_file];
            files.extend(self.tree_metadata.iter().map(PathBuf::from));
            Ok(CustomisationSpec {
                trees: self.trees.iter().map(PathBuf::from).collect(),
                metadata: Some(MetadataFiles::new(files)),
            })
        });
        let spec = Spec {
            version: spec::VERSION,
            name: "layer".to_owned(),
            tag: "layer".to_owned(),
            created: self.created.clone(),
            mtime: self.mtime.clone(),
            store_dir: PathBuf::from("/nix/store"),
            uid: self.uid,
            gid: self.gid,
            uname: self.uname.clone(),
            gname: self.gname.clone(),
            architecture: self.architecture.clone(),
            os: "linux".to_owned(),
            variant: None,
            config: ConfigSpec::default(),
            base: None,
            layers: plan
                .into_iter()
                .map(|paths| LayerSpec {
                    paths: paths.into_iter().map(PathBuf::from).collect(),
                })
                .collect(),
            customisation: customisation.transpose()?,
        };
        let mut image = Image::new(spec, None)?;
        for layer in &mut image.layers {
            layer.comment = self.comment(&layer.comment);
            if !layer.source.store_paths.is_empty() {
                layer.source.metadata = store_perms.clone();
            }
        }
        let out = drv.out();
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        format::write(&image, Format::OciDir, self.compress, out, jobs)?;
        crate::base::record::write_records(out)?;
        let list = StorePaths {
            version: spec::VERSION,
            paths: held,
        };
        let file = out.join(STORE_PATHS_FILE);
        fs::write(&file, serde_json::to_vec_pretty(&list)?)
            .with_context(|| format!("writing {}", file.display()))
    }

    /// The store layers of a closure: `graph` without what the layers
    /// below, the base and `exclude` hold, split by popularity.
    fn plan_closure(&self, drv: &Derivation, graph: &str) -> Result<layering::Plan> {
        let graph = drv.exported_graph(graph)?;
        let mut exclude: BTreeSet<String> =
            self.exclude.iter().chain(&self.trees).cloned().collect();
        for below in &self.below {
            exclude.extend(held_paths(Path::new(below))?);
        }
        if let Some(base) = &self.base {
            let store = Path::new("/nix/store");
            for name in base.open(false)?.store_names(store) {
                exclude.insert(format!("/nix/store/{}", String::from_utf8_lossy(&name)));
            }
        }
        // One layer more than asked for: `plan` keeps one for a
        // customisation layer, which here is the trees' layer of its own.
        layering::plan(
            &graph,
            &Strategy::Popularity,
            self.max_layers + layering::MIN_LAYERS - 1,
            &exclude,
        )
    }

    /// One store layer of exactly `paths`, which stand alone: nothing is
    /// left out, so nothing may say what to leave out.
    fn plan_paths(&self, paths: &[String]) -> Result<layering::Plan> {
        if paths.is_empty() {
            bail!("attribute stevedore.paths: no store path; a layer needs at least one");
        }
        if !self.exclude.is_empty() || !self.below.is_empty() || self.base.is_some() {
            bail!(
                "attribute stevedore.paths: takes no exclude, below or base; they shape a closure (graph)"
            );
        }
        // A path named twice is held once; the image job names the fault.
        let mut seen = BTreeSet::new();
        Ok(vec![
            paths
                .iter()
                .filter(|p| seen.insert(p.as_str()))
                .cloned()
                .collect(),
        ])
    }

    /// The history comment: nix2container's `metadata.comment` (with its
    /// author and creator), else what the layer holds.
    fn comment(&self, holds: &str) -> String {
        let h = &self.history;
        let mut parts = Vec::new();
        if let Some(c) = &h.comment {
            parts.push(c.clone());
        } else {
            parts.push(holds.to_owned());
        }
        if let Some(a) = &h.author {
            parts.push(format!("author: {a}"));
        }
        if let Some(c) = &h.created_by {
            parts.push(format!("created by: {c}"));
        }
        parts.join("; ")
    }

    /// The modes and owners `perms` gives entries, by destination: those
    /// of the trees (copied to `/`), and those of the store paths `held`
    /// by this layer's store layers (below `nix/store/`). Entries are
    /// matched by their source path (`/nix/store/<tree>/etc/passwd`), the
    /// regex found anywhere in it, as nix2container matches; later entries
    /// of `perms` win.
    fn perms_metadata(&self, held: &[String]) -> Result<PermsMetadata> {
        let mut out = PermsMetadata::default();
        for (i, perm) in self.perms.iter().enumerate() {
            let field = format!("attribute stevedore.perms[{i}]");
            let in_tree = self.trees.contains(&perm.path);
            if !in_tree && !held.contains(&perm.path) {
                bail!(
                    "{field}: path {} is neither one of copyToRoot nor a store path this layer holds (one of deps or their closure, not in layers)",
                    perm.path
                );
            }
            let regex = Regex::new(&perm.regex)
                .with_context(|| format!("{field}: regex {:?}", perm.regex))?;
            let mode = perm
                .mode
                .as_deref()
                .map(|m| {
                    u32::from_str_radix(m, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .with_context(|| {
                            format!("{field}: mode {m:?} is not an octal mode such as \"0644\"")
                        })
                })
                .transpose()?;
            let root = Path::new(&perm.path);
            let root_md = fs::symlink_metadata(root)
                .with_context(|| format!("{field}: reading {}", perm.path))?;
            // Source paths and destinations: a tree's entries go to `/`, a
            // store path's stay where they are, the path itself included.
            let mut entries: Vec<(String, String, EntryMetadata)> = Vec::new();
            if !in_tree {
                let rel = perm.path.trim_start_matches('/').to_owned();
                let md = EntryMetadata {
                    mode: std::os::unix::fs::PermissionsExt::mode(&root_md.permissions()) & 0o7777,
                    uid: 0,
                    gid: 0,
                };
                entries.push((perm.path.clone(), rel, md));
            }
            if root_md.is_dir() {
                for (dest, found) in tree_metadata(root)? {
                    let source = format!("{}/{dest}", perm.path);
                    let dest = if in_tree {
                        dest
                    } else {
                        source.trim_start_matches('/').to_owned()
                    };
                    entries.push((source, dest, found));
                }
            }
            let map = if in_tree {
                &mut out.trees
            } else {
                &mut out.store
            };
            for (source, dest, found) in entries {
                if !regex.is_match(&source) {
                    continue;
                }
                let entry = map.entry(dest).or_insert(found);
                if let Some(m) = mode {
                    entry.mode = m;
                }
                if let Some(u) = perm.uid {
                    entry.uid = u;
                }
                if let Some(g) = perm.gid {
                    entry.gid = g;
                }
            }
        }
        Ok(out)
    }
}

/// What `perms` gives: entries of the trees by destination below `/`, and
/// of store paths by their path below `nix/store/`.
#[derive(Debug, Default)]
struct PermsMetadata {
    trees: BTreeMap<String, EntryMetadata>,
    store: BTreeMap<String, EntryMetadata>,
}

/// The store paths a layer output holds (its `store-paths.json`).
pub(super) fn held_paths(layer: &Path) -> Result<Vec<String>> {
    let file = layer.join(STORE_PATHS_FILE);
    let text = fs::read(&file).with_context(|| {
        format!(
            "reading {}: layers must be results of nix2container.buildLayer",
            file.display()
        )
    })?;
    let list: StorePaths =
        serde_json::from_slice(&text).with_context(|| format!("{}", file.display()))?;
    if list.version != spec::VERSION {
        bail!(
            "{}: version {} is not supported",
            file.display(),
            list.version
        );
    }
    Ok(list.paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tree: &Path, perms: serde_json::Value) -> LayerJob {
        serde_json::from_value(serde_json::json!({
            "version": 1,
            "graph": "closure",
            "maxLayers": 1,
            "trees": [tree],
            "perms": perms,
        }))
        .unwrap()
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("home/user")).unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp/a.txt"), "a").unwrap();
        dir
    }

    #[test]
    fn paths_make_one_layer_of_exactly_them_and_refuse_what_shapes_a_closure() {
        let paths = |extra: serde_json::Value| -> LayerJob {
            let mut job = serde_json::json!({ "version": 1, "paths": ["/nix/store/b", "/nix/store/a", "/nix/store/b"] });
            job.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(job).unwrap()
        };
        let job = paths(serde_json::json!({}));
        let plan = job.plan_paths(job.paths.as_deref().unwrap()).unwrap();
        assert_eq!(plan, [["/nix/store/b", "/nix/store/a"]]);
        assert_eq!(job.max_layers, 1);
        assert!(format!("{:#}", job.plan_paths(&[]).unwrap_err()).contains("no store path"));
        let job = paths(serde_json::json!({ "below": ["/nix/store/l"] }));
        let err = job.plan_paths(job.paths.as_deref().unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("takes no exclude, below or base"));
    }

    #[test]
    fn perms_give_matching_entries_their_mode_and_owner_and_a_later_entry_wins() {
        let dir = tree();
        let root = dir.path().display().to_string();
        let job = job(
            dir.path(),
            serde_json::json!([
                { "path": root, "regex": "", "mode": "0777" },
                { "path": root, "regex": "/home/user$", "mode": "0744",
                  "uid": 1000, "gid": 100, "uname": "user", "gname": "users" },
            ]),
        );
        let m = job.perms_metadata(&[]).unwrap().trees;
        let get = |k: &str| m.get(k).map(|e| (e.mode, e.uid, e.gid));
        assert_eq!(get("tmp/a.txt"), Some((0o777, 0, 0)));
        assert_eq!(get("home"), Some((0o777, 0, 0)));
        assert_eq!(get("home/user"), Some((0o744, 1000, 100)));
    }

    #[test]
    fn perms_without_a_match_or_a_mode_keep_the_trees_modes() {
        let dir = tree();
        let root = dir.path().display().to_string();
        let job = job(
            dir.path(),
            serde_json::json!([{ "path": root, "regex": "a[.]txt$", "uid": 5 }]),
        );
        let m = job.perms_metadata(&[]).unwrap().trees;
        assert_eq!(m.len(), 1, "{m:?}");
        let e = m["tmp/a.txt"];
        let disk = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join("tmp/a.txt"))
                .unwrap()
                .permissions(),
        ) & 0o7777;
        assert_eq!((e.mode, e.uid, e.gid), (disk, 5, 0));
    }

    #[test]
    fn perms_on_a_store_path_the_layer_holds_keep_its_place_in_the_store() {
        let dir = tree();
        let other = tree();
        let store_path = other.path().display().to_string();
        let job = job(
            dir.path(),
            serde_json::json!([{ "path": store_path, "regex": "(tmp|/home)$", "mode": "0700", "uid": 7 }]),
        );
        let m = job
            .perms_metadata(std::slice::from_ref(&store_path))
            .unwrap();
        assert!(m.trees.is_empty(), "{:?}", m.trees);
        let rel = store_path.trim_start_matches('/');
        let keys: Vec<&String> = m.store.keys().collect();
        assert_eq!(keys, [&format!("{rel}/home"), &format!("{rel}/tmp")]);
        assert_eq!(m.store[&format!("{rel}/tmp")].mode, 0o700);
        assert_eq!(m.store[&format!("{rel}/tmp")].uid, 7);
    }

    #[test]
    fn perms_refuse_other_paths_bad_modes_and_bad_regexes() {
        let dir = tree();
        let root = dir.path().display().to_string();
        let err = |perms: serde_json::Value| {
            format!(
                "{:#}",
                job(dir.path(), perms).perms_metadata(&[]).unwrap_err()
            )
        };
        assert!(
            err(serde_json::json!([{ "path": "/nix/store/x", "regex": "" }]))
                .contains("perms[0]: path /nix/store/x is neither one of copyToRoot")
        );
        assert!(
            err(serde_json::json!([{ "path": root, "regex": "", "mode": "rwx" }]))
                .contains("mode \"rwx\" is not an octal mode")
        );
        assert!(err(serde_json::json!([{ "path": root, "regex": "(" }])).contains("regex \"(\""));
    }
}
