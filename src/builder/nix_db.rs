//! The `nix-db` job: the Nix database and gcroots of an image
//! ([`crate::nixdb`]) as a tree for the customisation layer, with their
//! owners in a `metadata` output.

use std::collections::BTreeSet;
use std::fs;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::from_image::BaseAttrs;
use super::{Derivation, check_version};

/// The Nix database of an image. A derivation of its own rather than part
/// of the image job, so that the launcher of `streamLayeredImage`, which
/// reads its layers from the store when it runs, finds the tree there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NixDbJob {
    /// The job format's version, 1.
    version: u64,
    /// The `exportReferencesGraph` attribute: the image's closure.
    graph: String,
    /// Paths of the graph that are not in the image's store (the
    /// customisation tree, the config file).
    #[serde(default)]
    exclude: Vec<String>,
    /// The `contents`, each kept alive by a gcroot.
    #[serde(default)]
    gc_roots: Vec<String>,
    /// Owner of `/nix/var/nix` and everything below it.
    #[serde(default)]
    uid: u64,
    /// Group of `/nix/var/nix` and everything below it.
    #[serde(default)]
    gid: u64,
    /// The image's `created`: with `mtime`, the registration time is the
    /// image's file time.
    #[serde(default)]
    created: Option<String>,
    /// The image's `mtime`; `null`: `created`'s.
    #[serde(default)]
    mtime: Option<String>,
    /// `fromImage`: the paths its database registers are registered too.
    #[serde(default)]
    base: Option<BaseAttrs>,
}

impl NixDbJob {
    /// Writes the tree to `$out` and its owners to `$metadata`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        let metadata = drv.metadata_output("nix-db")?;
        let out = drv.out();
        check_version(self.version)?;
        let graph = drv.exported_graph(&self.graph)?;
        let exclude: BTreeSet<String> = self.exclude.iter().cloned().collect();
        let mut registration =
            crate::nixdb::Registration::from_graph(&graph, &exclude, &self.gc_roots)?;
        if let Some(base) = &self.base {
            registration.add_base(base_db_paths(base)?);
        }
        let time = crate::image::file_mtime(self.created.as_deref(), self.mtime.as_deref())?;
        fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
        registration.write_tree(out, time)?;
        let metadata_json =
            serde_json::to_vec_pretty(&registration.tree_metadata(self.uid, self.gid))?;
        fs::write(metadata, metadata_json)
            .with_context(|| format!("writing {}", metadata.display()))
    }
}

/// What the Nix database of a base image registers; nothing when it has
/// none.
fn base_db_paths(attrs: &BaseAttrs) -> Result<Vec<crate::nixdb::ValidPath>> {
    const DB: &[u8] = b"nix/var/nix/db/db.sqlite";
    let base = attrs.open(false)?;
    let Some(entry) = base.view.get(DB) else {
        return Ok(Vec::new());
    };
    if entry.kind != crate::base::EntryKind::File {
        bail!(
            "fromImage {}: /nix/var/nix/db/db.sqlite is not a file",
            base.path.display()
        );
    }
    let scratch = tempfile::NamedTempFile::new().context("creating a scratch file")?;
    std::io::copy(&mut base.open_file(entry)?, &mut scratch.as_file())
        .context("reading the base image's Nix database")?;
    crate::nixdb::Registration::read_db(scratch.path())
        .with_context(|| format!("fromImage {}: its Nix database", base.path.display()))
}
