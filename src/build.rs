//! `stevedore build` and `stevedore stream`: from a checked image to an
//! output in the asked format, written atomically.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;

use crate::compress::Compression;
use crate::image::blobs::write_layer_blobs;
use crate::image::{Image, docker_archive, oci_layout};
use crate::output::{AtomicDir, AtomicFile, scratch_beside};

/// Output formats, named as skopeo names its transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A `docker save` style tar, for `podman load` and `docker load`.
    DockerArchive,
    /// An OCI image layout directory.
    OciDir,
    /// An OCI image layout in a tar.
    OciArchive,
}

const OUTPUT_BUFFER: usize = 256 * 1024;

/// Writes `image` to `out`. Nothing appears at `out` unless all went well.
pub fn build(
    image: &Image,
    format: Format,
    compression: Compression,
    out: &Path,
    jobs: usize,
) -> Result<()> {
    match format {
        Format::OciDir => {
            let dir = AtomicDir::create(out)?;
            oci_layout::write_dir(image, compression, dir.path(), jobs)?;
            dir.commit()
        }
        Format::DockerArchive if compression == Compression::None => {
            let mut file = AtomicFile::create(out)?;
            docker_archive::stream(image, BufWriter::with_capacity(OUTPUT_BUFFER, file.file()))?;
            file.commit()
        }
        Format::DockerArchive => {
            let mut file = AtomicFile::create(out)?;
            let scratch = scratch_beside(out)?;
            let blobs = write_layer_blobs(image, compression, scratch.path(), jobs)?;
            docker_archive::from_blobs(
                image,
                &blobs,
                BufWriter::with_capacity(OUTPUT_BUFFER, file.file()),
            )?;
            file.commit()
        }
        Format::OciArchive => {
            let mut file = AtomicFile::create(out)?;
            let scratch = scratch_beside(out)?;
            oci_layout::write_archive(
                image,
                compression,
                scratch.path(),
                jobs,
                BufWriter::with_capacity(OUTPUT_BUFFER, file.file()),
            )?;
            file.commit()
        }
    }
}

/// Streams an uncompressed docker-archive to standard output.
pub fn stream_to_stdout(image: &Image) -> Result<()> {
    // Write to the file descriptor directly: Rust's `Stdout` is line
    // buffered, which would split a binary stream at every newline byte.
    let fd = std::io::stdout()
        .lock()
        .as_fd()
        .try_clone_to_owned()
        .context("opening standard output")?;
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, std::fs::File::from(fd));
    docker_archive::stream(image, &mut out)?;
    out.flush().context("writing standard output")
}

use std::os::fd::AsFd;
