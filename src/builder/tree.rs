//! The `tree` job: a store directory of a few entries the library names
//! one by one (symlinks, text files, empty directories), such as `binSh`,
//! `usrBinEnv`, `caCertificates` and `fakeNss`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{Derivation, check_version};

/// A directory of entries, each at a relative path under `$out`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TreeJob {
    /// The job format's version, 1.
    version: u64,
    /// What `$out` holds, written in this order; parent directories are
    /// made as needed.
    entries: Vec<Entry>,
}

/// One entry of the tree, by its `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum Entry {
    /// A symlink to `target`, which is written as given.
    Symlink { path: String, target: String },
    /// A file holding `text`; executable (0555) when `executable`.
    File {
        path: String,
        text: String,
        #[serde(default)]
        executable: bool,
    },
    /// An empty directory.
    Directory { path: String },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Symlink { path, .. } | Entry::File { path, .. } | Entry::Directory { path } => {
                path
            }
        }
    }
}

impl TreeJob {
    /// Writes every entry under `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let out = drv.out();
        fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
        // Each path once, so no entry silently replaces another.
        let mut seen = BTreeSet::new();
        for (i, entry) in self.entries.iter().enumerate() {
            let rel = entry.path();
            check_path(i, rel)?;
            if !seen.insert(rel) {
                bail!("attribute stevedore.entries[{i}].path: {rel:?} is given twice");
            }
            let dest = out.join(rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            match entry {
                Entry::Symlink { target, .. } => std::os::unix::fs::symlink(target, &dest)
                    .with_context(|| format!("creating the symlink {}", dest.display()))?,
                Entry::File {
                    text, executable, ..
                } => {
                    fs::write(&dest, text)
                        .with_context(|| format!("writing {}", dest.display()))?;
                    if *executable {
                        fs::set_permissions(&dest, fs::Permissions::from_mode(0o555))
                            .with_context(|| format!("making {} executable", dest.display()))?;
                    }
                }
                Entry::Directory { .. } => fs::create_dir_all(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?,
            }
        }
        Ok(())
    }
}

/// A path under `$out`: relative, with no `.`, `..` or empty component.
fn check_path(i: usize, rel: &str) -> Result<()> {
    let path = Path::new(rel);
    let plain = !rel.is_empty()
        && !rel.contains("//")
        && !rel.ends_with('/')
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !rel.split('/').any(|c| c == ".");
    if !plain {
        bail!(
            "attribute stevedore.entries[{i}].path: {rel:?} must be a relative path such as \"bin/sh\" (no leading /, no . or .. components)"
        );
    }
    Ok(())
}
