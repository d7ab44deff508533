//! Registry credentials where users already keep them, in this order:
//! `--creds USER:PASS`, `REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json` (podman, skopeo), and
//! `~/.docker/config.json` (Docker). The files share one format: `auths`,
//! keyed by registry host, each with a base64 `auth` of `user:password`.
//! A few lines of JSON, so no crate for it.
//!
//! A [`Credentials`] never shows its secret: its `Debug` prints where it
//! came from, and errors name that source, never the user or password.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// A user and password, and where they were found.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// `--creds` or a file path, for messages.
    pub source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials(from {})", self.source)
    }
}

impl Credentials {
    /// The value of a Basic `Authorization` header.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.user, self.password))
        )
    }
}

/// Parses `--creds USER:PASS`.
pub fn from_flag(creds: &str) -> Result<Credentials> {
    match creds.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
            source: "--creds".to_owned(),
        }),
        _ => bail!("--creds must be USER:PASSWORD"),
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// The auth files to read, in order, as this environment names them.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        files.push(Path::new(&d).join("containers/auth.json"));
    }
    let docker_config = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
    if let Some(d) = docker_config {
        files.push(d.join("config.json"));
    }
    files
}

/// The credentials for `host` (`HOST[:PORT]`): `--creds` if given, else
/// the first auth file that has an entry for the host.
pub fn find(flag: Option<&str>, host: &str) -> Result<Option<Credentials>> {
    if let Some(creds) = flag {
        return from_flag(creds).map(Some);
    }
    for file in auth_files() {
        if let Some(c) = from_file(&file, host)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The entry for `host` in one auth file; a missing file has none.
pub fn from_file(file: &Path, host: &str) -> Result<Option<Credentials>> {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let parsed: AuthFile = serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an auth file (JSON with `auths`): {e}",
            file.display()
        )
    })?;
    for (key, entry) in &parsed.auths {
        if normalise_key(key) != host {
            continue;
        }
        let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
            continue;
        };
        let source = format!("{} (entry {key})", file.display());
        let decoded = STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .with_context(|| format!("{source}: `auth` is not base64 of USER:PASSWORD"))?;
        let Some((user, password)) = decoded.split_once(':') else {
            bail!("{source}: `auth` is not base64 of USER:PASSWORD");
        };
        return Ok(Some(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
            source,
        }));
    }
    Ok(None)
}

/// `https://host:5000/v1/` and `host:5000` name the same registry.
fn normalise_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_and_containers_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        let auth = STANDARD.encode("alice:s3cret:x");
        std::fs::write(
            &file,
            format!(
                r#"{{"auths":{{"https://reg.example.com/v1/":{{"auth":"{auth}"}},"other:5000":{{}}}}}}"#
            ),
        )
        .unwrap();
        let c = from_file(&file, "reg.example.com").unwrap().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "s3cret:x")
        );
        assert!(from_file(&file, "other:5000").unwrap().is_none());
        assert!(from_file(&dir.path().join("none"), "x").unwrap().is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn flag_needs_a_colon() {
        assert!(from_flag("alice").is_err());
        let err = format!("{:#}", from_flag("alice").unwrap_err());
        assert!(!err.contains("alice"));
        assert_eq!(from_flag("a:b:c").unwrap().password, "b:c");
    }
}
