//! `stevedore push` and `stevedore pull`: the options of the command line
//! turned into the library's, and the reference moved printed.

use anyhow::Result;

use super::{Command, ManifestFormat};
use crate::oci::{self, Reference};
use crate::{pull, push};

/// Runs a `Push` or `Pull` command.
pub fn run(command: Command) -> Result<()> {
    let moved = match command {
        Command::Push {
            source,
            destination,
            connection,
            format,
            mount_from,
            compress,
            jobs,
            chunk_size,
            sbom,
        } => {
            if chunk_size == 0 {
                anyhow::bail!("--chunk-size must be at least 1");
            }
            let dest = Reference::parse("destination", &destination)?;
            let opts = push::PushOptions {
                docker_format: format == ManifestFormat::V2s2,
                mount_from,
                compression: compress,
                jobs,
                chunk: chunk_size,
            };
            let conn = connection.connection()?;
            if sbom {
                super::contents::push_with_sbom(&source, &dest, &conn, &opts)?
            } else {
                push::push(&source, &dest, &conn, &opts)?
            }
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
            let src = Reference::parse("source", &source)?;
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
            pull::pull(&src, &out, &connection.connection()?, &opts)?
        }
        _ => unreachable!("only push and pull come here"),
    };
    println!("{moved}");
    Ok(())
}
