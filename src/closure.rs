//! The closure graph of an image: the `exportReferencesGraph` JSON that Nix
//! writes with structured attrs, checked once into a [`Graph`] that the
//! layering strategies ([`crate::layering`]) can trust.
//!
//! Nix writes a list of `{ path, narHash, narSize, closureSize, references }`
//! objects, sorted by path, where `references` may name the path itself.
//! Checking turns that into a map keyed by path with self-references removed,
//! and refuses what Nix never writes: a reference to a path that is not in
//! the list, a path listed twice, and reference cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// One object of the graph as written by Nix. Fields the layering does not
/// use (and unknown ones) are accepted and ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphEntry {
    pub path: String,
    #[serde(default)]
    pub nar_hash: Option<String>,
    #[serde(default)]
    pub nar_size: Option<u64>,
    #[serde(default)]
    pub closure_size: Option<u64>,
    /// Optional here only to name the path when it is missing.
    #[serde(default)]
    pub references: Option<Vec<String>>,
    /// The derivation that built the path: `nix path-info --json` gives it,
    /// `exportReferencesGraph` does not.
    #[serde(default)]
    pub deriver: Option<String>,
    /// The content address (`fixed:r:sha256:...`, `text:sha256:...`) of a
    /// content-addressed path. Only the string form is kept; other forms
    /// (newer Nix may write an object) are ignored.
    #[serde(default, deserialize_with = "string_or_ignore")]
    pub ca: Option<String>,
}

/// A string, or `None` for any other JSON value.
fn string_or_ignore<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// What the graph knows of one store path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    pub nar_hash: Option<String>,
    pub nar_size: Option<u64>,
    pub closure_size: Option<u64>,
    /// Paths this one refers to, never itself.
    pub references: BTreeSet<String>,
    /// Whether the path refers to itself (Nix records that reference too).
    pub refers_to_itself: bool,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    /// Where the path stood in the input list. Nix writes the list sorted by
    /// path, so this is the path order for real graphs; `auto` breaks narSize
    /// ties by it, as nixpkgs' auto-layer.py does with its stable sort.
    listed_at: usize,
}

impl PathInfo {
    /// Position of the path in the list the graph was read from.
    pub fn listed_at(&self) -> usize {
        self.listed_at
    }
}

/// A checked closure graph: every reference is a path of the graph, no path
/// refers to itself, and there are no cycles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    paths: BTreeMap<String, PathInfo>,
}

impl Graph {
    /// Reads and checks a graph file.
    pub fn load(file: &Path) -> Result<Graph> {
        let text = std::fs::read(file)
            .with_context(|| format!("reading closure graph {}", file.display()))?;
        Graph::parse(&text).with_context(|| format!("closure graph {}", file.display()))
    }

    /// Parses and checks the JSON list Nix writes for `exportReferencesGraph`.
    pub fn parse(text: &[u8]) -> Result<Graph> {
        // Straight into the entries, without a JSON value in between: graphs
        // of many thousand paths are read on every image build.
        let mut de = serde_json::Deserializer::from_slice(text);
        let parsed = serde_path_to_error::deserialize::<_, Vec<GraphEntry>>(&mut de);
        match parsed {
            Ok(entries) if de.end().is_ok() => Graph::from_entries(entries),
            _ => {
                // Name what is wrong in the terms of the whole document first.
                let value: serde_json::Value =
                    serde_json::from_slice(text).context("invalid JSON")?;
                if !value.is_array() {
                    bail!(
                        "expected a JSON list of store path objects, as exportReferencesGraph writes"
                    );
                }
                match serde_path_to_error::deserialize::<_, Vec<GraphEntry>>(value) {
                    // A duplicated key: JSON values keep the last, as before.
                    Ok(entries) => Graph::from_entries(entries),
                    Err(e) => {
                        let at = e.path().to_string();
                        bail!("entry {at}: {}", e.into_inner())
                    }
                }
            }
        }
    }

    /// Checks entries given in the order they were listed.
    pub fn from_entries(entries: Vec<GraphEntry>) -> Result<Graph> {
        let mut paths = BTreeMap::new();
        for (listed_at, entry) in entries.into_iter().enumerate() {
            if !entry.path.starts_with('/') {
                bail!(
                    "entry [{listed_at}]: path {:?} is not an absolute store path",
                    entry.path
                );
            }
            let Some(references) = entry.references else {
                bail!("store path {} has no references list", entry.path);
            };
            let refers_to_itself = references.contains(&entry.path);
            let references: BTreeSet<String> = references
                .into_iter()
                .filter(|r| *r != entry.path)
                .collect();
            let info = PathInfo {
                nar_hash: entry.nar_hash,
                nar_size: entry.nar_size,
                closure_size: entry.closure_size,
                references,
                refers_to_itself,
                deriver: entry.deriver,
                ca: entry.ca,
                listed_at,
            };
            if paths.insert(entry.path.clone(), info).is_some() {
                bail!("store path {} is listed twice", entry.path);
            }
        }
        for (path, info) in &paths {
            if let Some(missing) = info.references.iter().find(|r| !paths.contains_key(*r)) {
                bail!(
                    "store path {path} refers to {missing}, which is not in the graph \
                     (the graph must be a whole closure)"
                );
            }
        }
        let graph = Graph { paths };
        graph.check_acyclic()?;
        Ok(graph)
    }

    /// Store paths in path order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.keys().map(String::as_str)
    }

    /// Store paths with what is known of them, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PathInfo)> {
        self.paths.iter().map(|(p, i)| (p.as_str(), i))
    }

    pub fn get(&self, path: &str) -> Option<&PathInfo> {
        self.paths.get(path)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains_key(path)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The narSize of a path, or an error naming the path when the graph
    /// does not give it.
    pub fn nar_size(&self, path: &str) -> Result<u64> {
        match self.paths.get(path) {
            Some(info) => info
                .nar_size
                .with_context(|| format!("store path {path} has no narSize in the graph")),
            None => bail!("store path {path} is not in the graph"),
        }
    }

    /// Fails, naming the first such path, unless every path has a narSize.
    pub fn require_nar_sizes(&self) -> Result<()> {
        for path in self.paths() {
            self.nar_size(path)?;
        }
        Ok(())
    }

    /// The paths no other path refers to, in path order. A graph exported
    /// for several `contents` has one root per content not used by another.
    pub fn roots(&self) -> Vec<String> {
        let referenced: BTreeSet<&str> = self
            .paths
            .values()
            .flat_map(|i| i.references.iter().map(String::as_str))
            .collect();
        self.paths()
            .filter(|p| !referenced.contains(p))
            .map(str::to_owned)
            .collect()
    }

    /// The part of the graph that the given roots need: the roots and
    /// everything they refer to, directly or not. Every root must be a path
    /// of the graph.
    pub fn closure_of<S: AsRef<str>>(&self, roots: &[S]) -> Result<Graph> {
        let mut keep = BTreeSet::new();
        let mut todo = Vec::new();
        for root in roots {
            let root = root.as_ref();
            if !self.contains(root) {
                bail!("root {root} is not in the closure graph");
            }
            todo.push(root);
        }
        while let Some(path) = todo.pop() {
            if keep.insert(path) {
                todo.extend(self.paths[path].references.iter().map(String::as_str));
            }
        }
        let paths = keep
            .into_iter()
            .map(|p| (p.to_owned(), self.paths[p].clone()))
            .collect();
        Ok(Graph { paths })
    }

    /// The graph less the given paths and every reference to them; paths
    /// not in the graph are ignored. Whatever only an excluded path referred
    /// to becomes a root.
    pub fn without(&self, exclude: &BTreeSet<String>) -> Graph {
        let paths = self
            .paths
            .iter()
            .filter(|(p, _)| !exclude.contains(*p))
            .map(|(p, info)| {
                let mut info = info.clone();
                info.references.retain(|r| !exclude.contains(r));
                (p.clone(), info)
            })
            .collect();
        Graph { paths }
    }

    /// Nix cannot produce a reference cycle between store paths; one here
    /// means a hand-edited graph, and would leave popularity undefined.
    fn check_acyclic(&self) -> Result<()> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Unseen,
            Open,
            Done,
        }
        // Lookups only; the walk follows the path order of `self.paths`.
        let index: std::collections::HashMap<&str, usize> =
            self.paths().enumerate().map(|(i, p)| (p, i)).collect();
        let refs: Vec<Vec<usize>> = self
            .paths
            .values()
            .map(|i| i.references.iter().map(|r| index[r.as_str()]).collect())
            .collect();
        let names: Vec<&str> = self.paths().collect();
        let mut mark = vec![Mark::Unseen; names.len()];
        for start in 0..names.len() {
            if mark[start] != Mark::Unseen {
                continue;
            }
            // Iterative depth-first search: (node, next reference to visit).
            let mut stack = vec![(start, 0)];
            mark[start] = Mark::Open;
            while let Some(top) = stack.last_mut() {
                let (node, next) = *top;
                if let Some(&child) = refs[node].get(next) {
                    top.1 += 1;
                    match mark[child] {
                        Mark::Open => bail!(
                            "store paths {} and {} refer to each other (a reference cycle)",
                            names[node],
                            names[child]
                        ),
                        Mark::Unseen => {
                            mark[child] = Mark::Open;
                            stack.push((child, 0));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", Graph::parse(text.as_bytes()).unwrap_err())
    }

    const GRAPH: &str = r#"[
        {"path": "/nix/store/aaa-app", "narHash": "sha256:0000", "narSize": 10,
         "closureSize": 16, "references": ["/nix/store/aaa-app", "/nix/store/bbb-lib"],
         "somethingNew": true},
        {"path": "/nix/store/bbb-lib", "narSize": 4, "references": ["/nix/store/ccc-libc"]},
        {"path": "/nix/store/ccc-libc", "narSize": 2, "references": ["/nix/store/ccc-libc"]},
        {"path": "/nix/store/ddd-tool", "references": ["/nix/store/ccc-libc"]}
    ]"#;

    #[test]
    fn parses_and_drops_self_references() {
        let g = Graph::parse(GRAPH.as_bytes()).unwrap();
        assert_eq!(g.len(), 4);
        let app = g.get("/nix/store/aaa-app").unwrap();
        assert_eq!(app.nar_hash.as_deref(), Some("sha256:0000"));
        assert_eq!((app.nar_size, app.closure_size), (Some(10), Some(16)));
        assert_eq!(
            app.references.iter().collect::<Vec<_>>(),
            ["/nix/store/bbb-lib"]
        );
        assert!(g.get("/nix/store/ccc-libc").unwrap().references.is_empty());
        assert_eq!(g.get("/nix/store/ddd-tool").unwrap().listed_at(), 3);
    }

    #[test]
    fn keeps_self_references_derivers_and_content_addresses() {
        let g = Graph::parse(
            br#"[{"path": "/nix/store/a-x", "references": ["/nix/store/a-x"],
                  "deriver": "/nix/store/d-x.drv", "ca": "text:sha256:0000"},
                 {"path": "/nix/store/b-y", "references": [], "ca": {"method": "text"}}]"#,
        )
        .unwrap();
        let a = g.get("/nix/store/a-x").unwrap();
        assert!(a.refers_to_itself && a.references.is_empty());
        assert_eq!(a.deriver.as_deref(), Some("/nix/store/d-x.drv"));
        assert_eq!(a.ca.as_deref(), Some("text:sha256:0000"));
        let b = g.get("/nix/store/b-y").unwrap();
        assert!(!b.refers_to_itself && b.ca.is_none() && b.deriver.is_none());
    }

    #[test]
    fn roots_are_the_unreferenced_paths() {
        let g = Graph::parse(GRAPH.as_bytes()).unwrap();
        assert_eq!(g.roots(), ["/nix/store/aaa-app", "/nix/store/ddd-tool"]);
        assert!(Graph::default().roots().is_empty());
    }

    #[test]
    fn closure_of_given_roots() {
        let g = Graph::parse(GRAPH.as_bytes()).unwrap();
        let sub = g.closure_of(&["/nix/store/bbb-lib"]).unwrap();
        assert_eq!(
            sub.paths().collect::<Vec<_>>(),
            ["/nix/store/bbb-lib", "/nix/store/ccc-libc"]
        );
        assert_eq!(sub.roots(), ["/nix/store/bbb-lib"]);
        let e = format!("{:#}", g.closure_of(&["/nix/store/zzz-x"]).unwrap_err());
        assert!(e.contains("/nix/store/zzz-x"), "{e}");
    }

    #[test]
    fn without_drops_paths_and_references_to_them() {
        let g = Graph::parse(GRAPH.as_bytes()).unwrap();
        let rest = g.without(&["/nix/store/aaa-app".to_owned()].into());
        assert_eq!(rest.len(), 3);
        assert_eq!(rest.roots(), ["/nix/store/bbb-lib", "/nix/store/ddd-tool"]);
        let rest = g.without(&["/nix/store/ccc-libc".to_owned()].into());
        assert!(
            rest.get("/nix/store/bbb-lib")
                .unwrap()
                .references
                .is_empty()
        );
    }

    #[test]
    fn nar_sizes_are_named_when_missing() {
        let g = Graph::parse(GRAPH.as_bytes()).unwrap();
        assert_eq!(g.nar_size("/nix/store/bbb-lib").unwrap(), 4);
        let e = format!("{:#}", g.require_nar_sizes().unwrap_err());
        assert!(
            e.contains("/nix/store/ddd-tool") && e.contains("narSize"),
            "{e}"
        );
    }

    #[test]
    fn missing_references_are_named() {
        let e = err(r#"[{"path": "/nix/store/a-x", "references": ["/nix/store/b-y"]}]"#);
        assert!(
            e.contains("/nix/store/a-x") && e.contains("/nix/store/b-y"),
            "{e}"
        );
        let e = err(r#"[{"path": "/nix/store/a-x"}]"#);
        assert!(e.contains("/nix/store/a-x has no references"), "{e}");
    }

    #[test]
    fn duplicates_are_named() {
        let e = err(r#"[{"path": "/nix/store/a-x", "references": []},
                {"path": "/nix/store/a-x", "references": []}]"#);
        assert!(e.contains("/nix/store/a-x is listed twice"), "{e}");
    }

    #[test]
    fn cycles_are_refused() {
        let e = err(
            r#"[{"path": "/nix/store/a-x", "references": ["/nix/store/b-y"]},
                {"path": "/nix/store/b-y", "references": ["/nix/store/c-z"]},
                {"path": "/nix/store/c-z", "references": ["/nix/store/a-x"]}]"#,
        );
        assert!(e.contains("reference cycle"), "{e}");
    }

    #[test]
    fn bad_shapes_are_reported() {
        assert!(err("[").contains("invalid JSON"));
        assert!(err(r#"{"graph": []}"#).contains("expected a JSON list"));
        let e = err(r#"[{"path": "/nix/store/a-x", "references": [], "narSize": "big"}]"#);
        assert!(e.contains("[0].narSize"), "{e}");
        assert!(err(r#"[{"references": []}]"#).contains("path"));
        let e = err(r#"[{"path": "nix/store/a-x", "references": []}]"#);
        assert!(e.contains("not an absolute"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let e = format!(
            "{:#}",
            Graph::load(Path::new("/nonexistent/graph.json")).unwrap_err()
        );
        assert!(e.contains("/nonexistent/graph.json"), "{e}");
    }
}
