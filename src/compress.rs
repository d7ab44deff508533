//! Layer compression with fixed settings, so the same tar always gives the
//! same blob, and the one decoder of what others compressed.
//!
//! - gzip: level 6 (as `gzip` and `pigz`), a header with no file name, no
//!   time (0) and the "unknown" OS byte, through flate2's zlib-rs backend.
//! - zstd: level 3 in zstd's multi-threaded mode with one worker per layer.
//!   That mode gives the same bytes for every worker count of one or more
//!   (its single-threaded mode gives other bytes), so the output never depends
//!   on the machine; layers are compressed in parallel instead.

use std::io::{self, BufReader, Read, Write};

use zstd::zstd_safe::CParameter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;
const ZSTD_WORKERS: u32 = 1;
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

    /// Wraps `w` in this compression.
    pub fn encoder<W: Write>(self, w: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(GZIP_OS_UNKNOWN)
                    .write(w, flate2::Compression::new(GZIP_LEVEL)),
            ),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
                e.multithread(ZSTD_WORKERS)?;
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
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
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
        let mut e = c.encoder(Vec::new()).unwrap();
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

    #[test]
    fn compression_is_repeatable() {
        let data = sample();
        for c in [Compression::Gzip, Compression::Zstd] {
            assert_eq!(compress(c, &data), compress(c, &data), "{c:?}");
        }
    }
}
