//! `stevedore push`: an image to a registry, blobs first, the manifest last.
//!
//! - Every blob whose digest is known is checked with HEAD and uploaded only
//!   when missing; with `--mount-from` a missing blob is first mounted from
//!   that repository of the same registry.
//! - Blobs up to [`CHUNK`] go up in one PUT; larger ones in PATCH chunks of
//!   that size, then a PUT with the digest, which the registry checks. A
//!   chunk whose request fails is resumed where the registry says the
//!   upload stands, or the blob starts over in a new session.
//! - A launcher's layers are made from the store while they are sent: a
//!   layer is planned, tarred, compressed and hashed on one thread and
//!   sent in chunks from another, so nothing is written to disk. Its digest
//!   is known only at the end, so a layer that fits in one chunk is held,
//!   hashed and checked with HEAD before it is sent; a larger one is sent
//!   without the check (a hashing pass first would cost as much as the
//!   compression itself). Its digest is then kept ([`super::layer_cache`]):
//!   the next push of the same layer checks it with HEAD and reads nothing
//!   when the registry has it, and stops, naming the layer, if the store
//!   gives other bytes than before.
//! - An OCI layout whose image is an index of images for several platforms
//!   is pushed as it is: every platform's blobs, then each manifest by
//!   digest, then the index under the tag, all byte for byte, so the
//!   pushed index has the layout's digest.
//! - The manifest is put only when every blob is in the registry under the
//!   digest the manifest names. A layer whose bytes do not match the digest
//!   the image records stops the push before the manifest, naming the
//!   layer, so a broken manifest is never pushed.

use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::Connection;
use super::client::{Body, Client, backoff, header};
use super::layer_cache::{CachedLayer, LayerCache};
use super::progress::{Outcome, Progress};
use crate::archive::plan::{LayerSettings, plan_layer};
use crate::archive::{LayerSource, write_layer};
use crate::compress::Compression;
use crate::digest::{Digest, HashingWriter};
use crate::image::Image;
use crate::image::config::{BlobInfo, image_config};
use crate::oci::canonical_json;
use crate::oci::media_type::{self, DOCKER_MANIFEST, OCI_MANIFEST};
use crate::oci::{Reference, Target};
use crate::source::{self, Source};
use crate::stored::{BlobFile, IndexImage, NamedBlob, StoredImage};

/// Upload chunk size, and the largest blob sent in one request.
pub const CHUNK: u64 = 32 << 20;

const OCTET_STREAM: &str = "application/octet-stream";

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Docker schema 2 instead of an OCI manifest.
    pub docker_format: bool,
    /// A repository of the same registry to mount missing blobs from.
    pub mount_from: Option<String>,
    /// Layer compression of a launcher's layers.
    pub compression: Compression,
    /// Blobs pushed at once.
    pub jobs: usize,
    /// Upload chunk size, and the largest blob sent in one request
    /// ([`CHUNK`] by default).
    pub chunk: u64,
}

/// What became of a blob.
enum Pushed {
    Uploaded(u64),
    Skipped,
    Mounted,
}

/// A layer ready for the manifest.
struct Done {
    digest: Digest,
    size: u64,
    diff_id: Option<Digest>,
    compression: Compression,
}

/// Pushes `source` to `dest`; returns `HOST/REPO:TAG@sha256:...`.
pub fn push(
    source_path: &Path,
    dest: &Reference,
    conn: &Connection,
    opts: &PushOptions,
) -> Result<String> {
    let source = source::open(source_path)?;
    if opts.docker_format {
        check_docker_format(&source, source_path, opts)?;
    }
    let mut scopes = vec![format!("repository:{}:pull,push", dest.repo)];
    if let Some(from) = &opts.mount_from {
        crate::oci::reference::check_name(from)
            .map_err(|e| anyhow::anyhow!("--mount-from: {e}"))?;
        scopes.push(format!("repository:{from}:pull"));
    }
    let client = Client::connect(conn, &dest.host, &dest.repo, scopes)?;
    let pusher = Pusher {
        client: &client,
        opts,
        retries: conn.retries,
        cache: LayerCache::open(),
    };
    let (manifest, media_type) = match &source {
        Source::Index(index) => {
            pusher.push_index_parts(index)?;
            (index.index.bytes.clone(), index.index.media_type.clone())
        }
        Source::Stored(image) => {
            pusher.push_image(pusher.push_blob_layers(image)?, image.oci_manifest.as_ref())?
        }
        Source::Launcher { image, .. } => {
            pusher.push_image(pusher.push_launcher_layers(image)?, None)?
        }
    };
    let digest = pusher.put_manifest(&dest.target_str(), &manifest, &media_type)?;
    Ok(match &dest.target {
        Target::Tag(t) => format!("{}:{t}@{digest}", dest.name()),
        Target::Digest(_) => format!("{}@{digest}", dest.name()),
    })
}

impl Pusher<'_> {
    /// Pushes the layers of a launcher: the base's as they are stored,
    /// then the new ones made from the store while they are sent. Returns
    /// the config for them and the layers.
    fn push_launcher_layers(&self, image: &Image) -> Result<(Vec<u8>, Vec<Done>)> {
        let (pusher, opts) = (self, self.opts);
        let base = image.base_layers();
        let progress = Progress::new(base.len() + image.layers.len());
        let layers = crate::pool::map(base.len() + image.layers.len(), opts.jobs, |i| {
            if let Some(layer) = base.get(i) {
                let started = Instant::now();
                let what = format!("base layer {}", i + 1);
                let pushed = pusher
                    .push_file(&layer.file, &layer.digest, &progress)
                    .map_err(|e| pusher.name_layer(e, &what, &layer.digest))?;
                progress.layer(
                    i,
                    &layer.digest.to_string(),
                    pusher.outcome(pushed),
                    started.elapsed(),
                );
                return Ok(Done {
                    size: layer.file.size,
                    digest: layer.digest.clone(),
                    diff_id: Some(layer.diff_id.clone()),
                    compression: layer.compression,
                });
            }
            let n = i - base.len();
            pusher.push_streamed_layer(i, &image.ctx, &image.layers[n].source, &progress)
        })?;
        progress.finish();
        let diff_ids: Vec<Digest> = layers
            .iter()
            .map(|l| l.diff_id.clone().expect("streamed layers have diff_ids"))
            .collect();
        Ok((image_config(image, &diff_ids)?, layers))
    }

    /// Pushes an image's config and returns its manifest (`oci_manifest`,
    /// the layout's own, unless another format is asked for) and the
    /// manifest's media type.
    fn push_image(
        &self,
        (config, layers): (Vec<u8>, Vec<Done>),
        oci_manifest: Option<&Vec<u8>>,
    ) -> Result<(Vec<u8>, String)> {
        let docker = self.opts.docker_format;
        let config_digest = Digest::of(&config);
        self.push_bytes(&config, &config_digest)
            .context("pushing the image config")?;
        let manifest = match oci_manifest {
            Some(m) if !docker => m.clone(),
            _ => manifest(&config, &layers, docker)?,
        };
        let media_type = if docker {
            DOCKER_MANIFEST
        } else {
            OCI_MANIFEST
        };
        Ok((manifest, media_type.to_owned()))
    }

    /// Pushes what an index names, as the layout holds it: the layers and
    /// configs of every platform's image, then each manifest and inner
    /// index by digest, each after those it names. The index itself is
    /// left for the tag.
    fn push_index_parts(&self, index: &IndexImage) -> Result<()> {
        let (configs, layers): (Vec<&NamedBlob>, Vec<&NamedBlob>) =
            index.blobs.iter().partition(|b| b.config);
        let progress = Progress::new(layers.len());
        crate::pool::map(layers.len(), self.opts.jobs, |i| {
            let started = Instant::now();
            let layer = layers[i];
            let pushed = self
                .push_file(&layer.file, &layer.digest, &progress)
                .map_err(|e| self.name_layer(e, &layer.what, &layer.digest))?;
            progress.layer(
                i,
                &layer.digest.to_string(),
                self.outcome(pushed),
                started.elapsed(),
            );
            Ok(())
        })?;
        crate::pool::map(configs.len(), self.opts.jobs, |i| {
            let config = configs[i];
            self.push_file(&config.file, &config.digest, &progress)
                .map_err(|e| self.name_layer(e, &config.what, &config.digest))
                .map(drop)
        })?;
        progress.finish();
        for m in &index.manifests {
            self.put_manifest(&m.digest.to_string(), &m.bytes, &m.media_type)?;
        }
        Ok(())
    }

    /// Puts a manifest or index under `target` (a tag or its digest) and
    /// checks that the registry kept its bytes; returns its digest.
    fn put_manifest(&self, target: &str, manifest: &[u8], media_type: &str) -> Result<Digest> {
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
}

/// What `--format v2s2` cannot do, refused before anything is sent: an
/// index names its manifests by digest, so it is pushed as it is; Docker
/// schema 2 has no zstd layers.
fn check_docker_format(source: &Source, path: &Path, opts: &PushOptions) -> Result<()> {
    let zstd = match source {
        Source::Index(index) => {
            let platforms: Vec<String> = index.platforms.iter().map(|p| p.to_string()).collect();
            bail!(
                "--format v2s2: source {} is an index of images ({}), pushed as it is with the manifests it names; leave out --format",
                path.display(),
                platforms.join(", ")
            );
        }
        Source::Stored(image) => image
            .layers
            .iter()
            .find(|l| l.compression == Compression::Zstd)
            .map(|l| l.what.clone()),
        Source::Launcher { image, .. } => image
            .base_layers()
            .iter()
            .position(|l| l.compression == Compression::Zstd)
            .map(|i| format!("base layer {}", i + 1))
            .or_else(|| {
                (opts.compression == Compression::Zstd).then(|| "--compress zstd".to_owned())
            }),
    };
    if let Some(what) = zstd {
        bail!(
            "--format v2s2: Docker schema 2 has no zstd layers ({what}); push with --format oci, or use gzip"
        );
    }
    Ok(())
}

/// The manifest for a config and layers, as OCI or Docker schema 2.
fn manifest(config: &[u8], layers: &[Done], docker: bool) -> Result<Vec<u8>> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let media_type = if docker {
                media_type::docker_layer(l.compression).expect("checked before the push")
            } else {
                media_type::oci_layer(l.compression)
            };
            json!({ "mediaType": media_type, "digest": l.digest.to_string(), "size": l.size })
        })
        .collect();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type::manifest(docker),
        "config": {
            "mediaType": media_type::config(docker),
            "digest": Digest::of(config).to_string(),
            "size": config.len(),
        },
        "layers": layers,
    });
    Ok(canonical_json(&doc))
}

struct Pusher<'a> {
    client: &'a Client,
    opts: &'a PushOptions,
    retries: u32,
    /// Digests of layers made from the store by earlier pushes.
    cache: LayerCache,
}

/// Where a new upload starts.
enum Start {
    Mounted,
    Session(String),
}

impl Pusher<'_> {
    fn push_blob_layers(&self, image: &StoredImage) -> Result<(Vec<u8>, Vec<Done>)> {
        let progress = Progress::new(image.layers.len());
        let layers = crate::pool::map(image.layers.len(), self.opts.jobs, |i| {
            let layer = &image.layers[i];
            let started = Instant::now();
            let digest = match (&layer.digest, &layer.diff_id) {
                (Some(d), _) => d.clone(),
                // A docker-archive's compressed layer: hashed, and checked
                // against the diff_id its config records.
                (None, Some(diff_id)) => {
                    let (digest, content) =
                        crate::stored::digest_and_diff_id(&layer.file, layer.compression)
                            .with_context(|| layer.what.clone())?;
                    if &content != diff_id {
                        bail!(
                            "{}: its content is {content} but the image config records {diff_id}; nothing was tagged",
                            layer.what
                        );
                    }
                    digest
                }
                (None, None) => layer
                    .file
                    .digest()
                    .with_context(|| format!("hashing {}", layer.what))?,
            };
            let pushed = self
                .push_file(&layer.file, &digest, &progress)
                .map_err(|e| self.name_layer(e, &layer.what, &digest))?;
            progress.layer(
                i,
                &digest.to_string(),
                self.outcome(pushed),
                started.elapsed(),
            );
            Ok(Done {
                size: layer.file.size,
                digest,
                diff_id: layer.diff_id.clone(),
                compression: layer.compression,
            })
        })?;
        progress.finish();
        Ok((image.config.clone(), layers))
    }

    fn outcome(&self, pushed: Pushed) -> Outcome {
        match pushed {
            Pushed::Uploaded(bytes) => Outcome::Moved {
                bytes,
                verb: "uploaded",
            },
            Pushed::Skipped => Outcome::Skipped(format!(
                "already in {}/{}",
                self.client.host, self.client.repo
            )),
            Pushed::Mounted => Outcome::Mounted(self.opts.mount_from.clone().unwrap_or_default()),
        }
    }

    /// Says which layer failed, and what a refused digest means.
    fn name_layer(&self, err: anyhow::Error, what: &str, digest: &Digest) -> anyhow::Error {
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
    fn exists(&self, digest: &Digest) -> Result<bool> {
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
        let url = match (&self.opts.mount_from, digest) {
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
    fn push_file(&self, file: &BlobFile, digest: &Digest, progress: &Progress) -> Result<Pushed> {
        if self.exists(digest)? {
            return Ok(Pushed::Skipped);
        }
        let location = match self.start(Some(digest), true)? {
            Start::Mounted => return Ok(Pushed::Mounted),
            Start::Session(loc) => loc,
        };
        if file.size <= self.opts.chunk {
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
            let n = self.opts.chunk.min(file.size - sent);
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
    fn push_bytes(&self, bytes: &[u8], digest: &Digest) -> Result<Pushed> {
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
        let reply = self.client.send_once(
            "PATCH",
            location,
            &[
                ("content-type", OCTET_STREAM.to_owned()),
                ("content-range", range),
            ],
            body,
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

    /// Makes a launcher's layer from the store and sends it as it is made.
    fn push_streamed_layer(
        &self,
        index: usize,
        ctx: &LayerSettings,
        source: &LayerSource,
        progress: &Progress,
    ) -> Result<Done> {
        let started = Instant::now();
        let compression = self.opts.compression;
        let key = self.cache.key(ctx, source, compression);
        let cached = key.as_deref().and_then(|k| self.cache.get(k));
        if let Some(c) = &cached {
            // Made and pushed before: when the registry has it, the store
            // is not read at all.
            let digest: Digest = c.digest.parse().expect("checked by the cache");
            let pushed = if self.exists(&digest)? {
                Some(Pushed::Skipped)
            } else if self.opts.mount_from.is_some() {
                match self.start(Some(&digest), true)? {
                    Start::Mounted => Some(Pushed::Mounted),
                    Start::Session(_) => None,
                }
            } else {
                None
            };
            if let Some(pushed) = pushed {
                progress.layer(index, &c.digest, self.outcome(pushed), started.elapsed());
                return Ok(Done {
                    digest,
                    size: c.size,
                    diff_id: Some(c.diff_id.parse().expect("checked by the cache")),
                    compression,
                });
            }
        }
        let mut failures = 0;
        loop {
            let mut counted = 0;
            match self.stream_layer_once(index, ctx, source, progress, &mut counted, started) {
                Ok(done) => {
                    let made = CachedLayer {
                        digest: done.digest.to_string(),
                        diff_id: done.diff_id.as_ref().expect("streamed").to_string(),
                        size: done.size,
                    };
                    if let Some(c) = &cached
                        && *c != made
                    {
                        bail!(
                            "layer {}: its bytes are {} but the same store paths gave {} before; the store has changed under them (check it with nix-store --verify --check-contents); nothing was tagged",
                            index + 1,
                            made.digest,
                            c.digest
                        );
                    }
                    if let Some(k) = &key {
                        self.cache.put(k, &made);
                    }
                    return Ok(done);
                }
                Err(err) if failures < self.retries && upload_can_restart(&err) => {
                    // The registry may have dropped the session with the
                    // cut: make the layer again (the same bytes) and send
                    // it in a new one.
                    failures += 1;
                    progress.sub(counted);
                    std::thread::sleep(backoff(failures, None));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One try at [`Pusher::push_streamed_layer`]; `counted` is what it
    /// added to the progress.
    fn stream_layer_once(
        &self,
        index: usize,
        ctx: &LayerSettings,
        source: &LayerSource,
        progress: &Progress,
        counted: &mut u64,
        started: Instant,
    ) -> Result<Done> {
        let compression = self.opts.compression;
        let what = format!("layer {}", index + 1);
        let (tx, rx) = sync_channel::<Vec<u8>>(1);
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || -> Result<BlobInfo> {
                let plan = plan_layer(ctx, source)?;
                let sink = ChunkSink {
                    tx,
                    chunk: self.opts.chunk as usize,
                    buf: Vec::new(),
                };
                let mut tar = HashingWriter::new(compression.encoder(HashingWriter::new(sink))?);
                write_layer(ctx, &plan, &mut tar)?;
                let (encoder, diff_id, tar_size) = tar.finish();
                if tar_size != plan.size {
                    bail!(
                        "the layer tar has {tar_size} bytes but {} were planned",
                        plan.size
                    );
                }
                let (sink, digest, size) = encoder.finish().context("compressing")?.finish();
                sink.close()?;
                Ok(BlobInfo {
                    diff_id,
                    digest,
                    size,
                    compression,
                })
            });
            let sent = self.send_stream(&rx, progress, counted);
            drop(rx);
            let info = producer
                .join()
                .map_err(|_| anyhow::anyhow!("the layer writer stopped unexpectedly"))?;
            // A failed upload stops the writer (its error is only that);
            // a failed writer ends the stream early, so its error comes
            // first when the upload went well.
            let (pushed, location) = sent.context(Pushing(format!("pushing {what}")))?;
            let info = info.with_context(|| format!("making {what}"))?;
            let pushed = match (pushed, location) {
                (Some(p), _) => p,
                (None, Some(loc)) => {
                    self.finish(&loc, &info.digest)
                        .map_err(|e| self.name_layer(e, &what, &info.digest))
                        .context(Pushing(format!("closing the upload of {what}")))?;
                    Pushed::Uploaded(info.size)
                }
                (None, None) => unreachable!("a stream is either whole or in a session"),
            };
            progress.layer(
                index,
                &info.digest.to_string(),
                self.outcome(pushed),
                started.elapsed(),
            );
            Ok(Done {
                digest: info.digest,
                size: info.size,
                diff_id: Some(info.diff_id),
                compression,
            })
        })
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

/// Whether a streamed layer's upload failed in a way a new session can
/// cure: a cut connection or a lost session, not a refusal.
fn upload_can_restart(err: &anyhow::Error) -> bool {
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
