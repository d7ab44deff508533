//! Launcher scripts: the `launcher` job writes `bin/NAME`, a
//! `#!HELPER launch` line and JSON saying what to do with which image;
//! [`read`] reads one back for `stevedore launch`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Derivation, check_version};
use crate::spec;

/// An executable `bin/NAME` that runs `stevedore launch` on itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LauncherJob {
    /// The job format's version, 1.
    version: u64,
    /// The program name under `bin/`.
    name: String,
    /// What the launcher does: `copy-to-registry`, `copy-to-podman` or
    /// `copy-to-docker-daemon`.
    action: Action,
    /// The image: a docker-archive, an OCI layout or a stream launcher;
    /// for `get-manifest`, `docker://HOST/REPO:TAG`.
    image: String,
    /// For `get-manifest`: the platform to pick from an index, and
    /// whether TLS is verified.
    #[serde(default)]
    platform: Option<crate::oci::Platform>,
    #[serde(default)]
    tls_verify: Option<bool>,
    /// For `copy-to-registry`: where to push when the command line names
    /// no destination (nix2container's `docker://NAME:TAG`).
    #[serde(default)]
    destination: Option<String>,
}

/// What a launcher does with its image.
#[derive(Debug, Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pushes it to the registry its arguments name (`stevedore push`).
    #[serde(rename = "copy-to-registry")]
    Registry,
    /// Loads it into podman (`stevedore load --into podman`).
    #[serde(rename = "copy-to-podman")]
    Podman,
    /// Loads it into the Docker daemon (`stevedore load --into
    /// docker-daemon`).
    #[serde(rename = "copy-to-docker-daemon")]
    DockerDaemon,
    /// Prints the image manifest of a registry's image for a platform
    /// (`pullImageFromManifest`'s `getManifest`).
    #[serde(rename = "get-manifest")]
    GetManifest,
}

/// What a launcher script holds after its `#!` line.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LaunchScript {
    /// The script format's version, 1.
    version: u64,
    /// What to do.
    action: Action,
    /// The image to do it with.
    image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<crate::oci::Platform>,
    #[serde(default, rename = "tlsVerify", skip_serializing_if = "Option::is_none")]
    tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
}

/// A launcher script as [`read`] gives it.
#[derive(Debug)]
pub struct Launcher {
    /// What to do.
    pub action: Action,
    /// The image's path: a docker-archive or a stream launcher.
    pub image: String,
    /// `get-manifest`'s platform and TLS verification.
    pub platform: Option<crate::oci::Platform>,
    pub tls_verify: Option<bool>,
    /// `copy-to-registry`'s destination when none is given.
    pub destination: Option<String>,
}

impl LauncherJob {
    /// `$out/bin/NAME`: `#!HELPER launch` and what to do, as JSON.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        if self.name.is_empty() || self.name.contains('/') {
            bail!(
                "attribute stevedore.name: {:?} is not a program name",
                self.name
            );
        }
        let exe = std::env::current_exe().context("finding the stevedore binary")?;
        let bin = drv.out().join("bin");
        fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
        let path = bin.join(&self.name);
        let script = LaunchScript {
            version: spec::VERSION,
            action: self.action,
            image: self.image.clone(),
            platform: self.platform.clone(),
            tls_verify: self.tls_verify,
            destination: self.destination.clone(),
        };
        let mut file =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "#!{} launch", exe.display())?;
        file.write_all(&serde_json::to_vec_pretty(&script)?)?;
        file.write_all(b"\n")?;
        file.set_permissions(fs::Permissions::from_mode(0o555))?;
        Ok(())
    }
}

/// Reads the launcher script `script`: what it does, to which image.
pub fn read(script: &Path) -> Result<Launcher> {
    let text = fs::read(script).with_context(|| format!("reading {}", script.display()))?;
    let body = text
        .strip_prefix(b"#!")
        .and_then(|rest| {
            rest.iter()
                .position(|&b| b == b'\n')
                .map(|n| &rest[n + 1..])
        })
        .with_context(|| format!("{}: not a stevedore launcher", script.display()))?;
    let parsed: LaunchScript = serde_json::from_slice(body)
        .with_context(|| format!("{}: not a stevedore launcher", script.display()))?;
    check_version(parsed.version)?;
    Ok(Launcher {
        action: parsed.action,
        image: parsed.image,
        platform: parsed.platform,
        tls_verify: parsed.tls_verify,
        destination: parsed.destination,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn reads_the_action_and_image_after_the_first_line() {
        let file = script(
            "#!/nix/store/x-stevedore launch\n{\"version\": 1, \"action\": \"copy-to-podman\", \"image\": \"/nix/store/y-img\"}\n",
        );
        let launcher = read(file.path()).unwrap();
        assert_eq!(launcher.action, Action::Podman);
        assert_eq!(launcher.image, "/nix/store/y-img");
    }

    #[test]
    fn refuses_other_files_and_versions() {
        for text in [
            "{\"version\": 1, \"action\": \"copy-to-podman\", \"image\": \"i\"}",
            "#!x launch\n{\"version\": 1, \"action\": \"copy\", \"image\": \"i\"}",
            "#!x launch\n{\"version\": 1, \"action\": \"copy-to-podman\", \"image\": \"i\", \"more\": 1}",
        ] {
            let e = format!("{:#}", read(script(text).path()).unwrap_err());
            assert!(e.contains("not a stevedore launcher"), "{e}");
        }
        let file = script(
            "#!x launch\n{\"version\": 2, \"action\": \"copy-to-docker-daemon\", \"image\": \"i\"}",
        );
        let e = read(file.path()).unwrap_err().to_string();
        assert!(e.contains("stevedore.version: 2 is not supported"), "{e}");
    }
}
