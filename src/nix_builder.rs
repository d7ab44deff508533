//! The helper as the builder of every derivation the Nix library makes.
//! Nix writes the derivation's attributes to `.attrs.json` (structured
//! attrs); its `stevedore` attribute names the job and carries the image
//! description, and the graph named there is what `exportReferencesGraph`
//! exported. Nothing reaches a shell command line: scripts are written to
//! files and run by the shell the caller gave.
//!
//! Jobs:
//! - `root`: the customisation tree, `contents` joined into one symlink
//!   forest (as nixpkgs' `symlinkJoin`), then `extraCommands` and
//!   `fakeRootCommands` run in it;
//! - `run-as-root`: the customisation tree of `buildImage` with
//!   `runAsRoot`: the script's changes to a root of `contents` (and the
//!   base image), made in a user namespace ([`crate::rootfs`]), as a
//!   layer; then `extraCommands` run in it;
//! - `file`: a file with the given text (the image config);
//! - `nix-db`: the Nix database and gcroots of an image
//!   ([`crate::nixdb`]) as a tree for the customisation layer, with their
//!   owners in a `metadata` output;
//! - `image`: layers planned from the closure graph, then a launcher that
//!   streams the image (`stream`) or a finished docker-archive;
//! - `pull`: `pullImage`'s fixed-output derivation, a docker-archive pulled
//!   by digest ([`crate::registry::pull`]);
//! - `launcher`: `bin/NAME`, a `#!stevedore launch` script that copies an
//!   image to a registry, podman or the Docker daemon ([`launch`]);
//! - `export`: `exportImage`, an image's file system as one tar
//!   ([`crate::export`]);
//! - `merge`: `mergeImages`, images in one docker-archive ([`crate::merge`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::build::{self, Format};
use crate::closure::Graph;
use crate::compress::Compression;
use crate::image::Image;
use crate::layering::{self, Strategy};
use crate::spec::{
    self, ConfigSpec, CustomisationSpec, EntryMetadata, LayerSpec, Metadata, MetadataFiles, Spec,
};

#[derive(Debug, Deserialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
enum Job {
    Root(RootJob),
    RunAsRoot(RunAsRootJob),
    Image(Box<ImageJob>),
    File(FileJob),
    NixDb(NixDbJob),
    Pull(PullJob),
    Launcher(LauncherJob),
    Export(ExportJob),
    Merge(MergeJob),
}

/// `exportImage`: the file system of `fromImage` as one tar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExportJob {
    version: u64,
    from_image: String,
    /// Of an archive with several images, the one to export; `null`: the
    /// first (the tag is then not looked at, as in dockerTools).
    #[serde(default)]
    from_image_name: Option<String>,
    #[serde(default)]
    from_image_tag: Option<String>,
}

/// `mergeImages`: every image of `images` in one docker-archive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeJob {
    version: u64,
    images: Vec<String>,
}

/// `pullImage`: an image pulled by digest into a docker-archive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PullJob {
    version: u64,
    /// `HOST/REPO`.
    image_name: String,
    image_digest: String,
    /// The name and tag the archive gives the image.
    final_image_name: String,
    final_image_tag: String,
    os: String,
    arch: String,
    #[serde(default)]
    variant: Option<String>,
    tls_verify: bool,
}

/// An executable `bin/NAME` that runs `stevedore launch` on itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LauncherJob {
    version: u64,
    /// The program name under `bin/`.
    name: String,
    /// What the launcher does: `copy-to-registry`, `copy-to-podman` or
    /// `copy-to-docker-daemon`.
    action: LaunchAction,
    /// The image: a docker-archive or a stream launcher.
    image: String,
}

#[derive(Debug, Deserialize, serde::Serialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum LaunchAction {
    #[serde(rename = "copy-to-registry")]
    Registry,
    #[serde(rename = "copy-to-podman")]
    Podman,
    #[serde(rename = "copy-to-docker-daemon")]
    DockerDaemon,
}

/// What a launcher script holds after its `#!` line.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct LaunchScript {
    version: u64,
    action: LaunchAction,
    image: String,
}

/// The Nix database of an image. A derivation of its own rather than part
/// of the image job, so that the launcher of `streamLayeredImage`, which
/// reads its layers from the store when it runs, finds the tree there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NixDbJob {
    version: u64,
    /// The `exportReferencesGraph` attribute: the image's closure.
    graph: String,
    /// Paths of the graph that are not in the image's store (the
    /// customisation tree, the config file).
    #[serde(default)]
    exclude: Vec<String>,
    /// The `contents`, each kept alive by a gcroot.
    #[serde(default)]
    gc_roots: Vec<String>,
    /// The image's `created` and `mtime`: the registration time is the
    /// image's file time.
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    mtime: Option<String>,
    /// Owner of `/nix/var/nix` and everything below it.
    #[serde(default)]
    uid: u64,
    #[serde(default)]
    gid: u64,
    /// `fromImage`: the paths its database registers are registered too.
    #[serde(default)]
    base: Option<BaseAttrs>,
}

/// A file holding `text`: the image config, so that the store paths it
/// names are found by Nix's reference scan and join the closure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJob {
    version: u64,
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RootJob {
    version: u64,
    /// Store paths whose contents are joined into the tree.
    paths: Vec<String>,
    #[serde(default)]
    extra_commands: String,
    #[serde(default)]
    fake_root_commands: String,
    /// The shell that runs the commands.
    #[serde(default)]
    shell: Option<String>,
    /// `PATH` for the commands.
    #[serde(default)]
    script_path: String,
}

/// `buildImage` with `runAsRoot`: its customisation tree is what the
/// script changed in the root, as a layer with whiteouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunAsRootJob {
    version: u64,
    /// Store paths whose contents are joined into the root.
    paths: Vec<String>,
    /// The store file holding the script.
    script: String,
    /// The shell that runs it in the root: a store path, or a path that
    /// the root has.
    shell: String,
    /// The `exportReferencesGraph` attribute: every store path the script
    /// may need, mounted into the root.
    graph: String,
    /// The image the root starts from (`fromImage`).
    #[serde(default)]
    base: Option<BaseAttrs>,
    #[serde(default)]
    extra_commands: String,
    /// `PATH` for `extraCommands`.
    #[serde(default)]
    script_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ImageJob {
    version: u64,
    output: Output,
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
    #[serde(default = "yes")]
    include_store_paths: bool,
    /// `fromImage`: its layers go first, and its store paths are left out.
    #[serde(default)]
    base: Option<BaseAttrs>,
    layering: Layering,
    image: ImageAttrs,
}

/// `fromImage`, `fromImageName`, `fromImageTag`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseAttrs {
    pub path: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
}

impl BaseAttrs {
    pub fn spec(&self) -> spec::BaseSpec {
        spec::BaseSpec {
            path: PathBuf::from(&self.path),
            name: self.name.clone(),
            tag: self.tag.clone(),
        }
    }

    /// Reads the base image.
    pub fn open(&self, keep_tars: bool) -> Result<crate::base::Base> {
        let pick = crate::base::Pick::Named {
            name: self.name.clone(),
            tag: self.tag.clone(),
        };
        crate::source::open_base(Path::new(&self.path), &pick, keep_tars)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Output {
    /// A launcher: `#!stevedore stream` and the spec.
    Stream,
    DockerArchive,
    OciArchive,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Layering {
    /// `popularity`, `auto` or `explicit`.
    strategy: String,
    max_layers: usize,
    /// Whether a base image's layers count towards `max_layers` (they do,
    /// as in dockerTools, but for buildImage's fixed two new layers).
    #[serde(default = "yes")]
    count_base: bool,
    /// The store layers for `explicit`.
    #[serde(default)]
    layers: Vec<Vec<String>>,
}

/// The image fields of the spec that the Nix side decides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageAttrs {
    name: String,
    /// `null`: the hash part of the output path, as dockerTools does.
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    mtime: Option<String>,
    #[serde(default)]
    uid: u64,
    #[serde(default)]
    gid: u64,
    #[serde(default = "root_name")]
    uname: String,
    #[serde(default = "root_name")]
    gname: String,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default = "linux")]
    os: String,
    #[serde(default)]
    variant: Option<String>,
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

/// Runs the job of the derivation being built.
pub fn run() -> Result<()> {
    // What scripts leave running becomes ours, to be ended.
    crate::rootfs::orphans::adopt();
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
    match job {
        Job::Root(job) => {
            let metadata = attrs
                .pointer("/outputs/metadata")
                .and_then(Value::as_str)
                .context("the customisation derivation has no output `metadata`")?;
            root(&job, Path::new(&out), Path::new(metadata))
        }
        Job::RunAsRoot(job) => {
            let metadata = attrs
                .pointer("/outputs/metadata")
                .and_then(Value::as_str)
                .context("the customisation derivation has no output `metadata`")?;
            run_as_root(&job, &attrs, Path::new(&out), Path::new(metadata))
        }
        Job::Image(job) => image(&job, &attrs, &out),
        Job::NixDb(job) => {
            let metadata = attrs
                .pointer("/outputs/metadata")
                .and_then(Value::as_str)
                .context("the nix-db derivation has no output `metadata`")?;
            nix_db(&job, &attrs, Path::new(&out), Path::new(metadata))
        }
        Job::Pull(job) => pull(&job, Path::new(&out)),
        Job::Launcher(job) => write_launch_script(&job, Path::new(&out)),
        Job::Export(job) => {
            check_version(job.version)?;
            let pick = match job.from_image_name {
                None => crate::base::Pick::Named {
                    name: None,
                    tag: None,
                },
                name => crate::base::Pick::Named {
                    name,
                    tag: job.from_image_tag,
                },
            };
            crate::export::export(Path::new(&job.from_image), &pick, Path::new(&out))
        }
        Job::Merge(job) => {
            check_version(job.version)?;
            let images: Vec<PathBuf> = job.images.iter().map(PathBuf::from).collect();
            crate::merge::merge(&images, Path::new(&out))
        }
        Job::File(job) => {
            check_version(job.version)?;
            fs::write(&out, job.text).with_context(|| format!("writing {out}"))
        }
    }
}

fn check_version(version: u64) -> Result<()> {
    if version != spec::VERSION {
        bail!(
            "attribute stevedore.version: {version} is not supported; this stevedore reads version {}",
            spec::VERSION
        );
    }
    Ok(())
}

/// The graph exported under the attribute `name`.
fn exported_graph(attrs: &Value, name: &str) -> Result<Graph> {
    let graph_json = attrs
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

fn nix_db(job: &NixDbJob, attrs: &Value, out: &Path, metadata: &Path) -> Result<()> {
    check_version(job.version)?;
    let graph = exported_graph(attrs, &job.graph)?;
    let exclude: BTreeSet<String> = job.exclude.iter().cloned().collect();
    let mut registration = crate::nixdb::Registration::from_graph(&graph, &exclude, &job.gc_roots)?;
    if let Some(base) = &job.base {
        registration.add_base(base_db_paths(base)?);
    }
    let time = crate::image::file_mtime(job.created.as_deref(), job.mtime.as_deref())?;
    fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
    registration.write_tree(out, time)?;
    let metadata_json = serde_json::to_vec_pretty(&registration.tree_metadata(job.uid, job.gid))?;
    fs::write(metadata, metadata_json).with_context(|| format!("writing {}", metadata.display()))
}

/// What the Nix database of a base image registers; nothing when it has
/// none.
fn base_db_paths(attrs: &BaseAttrs) -> Result<Vec<crate::nixdb::ValidPath>> {
    const DB: &[u8] = b"nix/var/nix/db/db.sqlite";
    let base = attrs.open(false)?;
    let Some(entry) = base.view.get(DB) else {
        return Ok(Vec::new());
    };
    if entry.kind != crate::base::EntryKind::File {
        bail!(
            "fromImage {}: /nix/var/nix/db/db.sqlite is not a file",
            attrs.path
        );
    }
    let scratch = tempfile::NamedTempFile::new().context("creating a scratch file")?;
    std::io::copy(&mut base.open_file(entry)?, &mut scratch.as_file())
        .context("reading the base image's Nix database")?;
    crate::nixdb::Registration::read_db(scratch.path())
        .with_context(|| format!("fromImage {}: its Nix database", attrs.path))
}

fn image(job: &ImageJob, attrs: &Value, out: &str) -> Result<()> {
    check_version(job.version)?;
    let graph = exported_graph(attrs, &job.graph)?;
    let base = job.base.as_ref().map(|b| b.open(false)).transpose()?;
    let mut exclude: BTreeSet<String> = job
        .customisation
        .iter()
        .chain(&job.exclude)
        .cloned()
        .collect();
    // Store paths the base holds take no layer.
    let store = Path::new("/nix/store");
    for name in base.iter().flat_map(|b| b.store_names(store)) {
        exclude.insert(format!("/nix/store/{}", String::from_utf8_lossy(&name)));
    }
    let strategy = match job.layering.strategy.as_str() {
        "explicit" => Strategy::Explicit(job.layering.layers.clone()),
        name => name.parse()?,
    };
    // The base's layers count towards maxLayers, as in dockerTools.
    let base_layers = if job.layering.count_base {
        base.as_ref().map_or(0, |b| b.layers.len())
    } else {
        0
    };
    let max_layers = job.layering.max_layers.checked_sub(base_layers).filter(|&n| n >= 2).ok_or_else(|| {
        anyhow::anyhow!(
            "maxLayers is {} but fromImage already has {base_layers} layers; raise maxLayers to at least {} (the base's layers count towards it)",
            job.layering.max_layers,
            base_layers + 2
        )
    })?;
    let layers = if job.include_store_paths {
        layering::plan(&graph, &strategy, max_layers, &exclude)?
    } else {
        Vec::new()
    };
    let a = &job.image;
    let spec = Spec {
        version: spec::VERSION,
        name: a.name.clone(),
        tag: a.tag.clone().unwrap_or_else(|| output_hash(out)),
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
        base: job.base.as_ref().map(BaseAttrs::spec),
        layers: layers
            .into_iter()
            .map(|paths| LayerSpec {
                paths: paths.into_iter().map(PathBuf::from).collect(),
            })
            .collect(),
        customisation: customisation_spec(job),
    };
    let spec_json = serde_json::to_vec_pretty(&spec)?;
    let image = Image::new(spec, base)?;
    let out = Path::new(out);
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    match job.output {
        Output::Stream => write_launcher(out, &spec_json),
        Output::DockerArchive => {
            build::build(&image, Format::DockerArchive, job.compress, out, jobs)
        }
        Output::OciArchive => build::build(&image, Format::OciArchive, job.compress, out, jobs),
    }
}

/// The customisation tree, then the Nix database's, with their metadata.
fn customisation_spec(job: &ImageJob) -> Option<CustomisationSpec> {
    let trees: Vec<PathBuf> = job
        .customisation
        .iter()
        .chain(&job.nix_db)
        .map(PathBuf::from)
        .collect();
    let metadata: Vec<PathBuf> = job
        .customisation_metadata
        .iter()
        .chain(&job.nix_db_metadata)
        .map(PathBuf::from)
        .collect();
    (!trees.is_empty()).then(|| CustomisationSpec {
        trees,
        metadata: (!metadata.is_empty()).then(|| MetadataFiles::new(metadata)),
    })
}

/// The hash part of a store path, the default tag.
fn output_hash(out: &str) -> String {
    let name = out.rsplit('/').next().unwrap_or(out);
    name.split('-').next().unwrap_or(name).to_owned()
}

fn pull(job: &PullJob, out: &Path) -> Result<()> {
    check_version(job.version)?;
    let src = crate::registry::Reference::parse(
        "imageName and imageDigest",
        &format!("docker://{}@{}", job.image_name, job.image_digest),
    )?;
    let opts = crate::pull::PullOptions {
        format: crate::pull::PullFormat::DockerArchive,
        platform: crate::oci::Platform {
            os: job.os.clone(),
            architecture: job.arch.clone(),
            variant: job.variant.clone(),
        },
        tag: Some(format!("{}:{}", job.final_image_name, job.final_image_tag)),
        jobs: 3,
    };
    let conn = crate::registry::Connection {
        tls_verify: job.tls_verify,
        ..Default::default()
    };
    let pulled = crate::pull::pull(&src, out, &conn, &opts)?;
    eprintln!("pulled {pulled}");
    Ok(())
}

/// `$out/bin/NAME`: `#!HELPER launch` and what to do, as JSON.
fn write_launch_script(job: &LauncherJob, out: &Path) -> Result<()> {
    check_version(job.version)?;
    if job.name.is_empty() || job.name.contains('/') {
        bail!(
            "attribute stevedore.name: {:?} is not a program name",
            job.name
        );
    }
    let exe = std::env::current_exe().context("finding the stevedore binary")?;
    let bin = out.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let path = bin.join(&job.name);
    let script = LaunchScript {
        version: spec::VERSION,
        action: job.action,
        image: job.image.clone(),
    };
    let mut file =
        fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "#!{} launch", exe.display())?;
    file.write_all(&serde_json::to_vec_pretty(&script)?)?;
    file.write_all(b"\n")?;
    file.set_permissions(fs::Permissions::from_mode(0o555))?;
    Ok(())
}

/// Runs a launcher script: `copy-to-registry DEST [push options]`,
/// `copy-to-podman`, `copy-to-docker-daemon`.
pub fn launch(script: &Path, args: &[String]) -> Result<()> {
    let text = fs::read(script).with_context(|| format!("reading {}", script.display()))?;
    let body = text
        .strip_prefix(b"#!")
        .and_then(|rest| {
            rest.iter()
                .position(|&b| b == b'\n')
                .map(|n| &rest[n + 1..])
        })
        .with_context(|| format!("{}: not a stevedore launcher", script.display()))?;
    let parsed: LaunchScript = serde_json::from_slice(body)
        .with_context(|| format!("{}: not a stevedore launcher", script.display()))?;
    check_version(parsed.version)?;
    let name = script
        .file_name()
        .map_or("copy".into(), |n| n.to_string_lossy().into_owned());
    match parsed.action {
        LaunchAction::Registry => {
            let argv = ["stevedore".to_owned(), "push".to_owned(), parsed.image]
                .into_iter()
                .chain(args.iter().cloned());
            let cli = match <crate::cli::Cli as clap::Parser>::try_parse_from(argv) {
                Ok(cli) => cli,
                Err(e) if args.is_empty() => bail!(
                    "{name}: give the destination, as in `{name} docker://registry.example.com/hello:latest` ({})",
                    e.kind()
                ),
                Err(e) => e.exit(),
            };
            crate::run(cli)
        }
        LaunchAction::Podman | LaunchAction::DockerDaemon => {
            if !args.is_empty() {
                bail!("{name} takes no arguments");
            }
            let into = match parsed.action {
                LaunchAction::Podman => crate::load::Into::Podman,
                _ => crate::load::Into::DockerDaemon,
            };
            crate::load::load(Path::new(&parsed.image), into)
        }
    }
}

/// An executable spec: `./result | podman load` runs `stevedore stream`.
fn write_launcher(out: &Path, spec_json: &[u8]) -> Result<()> {
    let exe = std::env::current_exe().context("finding the stevedore binary")?;
    let mut file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    writeln!(file, "#!{} stream", exe.display())?;
    file.write_all(spec_json)?;
    file.write_all(b"\n")?;
    file.set_permissions(fs::Permissions::from_mode(0o555))?;
    Ok(())
}

fn root(job: &RootJob, out: &Path, metadata: &Path) -> Result<()> {
    check_version(job.version)?;
    fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
    join_contents(&job.paths, out)?;
    let tools = ScriptTools {
        shell: job.shell.as_deref(),
        script_path: &job.script_path,
    };
    if !job.extra_commands.is_empty() {
        run_script(&tools, "extraCommands", &job.extra_commands, out)?;
    }
    if job.fake_root_commands.is_empty() {
        // Owned by root in the image, whoever built it; modes as left.
        return record_metadata(out, metadata);
    }
    fake_root_commands(&tools, &job.fake_root_commands, out, metadata)
}

/// Runs `fakeRootCommands` as root in a user namespace of the helper's
/// own, in the tree, and records the owners and modes they leave: real
/// owners where the namespace maps every id (the helper is root), the
/// chown calls' record where it maps only the build user (a Nix build
/// user, the Nix sandbox; [`crate::rootfs::chown`]). Static programs are
/// covered as dynamic ones are; no fakeroot program is needed.
fn fake_root_commands(tools: &ScriptTools, text: &str, tree: &Path, metadata: &Path) -> Result<()> {
    use crate::rootfs::diff;
    use crate::rootfs::userns::{Chroot, IdMapping};

    const WHAT: &str = "fakeRootCommands";
    let shell = tools.checked_shell(WHAT)?;
    let script = write_script(WHAT, text)?;
    let mapping = IdMapping::for_this_process();
    let mut namespace = Chroot::in_place(WHAT, tree);
    namespace
        .env("PATH", tools.script_path)
        .env("out", &tree.to_string_lossy());
    let config = std::env::current_dir()?.join(format!("{WHAT}.namespace.json"));
    let owners = namespace
        .run(
            &config,
            shell,
            &script.to_string_lossy(),
            mapping,
            Vec::new(),
        )
        .map_err(|e| tools.explain(WHAT, e))?;
    let mut tree_now = diff::snapshot(tree)?;
    tree_now.record_owners(&owners);
    let inside = |uid, gid| mapping.inside(uid, gid);
    let entries = tree_now
        .entries
        .iter()
        .map(|(path, e)| {
            let (uid, gid) = e.image_owner(&inside);
            (
                path.clone(),
                EntryMetadata {
                    mode: e.mode,
                    uid,
                    gid,
                },
            )
        })
        .collect();
    write_metadata(entries, metadata)
}

/// Writes the mode of every entry below `tree` to `out`, before the store
/// normalises the tree (modes 0444/0555), with root as every owner.
fn record_metadata(tree: &Path, out: &Path) -> Result<()> {
    write_metadata(tree_metadata(tree)?, out)
}

fn write_metadata(entries: BTreeMap<String, EntryMetadata>, out: &Path) -> Result<()> {
    let metadata = Metadata {
        version: spec::VERSION,
        entries,
    };
    fs::write(out, serde_json::to_vec_pretty(&metadata)?)
        .with_context(|| format!("writing {}", out.display()))
}

/// The mode of every entry below `tree`, by path relative to it, owned by
/// root.
fn tree_metadata(tree: &Path) -> Result<BTreeMap<String, EntryMetadata>> {
    fn walk(dir: &Path, rel: &str, entries: &mut BTreeMap<String, EntryMetadata>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_str().with_context(|| {
                format!(
                    "{}: file names in the customisation layer must be UTF-8",
                    entry.path().display()
                )
            })?;
            let path = entry.path();
            let md = fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let dest = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            entries.insert(
                dest.clone(),
                EntryMetadata {
                    mode: md.mode() & 0o7777,
                    uid: 0,
                    gid: 0,
                },
            );
            if md.is_dir() {
                walk(&path, &dest, entries)?;
            }
        }
        Ok(())
    }
    let mut entries = BTreeMap::new();
    walk(tree, "", &mut entries)?;
    Ok(entries)
}

/// Joins each `contents` path into `dest`.
fn join_contents(paths: &[String], dest: &Path) -> Result<()> {
    for path in paths {
        join_one(path, dest, &|_, _| false)?;
    }
    Ok(())
}

/// Joins one `contents` path into `dest`, replacing the entries for which
/// `lower` says they come from a layer below.
fn join_one(path: &str, dest: &Path, lower: &dyn Fn(&Path, &fs::Metadata) -> bool) -> Result<()> {
    let src = Path::new(path);
    let md = fs::metadata(src).with_context(|| format!("contents path {path}"))?;
    if !md.is_dir() && path.ends_with(".drv") {
        // A derivation file: its closure is in the store layers, and
        // there is nothing to join into /.
        return Ok(());
    }
    if !md.is_dir() {
        bail!("contents path {path} is not a directory; only directories are joined into /");
    }
    join_tree(src, dest, lower)
}

/// Adds `src`'s contents to `dest` as a symlink forest: directories are
/// created, everything else becomes a symlink to the source. The first
/// path to provide a name keeps it, as with `symlinkJoin`; an entry of a
/// lower layer (`lower`) is replaced, or merged into when both are
/// directories.
fn join_tree(src: &Path, dest: &Path, lower: &dyn Fn(&Path, &fs::Metadata) -> bool) -> Result<()> {
    let mut names = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", src.display()))?;
    names.sort();
    for name in names {
        let from = src.join(&name);
        let to = dest.join(&name);
        let md =
            fs::symlink_metadata(&from).with_context(|| format!("reading {}", from.display()))?;
        let mut existing = fs::symlink_metadata(&to).ok();
        // A symlink the base has already, to the same file, stays.
        let same_link = || !md.is_dir() && fs::read_link(&to).is_ok_and(|t| t == from);
        if let Some(e) = &existing
            && !(e.is_dir() && md.is_dir())
            && lower(&to, e)
            && !same_link()
        {
            crate::rootfs::remove_tree(&to)
                .with_context(|| format!("replacing {}", to.display()))?;
            existing = None;
        }
        if md.is_dir() {
            match existing {
                None => {
                    fs::create_dir(&to).with_context(|| format!("creating {}", to.display()))?;
                    join_tree(&from, &to, lower)?;
                }
                Some(e) if e.is_dir() => join_tree(&from, &to, lower)?,
                Some(_) => {}
            }
        } else if existing.is_none() {
            std::os::unix::fs::symlink(&from, &to)
                .with_context(|| format!("creating {}", to.display()))?;
        }
    }
    Ok(())
}

/// The programs that run `extraCommands` and `fakeRootCommands`.
struct ScriptTools<'a> {
    shell: Option<&'a str>,
    /// `PATH` for the commands.
    script_path: &'a str,
}

impl ScriptTools<'_> {
    /// The shell, if it can run here: a missing one is named with the
    /// fix, rather than left to the kernel's bare "No such file".
    fn checked_shell(&self, what: &str) -> Result<&str> {
        let shell = self.shell.with_context(|| {
            format!("{what} needs a shell; pass `shell` to the stevedore library")
        })?;
        if let Err(e) = fs::metadata(shell) {
            bail!(
                "{what}: the shell {shell} cannot be run here ({e}){}; import the library with a shell from the store, such as shell = \"${{pkgs.runtimeShell}}\" or a static busybox's \"${{busybox}}/bin/sh\"",
                if in_sandbox() {
                    ": in the Nix sandbox only store paths are visible"
                } else {
                    ""
                }
            );
        }
        Ok(shell)
    }

    /// `err`, with the likely cause added when the script ran a command
    /// its PATH does not have (exit status 127, as POSIX shells give it).
    fn explain(&self, what: &str, err: anyhow::Error) -> anyhow::Error {
        if !err.to_string().ends_with("(exit status 127)") {
            return err;
        }
        let missing: Vec<&str> = self
            .script_path
            .split(':')
            .filter(|dir| !dir.is_empty() && !Path::new(dir).is_dir())
            .collect();
        let cause = if self.script_path.is_empty() {
            "PATH is empty".to_owned()
        } else if missing.is_empty() {
            format!("PATH is {}", self.script_path)
        } else {
            format!(
                "PATH is {} and {} {} not here{}",
                self.script_path,
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
                if in_sandbox() {
                    " (in the Nix sandbox only store paths are visible)"
                } else {
                    ""
                }
            )
        };
        err.context(format!(
            "{what} ran a command that was not found: {cause}; import the library with scriptPath naming store directories, such as lib.makeBinPath [ pkgs.coreutils ]"
        ))
    }
}

/// Whether this build runs in the Nix sandbox: its builder is PID 1 of
/// the sandbox's PID namespace, in `/build`.
fn in_sandbox() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::getpid() == 1 }
}

/// Writes a script's text to a file in the build directory: its text is
/// never on a command line.
fn write_script(what: &str, text: &str) -> Result<PathBuf> {
    let script = std::env::current_dir()?.join(format!("{what}.sh"));
    fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
    Ok(script)
}

/// Runs a script with the shell in `tree`, as the build user, and ends
/// what it left running.
fn run_script(tools: &ScriptTools, what: &str, text: &str, tree: &Path) -> Result<()> {
    let shell = tools.checked_shell(what)?;
    let script = write_script(what, text)?;
    // `-e`: a failing command fails the build, as in a stdenv builder.
    let status = Command::new(shell)
        .arg("-e")
        .arg(&script)
        .current_dir(tree)
        .env("PATH", tools.script_path)
        .env("out", tree)
        .status()
        .with_context(|| format!("running {what} with {shell}"));
    crate::rootfs::orphans::end();
    let status = status?;
    if !status.success() {
        let err = match status.code() {
            Some(code) => anyhow::anyhow!("{what} failed (exit status {code})"),
            None => anyhow::anyhow!("{what} failed ({status})"),
        };
        return Err(tools.explain(what, err));
    }
    Ok(())
}

/// The store path (`/nix/store/NAME`) that `path` is in, if any.
fn store_path_of(path: &str) -> Option<String> {
    let name = path.strip_prefix("/nix/store/")?.split('/').next()?;
    (!name.is_empty()).then(|| format!("/nix/store/{name}"))
}

/// `runAsRoot`: the root is made in the build directory, snapshotted, the
/// script run in it as root ([`crate::rootfs::userns`]), and what changed
/// written to `$out` as a layer ([`crate::rootfs::diff`]).
fn run_as_root(job: &RunAsRootJob, attrs: &Value, out: &Path, metadata: &Path) -> Result<()> {
    use crate::rootfs::chown::BaseOwner;
    use crate::rootfs::userns::{Bind, Chroot, IdMapping};
    use crate::rootfs::{Scratch, diff};

    check_version(job.version)?;
    let graph = exported_graph(attrs, &job.graph)?;
    let mapping = IdMapping::for_this_process();
    let scratch = Scratch::create(std::env::current_dir()?.join("run-as-root"))?;
    let root = scratch.path().join("root");
    fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    let not_given = match &job.base {
        Some(base) => crate::rootfs::extract::extract(&base.open(true)?, &root, mapping)?,
        None => BTreeMap::new(),
    };
    // The lower layers: what the layer is the difference from. `contents`
    // is new in this layer, as the script's changes are, and replaces
    // what the base has at the same paths, as a layer above it would.
    let mut before = diff::snapshot(&root)?;
    // Owners of the base that the build user could not give: the lower
    // layer has them, and the supervisor starts with them recorded.
    let base_owners: Vec<BaseOwner> = not_given
        .into_iter()
        .filter_map(|(path, (uid, gid))| {
            let e = before.entries.get(&path)?;
            Some(BaseOwner {
                dev: e.dev,
                ino: e.ino,
                path,
                uid,
                gid,
            })
        })
        .collect();
    before.record_owners(&base_owners.iter().map(BaseOwner::owner).collect());
    let from_base = |path: &Path, md: &fs::Metadata| {
        path.strip_prefix(&root)
            .ok()
            .and_then(|rel| rel.to_str())
            .and_then(|rel| before.entries.get(rel))
            .is_some_and(|e| e.dev == md.dev() && e.ino == md.ino())
    };
    for path in &job.paths {
        join_one(path, &root, &from_base)?;
    }

    let mut chroot = Chroot::new(&root);
    let mut store_paths: BTreeSet<String> = graph.paths().map(str::to_owned).collect();
    store_paths.extend(store_path_of(&job.shell));
    for path in &store_paths {
        chroot.bind(Path::new(path), path, Bind::StorePath)?;
    }
    for device in ["/dev/null", "/dev/zero", "/dev/urandom"] {
        chroot.bind(Path::new(device), device, Bind::Device)?;
    }
    chroot.bind(Path::new("/proc"), "/proc", Bind::Proc)?;
    let ran = chroot.run(
        &scratch.path().join("namespace.json"),
        &job.shell,
        &job.script,
        mapping,
        base_owners,
    );
    chroot.remove_mountpoints()?;
    let owners = ran?;
    let mut after = diff::snapshot(&root)?;
    after.record_owners(&owners);
    let layer = diff::diff(&before, &after);

    let tree = Scratch::create(out.to_owned())?;
    let written = diff::write_layer(&root, &after, &layer, out, &|uid, gid| {
        mapping.inside(uid, gid)
    })?;
    drop(scratch);
    let entries = if job.extra_commands.is_empty() {
        written.into_iter().map(|(p, w)| (p, w.metadata)).collect()
    } else {
        let tools = ScriptTools {
            shell: Some(&job.shell),
            script_path: &job.script_path,
        };
        run_script(&tools, "extraCommands", &job.extra_commands, out)?;
        // What extraCommands made is root's; what it left keeps the owner
        // the script gave, and its mode unless extraCommands changed it.
        let mut entries = tree_metadata(out)?;
        for (path, entry) in &mut entries {
            if let Some(w) = written.get(path) {
                entry.uid = w.metadata.uid;
                entry.gid = w.metadata.gid;
                if entry.mode == w.disk_mode {
                    entry.mode = w.metadata.mode;
                }
            }
        }
        entries
    };
    write_metadata(entries, metadata)?;
    tree.keep();
    Ok(())
}
