//! Writes planned layers, and the outer archives (docker-archive,
//! oci-archive) that carry them, through the one header encoder.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};

use anyhow::{Context as _, Result, bail};
use rustix::fs::{Mode, OFlags};

use super::Owner;
use super::header::{self, BLOCK, Header};
use super::plan::{Fingerprint, LayerPlan, LayerSettings};
use crate::entry::EntryKind;

const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];

/// Size of the buffers file contents are read into.
const COPY_BUFFER: usize = 256 * 1024;

/// Chunks read ahead of the writer; bounds the memory a layer takes.
const READ_AHEAD: usize = 8;

/// What the reading thread hands the writer: the data of the plan's files
/// one after the other, in buffers filled across files (so that a small
/// file costs no message of its own), then `End`, or the error that
/// stopped it.
enum Chunk {
    Data(Vec<u8>, usize),
    End,
    Failed(anyhow::Error),
}

/// Writes a layer's tar. The number of bytes written is exactly
/// `plan.size`; an entry that changed since it was planned is an error.
///
/// Files are read on a second thread, a few buffers ahead, so reading
/// (system time) overlaps with hashing and compressing (user time) in the
/// writer; the bytes are the same as a sequential copy. Both threads go
/// through the plan's entries (see [`LayerPlan::each_entry`]): the reader
/// checks that each file holds exactly its planned size, and the writer
/// takes that many bytes of the data for each entry.
pub fn write_layer(ctx: &LayerSettings, plan: &LayerPlan, w: &mut impl Write) -> Result<()> {
    let mut written = 0;
    let mut fingerprint = Fingerprint::default();
    let changed = || {
        anyhow::anyhow!(
            "the store changed while the layer was written: its entries are not the ones planned"
        )
    };
    std::thread::scope(|scope| {
        let (chunks, from_reader) = mpsc::sync_channel(READ_AHEAD);
        let (recycle, spare) = mpsc::channel();
        scope.spawn(move || read_files(plan, chunks, spare));
        let next = || match from_reader.recv() {
            Ok(Chunk::Data(buf, n)) => Ok(Some((buf, n))),
            Ok(Chunk::End) => Ok(None),
            Ok(Chunk::Failed(err)) => Err(err),
            Err(_) => bail!("the file reader stopped unexpectedly"),
        };
        // The buffer being taken from, and how far.
        let mut data: Option<(Vec<u8>, usize)> = None;
        let mut at = 0;
        plan.each_entry(|entry| {
            fingerprint.add(&entry);
            let owner = ctx.owner(entry.role);
            let head = header::encode(&ctx.header(&entry, &owner));
            w.write_all(&head).context("writing layer")?;
            written += head.len() as u64;
            if entry.source.is_none() {
                return Ok(());
            }
            let mut left = entry.size;
            while left > 0 {
                let (buf, n) = match &data {
                    Some(d) => d,
                    None => {
                        at = 0;
                        data.insert(next()?.ok_or_else(changed)?)
                    }
                };
                let take = (left as usize).min(n - at);
                w.write_all(&buf[at..at + take]).context("writing layer")?;
                at += take;
                left -= take as u64;
                if at == *n {
                    let _ = recycle.send(data.take().expect("a buffer is being taken from").0);
                }
            }
            pad(w, entry.size)?;
            written += header::padded(entry.size);
            Ok(())
        })?;
        // Data left over, or more to come: the reader read other files.
        if data.is_some() || next()?.is_some() {
            return Err(changed());
        }
        w.write_all(&[0; 2 * BLOCK as usize])
            .context("writing layer")?;
        written += 2 * BLOCK;
        Ok::<_, anyhow::Error>(())
    })?;
    if written != plan.size || fingerprint.value() != plan.fingerprint {
        return Err(changed());
    }
    Ok(())
}

/// Reads every file of the plan in order and sends their bytes, in full
/// buffers but for the last.
fn read_files(plan: &LayerPlan, chunks: SyncSender<Chunk>, spare: Receiver<Vec<u8>>) {
    let mut filling = Filling {
        buf: vec![0; COPY_BUFFER],
        filled: 0,
        chunks: &chunks,
        spare,
    };
    let mut dir = Parent::default();
    let result = plan
        .each_entry(|entry| match &entry.source {
            Some(source) => read_file(dir.open(source)?, source, entry.size, &mut filling),
            None => Ok(()),
        })
        .and_then(|()| filling.flush())
        .and_then(|()| send(&chunks, Chunk::End));
    if let Err(err) = result {
        // Sent in vain when the writer has stopped: its error is the one
        // reported.
        let _ = chunks.send(Chunk::Failed(err));
    }
}

/// The buffer the reader fills, and where it goes when full.
struct Filling<'a> {
    buf: Vec<u8>,
    filled: usize,
    chunks: &'a SyncSender<Chunk>,
    spare: Receiver<Vec<u8>>,
}

impl Filling<'_> {
    /// Sends what the buffer holds, and takes an empty one.
    fn flush(&mut self) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let fresh = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| vec![0; COPY_BUFFER]);
        let full = std::mem::replace(&mut self.buf, fresh);
        send(self.chunks, Chunk::Data(full, self.filled))?;
        self.filled = 0;
        Ok(())
    }
}

/// The directory of the file opened last, held open: the files of a
/// directory are opened relative to it, so the kernel walks each file's
/// path once per directory and not once per file (a tenth of a stream of
/// small files went into those walks).
#[derive(Default)]
struct Parent {
    dir: Option<(PathBuf, rustix::fd::OwnedFd)>,
}

impl Parent {
    /// Opens `path` for reading, as `File::open` does.
    fn open(&mut self, path: &Path) -> Result<File> {
        let failed =
            |e: io::Error| anyhow::Error::new(e).context(format!("reading {}", path.display()));
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return File::open(path).map_err(failed);
        };
        let held = match &self.dir {
            Some((p, fd)) if p == parent => fd,
            _ => {
                let fd = rustix::fs::open(
                    parent,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| failed(e.into()))?;
                &self.dir.insert((parent.to_owned(), fd)).1
            }
        };
        let fd = rustix::fs::openat(held, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| failed(e.into()))?;
        Ok(File::from(fd))
    }
}

/// Sends to the writer; fails when it has stopped, which ends the walk.
fn send(chunks: &SyncSender<Chunk>, chunk: Chunk) -> Result<()> {
    chunks
        .send(chunk)
        .map_err(|_| anyhow::anyhow!("the layer writer stopped"))
}

/// Reads exactly `size` bytes of `file`, opened at `path`, into the
/// buffers, failing if the file holds more or fewer.
///
/// Where the buffer has room, the last read asks for one byte more than is
/// left: a file that grew fills it, and one that did not comes back short,
/// which for a regular file is its end. So a small file costs one read,
/// not a second one to find the end.
fn read_file(mut file: File, path: &Path, size: u64, filling: &mut Filling) -> Result<()> {
    let mut left = size;
    while left > 0 {
        if filling.filled == filling.buf.len() {
            filling.flush()?;
        }
        let room = &mut filling.buf[filling.filled..];
        let last = (left as usize) < room.len();
        let want = if last { left as usize + 1 } else { room.len() };
        let n = read_some(&mut file, &mut room[..want])
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            bail!("{} shrank while it was being read", path.display());
        }
        if n as u64 > left {
            bail!("{} grew while it was being read", path.display());
        }
        filling.filled += n;
        left -= n as u64;
        if last && left == 0 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::LayerSource;
    use crate::archive::plan::plan_layer;

    /// A store of one path with two files, and the settings of its layer.
    fn store() -> (tempfile::TempDir, LayerSettings, LayerSource) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aaaa-app");
        std::fs::create_dir_all(path.join("bin")).unwrap();
        std::fs::write(path.join("bin/app"), b"#!/bin/sh\n").unwrap();
        std::fs::write(path.join("data"), vec![7u8; 300_000]).unwrap();
        let ctx = LayerSettings {
            store_dir: dir.path().to_owned(),
            mtime: 1,
            store_owner: Owner::root(),
        };
        let source = LayerSource {
            store_paths: vec![path],
            ..LayerSource::default()
        };
        (dir, ctx, source)
    }

    #[test]
    fn a_layer_is_as_long_as_planned_and_tar_reads_it() {
        let (_dir, ctx, source) = store();
        let plan = plan_layer(&ctx, &source).unwrap();
        let mut out = Vec::new();
        write_layer(&ctx, &plan, &mut out).unwrap();
        assert_eq!(out.len() as u64, plan.size);
        let mut names = Vec::new();
        for entry in tar::Archive::new(&out[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            if let Some(file) = ["bin/app", "data"].iter().find(|f| name.ends_with(*f)) {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                let want = std::fs::read(source.store_paths[0].join(file)).unwrap();
                assert!(data == want, "the data of {name}");
            }
            names.push(name);
        }
        let store = ctx
            .store_dir
            .strip_prefix("/")
            .unwrap()
            .display()
            .to_string();
        assert_eq!(
            names
                .iter()
                .skip_while(|n| !n.contains("aaaa-app"))
                .cloned()
                .collect::<Vec<_>>(),
            [
                "aaaa-app/",
                "aaaa-app/bin/",
                "aaaa-app/bin/app",
                "aaaa-app/data"
            ]
            .map(|n| format!("{store}/{n}"))
        );
    }

    #[test]
    fn a_store_path_that_changes_after_planning_is_an_error() {
        let (_dir, ctx, source) = store();
        let plan = plan_layer(&ctx, &source).unwrap();
        std::fs::write(source.store_paths[0].join("new"), b"").unwrap();
        let err = write_layer(&ctx, &plan, &mut Vec::new()).unwrap_err();
        assert!(
            format!("{err:#}").contains("not the ones planned"),
            "{err:#}"
        );

        let (_dir, ctx, source) = store();
        let plan = plan_layer(&ctx, &source).unwrap();
        std::fs::write(source.store_paths[0].join("data"), vec![7u8; 300_001]).unwrap();
        let err = write_layer(&ctx, &plan, &mut Vec::new()).unwrap_err();
        assert!(
            format!("{err:#}").contains("not the ones planned"),
            "{err:#}"
        );
    }

    /// The reader takes exactly the planned size of each file, one after
    /// the other in its buffers, and refuses a file of another size.
    #[test]
    fn files_are_read_back_to_back_at_their_planned_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, vec![1u8; COPY_BUFFER - 3]).unwrap();
        std::fs::write(&b, vec![2u8; 10]).unwrap();
        let (chunks, from_reader) = mpsc::sync_channel(READ_AHEAD);
        let (_recycle, spare) = mpsc::channel();
        let mut filling = Filling {
            buf: vec![0; COPY_BUFFER],
            filled: 0,
            chunks: &chunks,
            spare,
        };
        let mut dir = Parent::default();
        read_file(
            dir.open(&a).unwrap(),
            &a,
            COPY_BUFFER as u64 - 3,
            &mut filling,
        )
        .unwrap();
        read_file(dir.open(&b).unwrap(), &b, 10, &mut filling).unwrap();
        filling.flush().unwrap();
        let mut got = Vec::new();
        while let Ok(Chunk::Data(buf, n)) = from_reader.try_recv() {
            got.extend_from_slice(&buf[..n]);
        }
        let mut want = vec![1u8; COPY_BUFFER - 3];
        want.extend_from_slice(&[2u8; 10]);
        assert!(got == want, "{} bytes read", got.len());

        let err = read_file(dir.open(&b).unwrap(), &b, 9, &mut filling).unwrap_err();
        assert!(format!("{err:#}").contains("grew"), "{err:#}");
        let err = read_file(dir.open(&b).unwrap(), &b, 11, &mut filling).unwrap_err();
        assert!(format!("{err:#}").contains("shrank"), "{err:#}");
    }
}
