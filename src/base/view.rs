//! The file system a base image's layers add up to: every path with its
//! kind, mode, owner, layer and place in that layer's tar, whiteouts
//! applied ([`View::apply`], in [`super::scan`], puts a layer on it).

use std::collections::BTreeMap;

pub use crate::entry::EntryKind;

/// One path of the file system an image's layers add up to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ViewEntry {
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub mtime: u64,
    /// Data size of a file.
    pub size: u64,
    /// Symlink target.
    pub link: Vec<u8>,
    /// SHA-256 of a file's data.
    pub sha256: Option<[u8; 32]>,
    /// Which layer's tar holds the data, and where in it (the
    /// uncompressed tar).
    pub layer: usize,
    pub offset: u64,
}

/// Paths are keyed with `/` replaced by NUL, so that the map's byte order
/// is the component-by-component order of layers (a directory, then its
/// children) and a subtree is one contiguous range.
pub(super) fn key(path: &[u8]) -> Vec<u8> {
    path.iter()
        .map(|&b| if b == b'/' { 0 } else { b })
        .collect()
}

pub(super) fn unkey(key: &[u8]) -> Vec<u8> {
    key.iter().map(|&b| if b == 0 { b'/' } else { b }).collect()
}

/// The file system of an image: every path its layers leave, whiteouts
/// applied, in layer order (parents first, children by name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub(super) entries: BTreeMap<Vec<u8>, ViewEntry>,
}

impl View {
    /// The entry at a relative path (`etc/passwd`, no leading `/`).
    pub fn get(&self, path: &[u8]) -> Option<&ViewEntry> {
        self.entries.get(&key(path))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, parents before children: `(relative path, entry)`.
    pub fn iter(&self) -> impl Iterator<Item = (Vec<u8>, &ViewEntry)> {
        self.entries.iter().map(|(k, e)| (unkey(k), e))
    }

    /// The names directly below a directory (`nix/store`).
    pub fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let mut prefix = key(dir);
        prefix.push(0);
        self.entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains(&0))
            .map(|(k, _)| k[prefix.len()..].to_vec())
            .collect()
    }

    /// Removes `path` and everything below it.
    pub(super) fn remove_tree(&mut self, path: &[u8]) {
        let k = key(path);
        self.entries.remove(&k);
        self.remove_children(path);
    }

    /// Removes everything below `path`, keeping `path`.
    pub(super) fn remove_children(&mut self, path: &[u8]) {
        let mut prefix = key(path);
        prefix.push(0);
        let doomed: Vec<Vec<u8>> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }
}
