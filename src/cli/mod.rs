//! The command line: `args` is what clap parses; each command's body is
//! a few lines here or in its own file, calling the library.

mod args;
mod contents;
mod launch;
mod nix_db;
mod push_pull;

use anyhow::{Context, Result};

pub use args::{Cli, Command, ConnectionArgs, ManifestFormat};

use crate::image::format;
use crate::{base, builder, closure, export, layering, load, merge, pool, rootfs, source};

/// Runs one command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build {
            spec,
            format,
            compress,
            out,
            jobs,
        } => {
            let image = source::launcher_image(&spec)?;
            let jobs = jobs.unwrap_or_else(pool::default_jobs);
            format::write(&image, format, compress, &out, jobs)
        }
        Command::Stream { spec, repo_tag } => {
            let mut image = source::launcher_image(&spec)?;
            if let Some(repo_tag) = repo_tag {
                (image.name, image.tag) = launch::repo_tag(&repo_tag)?;
            }
            format::stream_to_stdout(&image)
        }
        Command::Layers {
            graph,
            strategy,
            pipeline,
            debug,
            max_layers,
            exclude,
        } => {
            let graph = closure::Graph::load(&graph)?;
            let exclude = read_exclude(exclude.as_deref())?;
            let strategy = match pipeline {
                Some(file) => {
                    let mut p = layering::pipeline::Pipeline::read(&file)?;
                    p.debug = debug;
                    layering::Strategy::Pipeline(p)
                }
                None => strategy.parse()?,
            };
            let plan = layering::plan(&graph, &strategy, max_layers, &exclude)?;
            println!("{}", serde_json::to_string_pretty(&plan)?);
            Ok(())
        }
        Command::NixDb {
            graph,
            root,
            gc_roots,
            registration_time,
            exclude,
        } => nix_db::run(
            &graph,
            &root,
            gc_roots,
            &registration_time,
            exclude.as_deref(),
        ),
        command @ (Command::Push { .. } | Command::Pull { .. }) => push_pull::run(command),
        Command::Load {
            source,
            into,
            platform,
        } => load::load(&source, into, platform.as_ref()),
        Command::Export {
            image,
            out,
            name,
            tag,
        } => export::export(&image, &base::Pick::Named { name, tag }, &out),
        Command::Merge { images, out } => merge::merge(&images, &out),
        Command::Launch { script, args } => launch::run(&script, &args),
        command @ (Command::Inspect { .. }
        | Command::Sbom { .. }
        | Command::Diff { .. }
        | Command::Why { .. }) => contents::run(command),
        Command::NixBuilder {
            in_namespace,
            status_fd,
        } => match (in_namespace, status_fd) {
            (Some(config), Some(fd)) => rootfs::userns::child(&config, fd),
            _ => builder::run(),
        },
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
