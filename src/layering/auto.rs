//! The auto strategy: layers grown around the largest store paths, so that
//! big paths and what only they use are shared between images.
//!
//! Reproduces nixpkgs `pkgs/build-support/docker/auto-layer.py`, the
//! dockerTools default since it was added (nixpkgs PR 355189), called by
//! `auto-layer.nix` with `maxLayers - 1` layers and the exclusions as its
//! ignore list:
//!
//! - Every path is first labelled with the empty set. Paths are then taken
//!   as "primary" one at a time, largest narSize first (equal sizes: the
//!   path listed last first, as Python's stable sort and `pop()` give). A
//!   new primary `P` is labelled `{P}`; each path `D` that `P` depends on
//!   loses from its label the primaries that depend on `P`, and gains `P`
//!   unless its label still holds a primary that `P` depends on.
//! - Paths with the same label form a layer. As soon as a new primary would
//!   make more layers than allowed, it is dropped and the labels are final.
//! - Layers are ordered by the narSize sum of their closure, smallest first;
//!   paths in a layer by name, then hash. Excluded paths are then removed,
//!   and layers left empty dropped; they still counted towards the limit.
//!
//! One choice of ours: auto-layer.py leaves layers with equal closure sizes
//! in Python's set order, which follows string hashes; here they are ordered
//! by their sorted path lists, compared by name then hash.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use super::{Numbered, Plan};
use crate::closure::Graph;

pub(super) fn plan(graph: &Graph, limit: usize, exclude: &BTreeSet<String>) -> Result<Plan> {
    Ok(layers(graph, limit)?
        .into_iter()
        .map(|layer| {
            layer
                .into_iter()
                .filter(|p| !exclude.contains(p))
                .collect::<Vec<_>>()
        })
        .filter(|layer| !layer.is_empty())
        .collect())
}

/// The layers of the whole graph, at most `limit`, before any exclusion.
pub fn layers(graph: &Graph, limit: usize) -> Result<Plan> {
    graph.require_nar_sizes()?;
    if let Some(bad) = graph.paths().find(|p| !p.contains('-')) {
        bail!("store path {bad} has no name: auto layering needs <hash>-<name> paths");
    }
    let g = Numbered::new(graph);
    let size: Vec<u64> = g
        .paths
        .iter()
        .map(|p| graph.nar_size(p))
        .collect::<Result<_>>()?;
    let listed_at = |x: usize| graph.get(g.paths[x]).map(|i| i.listed_at());

    let mut by_size: Vec<usize> = (0..g.len()).collect();
    by_size.sort_by_key(|&x| (size[x], listed_at(x)));

    // label[x]: the primaries whose layer x belongs to, sorted.
    let mut label: Vec<Vec<usize>> = vec![Vec::new(); g.len()];
    for &primary in by_size.iter().rev() {
        let below = g.reachable(primary, &g.references);
        let above = g.reachable(primary, &g.users);
        let mut next = label.clone();
        next[primary] = vec![primary];
        for (dep, _) in below.iter().enumerate().filter(|(_, b)| **b) {
            let l = &mut next[dep];
            l.retain(|&q| !above[q]);
            if !l.iter().any(|&q| below[q]) {
                let at = l.partition_point(|&q| q < primary);
                l.insert(at, primary);
            }
        }
        if layer_count(&next) > limit {
            break;
        }
        label = next;
    }

    let mut groups: BTreeMap<&[usize], Vec<usize>> = BTreeMap::new();
    for (x, l) in label.iter().enumerate() {
        groups.entry(l.as_slice()).or_default().push(x);
    }
    let mut layers: Vec<(u128, Vec<&str>)> = groups
        .into_values()
        .map(|members| {
            let closure_size = closure(&g, &members).map(|x| u128::from(size[x])).sum();
            let mut paths: Vec<&str> = members.iter().map(|&x| g.paths[x]).collect();
            paths.sort_by(|a, b| name_then_hash(a).cmp(&name_then_hash(b)));
            (closure_size, paths)
        })
        .collect();
    layers.sort_by(|(sa, a), (sb, b)| {
        sa.cmp(sb).then_with(|| {
            let a = a.iter().map(|p| name_then_hash(p));
            let b = b.iter().map(|p| name_then_hash(p));
            a.cmp(b)
        })
    });
    Ok(layers
        .into_iter()
        .map(|(_, paths)| paths.into_iter().map(str::to_owned).collect())
        .collect())
}

fn layer_count(label: &[Vec<usize>]) -> usize {
    label.iter().collect::<BTreeSet<_>>().len()
}

/// The members and every path they depend on.
fn closure<'a>(g: &'a Numbered, members: &[usize]) -> impl Iterator<Item = usize> + 'a {
    let mut seen = vec![false; g.len()];
    let mut todo = members.to_vec();
    while let Some(x) = todo.pop() {
        if !seen[x] {
            seen[x] = true;
            todo.extend(&g.references[x]);
        }
    }
    (0..g.len()).filter(move |&x| seen[x])
}

/// auto-layer.py's `path_key`: split at the first `-` (checked present),
/// compared as (name, hash).
fn name_then_hash(path: &str) -> (&str, &str) {
    match path.split_once('-') {
        Some((hash, name)) => (name, hash),
        None => ("", path),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_graphs::graph;
    use super::super::{Strategy, plan as plan_layers};
    use super::*;
    use crate::closure::GraphEntry;

    fn plan(g: &Graph, max_layers: usize, exclude: &[&str]) -> Vec<Vec<String>> {
        let exclude = exclude.iter().map(|p| p.to_string()).collect();
        plan_layers(g, &Strategy::Auto, max_layers, &exclude).unwrap()
    }

    const APP: &str = "/nix/store/aaaa-app";
    const PYTHON: &str = "/nix/store/bbbb-python";
    const LIBFOO: &str = "/nix/store/cccc-libfoo";
    const OPENSSL: &str = "/nix/store/dddd-openssl";
    const LIBC: &str = "/nix/store/eeee-libc";
    const TOOL: &str = "/nix/store/ffff-tool";

    /// Two roots: app (10) → python, libfoo; tool (20) → openssl. python
    /// (1000, the huge one) → libc, openssl; libfoo (5) → libc; openssl
    /// (50) → libc; libc (30).
    fn python_app() -> Graph {
        graph(&[
            (APP, 10, &[APP, PYTHON, LIBFOO]),
            (PYTHON, 1000, &[LIBC, OPENSSL]),
            (LIBFOO, 5, &[LIBC]),
            (OPENSSL, 50, &[LIBC]),
            (LIBC, 30, &[]),
            (TOOL, 20, &[OPENSSL]),
        ])
    }

    /// By hand, primaries largest first: python, openssl, libc, tool, app,
    /// libfoo. Labels after each (∅ = no primary yet):
    ///  1 python:  python, libc, openssl {python}; app, libfoo, tool ∅  → 2 layers
    ///  2 openssl: openssl, libc {openssl} (python depends on openssl, so
    ///             libc loses it); python {python}; ∅ as before        → 3
    ///  3 libc:    libc {libc}                                          → 4
    ///  4 tool:    tool {tool}; openssl, libc keep theirs (primaries
    ///             below tool)                                          → 5
    ///  5 app:     app, libfoo {app}; ∅ is gone                         → 5
    ///  6 libfoo:  libfoo {libfoo}                                      → 6
    /// Closure sizes: libc 30, libfoo 35, openssl 80, tool 100, python 1080,
    /// app+libfoo 1095, app alone 1095, ∅ layers = everything = 1115.
    #[test]
    fn largest_paths_anchor_layers() {
        let g = python_app();
        let s = |ls: &[&[&str]]| -> Vec<Vec<String>> {
            ls.iter()
                .map(|l| l.iter().map(|p| p.to_string()).collect())
                .collect()
        };
        // 1 store layer: python already makes 2, so nothing is split; the
        // one layer sorted by name: app, libc, libfoo, openssl, python, tool.
        assert_eq!(
            plan(&g, 2, &[]),
            s(&[&[APP, LIBC, LIBFOO, OPENSSL, PYTHON, TOOL]])
        );
        // 2: stop before openssl. {python} 1080, then ∅ 1115.
        assert_eq!(
            plan(&g, 3, &[]),
            s(&[&[LIBC, OPENSSL, PYTHON], &[APP, LIBFOO, TOOL]])
        );
        // 3: stop before libc. {openssl} 80, {python} 1080, ∅ 1115.
        assert_eq!(
            plan(&g, 4, &[]),
            s(&[&[LIBC, OPENSSL], &[PYTHON], &[APP, LIBFOO, TOOL]])
        );
        // 4: stop before tool.
        assert_eq!(
            plan(&g, 5, &[]),
            s(&[&[LIBC], &[OPENSSL], &[PYTHON], &[APP, LIBFOO, TOOL]])
        );
        // 5: tool and app fit (app takes libfoo along), libfoo does not.
        assert_eq!(
            plan(&g, 6, &[]),
            s(&[&[LIBC], &[OPENSSL], &[TOOL], &[PYTHON], &[APP, LIBFOO]])
        );
        // 6 and more: a path each, by closure size.
        let singles = s(&[&[LIBC], &[LIBFOO], &[OPENSSL], &[TOOL], &[PYTHON], &[APP]]);
        assert_eq!(plan(&g, 7, &[]), singles);
        assert_eq!(plan(&g, 100, &[]), singles);
    }

    /// Exclusion comes after layering: tool still took a layer of the 5, so
    /// dropping it leaves 4, and libfoo still shares app's layer.
    #[test]
    fn excluded_paths_still_count() {
        let g = python_app();
        assert_eq!(
            plan(&g, 6, &[TOOL]),
            [vec![LIBC], vec![OPENSSL], vec![PYTHON], vec![APP, LIBFOO]]
        );
        assert_eq!(
            plan(&g, 3, &[APP, "/nix/store/zzzz-unknown"]),
            [vec![LIBC, OPENSSL, PYTHON], vec![LIBFOO, TOOL]]
        );
    }

    const X: &str = "/nix/store/aaaa-x";
    const Y: &str = "/nix/store/bbbb-y";
    const R: &str = "/nix/store/cccc-r";
    const Z: &str = "/nix/store/dddd-z";

    /// r (1) → x (100), y (100); x, y → z (10). Listed in path order.
    fn twins(listing: [&str; 4]) -> Graph {
        let refs = |p: &str| match p {
            R => vec![X, Y],
            X | Y => vec![Z],
            _ => vec![],
        };
        let size = |p: &str| match p {
            R => 1,
            X | Y => 100,
            _ => 10,
        };
        Graph::from_entries(
            listing
                .iter()
                .map(|p| GraphEntry {
                    path: p.to_string(),
                    nar_size: Some(size(p)),
                    references: Some(refs(p).into_iter().map(str::to_owned).collect()),
                    ..GraphEntry::default()
                })
                .collect(),
        )
        .unwrap()
    }

    /// Equal narSizes: the path listed last becomes primary first. Listed
    /// x, y, r, z: y first. 1 y: y, z {y}; r, x ∅ → 2. 2 x: z loses
    /// nothing (r is not a primary) and gains x → {x, y}; layers {y}, {x},
    /// {x,y}, ∅ → 4. So with 2 or 3 store layers it stops after y:
    /// [y, z] (110) then [r, x] (211). Listed the other way, x goes first.
    #[test]
    fn equal_sizes_follow_the_listing() {
        let g = twins([X, Y, R, Z]);
        assert_eq!(plan(&g, 3, &[]), [vec![Y, Z], vec![R, X]]);
        assert_eq!(plan(&g, 4, &[]), [vec![Y, Z], vec![R, X]]);
        let g = twins([Y, X, R, Z]);
        assert_eq!(plan(&g, 3, &[]), [vec![X, Z], vec![R, Y]]);
    }

    /// With 4 store layers: 3 z → {z}; 4 r → {r}, x and y keep theirs:
    /// {z} 10, {x} 110, {y} 110, {r} 211. x and y tie on closure size and
    /// are ordered by their paths: x before y.
    #[test]
    fn equal_closure_sizes_are_ordered_by_path() {
        let g = twins([X, Y, R, Z]);
        assert_eq!(plan(&g, 5, &[]), [vec![Z], vec![X], vec![Y], vec![R]]);
    }

    #[test]
    fn needs_nar_sizes_and_names() {
        let g = Graph::from_entries(vec![GraphEntry {
            path: "/nix/store/aaaa-x".into(),
            references: Some(vec![]),
            ..GraphEntry::default()
        }])
        .unwrap();
        let e = format!("{:#}", layers(&g, 5).unwrap_err());
        assert!(
            e.contains("/nix/store/aaaa-x") && e.contains("narSize"),
            "{e}"
        );
        let g = graph(&[("/nix/store/nodash", 1, &[])]);
        let e = format!("{:#}", layers(&g, 5).unwrap_err());
        assert!(e.contains("/nix/store/nodash"), "{e}");
    }

    /// narSizes near the u64 limit are summed without overflow.
    #[test]
    fn huge_sizes_are_summed_exactly() {
        let g = graph(&[
            ("/nix/store/aaaa-big", u64::MAX, &["/nix/store/bbbb-big2"]),
            ("/nix/store/bbbb-big2", u64::MAX - 1, &[]),
            ("/nix/store/cccc-small", 1, &[]),
        ]);
        assert_eq!(
            plan(&g, 10, &[]),
            [
                vec!["/nix/store/cccc-small"],
                vec!["/nix/store/bbbb-big2"],
                vec!["/nix/store/aaaa-big"]
            ]
        );
    }
}
