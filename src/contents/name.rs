//! A store path's package name and version, split as Nix's
//! `builtins.parseDrvName` splits a name, and its package URL.

use crate::registry::client::percent_encode;

/// A store path's name split into package name and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameVersion {
    /// The 32-character hash part of the store path.
    pub hash: String,
    pub name: String,
    /// Empty when the name has none.
    pub version: String,
}

/// Splits `/nix/store/<hash>-<name>` as `builtins.parseDrvName` splits
/// `<name>`: the version starts after the first `-` that is followed by a
/// character other than a letter (in practice, a digit).
pub fn parse_name(store_path: &str) -> NameVersion {
    let base = store_path.rsplit('/').next().unwrap_or(store_path);
    let (hash, rest) = base.split_once('-').unwrap_or(("", base));
    let bytes = rest.as_bytes();
    let split = (0..bytes.len())
        .find(|&i| bytes[i] == b'-' && bytes.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()));
    let (name, version) = match split {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    NameVersion {
        hash: hash.to_owned(),
        name: name.to_owned(),
        version: version.to_owned(),
    }
}

impl NameVersion {
    /// `pkg:nix/<name>@<version>?hash=<hash>` (docs/sbom.md): the name and
    /// version percent-encoded as the purl specification asks, the store
    /// path's hash part as a qualifier, so that two builds of one version
    /// stay apart.
    pub fn purl(&self) -> String {
        let mut purl = format!("pkg:nix/{}", percent_encode(&self.name));
        if !self.version.is_empty() {
            purl.push('@');
            purl.push_str(&percent_encode(&self.version));
        }
        if !self.hash.is_empty() {
            purl.push_str("?hash=");
            purl.push_str(&percent_encode(&self.hash));
        }
        purl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_parse_drv_name() {
        let cases = [
            ("/nix/store/abc-hello-2.12.1", "hello", "2.12.1"),
            ("/nix/store/abc-openssl-3.0.7-bin", "openssl", "3.0.7-bin"),
            (
                "/nix/store/abc-python3.11-requests-2.31.0",
                "python3.11-requests",
                "2.31.0",
            ),
            ("/nix/store/abc-busybox", "busybox", ""),
            (
                "/nix/store/abc-hello-world-config.json",
                "hello-world-config.json",
                "",
            ),
            ("/nix/store/abc-gtk+-2.24", "gtk+", "2.24"),
            ("/nix/store/abc-a-_b", "a", "_b"),
        ];
        for (path, name, version) in cases {
            let nv = parse_name(path);
            assert_eq!(
                (nv.name.as_str(), nv.version.as_str()),
                (name, version),
                "{path}"
            );
            assert_eq!(nv.hash, "abc");
        }
    }

    #[test]
    fn purls_encode_what_is_not_unreserved() {
        assert_eq!(
            parse_name("/nix/store/abc-gtk+-2.24").purl(),
            "pkg:nix/gtk%2B@2.24?hash=abc"
        );
        assert_eq!(
            parse_name("/nix/store/abc-busybox").purl(),
            "pkg:nix/busybox?hash=abc"
        );
    }
}
