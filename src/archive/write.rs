//! Writes planned layers, and the outer archives (docker-archive,
//! oci-archive) that carry them, through the one header encoder.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::Owner;
use super::header::{self, BLOCK, Header, Kind};
use super::plan::{LayerPlan, LayerSettings, Role};

const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];

/// Size of the buffer file contents are copied through.
const COPY_BUFFER: usize = 256 * 1024;

/// Writes a layer's tar. The number of bytes written is exactly
/// `plan.size`; a file that changed size since it was planned is an error.
pub fn write_layer(ctx: &LayerSettings, plan: &LayerPlan, w: &mut impl Write) -> Result<()> {
    let owners = [ctx.owner(Role::Store), ctx.owner(Role::Root)];
    let mut buf = vec![0u8; COPY_BUFFER];
    for entry in &plan.entries {
        let owner = &owners[(entry.role == Role::Root) as usize];
        w.write_all(&header::encode(&ctx.header(entry, owner)))
            .context("writing layer")?;
        if let Some(source) = &entry.source {
            copy_exact(source, entry.size, &mut buf, w)?;
            pad(w, entry.size)?;
        }
    }
    w.write_all(&[0; 2 * BLOCK as usize])
        .context("writing layer")?;
    Ok(())
}

/// Copies exactly `size` bytes of `path` to `w`.
fn copy_exact(path: &Path, size: u64, buf: &mut [u8], w: &mut impl Write) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut left = size;
    loop {
        let n = match file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if n == 0 {
            break;
        }
        if n as u64 > left {
            bail!("{} grew while it was being read", path.display());
        }
        w.write_all(&buf[..n]).context("writing layer")?;
        left -= n as u64;
    }
    if left != 0 {
        bail!("{} shrank while it was being read", path.display());
    }
    Ok(())
}

/// Pads an entry's data of `size` bytes to whole blocks.
fn pad(w: &mut impl Write, size: u64) -> Result<()> {
    let fill = (header::padded(size) - size) as usize;
    w.write_all(&ZEROS[..fill]).context("writing padding")?;
    Ok(())
}

/// An outer archive (docker-archive, oci-archive): regular files owned by
/// root, mode 0644, with the image's mtime.
pub struct TarOut<W: Write> {
    w: W,
    mtime: u64,
    root: Owner,
}

impl<W: Write> TarOut<W> {
    pub fn new(w: W, mtime: u64) -> Self {
        TarOut {
            w,
            mtime,
            root: Owner::root(),
        }
    }

    fn header(&mut self, name: &str, kind: Kind, mode: u32, size: u64) -> Result<()> {
        let h = Header {
            name: name.as_bytes(),
            kind,
            mode,
            size,
            link: b"",
            mtime: self.mtime,
            owner: &self.root,
        };
        self.w
            .write_all(&header::encode(&h))
            .with_context(|| format!("writing archive entry {name}"))
    }

    /// A directory entry (`name` ends in `/`).
    pub fn dir(&mut self, name: &str) -> Result<()> {
        self.header(name, Kind::Dir, 0o755, 0)
    }

    /// A whole file from memory.
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.header(name, Kind::File, 0o644, bytes.len() as u64)?;
        self.w
            .write_all(bytes)
            .with_context(|| format!("writing archive entry {name}"))?;
        pad(&mut self.w, bytes.len() as u64)
    }

    /// A file whose `size` bytes the caller writes to [`TarOut::inner`],
    /// then closes with [`TarOut::end_file`].
    pub fn begin_file(&mut self, name: &str, size: u64) -> Result<()> {
        self.header(name, Kind::File, 0o644, size)
    }

    pub fn end_file(&mut self, size: u64) -> Result<()> {
        pad(&mut self.w, size)
    }

    /// A file copied from disk.
    pub fn file_from(&mut self, name: &str, path: &Path) -> Result<()> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        self.begin_file(name, size)?;
        let mut buf = vec![0u8; COPY_BUFFER];
        copy_exact(path, size, &mut buf, &mut self.w)?;
        self.end_file(size)
    }

    pub fn inner(&mut self) -> &mut W {
        &mut self.w
    }

    /// Writes the end-of-archive blocks and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.w
            .write_all(&[0; 2 * BLOCK as usize])
            .context("writing end of archive")?;
        self.w.flush().context("flushing archive")?;
        Ok(self.w)
    }
}
