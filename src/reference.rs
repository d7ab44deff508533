//! Image names and tags, checked against the reference grammar of the
//! distribution project (`reference/regexp.go`), so a name that a registry
//! would refuse is refused at build time instead.

use std::sync::LazyLock;

use regex::Regex;

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
}
