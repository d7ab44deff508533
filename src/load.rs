//! `stevedore load`: an image into podman (streamed into `podman load`) or
//! into the Docker daemon (`POST /images/load` on its unix socket).
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
use crate::image::docker_archive;

/// Where `load` puts an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Destination {
    Podman,
    DockerDaemon,
}

/// Loads `source` (a docker-archive or a launcher) into `into`.
pub fn load(source: &Path, into: Destination) -> Result<()> {
    let kind = Loadable::of(source)?;
    match into {
        Destination::Podman => into_podman(source, &kind),
        Destination::DockerDaemon => into_docker(source, &kind),
    }
}

enum Loadable {
    Launcher(Box<Image>),
    Archive,
}

impl Loadable {
    fn of(source: &Path) -> Result<Loadable> {
        if crate::source::is_launcher(source)? {
            return Ok(Loadable::Launcher(Box::new(crate::source::launcher_image(
                source,
            )?)));
        }
        let members = crate::stored::members(source)?;
        if !members.contains_key("manifest.json") {
            bail!(
                "{}: load takes a docker-archive or a streamLayeredImage launcher; push an OCI layout to a registry instead",
                source.display()
            );
        }
        Ok(Loadable::Archive)
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
        }
    }
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
