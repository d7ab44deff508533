//! Platforms of multi-platform images (an OCI index or a Docker manifest
//! list): the host's, and which entry of an index is the image for one.
//! `pull` and every reader of OCI layouts choose with [`choose`].

use std::fmt;

use serde::Deserialize;

/// A platform, as asked for or as an index entry's `platform` names it
/// (fields an entry has beyond these, such as `os.version`, are ignored).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Linux on the host's architecture in OCI terms, any variant: what
    /// `pull` takes by default, and what base images, `merge` and `export`
    /// take from an index.
    pub fn host() -> Platform {
        Platform {
            os: "linux".to_owned(),
            architecture: host_architecture().to_owned(),
            variant: None,
        }
    }

    /// Whether `have`, an entry's platform, is this one: os and
    /// architecture equal, and the variant too when this one names one.
    pub fn fits(&self, have: &Platform) -> bool {
        have.os == self.os
            && have.architecture == self.architecture
            && (self.variant.is_none() || have.variant == self.variant)
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    /// `OS/ARCH` or `OS/ARCH/VARIANT`, as `podman run --platform` takes it.
    fn from_str(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if parts.iter().all(|p| ok(p)) => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
            }),
            _ => Err(format!(
                "\"{}\" is not a platform; give OS/ARCH or OS/ARCH/VARIANT, such as linux/arm64 or linux/arm/v7",
                crate::terminal::escape(text)
            )),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The OCI name of the host's architecture.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    }
}

/// No entry of an index is an image for the platform asked for. It reads
/// after what names the index: "the index has no image for linux/s390x;
/// its platforms are linux/amd64, linux/arm64/v8".
#[derive(Debug)]
pub struct NoPlatform {
    pub asked: Platform,
    /// The platforms of the entries, in index order.
    pub have: Vec<Platform>,
}

impl fmt::Display for NoPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "has no image for {}; ", self.asked)?;
        if self.have.is_empty() {
            return write!(f, "its entries name no platform");
        }
        // A hostile index may list thousands: the first few, each cut
        // short, and how many more.
        let shown: Vec<String> = self
            .have
            .iter()
            .take(SHOWN_PLATFORMS)
            .map(|p| {
                let text = p.to_string();
                match text.char_indices().nth(PLATFORM_CHARS) {
                    Some((cut, _)) => format!("{}...", &text[..cut]),
                    None => text,
                }
            })
            .collect();
        write!(f, "its platforms are {}", shown.join(", "))?;
        if self.have.len() > SHOWN_PLATFORMS {
            write!(f, " and {} more", self.have.len() - SHOWN_PLATFORMS)?;
        }
        Ok(())
    }
}

impl std::error::Error for NoPlatform {}

/// How many platforms a [`NoPlatform`] message lists, and how many
/// characters of each.
const SHOWN_PLATFORMS: usize = 10;
const PLATFORM_CHARS: usize = 64;

/// The first of `entries` whose platform (`platform_of`) fits `want`.
pub fn choose<'a, T>(
    entries: &'a [T],
    platform_of: impl Fn(&T) -> Option<&Platform>,
    want: &Platform,
) -> Result<&'a T, NoPlatform> {
    entries
        .iter()
        .find(|e| platform_of(e).is_some_and(|p| want.fits(p)))
        .ok_or_else(|| NoPlatform {
            asked: want.clone(),
            have: entries
                .iter()
                .filter_map(|e| platform_of(e).cloned())
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn a_long_list_of_platforms_is_cut_short() {
        let have: Vec<Platform> = (0..10_000)
            .map(|i| platform("linux", &format!("arch{i}{}", "x".repeat(200)), None))
            .collect();
        let message = NoPlatform {
            asked: platform("linux", "s390x", None),
            have,
        }
        .to_string();
        assert!(message.len() < 1200, "{} bytes", message.len());
        assert!(message.ends_with(" and 9990 more"), "{message}");
        assert!(message.contains("linux/arch0xxx"), "{message}");
    }

    #[test]
    fn a_variant_matters_only_when_asked_for() {
        let entries = [
            Some(platform("linux", "arm64", Some("v8"))),
            None,
            Some(platform("linux", "amd64", None)),
        ];
        let any = |want: &Platform| choose(&entries, Option::as_ref, want).cloned();
        assert_eq!(any(&platform("linux", "arm64", None)).unwrap(), entries[0]);
        assert_eq!(
            any(&platform("linux", "arm64", Some("v8"))).unwrap(),
            entries[0]
        );
        assert!(any(&platform("linux", "arm64", Some("v7"))).is_err());
        assert!(any(&platform("windows", "amd64", None)).is_err());
        let err = any(&platform("linux", "s390x", None)).unwrap_err();
        assert_eq!(
            format!("the index {err}"),
            "the index has no image for linux/s390x; its platforms are linux/arm64/v8, linux/amd64"
        );
    }

    #[test]
    fn platforms_parse_as_podman_writes_them() {
        assert_eq!(
            "linux/arm64".parse::<Platform>().unwrap(),
            platform("linux", "arm64", None)
        );
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().unwrap(),
            platform("linux", "arm", Some("v7"))
        );
        for bad in [
            "linux",
            "linux/",
            "linux/arm64/v8/x",
            "/amd64",
            "linux/amd 64",
        ] {
            let err = bad.parse::<Platform>().unwrap_err();
            assert!(
                err.contains("give OS/ARCH or OS/ARCH/VARIANT"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn entries_without_platforms_are_named_so() {
        let entries: [Option<Platform>; 1] = [None];
        let err = choose(&entries, Option::as_ref, &Platform::host()).unwrap_err();
        assert!(err.to_string().ends_with("its entries name no platform"));
    }
}
