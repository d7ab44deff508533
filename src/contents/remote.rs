//! An image in a registry, read from its manifest and config only: no
//! layer is downloaded. The store paths of each layer are those its
//! history comment names (`store paths: ...`, as stevedore and nixpkgs'
//! dockerTools write them); their sizes are unknown.

use anyhow::{Context, Result};

use super::{Contents, Facts, Layer, LayerStorePath, STORE_DIR, StorePath};
use crate::oci::{Platform, Reference};
use crate::registry::{Connection, fetch};

/// Reads `docker://HOST/REPO:TAG` (or `@sha256:...`) for `platform`.
pub fn open_remote(
    image: &str,
    facts: &Facts,
    conn: &Connection,
    platform: &Platform,
) -> Result<Contents> {
    let reference = Reference::parse("image", image)?;
    let docs = fetch::documents(&reference, conn, platform)?;
    let config = fetch::config(&docs).with_context(|| format!("image {image}"))?;
    let mut contents = Contents::from_config(
        image.to_owned(),
        vec![format!("{}:{}", reference.name(), reference.target_str())]
            .into_iter()
            .filter(|_| !reference.target_str().starts_with("sha256:"))
            .collect(),
        &config,
        Some(docs.digest.clone()),
    )?;
    let diff_ids: Vec<Option<crate::digest::Digest>> = contents
        .config
        .pointer("/rootfs/diff_ids")
        .and_then(serde_json::Value::as_array)
        .map(|ids| {
            ids.iter()
                .map(|d| d.as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    let comments = contents.layer_comments(docs.blobs.layers.len());
    let media_types = layer_media_types(&docs.manifest);
    for (i, wanted) in docs.blobs.layers.iter().enumerate() {
        let compression = media_types
            .get(i)
            .and_then(|t| crate::oci::media_type::layer_compression(t).ok());
        let store_paths = comments[i]
            .as_deref()
            .map(paths_of_comment)
            .unwrap_or_default();
        for path in &store_paths {
            contents.store_paths.insert(
                path.clone(),
                StorePath {
                    layer: i,
                    ..Default::default()
                },
            );
        }
        contents.layers.push(Layer {
            digest: wanted.digest.clone(),
            diff_id: diff_ids.get(i).cloned().flatten(),
            compression,
            compressed_size: wanted.size,
            size: None,
            comment: comments[i].clone(),
            store_paths: store_paths
                .into_iter()
                .map(|path| LayerStorePath { path, size: None })
                .collect(),
            files: Vec::new(),
        });
    }
    super::graph::add_facts(&mut contents, None, facts)?;
    Ok(contents)
}

/// The media type of each layer the manifest lists.
fn layer_media_types(manifest: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|m| {
            m.get("layers").and_then(|l| l.as_array()).map(|layers| {
                layers
                    .iter()
                    .map(|l| {
                        l.get("mediaType")
                            .and_then(|t| t.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The store paths a history comment names: the words of a comment that
/// starts `store paths:` that are paths in the store.
pub(super) fn paths_of_comment(comment: &str) -> Vec<String> {
    let Some(list) = comment.strip_prefix("store paths:") else {
        return Vec::new();
    };
    let mut paths: Vec<String> = list
        .split_whitespace()
        .filter(|w| {
            w.strip_prefix(STORE_DIR)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
        })
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_name_store_paths() {
        assert_eq!(
            paths_of_comment("store paths: /nix/store/b-y /nix/store/a-x"),
            ["/nix/store/a-x", "/nix/store/b-y"]
        );
        assert!(paths_of_comment("store paths: none (all in lower layers)").is_empty());
        assert!(paths_of_comment("customisation layer: /nix/store/c-z").is_empty());
    }
}
