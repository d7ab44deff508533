//! `stevedore push` and `copyToRegistry`: what an image sends to a
//! registry and in which order, blobs first, the manifest last; the
//! requests are [`crate::registry::upload`]'s.
//!
//! - A launcher's layers are made from the store while they are sent: a
//!   layer is planned, tarred, compressed and hashed on one thread and
//!   sent in chunks from another, so nothing is written to disk. A larger
//!   one is sent without a HEAD first (a hashing pass first would cost as
//!   much as the compression itself). Its digest is then kept
//!   ([`crate::image::layer_cache`]): the next push of the same layer
//!   checks it with HEAD and reads nothing when the registry has it, and
//!   stops, naming the layer, if the store gives other bytes than before.
//! - An OCI layout whose image is an index of images for several platforms
//!   is pushed as it is: every platform's blobs, then each manifest by
//!   digest, then the index under the tag, all byte for byte, so the
//!   pushed index has the layout's digest.
//! - The manifest is put only when every blob is in the registry under the
//!   digest the manifest names. A layer whose bytes do not match the digest
//!   the image records stops the push before the manifest, naming the
//!   layer, so a broken manifest is never pushed.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::archive::LayerSource;
use crate::archive::plan::LayerSettings;
use crate::compress::Compression;
use crate::digest::Digest;
use crate::image::Image;
use crate::image::blobs::write_blob;
use crate::image::config::{BlobInfo, image_config, manifest};
use crate::image::layer_cache::{CachedLayer, LayerCache};
use crate::oci::media_type::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::oci::{Reference, Target};
use crate::registry::Connection;
use crate::registry::client::{Client, backoff};
use crate::registry::progress::Progress;
use crate::registry::upload::{Pushed, Uploader, upload_can_restart};
use crate::source::{self, Source};
use crate::stored::{IndexImage, NamedBlob, StoredImage, StoredLayer};

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
    /// ([`crate::registry::upload::CHUNK`] by default).
    pub chunk: u64,
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
    push_subject(source_path, dest, conn, opts).map(|(reference, _)| reference)
}

/// A manifest or index as pushed: what an artifact's `subject` names.
#[derive(Clone, Debug)]
pub struct Subject {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// [`push`], also returning the manifest (or index) pushed.
pub fn push_subject(
    source_path: &Path,
    dest: &Reference,
    conn: &Connection,
    opts: &PushOptions,
) -> Result<(String, Subject)> {
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
        up: Uploader {
            client: &client,
            mount_from: opts.mount_from.clone(),
            chunk: opts.chunk,
            retries: conn.retries,
        },
        opts,
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
    let digest = pusher
        .up
        .put_manifest(&dest.target_str(), &manifest, &media_type)?;
    let reference = match &dest.target {
        Target::Tag(t) => format!("{}:{t}@{digest}", dest.name()),
        Target::Digest(_) => format!("{}@{digest}", dest.name()),
    };
    let subject = Subject {
        digest,
        media_type,
        size: manifest.len() as u64,
    };
    Ok((reference, subject))
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
                    .up
                    .push_file(&layer.file, &layer.digest, &progress)
                    .map_err(|e| pusher.up.name_layer(e, &what, &layer.digest))?;
                progress.layer(
                    i,
                    &layer.digest.to_string(),
                    pusher.up.outcome(pushed),
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
        self.up
            .push_bytes(&config, &config_digest)
            .context("pushing the image config")?;
        let manifest = match oci_manifest {
            Some(m) if !docker => m.clone(),
            _ => manifest(
                &config,
                layers.iter().map(|l| (l.compression, &l.digest, l.size)),
                docker,
            )?,
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
                .up
                .push_file(&layer.file, &layer.digest, &progress)
                .map_err(|e| self.up.name_layer(e, &layer.what, &layer.digest))?;
            progress.layer(
                i,
                &layer.digest.to_string(),
                self.up.outcome(pushed),
                started.elapsed(),
            );
            Ok(())
        })?;
        crate::pool::map(configs.len(), self.opts.jobs, |i| {
            let config = configs[i];
            self.up
                .push_file(&config.file, &config.digest, &progress)
                .map_err(|e| self.up.name_layer(e, &config.what, &config.digest))
                .map(drop)
        })?;
        progress.finish();
        for m in &index.manifests {
            self.up
                .put_manifest(&m.digest.to_string(), &m.bytes, &m.media_type)?;
        }
        Ok(())
    }
}

/// Where an artifact that refers to an image was recorded.
pub enum Referred {
    /// The registry indexes it itself (the referrers API).
    ReferrersApi,
    /// The registry has no referrers API: the artifact is listed in the
    /// index under the tag `sha256-<hex of the subject>`, as ORAS and
    /// cosign do.
    FallbackTag(String),
}

/// Pushes `blob` as an OCI 1.1 artifact that refers to `subject`, an image
/// already in `dest`'s repository: the empty config, the blob as its one
/// layer (`media_type`, which is also the `artifactType`, and `title`),
/// and a manifest whose `subject` names the image. Where the registry has
/// no referrers API, the index under the fallback tag gets the manifest
/// added (others it lists are kept). Returns `HOST/REPO@sha256:...` of the
/// artifact and where it was recorded.
pub fn push_referrer(
    dest: &Reference,
    subject: &Subject,
    blob: &[u8],
    media_type: &str,
    title: &str,
    conn: &Connection,
) -> Result<(String, Referred)> {
    use crate::oci::media_type::{OCI_EMPTY, OCI_INDEX};
    use serde_json::json;
    let scopes = vec![format!("repository:{}:pull,push", dest.repo)];
    let client = Client::connect(conn, &dest.host, &dest.repo, scopes)?;
    let up = Uploader {
        client: &client,
        mount_from: None,
        chunk: crate::registry::upload::CHUNK,
        retries: conn.retries,
    };
    let empty = b"{}";
    let empty_digest = Digest::of(empty);
    let blob_digest = Digest::of(blob);
    up.push_bytes(empty, &empty_digest)
        .context("pushing the artifact's empty config")?;
    up.push_bytes(blob, &blob_digest)
        .with_context(|| format!("pushing {title}"))?;
    let manifest = crate::oci::canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": media_type,
        "config": {
            "mediaType": OCI_EMPTY,
            "digest": empty_digest,
            "size": empty.len(),
            "data": "e30=",
        },
        "layers": [{
            "mediaType": media_type,
            "digest": blob_digest,
            "size": blob.len(),
            "annotations": { "org.opencontainers.image.title": title },
        }],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
    }));
    let digest = up.put_manifest(&Digest::of(&manifest).to_string(), &manifest, OCI_MANIFEST)?;
    let reference = format!("{}@{digest}", dest.name());
    if crate::registry::fetch::has_referrers_api(&client, &subject.digest)? {
        return Ok((reference, Referred::ReferrersApi));
    }
    let tag = format!("sha256-{}", subject.digest.hex());
    let mut entries: Vec<serde_json::Value> = match crate::registry::fetch::manifest_if_any(
        &client, &tag,
    )? {
        Some((bytes, _)) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|index| index.get("manifests").and_then(|m| m.as_array()).cloned())
            .with_context(|| {
                format!(
                    "{}:{tag} is not an index of referrers; remove the tag or push without --sbom",
                    dest.name()
                )
            })?,
        None => Vec::new(),
    };
    entries.retain(|e| e["digest"] != json!(digest));
    entries.push(json!({
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": manifest.len(),
        "artifactType": media_type,
    }));
    entries.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    let index = crate::oci::canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    }));
    up.put_manifest(&tag, &index, OCI_INDEX)?;
    Ok((reference, Referred::FallbackTag(tag)))
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

struct Pusher<'a> {
    up: Uploader<'a>,
    opts: &'a PushOptions,
    /// Digests of layers made from the store by earlier pushes.
    cache: LayerCache,
}

impl Pusher<'_> {
    fn push_blob_layers(&self, image: &StoredImage) -> Result<(Vec<u8>, Vec<Done>)> {
        let progress = Progress::new(image.layers.len());
        let layers = crate::pool::map(image.layers.len(), self.opts.jobs, |i| {
            let layer = &image.layers[i];
            let started = Instant::now();
            let digest = blob_digest_remembered(layer, &self.cache)
                .map_err(|e| anyhow::anyhow!("{e:#}; nothing was tagged"))?;
            let pushed = self
                .up
                .push_file(&layer.file, &digest, &progress)
                .map_err(|e| self.up.name_layer(e, &layer.what, &digest))?;
            progress.layer(
                i,
                &digest.to_string(),
                self.up.outcome(pushed),
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
            let pushed = if self.up.exists(&digest)? {
                Some(Pushed::Skipped)
            } else if self.up.mount(&digest)? {
                Some(Pushed::Mounted)
            } else {
                None
            };
            if let Some(pushed) = pushed {
                progress.layer(index, &c.digest, self.up.outcome(pushed), started.elapsed());
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
                Err(err) if failures < self.up.retries && upload_can_restart(&err) => {
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
        let (pushed, info) = self.up.push_stream(
            &what,
            progress,
            counted,
            |w| Ok(write_blob(ctx, source, compression, self.opts.jobs, w)?.1),
            |info: &BlobInfo| (info.digest.clone(), info.size),
        )?;
        progress.layer(
            index,
            &info.digest.to_string(),
            self.up.outcome(pushed),
            started.elapsed(),
        );
        Ok(Done {
            digest: info.digest,
            size: info.size,
            diff_id: Some(info.diff_id),
            compression,
        })
    }
}

/// A stored layer's blob digest ([`StoredLayer::blob_digest`]), with what
/// checking a docker-archive's compressed layer found remembered in
/// `cache`: a blob checked before is hashed and not decompressed. A miss
/// reads the blob twice, which costs little beside the decompression it
/// saves next time.
fn blob_digest_remembered(layer: &StoredLayer, cache: &LayerCache) -> Result<Digest> {
    let (None, Some(diff_id)) = (&layer.digest, &layer.diff_id) else {
        return layer.blob_digest();
    };
    let digest = layer
        .file
        .digest()
        .with_context(|| format!("hashing {}", layer.what))?;
    let Some(key) = cache.blob_key(&digest, layer.file.size, layer.compression) else {
        return layer.blob_digest();
    };
    if cache
        .get(&key)
        .is_some_and(|c| c.digest == digest.to_string() && c.diff_id == diff_id.to_string())
    {
        return Ok(digest);
    }
    let checked = layer.blob_digest()?;
    cache.put(
        &key,
        &CachedLayer {
            digest: checked.to_string(),
            diff_id: diff_id.to_string(),
            size: layer.file.size,
        },
    );
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stored::BlobFile;

    fn layer(dir: &Path, name: &str, bytes: &[u8], diff_id: &Digest) -> StoredLayer {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        StoredLayer {
            digest: None,
            diff_id: Some(diff_id.clone()),
            compression: Compression::Gzip,
            file: BlobFile {
                path,
                offset: 0,
                size: bytes.len() as u64,
            },
            what: "layer 1".to_owned(),
        }
    }

    #[test]
    fn a_checked_blob_is_remembered_and_a_remembered_one_is_hashed_but_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::at(dir.path().join("cache"));
        let tar = b"the bytes of a tar".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let diff_id = Digest::of(&tar);

        let checked = layer(dir.path(), "gz", &gz, &diff_id);
        assert_eq!(
            blob_digest_remembered(&checked, &cache).unwrap(),
            Digest::of(&gz)
        );
        let key = cache
            .blob_key(&Digest::of(&gz), gz.len() as u64, Compression::Gzip)
            .unwrap();
        assert_eq!(cache.get(&key).unwrap().diff_id, diff_id.to_string());

        // Bytes that would not decompress, remembered as checked: only
        // hashed, so they pass.
        let junk = b"not gzip at all";
        let remembered = layer(dir.path(), "junk", junk, &diff_id);
        let junk_key = cache
            .blob_key(&Digest::of(junk), junk.len() as u64, Compression::Gzip)
            .unwrap();
        cache.put(
            &junk_key,
            &CachedLayer {
                digest: Digest::of(junk).to_string(),
                diff_id: diff_id.to_string(),
                size: junk.len() as u64,
            },
        );
        assert_eq!(
            blob_digest_remembered(&remembered, &cache).unwrap(),
            Digest::of(junk)
        );

        // A config that records another diff_id is checked in full.
        let other = layer(dir.path(), "gz2", &gz, &Digest::of(b"another tar"));
        let err = format!("{:#}", blob_digest_remembered(&other, &cache).unwrap_err());
        assert!(err.contains("but the image config records"), "{err}");
        let junk_other = layer(dir.path(), "junk2", junk, &Digest::of(b"another tar"));
        let err = format!(
            "{:#}",
            blob_digest_remembered(&junk_other, &cache).unwrap_err()
        );
        assert!(err.contains("data is damaged"), "{err}");
    }
}
