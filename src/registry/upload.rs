//! Uploading blobs and manifests to a registry: the transport half of
//! `push` ([`crate::push`] decides what to send).
//!
//! - Every blob whose digest is known is checked with HEAD and uploaded only
//!   when missing; with a repository to mount from, a missing blob is first
//!   mounted from that repository of the same registry.
//! - Blobs up to the chunk size ([`CHUNK`] by default) go up in one PUT;
//!   larger ones in PATCH chunks of that size, then a PUT with the digest,
//!   which the registry checks. A chunk whose request fails is resumed
//!   where the registry says the upload stands, or the blob starts over in
//!   a new session.
//! - A blob made while it is sent ([`Uploader::push_stream`]) has its
//!   digest only at the end: one that fits in one chunk is held, hashed
//!   and checked with HEAD before it is sent; a larger one goes into a
//!   session closed with the digest once it is known.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use anyhow::{Context, Result, bail};

use super::client::{Body, Client, backoff, header};
use super::progress::{Outcome, Progress};
use crate::digest::Digest;
use crate::stored::BlobFile;

/// Upload chunk size, and the largest blob sent in one request.
pub const CHUNK: u64 = 32 << 20;

const OCTET_STREAM: &str = "application/octet-stream";

/// What became of a blob.
pub enum Pushed {
    Uploaded(u64),
    Skipped,
    Mounted,
}

/// Uploads to one repository of a registry.
pub struct Uploader<'a> {
    pub client: &'a Client,
    /// A repository of the same registry to mount missing blobs from.
    pub mount_from: Option<String>,
    /// Upload chunk size, and the largest blob sent in one request.
    pub chunk: u64,
    pub retries: u32,
}

/// Where a new upload starts.
enum Start {
    Mounted,
    Session(String),
}

impl Uploader<'_> {
    /// Puts a manifest or index under `target` (a tag or its digest) and
    /// checks that the registry kept its bytes; returns its digest.
    pub fn put_manifest(&self, target: &str, manifest: &[u8], media_type: &str) -> Result<Digest> {
        let client = self.client;
        let digest = Digest::of(manifest);
        let url = client.url(&format!("manifests/{target}"));
        let reply = client.send(
            "PUT",
            &url,
            &[("content-type", media_type.to_owned())],
            Body::Bytes(manifest),
        )?;
        let reply = client.expect(
            &format!("putting the manifest {}", client.describe(&url)),
            reply,
            &[200, 201, 202],
        )?;
        if let Some(said) = header(&reply, "docker-content-digest")
            && said != digest.to_string()
        {
            bail!(
                "the registry stored the manifest as {said}, but its digest is {digest}; the registry changed it"
            );
        }
        Ok(digest)
    }

    /// Mounts a blob from the repository to mount from, when there is one
    /// and it has the blob.
    pub fn mount(&self, digest: &Digest) -> Result<bool> {
        if self.mount_from.is_none() {
            return Ok(false);
        }
        Ok(matches!(self.start(Some(digest), true)?, Start::Mounted))
    }

    /// Sends a blob while `produce` writes it, in chunks; its digest and
    /// size (`digest_of` what `produce` returns) are known only at the
    /// end. `what` names it in messages; `counted` is what it added to
    /// the progress, for a retry to take back. Returns what became of the
    /// blob and what `produce` returned.
    pub fn push_stream<T: Send>(
        &self,
        what: &str,
        progress: &Progress,
        counted: &mut u64,
        produce: impl FnOnce(&mut dyn Write) -> Result<T> + Send,
        digest_of: impl Fn(&T) -> (Digest, u64),
    ) -> Result<(Pushed, T)> {
        let (tx, rx) = sync_channel::<Vec<u8>>(1);
        let chunk = self.chunk as usize;
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || -> Result<T> {
                let mut sink = ChunkSink {
                    tx,
                    chunk,
                    buf: Vec::new(),
                };
                let made = produce(&mut sink)?;
                sink.close()?;
                Ok(made)
            });
            let sent = self.send_stream(&rx, progress, counted);
            drop(rx);
            let made = producer
                .join()
                .map_err(|_| anyhow::anyhow!("the layer writer stopped unexpectedly"))?;
            // A failed upload stops the writer (its error is only that);
            // a failed writer ends the stream early, so its error comes
            // first when the upload went well.
            let (pushed, location) = sent.context(Pushing(format!("pushing {what}")))?;
            let made = made.with_context(|| format!("making {what}"))?;
            let (digest, size) = digest_of(&made);
            let pushed = match (pushed, location) {
                (Some(p), _) => p,
                (None, Some(loc)) => {
                    self.finish(&loc, &digest)
                        .map_err(|e| self.name_layer(e, what, &digest))
                        .context(Pushing(format!("closing the upload of {what}")))?;
                    Pushed::Uploaded(size)
                }
                (None, None) => unreachable!("a stream is either whole or in a session"),
            };
            Ok((pushed, made))
        })
    }

    pub fn outcome(&self, pushed: Pushed) -> Outcome {
        match pushed {
            Pushed::Uploaded(bytes) => Outcome::Moved {
                bytes,
                verb: "uploaded",
            },
            Pushed::Skipped => Outcome::Skipped(format!(
                "already in {}/{}",
                self.client.host, self.client.repo
            )),
            Pushed::Mounted => Outcome::Mounted(self.mount_from.clone().unwrap_or_default()),
        }
    }

    /// Says which layer failed, and what a refused digest means.
    pub fn name_layer(&self, err: anyhow::Error, what: &str, digest: &Digest) -> anyhow::Error {
        let text = format!("{err:#}");
        if text.contains("DIGEST_INVALID") || text.contains("BLOB_UPLOAD_INVALID") {
            anyhow::anyhow!(
                "{what}: its bytes do not match {digest}, the digest the image records; nothing was tagged ({text})"
            )
        } else {
            err.context(format!("pushing {what}"))
        }
    }

    /// Whether the repository has a blob.
    pub fn exists(&self, digest: &Digest) -> Result<bool> {
        let url = self.client.url(&format!("blobs/{digest}"));
        let reply = self.client.send("HEAD", &url, &[], Body::Empty)?;
        match reply.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => bail!(
                "{}",
                self.client
                    .error_line(&format!("HEAD {}", self.client.describe(&url)), reply)
            ),
        }
    }

    /// Opens an upload session, or mounts the blob when it can.
    fn start(&self, digest: Option<&Digest>, mount: bool) -> Result<Start> {
        let base = self.client.url("blobs/uploads/");
        let url = match (&self.mount_from, digest) {
            (Some(from), Some(d)) if mount => format!(
                "{base}?mount={}&from={}",
                super::client::percent_encode(&d.to_string()),
                super::client::percent_encode(from)
            ),
            _ => base,
        };
        let reply = self.client.send("POST", &url, &[], Body::Empty)?;
        let status = reply.status().as_u16();
        if status == 201 {
            return Ok(Start::Mounted);
        }
        let reply = self.client.expect(
            &format!("starting an upload at {}", self.client.describe(&url)),
            reply,
            &[202],
        )?;
        Ok(Start::Session(self.client.location(&reply)?))
    }

    fn session(&self) -> Result<String> {
        match self.start(None, false)? {
            Start::Session(loc) => Ok(loc),
            Start::Mounted => bail!("the registry mounted a blob it was not asked to"),
        }
    }

    /// Pushes a blob from a file (or a tar member), unless it is there.
    pub fn push_file(
        &self,
        file: &BlobFile,
        digest: &Digest,
        progress: &Progress,
    ) -> Result<Pushed> {
        if self.exists(digest)? {
            return Ok(Pushed::Skipped);
        }
        let location = match self.start(Some(digest), true)? {
            Start::Mounted => return Ok(Pushed::Mounted),
            Start::Session(loc) => loc,
        };
        if file.size <= self.chunk {
            let body = Body::File {
                path: &file.path,
                offset: file.offset,
                len: file.size,
            };
            self.put_whole(&location, digest, body)?;
            progress.add(file.size);
            return Ok(Pushed::Uploaded(file.size));
        }
        let mut location = location;
        let mut sent = 0u64;
        let mut failures = 0;
        while sent < file.size {
            let n = self.chunk.min(file.size - sent);
            let body = Body::File {
                path: &file.path,
                offset: file.offset + sent,
                len: n,
            };
            match self.patch(&location, sent, n, body) {
                Ok(next) => {
                    location = next;
                    sent += n;
                    progress.add(n);
                    failures = 0;
                }
                Err(err) => {
                    failures += 1;
                    if failures > self.retries {
                        return Err(err);
                    }
                    std::thread::sleep(backoff(failures, None));
                    let (loc, at) = match self.status(&location) {
                        Some((loc, at)) if at <= file.size => (loc, at),
                        _ => (self.session()?, 0),
                    };
                    progress.sub(sent);
                    progress.add(at);
                    location = loc;
                    sent = at;
                }
            }
        }
        self.finish(&location, digest)?;
        Ok(Pushed::Uploaded(file.size))
    }

    /// Pushes a blob held in memory (a config, a small layer).
    pub fn push_bytes(&self, bytes: &[u8], digest: &Digest) -> Result<Pushed> {
        if self.exists(digest)? {
            return Ok(Pushed::Skipped);
        }
        match self.start(Some(digest), true)? {
            Start::Mounted => Ok(Pushed::Mounted),
            Start::Session(loc) => {
                self.put_whole(&loc, digest, Body::Bytes(bytes))?;
                Ok(Pushed::Uploaded(bytes.len() as u64))
            }
        }
    }

    /// A monolithic upload: the whole blob in the closing PUT.
    fn put_whole(&self, location: &str, digest: &Digest, body: Body) -> Result<()> {
        let url = with_query(location, "digest", &digest.to_string());
        let result = self
            .client
            .send(
                "PUT",
                &url,
                &[("content-type", OCTET_STREAM.to_owned())],
                body,
            )
            .and_then(|reply| {
                self.client.expect(
                    &format!("uploading {digest} to {}", self.client.describe(&url)),
                    reply,
                    &[201, 204],
                )
            });
        match result {
            Ok(_) => Ok(()),
            // A retried PUT finds its session closed when the first try
            // went through after all.
            Err(err)
                if !format!("{err:#}").contains("DIGEST_INVALID") && self.exists(digest)? =>
            {
                let _ = err;
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Sends one chunk; returns the next location.
    fn patch(&self, location: &str, from: u64, len: u64, body: Body) -> Result<String> {
        let range = format!("{from}-{}", from + len - 1);
        let reply = self.client.send_with(
            "PATCH",
            location,
            &[
                ("content-type", OCTET_STREAM.to_owned()),
                ("content-range", range),
            ],
            body,
            false,
        )?;
        let reply = self.client.expect(
            &format!(
                "uploading bytes {from}.. to {}",
                self.client.describe(location)
            ),
            reply,
            &[202],
        )?;
        self.client.location(&reply)
    }

    /// Where an upload stands: its location and how many bytes it has.
    fn status(&self, location: &str) -> Option<(String, u64)> {
        let reply = self.client.send("GET", location, &[], Body::Empty).ok()?;
        if reply.status().as_u16() != 204 {
            return None;
        }
        let range = header(&reply, "range")?;
        let end: u64 = range.rsplit('-').next()?.trim().parse().ok()?;
        // `0-0` is what an empty upload says too: start over from 0.
        let have = if end == 0 { 0 } else { end + 1 };
        let loc = self
            .client
            .location(&reply)
            .unwrap_or_else(|_| location.to_owned());
        Some((loc, have))
    }

    /// Closes a chunked upload with its digest.
    fn finish(&self, location: &str, digest: &Digest) -> Result<()> {
        let url = with_query(location, "digest", &digest.to_string());
        let reply = self.client.send(
            "PUT",
            &url,
            &[("content-type", OCTET_STREAM.to_owned())],
            Body::Empty,
        )?;
        self.client.expect(
            &format!("closing the upload of {digest}"),
            reply,
            &[201, 204],
        )?;
        Ok(())
    }

    /// Sends the chunks of a stream. A stream of one chunk is pushed whole
    /// (after a HEAD); a longer one goes into a session, whose location is
    /// returned for the closing PUT once the digest is known.
    fn send_stream(
        &self,
        rx: &Receiver<Vec<u8>>,
        progress: &Progress,
        counted: &mut u64,
    ) -> Result<(Option<Pushed>, Option<String>)> {
        let Ok(first) = rx.recv() else {
            bail!("the layer stream ended before its first byte");
        };
        let mut pending = match rx.recv() {
            Ok(second) => Some(second),
            Err(_) => {
                let digest = Digest::of(&first);
                let pushed = self.push_bytes(&first, &digest)?;
                progress.add(first.len() as u64);
                *counted += first.len() as u64;
                return Ok((Some(pushed), None));
            }
        };
        let mut location = self.session()?;
        let mut offset = 0u64;
        let mut chunk = first;
        loop {
            location = self.patch_chunk(location, offset, &chunk)?;
            offset += chunk.len() as u64;
            progress.add(chunk.len() as u64);
            *counted += chunk.len() as u64;
            match pending.take() {
                Some(next) => {
                    chunk = next;
                    pending = rx.recv().ok();
                }
                None => return Ok((None, Some(location))),
            }
        }
    }

    /// Sends one in-memory chunk at `offset`, resuming within it after a
    /// failure where the registry says the upload stands.
    fn patch_chunk(&self, mut location: String, offset: u64, chunk: &[u8]) -> Result<String> {
        let mut from = 0usize;
        let mut failures = 0;
        loop {
            let part = &chunk[from..];
            match self.patch(
                &location,
                offset + from as u64,
                part.len() as u64,
                Body::Bytes(part),
            ) {
                Ok(next) => return Ok(next),
                Err(err) => {
                    failures += 1;
                    if failures > self.retries {
                        return Err(err);
                    }
                    std::thread::sleep(backoff(failures, None));
                    match self.status(&location) {
                        Some((loc, at)) if at >= offset && at < offset + chunk.len() as u64 => {
                            location = loc;
                            from = (at - offset) as usize;
                        }
                        _ => {
                            return Err(err.context(
                                "the registry lost the upload; run the push again to finish it",
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// The context of an upload's failure (not the layer writer's).
#[derive(Debug)]
struct Pushing(String);

impl std::fmt::Display for Pushing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a streamed blob's upload failed in a way a new session can
/// cure: a cut connection or a lost session, not a refusal.
pub fn upload_can_restart(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Pushing>().is_some()
        && (super::client::is_transport(err) || format!("{err:#}").contains("lost the upload"))
}

/// Adds `key=value` to a URL that may already have a query.
fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", super::client::percent_encode(value))
}

/// A writer that hands its bytes on in chunks of [`CHUNK`].
struct ChunkSink {
    tx: SyncSender<Vec<u8>>,
    chunk: usize,
    buf: Vec<u8>,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn close(mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.send().context("sending the last chunk")?;
        }
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.chunk);
        }
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_query_parameters() {
        assert_eq!(
            with_query("http://h/u?_state=x", "digest", "sha256:ab"),
            "http://h/u?_state=x&digest=sha256%3Aab"
        );
        assert_eq!(
            with_query("http://h/u", "digest", "d"),
            "http://h/u?digest=d"
        );
    }

    #[test]
    fn chunk_sink_sends_whole_chunks() {
        let (tx, rx) = sync_channel(4);
        let mut sink = ChunkSink {
            tx,
            chunk: CHUNK as usize,
            buf: Vec::new(),
        };
        let data = vec![7u8; CHUNK as usize + 10];
        sink.write_all(&data).unwrap();
        sink.close().unwrap();
        let chunks: Vec<Vec<u8>> = rx.iter().collect();
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![CHUNK as usize, 10]
        );
    }
}
