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
    /// Plan store layers for a closure graph and print them as JSON.
    #[command(after_help = "Example:\n  \
        stevedore layers graph.json --strategy auto --max-layers 100\n\n\
        GRAPH is the JSON list that Nix's exportReferencesGraph writes with\n\
        structured attrs: objects with path, references and narSize.")]
    Layers {
        /// The closure graph.
        graph: PathBuf,
        /// `popularity` (nixpkgs' popularity contest) or `auto` (nixpkgs'
        /// auto-layer).
        #[arg(long, default_value = "auto")]
        strategy: String,
        /// Layers of the whole image, counting the customisation layer on
        /// top, as dockerTools' maxLayers counts them.
        #[arg(long, default_value_t = 100)]
        max_layers: usize,
        /// A file listing store paths (one per line) to leave out.
        #[arg(long)]
        exclude: Option<PathBuf>,
    },
    /// Write the Nix database and gcroots of a closure graph into a root
    /// directory, as an image with `includeNixDB` has them.
    #[command(after_help = "Example:\n  \
        stevedore nix-db graph.json --root rootfs\n  \
        nix-store --store \"local?root=$PWD/rootfs\" --verify --check-contents\n\n\
        GRAPH is the JSON list that exportReferencesGraph writes with structured\n\
        attrs (or `nix path-info --json --recursive`): objects with path,\n\
        narHash, narSize and references, optionally deriver and ca. ROOT plays\n\
        `/`: the database goes to ROOT/nix/var/nix/db/db.sqlite (which must not\n\
        exist yet), with the schema file beside it, and each gcroot to\n\
        ROOT/nix/var/nix/gcroots/docker/<name>. Nothing is written when the\n\
        graph is refused.")]
    NixDb {
        /// The closure graph.
        graph: PathBuf,
        /// The directory that plays `/` for the database and the gcroots.
        #[arg(long)]
        root: PathBuf,
        /// A store path to keep alive with a gcroot; repeat for more
        /// [default: the graph's roots, the paths nothing refers to].
        #[arg(long = "gc-root", value_name = "STORE_PATH")]
        gc_roots: Vec<String>,
        /// The registrationTime of every path, RFC 3339.
        #[arg(long, default_value = crate::spec::DEFAULT_TIME)]
        registration_time: String,
        /// A file listing store paths (one per line) to leave out; no
        /// registered path may refer to them.
        #[arg(long)]
        exclude: Option<PathBuf>,
    },
    /// Run as the builder of a derivation made by the Nix library (reads
    /// `.attrs.json`).
    #[command(hide = true)]
    NixBuilder {
        /// Record the modes and owners of TREE into OUT (run under
        /// fakeroot by the builder itself).
        #[arg(long, num_args = 2, value_names = ["TREE", "OUT"])]
        record_metadata: Option<Vec<PathBuf>>,
    },
}
