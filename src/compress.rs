//! Layer compression with fixed settings, so the same tar always gives the
//! same blob, and the one decoder of what others compressed.
//!
//! - gzip: level 6 (as `gzip` and `pigz`), a header with no file name, no
//!   time (0) and the "unknown" OS byte, through flate2's zlib-rs backend.
//!   The stream is cut into blocks of a fixed size, each deflated on its
//!   own with the 32 KiB before it as dictionary and ended with a sync
//!   flush, as pigz does: blocks are compressed on every core (also those
//!   of one large layer), and the bytes are the same for any number of
//!   threads because only the cut, never the scheduling, decides them.
//!   flate2 has no such writer, and the crates that do (gzp) bring a thread
//!   pool of their own; this one uses [`crate::pool::Ordered`].
//! - zstd: level 3 in zstd's multi-threaded mode. That mode gives the same
//!   bytes for every worker count of one or more (its single-threaded mode
//!   gives other bytes), so the output never depends on the machine, and a
//!   layer compressed alone still uses several cores.

use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;

use zstd::zstd_safe::CParameter;

use crate::pool::{Ordered, default_jobs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_LEVEL: u32 = 6;
/// Bytes of input per gzip block (pigz's default): small enough to spread
/// one layer over every core, large enough that the sync flush and the
/// dictionary cost under 0.1% in size.
const GZIP_BLOCK: usize = 128 * 1024;
/// The window of deflate: how much of the block before each block sees.
const GZIP_DICTIONARY: usize = 32 * 1024;
/// A final deflate block with no data (fixed codes, end of block), which
/// ends the stream after the sync-flushed blocks.
const DEFLATE_EMPTY_FINAL_BLOCK: [u8; 2] = [0x03, 0x00];
const ZSTD_LEVEL: i32 = 3;
/// Bytes per zstd job, and how much of the previous job each job sees
/// (2^(9-8) = half a window). zstd's default at level 3 (8 MiB jobs, an
/// eighth of a window) keeps about 40 MiB per stream in flight; these keep
/// about 20 MiB at nearly the same speed and a ratio as good or better
/// (zstd CLI `-3 -T1 -B3MiB --zstd=ovlog=8` on the benchmark's Python
/// layer: 69.5 MB against 69.8 MB by default), so two layers compress at
/// once within the memory budget.
const ZSTD_JOB_SIZE: u32 = 3 << 20;
const ZSTD_OVERLAP_LOG: u32 = 8;
/// OS byte of the gzip header: "unknown", so no host shows through.
const GZIP_OS_UNKNOWN: u8 = 255;

impl Compression {
    /// The compression a blob's first bytes (up to four) show; anything
    /// that is neither gzip nor zstd is taken as uncompressed.
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// Reads `r` decompressed: gzip members one after the other, as
    /// `gzip -d` does, or a zstd stream.
    pub fn decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(BufReader::new(r))?)
            }
        })
    }

    /// What decides this compression's bytes, for keys of caches: a
    /// change of any setting above changes it.
    pub fn encoding(self) -> String {
        match self {
            Compression::None => "none".to_string(),
            Compression::Gzip => {
                format!("gzip-{GZIP_LEVEL}-blocks-{GZIP_BLOCK}-dictionary-{GZIP_DICTIONARY}")
            }
            Compression::Zstd => format!(
                "zstd-{ZSTD_LEVEL}-mt-job-{ZSTD_JOB_SIZE}-overlap-{ZSTD_OVERLAP_LOG}-checksum"
            ),
        }
    }

    /// Wraps `w` in this compression, for one of `streams` layers
    /// compressed at once. Each stream gets its share of the cores, and at
    /// least two threads where there are two cores, so that a large layer
    /// left alone at the end of an image still keeps every core busy.
    pub fn encoder<W: Write>(self, w: W, streams: usize) -> io::Result<Encoder<W>> {
        let cores = default_jobs();
        let threads = cores.div_ceil(streams.max(1)).clamp(2.min(cores), cores);
        Ok(match self {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(GzipBlocks::new(w, threads)),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
                e.multithread(threads as u32)?;
                e.set_parameter(CParameter::JobSize(ZSTD_JOB_SIZE))?;
                e.set_parameter(CParameter::OverlapSizeLog(ZSTD_OVERLAP_LOG))?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
        })
    }
}

/// A compressing writer; [`Encoder::finish`] ends the stream.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(GzipBlocks<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// One gzip member written as independently deflated blocks (see the
/// module doc); blocks are compressed by up to `threads` workers.
pub struct GzipBlocks<W: Write> {
    inner: W,
    /// The input of the block being filled.
    block: Vec<u8>,
    /// The last [`GZIP_DICTIONARY`] bytes of the block before.
    dictionary: Arc<Vec<u8>>,
    blocks: Ordered<DeflateJob, io::Result<Deflated>>,
    crc: flate2::Crc,
    length: u64,
}

/// A block to deflate: its input and the dictionary before it.
type DeflateJob = (Vec<u8>, Arc<Vec<u8>>);

/// A deflated block and the CRC-32 of its input.
struct Deflated {
    data: Vec<u8>,
    crc: flate2::Crc,
}

impl<W: Write> GzipBlocks<W> {
    fn new(inner: W, threads: usize) -> Self {
        GzipBlocks {
            inner,
            block: Vec::with_capacity(GZIP_BLOCK),
            dictionary: Arc::new(Vec::new()),
            blocks: Ordered::new(threads, deflate_job),
            crc: flate2::Crc::new(),
            length: 0,
        }
    }

    /// Writes blocks that are done, in order; the gzip header goes before
    /// the first.
    fn put(&mut self, done: Vec<io::Result<Deflated>>) -> io::Result<()> {
        for block in done {
            let block = block?;
            if self.length == 0 {
                self.inner.write_all(&gzip_header())?;
            }
            self.length += u64::from(block.crc.amount());
            self.crc.combine(&block.crc);
            self.inner.write_all(&block.data)?;
        }
        Ok(())
    }

    /// Hands the full block to the workers.
    fn send_block(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK));
        let tail = data.len().saturating_sub(GZIP_DICTIONARY);
        let dictionary = std::mem::replace(&mut self.dictionary, Arc::new(data[tail..].to_vec()));
        let done = self.blocks.push((data, dictionary));
        self.put(done)
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() {
            self.send_block()?;
        }
        let rest = self.blocks.finish();
        self.put(rest)?;
        if self.length == 0 {
            self.inner.write_all(&gzip_header())?;
        }
        self.inner.write_all(&DEFLATE_EMPTY_FINAL_BLOCK)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        // ISIZE is the length modulo 2^32 (RFC 1952).
        self.inner.write_all(&(self.length as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipBlocks<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == GZIP_BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The gzip header: deflate, no flags, no time, no extra flags, OS unknown.
fn gzip_header() -> [u8; 10] {
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, GZIP_OS_UNKNOWN]
}

fn deflate_job((data, dictionary): DeflateJob) -> io::Result<Deflated> {
    deflate_block(&data, &dictionary)
}

/// Raw deflate of one block, primed with `dictionary` and ended with a
/// sync flush, so blocks can be put one after the other.
fn deflate_block(data: &[u8], dictionary: &[u8]) -> io::Result<Deflated> {
    use flate2::{Compress, FlushCompress};
    let mut deflate = Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let read = deflate.total_in() as usize;
        deflate
            .compress_vec(&data[read..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // The flush is complete when the input is used up and deflate
        // left room in the output.
        if deflate.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(64 * 1024);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    Ok(Deflated { data: out, crc })
}

impl<W: Write> Encoder<W> {
    /// Writes the end of the compressed stream and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.write_all(buf),
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::Zstd(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut e = c.encoder(Vec::new(), 1).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample() -> Vec<u8> {
        (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn gzip_header_has_no_name_and_no_time() {
        let out = compress(Compression::Gzip, b"hello");
        assert_eq!(&out[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(out[3], 0, "FLG: no name, comment or extra");
        assert_eq!(&out[4..8], &[0, 0, 0, 0], "MTIME");
        assert_eq!(out[9], GZIP_OS_UNKNOWN);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"hello");
    }

    #[test]
    fn zstd_is_the_same_for_every_worker_count() {
        let data = sample();
        let ours = compress(Compression::Zstd, &data);
        for workers in [2, 4] {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).unwrap();
            e.multithread(workers).unwrap();
            e.set_parameter(CParameter::JobSize(ZSTD_JOB_SIZE)).unwrap();
            e.set_parameter(CParameter::OverlapSizeLog(ZSTD_OVERLAP_LOG))
                .unwrap();
            e.include_checksum(true).unwrap();
            e.write_all(&data).unwrap();
            assert_eq!(e.finish().unwrap(), ours, "{workers} workers");
        }
        assert_eq!(zstd::decode_all(&ours[..]).unwrap(), data);
    }

    fn gzip_with(threads: usize, data: &[u8], writes: usize) -> Vec<u8> {
        let mut e = GzipBlocks::new(Vec::new(), threads);
        for part in data.chunks(writes) {
            e.write_all(part).unwrap();
        }
        e.finish().unwrap()
    }

    #[test]
    fn gzip_is_the_same_for_every_thread_count_and_write_size() {
        let data = sample();
        assert!(data.len() > 20 * GZIP_BLOCK);
        let one = gzip_with(1, &data, 1 << 20);
        for (threads, writes) in [(2, 4096), (4, 100_000), (3, GZIP_BLOCK)] {
            assert_eq!(gzip_with(threads, &data, writes), one, "{threads} threads");
        }
        // One member that a plain gzip reader takes whole.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // The dictionary keeps the blocks about as small as one stream: a
        // block costs a flush marker and its own code tables, tens of bytes.
        let stream = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let blocks = data.len().div_ceil(GZIP_BLOCK);
        assert!(
            one.len() <= stream.len() + 64 * blocks,
            "{} {}",
            one.len(),
            stream.len()
        );
    }

    #[test]
    fn gzip_of_nothing_and_of_a_block_edge_decode() {
        for len in [
            0,
            1,
            GZIP_BLOCK - 1,
            GZIP_BLOCK,
            GZIP_BLOCK + 1,
            3 * GZIP_BLOCK,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let out = gzip_with(2, &data, 5000);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{len} bytes");
            assert_eq!(&out[out.len() - 4..], &(len as u32).to_le_bytes());
        }
    }

    #[test]
    fn compression_is_repeatable() {
        let data = sample();
        for c in [Compression::Gzip, Compression::Zstd] {
            assert_eq!(compress(c, &data), compress(c, &data), "{c:?}");
        }
    }
}
