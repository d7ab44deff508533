//! The symlink join of `contents` into a customisation tree or a root, as
//! nixpkgs' `symlinkJoin` makes it. Hand-written: it is short, and it
//! must replace what a base image's layers hold ([`join_one`]'s `lower`).
//! With [`Dirlinks::Copy`] (buildImage's `keepContentsDirlinks = false`,
//! dockerTools' `rsync -k`), a symlink to a directory is joined as that
//! directory.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// What becomes of a symlink to a directory in `contents`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dirlinks {
    /// It stays a symlink (a layered image's join, `keepContentsDirlinks`).
    Keep,
    /// It becomes a directory, its entries joined in.
    Copy,
}

impl Dirlinks {
    /// A job's `keepContentsDirlinks`: absent keeps them, as the layered
    /// images' join does.
    pub fn from_keep(keep: Option<bool>) -> Dirlinks {
        match keep {
            Some(false) => Dirlinks::Copy,
            _ => Dirlinks::Keep,
        }
    }
}

/// Joins each `contents` path into `dest`.
pub fn join_contents(paths: &[String], dest: &Path, dirlinks: Dirlinks) -> Result<()> {
    for path in paths {
        join_one(path, dest, &|_, _| false, dirlinks)?;
    }
    Ok(())
}

/// Joins one `contents` path into `dest`, replacing the entries for which
/// `lower` says they come from a layer below.
pub fn join_one(
    path: &str,
    dest: &Path,
    lower: &dyn Fn(&Path, &fs::Metadata) -> bool,
    dirlinks: Dirlinks,
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
    let mut above = vec![(md.dev(), md.ino())];
    join_tree(src, dest, lower, dirlinks, &mut above)
}

/// Adds `src`'s contents to `dest` as a symlink forest: directories are
/// created, everything else becomes a symlink to the source. The first
/// path to provide a name keeps it, as with `symlinkJoin`; an entry of a
/// lower layer (`lower`) is replaced, or merged into when both are
/// directories.
/// `above` holds the directories being joined, so that a symlink back to
/// one of them is refused rather than followed for ever.
fn join_tree(
    src: &Path,
    dest: &Path,
    lower: &dyn Fn(&Path, &fs::Metadata) -> bool,
    dirlinks: Dirlinks,
    above: &mut Vec<(u64, u64)>,
) -> Result<()> {
    let mut names = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", src.display()))?;
    names.sort();
    for name in names {
        let from = src.join(&name);
        let to = dest.join(&name);
        let mut md =
            fs::symlink_metadata(&from).with_context(|| format!("reading {}", from.display()))?;
        if dirlinks == Dirlinks::Copy
            && md.file_type().is_symlink()
            && let Ok(target) = fs::metadata(&from)
            && target.is_dir()
        {
            if above.contains(&(target.dev(), target.ino())) {
                bail!(
                    "contents: {} is a symlink to a directory that holds it; with keepContentsDirlinks = false it cannot be copied as a directory: set keepContentsDirlinks = true",
                    from.display()
                );
            }
            md = target;
        }
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
            above.push((md.dev(), md.ino()));
            match existing {
                None => {
                    fs::create_dir(&to).with_context(|| format!("creating {}", to.display()))?;
                    join_tree(&from, &to, lower, dirlinks, above)?;
                }
                Some(e) if e.is_dir() => join_tree(&from, &to, lower, dirlinks, above)?,
                Some(_) => {}
            }
            above.pop();
        } else if existing.is_none() {
            std::os::unix::fs::symlink(&from, &to)
                .with_context(|| format!("creating {}", to.display()))?;
        }
    }
    Ok(())
}
