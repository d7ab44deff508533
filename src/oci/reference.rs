//! Image names and tags, checked against the reference grammar of the
//! distribution project (`reference/regexp.go`), so a name that a registry
//! would refuse is refused at build time instead.

use std::fmt;
use std::sync::LazyLock;

use anyhow::{Result, bail};
use regex::Regex;

use crate::digest::Digest;

/// A lowercase path component: alphanumerics joined by `.`, `_`, `__` or
/// runs of `-`.
const COMPONENT: &str = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
/// A registry host, optionally with a port.
const DOMAIN: &str = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?";

static PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{COMPONENT}(?:/{COMPONENT})*$")).unwrap());
static HOST: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!("^{DOMAIN}$")).unwrap());
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").unwrap());

/// Longest repository name registries accept.
const NAME_MAX: usize = 255;

/// Checks a repository name such as `hello`, `library/hello` or
/// `registry.example.com:5000/team/hello`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty; give the image a repository name such as \"hello\"".into());
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "name {name:?} is {} bytes long; registries accept at most {NAME_MAX}",
            name.len()
        ));
    }
    let (host, path) = split_host(name);
    if let Some(host) = host
        && !HOST.is_match(host)
    {
        return Err(format!(
            "name {name:?} has an invalid registry host {host:?}"
        ));
    }
    if PATH.is_match(path) {
        return Ok(());
    }
    let lower = path.to_lowercase();
    if lower != path && PATH.is_match(&lower) {
        let fixed = match host {
            Some(h) => format!("{h}/{lower}"),
            None => lower,
        };
        return Err(format!(
            "name {name:?} has uppercase letters; registries require lowercase repository names, use {fixed:?}"
        ));
    }
    Err(format!(
        "name {name:?} is not a valid repository name: use lowercase letters, digits and \
         separators (. _ __ -) between them, with / between components"
    ))
}

/// Checks a tag such as `latest` or `1.2.3`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    if TAG.is_match(tag) {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is not a valid tag: use 1 to 128 letters, digits, _ . -, not starting with . or -"
        ))
    }
}

/// Splits off a registry host: the first component when it has a `.` or a
/// `:`, or is `localhost`, as the distribution project decides it.
fn split_host(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

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
                    check_tag(tag).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
                    (repo, Target::Tag(tag.to_owned()))
                }
                _ => (path, Target::Tag("latest".to_owned())),
            }
        };
        check_name(&format!("{host}/{repo}")).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_names() {
        for n in [
            "hello",
            "library/hello",
            "a.b_c__d--e",
            "localhost/hello",
            "localhost:5000/team/app",
            "Registry.Example.com/app",
        ] {
            assert_eq!(check_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn uppercase_is_refused_with_a_fix() {
        let err = check_name("MyApp").unwrap_err();
        assert!(err.contains("lowercase"), "{err}");
        assert!(err.contains("\"myapp\""), "{err}");
    }

    #[test]
    fn refuses_bad_names() {
        for n in [
            "",
            "-a",
            "a-",
            "a//b",
            "a/",
            "a..b",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(check_name(n).is_err(), "{n:?}");
        }
    }

    #[test]
    fn tags() {
        assert_eq!(check_tag("latest"), Ok(()));
        assert_eq!(check_tag("v1.2_3-rc"), Ok(()));
        assert!(check_tag("").is_err());
        assert!(check_tag(".x").is_err());
        assert!(check_tag("a/b").is_err());
        assert!(check_tag(&"a".repeat(129)).is_err());
    }

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
