//! stevedore builds container images from Nix store closures: layer tars
//! that are the same bytes on every machine, in docker-archive and OCI
//! formats, with no daemon and no VM.
//!
//! The flow: [`spec`] (the JSON contract with the Nix library) is checked
//! into an [`image::Image`]; [`archive`] plans and writes each layer;
//! [`compress`] and [`digest`] turn layers into blobs; [`image`] writes the
//! config, manifests and archive formats; [`output`] makes outputs atomic.
//! [`nixdb`] writes the Nix database and gcroots an image can carry.
//! [`registry`] pushes images to registries and pulls them; [`load`] puts
//! them into podman or the Docker daemon.

pub mod archive;
pub mod base;
pub mod build;
pub mod builder;
pub mod cli;
pub mod closure;
pub mod compress;
pub mod digest;
pub mod export;
pub mod image;
pub mod layering;
pub mod load;
pub mod merge;
pub mod nixdb;
pub mod oci;
pub mod output;
pub mod pool;
pub mod pull;
pub mod push;
pub mod registry;
pub mod rootfs;
pub mod source;
pub mod spec;
pub mod stored;
pub mod terminal;

use anyhow::{Context, Result};

use cli::Command;

/// Runs one command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        Command::Build {
            spec,
            format,
            compress,
            out,
            jobs,
        } => {
            let image = source::launcher_image(&spec)?;
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            build::build(&image, format, compress, &out, jobs)
        }
        Command::Stream { spec } => {
            let image = source::launcher_image(&spec)?;
            build::stream_to_stdout(&image)
        }
        Command::Layers {
            graph,
            strategy,
            max_layers,
            exclude,
        } => {
            let graph = closure::Graph::load(&graph)?;
            let exclude = read_exclude(exclude.as_deref())?;
            let plan = layering::plan(&graph, &strategy.parse()?, max_layers, &exclude)?;
            println!("{}", serde_json::to_string_pretty(&plan)?);
            Ok(())
        }
        Command::NixDb {
            graph,
            root,
            gc_roots,
            registration_time,
            exclude,
        } => {
            let time = image::parse_time("registration time", &registration_time)
                .ok()
                .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
                .with_context(|| {
                    format!(
                        "--registration-time {registration_time:?} is not an RFC 3339 time from 1970 on, such as {:?}",
                        spec::DEFAULT_TIME
                    )
                })?;
            let graph = closure::Graph::load(&graph)?;
            let exclude = read_exclude(exclude.as_deref())?;
            let gc_roots = if gc_roots.is_empty() {
                graph.without(&exclude).roots()
            } else {
                gc_roots
            };
            nixdb::Registration::from_graph(&graph, &exclude, &gc_roots)?
                .write_into_root(&root, time)
        }
        Command::Push {
            source,
            destination,
            connection,
            format,
            mount_from,
            compress,
            jobs,
            chunk_size,
        } => {
            if chunk_size == 0 {
                anyhow::bail!("--chunk-size must be at least 1");
            }
            let dest = oci::Reference::parse("destination", &destination)?;
            let opts = push::PushOptions {
                docker_format: format == cli::ManifestFormat::V2s2,
                mount_from,
                compression: compress,
                jobs,
                chunk: chunk_size,
            };
            let pushed = push::push(&source, &dest, &connection.connection()?, &opts)?;
            println!("{pushed}");
            Ok(())
        }
        Command::Pull {
            source,
            out,
            format,
            connection,
            os,
            arch,
            variant,
            tag,
            jobs,
        } => {
            let src = oci::Reference::parse("source", &source)?;
            let opts = pull::PullOptions {
                format,
                platform: oci::Platform {
                    os,
                    architecture: arch
                        .unwrap_or_else(|| oci::platform::host_architecture().to_owned()),
                    variant,
                },
                tag: Some(tag.unwrap_or_else(|| format!("{}:latest", src.name()))),
                jobs,
            };
            let pulled = pull::pull(&src, &out, &connection.connection()?, &opts)?;
            println!("{pulled}");
            Ok(())
        }
        Command::Load { source, into } => load::load(&source, into),
        Command::Export {
            image,
            out,
            name,
            tag,
        } => export::export(&image, &base::Pick::Named { name, tag }, &out),
        Command::Merge { images, out } => merge::merge(&images, &out),
        Command::Launch { script, args } => launch(&script, &args),
        Command::NixBuilder {
            in_namespace,
            status_fd,
        } => match (in_namespace, status_fd) {
            (Some(config), Some(fd)) => rootfs::userns::child(&config, fd),
            _ => builder::run(),
        },
    }
}

/// Runs a launcher script that the Nix library wrote: `copy-to-registry
/// DEST [push options]` as a `push` command line, `copy-to-podman` and
/// `copy-to-docker-daemon` as a `load`.
fn launch(script: &std::path::Path, args: &[String]) -> Result<()> {
    use builder::launcher::Action;

    let launcher = builder::launcher::read(script)?;
    let name = script
        .file_name()
        .map_or("copy".into(), |n| n.to_string_lossy().into_owned());
    match launcher.action {
        Action::Registry => {
            let argv = ["stevedore".to_owned(), "push".to_owned(), launcher.image]
                .into_iter()
                .chain(args.iter().cloned());
            let cli = match <cli::Cli as clap::Parser>::try_parse_from(argv) {
                Ok(cli) => cli,
                Err(e) if args.is_empty() => anyhow::bail!(
                    "{name}: give the destination, as in `{name} docker://registry.example.com/hello:latest` ({})",
                    e.kind()
                ),
                Err(e) => e.exit(),
            };
            run(cli)
        }
        Action::Podman | Action::DockerDaemon => {
            if !args.is_empty() {
                anyhow::bail!("{name} takes no arguments");
            }
            let into = match launcher.action {
                Action::Podman => load::Into::Podman,
                _ => load::Into::DockerDaemon,
            };
            load::load(std::path::Path::new(&launcher.image), into)
        }
    }
}

/// The store paths listed in an `--exclude` file, one per line.
fn read_exclude(file: Option<&std::path::Path>) -> Result<std::collections::BTreeSet<String>> {
    let Some(file) = file else {
        return Ok(Default::default());
    };
    Ok(std::fs::read_to_string(file)
        .with_context(|| format!("reading --exclude {}", file.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}
