//! Images on disk, as stevedore and its peers store them: a docker-archive
//! (`docker save`, dockerTools), an OCI layout directory or an oci-archive
//! (skopeo, podman, umoci), read in place, nothing unpacked. This module
//! finds an image's config and layer blobs, walks indexes and picks an
//! image by name, tag and platform; it knows nothing of how images are
//! built, and a `streamLayeredImage` launcher is not its business
//! ([`crate::source`] turns one into an image).
//!
//! - An OCI layout or oci-archive: the manifest, config and layer blobs as
//!   they are, named by digest. A multi-platform image (an index of
//!   images, nested or not, or `index.json` entries that differ by
//!   platform) is read for this machine's platform ([`Platform::host`])
//!   when one image is wanted ([`open`]), and whole when it is pushed
//!   ([`open_index`]).
//! - A docker-archive: `manifest.json`, the config and each `layer.tar`
//!   (compressed or not); the config's `diff_ids` are what the build
//!   recorded. One compressed as a whole is first expanded ([`expand`]).

mod docker_archive;
pub mod layout;
mod pick;
mod tar_members;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::compress::Compression;
use crate::digest::Digest;
#[cfg(doc)]
use crate::oci::Platform;

pub use layout::{Blobs, DirBlobs, IndexDocument, IndexImage, LayoutManifest, NamedBlob, TarBlobs};
pub use pick::Pick;
pub use tar_members::members;

/// Where a blob's bytes are: a file, or a member of a tar.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// The largest document (manifest, index, config, `manifest.json`) read
/// whole into memory; a blob that says it is larger is refused before a
/// byte is read.
pub const DOCUMENT_LIMIT: u64 = 16 << 20;

impl BlobFile {
    /// Reads the whole blob (configs and manifests), up to
    /// [`DOCUMENT_LIMIT`].
    pub fn read(&self) -> Result<Vec<u8>> {
        if self.size > DOCUMENT_LIMIT {
            bail!(
                "{} is {} bytes; documents (manifests, indexes, configs) are read whole, up to {DOCUMENT_LIMIT} bytes",
                self.path.display(),
                self.size
            );
        }
        let mut file =
            File::open(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::with_capacity(self.size as usize);
        file.take(self.size)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", self.path.display()))?;
        if bytes.len() as u64 != self.size {
            bail!("{} is shorter than its index says", self.path.display());
        }
        Ok(bytes)
    }

    /// The digest of the blob's bytes.
    pub fn digest(&self) -> Result<Digest> {
        let mut file =
            File::open(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut hashing = crate::digest::HashingWriter::new(std::io::sink());
        let n = std::io::copy(&mut file.take(self.size), &mut hashing)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let (_, digest, _) = hashing.finish();
        if n != self.size {
            bail!("{} is shorter than its index says", self.path.display());
        }
        Ok(digest)
    }
}

impl BlobFile {
    /// The blob's bytes, from its start.
    pub fn reader(&self) -> Result<impl Read + use<>> {
        let mut f =
            File::open(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        f.seek(SeekFrom::Start(self.offset))?;
        Ok(f.take(self.size))
    }

    /// Copies the whole blob to `w`.
    pub fn copy_to(&self, w: &mut impl Write) -> Result<()> {
        let n = std::io::copy(&mut self.reader()?, w)
            .with_context(|| format!("copying {}", self.path.display()))?;
        if n != self.size {
            bail!("{} is shorter than its index says", self.path.display());
        }
        Ok(())
    }

    /// The compression the blob's first bytes show.
    pub fn sniff(&self) -> Result<Compression> {
        let mut magic = [0u8; 4];
        let n = self.reader()?.read(&mut magic)?;
        Ok(Compression::sniff(&magic[..n]))
    }
}

/// The digest of a compressed layer blob and of its uncompressed tar (its
/// diff_id), in one pass.
pub fn digest_and_diff_id(file: &BlobFile, compression: Compression) -> Result<(Digest, Digest)> {
    let mut f =
        File::open(&file.path).with_context(|| format!("reading {}", file.path.display()))?;
    f.seek(SeekFrom::Start(file.offset))?;
    let mut compressed = crate::digest::HashingReader::new(std::io::BufReader::with_capacity(
        256 * 1024,
        f.take(file.size),
    ));
    let mut tar = crate::digest::HashingWriter::new(std::io::sink());
    let failed = |e| anyhow::anyhow!("its {compression:?} data is damaged ({e})");
    let mut decoder = compression.decoder(&mut compressed).map_err(failed)?;
    std::io::copy(&mut decoder, &mut tar).map_err(failed)?;
    drop(decoder);
    // Whatever follows the compressed stream is part of the blob too.
    std::io::copy(&mut compressed, &mut std::io::sink()).map_err(failed)?;
    let (digest, n) = compressed.finish();
    if n != file.size {
        bail!("{} is shorter than its index says", file.path.display());
    }
    Ok((digest, tar.finish().1))
}

/// A layer stored as a blob.
#[derive(Clone, Debug)]
pub struct StoredLayer {
    /// Known from an OCI manifest; a docker-archive's compressed layers
    /// are hashed when pushed.
    pub digest: Option<Digest>,
    /// The uncompressed digest the build recorded (docker-archive configs).
    pub diff_id: Option<Digest>,
    pub compression: Compression,
    pub file: BlobFile,
    /// How messages name the layer: `layer 2 (abc.../layer.tar)`.
    pub what: String,
}

impl StoredLayer {
    /// The digest of the blob: the one the manifest gives; a
    /// docker-archive's compressed layer is hashed, and checked against
    /// the diff_id its config records.
    pub fn blob_digest(&self) -> Result<Digest> {
        match (&self.digest, &self.diff_id) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(diff_id)) => {
                let (digest, content) = digest_and_diff_id(&self.file, self.compression)
                    .with_context(|| self.what.clone())?;
                if &content != diff_id {
                    bail!(
                        "{}: its content is {content} but the image config records {diff_id}",
                        self.what
                    );
                }
                Ok(digest)
            }
            (None, None) => self
                .file
                .digest()
                .with_context(|| format!("hashing {}", self.what)),
        }
    }
}

/// An image whose blobs exist.
pub struct StoredImage {
    pub config: Vec<u8>,
    pub layers: Vec<StoredLayer>,
    /// The manifest as an OCI layout holds it, pushed unchanged.
    pub oci_manifest: Option<Vec<u8>>,
    /// The names the archive or layout gives the image (`RepoTags`, or the
    /// reference or tag annotations of `index.json`), a full reference
    /// first where there is one.
    pub names: Vec<String>,
}

impl StoredImage {
    /// `NAME:TAG` as the archive or layout records it, if it does.
    pub fn reference(&self) -> Option<&str> {
        self.names.first().map(String::as_str).filter(|n| {
            n.rsplit_once(':')
                .is_some_and(|(_, tag)| !tag.contains('/'))
        })
    }
}

/// Reads an image whose blobs exist: an OCI layout directory, an
/// oci-archive or a docker-archive. `what` starts error messages
/// (`source`, `fromImage`). A layout's index of images for several
/// platforms gives its image for this machine ([`Platform::host`]).
pub fn open(path: &Path, pick: &Pick, what: &str) -> Result<StoredImage> {
    open_for(path, pick, &crate::oci::Platform::host(), what)
}

/// [`open`], taking a layout's image for `platform` rather than this
/// machine's.
pub fn open_for(
    path: &Path,
    pick: &Pick,
    platform: &crate::oci::Platform,
    what: &str,
) -> Result<StoredImage> {
    match holding(path, what)? {
        Holding::Layout(blobs, kind) => layout::read_image(path, blobs.as_ref(), pick, platform)
            .with_context(|| format!("{what} {} ({kind})", path.display())),
        Holding::DockerArchive(members) => docker_archive::read(path, &members, pick)
            .with_context(|| format!("{what} {} (a docker-archive)", path.display())),
    }
}

/// The multi-platform image of an OCI layout or oci-archive whose
/// `index.json` names one index of images, read whole; `None` for any
/// other image. `what` starts error messages.
pub fn open_index(path: &Path, what: &str) -> Result<Option<IndexImage>> {
    match holding(path, what)? {
        Holding::Layout(blobs, kind) => layout::read_index_image(blobs.as_ref())
            .with_context(|| format!("{what} {} ({kind})", path.display())),
        Holding::DockerArchive(_) => Ok(None),
    }
}

/// What an image path holds.
pub enum Holding {
    /// An OCI layout (a directory, or an oci-archive's members), and which
    /// of the two, for messages.
    Layout(Box<dyn Blobs>, &'static str),
    /// A docker-archive's members.
    DockerArchive(BTreeMap<String, BlobFile>),
}

/// Tells what the image at `path` is: a directory is an OCI layout; a tar
/// is a docker-archive or an oci-archive by the members it has.
pub fn holding(path: &Path, what: &str) -> Result<Holding> {
    let md = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    if md.is_dir() {
        return Ok(Holding::Layout(
            Box::new(DirBlobs(path.to_owned())),
            "an OCI layout",
        ));
    }
    let members = members(path).with_context(|| format!("{what} {}", path.display()))?;
    if members.contains_key("manifest.json") {
        Ok(Holding::DockerArchive(members))
    } else if members.contains_key("index.json") {
        Ok(Holding::Layout(
            Box::new(TarBlobs(members)),
            "an oci-archive",
        ))
    } else {
        bail!(
            "{what} {}: not an image (a docker-archive, an OCI layout or oci-archive, or a streamLayeredImage launcher)",
            path.display()
        )
    }
}

/// A path whose image [`open`] can read in place: a directory or an
/// uncompressed archive as it is; an archive compressed as a whole (as
/// dockerTools' `buildImage` writes with a compressor) is decompressed to
/// the new file `scratch`, at most `limit` bytes (`limit_name` says how to
/// raise it).
pub fn expand(path: &Path, scratch: &Path, limit: u64, limit_name: &str) -> Result<PathBuf> {
    let md = std::fs::metadata(path)?;
    if md.is_dir() {
        return Ok(path.to_owned());
    }
    let mut head = [0u8; 4];
    let n = File::open(path)?.read(&mut head)?;
    let compression = Compression::sniff(&head[..n]);
    if compression == Compression::None {
        return Ok(path.to_owned());
    }
    let mut w = BufWriter::new(File::create(scratch)?);
    let mut r = compression.decoder(BufReader::new(File::open(path)?))?;
    let mut copied = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).context("decompressing the archive")?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > limit {
            bail!(
                "the archive expands to more than {limit} bytes (the limit; set {limit_name} to change it)"
            );
        }
        w.write_all(&buf[..n])?;
    }
    w.flush()?;
    Ok(scratch.to_owned())
}

/// `blobs/sha256/<hex>`: where a layout keeps a blob.
pub fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn parse_digest(text: &str, what: &str) -> Result<Digest> {
    text.parse()
        .map_err(|e: String| anyhow::anyhow!("{what}: {e}"))
}
