//! Fetching an image from a registry, every blob checked against its
//! digest and its size.
//!
//! - The manifest is fetched by the reference's digest (or tag) and its
//!   bytes checked against the digest asked for. An index (OCI, or a
//!   Docker manifest list) is followed to the manifest of the platform
//!   asked for (os, architecture, variant).
//! - Blobs are downloaded into a work directory under `TMPDIR` (never
//!   `/var/tmp`, so it works in the Nix sandbox), named after the output,
//!   so a rerun after a failure finds the partial blobs and resumes each
//!   with an HTTP `Range` request. The work directory is removed once the
//!   output is written. `TMPDIR` may be shared with other users (`/tmp`),
//!   so the work directory lies in this user's own `stevedore-<uid>`
//!   (mode 0700, checked to be a directory this user owns that no one
//!   else may enter; when another user holds the name, the pull works in
//!   a fresh private directory and cannot resume). Files there are opened
//!   without following symlinks and made 0600; a blob found complete is
//!   used only after its digest is checked again. A pull holds a lock on
//!   its work directory, so two pulls to the same output take turns, and
//!   a blob named twice in one manifest is downloaded once.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::Connection;
use super::client::{Body, Client, backoff, header, is_html, is_transport};
use super::progress::{Outcome, Progress};
use crate::digest::{Digest, HashingWriter};
use crate::oci::media_type::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::oci::{Reference, Target};

/// The platform to pick from an index.
use crate::oci::platform::Platform;

/// Largest manifest or config read into memory.
use crate::stored::DOCUMENT_LIMIT;
#[derive(Clone, Debug, Deserialize)]
struct RemoteDescriptor {
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct RemoteDocument {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u64>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RemoteDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RemoteDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RemoteDescriptor>>,
}

/// A blob to fetch: its digest, size, and how messages name it.
pub struct Wanted {
    pub digest: Digest,
    pub size: u64,
    pub what: String,
}

/// An image fetched into its work directory: the manifest for the
/// platform asked for, the config, and every layer blob, checked.
pub struct Fetched {
    /// The image manifest's digest.
    pub digest: Digest,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub config: Wanted,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<Wanted>,
    /// Where each layer's blob is, in the work directory.
    pub paths: Vec<PathBuf>,
    work_dir: WorkDir,
}

impl Fetched {
    /// Removes the work directory, once the image is written elsewhere.
    pub fn done(self) {
        self.work_dir.done();
    }
}

/// Fetches `src` for `platform` into the work directory of the output
/// `out` (which names it, so a rerun resumes), on up to `jobs` threads.
pub fn fetch(
    src: &Reference,
    out: &Path,
    conn: &Connection,
    platform: &Platform,
    jobs: usize,
) -> Result<Fetched> {
    let Documents {
        client,
        digest,
        manifest,
        media_type,
        blobs: ImageBlobs {
            config: config_want,
            layers,
        },
    } = documents(src, conn, platform)?;
    let work_dir = WorkDir::lock(out, &digest)?;
    let work = &work_dir.path;
    let progress = Progress::new(layers.len());
    let config_bytes = {
        let path = download(&client, work, &config_want, &progress, conn.retries)?;
        fs::read(&path).with_context(|| format!("reading {}", path.display()))?
    };
    // Each blob once, however often the manifest names it: `unique` holds
    // the first layer of each digest, `slot` where a digest is in it.
    let mut slot: std::collections::BTreeMap<&Digest, usize> = Default::default();
    let mut unique = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        slot.entry(&layer.digest).or_insert_with(|| {
            unique.push(i);
            unique.len() - 1
        });
    }
    let fetched = crate::pool::map(unique.len(), jobs, |u| {
        let i = unique[u];
        let started = Instant::now();
        let before = partial_len(work, &layers[i].digest);
        let path = download(&client, work, &layers[i], &progress, conn.retries)?;
        let verb = if before > 0 { "resumed" } else { "downloaded" };
        progress.layer(
            i,
            &layers[i].digest.to_string(),
            Outcome::Moved {
                bytes: layers[i].size - before.min(layers[i].size),
                verb,
            },
            started.elapsed(),
        );
        Ok(path)
    })?;
    let paths: Vec<PathBuf> = layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let u = slot[&layer.digest];
            if unique[u] != i {
                progress.layer(
                    i,
                    &layer.digest.to_string(),
                    Outcome::Skipped("the same as an earlier layer".into()),
                    std::time::Duration::ZERO,
                );
            }
            fetched[u].clone()
        })
        .collect();
    progress.finish();

    Ok(Fetched {
        digest,
        manifest,
        media_type,
        config: config_want,
        config_bytes,
        layers,
        paths,
        work_dir,
    })
}

/// The image manifest of `src` for `platform`, as the registry has it,
/// byte for byte: an index is followed to the platform's manifest. What
/// `pullImageFromManifest` keeps as its lock file.
pub fn platform_manifest(
    src: &Reference,
    conn: &Connection,
    platform: &Platform,
) -> Result<Vec<u8>> {
    Ok(documents(src, conn, platform)?.manifest)
}

/// An image's manifest for a platform, found and checked, and the
/// connection that found it.
pub struct Documents {
    pub client: Client,
    /// The image manifest's digest.
    pub digest: Digest,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub blobs: ImageBlobs,
}

/// The manifest of `src` for `platform`: an index followed to its entry
/// for the platform, every document checked against its digest.
pub fn documents(src: &Reference, conn: &Connection, platform: &Platform) -> Result<Documents> {
    let client = pull_client(src, conn)?;
    let (mut manifest, mut media_type) = fetch_manifest(&client, &src.target_str())?;
    if let Target::Digest(want) = &src.target {
        check_document_digest(&manifest, want, "the manifest")?;
    }
    let mut digest = Digest::of(&manifest);
    if let Some((want, size)) = index_entry(&src.to_string(), &manifest, &media_type, platform)? {
        let (m, t) = fetch_manifest(&client, &want.to_string())?;
        check_document_digest(&m, &want, "the platform's manifest")?;
        if m.len() as u64 != size {
            bail!(
                "manifest {want} has {} bytes but the index says {size}",
                m.len()
            );
        }
        manifest = m;
        media_type = t;
        digest = want;
    }
    let blobs = image_blobs(&src.to_string(), &digest, &manifest, &media_type)?;
    Ok(Documents {
        client,
        digest,
        manifest,
        media_type,
        blobs,
    })
}

/// A client allowed to pull from `src`'s repository.
fn pull_client(src: &Reference, conn: &Connection) -> Result<Client> {
    Client::connect(
        conn,
        &src.host,
        &src.repo,
        vec![format!("repository:{}:pull", src.repo)],
    )
}

/// The config of an image whose manifest [`documents`] found, read into
/// memory and checked against its digest: what `inspect` of a registry
/// image reads, and no layer.
pub fn config(docs: &Documents) -> Result<Vec<u8>> {
    let want = &docs.blobs.config;
    let url = docs.client.url(&format!("blobs/{}", want.digest));
    let what = format!("GET {}", docs.client.describe(&url));
    let reply = docs.client.send("GET", &url, &[], Body::Empty)?;
    let reply = docs.client.expect(&what, reply, &[200])?;
    let bytes = read_document(reply, &what)?;
    check_document_digest(&bytes, &want.digest, "the config")?;
    Ok(bytes)
}

/// Fetches one blob of `src`'s repository into the file `out` (which
/// must not exist), checked against its digest and size: a blob of
/// `pullImageFromManifest`, each its own fixed-output derivation.
pub fn fetch_blob(src: &Reference, blob: &Wanted, out: &Path, conn: &Connection) -> Result<()> {
    let client = pull_client(src, conn)?;
    let work_dir = WorkDir::lock(out, &blob.digest)?;
    let progress = Progress::new(1);
    let path = download(&client, &work_dir.path, blob, &progress, conn.retries)?;
    progress.finish();
    fs::copy(&path, out).with_context(|| format!("writing {}", out.display()))?;
    work_dir.done();
    Ok(())
}

/// The entry an index (`media_type`, or a document with `manifests`)
/// has for `platform`: its digest and size. None when the document is no
/// index. `src` names the image in messages.
pub fn index_entry(
    src: &str,
    bytes: &[u8],
    media_type: &str,
    platform: &Platform,
) -> Result<Option<(Digest, u64)>> {
    let doc = parse_document(bytes, src)?;
    if !(media_type == OCI_INDEX || media_type == DOCKER_LIST || doc.manifests.is_some()) {
        return Ok(None);
    }
    let entries = doc.manifests.as_deref().unwrap_or(&[]);
    let entry =
        crate::oci::platform::choose(entries, |d| d.platform.as_ref(), platform).map_err(|e| {
            anyhow::anyhow!("{src}: the index {e}; choose one with --os, --arch and --variant")
        })?;
    let want: Digest = entry
        .digest
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{src}: index entry: {e}"))?;
    Ok(Some((want, entry.size)))
}

/// The blobs an image manifest names, checked: its media type, schema
/// version, a config no larger than [`DOCUMENT_LIMIT`], and digests.
pub struct ImageBlobs {
    pub config: Wanted,
    pub layers: Vec<Wanted>,
}

/// Reads an image manifest (`digest` names it in messages).
pub fn image_blobs(
    src: &str,
    digest: &Digest,
    bytes: &[u8],
    media_type: &str,
) -> Result<ImageBlobs> {
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        bail!(
            "{src}: manifest media type {media_type:?} is not an OCI or Docker schema 2 image manifest"
        );
    }
    let doc = parse_document(bytes, src)?;
    if doc.schema_version != Some(2) {
        bail!("{src}: manifest {digest} is not schemaVersion 2");
    }
    let config = doc
        .config
        .with_context(|| format!("{src}: manifest {digest} has no config"))?;
    let config = wanted(&config, "the config")?;
    if config.size > DOCUMENT_LIMIT {
        bail!(
            "{src}: the config is {} bytes, says manifest {digest}; configs are read whole, up to {DOCUMENT_LIMIT} bytes",
            config.size
        );
    }
    let layers = doc
        .layers
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, l)| wanted(l, &format!("layer {}", i + 1)))
        .collect::<Result<_>>()?;
    Ok(ImageBlobs { config, layers })
}

fn wanted(d: &RemoteDescriptor, what: &str) -> Result<Wanted> {
    let digest = d
        .digest
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{what}: {e}"))?;
    Ok(Wanted {
        what: format!("{what} ({digest})"),
        digest,
        size: d.size,
    })
}

fn check_document_digest(bytes: &[u8], want: &Digest, what: &str) -> Result<()> {
    let got = Digest::of(bytes);
    if &got != want {
        bail!("{what} the registry sent has digest {got}, not {want} as asked");
    }
    Ok(())
}

fn parse_document(bytes: &[u8], what: &str) -> Result<RemoteDocument> {
    serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("{what}: the manifest is not valid JSON: {e}"))
}

/// GETs a manifest or index; returns its bytes and media type.
fn fetch_manifest(client: &Client, target: &str) -> Result<(Vec<u8>, String)> {
    get_manifest(client, target, false).map(|found| found.expect("a missing one fails"))
}

/// Whether the registry answers the referrers API (OCI distribution 1.1)
/// for `subject`: an index, possibly empty. A registry without it answers
/// 404 (or 400, 405) for the unknown path.
pub fn has_referrers_api(client: &Client, subject: &Digest) -> Result<bool> {
    let url = client.url(&format!("referrers/{subject}"));
    let reply = client.send(
        "GET",
        &url,
        &[("accept", OCI_INDEX.to_owned())],
        Body::Empty,
    )?;
    let content_type = header(&reply, "content-type").unwrap_or_default();
    Ok(reply.status().as_u16() == 200 && content_type.starts_with(OCI_INDEX))
}

/// The body of an answer holding a document, up to [`DOCUMENT_LIMIT`].
fn read_document(reply: super::client::Reply, what: &str) -> Result<Vec<u8>> {
    reply
        .into_body()
        .with_config()
        .limit(DOCUMENT_LIMIT)
        .read_to_vec()
        .with_context(|| format!("reading {what}"))
}

/// GETs a manifest or index, or `None` when the registry has none under
/// `target`; its bytes and media type.
pub fn manifest_if_any(client: &Client, target: &str) -> Result<Option<(Vec<u8>, String)>> {
    get_manifest(client, target, true)
}

/// GETs a manifest or index; a missing one is `None` when `missing_ok`,
/// else an error.
fn get_manifest(
    client: &Client,
    target: &str,
    missing_ok: bool,
) -> Result<Option<(Vec<u8>, String)>> {
    let url = client.url(&format!("manifests/{target}"));
    let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
    let reply = client.send("GET", &url, &[("accept", accept)], Body::Empty)?;
    let what = format!("GET {}", client.describe(&url));
    if reply.status().as_u16() == 404 {
        if missing_ok {
            return Ok(None);
        }
        let what = format!("{}: no such manifest or repository", client.describe(&url));
        bail!("{}", client.error_line(&what, reply));
    }
    let reply = client.expect(&what, reply, &[200])?;
    if is_html(&reply) {
        bail!("{}", client.error_line(&what, reply));
    }
    let content_type = header(&reply, "content-type").unwrap_or_default();
    let bytes = read_document(reply, &what)?;
    let media_type = match content_type.split(';').next().unwrap_or("").trim() {
        "" | "application/json" | "text/plain" => parse_document(&bytes, &what)?
            .media_type
            .unwrap_or_default(),
        t => t.to_owned(),
    };
    Ok(Some((bytes, media_type)))
}

/// The work directory of a pull into `out`, locked: the same for a
/// rerun, so partial blobs are found again. Removed when dropped after
/// a pull that wrote its output ([`WorkDir::done`]); kept after a
/// failure, for the rerun.
struct WorkDir {
    path: PathBuf,
    /// The lock (`flock` on `lock` inside), held while this lives.
    _lock: File,
    /// A fresh private directory holding it, not to be found again:
    /// removed however the pull ends.
    fresh: Option<PathBuf>,
}

impl WorkDir {
    fn lock(out: &Path, manifest: &Digest) -> Result<WorkDir> {
        let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_owned());
        let key = Digest::of(format!("{}\n{manifest}", abs.display()).as_bytes());
        let name = format!("pull-{}", &key.hex()[..16]);
        let (parent, fresh) = match private_dir()? {
            Some(dir) => (dir, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("stevedore-pull-")
                    .tempdir()
                    .context("making a private work directory")?
                    .keep();
                (dir.clone(), Some(dir))
            }
        };
        let path = parent.join(name);
        // A pull that finished meanwhile removed the directory and its
        // lock file: the lock held must be the one at the path.
        for _ in 0..100 {
            make_private_dir(&path, true)?;
            let lock_path = path.join("lock");
            let lock = open_private(&lock_path, false)?;
            // SAFETY: a descriptor owned here.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!(
                    "locking {}: {}",
                    lock_path.display(),
                    std::io::Error::last_os_error()
                );
            }
            let held = lock.metadata()?;
            if fs::symlink_metadata(&lock_path)
                .is_ok_and(|m| m.dev() == held.dev() && m.ino() == held.ino())
            {
                return Ok(WorkDir {
                    path,
                    _lock: lock,
                    fresh,
                });
            }
        }
        bail!("{}: another pull keeps removing it", path.display())
    }

    /// The pull wrote its output: the blobs are not needed again.
    fn done(self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.fresh {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// `TMPDIR/stevedore-<uid>`, made or checked: a directory (not a
/// symlink) this user owns, that no other user may enter. None when
/// another user holds the name, or it is not safe to use.
fn private_dir() -> Result<Option<PathBuf>> {
    // SAFETY: no arguments.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("stevedore-{uid}"));
    make_private_dir(&dir, false).map(Some).or_else(|e| {
        eprintln!(
            "stevedore: warning: {}; pulling into a fresh directory, which cannot be resumed",
            crate::terminal::escape(&format!("{e:#}"))
        );
        Ok(None)
    })
}

/// Makes `dir` with mode 0700, or checks that the one there is a
/// directory of this user's that no one else may enter. Inside a private
/// directory (`within_private`), a looser mode is this user's own doing
/// and is tightened.
fn make_private_dir(dir: &Path, within_private: bool) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(dir.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let md = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    // SAFETY: no arguments.
    let uid = unsafe { libc::geteuid() };
    if !md.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if md.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to this user",
            dir.display(),
            md.uid()
        );
    }
    if md.mode() & 0o077 != 0 && within_private {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    } else if md.mode() & 0o077 != 0 {
        bail!(
            "{} has mode {:o}: other users may enter it",
            dir.display(),
            md.mode() & 0o7777
        );
    }
    Ok(dir.to_owned())
}

/// Opens a file of the work directory for writing (appending or not),
/// made 0600 if new, never through a symlink.
fn open_private(path: &Path, append: bool) -> Result<File> {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if append {
        options.append(true);
    }
    options
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn partial_path(work: &Path, digest: &Digest) -> PathBuf {
    work.join(format!("{}.partial", digest.hex()))
}

fn partial_len(work: &Path, digest: &Digest) -> u64 {
    fs::metadata(partial_path(work, digest)).map_or(0, |m| m.len())
}

/// Downloads a blob into `work/<hex>`, resuming `work/<hex>.partial`, and
/// checks its size and digest.
fn download(
    client: &Client,
    work: &Path,
    blob: &Wanted,
    progress: &Progress,
    retries: u32,
) -> Result<PathBuf> {
    let done = work.join(blob.digest.hex());
    // A blob a failed pull finished: its bytes are checked again.
    if fs::symlink_metadata(&done).is_ok_and(|m| m.is_file() && m.len() == blob.size)
        && file_digest(&done).is_ok_and(|d| d == blob.digest)
    {
        return Ok(done);
    }
    let _ = fs::remove_file(&done);
    let partial = partial_path(work, &blob.digest);
    let url = client.url(&format!("blobs/{}", blob.digest));
    let mut failures = 0;
    loop {
        match fetch_into(client, &url, &partial, blob, progress) {
            Ok(()) => break,
            Err(err) if (is_transport(&err) || err.is::<ShortBody>()) && failures < retries => {
                failures += 1;
                std::thread::sleep(backoff(failures, None));
            }
            Err(err) => return Err(err.context(blob.what.clone())),
        }
    }
    let got = file_digest(&partial)?;
    if got != blob.digest {
        let _ = fs::remove_file(&partial);
        bail!(
            "{}: the registry sent bytes whose digest is {got}; nothing was written",
            blob.what
        );
    }
    fs::rename(&partial, &done).with_context(|| format!("renaming {}", partial.display()))?;
    Ok(done)
}

/// One GET of a blob into its partial file, from where the file ends.
fn fetch_into(
    client: &Client,
    url: &str,
    partial: &Path,
    blob: &Wanted,
    progress: &Progress,
) -> Result<()> {
    let mut have = fs::metadata(partial).map_or(0, |m| m.len());
    if have > blob.size {
        fs::remove_file(partial).ok();
        have = 0;
    }
    if have == blob.size && have > 0 {
        return Ok(());
    }
    let headers: Vec<(&str, String)> = if have > 0 {
        vec![("range", format!("bytes={have}-"))]
    } else {
        vec![]
    };
    let reply = client.send("GET", url, &headers, Body::Empty)?;
    let what = format!("GET {}", client.describe(url));
    if have > 0 && reply.status().as_u16() == 416 {
        bail!(
            "the registry has only {have} bytes but the manifest says {}",
            blob.size
        );
    }
    let reply = client.expect(&what, reply, &[200, 206])?;
    if is_html(&reply) {
        bail!("{}", client.error_line(&what, reply));
    }
    let mut file = if reply.status().as_u16() == 206 {
        open_private(partial, true)?
    } else {
        have = 0;
        let file = open_private(partial, false)?;
        file.set_len(0)
            .with_context(|| format!("truncating {}", partial.display()))?;
        file
    };
    if let Some(len) = header(&reply, "content-length").and_then(|l| l.parse::<u64>().ok())
        && have + len > blob.size
    {
        bail!(
            "the registry has {} bytes but the manifest says {}",
            have + len,
            blob.size
        );
    }
    let mut body = reply.into_body().into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = have;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().ok();
                return Err(anyhow::Error::new(e).context(format!("reading {what}")));
            }
        };
        if got + n as u64 > blob.size {
            drop(file);
            let _ = fs::remove_file(partial);
            bail!(
                "the registry sent more than the {} bytes the manifest says",
                blob.size
            );
        }
        file.write_all(&buf[..n])
            .with_context(|| format!("writing {}", partial.display()))?;
        got += n as u64;
        progress.add(n as u64);
    }
    file.flush()
        .with_context(|| format!("writing {}", partial.display()))?;
    if got < blob.size {
        // A body that ended early without an error is a cut connection
        // to resume, unless the registry holds no more.
        return Err(ShortBody(format!(
            "the registry sent {got} of the {} bytes the manifest says",
            blob.size
        ))
        .into());
    }
    Ok(())
}

/// A blob body that ended before the size the manifest gives.
#[derive(Debug)]
struct ShortBody(String);

impl std::fmt::Display for ShortBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShortBody {}

fn file_digest(path: &Path) -> Result<Digest> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut hashing = HashingWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut hashing)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(hashing.finish().1)
}
