//! The digests of layers that `push` made from the store, kept between
//! runs, so a launcher's layer already in the registry costs one HEAD and
//! no reading of the store.
//!
//! A layer's bytes follow from what the image spec says about it (its
//! store paths and trees, times, owners, modes) and the compression, as
//! long as everything is in the Nix store, `/nix/store`, where nothing
//! changes once written. The key is the digest of exactly that (with
//! stevedore's version), so an entry can only be reused for the same
//! bytes. Layers of a spec whose store is another directory (its files
//! may change under the same names), and layers with a tree outside the
//! store, are never cached. Entries live in
//! `$XDG_CACHE_HOME/stevedore/layers` (or `~/.cache/...`); a cache that
//! cannot be read or written is no cache, never an error.
//!
//! Beside them, the same directory keeps what checking a compressed blob
//! found ([`LayerCache::blob_key`]): that the blob of this digest and size
//! decompresses to a tar of that diff_id. It is a fact about the bytes,
//! wherever they lie, so a docker-archive's layer that an earlier push
//! checked (in this archive or another) is hashed, not decompressed again.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::archive::LayerSource;
use crate::archive::plan::LayerSettings;
use crate::compress::Compression;
use crate::digest::Digest;
use crate::oci::canonical_json;
use crate::spec::EntryMetadata;

/// The one store whose paths never change once written.
const NIX_STORE: &str = "/nix/store";

/// What is kept about a layer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct CachedLayer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
}

pub struct LayerCache {
    dir: Option<PathBuf>,
}

impl LayerCache {
    /// The user's cache directory, if there is one.
    pub fn open() -> LayerCache {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            });
        LayerCache {
            dir: base.map(|b| b.join("stevedore").join("layers")),
        }
    }

    /// A cache in `dir`.
    #[cfg(test)]
    pub fn at(dir: PathBuf) -> LayerCache {
        LayerCache { dir: Some(dir) }
    }

    /// The key of a layer, or `None` when a tree lies outside the store.
    pub fn key(
        &self,
        ctx: &LayerSettings,
        source: &LayerSource,
        compression: Compression,
    ) -> Option<String> {
        self.dir.as_ref()?;
        if ctx.store_dir != std::path::Path::new(NIX_STORE)
            || !source.trees.iter().all(|t| t.starts_with(NIX_STORE))
            || !source.store_paths.iter().all(|p| p.starts_with(NIX_STORE))
        {
            return None;
        }
        #[derive(Serialize)]
        struct Key<'a> {
            stevedore: &'static str,
            compression: String,
            store_dir: &'a std::path::Path,
            mtime: u64,
            uid: u64,
            gid: u64,
            uname: &'a str,
            gname: &'a str,
            store_paths: &'a [PathBuf],
            trees: &'a [PathBuf],
            covered: Vec<String>,
            metadata: &'a BTreeMap<String, EntryMetadata>,
        }
        let owner = &ctx.store_owner;
        let key = Key {
            stevedore: env!("CARGO_PKG_VERSION"),
            compression: compression.encoding(),
            store_dir: &ctx.store_dir,
            mtime: ctx.mtime,
            uid: owner.uid,
            gid: owner.gid,
            uname: &owner.uname,
            gname: &owner.gname,
            store_paths: &source.store_paths,
            trees: &source.trees,
            covered: source
                .covered
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect(),
            metadata: &source.metadata,
        };
        Some(Digest::of(&canonical_json(&key)).hex().to_owned())
    }

    /// The key of what decompressing the blob `digest` of `size` bytes
    /// gives; `None` without a cache directory.
    pub fn blob_key(&self, digest: &Digest, size: u64, compression: Compression) -> Option<String> {
        self.dir.as_ref()?;
        #[derive(Serialize)]
        struct Key<'a> {
            blob: &'a str,
            size: u64,
            compression: String,
        }
        let key = Key {
            blob: digest.hex(),
            size,
            compression: compression.encoding(),
        };
        Some(Digest::of(&canonical_json(&key)).hex().to_owned())
    }

    pub fn get(&self, key: &str) -> Option<CachedLayer> {
        let text = fs::read(self.dir.as_ref()?.join(key)).ok()?;
        let entry: CachedLayer = serde_json::from_slice(&text).ok()?;
        // An entry that does not parse as digests is ignored.
        entry.digest.parse::<Digest>().ok()?;
        entry.diff_id.parse::<Digest>().ok()?;
        Some(entry)
    }

    /// Keeps an entry: written under a temporary name, then renamed.
    pub fn put(&self, key: &str, entry: &CachedLayer) {
        let Some(dir) = &self.dir else {
            return;
        };
        let _ = (|| -> std::io::Result<()> {
            fs::create_dir_all(dir)?;
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            fs::write(tmp.path(), serde_json::to_vec(entry)?)?;
            tmp.persist(dir.join(key)).map_err(|e| e.error)?;
            Ok(())
        })();
    }
}
