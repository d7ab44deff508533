//! `stevedore launch`: a launcher script the Nix library wrote
//! (`copyToRegistry`, `copyToPodman`, `copyToDockerDaemon`) run with its
//! user's arguments.

use std::path::Path;

use anyhow::Result;

use crate::load::{Destination, load};

/// Runs a launcher script that the Nix library wrote: `copy-to-registry
/// DEST [push options]` as a `push` command line, `copy-to-podman` and
/// `copy-to-docker-daemon` as a `load`.
pub fn run(script: &Path, args: &[String]) -> Result<()> {
    use crate::builder::launcher::Action;

    let launcher = crate::builder::launcher::read(script)?;
    let name = script
        .file_name()
        .map_or("copy".into(), |n| n.to_string_lossy().into_owned());
    match launcher.action {
        Action::Registry => {
            let argv = ["stevedore".to_owned(), "push".to_owned(), launcher.image]
                .into_iter()
                .chain(args.iter().cloned());
            let cli = match <super::Cli as clap::Parser>::try_parse_from(argv) {
                Ok(cli) => cli,
                Err(e) if args.is_empty() => anyhow::bail!(
                    "{name}: give the destination, as in `{name} docker://registry.example.com/hello:latest` ({})",
                    e.kind()
                ),
                Err(e) => e.exit(),
            };
            super::run(cli)
        }
        Action::Podman | Action::DockerDaemon => {
            if !args.is_empty() {
                anyhow::bail!("{name} takes no arguments");
            }
            let into = match launcher.action {
                Action::Podman => Destination::Podman,
                _ => Destination::DockerDaemon,
            };
            load(Path::new(&launcher.image), into)
        }
    }
}
