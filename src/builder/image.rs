//! The `image` job: layers planned from the closure graph ([`crate::layering`]),
//! then a launcher that streams the image (`stream`) or a finished archive.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::from_image::BaseAttrs;
use super::layer::held_paths;
use super::{Derivation, check_version};
use crate::compress::Compression;
use crate::image::Image;
use crate::image::format::{self, Format};
use crate::layering::pipeline::Pipeline;
use crate::layering::{self, Strategy};
use crate::spec::{self, ConfigSpec, CustomisationSpec, LayerSpec, MetadataFiles, Spec};

/// An image of `streamLayeredImage`, `buildLayeredImage` or `buildImage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ImageJob {
    /// The job format's version, 1.
    version: u64,
    /// What `$out` is.
    output: Output,
    /// Layer compression of an archive.
    #[serde(default = "default_compress")]
    compress: Compression,
    /// The `exportReferencesGraph` attribute holding the closure.
    graph: String,
    /// The customisation tree, left out of the store layers.
    #[serde(default)]
    customisation: Option<String>,
    /// The `metadata` output of the customisation tree's derivation.
    #[serde(default)]
    customisation_metadata: Option<String>,
    /// Other helper paths left out of the store layers (the config file).
    #[serde(default)]
    exclude: Vec<String>,
    /// The tree of a `nix-db` derivation, a second customisation tree.
    #[serde(default)]
    nix_db: Option<String>,
    /// Its `metadata` output.
    #[serde(default)]
    nix_db_metadata: Option<String>,
    /// false: no store layers, only the customisation layer.
    #[serde(default = "yes")]
    include_store_paths: bool,
    /// `fromImage`: its layers go first, and its store paths are left out.
    #[serde(default)]
    base: Option<BaseAttrs>,
    /// How the closure is split into store layers.
    layering: Layering,
    /// The spec's fields that the Nix side decides.
    image: ImageAttrs,
}

/// What the image job writes to `$out`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Output {
    /// A launcher: `#!stevedore stream` and the spec.
    Stream,
    /// A docker-archive.
    DockerArchive,
    /// An OCI layout as a tar.
    OciArchive,
}

/// `layering` and `maxLayers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Layering {
    /// `popularity`, `auto`, `explicit` or `pipeline`.
    strategy: String,
    /// Layers of the image, the customisation layer included; a pipeline
    /// has none.
    #[serde(default)]
    max_layers: Option<usize>,
    /// Whether a base image's layers count towards `max_layers` (they do,
    /// as in dockerTools, but for buildImage's fixed two new layers).
    #[serde(default = "yes")]
    count_base: bool,
    /// The store layers for `explicit`.
    #[serde(default)]
    layers: Vec<Vec<String>>,
    /// For `explicit`: the layers are built already, one `layer` job each,
    /// and are the last of `base.layers`, in order; only the remaining
    /// paths are laid here.
    #[serde(default)]
    prebuilt: bool,
    /// The steps for `pipeline` (dockerTools' `layeringPipeline`).
    #[serde(default)]
    pipeline: Option<serde_json::Value>,
    /// For `pipeline`: a JSON file holding the steps instead.
    #[serde(default)]
    pipeline_file: Option<PathBuf>,
    /// Print how the layers were planned to the build log.
    #[serde(default)]
    debug: bool,
}

impl Layering {
    fn strategy(&self) -> Result<Strategy> {
        let pipeline = match (&self.pipeline, &self.pipeline_file) {
            (None, None) => None,
            (Some(steps), None) => Some(Pipeline::parse(steps)?),
            (None, Some(file)) => Some(Pipeline::read(file)?),
            (Some(_), Some(_)) => bail!("layering: give pipeline or pipelineFile, not both"),
        };
        match (self.strategy.as_str(), pipeline) {
            ("pipeline", Some(mut p)) => {
                p.debug = self.debug;
                Ok(Strategy::Pipeline(p))
            }
            ("pipeline", None) => bail!("layering \"pipeline\" needs pipeline or pipelineFile"),
            (name, Some(_)) => bail!("layering {name:?} takes no pipeline"),
            ("explicit", None) => Ok(Strategy::Explicit(self.layers.clone())),
            (name, None) => name.parse(),
        }
    }
}

/// The image fields of the spec that the Nix side decides (docs/spec.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageAttrs {
    /// Repository name.
    name: String,
    /// `null`: the hash part of the output path, as dockerTools does.
    #[serde(default)]
    tag: Option<String>,
    /// Image creation time, RFC 3339 or `now`.
    #[serde(default)]
    created: Option<String>,
    /// Time of every file in the layers.
    #[serde(default)]
    mtime: Option<String>,
    /// Owner of the store files.
    #[serde(default)]
    uid: u64,
    /// Group of the store files.
    #[serde(default)]
    gid: u64,
    /// Owner name of the store files.
    #[serde(default = "root_name")]
    uname: String,
    /// Group name of the store files.
    #[serde(default = "root_name")]
    gname: String,
    /// OCI architecture; `null`: the host's.
    #[serde(default)]
    architecture: Option<String>,
    /// OCI operating system.
    #[serde(default = "linux")]
    os: String,
    /// Platform variant.
    #[serde(default)]
    variant: Option<String>,
    /// The runtime config.
    #[serde(default)]
    config: ConfigSpec,
}

fn default_compress() -> Compression {
    Compression::Gzip
}
fn yes() -> bool {
    true
}
fn root_name() -> String {
    "root".into()
}
fn linux() -> String {
    "linux".into()
}

impl ImageJob {
    /// Plans the layers, then writes the launcher or the archive to `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let graph = drv.exported_graph(&self.graph)?;
        let base = self.base.as_ref().map(|b| b.open(false)).transpose()?;
        let strategy = self.layering.strategy()?;
        let prebuilt = if self.layering.prebuilt {
            self.check_prebuilt(&strategy)?
        } else {
            0
        };
        let mut exclude: BTreeSet<String> = self
            .customisation
            .iter()
            .chain(&self.exclude)
            .cloned()
            .collect();
        // Store paths the base holds take no layer; the prebuilt layers'
        // paths are in the explicit lists, which name them once more.
        let base_names = base.as_ref().map_or_else(Vec::new, |b| {
            if prebuilt > 0 {
                b.unstacked_store_names.clone()
            } else {
                b.store_names(Path::new(crate::nixdb::STORE_DIR))
            }
        });
        for name in base_names {
            exclude.insert(format!(
                "{}/{}",
                crate::nixdb::STORE_DIR,
                String::from_utf8_lossy(&name)
            ));
        }
        // The prebuilt layers count as the lists they are, not as the base.
        let base_layers = match &base {
            Some(b) if self.layering.count_base && prebuilt > 0 => {
                b.layers.len() - b.stacked_layers
            }
            Some(b) if self.layering.count_base => b.layers.len(),
            _ => 0,
        };
        // A pipeline bounds its layers itself; dockerTools ignores
        // maxLayers for it.
        let max_layers = match (&strategy, self.layering.max_layers) {
            (Strategy::Pipeline(_), _) => 0,
            (_, None) => bail!("layering {:?} needs maxLayers", self.layering.strategy),
            (_, Some(max)) => layering::max_layers_above_base(max, base_layers).ok_or_else(|| {
                anyhow::anyhow!(
                    "maxLayers is {max} but fromImage already has {base_layers} layers; raise maxLayers to at least {} (the base's layers count towards it)",
                    base_layers + layering::MIN_LAYERS
                )
            })?,
        };
        let mut layers = if self.include_store_paths {
            layering::plan(&graph, &strategy, max_layers, &exclude)?
        } else {
            Vec::new()
        };
        // The prebuilt layers are the plan's first, checked with the rest.
        layers.drain(..prebuilt);
        if self.layering.debug {
            eprintln!("store layers planned ({}):", self.layering.strategy);
            for (i, layer) in layers.iter().enumerate() {
                eprintln!("  layer {}: {}", i + 1, layer.join(" "));
            }
        }
        let a = &self.image;
        let spec = Spec {
            version: spec::VERSION,
            name: a.name.clone(),
            tag: a.tag.clone().unwrap_or_else(|| output_hash(&drv.out)),
            created: a.created.clone(),
            mtime: a.mtime.clone(),
            store_dir: PathBuf::from("/nix/store"),
            uid: a.uid,
            gid: a.gid,
            uname: a.uname.clone(),
            gname: a.gname.clone(),
            architecture: a.architecture.clone(),
            os: a.os.clone(),
            variant: a.variant.clone(),
            config: a.config.clone(),
            base: self.base.as_ref().map(BaseAttrs::spec),
            layers: layers
                .into_iter()
                .map(|paths| LayerSpec {
                    paths: paths.into_iter().map(PathBuf::from).collect(),
                })
                .collect(),
            customisation: self.customisation_spec(),
        };
        let spec_json = serde_json::to_vec_pretty(&spec)?;
        let image = Image::new(spec, base)?;
        let out = drv.out();
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self.output {
            Output::Stream => write_stream_launcher(out, &spec_json),
            Output::DockerArchive => {
                format::write(&image, Format::DockerArchive, self.compress, out, jobs)
            }
            Output::OciArchive => {
                format::write(&image, Format::OciArchive, self.compress, out, jobs)
            }
        }
    }

    /// That `base.layers` ends with one `layer` job per explicit list,
    /// holding exactly its paths; the number of those layers.
    fn check_prebuilt(&self, strategy: &Strategy) -> Result<usize> {
        let Strategy::Explicit(lists) = strategy else {
            bail!("layering: prebuilt layers need the \"explicit\" strategy");
        };
        let stacked = self.base.as_ref().map_or(&[][..], |b| &b.layers[..]);
        if !self.include_store_paths || stacked.len() < lists.len() {
            bail!(
                "layering: {} prebuilt layers, but base.layers has {} and includeStorePaths is {}",
                lists.len(),
                stacked.len(),
                self.include_store_paths
            );
        }
        let outputs = &stacked[stacked.len() - lists.len()..];
        for (i, (list, output)) in lists.iter().zip(outputs).enumerate() {
            let held: BTreeSet<String> = held_paths(Path::new(output))?.into_iter().collect();
            let want: BTreeSet<String> = list.iter().cloned().collect();
            if held != want {
                bail!(
                    "explicit layer {}: {output} holds other store paths than the list names",
                    i + 1
                );
            }
        }
        Ok(lists.len())
    }

    /// The customisation tree, then the Nix database's, with their metadata.
    fn customisation_spec(&self) -> Option<CustomisationSpec> {
        let paths = |first: &Option<String>, second: &Option<String>| -> Vec<PathBuf> {
            first.iter().chain(second).map(PathBuf::from).collect()
        };
        let trees = paths(&self.customisation, &self.nix_db);
        let metadata = paths(&self.customisation_metadata, &self.nix_db_metadata);
        (!trees.is_empty()).then(|| CustomisationSpec {
            trees,
            metadata: (!metadata.is_empty()).then(|| MetadataFiles::new(metadata)),
        })
    }
}

/// The hash part of a store path, the default tag.
pub(super) fn output_hash(out: &str) -> String {
    let name = out.rsplit('/').next().unwrap_or(out);
    name.split('-').next().unwrap_or(name).to_owned()
}

/// An executable spec: `./result | podman load` runs `stevedore stream`.
fn write_stream_launcher(out: &Path, spec_json: &[u8]) -> Result<()> {
    let exe = std::env::current_exe().context("finding the stevedore binary")?;
    let mut file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    writeln!(file, "#!{} stream", exe.display())?;
    file.write_all(spec_json)?;
    file.write_all(b"\n")?;
    file.set_permissions(fs::Permissions::from_mode(0o555))?;
    Ok(())
}
