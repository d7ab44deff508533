//! The command line as clap parses it: every subcommand, its options and
//! their help. The values it takes are the library's own types, parsed
//! by their names ([`named`]), so no library type knows of clap.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

use crate::compress::Compression;
use crate::image::format::Format;
use crate::load::Destination;
use crate::pull::PullFormat;

/// A parser of a library enum by its serialised names (`names`: each
/// with its help, or none), so clap checks and lists the values while the
/// enum stays clap's stranger.
fn named<T>(names: &'static [(&'static str, &'static str)]) -> impl TypedValueParser<Value = T>
where
    T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let values = names.iter().map(|&(name, help)| {
        let value = PossibleValue::new(name);
        if help.is_empty() {
            value
        } else {
            value.help(help)
        }
    });
    PossibleValuesParser::new(values).map(|name| {
        serde_json::from_value(serde_json::Value::String(name)).expect("a listed name parses")
    })
}

const FORMATS: &[(&str, &str)] = &[
    (
        "docker-archive",
        "A `docker save` style tar, for `podman load` and `docker load`",
    ),
    ("oci-dir", "An OCI image layout directory"),
    ("oci-archive", "An OCI image layout in a tar"),
];
const COMPRESSIONS: &[(&str, &str)] = &[("none", ""), ("gzip", ""), ("zstd", "")];
const PULL_FORMATS: &[(&str, &str)] = &[("docker-archive", ""), ("oci-dir", "")];
const DESTINATIONS: &[(&str, &str)] = &[("podman", ""), ("docker-daemon", "")];
const SBOM_FORMATS: &[(&str, &str)] = &[
    ("cyclonedx", "CycloneDX 1.6 JSON"),
    ("spdx", "SPDX 2.3 JSON"),
];

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
        #[arg(long, value_parser = named::<Format>(FORMATS), default_value = "docker-archive")]
        format: Format,
        /// Layer compression.
        #[arg(long, value_parser = named::<Compression>(COMPRESSIONS), default_value = "gzip")]
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
        /// NAME:TAG the archive gives the image, in place of the spec's
        /// (dockerTools' stream script option).
        #[arg(long = "repo_tag", short = 't', value_name = "NAME:TAG")]
        repo_tag: Option<String>,
    },
    /// Plan store layers for a closure graph and print them as JSON.
    #[command(after_help = "Example:\n  \
        stevedore layers graph.json --strategy auto --max-layers 100\n  \
        stevedore layers graph.json --pipeline pipeline.json\n\n\
        GRAPH is the JSON list that Nix's exportReferencesGraph writes with\n\
        structured attrs: objects with path, references and narSize.")]
    Layers {
        /// The closure graph.
        graph: PathBuf,
        /// `popularity` (nixpkgs' popularity contest) or `auto` (nixpkgs'
        /// auto-layer).
        #[arg(long, default_value = "auto")]
        strategy: String,
        /// A layering pipeline (JSON, as dockerTools' layeringPipeline)
        /// instead of a strategy; max layers does not bound it.
        #[arg(long, value_name = "FILE", conflicts_with = "strategy")]
        pipeline: Option<PathBuf>,
        /// With --pipeline: print each step's result to standard error.
        #[arg(long, requires = "pipeline")]
        debug: bool,
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
    /// Push an image to a registry: blobs missing there, then the manifest.
    #[command(after_help = "Examples:\n  \
        stevedore push ./result docker://registry.example.com/team/hello:1.0\n  \
        stevedore push hello-oci docker://localhost:5000/hello:latest --tls-verify=false\n  \
        stevedore push ./result docker://localhost:5000/hello:1.0 --sbom --tls-verify=false\n\n\
        SOURCE is any image stevedore writes: a docker-archive, an OCI layout\n\
        (directory or oci-archive), or a streamLayeredImage result, whose\n\
        layers are made from the store while they are sent. Credentials come\n\
        from --creds, REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json\n\
        or ~/.docker/config.json; TLS roots from SSL_CERT_FILE or\n\
        NIX_SSL_CERT_FILE. The last line of standard output is the pushed\n\
        reference with its manifest digest: HOST/REPO:TAG@sha256:...")]
    Push {
        /// The image to push.
        source: PathBuf,
        /// docker://HOST/REPO:TAG
        destination: String,
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Manifest format: OCI, or Docker schema 2 (no zstd layers).
        #[arg(long, value_enum, default_value = "oci")]
        format: ManifestFormat,
        /// A repository of the same registry to mount missing blobs from.
        #[arg(long, value_name = "REPO")]
        mount_from: Option<String>,
        /// Layer compression of a streamLayeredImage source.
        #[arg(long, value_parser = named::<Compression>(COMPRESSIONS), default_value = "gzip")]
        compress: Compression,
        /// Blobs sent at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Upload chunk size in bytes; larger blobs are sent in chunks.
        #[arg(long, default_value_t = crate::registry::upload::CHUNK, hide = true)]
        chunk_size: u64,
        /// Also push the image's CycloneDX SBOM (as `stevedore sbom`
        /// writes it) as an OCI artifact that refers to the image: found
        /// through the registry's referrers API, or under the tag
        /// sha256-<image digest hex> where it has none.
        #[arg(long)]
        sbom: bool,
    },
    /// Pull an image from a registry, by digest, into a docker-archive or an
    /// OCI layout.
    #[command(after_help = "Examples:\n  \
        stevedore pull docker://registry.example.com/library/alpine@sha256:... --out alpine.tar\n  \
        stevedore pull docker://localhost:5000/hello:latest --tls-verify=false --format oci-dir --out hello-oci\n\n\
        Every blob is checked against its digest. Partial blobs are kept under\n\
        $TMPDIR (never /var/tmp) and a rerun resumes them. The last line of\n\
        standard output is HOST/REPO@sha256:... of the manifest pulled.")]
    Pull {
        /// docker://HOST/REPO@sha256:... (or :TAG)
        source: String,
        /// Where to write the image; written under a temporary name and
        /// renamed when complete.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_parser = named::<PullFormat>(PULL_FORMATS), default_value = "docker-archive")]
        format: PullFormat,
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Platform to pick from an index.
        #[arg(long, default_value = "linux")]
        os: String,
        /// [default: the host's, in OCI terms]
        #[arg(long)]
        arch: Option<String>,
        #[arg(long)]
        variant: Option<String>,
        /// NAME:TAG that the output names the image by [default: HOST/REPO:latest].
        #[arg(long)]
        tag: Option<String>,
        /// Blobs fetched at once.
        #[arg(long, default_value_t = 3)]
        jobs: usize,
    },
    /// Load an image into podman or the Docker daemon, without a registry.
    #[command(after_help = "Examples:\n  \
        stevedore load ./result --into podman\n  \
        DOCKER_HOST=unix:///run/docker.sock stevedore load ./result --into docker-daemon\n  \
        stevedore load ./index --platform linux/arm64 --into podman\n\n\
        SOURCE is a docker-archive, a streamLayeredImage result, or an OCI\n\
        layout or oci-archive (such as buildImageIndex writes), of which the\n\
        image for this machine's platform, or --platform's, is loaded. podman\n\
        gets it on the standard input of `podman load`; the Docker daemon\n\
        through POST /images/load on its unix socket, so no HTTP proxy\n\
        interferes.")]
    Load {
        source: PathBuf,
        #[arg(long, value_parser = named::<Destination>(DESTINATIONS))]
        into: Destination,
        /// Of an OCI layout holding an index of images, the image for this
        /// platform [default: this machine's, any variant].
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<crate::oci::Platform>,
    },
    /// Flatten an image into one root-filesystem tar, as dockerTools'
    /// exportImage does (without a VM).
    #[command(after_help = "Examples:\n  \
        stevedore export ./result --out rootfs.tar\n  \
        stevedore export images.tar --name app --tag 1.0 --out rootfs.tar\n  \
        podman import rootfs.tar app-flat\n\n\
        IMAGE is a docker-archive (also one compressed as a whole with gzip or\n\
        zstd), an OCI layout or oci-archive, or a streamLayeredImage result.\n\
        Every layer is read as hostile input (docs/API.md, \"Base images: what\n\
        is refused\"); whiteouts are applied, and each path keeps the mode,\n\
        owner and mtime its layer gave it. Hard links become files. The tar\n\
        is written under a temporary name and renamed when complete.")]
    Export {
        /// The image to flatten.
        image: PathBuf,
        /// Where to write the root-filesystem tar.
        #[arg(long)]
        out: PathBuf,
        /// Of an archive holding several images, the one with this name
        /// [default: the first].
        #[arg(long)]
        name: Option<String>,
        /// Of an archive holding several images, the one with this tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Merge images into one docker-archive that loads them all, as
    /// dockerTools' mergeImages does.
    #[command(after_help = "Examples:\n  \
        stevedore merge app.tar db.tar.gz tools.tar.zst --out all.tar\n  \
        podman load -i all.tar\n\n\
        Each IMAGE is a docker-archive (compressed as a whole with gzip or\n\
        zstd, or not; it may hold several images), an OCI layout or\n\
        oci-archive, or a streamLayeredImage result. Layer blobs and configs\n\
        are copied byte for byte, once each; manifest.json lists every image\n\
        in input order (untagged ones stay untagged) and the repositories\n\
        files are merged tag by tag.")]
    Merge {
        /// The images, in the order manifest.json lists them.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Where to write the merged docker-archive.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show what an image holds: layers, store paths and files, config,
    /// platforms.
    #[command(after_help = "Examples:\n  \
        stevedore inspect ./result\n  \
        stevedore inspect hello.tar --json | jq '.layers[].storePaths'\n  \
        stevedore inspect docker://localhost:5000/hello:latest --tls-verify=false\n\n\
        IMAGE is a streamLayeredImage result, a docker-archive, an OCI layout\n\
        or oci-archive (every layer is read), or docker://HOST/REPO:TAG (the\n\
        manifest and config only: store paths from the history comments, no\n\
        sizes). narHash and references come from --graph, the image's Nix\n\
        database, or the host's store. The --json form is described in\n\
        docs/inspect.md.")]
    Inspect {
        /// The image.
        image: String,
        /// Print the JSON document of docs/inspect.md.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        facts: FactsArgs,
    },
    /// Write a software bill of materials of an image: CycloneDX 1.6 or
    /// SPDX 2.3, as JSON.
    #[command(after_help = "Examples:\n  \
        stevedore sbom ./result --format cyclonedx --out hello.cdx.json\n  \
        stevedore sbom hello-oci --format spdx > hello.spdx.json\n\n\
        One component per store path of the image (docs/sbom.md). The same\n\
        image gives the same bytes. Images of the Nix library also have\n\
        them as derivations: image.sbom and image.spdx.")]
    Sbom {
        /// The image (as `inspect` takes it).
        image: String,
        #[arg(long, value_parser = named::<crate::contents::sbom::SbomFormat>(SBOM_FORMATS), default_value = "cyclonedx")]
        format: crate::contents::sbom::SbomFormat,
        /// Where to write it [default: standard output]; written under a
        /// temporary name and renamed when complete.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        facts: FactsArgs,
    },
    /// Compare two images: shared layers, store paths added, removed and
    /// moved, and what a push of NEW after OLD sends.
    #[command(after_help = "Examples:\n  \
        stevedore diff old.tar ./result\n  \
        stevedore diff docker://localhost:5000/hello:1 docker://localhost:5000/hello:2 --tls-verify=false --json")]
    Diff {
        old: String,
        new: String,
        /// Print JSON (docs/inspect.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        facts: FactsArgs,
    },
    /// Say why a store path is in an image: the chain of references from a
    /// top-level content path.
    #[command(after_help = "Examples:\n  \
        stevedore why ./result /nix/store/...-glibc-2.40\n  \
        stevedore why hello.tar /bin/hello\n\n\
        PATH is a store path, a path inside one, or a file of the image that\n\
        links into the store. The roots are the store paths nothing else in\n\
        the image refers to.")]
    Why {
        image: String,
        path: String,
        #[command(flatten)]
        facts: FactsArgs,
    },
    /// Run a launcher that the Nix library wrote (`#!stevedore launch`).
    #[command(hide = true)]
    Launch {
        /// The launcher.
        script: PathBuf,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run as the builder of a derivation made by the Nix library (reads
    /// `.attrs.json`).
    #[command(hide = true)]
    NixBuilder {
        /// Run the runAsRoot or fakeRootCommands shell in the user
        /// namespace the builder made
        /// for this process, as CONFIG says (started by the builder
        /// itself).
        #[arg(long, value_name = "CONFIG", requires = "status_fd")]
        in_namespace: Option<PathBuf>,
        /// The pipe that reports a failure before the shell runs.
        #[arg(long, value_name = "FD")]
        status_fd: Option<i32>,
    },
}

/// What `inspect`, `sbom`, `diff` and `why` read besides the image.
#[derive(Debug, clap::Args)]
pub struct FactsArgs {
    /// A closure graph (exportReferencesGraph's JSON, or `nix path-info
    /// --json --recursive`) giving narHash and references.
    #[arg(long, value_name = "FILE")]
    pub graph: Option<PathBuf>,
    /// Of a docker:// image, download the layers too (into a temporary
    /// directory), for sizes, files and the image's Nix database.
    #[arg(long)]
    pub layers: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// How to reach a registry.
#[derive(Debug, clap::Args)]
pub struct ConnectionArgs {
    /// USER:PASSWORD for the registry, or USER alone with
    /// --password-stdin. On a command line the password shows in `ps`:
    /// prefer --password-stdin or an auth file.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Read the password for --creds USER from the first line of standard
    /// input, as `podman login --password-stdin` does.
    #[arg(long, requires = "creds")]
    pub password_stdin: bool,
    /// false: accept any certificate, and plain http, for local registries.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// Retries of a request that failed with 5xx, 429, a cut connection
    /// or a timeout.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seconds to wait for a registry: for an answer's headers, and for
    /// each read or write of a transfer (a stalled transfer fails after
    /// that long without a byte, and is retried).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::registry::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,
}

impl ConnectionArgs {
    pub fn connection(&self) -> anyhow::Result<crate::registry::Connection> {
        let creds = match (&self.creds, self.password_stdin) {
            (Some(user), true) => {
                if user.contains(':') {
                    anyhow::bail!(
                        "--creds with --password-stdin takes the user name alone, without :PASSWORD"
                    );
                }
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(|e| {
                    anyhow::anyhow!("--password-stdin: reading standard input: {e}")
                })?;
                let password = line.trim_end_matches(['\n', '\r']);
                if password.is_empty() {
                    anyhow::bail!("--password-stdin: standard input holds no password");
                }
                Some(format!("{user}:{password}"))
            }
            (creds, _) => creds.clone(),
        };
        Ok(crate::registry::Connection {
            creds,
            tls_verify: self.tls_verify,
            retries: self.retries,
            timeout: std::time::Duration::from_secs(self.timeout),
        })
    }
}

/// Manifest formats of `push`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    /// An OCI image manifest.
    Oci,
    /// Docker Registry v2 schema 2.
    V2s2,
}
