//! docker-archives: hand-made ones (layers and manifest as a test wants
//! them, hostile ones too), and reading the layers of those stevedore made.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::digest::sha256;
use super::tar::{Members, tar_members, tar_of};

/// `bytes` gzipped at the best level.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 19).unwrap()
}

/// One layer blob and the diff_id its config records.
pub struct Blob {
    pub bytes: Vec<u8>,
    pub diff_id: String,
}

impl Blob {
    pub fn plain(tar: Vec<u8>) -> Blob {
        Blob {
            diff_id: sha256(&tar),
            bytes: tar,
        }
    }
    pub fn gzip(tar: &[u8]) -> Blob {
        Blob {
            diff_id: sha256(tar),
            bytes: gzip(tar),
        }
    }
    pub fn zstd(tar: &[u8]) -> Blob {
        Blob {
            diff_id: sha256(tar),
            bytes: zstd(tar),
        }
    }
}

/// The members of a docker-archive with one image of `layers`, tagged
/// `repo_tag` (or untagged), with the manifest's names overridable.
pub fn docker_members(
    layers: &[Blob],
    repo_tag: Option<&str>,
    prefix: &str,
) -> (Members, serde_json::Value) {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap();
    let config_name = format!("{prefix}{}.json", &sha256(&config)[7..]);
    let mut members = Vec::new();
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("{prefix}layer{i}/layer.tar");
        members.push((name.clone(), l.bytes.clone()));
        names.push(name);
    }
    members.push((config_name.clone(), config));
    let entry = json!({
        "Config": config_name,
        "RepoTags": repo_tag.map(|t| vec![t]),
        "Layers": names,
    });
    (members, entry)
}

/// Writes a docker-archive with one image of `layers` to `dir/image.tar`.
pub fn docker_archive(dir: &Path, layers: &[Blob]) -> PathBuf {
    let (mut members, entry) = docker_members(layers, Some("hostile:latest"), "");
    members.push((
        "manifest.json".into(),
        serde_json::to_vec(&[entry]).unwrap(),
    ));
    let path = dir.join("image.tar");
    fs::write(&path, tar_of(&members)).unwrap();
    path
}

/// A layer of a docker-archive: how it was compressed and its entry names
/// (without a leading `./`).
pub struct Layer {
    pub compression: &'static str,
    pub entries: Vec<String>,
    /// `sha256:...` of the blob as stored, and of its tar.
    pub digest: String,
    pub diff_id: String,
}

/// The layers of a docker-archive, in `manifest.json` order.
pub fn archive_layers(archive: &Path) -> Vec<Layer> {
    let files = tar_members(archive);
    let manifest: Value = serde_json::from_slice(
        files
            .get("manifest.json")
            .unwrap_or_else(|| panic!("{}: no manifest.json", archive.display())),
    )
    .unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    layers
        .iter()
        .map(|name| {
            let name = name.as_str().unwrap();
            let blob = files
                .get(name)
                .unwrap_or_else(|| panic!("{}: no layer {name}", archive.display()));
            let (compression, tar_bytes) = decompress(blob);
            let mut entries = Vec::new();
            for entry in tar::Archive::new(&tar_bytes[..]).entries().unwrap() {
                let entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                entries.push(path.strip_prefix("./").unwrap_or(&path).to_owned());
            }
            Layer {
                compression,
                entries,
                digest: sha256(blob),
                diff_id: sha256(&tar_bytes),
            }
        })
        .collect()
}

/// A layer blob's compression, by its magic number, and its tar bytes.
fn decompress(blob: &[u8]) -> (&'static str, Vec<u8>) {
    let mut out = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
        ("gzip", out)
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(blob)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        ("zstd", out)
    } else {
        ("none", blob.to_vec())
    }
}

/// The store paths (`/nix/store/NAME`) a layer holds.
pub fn store_paths_in(layer: &Layer) -> BTreeSet<String> {
    layer
        .entries
        .iter()
        .filter_map(|e| {
            let name = e.strip_prefix("nix/store/")?.split('/').next()?;
            (!name.is_empty()).then(|| format!("/nix/store/{name}"))
        })
        .collect()
}

/// The layer blobs of a docker-archive, by the digest of their bytes.
pub fn archive_layer_digests(archive: &Path) -> Vec<String> {
    let members = tar_members(archive);
    let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| sha256(&members[name.as_str().unwrap()]))
        .collect()
}
