//! Atomic outputs: everything is written under a temporary name beside the
//! target and renamed into place only when complete. On error the temporary
//! file or directory is removed when it is dropped, so no partial output is
//! ever left behind.

use std::fs::{self, File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tempfile::{NamedTempFile, TempDir};

/// The directory an output is written in; it must exist.
fn parent_of(target: &Path) -> Result<PathBuf> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!(
            "output {}: directory {} does not exist",
            target.display(),
            parent.display()
        );
    }
    if target.file_name().is_none() {
        bail!("output {}: not a file name", target.display());
    }
    Ok(parent)
}

/// An existing output target is replaced only when it is a regular file
/// of this user's: a device (`/dev/null`), a fifo, a socket, a symlink
/// (to whatever it names) or another user's file is refused, never
/// replaced by the rename.
fn check_replaceable(target: &Path) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = match fs::symlink_metadata(target) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("output {}", target.display())),
    };
    let ft = md.file_type();
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a fifo"
    } else if ft.is_socket() {
        "a socket"
    } else {
        // SAFETY: no arguments.
        let uid = unsafe { libc::geteuid() };
        if md.uid() == uid {
            return Ok(());
        }
        bail!(
            "output {} is a file of uid {}, not this user's; remove it or choose another path",
            target.display(),
            md.uid()
        );
    };
    bail!(
        "output {} is {what}, which is not replaced; remove it or choose another path",
        target.display()
    )
}

fn temp_prefix(target: &Path) -> String {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.partial-")
}

/// A file that appears at its target only when committed.
pub struct AtomicFile {
    tmp: NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let parent = parent_of(target)?;
        check_replaceable(target)?;
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(target))
            .tempfile_in(&parent)
            .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
        Ok(AtomicFile {
            tmp,
            target: target.to_owned(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Makes the file readable by all and renames it onto the target.
    pub fn commit(self) -> Result<()> {
        self.tmp
            .as_file()
            .set_permissions(Permissions::from_mode(0o644))
            .with_context(|| format!("writing {}", self.target.display()))?;
        self.tmp
            .persist(&self.target)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming output into {}", self.target.display()))?;
        Ok(())
    }
}

/// A directory that appears at its target only when committed. The target
/// must not exist yet.
pub struct AtomicDir {
    tmp: TempDir,
    target: PathBuf,
}

impl AtomicDir {
    pub fn create(target: &Path) -> Result<AtomicDir> {
        let parent = parent_of(target)?;
        if fs::symlink_metadata(target).is_ok() {
            bail!(
                "output {} already exists; remove it or choose another path",
                target.display()
            );
        }
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(target))
            .tempdir_in(&parent)
            .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
        Ok(AtomicDir {
            tmp,
            target: target.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the directory onto the target, readable by all.
    pub fn commit(self) -> Result<()> {
        fs::set_permissions(self.tmp.path(), Permissions::from_mode(0o755))
            .with_context(|| format!("writing {}", self.target.display()))?;
        let tmp = self.tmp.keep();
        fs::rename(&tmp, &self.target)
            .inspect_err(|_| {
                let _ = fs::remove_dir_all(&tmp);
            })
            .with_context(|| format!("renaming output into {}", self.target.display()))?;
        Ok(())
    }
}

/// A scratch directory beside `target` for blobs that are copied into an
/// archive; removed when dropped.
pub fn scratch_beside(target: &Path) -> Result<TempDir> {
    let parent = parent_of(target)?;
    tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}
