//! From a checked image to an output in the asked format, written
//! atomically (`stevedore build`, the image jobs), or streamed to
//! standard output (`stevedore stream`).

use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::blobs::write_layer_blobs;
use super::{Image, docker_archive, oci_layout};
use crate::compress::Compression;
use crate::output::{AtomicDir, AtomicFile, scratch_beside};

/// Output formats, named as skopeo names its transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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
pub fn write(
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
    enlarge_pipe(&fd);
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, std::fs::File::from(fd));
    docker_archive::stream(image, &mut out)?;
    out.flush().context("writing standard output")
}

/// Grows a pipe on standard output to 1 MiB, so `stream | podman load`
/// moves the image in few large writes rather than many 64 KiB ones (each
/// a switch between the two processes). Anything but a pipe, or a refusal
/// (the size is capped by /proc/sys/fs/pipe-max-size), leaves it as it is.
fn enlarge_pipe(fd: &OwnedFd) {
    // glibc's fcntl, declared here rather than adding the libc crate for
    // one call; F_SETPIPE_SZ is Linux's F_LINUX_SPECIFIC_BASE + 7.
    unsafe extern "C" {
        fn fcntl(fd: i32, cmd: i32, ...) -> i32;
    }
    const F_SETPIPE_SZ: i32 = 1031;
    const PIPE_SIZE: i32 = 1 << 20;
    let is_pipe = std::fs::File::from(fd.try_clone().expect("a valid descriptor"))
        .metadata()
        .is_ok_and(|m| m.file_type().is_fifo());
    if is_pipe {
        // SAFETY: fcntl with F_SETPIPE_SZ reads no memory; a failure is
        // reported by its return value, which is ignored on purpose.
        unsafe {
            fcntl(fd.as_raw_fd(), F_SETPIPE_SZ, PIPE_SIZE);
        }
    }
}
