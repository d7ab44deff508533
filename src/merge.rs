//! `mergeImages`: several docker-archives made into one that holds every
//! image of every input, so one `docker load` or `podman load` loads them
//! all.
//!
//! An input may be compressed as a whole (gzip or zstd, found from its
//! first bytes), be a `streamLayeredImage` launcher (streamed once into a
//! scratch archive), and hold several images. Its layer blobs, configs and
//! legacy per-layer files (`<id>/VERSION`, `<id>/json`) are copied byte for
//! byte, compressed or not; a member named by several images, of one input
//! or of several, is written once (the same name with different bytes in
//! two inputs is an error). `manifest.json` lists every input's entries in
//! input order, untouched apart from `./` taken off member names, so an
//! untagged image stays untagged; the legacy `repositories` files are
//! merged repository by repository, tag by tag (a later input's tag wins).
//!
//! The output is an uncompressed tar through [`TarOut`]: members in the
//! order the manifests first name them, then `manifest.json` and
//! `repositories`, all with mtime 1 and owner root. The same inputs give
//! the same bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::archive::TarOut;
use crate::base::scan::{self, Limits};
use crate::compress::Compression;
use crate::image::canonical_json;
use crate::output::AtomicFile;
use crate::registry::source::{BlobFile, tar_index};

/// mtime of every member of the merged archive.
const MTIME: u64 = 1;

/// A member of the output, and where its bytes come from.
struct Member {
    name: String,
    file: BlobFile,
    /// The input that first named it (for messages).
    input: usize,
}

/// Writes one docker-archive holding every image of `inputs` to `out`.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<()> {
    if inputs.is_empty() {
        bail!("merge: give at least one image");
    }
    let mut target = AtomicFile::create(out)?;
    let scratch = tempfile::Builder::new()
        .prefix("stevedore-merge-")
        .tempdir()
        .context("creating a scratch directory")?;
    let limits = Limits::from_env()?;

    let mut members: Vec<Member> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut manifest: Vec<Value> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        let what = format!("image {}", input.display());
        let readable = readable(
            input,
            &scratch.path().join(format!("input-{i}.tar")),
            limits,
        )
        .with_context(|| what.clone())?;
        let index = tar_index(&readable).with_context(|| what.clone())?;
        let Some(manifest_file) = index.get("manifest.json") else {
            if index.contains_key("index.json") {
                bail!(
                    "{what} is an oci-archive; merge takes docker-archives (build it with format docker-archive)"
                );
            }
            bail!("{what} is not a docker-archive: it has no manifest.json");
        };
        let entries: Vec<Value> = serde_json::from_slice(&manifest_file.read()?)
            .with_context(|| format!("{what}: manifest.json is not a list of images"))?;
        if entries.is_empty() {
            bail!("{what}: manifest.json lists no image");
        }
        for (n, mut entry) in entries.into_iter().enumerate() {
            let at = format!("{what}: manifest.json entry {}", n + 1);
            let names = entry_members(&mut entry).with_context(|| at.clone())?;
            for (name, required) in names {
                let Some(file) = index.get(&name) else {
                    if required {
                        bail!("{at} names {name:?}, which is not in the archive");
                    }
                    continue;
                };
                add_member(&mut members, &mut by_name, inputs, name, file.clone(), i)?;
            }
            manifest.push(entry);
        }
        if let Some(file) = index.get("repositories") {
            let repos: BTreeMap<String, BTreeMap<String, Value>> =
                serde_json::from_slice(&file.read()?).with_context(|| {
                    format!("{what}: repositories is not an object of repositories and tags")
                })?;
            for (repo, tags) in repos {
                repositories.entry(repo).or_default().extend(tags);
            }
        }
    }

    {
        let w = BufWriter::with_capacity(256 * 1024, target.file());
        let mut tar = TarOut::new(w, MTIME);
        for m in &members {
            tar.begin_file(&m.name, m.file.size)?;
            copy_member(&m.file, tar.inner()).with_context(|| {
                format!("copying {} of image {}", m.name, inputs[m.input].display())
            })?;
            tar.end_file(m.file.size)?;
        }
        tar.file("manifest.json", &canonical_json(&manifest))?;
        if !repositories.is_empty() {
            tar.file("repositories", &canonical_json(&repositories))?;
        }
        tar.finish()?;
    }
    target.commit()
}

/// The members an entry of `manifest.json` names, with `./` taken off in
/// the entry too: its layers and their legacy files (not required), then
/// its config. `RepoTags` must be absent, null or a list of strings.
fn entry_members(entry: &mut Value) -> Result<Vec<(String, bool)>> {
    let obj = entry
        .as_object_mut()
        .context("is not an object with Config and Layers")?;
    match obj.get("RepoTags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) if tags.iter().all(Value::is_string) => {}
        Some(_) => bail!("RepoTags is not a list of strings"),
    }
    let mut names = Vec::new();
    let layers = obj
        .get_mut("Layers")
        .and_then(Value::as_array_mut)
        .context("has no Layers list")?;
    for layer in layers.iter_mut() {
        let name = member_name(layer).context("a layer")?;
        if let Some(dir) = name.strip_suffix("/layer.tar") {
            names.push((format!("{dir}/VERSION"), false));
            names.push((format!("{dir}/json"), false));
        }
        names.push((name, true));
    }
    let config = obj.get_mut("Config").context("has no Config")?;
    names.push((member_name(config).context("Config")?, true));
    Ok(names)
}

/// A member name from the manifest, normalised in place: no `./`, and
/// neither absolute nor with `..`.
fn member_name(value: &mut Value) -> Result<String> {
    let raw = value.as_str().context("is not a string")?;
    let name = scan::normalise_name(raw.as_bytes())
        .map_err(|why| anyhow::anyhow!("{raw:?} {why}"))?
        .with_context(|| format!("{raw:?} names no file"))?;
    // From a str, split at '/': still UTF-8.
    let name = String::from_utf8(name).expect("a normalised str is UTF-8");
    *value = Value::String(name.clone());
    Ok(name)
}

/// Adds a member unless an earlier image named it; the same name with
/// other bytes is an error.
fn add_member(
    members: &mut Vec<Member>,
    by_name: &mut BTreeMap<String, usize>,
    inputs: &[PathBuf],
    name: String,
    file: BlobFile,
    input: usize,
) -> Result<()> {
    let Some(&at) = by_name.get(&name) else {
        by_name.insert(name.clone(), members.len());
        members.push(Member { name, file, input });
        return Ok(());
    };
    let have = &members[at];
    if have.file.path == file.path && have.file.offset == file.offset {
        return Ok(());
    }
    let same = have.file.size == file.size && have.file.digest()? == file.digest()?;
    if !same {
        bail!(
            "images {} and {} both hold {name} with different contents",
            inputs[have.input].display(),
            inputs[input].display()
        );
    }
    Ok(())
}

fn copy_member(file: &BlobFile, w: &mut impl Write) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(&file.path)?;
    f.seek(SeekFrom::Start(file.offset))?;
    let n = std::io::copy(&mut f.take(file.size), w)?;
    if n != file.size {
        bail!("the archive is shorter than its index says");
    }
    Ok(())
}

/// An uncompressed docker-archive for `input`: the file itself, or one
/// decompressed or streamed to `scratch`.
fn readable(input: &Path, scratch: &Path, limits: Limits) -> Result<PathBuf> {
    let md = std::fs::metadata(input)?;
    if md.is_dir() {
        bail!(
            "is an OCI layout directory; merge takes docker-archives (build it with format docker-archive)"
        );
    }
    let mut head = [0u8; 4];
    let n = File::open(input)?.read(&mut head)?;
    let head = &head[..n];
    if head.starts_with(b"#!") || head.starts_with(b"{") {
        let image = crate::image::Image::from_spec(crate::spec::Spec::load(input)?)?;
        let mut w = BufWriter::new(File::create(scratch)?);
        crate::image::docker_archive::stream(&image, &mut w)?;
        w.flush()?;
        return Ok(scratch.to_owned());
    }
    if scan::sniff(head) == Compression::None {
        return Ok(input.to_owned());
    }
    let mut r = scan::decoder(head, BufReader::new(File::open(input)?))?;
    let mut w = BufWriter::new(File::create(scratch)?);
    let mut copied = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).context("decompressing")?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > limits.max_layer_bytes {
            bail!(
                "expands to more than {} bytes (the limit; set {} to change it)",
                limits.max_layer_bytes,
                scan::MAX_LAYER_BYTES_VAR
            );
        }
        w.write_all(&buf[..n])?;
    }
    w.flush()?;
    Ok(scratch.to_owned())
}
