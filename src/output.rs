//! Atomic outputs: everything is written under a temporary name beside the
//! target and renamed into place only when complete. On error the temporary
//! file or directory is removed when it is dropped, so no partial output is
//! ever left behind. A signal that ends the process (SIGINT, SIGTERM,
//! SIGHUP) runs no destructor, so every temporary name is also recorded
//! while it exists, and [`remove_partials_on_signals`] removes them before
//! the process exits.

use std::fs::{self, File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use tempfile::{NamedTempFile, TempDir};

/// The temporary files and directories of outputs not yet committed.
static PARTIALS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn partials() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    PARTIALS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary path recorded in [`PARTIALS`] while this lives.
struct Recorded(PathBuf);

impl Recorded {
    fn new(path: &Path) -> Recorded {
        partials().insert(path.to_owned());
        Recorded(path.to_owned())
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        partials().remove(&self.0);
    }
}

/// Starts a thread that, on SIGINT, SIGTERM or SIGHUP, removes every
/// temporary output there is and exits with 128 + the signal's number,
/// as the shell reports a process the signal ended.
pub fn remove_partials_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("setting up signal handling")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held until the exit: no new temporary output starts.
            let pending = partials();
            for path in pending.iter() {
                let _ = match fs::symlink_metadata(path) {
                    Ok(md) if md.is_dir() => fs::remove_dir_all(path),
                    Ok(_) => fs::remove_file(path),
                    Err(_) => Ok(()),
                };
            }
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

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
    _recorded: Recorded,
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
            _recorded: Recorded::new(tmp.path()),
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
    _recorded: Recorded,
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
            _recorded: Recorded::new(tmp.path()),
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
pub fn scratch_beside(target: &Path) -> Result<ScratchDir> {
    let parent = parent_of(target)?;
    let dir = tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    Ok(ScratchDir {
        _recorded: Recorded::new(dir.path()),
        dir,
    })
}

/// A scratch directory of [`scratch_beside`].
pub struct ScratchDir {
    dir: TempDir,
    _recorded: Recorded,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
