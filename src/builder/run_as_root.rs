//! The `run-as-root` job: the customisation tree of `buildImage` with
//! `runAsRoot`, what the script changed in a root of `contents` (and the
//! base image), made in a user namespace ([`crate::rootfs`]), as a layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::from_image::BaseAttrs;
use super::join::{Dirlinks, join_one};
use super::metadata::{tree_metadata, write_metadata};
use super::script::{ScriptTools, run_script};
use super::{Derivation, check_version};

/// `buildImage` with `runAsRoot`: its customisation tree is what the
/// script changed in the root, as a layer with whiteouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RunAsRootJob {
    /// The job format's version, 1.
    version: u64,
    /// Store paths whose contents are joined into the root.
    paths: Vec<String>,
    /// The store file holding the script.
    script: String,
    /// The shell that runs it in the root: a store path, or a path that
    /// the root has.
    shell: String,
    /// The `exportReferencesGraph` attribute: every store path the script
    /// may need, mounted into the root.
    graph: String,
    /// The image the root starts from (`fromImage`).
    #[serde(default)]
    base: Option<BaseAttrs>,
    /// Shell commands run in the layer's tree afterwards, as the build
    /// user; `""`: none.
    #[serde(default)]
    extra_commands: String,
    /// `PATH` for `extraCommands`.
    #[serde(default)]
    script_path: String,
    /// `PATH` of the script in the root (the library's coreutils, then
    /// `/bin`, as in dockerTools); absent: a root shell's.
    #[serde(default)]
    path: Option<String>,
    /// buildImage's `keepContentsDirlinks`; absent: symlinks to
    /// directories stay symlinks.
    #[serde(default)]
    keep_contents_dirlinks: Option<bool>,
}

impl RunAsRootJob {
    /// `runAsRoot`: the root is made in the build directory, snapshotted,
    /// the script run in it as root ([`crate::rootfs::userns`]), and what
    /// changed written to `$out` as a layer ([`crate::rootfs::diff`]).
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        use crate::rootfs::chown::BaseOwner;
        use crate::rootfs::userns::{Bind, Chroot, IdMapping};
        use crate::rootfs::{Scratch, diff};

        let metadata = drv.metadata_output("customisation")?;
        check_version(self.version)?;
        let graph = drv.exported_graph(&self.graph)?;
        let mapping = IdMapping::for_this_process();
        let scratch = Scratch::create(std::env::current_dir()?.join("run-as-root"))?;
        let root = scratch.path().join("root");
        fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        let not_given = match &self.base {
            Some(base) => crate::rootfs::extract::extract(&base.open(true)?, &root, mapping)?,
            None => BTreeMap::new(),
        };
        // The lower layers: what the layer is the difference from. `contents`
        // is new in this layer, as the script's changes are, and replaces
        // what the base has at the same paths, as a layer above it would.
        let mut before = diff::snapshot(&root)?;
        // Owners of the base that the build user could not give: the lower
        // layer has them, and the supervisor starts with them recorded.
        let base_owners: Vec<BaseOwner> = not_given
            .into_iter()
            .filter_map(|(path, (uid, gid))| {
                let e = before.entries.get(&path)?;
                Some(BaseOwner {
                    dev: e.dev,
                    ino: e.ino,
                    path,
                    uid,
                    gid,
                })
            })
            .collect();
        before.record_owners(&base_owners.iter().map(BaseOwner::owner).collect());
        let from_base = |path: &Path, md: &fs::Metadata| {
            path.strip_prefix(&root)
                .ok()
                .and_then(|rel| rel.to_str())
                .and_then(|rel| before.entries.get(rel))
                .is_some_and(|e| e.dev == md.dev() && e.ino == md.ino())
        };
        let dirlinks = Dirlinks::from_keep(self.keep_contents_dirlinks);
        for path in &self.paths {
            join_one(path, &root, &from_base, dirlinks)?;
        }

        let mut chroot = Chroot::new(&root);
        if let Some(path) = &self.path {
            chroot.env("PATH", path);
        }
        let mut store_paths: BTreeSet<String> = graph.paths().map(str::to_owned).collect();
        store_paths.extend(store_path_of(&self.shell));
        for path in &store_paths {
            chroot.bind(Path::new(path), path, Bind::StorePath)?;
        }
        for device in ["/dev/null", "/dev/zero", "/dev/urandom"] {
            chroot.bind(Path::new(device), device, Bind::Device)?;
        }
        chroot.bind(Path::new("/proc"), "/proc", Bind::Proc)?;
        let ran = chroot.run(
            &scratch.path().join("namespace.json"),
            &self.shell,
            &self.script,
            mapping,
            base_owners,
        );
        chroot.remove_mountpoints()?;
        let owners = ran?;
        let mut after = diff::snapshot(&root)?;
        after.record_owners(&owners);
        let layer = diff::diff(&before, &after);

        let out = drv.out();
        let tree = Scratch::create(out.to_owned())?;
        let written = diff::write_layer(&root, &after, &layer, out, &|uid, gid| {
            mapping.inside(uid, gid)
        })?;
        drop(scratch);
        let entries = if self.extra_commands.is_empty() {
            written.into_iter().map(|(p, w)| (p, w.metadata)).collect()
        } else {
            let tools = ScriptTools {
                shell: Some(&self.shell),
                script_path: &self.script_path,
            };
            run_script(&tools, "extraCommands", &self.extra_commands, out)?;
            // What extraCommands made is root's; what it left keeps the owner
            // the script gave, and its mode unless extraCommands changed it.
            let mut entries = tree_metadata(out)?;
            for (path, entry) in &mut entries {
                if let Some(w) = written.get(path) {
                    entry.uid = w.metadata.uid;
                    entry.gid = w.metadata.gid;
                    if entry.mode == w.disk_mode {
                        entry.mode = w.metadata.mode;
                    }
                }
            }
            entries
        };
        write_metadata(entries, metadata)?;
        tree.keep();
        Ok(())
    }
}

/// The store path (`/nix/store/NAME`) that `path` is in, if any.
fn store_path_of(path: &str) -> Option<String> {
    let name = path.strip_prefix("/nix/store/")?.split('/').next()?;
    (!name.is_empty()).then(|| format!("/nix/store/{name}"))
}
