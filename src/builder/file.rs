//! The `file` job: a store file holding a text, such as the image config,
//! a `runAsRoot` script or a `shellScript`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::{Derivation, check_version};

/// A file holding `text`: the image config, so that the store paths it
/// names are found by Nix's reference scan and join the closure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJob {
    /// The job format's version, 1.
    version: u64,
    /// What `$out` holds, byte for byte.
    text: String,
    /// Mode 0555 rather than 0444 (`shellScript`).
    #[serde(default)]
    executable: bool,
}

impl FileJob {
    /// Writes `text` to `$out`.
    pub(super) fn build(&self, drv: &Derivation) -> Result<()> {
        check_version(self.version)?;
        fs::write(&drv.out, &self.text).with_context(|| format!("writing {}", drv.out))?;
        if self.executable {
            fs::set_permissions(&drv.out, fs::Permissions::from_mode(0o555))
                .with_context(|| format!("making {} executable", drv.out))?;
        }
        Ok(())
    }
}
