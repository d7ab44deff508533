//! Reading a docker-archive (`docker save`, dockerTools): `manifest.json`
//! picks the image; its config's `diff_ids` and its `layer.tar` members,
//! compressed or not, are the layers.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{BlobFile, Pick, StoredImage, StoredLayer, parse_digest};
use crate::compress::Compression;

pub(super) fn read(
    path: &Path,
    members: &BTreeMap<String, BlobFile>,
    pick: &Pick,
) -> Result<StoredImage> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let member = |name: &str| {
        members
            .get(name.trim_start_matches("./"))
            .cloned()
            .with_context(|| format!("manifest.json names {name:?}, which is not in the archive"))
    };
    let manifest: Vec<Entry> = serde_json::from_slice(&member("manifest.json")?.read()?)
        .context("manifest.json is not a docker-archive manifest")?;
    let entry = match (manifest.as_slice(), pick) {
        ([], _) => bail!("manifest.json lists no image"),
        ([one], Pick::Only) => one,
        (many, Pick::Only) => bail!(
            "manifest.json lists {} images; push takes an archive with one",
            many.len()
        ),
        (many, _) if pick.is_any() => &many[0],
        (many, _) => many
            .iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| pick.matches(t)))
            .with_context(|| format!("manifest.json has no image tagged {}", pick.describe()))?,
    };
    let config = member(&entry.config)?.read()?;
    let parsed: Config = serde_json::from_slice(&config)
        .with_context(|| format!("{} is not an image config", entry.config))?;
    if parsed.rootfs.diff_ids.len() != entry.layers.len() {
        bail!(
            "the config has {} diff_ids for {} layers",
            parsed.rootfs.diff_ids.len(),
            entry.layers.len()
        );
    }
    let mut layers = Vec::new();
    for (i, (name, diff_id)) in entry.layers.iter().zip(&parsed.rootfs.diff_ids).enumerate() {
        let what = format!("layer {} ({name} in {})", i + 1, path.display());
        let file = member(name)?;
        let compression = file.sniff()?;
        let diff_id = parse_digest(diff_id, &what)?;
        layers.push(StoredLayer {
            digest: (compression == Compression::None).then(|| diff_id.clone()),
            diff_id: Some(diff_id),
            compression,
            file,
            what,
        });
    }
    Ok(StoredImage {
        config,
        layers,
        oci_manifest: None,
        names: entry.repo_tags.clone().unwrap_or_default(),
    })
}
