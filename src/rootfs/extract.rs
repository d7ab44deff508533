//! A base image's file system ([`crate::base::View`], its layers with
//! whiteouts applied) written into a directory, as the root `runAsRoot`
//! starts from.
//!
//! Owners are set only when the helper maps ids one to one
//! ([`IdMapping::Identity`]); a build user cannot give files away, so
//! there everything is its own, which its namespace shows as root's, and
//! the owners it could not give are returned, for the chown supervisor to
//! start with ([`super::chown::BaseOwner`]).
//! For the same reason device nodes are made only by a privileged helper,
//! and directories stay writable by the build user, who joins `contents`
//! into them from outside the namespace.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

use super::userns::IdMapping;
use crate::base::{Base, EntryKind};

/// Writes every entry of `base` into the empty directory `root`. Returns
/// the owners other than root's that were not given, by path relative to
/// the root: none in the identity mapping.
pub fn extract(
    base: &Base,
    root: &Path,
    mapping: IdMapping,
) -> Result<BTreeMap<String, (u32, u32)>> {
    let privileged = mapping == IdMapping::Identity;
    let mut not_given = BTreeMap::new();
    // Directory modes go last, deepest first, so that a read-only
    // directory is still filled.
    let mut dir_modes = Vec::new();
    for (rel, entry) in base.view.iter() {
        let path = root.join(OsStr::from_bytes(&rel));
        let what = || {
            format!(
                "fromImage {}: extracting /{}",
                base.path.display(),
                String::from_utf8_lossy(&rel)
            )
        };
        // Layers may leave out parent directories; the view never has an
        // entry below a symlink, so creating them follows none.
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            fs::create_dir_all(parent).with_context(what)?;
        }
        match &entry.kind {
            EntryKind::Dir => {
                fs::create_dir(&path)
                    .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o700)))
                    .with_context(what)?;
                let mode = if privileged {
                    entry.mode
                } else {
                    entry.mode | 0o700
                };
                dir_modes.push((path.clone(), mode));
            }
            EntryKind::File => {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(what)?;
                std::io::copy(&mut base.open_file(entry)?, &mut file).with_context(what)?;
            }
            EntryKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&entry.link), &path)
                    .with_context(what)?;
            }
            EntryKind::Fifo => make_node(&path, libc::S_IFIFO, 0).with_context(what)?,
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                if !privileged {
                    // A build user cannot make one; the script goes without.
                    continue;
                }
                let kind = if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                make_node(&path, kind, libc::makedev(*major, *minor)).with_context(what)?;
            }
        }
        let owner = (id(entry.uid)?, id(entry.gid)?);
        if privileged {
            std::os::unix::fs::lchown(&path, Some(owner.0), Some(owner.1)).with_context(what)?;
        } else if owner != (0, 0)
            && let Ok(rel) = String::from_utf8(rel.to_vec())
        {
            not_given.insert(rel, owner);
        }
        // After the owner: a chown clears setuid and setgid.
        if !matches!(entry.kind, EntryKind::Dir | EntryKind::Symlink) {
            fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
                .with_context(what)?;
        }
    }
    for (path, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(not_given)
}

fn id(n: u64) -> Result<u32> {
    u32::try_from(n).map_err(|_| anyhow::anyhow!("owner id {n} is out of range"))
}

fn make_node(path: &Path, kind: libc::mode_t, dev: libc::dev_t) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a C string owned here.
    if unsafe { libc::mknod(c.as_ptr(), kind | 0o600, dev) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
