//! The JSON documents of an image: the config (with `rootfs.diff_ids` and one
//! `history` entry per layer), the OCI manifest and index, and the legacy
//! per-layer `json` of docker-archives. All are written with
//! [`canonical_json`], built from the `oci-spec` types.

use std::collections::HashMap;

use anyhow::{Context, Result};
use oci_spec::image::{
    ANNOTATION_REF_NAME, ConfigBuilder, DescriptorBuilder, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, PlatformBuilder,
    RootFsBuilder,
};
use serde::Serialize;
use serde_json::Value;

use super::Image;
use crate::compress::Compression;
use crate::digest::Digest;
use crate::oci::{canonical_json, media_type};

/// What the writer learnt about one layer blob.
#[derive(Clone, Debug)]
pub struct BlobInfo {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Digest and size of the blob as stored (compressed or not).
    pub digest: Digest,
    pub size: u64,
    /// How the blob is compressed: its media type.
    pub compression: Compression,
}

/// The image config.
pub fn image_config(image: &Image, diff_ids: &[Digest]) -> Result<Vec<u8>> {
    let c = &image.config;
    let mut config = ConfigBuilder::default();
    if let Some(v) = &c.env {
        config = config.env(v.clone());
    }
    if let Some(v) = &c.cmd {
        config = config.cmd(v.clone());
    }
    if let Some(v) = &c.entrypoint {
        config = config.entrypoint(v.clone());
    }
    if let Some(v) = &c.working_dir {
        config = config.working_dir(v.clone());
    }
    if let Some(v) = &c.user {
        config = config.user(v.clone());
    }
    if let Some(v) = &c.exposed_ports {
        config = config.exposed_ports(v.keys().cloned().collect::<Vec<_>>());
    }
    if let Some(v) = &c.volumes {
        config = config.volumes(v.keys().cloned().collect::<Vec<_>>());
    }
    if let Some(v) = &c.labels {
        config = config.labels(v.clone().into_iter().collect::<HashMap<_, _>>());
    }
    if let Some(v) = &c.stop_signal {
        config = config.stop_signal(v.clone());
    }
    let history = image
        .layers
        .iter()
        .map(|layer| {
            HistoryBuilder::default()
                .created(image.created.clone())
                .created_by("stevedore")
                .comment(layer.comment.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = ImageConfigurationBuilder::default()
        .created(image.created.clone())
        .architecture(image.architecture.as_str())
        .os(image.os.as_str())
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .build()?,
        )
        .history(history);
    if let Some(v) = &image.variant {
        builder = builder.variant(v.clone());
    }
    let built = with_docker_fields(serde_json::to_value(builder.build()?)?, c)?;
    Ok(match &image.base {
        None => canonical_json(&built),
        Some(base) => canonical_json(&on_base(&base.config, built)),
    })
}

/// The config with Docker's fields that the OCI types lack
/// (`Healthcheck`, `OnBuild`, `Shell`) added to its runtime part.
fn with_docker_fields(mut built: Value, c: &crate::spec::ConfigSpec) -> Result<Value> {
    let fields = [
        ("Healthcheck", serde_json::to_value(&c.healthcheck)?),
        ("OnBuild", serde_json::to_value(&c.on_build)?),
        ("Shell", serde_json::to_value(&c.shell)?),
    ];
    if let Some(Value::Object(runtime)) = built.get_mut("config") {
        for (key, value) in fields {
            if !value.is_null() {
                runtime.insert(key.to_owned(), value);
            }
        }
    }
    Ok(built)
}

/// A config on top of a base's: the base's runtime config with the new
/// image's fields over it (`Env` merged by name, the new value winning;
/// `Labels`, `ExposedPorts` and `Volumes` merged by key), the base's
/// history followed by the new layers', and the new image's `rootfs`,
/// times and platform. Fields the base has and stevedore does not write
/// are kept, but for the build container's (`container`,
/// `container_config`).
pub fn on_base(base: &Value, new: Value) -> Value {
    let Value::Object(mut out) = base.clone() else {
        return new;
    };
    out.remove("container");
    out.remove("container_config");
    let Value::Object(new) = new else {
        return Value::Object(out);
    };
    for (key, value) in new {
        match key.as_str() {
            "history" => {
                let mut history = out
                    .get("history")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                history.extend(value.as_array().cloned().unwrap_or_default());
                out.insert(key, Value::Array(history));
            }
            "config" => {
                let merged = merge_runtime(out.get("config"), value);
                out.insert(key, merged);
            }
            _ => {
                out.insert(key, value);
            }
        }
    }
    Value::Object(out)
}

fn merge_runtime(base: Option<&Value>, new: Value) -> Value {
    let mut out = match base {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let Value::Object(new) = new else {
        return Value::Object(out);
    };
    for (key, value) in new {
        let merged = match (key.as_str(), out.get(&key), value) {
            ("Env", Some(Value::Array(old)), Value::Array(new)) => {
                Value::Array(merge_env(old, &new))
            }
            (
                "Labels" | "ExposedPorts" | "Volumes",
                Some(Value::Object(old)),
                Value::Object(new),
            ) => {
                let mut m = old.clone();
                m.extend(new);
                Value::Object(m)
            }
            (_, _, value) => value,
        };
        out.insert(key, merged);
    }
    Value::Object(out)
}

/// `NAME=VALUE` lists merged by name: the base's order, each name once,
/// the new value where both have one, then the new names in their order.
fn merge_env(old: &[Value], new: &[Value]) -> Vec<Value> {
    fn name(v: &Value) -> &str {
        let s = v.as_str().unwrap_or_default();
        s.split_once('=').map_or(s, |(n, _)| n)
    }
    let mut out: Vec<Value> = Vec::new();
    for v in old.iter().chain(new) {
        match out.iter_mut().find(|o| name(o) == name(v)) {
            Some(slot) => *slot = v.clone(),
            None => out.push(v.clone()),
        }
    }
    out
}

/// The OCI image manifest for a config blob and layer blobs.
pub fn oci_manifest(config: &[u8], layers: &[BlobInfo]) -> Result<Vec<u8>> {
    manifest(
        config,
        layers.iter().map(|b| (b.compression, &b.digest, b.size)),
        false,
    )
}

/// The image manifest for a config blob and layer blobs (compression,
/// digest, size), OCI or Docker schema 2 (which has no zstd layers).
pub fn manifest<'a>(
    config: &[u8],
    layers: impl IntoIterator<Item = (Compression, &'a Digest, u64)>,
    docker: bool,
) -> Result<Vec<u8>> {
    let layers = layers
        .into_iter()
        .map(|(compression, digest, size)| {
            let media_type = if docker {
                media_type::docker_layer(compression)
                    .context("Docker schema 2 has no zstd layers")?
            } else {
                media_type::oci_layer(compression)
            };
            Ok(DescriptorBuilder::default()
                .media_type(MediaType::from(media_type))
                .digest(digest)
                .size(size)
                .build()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(media_type::manifest(docker)))
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::from(media_type::config(docker)))
                .digest(&Digest::of(config))
                .size(config.len() as u64)
                .build()?,
        )
        .layers(layers)
        .build()?;
    Ok(canonical_json(&manifest))
}

/// The OCI index of a build, naming the manifest by the image's tag.
pub fn oci_index(image: &Image, manifest: &[u8]) -> Result<Vec<u8>> {
    let mut platform = PlatformBuilder::default()
        .architecture(image.architecture.as_str())
        .os(image.os.as_str());
    if let Some(v) = &image.variant {
        platform = platform.variant(v.clone());
    }
    index_of_one(
        manifest,
        media_type::OCI_MANIFEST,
        Some(platform.build()?),
        Some(&image.reference()),
    )
}

/// The index of a layout that holds one image: its manifest (of
/// `media_type`), for `platform` when given, named `reference`
/// (`name:tag`) when given, with the annotations containerd and the OCI
/// spec read (the whole reference, and the tag).
pub fn index_of_one(
    manifest: &[u8],
    media_type: &str,
    platform: Option<oci_spec::image::Platform>,
    reference: Option<&str>,
) -> Result<Vec<u8>> {
    let mut descriptor = DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(&Digest::of(manifest))
        .size(manifest.len() as u64);
    if let Some(platform) = platform {
        descriptor = descriptor.platform(platform);
    }
    if let Some(reference) = reference {
        let tag = reference.rsplit_once(':').map_or(reference, |(_, t)| t);
        descriptor = descriptor.annotations(HashMap::from([
            (ANNOTATION_REF_NAME.to_owned(), tag.to_owned()),
            ("io.containerd.image.name".to_owned(), reference.to_owned()),
        ]));
    }
    let descriptor = descriptor.build()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor])
        .build()?;
    Ok(canonical_json(&index))
}

/// An index of images for several platforms: one entry per image
/// manifest (an OCI manifest), with its platform, in the order given.
pub fn platform_index(manifests: &[(Vec<u8>, oci_spec::image::Platform)]) -> Result<Vec<u8>> {
    let entries = manifests
        .iter()
        .map(|(manifest, platform)| {
            Ok(DescriptorBuilder::default()
                .media_type(MediaType::from(media_type::OCI_MANIFEST))
                .digest(&Digest::of(manifest))
                .size(manifest.len() as u64)
                .platform(platform.clone())
                .build()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()?;
    Ok(canonical_json(&index))
}

/// The per-layer `json` of the legacy docker-archive format, for loaders
/// that predate `manifest.json`.
pub fn legacy_layer_json(image: &Image, index: usize) -> Vec<u8> {
    #[derive(Serialize)]
    struct LegacyLayer<'a> {
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        parent: Option<&'a str>,
        created: &'a str,
        architecture: &'a str,
        os: &'a str,
    }
    let ids = image.layer_ids();
    canonical_json(&LegacyLayer {
        id: ids[index],
        parent: index.checked_sub(1).map(|p| ids[p]),
        created: &image.created,
        architecture: &image.architecture,
        os: &image.os,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_is_merged_by_name_with_the_new_value_winning() {
        let old = [
            json!("PATH=/bin"),
            json!("A=1"),
            json!("A=dup"),
            json!("B=2"),
        ];
        let new = [json!("A=new"), json!("C=3")];
        assert_eq!(
            merge_env(&old, &new),
            [
                json!("PATH=/bin"),
                json!("A=new"),
                json!("B=2"),
                json!("C=3")
            ]
        );
    }

    #[test]
    fn a_command_given_as_one_string_is_a_list_of_one() {
        let spec: crate::spec::ConfigSpec = serde_json::from_value(json!({
            "Cmd": "/nix/store/x-cmd",
            "Entrypoint": ["/bin/sh", "-c"],
        }))
        .unwrap();
        assert_eq!(spec.cmd.unwrap(), ["/nix/store/x-cmd"]);
        assert_eq!(spec.entrypoint.unwrap(), ["/bin/sh", "-c"]);
        let err = serde_json::from_value::<crate::spec::ConfigSpec>(json!({"Cmd": 1})).unwrap_err();
        assert!(err.to_string().contains("did not match"), "{err}");
    }

    #[test]
    fn docker_fields_join_the_runtime_config() {
        let spec: crate::spec::ConfigSpec = serde_json::from_value(json!({
            "Cmd": ["redis-server"],
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000u64, "Retries": 3},
            "Shell": ["/bin/sh", "-c"],
        }))
        .unwrap();
        let built =
            with_docker_fields(json!({"config": {"Cmd": ["redis-server"]}}), &spec).unwrap();
        assert_eq!(
            built,
            json!({"config": {
                "Cmd": ["redis-server"],
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000u64, "Retries": 3},
                "Shell": ["/bin/sh", "-c"],
            }})
        );
        let bad = serde_json::from_value::<crate::spec::ConfigSpec>(
            json!({"Healthcheck": {"Tset": ["CMD"]}}),
        );
        assert!(bad.unwrap_err().to_string().contains("Tset"));
    }

    #[test]
    fn config_on_a_base_keeps_what_the_new_image_leaves_unset() {
        let base = json!({
            "architecture": "arm64",
            "author": "someone",
            "container_config": { "Cmd": ["/bin/sh", "-c", "#(nop)"] },
            "config": {
                "Cmd": ["/bin/sh"], "WorkingDir": "/srv", "Env": ["PATH=/bin", "A=1"],
                "Labels": { "a": "1", "b": "1" }
            },
            "history": [{ "created_by": "base" }],
            "rootfs": { "type": "layers", "diff_ids": ["old"] }
        });
        let new = json!({
            "architecture": "amd64",
            "config": { "Env": ["A=2"], "Cmd": ["/app"], "Labels": { "b": "2" } },
            "history": [{ "created_by": "stevedore" }],
            "rootfs": { "type": "layers", "diff_ids": ["old", "new"] }
        });
        assert_eq!(
            on_base(&base, new),
            json!({
                "architecture": "amd64",
                "author": "someone",
                "config": {
                    "Cmd": ["/app"], "WorkingDir": "/srv", "Env": ["PATH=/bin", "A=2"],
                    "Labels": { "a": "1", "b": "2" }
                },
                "history": [{ "created_by": "base" }, { "created_by": "stevedore" }],
                "rootfs": { "type": "layers", "diff_ids": ["old", "new"] }
            })
        );
    }
}
