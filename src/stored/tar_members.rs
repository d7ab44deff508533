//! The members of a tar archive, found by their headers and read in place
//! later, by offset: a docker-archive or oci-archive is never unpacked.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};

use super::BlobFile;

/// The members of a tar: name (without `./`) to position and size.
pub fn members(path: &Path) -> Result<BTreeMap<String, BlobFile>> {
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut members = BTreeMap::new();
    let entries = archive
        .entries()
        .with_context(|| format!("{}: not a tar archive", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: not a tar archive", path.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .with_context(|| format!("{}: a member name is not valid", path.display()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        members.insert(
            name,
            BlobFile {
                path: path.to_owned(),
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
        );
    }
    Ok(members)
}
