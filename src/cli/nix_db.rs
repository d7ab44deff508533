//! `stevedore nix-db`: the Nix database and gcroots of a closure graph,
//! written into a root directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::read_exclude;
use crate::{closure, image, nixdb, spec};

pub fn run(
    graph: &Path,
    root: &Path,
    gc_roots: Vec<String>,
    registration_time: &str,
    exclude: Option<&Path>,
) -> Result<()> {
    let time = image::parse_time("registration time", registration_time)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
        .with_context(|| {
            format!(
                "--registration-time {registration_time:?} is not an RFC 3339 time from 1970 on, such as {:?}",
                spec::DEFAULT_TIME
            )
        })?;
    let graph = closure::Graph::load(graph)?;
    let exclude = read_exclude(exclude)?;
    let gc_roots = if gc_roots.is_empty() {
        graph.without(&exclude).roots()
    } else {
        gc_roots
    };
    nixdb::Registration::from_graph(&graph, &exclude, &gc_roots)?
        .write_into_root(&PathBuf::from(root), time)
}
