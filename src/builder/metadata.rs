//! The `metadata` output of a customisation tree: the modes and owners
//! its entries had before the store normalised them (docs/spec.md,
//! "Customisation metadata").

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::spec::{self, EntryMetadata, Metadata};

/// Writes the mode of every entry below `tree` to `out`, before the store
/// normalises the tree (modes 0444/0555), with root as every owner.
pub fn record_metadata(tree: &Path, out: &Path) -> Result<()> {
    write_metadata(tree_metadata(tree)?, out)
}

/// Writes `entries` to `out` as a metadata file.
pub fn write_metadata(entries: BTreeMap<String, EntryMetadata>, out: &Path) -> Result<()> {
    let metadata = Metadata {
        version: spec::VERSION,
        entries,
    };
    fs::write(out, serde_json::to_vec_pretty(&metadata)?)
        .with_context(|| format!("writing {}", out.display()))
}

/// The mode of every entry below `tree`, by path relative to it, owned by
/// root.
pub fn tree_metadata(tree: &Path) -> Result<BTreeMap<String, EntryMetadata>> {
    fn walk(dir: &Path, rel: &str, entries: &mut BTreeMap<String, EntryMetadata>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_str().with_context(|| {
                format!(
                    "{}: file names in the customisation layer must be UTF-8",
                    entry.path().display()
                )
            })?;
            let path = entry.path();
            let md = fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let dest = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            entries.insert(
                dest.clone(),
                EntryMetadata {
                    mode: md.mode() & 0o7777,
                    uid: 0,
                    gid: 0,
                },
            );
            if md.is_dir() {
                walk(&path, &dest, entries)?;
            }
        }
        Ok(())
    }
    let mut entries = BTreeMap::new();
    walk(tree, "", &mut entries)?;
    Ok(entries)
}
