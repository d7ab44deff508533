//! `stevedore load`: an image into podman (streamed into `podman load`) or
//! into the Docker daemon (`POST /images/load` on its unix socket).
//!
//! An OCI layout or oci-archive (a `buildImageIndex` result) goes as the
//! docker-archive of its image for one platform, the host's or the one
//! asked for: its blobs byte for byte, named by digest.
//!
//! The Docker Engine API is spoken directly on the socket (`DOCKER_HOST`
//! `unix://PATH`, or `/var/run/docker.sock`), so no HTTP proxy of the
//! environment can get in the way. It is one request with a chunked body
//! and a small answer, written here in a few lines: the HTTP library used
//! for registries has no unix-socket transport.

use std::io::{self, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::image::Image;
use crate::image::docker_archive::{self, ArchiveWriter, manifest_entry};
use crate::oci::Platform;
use crate::stored::{self, Holding, Pick, StoredImage};

/// Where `load` puts an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Destination {
    Podman,
    DockerDaemon,
}

/// Loads `source` (a docker-archive, an OCI layout or oci-archive, or a
/// launcher) into `into`; of an index of images, the image for `platform`
/// (by default the host's).
pub fn load(source: &Path, into: Destination, platform: Option<&Platform>) -> Result<()> {
    let kind = Loadable::of(source, platform)?;
    match into {
        Destination::Podman => into_podman(source, &kind),
        Destination::DockerDaemon => into_docker(source, &kind),
    }
}

enum Loadable {
    Launcher(Box<Image>),
    Archive,
    /// The image of an OCI layout for one platform.
    Layout(Box<StoredImage>),
}

/// The time of every member of the docker-archive made from a layout.
const LAYOUT_ARCHIVE_MTIME: u64 = 1;

impl Loadable {
    fn of(source: &Path, platform: Option<&Platform>) -> Result<Loadable> {
        if crate::source::is_launcher(source)? {
            refuse_platform(source, platform)?;
            return Ok(Loadable::Launcher(Box::new(crate::source::launcher_image(
                source,
            )?)));
        }
        match stored::holding(source, "source")? {
            Holding::DockerArchive(_) => {
                refuse_platform(source, platform)?;
                Ok(Loadable::Archive)
            }
            Holding::Layout(..) => {
                let first = Pick::Named {
                    name: None,
                    tag: None,
                };
                let platform = platform.cloned().unwrap_or_else(Platform::host);
                let image = stored::open_for(source, &first, &platform, "source")?;
                Ok(Loadable::Layout(Box::new(image)))
            }
        }
    }

    /// Writes the image as a docker-archive.
    fn write(&self, source: &Path, w: impl Write) -> Result<()> {
        match self {
            Loadable::Launcher(image) => docker_archive::stream(image, w),
            Loadable::Archive => {
                let mut w = w;
                let mut file = std::fs::File::open(source)
                    .with_context(|| format!("reading {}", source.display()))?;
                io::copy(&mut file, &mut w)
                    .with_context(|| format!("copying {}", source.display()))?;
                w.flush().context("writing the archive")?;
                Ok(())
            }
            Loadable::Layout(image) => write_layout_image(image, w),
        }
    }
}

/// `--platform` picks from an index of images; a single image has none to
/// pick from.
fn refuse_platform(source: &Path, platform: Option<&Platform>) -> Result<()> {
    if let Some(p) = platform {
        bail!(
            "--platform {p}: {} is one image, not an index of images to pick from (an OCI layout such as buildImageIndex writes); load it without --platform",
            source.display()
        );
    }
    Ok(())
}

/// A layout's image as a docker-archive: layers `<hex>/layer.tar` and the
/// config `<hex>.json`, the blobs byte for byte, tagged with the name the
/// layout gives it.
fn write_layout_image(image: &StoredImage, w: impl Write) -> Result<()> {
    let mut archive = ArchiveWriter::new(w, LAYOUT_ARCHIVE_MTIME);
    let mut written = std::collections::BTreeSet::new();
    let mut names = Vec::new();
    for layer in &image.layers {
        let name = format!("{}/layer.tar", layer.blob_digest()?.hex());
        if written.insert(name.clone()) {
            let tar = archive.tar();
            tar.begin_file(&name, layer.file.size)?;
            layer.file.copy_to(tar.inner())?;
            tar.end_file(layer.file.size)?;
        }
        names.push(name);
    }
    let config_name = format!("{}.json", crate::digest::Digest::of(&image.config).hex());
    archive.tar().file(&config_name, &image.config)?;
    archive.image(manifest_entry(
        config_name,
        image.reference().map(str::to_owned).into_iter().collect(),
        names,
    ));
    let mut w = archive.finish()?;
    w.flush().context("writing the archive")
}

fn into_podman(source: &Path, kind: &Loadable) -> Result<()> {
    let mut child = Command::new("podman")
        .arg("load")
        .stdin(Stdio::piped())
        .spawn()
        .context("running podman load (is podman installed?)")?;
    let stdin = child.stdin.take().expect("piped stdin");
    let written = kind.write(source, BufWriter::with_capacity(256 * 1024, stdin));
    let status = child.wait().context("waiting for podman load")?;
    if !status.success() {
        bail!("podman load failed ({status})");
    }
    written
}

/// The Docker daemon's socket: `DOCKER_HOST=unix://PATH`, or the default.
fn docker_socket() -> Result<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => Ok(PathBuf::from(path)),
            None => bail!(
                "DOCKER_HOST {host:?}: copyToDockerDaemon talks to a unix socket (unix:///var/run/docker.sock); for a remote daemon push to a registry"
            ),
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

fn into_docker(source: &Path, kind: &Loadable) -> Result<()> {
    let socket = docker_socket()?;
    let stream = UnixStream::connect(&socket).with_context(|| {
        format!(
            "connecting to the Docker daemon at {} (is it running? set DOCKER_HOST=unix://PATH)",
            socket.display()
        )
    })?;
    let mut w = BufWriter::with_capacity(256 * 1024, stream.try_clone()?);
    w.write_all(
        b"POST /images/load HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .context("writing to the Docker daemon")?;
    let sent = kind.write(source, Chunked(&mut w)).and_then(|()| {
        w.write_all(b"0\r\n\r\n")?;
        w.flush()?;
        Ok(())
    });
    drop(w);
    let mut answer = Vec::new();
    let read = (&stream).read_to_end(&mut answer);
    let (status, body) = match parse_response(&answer) {
        Some(r) => r,
        None => {
            sent.context("sending the image to the Docker daemon")?;
            read.context("reading the Docker daemon's answer")?;
            bail!(
                "the Docker daemon at {} gave no HTTP answer",
                socket.display()
            );
        }
    };
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
            bail!("the Docker daemon refused the image: {err}");
        }
        if let Some(text) = v.get("stream").and_then(|e| e.as_str()) {
            eprint!("{text}");
        }
    }
    if status != 200 {
        let text = String::from_utf8_lossy(&body);
        bail!(
            "the Docker daemon answered POST /images/load with HTTP {status}: {}",
            text.trim()
        );
    }
    sent.context("sending the image to the Docker daemon")
}

/// Writes HTTP/1.1 chunks.
struct Chunked<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Chunked<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.0, "{:x}\r\n", buf.len())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The status and body of an HTTP/1.1 response (body de-chunked).
fn parse_response(bytes: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &bytes[end + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_answers() {
        let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(answer), Some((200, b"hello world".to_vec())));
        let answer = b"HTTP/1.1 500 Internal\r\nContent-Length: 3\r\n\r\nbad";
        assert_eq!(parse_response(answer), Some((500, b"bad".to_vec())));
    }

    #[test]
    fn writes_chunks() {
        let mut out = Vec::new();
        Chunked(&mut out).write_all(b"abc").unwrap();
        assert_eq!(out, b"3\r\nabc\r\n");
    }
}
