//! Readers that stand between a hostile layer and the tar parser: one
//! that stops decompression at the [`Limits`], one that refuses long-name
//! and PAX headers too large to hold, and one that copies what is read.

use std::io::{self, Read, Write};

use super::scan::{Limits, MAX_LAYER_BYTES_VAR};

/// Counts decompressed bytes and stops at the limits.
pub(super) struct Bounded<R> {
    pub(super) inner: R,
    pub(super) read: u64,
    pub(super) compressed_size: Option<u64>,
    pub(super) limits: Limits,
    pub(super) tripped: Option<String>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limits.max_layer_bytes {
            self.tripped = Some(format!(
                "expands to more than {} bytes (the limit; set {MAX_LAYER_BYTES_VAR} to change it)",
                self.limits.max_layer_bytes
            ));
        } else if let Some(c) = self.compressed_size
            && self.read > self.limits.ratio_floor
            && self.read / c.max(1) > self.limits.max_ratio
        {
            self.tripped = Some(format!(
                "expands from {c} bytes to more than {} bytes, over {} times its compressed size: a compression bomb",
                self.read, self.limits.max_ratio
            ));
        }
        if self.tripped.is_some() {
            return Err(io::Error::other("decompression limit"));
        }
        Ok(n)
    }
}

/// Largest data of a GNU long name or long link entry, or of a PAX
/// header: the `tar` crate reads these into memory whole, so a header
/// claiming gigabytes would be held in memory.
pub const MAX_HEADER_DATA: u64 = 1 << 20;

/// Follows the tar stream header by header, as the `tar` crate reads it
/// (block 0, then past each entry's data, a PAX `size` applied to the
/// entry it describes), and fails the read of a GNU long name or link or
/// PAX header whose data is over [`MAX_HEADER_DATA`], before the crate
/// reads that data into memory. It stops following at the end of the
/// archive, and at anything the crate itself refuses or that it does not
/// model (a bad checksum, a bad size, a GNU sparse entry, which the scan
/// refuses).
pub(super) struct HeaderGuard<R> {
    pub(super) inner: R,
    pub(super) pos: u64,
    pub(super) next_header: u64,
    pub(super) header: Vec<u8>,
    /// The data of a PAX header being read, and where it ends.
    pub(super) capture: Option<(Vec<u8>, u64)>,
    /// A complete PAX header for the next entry.
    pub(super) pending_pax: Option<Vec<u8>>,
    pub(super) done: bool,
}

impl<R> HeaderGuard<R> {
    pub(super) fn new(inner: R) -> Self {
        HeaderGuard {
            inner,
            pos: 0,
            next_header: 0,
            header: Vec::with_capacity(512),
            capture: None,
            pending_pax: None,
            done: false,
        }
    }

    /// Follows `data`, the next bytes of the stream.
    fn observe(&mut self, mut data: &[u8]) -> std::result::Result<(), String> {
        while !data.is_empty() && !self.done {
            if self.pos < self.next_header {
                let n = ((self.next_header - self.pos).min(data.len() as u64)) as usize;
                if let Some((buf, end)) = &mut self.capture {
                    let want = (end.saturating_sub(self.pos) as usize).min(n);
                    buf.extend_from_slice(&data[..want]);
                    if self.pos + want as u64 >= *end {
                        self.pending_pax = self.capture.take().map(|(b, _)| b);
                    }
                }
                self.pos += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.header.len() == 512 {
                let block = std::mem::take(&mut self.header);
                self.on_header(&block)?;
                self.header = block;
                self.header.clear();
            }
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    fn on_header(&mut self, block: &[u8]) -> std::result::Result<(), String> {
        if block.iter().all(|&b| b == 0) {
            self.done = true;
            return Ok(());
        }
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(block);
        let sum = block[..148]
            .iter()
            .chain(&block[156..])
            .map(|&b| u32::from(b))
            .sum::<u32>()
            + 8 * 32;
        let ty = h.entry_type();
        let Ok(mut size) = h.entry_size() else {
            self.done = true;
            return Ok(());
        };
        if h.cksum().ok() != Some(sum) || ty.is_gnu_sparse() {
            self.done = true;
            return Ok(());
        }
        let recognised = h.as_gnu().is_some() || h.as_ustar().is_some();
        let held = recognised
            && (ty.is_gnu_longname() || ty.is_gnu_longlink() || ty.is_pax_local_extensions());
        let extension = ty.is_gnu_longname()
            || ty.is_gnu_longlink()
            || ty.is_pax_local_extensions()
            || ty.is_pax_global_extensions();
        if !held {
            // This entry is the one the extensions describe.
            if let Some(pax) = self.pending_pax.take()
                && !extension
                && let Some(s) = pax_size(&pax)
            {
                size = s;
            }
        }
        if held && size > MAX_HEADER_DATA {
            let kind = if ty.is_gnu_longname() {
                "a GNU long name"
            } else if ty.is_gnu_longlink() {
                "a GNU long link"
            } else {
                "a PAX header"
            };
            return Err(format!(
                "{kind} of {size} bytes, over the {MAX_HEADER_DATA} allowed"
            ));
        }
        let data_start = self.pos;
        if held && ty.is_pax_local_extensions() {
            if size == 0 {
                self.pending_pax = Some(Vec::new());
            } else {
                self.capture = Some((Vec::with_capacity(size as usize), data_start + size));
            }
        }
        match size
            .checked_add(511)
            .and_then(|s| data_start.checked_add(s & !511))
        {
            Some(next) => self.next_header = next,
            None => self.done = true,
        }
        Ok(())
    }
}

/// The `size` record of PAX data, as the `tar` crate reads it.
fn pax_size(pax: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(pax) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// Copies what is read to a writer (the layer's tar, kept for later).
pub(super) struct Tee<R, W> {
    pub(super) inner: R,
    pub(super) copy: Option<W>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = &mut self.copy {
            w.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}
