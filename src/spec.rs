//! The image spec: the versioned JSON contract between the Nix library and
//! the helper (`docs/spec.md`). Parsing is strict: unknown fields and
//! unknown versions are errors that name the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The spec version this helper reads.
pub const VERSION: u64 = 1;

/// Default `created` and `mtime`: one second after the epoch, as dockerTools.
pub const DEFAULT_TIME: &str = "1970-01-01T00:00:01Z";

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub version: u64,
    /// Repository name, such as `hello` or `registry.example.com/team/hello`.
    pub name: String,
    #[serde(default = "default_tag")]
    pub tag: String,
    /// RFC 3339 time of the image, or `"now"`.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// RFC 3339 time given to every file, or `"now"`; defaults to
    /// `created`, or to [`DEFAULT_TIME`] when `created` is `"now"`.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<String>,
    #[serde(default = "default_store_dir")]
    pub store_dir: PathBuf,
    /// Owner of store files.
    #[serde(default)]
    pub uid: u64,
    #[serde(default)]
    pub gid: u64,
    #[serde(default = "default_owner_name")]
    pub uname: String,
    #[serde(default = "default_owner_name")]
    pub gname: String,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default = "default_os")]
    pub os: String,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ConfigSpec,
    /// An image whose layers go first, unchanged (`fromImage`).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseSpec>,
    /// Store layers, lowest first.
    pub layers: Vec<LayerSpec>,
    /// The top layer, built from directory trees.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customisation: Option<CustomisationSpec>,
}

/// The base image: a docker-archive (compressed or not), an OCI layout or
/// oci-archive, or a launcher; `name` and `tag` pick one image of several.
/// With no `path`, the first of `layers` is the bottom image.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Layer images (OCI layouts of nix2container's `buildLayer`) whose
    /// layers go on top of the base's, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Store paths; each one with everything below it.
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomisationSpec {
    /// Directories whose contents are merged into `/`.
    pub trees: Vec<PathBuf>,
    /// Metadata files (see [`Metadata`]) giving the mode and owner of
    /// entries by destination path, over what the trees have on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataFiles>,
}

/// `metadata`: one file, or a list whose entries are merged (a destination
/// given by two files must be given alike).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum MetadataFiles {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl MetadataFiles {
    /// One file as a string, more as a list.
    pub fn new(mut files: Vec<PathBuf>) -> MetadataFiles {
        if files.len() == 1 {
            MetadataFiles::One(files.remove(0))
        } else {
            MetadataFiles::Many(files)
        }
    }

    pub fn files(&self) -> &[PathBuf] {
        match self {
            MetadataFiles::One(file) => std::slice::from_ref(file),
            MetadataFiles::Many(files) => files,
        }
    }

    /// The merged entries of every file.
    pub fn load(&self) -> Result<BTreeMap<String, EntryMetadata>> {
        let mut merged: BTreeMap<String, (EntryMetadata, &Path)> = BTreeMap::new();
        for file in self.files() {
            for (dest, entry) in Metadata::load(file)?.entries {
                match merged.get(&dest) {
                    Some((seen, from)) if *seen != entry => bail!(
                        "customisation metadata: /{dest} is given as {seen:?} by {} and as {entry:?} by {}",
                        from.display(),
                        file.display()
                    ),
                    Some(_) => {}
                    None => {
                        merged.insert(dest, (entry, file));
                    }
                }
            }
        }
        Ok(merged.into_iter().map(|(k, (e, _))| (k, e)).collect())
    }
}

/// Modes and owners of customisation entries, keyed by destination path
/// without leading `/`: what a tree looked like before the store
/// normalised it, with the owners `fakeRootCommands` gave.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub version: u64,
    pub entries: BTreeMap<String, EntryMetadata>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EntryMetadata {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

impl Metadata {
    pub fn load(path: &Path) -> Result<Metadata> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading customisation metadata {}", path.display()))?;
        let m: Metadata = serde_json::from_slice(&text)
            .with_context(|| format!("customisation metadata {}", path.display()))?;
        if m.version != VERSION {
            bail!(
                "customisation metadata {}: version {} is not supported",
                path.display(),
                m.version
            );
        }
        Ok(m)
    }
}

/// The runtime part of the image config, with the OCI field names.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ConfigSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "one_or_many"
    )]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "one_or_many"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker's extensions of the config, which the OCI types lack; kept
    /// in the config as given, and read by Docker and podman from
    /// docker-archives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// `Cmd` and `Entrypoint` as a list of strings, or one string that is the
/// whole list, as Docker reads them (a dockerTools `config.Cmd` may be a
/// script's store path).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|v| match v {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}

/// Docker's `Healthcheck`: the test command and its timing, in
/// nanoseconds as Docker writes them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
}

/// The `{}` values of `ExposedPorts` and `Volumes`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

fn default_tag() -> String {
    "latest".into()
}

fn default_store_dir() -> PathBuf {
    PathBuf::from("/nix/store")
}

fn default_owner_name() -> String {
    "root".into()
}

fn default_os() -> String {
    "linux".into()
}

impl Spec {
    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<Spec> {
        let text =
            std::fs::read(path).with_context(|| format!("reading spec {}", path.display()))?;
        // A spec may start with a `#!` line: the launcher that
        // streamLayeredImage writes is a spec run by `stevedore stream`.
        let body = match text.strip_prefix(b"#!") {
            Some(rest) => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(&[][..], |n| &rest[n + 1..]),
            None => &text[..],
        };
        Spec::parse(body).with_context(|| format!("spec {}", path.display()))
    }

    /// Parses a spec; the version is checked before any other field.
    pub fn parse(text: &[u8]) -> Result<Spec> {
        let value: serde_json::Value = serde_json::from_slice(text).context("invalid JSON")?;
        match value.get("version") {
            Some(v) if v.as_u64() == Some(VERSION) => {}
            Some(v) => bail!(
                "field version: spec version {v} is not supported; this stevedore reads version {VERSION}"
            ),
            None => bail!("field version is missing; this stevedore reads version {VERSION}"),
        }
        let spec: Spec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                anyhow::anyhow!("{inner}")
            } else {
                anyhow::anyhow!("field {path}: {inner}")
            }
        })?;
        if let Some(env) = &spec.config.env {
            for (i, var) in env.iter().enumerate() {
                if !var.contains('=') {
                    bail!("field config.Env[{i}]: {var:?} is not of the form NAME=VALUE");
                }
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", Spec::parse(text.as_bytes()).unwrap_err())
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let s = Spec::parse(br#"{"version":1,"name":"x","layers":[]}"#).unwrap();
        assert_eq!(s.tag, "latest");
        assert_eq!(s.store_dir, PathBuf::from("/nix/store"));
        assert_eq!((s.uid, s.gid, s.uname.as_str()), (0, 0, "root"));
        assert_eq!(s.os, "linux");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = err(r#"{"version":1,"name":"x","layers":[],"colour":1}"#);
        assert!(e.contains("colour"), "{e}");
        let e = err(r#"{"version":1,"name":"x","layers":[],"config":{"Cmdd":[]}}"#);
        assert!(e.contains("config") && e.contains("Cmdd"), "{e}");
        let e = err(r#"{"version":1,"name":"x","layers":[{"paths":[],"x":1}]}"#);
        assert!(e.contains("layers[0]"), "{e}");
    }

    #[test]
    fn versions_are_checked_first() {
        assert!(err(r#"{"version":2,"colour":1}"#).contains("version 2 is not supported"));
        assert!(err(r#"{"name":"x"}"#).contains("version is missing"));
    }

    #[test]
    fn env_needs_an_equals_sign() {
        let e = err(r#"{"version":1,"name":"x","layers":[],"config":{"Env":["A=1","B"]}}"#);
        assert!(e.contains("config.Env[1]"), "{e}");
    }

    #[test]
    fn metadata_is_one_file_or_a_list() {
        let s = Spec::parse(
            br#"{"version":1,"name":"x","layers":[],"customisation":{"trees":[],"metadata":"/m"}}"#,
        )
        .unwrap();
        let files = s.customisation.unwrap().metadata.unwrap();
        assert_eq!(files.files(), [PathBuf::from("/m")]);
        let s = Spec::parse(
            br#"{"version":1,"name":"x","layers":[],"customisation":{"trees":[],"metadata":["/m","/n"]}}"#,
        )
        .unwrap();
        let files = s.customisation.unwrap().metadata.unwrap();
        assert_eq!(files.files(), [PathBuf::from("/m"), PathBuf::from("/n")]);
        assert_eq!(
            serde_json::to_string(&MetadataFiles::new(vec!["/m".into()])).unwrap(),
            r#""/m""#
        );
    }

    #[test]
    fn metadata_files_merge_and_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let a = write(
            "a",
            r#"{"version":1,"entries":{"x":{"mode":493,"uid":0,"gid":0}}}"#,
        );
        let b = write(
            "b",
            r#"{"version":1,"entries":{"x":{"mode":493,"uid":0,"gid":0},"y":{"mode":420,"uid":5,"gid":5}}}"#,
        );
        let c = write(
            "c",
            r#"{"version":1,"entries":{"y":{"mode":420,"uid":6,"gid":6}}}"#,
        );
        let merged = MetadataFiles::new(vec![a.clone(), b.clone()])
            .load()
            .unwrap();
        assert_eq!(merged.keys().collect::<Vec<_>>(), ["x", "y"]);
        let e = format!("{:#}", MetadataFiles::new(vec![b, c]).load().unwrap_err());
        assert!(
            e.contains("/y") && e.contains("/b") && e.contains("/c"),
            "{e}"
        );
    }

    #[test]
    fn invalid_json_is_reported() {
        assert!(err("{").contains("invalid JSON"));
    }
}
