//! Content digests (`sha256:<hex>`) and writers that hash and count what
//! passes through them, so a layer's diff_id, blob digest and size all come
//! out of the single pass that writes it.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

/// A `sha256:<64 lowercase hex>` digest, parsed and checked once.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of a byte string.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Digest, String> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest {s:?} does not start with \"sha256:\""))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "digest {s:?} must have 64 lowercase hex digits after \"sha256:\""
            ));
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }
}

/// Written as `sha256:<hex>`, as documents name digests.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        d.to_string()
            .parse()
            .expect("a checked sha256 digest is a valid OCI digest")
    }
}

/// A writer that passes bytes on while hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

/// Where the hashing is done.
enum Hasher {
    Inline(Sha256),
    Background(Background),
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::Inline(Sha256::new()),
            count: 0,
        }
    }

    /// As [`HashingWriter::new`], hashing on a thread of its own: the
    /// writer copies what it passes on into buffers for that thread, which
    /// costs far less than hashing, so a writer whose thread is the
    /// busiest of a pipeline (a stream's) gets ahead.
    pub fn threaded(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::Background(Background::start()),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The inner writer, the digest and the byte count of everything written.
    pub fn finish(self) -> (W, Digest, u64) {
        let hasher = match self.hasher {
            Hasher::Inline(h) => h,
            Hasher::Background(b) => b.finish(),
        };
        (self.inner, Digest::from_hasher(hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        match &mut self.hasher {
            Hasher::Inline(h) => h.update(&buf[..n]),
            Hasher::Background(b) => b.update(&buf[..n])?,
        }
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes handed to the hashing thread at once.
const HASH_CHUNK: usize = 1 << 20;

/// Buffers on their way to the hashing thread, at most: bounds memory.
const HASH_QUEUE: usize = 4;

/// A hasher on a thread of its own, fed full buffers in order; the
/// buffers come back to be filled again.
struct Background {
    buf: Vec<u8>,
    to_thread: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Sha256>>,
}

impl Background {
    fn start() -> Background {
        let (to_thread, chunks) = mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let (back, spare) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for chunk in chunks {
                hasher.update(&chunk);
                let _ = back.send(chunk);
            }
            hasher
        });
        Background {
            buf: Vec::with_capacity(HASH_CHUNK),
            to_thread: Some(to_thread),
            spare,
            thread: Some(thread),
        }
    }

    fn update(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let take = (HASH_CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == HASH_CHUNK {
                self.send()?;
            }
        }
        Ok(())
    }

    /// Hands the buffer over and takes an empty one.
    fn send(&mut self) -> io::Result<()> {
        let fresh = match self.spare.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(HASH_CHUNK),
        };
        let full = std::mem::replace(&mut self.buf, fresh);
        let sent = self.to_thread.as_ref().map(|t| t.send(full));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other("the hashing thread stopped")),
        }
    }

    /// The hasher, once it has hashed everything handed over.
    fn finish(mut self) -> Sha256 {
        if !self.buf.is_empty() {
            // An error here is the thread's end, reported by the join.
            let _ = self.send();
        }
        self.to_thread = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(hasher)) => hasher,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => unreachable!("the thread is joined once"),
        }
    }
}

/// A reader that passes bytes on while hashing and counting them.
pub struct HashingReader<R> {
    inner: R,
    hash: HashingWriter<io::Sink>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: HashingWriter::new(io::sink()),
        }
    }

    /// The digest and byte count of everything read.
    pub fn finish(self) -> (Digest, u64) {
        let (_, digest, count) = self.hash.finish();
        (digest, count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_is_the_known_one() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hashing_writer_matches_digest_of() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (out, digest, n) = w.finish();
        assert_eq!(out, b"hello world");
        assert_eq!(n, 11);
        assert_eq!(digest, Digest::of(b"hello world"));
    }

    /// Hashed on its own thread, across buffer boundaries, the digest is
    /// the same.
    #[test]
    fn a_threaded_hashing_writer_gives_the_same_digest() {
        let data: Vec<u8> = (0..3 * HASH_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut w = HashingWriter::threaded(Vec::new());
        for piece in data.chunks(HASH_CHUNK / 3 + 5) {
            w.write_all(piece).unwrap();
        }
        let (out, digest, n) = w.finish();
        assert!(out == data);
        assert_eq!(n, data.len() as u64);
        assert_eq!(digest, Digest::of(&data));
        let (_, empty, _) = HashingWriter::threaded(io::sink()).finish();
        assert_eq!(empty, Digest::of(b""));
    }

    #[test]
    fn parse_rejects_bad_digests() {
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("md5:".parse::<Digest>().is_err());
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(ok.parse::<Digest>().unwrap().to_string(), ok);
    }
}
