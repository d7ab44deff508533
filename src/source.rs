//! Any image argument a command takes, launcher included: the one place
//! where a `streamLayeredImage` launcher (or a spec) becomes an [`Image`],
//! and where a base is opened for the image built on it. Images on disk
//! are read by [`crate::stored`]; this module only adds launchers.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::base::{Base, Limits};
use crate::image::{Image, docker_archive};
use crate::spec::Spec;
use crate::stored::{self, IndexImage, Pick, StoredImage};

/// A push source.
pub enum Source {
    Stored(StoredImage),
    /// An OCI layout whose image is an index of images for several
    /// platforms: pushed as it is.
    Index(IndexImage),
    /// A launcher or spec: `spec` is its path.
    Launcher {
        image: Box<Image>,
        spec: PathBuf,
    },
}

/// Whether `path` is a launcher or a spec (a `#!` script or JSON) rather
/// than an image on disk.
pub fn is_launcher(path: &Path) -> Result<bool> {
    if std::fs::metadata(path)
        .with_context(|| format!("source {}", path.display()))?
        .is_dir()
    {
        return Ok(false);
    }
    let mut head = [0u8; 2];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(n >= 1 && (head.starts_with(b"#!") || head[0] == b'{'))
}

/// The image a spec describes, its base (`fromImage`) opened.
pub fn image(spec: Spec) -> Result<Image> {
    let base = match &spec.base {
        Some(b) => {
            let pick = Pick::Named {
                name: b.name.clone(),
                tag: b.tag.clone(),
            };
            Some(
                open_base_stacked(b.path.as_deref(), &pick, false, &b.layers)
                    .context("field base")?,
            )
        }
        None => None,
    };
    Image::new(spec, base)
}

/// The image a launcher or spec file describes.
pub fn launcher_image(path: &Path) -> Result<Image> {
    image(Spec::load(path)?)
}

/// Reads a push source, detecting its kind. An OCI layout whose image is
/// an index of images for several platforms is pushed as it is.
pub fn open(path: &Path) -> Result<Source> {
    if is_launcher(path)? {
        return Ok(Source::Launcher {
            image: Box::new(launcher_image(path)?),
            spec: path.to_owned(),
        });
    }
    if let Some(index) = stored::open_index(path, "source")? {
        return Ok(Source::Index(index));
    }
    stored::open(path, &Pick::Only, "source").map(Source::Stored)
}

/// Opens a base image (`fromImage`, an image to export or run a script
/// on) at `path`, whatever it is; see [`Base::open`].
pub fn open_base(path: &Path, pick: &Pick, keep_tars: bool) -> Result<Base> {
    open_base_stacked(Some(path), pick, keep_tars, &[])
}

/// As [`open_base`], with the layer images at `stacked` on top (the
/// spec's `base.layers`), and no base image below them when `path` is
/// none; see [`Base::open_stacked`].
pub fn open_base_stacked(
    path: Option<&Path>,
    pick: &Pick,
    keep_tars: bool,
    stacked: &[PathBuf],
) -> Result<Base> {
    let scratch = crate::base::scratch_dir()?;
    let readable = match path {
        Some(path) => Some(
            readable(path, &scratch.path().join("base.tar"), Limits::from_env()?)
                .with_context(|| format!("fromImage {}", path.display()))?,
        ),
        None => None,
    };
    let base = path.zip(readable.as_deref());
    Base::open_stacked(base, scratch, pick, keep_tars, stacked)
}

/// A file [`stored`] can read for `path`: a launcher or spec is streamed,
/// and an archive compressed as a whole decompressed, to the new file
/// `scratch`; anything else is read where it is.
pub fn readable(path: &Path, scratch: &Path, limits: Limits) -> Result<PathBuf> {
    if is_launcher(path)? {
        let image = launcher_image(path)?;
        let mut w = BufWriter::new(File::create(scratch)?);
        docker_archive::stream(&image, &mut w)?;
        w.flush()?;
        return Ok(scratch.to_owned());
    }
    stored::expand(
        path,
        scratch,
        limits.max_layer_bytes,
        crate::base::scan::MAX_LAYER_BYTES_VAR,
    )
}
