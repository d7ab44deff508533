//! `diff`: what changes from one image to another, in the terms a push
//! pays for: layers shared by digest, store paths added, removed or moved
//! to another layer, and the bytes of the new image's blobs the old one
//! lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::Contents;
use super::show::{binary_size, table};
use crate::digest::Digest;
use crate::terminal::escape;

/// What changes from `old` to `new`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub old: String,
    pub new: String,
    /// Layer digests both images have, in `new`'s order.
    pub shared_layers: Vec<Digest>,
    /// Layer digests only `new` has, in its order.
    pub added_layers: Vec<Digest>,
    /// Layer digests only `old` has, in its order.
    pub removed_layers: Vec<Digest>,
    pub added_store_paths: Vec<String>,
    pub removed_store_paths: Vec<String>,
    /// Store paths in both images whose layers hold other tars.
    pub moved_store_paths: Vec<Moved>,
    /// Blobs of `new` (layers and config) that `old` does not have.
    pub push_blobs: usize,
    /// Their bytes as stored: what a push of `new` after `old` sends.
    pub push_bytes: u64,
}

/// A store path in another layer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    pub path: String,
    /// Layer numbers, from 1.
    pub old_layer: usize,
    pub new_layer: usize,
}

/// Compares two images.
pub fn diff(old: &Contents, new: &Contents) -> Diff {
    let old_digests: BTreeSet<&Digest> = old.layers.iter().map(|l| &l.digest).collect();
    let new_digests: BTreeSet<&Digest> = new.layers.iter().map(|l| &l.digest).collect();
    let mut shared = Vec::new();
    let mut added = Vec::new();
    let mut push_bytes = 0;
    let mut seen = BTreeSet::new();
    for l in &new.layers {
        if old_digests.contains(&l.digest) {
            shared.push(l.digest.clone());
        } else {
            added.push(l.digest.clone());
            if seen.insert(&l.digest) {
                push_bytes += l.compressed_size;
            }
        }
    }
    let mut push_blobs = seen.len();
    if old.id != new.id {
        push_blobs += 1;
        push_bytes += new.config_size;
    }
    let removed = old
        .layers
        .iter()
        .filter(|l| !new_digests.contains(&l.digest))
        .map(|l| l.digest.clone())
        .collect();
    let old_paths: BTreeMap<&String, usize> =
        old.store_paths.iter().map(|(p, s)| (p, s.layer)).collect();
    let mut moved = Vec::new();
    let mut added_paths = Vec::new();
    for (path, s) in &new.store_paths {
        match old_paths.get(path) {
            None => added_paths.push(path.clone()),
            Some(&old_layer) if !same_content(&old.layers[old_layer], &new.layers[s.layer]) => {
                moved.push(Moved {
                    path: path.clone(),
                    old_layer: old_layer + 1,
                    new_layer: s.layer + 1,
                })
            }
            Some(_) => {}
        }
    }
    let removed_paths = old
        .store_paths
        .keys()
        .filter(|p| !new.store_paths.contains_key(*p))
        .cloned()
        .collect();
    Diff {
        old: old.image.clone(),
        new: new.image.clone(),
        shared_layers: shared,
        added_layers: added,
        removed_layers: removed,
        added_store_paths: added_paths,
        removed_store_paths: removed_paths,
        moved_store_paths: moved,
        push_blobs,
        push_bytes,
    }
}

/// Whether two layers hold the same tar: equal diff_ids where both are
/// known (a layer compressed anew is the same layer), else equal blobs.
fn same_content(a: &super::Layer, b: &super::Layer) -> bool {
    match (&a.diff_id, &b.diff_id) {
        (Some(x), Some(y)) => x == y,
        _ => a.digest == b.digest,
    }
}

impl Diff {
    /// The text `diff` prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let rows = vec![
            vec!["old".to_owned(), escape(&self.old)],
            vec!["new".into(), escape(&self.new)],
            vec![
                "layers".into(),
                format!(
                    "{} shared, {} added, {} removed",
                    self.shared_layers.len(),
                    self.added_layers.len(),
                    self.removed_layers.len()
                ),
            ],
            vec![
                "store paths".into(),
                format!(
                    "{} added, {} removed, {} moved",
                    self.added_store_paths.len(),
                    self.removed_store_paths.len(),
                    self.moved_store_paths.len()
                ),
            ],
            vec![
                "push".into(),
                format!(
                    "{} in {} blobs not in old",
                    binary_size(self.push_bytes),
                    self.push_blobs
                ),
            ],
        ];
        out.push_str(&table("", &rows));
        let mut rows = Vec::new();
        for p in &self.added_store_paths {
            rows.push(vec!["+".to_owned(), escape(p)]);
        }
        for p in &self.removed_store_paths {
            rows.push(vec!["-".to_owned(), escape(p)]);
        }
        for m in &self.moved_store_paths {
            rows.push(vec![
                "~".to_owned(),
                escape(&m.path),
                format!("layer {} -> {}", m.old_layer, m.new_layer),
            ]);
        }
        if !rows.is_empty() {
            let _ = writeln!(out);
            out.push_str(&table("", &rows));
        }
        out
    }
}
