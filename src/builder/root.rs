//! The `root` job: the customisation tree of an image, `contents` joined
//! into one symlink forest, then `extraCommands` and `fakeRootCommands`
//! run in it, with the modes and owners they leave in `metadata`; with
//! `enableFakechroot`, `fakeRootCommands` run chrooted into the tree.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::join::{Dirlinks, join_contents};
use super::metadata::{record_metadata, write_metadata};
use super::script::{ScriptTools, run_script, write_script};
use super::{Derivation, check_version};
use crate::spec::EntryMetadata;

/// The customisation tree of a layered image (or of `buildImage` without
/// `runAsRoot`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RootJob {
    /// The job format's version, 1.
    version: u64,
    /// Store paths whose contents are joined into the tree.
    paths: Vec<String>,
    /// Shell commands run in the tree as the build user; `""`: none.
    #[serde(default)]
    extra_commands: String,
    /// Shell commands run in the tree as root in a user namespace, after
    /// `extraCommands`; `""`: none.
    #[serde(default)]
    fake_root_commands: String,
    /// The shell that runs the commands.
    #[serde(default)]
    shell: Option<String>,
    /// `PATH` for the commands.
    #[serde(default)]
    script_path: String,
    /// buildImage's `keepContentsDirlinks`; absent: symlinks to
    /// directories stay symlinks.
    #[serde(default)]
    keep_contents_dirlinks: Option<bool>,
    /// true: `fakeRootCommands` run chrooted into the tree, with the store
    /// paths of `graph` mounted in.
    #[serde(default)]
    enable_fakechroot: bool,
    /// With `enableFakechroot`: the `exportReferencesGraph` attribute of
    /// the store paths the commands see.
    #[serde(default)]
    graph: Option<String>,
}

impl RootJob {
    /// Makes the tree at `$out` and its metadata at `$metadata`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        let metadata = drv.metadata_output("customisation")?;
        check_version(self.version)?;
        let out = drv.out();
        std::fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
        join_contents(
            &self.paths,
            out,
            Dirlinks::from_keep(self.keep_contents_dirlinks),
        )?;
        let tools = ScriptTools {
            shell: self.shell.as_deref(),
            script_path: &self.script_path,
        };
        if !self.extra_commands.is_empty() {
            run_script(&tools, "extraCommands", &self.extra_commands, out)?;
        }
        if self.fake_root_commands.is_empty() {
            // Owned by root in the image, whoever built it; modes as left.
            return record_metadata(out, metadata);
        }
        let store_paths = match (&self.graph, self.enable_fakechroot) {
            (Some(graph), true) => Some(
                drv.exported_graph(graph)?
                    .paths()
                    .map(str::to_owned)
                    .collect(),
            ),
            (None, true) => anyhow::bail!(
                "attribute stevedore.graph: enableFakechroot needs the graph of the store paths to mount"
            ),
            _ => None,
        };
        fake_root_commands(&tools, &self.fake_root_commands, out, metadata, store_paths)
    }
}

/// Runs `fakeRootCommands` as root in a user namespace of the helper's
/// own, in the tree, and records the owners and modes they leave: real
/// owners where the namespace maps every id (the helper is root), the
/// chown calls' record where it maps only the build user (a Nix build
/// user, the Nix sandbox; [`crate::rootfs::chown`]). Static programs are
/// covered as dynamic ones are; no fakeroot program is needed. With
/// `chroot_store` (enableFakechroot), the commands run chrooted into the
/// tree, which they see as `/`, with those store paths mounted (as
/// dockerTools' proot does, without proot); the mountpoints are gone
/// before the tree is read.
fn fake_root_commands(
    tools: &ScriptTools,
    text: &str,
    tree: &Path,
    metadata: &Path,
    chroot_store: Option<std::collections::BTreeSet<String>>,
) -> Result<()> {
    use crate::rootfs::diff;
    use crate::rootfs::userns::{Bind, Chroot, IdMapping};

    const WHAT: &str = "fakeRootCommands";
    let script = write_script(WHAT, text)?;
    let mapping = IdMapping::for_this_process();
    let config = std::env::current_dir()?.join(format!("{WHAT}.namespace.json"));
    let ran = match &chroot_store {
        None => {
            let shell = tools.checked_shell(WHAT)?;
            let mut namespace = Chroot::in_place(WHAT, tree);
            namespace
                .env("PATH", tools.script_path)
                .env("out", &tree.to_string_lossy());
            namespace.run(
                &config,
                shell,
                &script.to_string_lossy(),
                mapping,
                Vec::new(),
            )
        }
        Some(store_paths) => {
            // The shell is looked for in the tree, once chrooted.
            let shell = tools.shell.with_context(|| {
                format!("{WHAT} needs a shell; pass `shell` to the stevedore library")
            })?;
            let mut namespace = Chroot::named(WHAT, tree);
            namespace.env("PATH", tools.script_path);
            // The script itself is outside the tree: it is mounted in.
            let inside = format!("/.stevedore-{WHAT}.sh");
            let mut bound = namespace.bind(&script, &inside, Bind::Device);
            for path in store_paths {
                if bound.is_err() {
                    break;
                }
                bound = namespace.bind(Path::new(path), path, Bind::StorePath);
            }
            for device in ["/dev/null", "/dev/zero", "/dev/urandom"] {
                if bound.is_ok() {
                    bound = namespace.bind(Path::new(device), device, Bind::Device);
                }
            }
            if bound.is_ok() {
                bound = namespace.bind(Path::new("/proc"), "/proc", Bind::Proc);
            }
            let ran =
                bound.and_then(|()| namespace.run(&config, shell, &inside, mapping, Vec::new()));
            namespace.remove_mountpoints()?;
            ran
        }
    };
    let owners = ran.map_err(|e| tools.explain(WHAT, e))?;
    let mut tree_now = diff::snapshot(tree)?;
    tree_now.record_owners(&owners);
    let inside = |uid, gid| mapping.inside(uid, gid);
    let entries = tree_now
        .entries
        .iter()
        .map(|(path, e)| {
            let (uid, gid) = e.image_owner(&inside);
            (
                path.clone(),
                EntryMetadata {
                    mode: e.mode,
                    uid,
                    gid,
                },
            )
        })
        .collect();
    write_metadata(entries, metadata)
}
