//! What Nix knows of an image's store paths (narHash, narSize,
//! references), from the first source that has it: a closure graph, the
//! image's own Nix database, or the host's store.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Contents, Facts};
use crate::base::Base;
use crate::nixdb::{self, Registration, ValidPath};

/// Where narHash and references came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraphSource {
    /// The closure graph Nix exported for the image (`exportReferencesGraph`).
    Closure,
    /// The Nix database in the image (`/nix/var/nix/db/db.sqlite`).
    ImageDb,
    /// The host's Nix store, which has the paths (`nix-store --dump-db`).
    HostStore,
}

impl GraphSource {
    /// How `inspect` says it.
    pub fn describe(self) -> &'static str {
        match self {
            GraphSource::Closure => "the closure graph Nix exported",
            GraphSource::ImageDb => "the Nix database in the image",
            GraphSource::HostStore => "the host's Nix store",
        }
    }
}

/// Fills in narHash, narSize and references of the store paths of
/// `contents`, and their `meta`.
pub(super) fn add_facts(contents: &mut Contents, base: Option<&Base>, facts: &Facts) -> Result<()> {
    if let Some(graph) = facts.graph {
        let paths: Vec<ValidPath> = graph
            .iter()
            .filter_map(|(path, info)| {
                Some(ValidPath {
                    path: path.to_owned(),
                    hash: info.nar_hash.clone()?,
                    nar_size: info.nar_size?,
                    deriver: None,
                    ca: None,
                    references: info.references.iter().cloned().collect(),
                    drv_outputs: Vec::new(),
                })
            })
            .collect();
        fill(contents, &paths, GraphSource::Closure)?;
    }
    if missing(contents)
        && let Some(base) = base
        && let Some(entry) = base
            .view
            .get(format!("{}/db.sqlite", nixdb::DB_DIR).as_bytes())
    {
        let mut db =
            tempfile::NamedTempFile::new().context("a scratch file for the Nix database")?;
        std::io::copy(&mut base.open_file(entry)?, db.as_file_mut())
            .context("reading the Nix database of the image")?;
        db.as_file_mut().flush()?;
        let paths = Registration::read_db(db.path())?;
        fill(contents, &paths, GraphSource::ImageDb)?;
    }
    if missing(contents) && facts.host_store {
        let paths = host_store(contents);
        fill(contents, &paths, GraphSource::HostStore)?;
    }
    for (path, meta) in &facts.meta {
        if let Some(p) = contents.store_paths.get_mut(path) {
            p.meta = Some(meta.clone());
        }
    }
    Ok(())
}

/// Whether a store path of the image has no narHash yet.
fn missing(contents: &Contents) -> bool {
    contents.store_paths.values().any(|p| p.nar_hash.is_none())
}

/// Takes what `paths` know of the image's store paths that lack it.
fn fill(contents: &mut Contents, paths: &[ValidPath], source: GraphSource) -> Result<()> {
    let mut used = false;
    for valid in paths {
        let Some(p) = contents.store_paths.get_mut(&valid.path) else {
            continue;
        };
        if p.nar_hash.is_some() {
            continue;
        }
        let hash = nixdb::db_hash(&valid.hash).map_err(|e| {
            anyhow::anyhow!("narHash of {} ({}): {e}", valid.path, source.describe())
        })?;
        p.nar_hash = Some(hash);
        p.nar_size = Some(valid.nar_size);
        p.references = Some(
            valid
                .references
                .iter()
                .filter(|r| **r != valid.path)
                .cloned()
                .collect::<BTreeSet<_>>(),
        );
        used = true;
    }
    if used && contents.graph.is_none() {
        contents.graph = Some(source);
    }
    Ok(())
}

/// What the host's store records of the image's store paths that it has:
/// `nix-store --dump-db` of them, in the registration format (path,
/// narHash in base16, narSize, deriver, reference count, references). An
/// absent or failing `nix-store` gives nothing.
fn host_store(contents: &Contents) -> Vec<ValidPath> {
    let paths: Vec<&String> = contents
        .store_paths
        .iter()
        .filter(|(path, info)| info.nar_hash.is_none() && std::path::Path::new(path).exists())
        .map(|(path, _)| path)
        .collect();
    if paths.is_empty() {
        return Vec::new();
    }
    let output = Command::new("nix-store")
        .arg("--dump-db")
        .args(&paths)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => {
            parse_registration(&String::from_utf8_lossy(&out.stdout)).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Parses Nix's registration format (`nix-store --dump-db`).
fn parse_registration(text: &str) -> Option<Vec<ValidPath>> {
    let mut lines = text.lines();
    let mut out = Vec::new();
    while let Some(path) = lines.next() {
        if path.is_empty() {
            continue;
        }
        let hash = lines.next()?;
        let nar_size = lines.next()?.parse().ok()?;
        let deriver = lines.next()?;
        let count: usize = lines.next()?.parse().ok()?;
        let references = (0..count)
            .map(|_| lines.next().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        out.push(ValidPath {
            path: path.to_owned(),
            hash: if hash.contains(':') {
                hash.to_owned()
            } else {
                format!("sha256:{hash}")
            },
            nar_size,
            deriver: (!deriver.is_empty()).then(|| deriver.to_owned()),
            ca: None,
            references,
            drv_outputs: Vec::new(),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_registration_format() {
        let text = "/nix/store/a-x\ne9ee1a599447f6b3b4671957335261f314ee7cdc8967174159c40c83602a113a\n10\n\n2\n/nix/store/a-x\n/nix/store/b-y\n/nix/store/b-y\nsha256:e9ee1a599447f6b3b4671957335261f314ee7cdc8967174159c40c83602a113a\n5\n/nix/store/c.drv\n0\n";
        let paths = parse_registration(text).unwrap();
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[0].references, ["/nix/store/a-x", "/nix/store/b-y"]);
        assert!(paths[0].hash.starts_with("sha256:e9ee"));
        assert_eq!(paths[1].deriver.as_deref(), Some("/nix/store/c.drv"));
        assert!(parse_registration("/nix/store/a\nh\nten\n").is_none());
    }
}
