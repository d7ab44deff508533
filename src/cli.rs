//! Command-line interface: one subcommand per job, parsed with clap and
//! kept apart from the library code that does the work.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::build::Format;
use crate::compress::Compression;

#[derive(Debug, Parser)]
#[command(
    name = "stevedore",
    version,
    about = "Build reproducible container images from Nix store paths",
    long_about = "stevedore writes container images from an image spec (docs/spec.md): \
                  store-path layers plus a customisation layer, in Docker archive and OCI \
                  formats, byte for byte reproducible, with no daemon and no VM."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a spec into a file or directory.
    #[command(after_help = "Examples:\n  \
        stevedore build image.json --out hello.tar\n  \
        stevedore build image.json --format oci-dir --compress zstd --out hello-oci\n  \
        podman load -i hello.tar")]
    Build {
        /// Image spec (JSON, version 1).
        spec: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "docker-archive")]
        format: Format,
        /// Layer compression.
        #[arg(long, value_enum, default_value = "gzip")]
        compress: Compression,
        /// Where to write the image; written under a temporary name and
        /// renamed when complete.
        #[arg(long)]
        out: PathBuf,
        /// Layers written at once [default: the number of CPUs]. The output
        /// is the same for every value.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Write an uncompressed docker-archive to standard output, in one pass.
    #[command(after_help = "Example:\n  stevedore stream image.json | podman load")]
    Stream {
        /// Image spec (JSON, version 1).
        spec: PathBuf,
    },
}
