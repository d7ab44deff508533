//! OCI layouts: the one most registry tests push (a file of noise in one
//! store path), and reading a layout's manifest and blobs by digest.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::digest::sha256;
use super::process::unique;
use super::spec::build_image;
use super::store::{noise, store_path_with};

/// A gzip OCI layout (`DIR/layout`) of one store path holding one file of
/// `size` noise bytes: the image most registry tests push.
pub fn one_file_layout(
    dir: &Path,
    path_prefix: &str,
    name: &str,
    size: usize,
    seed: u64,
) -> PathBuf {
    let data = store_path_with(
        &format!("{path_prefix}-{}", unique()),
        &[("f", noise(size, seed))],
    );
    build_image(dir, name, &[vec![&data]], "oci-dir", "gzip", "layout")
}

/// An OCI layout's manifest: digest, bytes, layer digests.
pub struct Layout {
    pub dir: PathBuf,
    pub digest: String,
    pub manifest: Vec<u8>,
}

impl Layout {
    pub fn read(dir: &Path) -> Layout {
        let index: Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        let manifest = fs::read(blob_path(dir, &digest)).unwrap();
        assert_eq!(sha256(&manifest), digest);
        Layout {
            dir: dir.to_owned(),
            digest,
            manifest,
        }
    }

    pub fn doc(&self) -> Value {
        serde_json::from_slice(&self.manifest).unwrap()
    }

    pub fn layers(&self) -> Vec<String> {
        self.doc()["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn config(&self) -> String {
        self.doc()["config"]["digest"].as_str().unwrap().to_owned()
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let bytes = fs::read(blob_path(&self.dir, digest)).unwrap();
        assert_eq!(
            sha256(&bytes),
            digest,
            "blob content does not match its name"
        );
        bytes
    }
}

/// Where a layout keeps the blob `digest`.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// A JSON document (manifest, index, config) of an OCI layout directory,
/// by digest (`sha256:...`).
pub fn blob_json(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&fs::read(blob_path(layout, digest)).unwrap()).unwrap()
}

/// The layer digests a manifest lists, lowest first.
pub fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}
