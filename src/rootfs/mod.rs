//! The root filesystem of `runAsRoot` (buildImage): a scratch tree in the
//! build directory that a script changes as root, in a user namespace
//! ([`userns`]) rather than dockerTools' VM, and the layer those changes
//! make ([`diff`]). Where the namespace maps only the build user, the
//! script's chown calls are recorded rather than made ([`chown`]).
//!
//! Scratch trees are removed however the build ends. In a namespace where
//! only the build user is mapped, the script leaves files that are the
//! build user's, but possibly with modes that stop it from reading or
//! deleting them (`chmod 0 dir`); [`remove_tree`] gives the owner the
//! bits it needs before removing.

pub mod chown;
pub mod diff;
pub mod extract;
pub mod orphans;
pub mod userns;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Removes a tree without following symlinks, making each directory
/// writable and searchable by its owner first. A missing path is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let md = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !md.is_dir() {
        return fs::remove_file(path);
    }
    if md.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)
}

/// A directory that is removed with everything in it when dropped.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `path`, which must not exist.
    pub fn create(path: PathBuf) -> Result<Scratch> {
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory: the caller takes it over.
    pub fn keep(self) -> PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            eprintln!(
                "stevedore: warning: {}",
                crate::terminal::escape(&format!("removing {}: {e}", self.path.display()))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_tree_with_locked_directories_is_removed() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("scratch");
        {
            let scratch = Scratch::create(path.clone()).unwrap();
            let locked = scratch.path().join("a/b");
            fs::create_dir_all(&locked).unwrap();
            fs::write(locked.join("f"), "x").unwrap();
            fs::set_permissions(locked.join("f"), fs::Permissions::from_mode(0o000)).unwrap();
            std::os::unix::fs::symlink("/etc", locked.join("l")).unwrap();
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
            fs::set_permissions(scratch.path().join("a"), fs::Permissions::from_mode(0o500))
                .unwrap();
        }
        assert!(!path.exists());
        assert!(Path::new("/etc").is_dir());
    }
}
