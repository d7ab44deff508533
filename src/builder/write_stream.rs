//! The `write-stream` job of `writeImageStream`: the image a stream
//! launcher describes, written to the store as a docker-archive with
//! compressed layers by the one writer of archives ([`format::write`]).

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use super::{Derivation, check_version};
use crate::compress::Compression;
use crate::image::format::{self, Format};

/// `writeImageStream`: the launcher `stream` as a docker-archive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteStreamJob {
    /// The job format's version, 1.
    version: u64,
    /// The stream launcher (or spec) of the image.
    stream: String,
    /// Layer compression.
    compress: Compression,
}

impl WriteStreamJob {
    /// Writes the archive to `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        let image = crate::source::launcher_image(Path::new(&self.stream))?;
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        format::write(
            &image,
            Format::DockerArchive,
            self.compress,
            drv.out(),
            jobs,
        )
    }
}
