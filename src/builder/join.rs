//! The symlink join of `contents` into a customisation tree or a root, as
//! nixpkgs' `symlinkJoin` makes it. Hand-written: it is short, and it
//! must replace what a base image's layers hold ([`join_one`]'s `lower`).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Joins each `contents` path into `dest`.
pub fn join_contents(paths: &[String], dest: &Path) -> Result<()> {
    for path in paths {
        join_one(path, dest, &|_, _| false)?;
    }
    Ok(())
}

/// Joins one `contents` path into `dest`, replacing the entries for which
/// `lower` says they come from a layer below.
pub fn join_one(
    path: &str,
    dest: &Path,
    lower: &dyn Fn(&Path, &fs::Metadata) -> bool,
) -> Result<()> {
    let src = Path::new(path);
    let md = fs::metadata(src).with_context(|| format!("contents path {path}"))?;
    if !md.is_dir() && path.ends_with(".drv") {
        // A derivation file: its closure is in the store layers, and
        // there is nothing to join into /.
        return Ok(());
    }
    if !md.is_dir() {
        bail!("contents path {path} is not a directory; only directories are joined into /");
    }
    join_tree(src, dest, lower)
}

/// Adds `src`'s contents to `dest` as a symlink forest: directories are
/// created, everything else becomes a symlink to the source. The first
/// path to provide a name keeps it, as with `symlinkJoin`; an entry of a
/// lower layer (`lower`) is replaced, or merged into when both are
/// directories.
fn join_tree(src: &Path, dest: &Path, lower: &dyn Fn(&Path, &fs::Metadata) -> bool) -> Result<()> {
    let mut names = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", src.display()))?;
    names.sort();
    for name in names {
        let from = src.join(&name);
        let to = dest.join(&name);
        let md =
            fs::symlink_metadata(&from).with_context(|| format!("reading {}", from.display()))?;
        let mut existing = fs::symlink_metadata(&to).ok();
        // A symlink the base has already, to the same file, stays.
        let same_link = || !md.is_dir() && fs::read_link(&to).is_ok_and(|t| t == from);
        if let Some(e) = &existing
            && !(e.is_dir() && md.is_dir())
            && lower(&to, e)
            && !same_link()
        {
            crate::rootfs::remove_tree(&to)
                .with_context(|| format!("replacing {}", to.display()))?;
            existing = None;
        }
        if md.is_dir() {
            match existing {
                None => {
                    fs::create_dir(&to).with_context(|| format!("creating {}", to.display()))?;
                    join_tree(&from, &to, lower)?;
                }
                Some(e) if e.is_dir() => join_tree(&from, &to, lower)?,
                Some(_) => {}
            }
        } else if existing.is_none() {
            std::os::unix::fs::symlink(&from, &to)
                .with_context(|| format!("creating {}", to.display()))?;
        }
    }
    Ok(())
}
