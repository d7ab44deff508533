//! Registries without a daemon: the OCI distribution protocol (Docker
//! Registry HTTP API v2) spoken by the helper itself, to push images
//! ([`push`]) and pull them by digest ([`pull`]).
//!
//! [`client`] owns HTTP, TLS, retries and authentication; [`credentials`]
//! finds what users already configured for podman, skopeo and Docker;
//! [`source`] reads every image stevedore writes; [`platform`] chooses
//! the image of a multi-platform index; [`layer_cache`] keeps the digests
//! of layers made from the store; [`progress`] reports per layer. The protocol is small and its failure modes matter (resuming,
//! never pushing a broken manifest, never printing a credential), so it is
//! written here on an HTTP library (`ureq`) rather than through a registry
//! crate that would hide them.

pub mod client;
pub mod credentials;
pub mod layer_cache;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod source;

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Result, bail};

use crate::digest::Digest;
use crate::reference;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// What a reference names in its repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tag(String),
    Digest(Digest),
}

/// `docker://HOST/REPO:TAG` or `docker://HOST/REPO@sha256:...`. The host
/// is required: stevedore never guesses a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub host: String,
    pub repo: String,
    pub target: Target,
}

impl Reference {
    /// Parses a reference; `what` names the argument in errors.
    pub fn parse(what: &str, text: &str) -> Result<Reference> {
        let Some(rest) = text.strip_prefix("docker://") else {
            bail!(
                "{what} {text:?} must start with docker://, as in docker://localhost:5000/hello:latest"
            );
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        if let Some((_, host)) = authority.rsplit_once('@') {
            // Never repeated: it may hold a password.
            bail!(
                "{what}: credentials in the reference (USER:PASSWORD@ before {host:?}) are not taken, and the reference is not shown; give them with --creds, or log in with podman login or docker login"
            );
        }
        let Some((host, path)) = rest.split_once('/') else {
            bail!(
                "{what} {text:?} has no repository; give docker://HOST/REPO:TAG, as in docker://localhost:5000/hello:latest"
            );
        };
        if host.is_empty() || !(host.contains('.') || host.contains(':') || host == "localhost") {
            bail!(
                "{what} {text:?} must name the registry host first (with a . or a :port, or localhost), as in docker://localhost:5000/hello:latest"
            );
        }
        let (repo, target) = if let Some((repo, digest)) = path.split_once('@') {
            let digest: Digest = digest
                .parse()
                .map_err(|e| anyhow::anyhow!("{what} {text:?}: {e}"))?;
            (repo, Target::Digest(digest))
        } else {
            match path.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => {
                    reference::check_tag(tag).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
                    (repo, Target::Tag(tag.to_owned()))
                }
                _ => (path, Target::Tag("latest".to_owned())),
            }
        };
        reference::check_name(&format!("{host}/{repo}"))
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        Ok(Reference {
            host: host.to_owned(),
            repo: repo.to_owned(),
            target,
        })
    }

    /// `HOST/REPO`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.repo)
    }

    /// The tag or digest as it goes into a manifest URL.
    pub fn target_str(&self) -> String {
        match &self.target {
            Target::Tag(t) => t.clone(),
            Target::Digest(d) => d.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tag(t) => write!(f, "{}/{}:{t}", self.host, self.repo),
            Target::Digest(d) => write!(f, "{}/{}@{d}", self.host, self.repo),
        }
    }
}

/// How to reach a registry: from the command line.
#[derive(Clone, Debug)]
pub struct Connection {
    /// `USER:PASS` from `--creds`.
    pub creds: Option<String>,
    /// false: plain http and self-signed certificates are accepted.
    pub tls_verify: bool,
    /// Retries of a request that failed with 5xx, 429 or a cut connection.
    pub retries: u32,
    /// The longest wait for a registry: for an answer's headers, and for
    /// each read or write of a transfer.
    pub timeout: std::time::Duration,
}

/// [`Connection::timeout`] unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for Connection {
    fn default() -> Self {
        Connection {
            creds: None,
            tls_verify: true,
            retries: 5,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Runs `f` on every index with up to `jobs` threads; results by index,
/// the first failure reported.
pub(crate) fn for_each_index<T: Send>(
    count: usize,
    jobs: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let r = f(i);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    results.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    if let Some(i) = results.iter().position(|r| matches!(r, Some(Err(_)))) {
        if let Some(Some(Err(err))) = results.into_iter().nth(i) {
            return Err(err);
        }
        unreachable!("position found an error");
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a layer was not pushed"))))
        .collect()
}

/// `12.3 MB`, for progress lines.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = Reference::parse("destination", "docker://localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.host, "localhost:5000");
        assert_eq!(r.repo, "a/b");
        assert_eq!(r.target, Target::Tag("v1".into()));
        let r = Reference::parse("d", "docker://127.0.0.1:5000/hello").unwrap();
        assert_eq!(r.target, Target::Tag("latest".into()));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse("d", &format!("docker://reg.example.com/x@{d}")).unwrap();
        assert_eq!(r.target, Target::Digest(d.parse().unwrap()));
        assert_eq!(r.to_string(), format!("reg.example.com/x@{d}"));
    }

    #[test]
    fn refuses_bad_references() {
        for r in [
            "localhost:5000/a",
            "docker://hello",
            "docker://hello/world",
            "docker://localhost:5000/",
            "docker://localhost:5000/A",
            "docker://localhost:5000/a@sha256:12",
            "docker://localhost:5000/a:.bad",
        ] {
            assert!(Reference::parse("d", r).is_err(), "{r}");
        }
    }
}
