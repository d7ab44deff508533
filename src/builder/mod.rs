//! The helper as the builder of every derivation the Nix library makes:
//! reads the job from `.attrs.json` and runs it (docs/jobs.md).
//!
//! Nix writes the derivation's attributes to `.attrs.json` (structured
//! attrs); its `stevedore` attribute names the job and carries its
//! fields, and the graphs a job names are what `exportReferencesGraph`
//! exported. Nothing reaches a shell command line: scripts are written to
//! files and run by the shell the caller gave (`script`).
//!
//! One module per job, holding its fields and its body: `root`,
//! `run_as_root`, `image`, `file`, `nix_db`, `pull`, [`launcher`],
//! `export`, `merge`, `image_index`, `tree`, `write_stream`, `sbom`,
//! `layer`, `fetch_blob`, `blob_layout`. Pieces several jobs share have one home each:
//! `join` (the symlink forest of `contents`), `script` (the shell
//! scripts), `metadata` (the modes and owners of a customisation tree),
//! `from_image` (the `base` attribute).

mod blob_layout;
mod export;
mod fetch_blob;
mod file;
mod from_image;
mod image;
mod image_index;
mod join;
pub mod launcher;
mod layer;
mod merge;
mod metadata;
mod nix_db;
mod pull;
mod root;
mod run_as_root;
mod sbom;
mod script;
mod tree;
mod write_stream;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::closure::Graph;
use crate::spec;

/// The `stevedore` attribute: the job, by its `job` field.
#[derive(Debug, Deserialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
enum Job {
    Root(root::RootJob),
    RunAsRoot(run_as_root::RunAsRootJob),
    Image(Box<image::ImageJob>),
    ImageIndex(image_index::ImageIndexJob),
    File(file::FileJob),
    NixDb(nix_db::NixDbJob),
    Pull(pull::PullJob),
    Launcher(launcher::LauncherJob),
    Export(export::ExportJob),
    Merge(merge::MergeJob),
    Tree(tree::TreeJob),
    WriteStream(write_stream::WriteStreamJob),
    Sbom(sbom::SbomJob),
    Layer(Box<layer::LayerJob>),
    FetchBlob(fetch_blob::FetchBlobJob),
    BlobLayout(blob_layout::BlobLayoutJob),
}

/// Runs the job of the derivation being built.
pub fn run() -> Result<()> {
    // What scripts leave running becomes ours, to be ended.
    crate::rootfs::orphans::adopt();
    let (drv, job) = Derivation::read()?;
    match job {
        Job::Root(job) => job.build(&drv),
        Job::RunAsRoot(job) => job.build(&drv),
        Job::Image(job) => job.build(&drv),
        Job::ImageIndex(job) => job.build(&drv),
        Job::NixDb(job) => job.build(&drv),
        Job::Pull(job) => job.build(&drv),
        Job::Launcher(job) => job.build(&drv),
        Job::Export(job) => job.build(&drv),
        Job::Merge(job) => job.build(&drv),
        Job::File(job) => job.build(&drv),
        Job::Tree(job) => job.build(&drv),
        Job::WriteStream(job) => job.build(&drv),
        Job::Sbom(job) => job.build(&drv),
        Job::Layer(job) => job.build(&drv),
        Job::FetchBlob(job) => job.build(&drv),
        Job::BlobLayout(job) => job.build(&drv),
    }
}

/// The derivation being built, as `.attrs.json` gives it.
struct Derivation {
    attrs: Value,
    /// The store path of the output `out`.
    out: String,
}

impl Derivation {
    /// Reads `.attrs.json` and the job in it.
    fn read() -> Result<(Derivation, Job)> {
        // Nix 2.8 sets NIX_ATTRS_JSON_FILE to the build directory's path
        // outside the sandbox, where a sandboxed builder cannot see it; the
        // file is also in the working directory, which is the build directory.
        let attrs_path = std::env::var_os("NIX_ATTRS_JSON_FILE")
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(".attrs.json"));
        let text = fs::read(&attrs_path).with_context(|| {
            format!(
                "reading {}: `stevedore nix-builder` runs as the builder of a derivation with __structuredAttrs = true",
                attrs_path.display()
            )
        })?;
        let attrs: Value = serde_json::from_slice(&text)
            .with_context(|| format!("{}: invalid JSON", attrs_path.display()))?;
        let out = attrs
            .pointer("/outputs/out")
            .and_then(Value::as_str)
            .context("the derivation has no output `out`")?
            .to_owned();
        let job = attrs
            .get("stevedore")
            .context("the derivation has no `stevedore` attribute")?;
        let job: Job = serde_path_to_error::deserialize(job).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                anyhow::anyhow!("attribute stevedore: {}", e.inner())
            } else {
                anyhow::anyhow!("attribute stevedore.{path}: {}", e.inner())
            }
        })?;
        Ok((Derivation { attrs, out }, job))
    }

    /// The output `out`.
    fn out(&self) -> &Path {
        Path::new(&self.out)
    }

    /// The `metadata` output, which the `what` derivation must have.
    fn metadata_output(&self, what: &str) -> Result<&Path> {
        self.attrs
            .pointer("/outputs/metadata")
            .and_then(Value::as_str)
            .map(Path::new)
            .with_context(|| format!("the {what} derivation has no output `metadata`"))
    }

    /// The graph exported under the attribute `name`.
    fn exported_graph(&self, name: &str) -> Result<Graph> {
        let graph_json = self
            .attrs
            .get(name)
            .with_context(|| format!("the derivation has no exported graph `{name}`"))?;
        let graph = Graph::parse(&serde_json::to_vec(graph_json)?)
            .with_context(|| format!("exported graph `{name}`"))?;
        for path in graph.paths() {
            if let Err(e) = fs::symlink_metadata(path) {
                bail!(
                    "{path} is in the closure Nix exported but cannot be read here ({e}): Nix adds the outputs of every derivation file (.drv) in a closure, and a build sees only its inputs; put the derivation that has this output into contents"
                );
            }
        }
        Ok(graph)
    }
}

/// Refuses a `version` this helper does not read.
fn check_version(version: u64) -> Result<()> {
    if version != spec::VERSION {
        bail!(
            "attribute stevedore.version: {version} is not supported; this stevedore reads version {}",
            spec::VERSION
        );
    }
    Ok(())
}
