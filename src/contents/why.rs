//! `why`: why a store path is in an image, as the shortest chain of
//! references from a root (a store path no other path of the image refers
//! to: a top-level content path).

use std::collections::{BTreeMap, VecDeque};

use anyhow::{Result, bail};

use super::{Contents, STORE_DIR};
use crate::terminal::escape;

/// The chain from a root to the store path `path` names (a store path, a
/// path inside one, or a file of the image that links into the store),
/// root first.
pub fn why(contents: &Contents, path: &str) -> Result<Vec<String>> {
    // A file of the image is named from its root, with or without the `/`.
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let target = store_path_of(contents, &path)?;
    if contents
        .store_paths
        .values()
        .any(|p| p.references.is_none())
    {
        bail!(
            "{}: the references of its store paths are unknown (no closure graph, no Nix database in the image, and the host's store does not have them)",
            escape(&contents.image)
        );
    }
    let mut parent: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for root in contents.roots() {
        parent.insert(root, None);
        queue.push_back(root);
    }
    while let Some(p) = queue.pop_front() {
        if p == target {
            let mut chain = vec![p.to_owned()];
            let mut at = p;
            while let Some(Some(up)) = parent.get(at) {
                chain.push((*up).to_owned());
                at = up;
            }
            chain.reverse();
            return Ok(chain);
        }
        let refs = contents.store_paths[p].references.iter().flatten();
        for r in refs {
            if contents.store_paths.contains_key(r) && !parent.contains_key(r.as_str()) {
                parent.insert(r, Some(p));
                queue.push_back(r);
            }
        }
    }
    bail!(
        "{}: no chain of references leads to {} from a root",
        escape(&contents.image),
        escape(&target)
    )
}

/// The store path of the image that `path` is or is in, or that the file
/// `path` of the image links into.
fn store_path_of(contents: &Contents, path: &str) -> Result<String> {
    let in_store = |p: &str| -> Option<String> {
        let rest = p.strip_prefix(STORE_DIR)?.strip_prefix('/')?;
        let top = rest.split('/').next()?;
        Some(format!("{STORE_DIR}/{top}"))
    };
    let found = in_store(path).or_else(|| {
        contents
            .layers
            .iter()
            .flat_map(|l| &l.files)
            .find(|f| f.path == path)
            .and_then(|f| f.target.as_deref())
            .and_then(in_store)
    });
    match found {
        Some(p) if contents.store_paths.contains_key(&p) => Ok(p),
        Some(p) => bail!(
            "{} is not in the image {}",
            escape(&p),
            escape(&contents.image)
        ),
        None => bail!(
            "{}: give a store path ({STORE_DIR}/...) or a file of the image that links into the store",
            escape(path)
        ),
    }
}
