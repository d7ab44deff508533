//! Writes planned layers, and the outer archives (docker-archive,
//! oci-archive) that carry them, through the one header encoder.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};

use anyhow::{Context as _, Result, bail};

use super::Owner;
use super::header::{self, BLOCK, Header};
use super::plan::{LayerPlan, LayerSettings};
use crate::entry::EntryKind;

const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];

/// Size of the buffers file contents are read into.
const COPY_BUFFER: usize = 256 * 1024;

/// Chunks read ahead of the writer; bounds the memory a layer takes.
const READ_AHEAD: usize = 8;

/// What the reading thread hands the writer, file by file: the file's
/// bytes in chunks, then `Done`, or the error that stopped it.
enum Chunk {
    Data(Vec<u8>, usize),
    Done,
    Failed(anyhow::Error),
}

/// Writes a layer's tar. The number of bytes written is exactly
/// `plan.size`; a file that changed size since it was planned is an error.
///
/// Files are read on a second thread, a few chunks ahead, so reading
/// (system time) overlaps with hashing and compressing (user time) in the
/// writer; the bytes are the same as a sequential copy.
pub fn write_layer(ctx: &LayerSettings, plan: &LayerPlan, w: &mut impl Write) -> Result<()> {
    std::thread::scope(|scope| {
        let (chunks, from_reader) = mpsc::sync_channel(READ_AHEAD);
        let (recycle, spare) = mpsc::channel();
        scope.spawn(move || read_files(plan, chunks, spare));
        for entry in &plan.entries {
            let owner = ctx.owner(entry.role);
            w.write_all(&header::encode(&ctx.header(entry, &owner)))
                .context("writing layer")?;
            if entry.source.is_none() {
                continue;
            }
            let mut left = entry.size;
            loop {
                match from_reader.recv() {
                    Ok(Chunk::Data(buf, n)) => {
                        // The reader never sends more than the planned size.
                        left -= n as u64;
                        w.write_all(&buf[..n]).context("writing layer")?;
                        let _ = recycle.send(buf);
                    }
                    Ok(Chunk::Done) => break,
                    Ok(Chunk::Failed(err)) => return Err(err),
                    Err(_) => bail!("the file reader stopped unexpectedly"),
                }
            }
            debug_assert_eq!(left, 0);
            pad(w, entry.size)?;
        }
        w.write_all(&[0; 2 * BLOCK as usize])
            .context("writing layer")?;
        Ok(())
    })
}

/// Reads every file of the plan in order and sends its bytes.
fn read_files(plan: &LayerPlan, chunks: SyncSender<Chunk>, spare: Receiver<Vec<u8>>) {
    for entry in &plan.entries {
        let Some(source) = &entry.source else {
            continue;
        };
        let result = read_file(source, entry.size, &chunks, &spare);
        let last = match result {
            Ok(()) => Chunk::Done,
            Err(err) => Chunk::Failed(err),
        };
        let failed = matches!(last, Chunk::Failed(_));
        if chunks.send(last).is_err() || failed {
            return;
        }
    }
}

/// Sends exactly `size` bytes of `path`, failing if the file holds more or
/// fewer.
fn read_file(
    path: &Path,
    size: u64,
    chunks: &SyncSender<Chunk>,
    spare: &Receiver<Vec<u8>>,
) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut left = size;
    while left > 0 {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0; COPY_BUFFER]);
        let want = (left as usize).min(buf.len());
        let n = read_some(&mut file, &mut buf[..want])
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            bail!("{} shrank while it was being read", path.display());
        }
        left -= n as u64;
        if chunks.send(Chunk::Data(buf, n)).is_err() {
            // The writer has stopped; its error is the one reported.
            return Ok(());
        }
    }
    let mut probe = [0u8; 1];
    if read_some(&mut file, &mut probe).with_context(|| format!("reading {}", path.display()))? != 0
    {
        bail!("{} grew while it was being read", path.display());
    }
    Ok(())
}

fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Copies exactly `size` bytes of `path` to `w` (blobs into outer archives).
fn copy_exact(path: &Path, size: u64, w: &mut impl Write) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let copied = io::copy(&mut (&mut file).take(size), w)
        .with_context(|| format!("copying {}", path.display()))?;
    if copied != size {
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

    fn header(&mut self, name: &str, kind: EntryKind, mode: u32, size: u64) -> Result<()> {
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
        self.header(name, EntryKind::Dir, 0o755, 0)
    }

    /// A whole file from memory.
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.header(name, EntryKind::File, 0o644, bytes.len() as u64)?;
        self.w
            .write_all(bytes)
            .with_context(|| format!("writing archive entry {name}"))?;
        pad(&mut self.w, bytes.len() as u64)
    }

    /// A file whose `size` bytes the caller writes to [`TarOut::inner`],
    /// then closes with [`TarOut::end_file`].
    pub fn begin_file(&mut self, name: &str, size: u64) -> Result<()> {
        self.header(name, EntryKind::File, 0o644, size)
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
        copy_exact(path, size, &mut self.w)?;
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
