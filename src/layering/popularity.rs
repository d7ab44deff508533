//! The popularity strategy: paths ordered by nixpkgs' "popularity contest",
//! the most popular in a layer each and the rest together in the last one.
//!
//! Reproduces nixpkgs `pkgs/build-support/references-by-popularity/closure-graph.py`
//! (the same algorithm as `popularity_contest.py` of
//! `pkgs/by-name/fl/flatten-references-graph`), and how dockerTools applies
//! it: the pipeline `[["popularity_contest"], ["limit_layers", maxLayers - 1]]`
//! (`limit_layers` in that package's `lib.py`, and the `jq` split
//! `.[:n-1] | map([.])) + [.[n-1:]]` of older `default.nix`): the first
//! `n - 1` paths of the order get a layer each, all the others one more
//! layer, and empty layers are dropped.
//!
//! Excluded paths are removed from the graph, with the references to them,
//! before the contest, as `flatten_references_graph.py` does with
//! `exclude_paths` (nixpkgs 24.11 on). Older dockerTools filtered them out of
//! the finished order instead, which ranks some paths differently when an
//! excluded path refers to them.
//!
//! The contest, as nixpkgs defines it: unfold the graph into a tree from its
//! roots; a path's popularity is the number of nodes of that tree that are
//! the path itself or a path that depends on it. Paths are ordered by
//! popularity, most first, and equal ones by their name with the hash moved
//! to the end (`package_name`). The count is computed here without the tree:
//! if `walks(y)` is the number of ways down from the roots to `y` (1 for a
//! root, else the sum over the paths referring to `y`), the popularity of
//! `x` is the sum of `walks(y)` over `x` and every `y` that depends on `x`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use super::{Numbered, Plan};
use crate::closure::Graph;

pub(super) fn plan(graph: &Graph, limit: usize, exclude: &BTreeSet<String>) -> Result<Plan> {
    Ok(split(order(&graph.without(exclude))?, limit))
}

/// The first `limit - 1` paths in a layer each, the rest in one more.
fn split(ordered: Vec<String>, limit: usize) -> Plan {
    let singles = limit.saturating_sub(1).min(ordered.len());
    let mut ordered = ordered.into_iter();
    let mut layers: Plan = ordered.by_ref().take(singles).map(|p| vec![p]).collect();
    let rest: Vec<String> = ordered.collect();
    if !rest.is_empty() {
        layers.push(rest);
    }
    layers
}

/// Every path of the graph, most popular first.
pub fn order(graph: &Graph) -> Result<Vec<String>> {
    let mut ranked: Vec<(u128, &str)> = popularity_by_number(graph)?
        .into_iter()
        .zip(graph.paths())
        .collect();
    ranked.sort_by(|(pa, a), (pb, b)| {
        (Reverse(pa), package_name_key(a)).cmp(&(Reverse(pb), package_name_key(b)))
    });
    Ok(ranked.into_iter().map(|(_, p)| p.to_owned()).collect())
}

/// The popularity of every path of the graph.
pub fn popularity(graph: &Graph) -> Result<BTreeMap<String, u128>> {
    Ok(graph
        .paths()
        .map(str::to_owned)
        .zip(popularity_by_number(graph)?)
        .collect())
}

/// The tie-break of nixpkgs' `package_name`: the path with its first
/// `-`-separated part (`/nix/store/<hash>`) moved to the end, so that paths
/// compare by name, then by hash. Distinct paths get distinct keys.
pub fn package_name_key(path: &str) -> String {
    match path.split_once('-') {
        Some((hash, name)) => format!("{name}-{hash}"),
        None => path.to_owned(),
    }
}

fn popularity_by_number(graph: &Graph) -> Result<Vec<u128>> {
    let g = Numbered::new(graph);
    let n = g.len();
    let order = parents_first(&g);
    let words = n.div_ceil(64);
    // walks[y]: ways down from the roots to y. dependents[x]: x and every
    // path that depends on x, as a bit set over path numbers.
    let mut walks = vec![0u128; n];
    let mut dependents = vec![vec![0u64; words]; n];
    let mut popularity = vec![0u128; n];
    for &x in &order {
        let mut w: u128 = if g.users[x].is_empty() { 1 } else { 0 };
        let mut set = vec![0u64; words];
        set[x / 64] |= 1 << (x % 64);
        for &user in &g.users[x] {
            w = checked(w.checked_add(walks[user]), g.paths[x])?;
            for (mine, theirs) in set.iter_mut().zip(&dependents[user]) {
                *mine |= theirs;
            }
        }
        walks[x] = w;
        dependents[x] = set;
        let mut pop: u128 = 0;
        for (word_index, &word) in dependents[x].iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let y = word_index * 64 + bits.trailing_zeros() as usize;
                pop = checked(pop.checked_add(walks[y]), g.paths[x])?;
                bits &= bits - 1;
            }
        }
        popularity[x] = pop;
    }
    Ok(popularity)
}

fn checked(sum: Option<u128>, path: &str) -> Result<u128> {
    match sum {
        Some(s) => Ok(s),
        None => bail!("the popularity of store path {path} does not fit in 128 bits"),
    }
}

/// Path numbers with every path after all the paths that refer to it.
fn parents_first(g: &Numbered) -> Vec<usize> {
    let mut waiting: Vec<usize> = g.users.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..g.len()).filter(|&x| waiting[x] == 0).collect();
    let mut order = Vec::with_capacity(g.len());
    while let Some(x) = ready.pop() {
        order.push(x);
        for &r in &g.references[x] {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.push(r);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::super::test_graphs::{graph, random_graph};
    use super::super::{Strategy, plan as plan_layers};
    use super::*;

    fn plan(g: &Graph, max_layers: usize, exclude: &[&str]) -> Plan {
        let exclude = exclude.iter().map(|p| p.to_string()).collect();
        plan_layers(g, &Strategy::Popularity, max_layers, &exclude).unwrap()
    }

    /// The worked example in the doc comment of nixpkgs' closure-graph.py:
    /// A→B,G; B→C,E; C→D,E; D→F; E→F. It derives A 1, B 2, C 3, D 4, E 5,
    /// F 9, G 2 and the order F E D C B G A (B before G: same popularity,
    /// and name "b" < "g").
    #[test]
    fn nixpkgs_documented_example() {
        let g = graph(&[
            ("/nix/store/1-a", 1, &["/nix/store/2-b", "/nix/store/7-g"]),
            ("/nix/store/2-b", 1, &["/nix/store/3-c", "/nix/store/5-e"]),
            ("/nix/store/3-c", 1, &["/nix/store/4-d", "/nix/store/5-e"]),
            ("/nix/store/4-d", 1, &["/nix/store/6-f"]),
            ("/nix/store/5-e", 1, &["/nix/store/6-f"]),
            ("/nix/store/6-f", 1, &[]),
            ("/nix/store/7-g", 1, &[]),
        ]);
        let pop = popularity(&g).unwrap();
        let pops: Vec<u128> = pop.values().copied().collect();
        assert_eq!(pops, [1, 2, 3, 4, 5, 9, 2]);
        let names: Vec<String> = order(&g)
            .unwrap()
            .iter()
            .map(|p| p[11..].to_owned())
            .collect();
        assert_eq!(names, ["6-f", "5-e", "4-d", "3-c", "2-b", "7-g", "1-a"]);
    }

    const APP: &str = "/nix/store/1111-app";
    const TOOL: &str = "/nix/store/2222-tool";
    const LIB_X: &str = "/nix/store/3333-lib-x";
    const LIB_Y: &str = "/nix/store/4444-lib-y";
    const LIBC: &str = "/nix/store/5555-libc";
    const ZLIB: &str = "/nix/store/6666-zlib";
    const DATA_7: &str = "/nix/store/7777-data";
    const DATA_0: &str = "/nix/store/0000-data";

    /// Two roots (app, tool), a diamond (lib-x and lib-y both on libc, lib-y
    /// shared by both roots), and two paths named "data" that differ only
    /// by hash.
    fn two_roots() -> Graph {
        graph(&[
            (DATA_0, 1, &[]),
            (APP, 1, &[APP, LIB_X, LIB_Y]),
            (TOOL, 1, &[LIB_Y, DATA_7, DATA_0]),
            (LIB_X, 1, &[LIBC, ZLIB]),
            (LIB_Y, 1, &[LIBC]),
            (LIBC, 1, &[]),
            (ZLIB, 1, &[]),
            (DATA_7, 1, &[]),
        ])
    }

    /// By hand. Ways down from the roots: app 1, tool 1, lib-x 1 (app),
    /// lib-y 2 (app, tool), libc 3 (lib-x 1 + lib-y 2), zlib 1, each data 1.
    /// Popularity = sum of ways over the path and its dependents:
    ///   libc  = 3 + lib-x 1 + lib-y 2 + app 1 + tool 1 = 8
    ///   lib-y = 2 + app 1 + tool 1 = 4
    ///   zlib  = 1 + lib-x 1 + app 1 = 3
    ///   lib-x = 1 + app 1 = 2; data-0000 = data-7777 = 1 + tool 1 = 2
    ///   app = tool = 1
    /// Ties by name then hash: "data-…0000" < "data-…7777" < "lib-x-…";
    /// "app-…" < "tool-…".
    #[test]
    fn two_roots_diamond_and_ties() {
        let g = two_roots();
        let pop = popularity(&g).unwrap();
        assert_eq!(
            [LIBC, LIB_Y, ZLIB, LIB_X, DATA_0, DATA_7, APP, TOOL].map(|p| pop[p]),
            [8, 4, 3, 2, 2, 2, 1, 1]
        );
        let ordered = [LIBC, LIB_Y, ZLIB, DATA_0, DATA_7, LIB_X, APP, TOOL];
        assert_eq!(order(&g).unwrap(), ordered);

        // Room for everything: one path per layer, in that order.
        assert_eq!(plan(&g, 100, &[]), ordered.map(|p| vec![p.to_owned()]));
        // max_layers 5 = customisation + 4 store layers: 3 single paths,
        // then the other 5 together, still in popularity order.
        assert_eq!(
            plan(&g, 5, &[]),
            [
                vec![LIBC],
                vec![LIB_Y],
                vec![ZLIB],
                vec![DATA_0, DATA_7, LIB_X, APP, TOOL]
            ]
        );
        // Exactly one store layer per path: 8 store layers, no merged one.
        assert_eq!(plan(&g, 9, &[]).len(), 8);
        // One store layer: everything, in order.
        assert_eq!(plan(&g, 2, &[]), [ordered.to_vec()]);
    }

    /// Excluding app removes it and its references before the contest, as
    /// flatten_references_graph does: lib-x becomes a root. By hand: ways
    /// lib-x 1, tool 1, lib-y 1, libc 2, zlib 1, data 1 each. Popularity:
    /// libc 2+1+1+1 = 5; lib-y 1+1 = 2; zlib 1+1 = 2; data 1+1 = 2 each;
    /// lib-x 1; tool 1. Ties by name: data-0000, data-7777, lib-y, zlib;
    /// then lib-x, tool. (Filtering app out after ranking, as dockerTools
    /// before 24.11 did, would give libc, lib-y, zlib, data-0000, ….)
    #[test]
    fn excluded_paths_leave_the_contest() {
        let g = two_roots();
        assert_eq!(
            plan(&g, 100, &[APP]),
            [LIBC, DATA_0, DATA_7, LIB_Y, ZLIB, LIB_X, TOOL].map(|p| vec![p.to_owned()])
        );
        assert_eq!(
            plan(&g, 3, &[APP, LIBC, "/nix/store/9999-unknown"]),
            [vec![DATA_0], vec![DATA_7, LIB_Y, ZLIB, LIB_X, TOOL]]
        );
        assert!(plan(&g, 3, &g.paths().collect::<Vec<_>>()).is_empty());
    }

    #[test]
    fn package_name_moves_the_hash_to_the_end() {
        assert_eq!(
            package_name_key("/nix/store/abc-foo-1.0"),
            "foo-1.0-/nix/store/abc"
        );
        assert_eq!(package_name_key("/nix/store/abc"), "/nix/store/abc");
    }

    /// The contest as nixpkgs states it, transcribed directly for checking:
    /// a path's count table holds, for each path below it, 1 per child it
    /// is, plus 1 + the child's own count for each child it is below.
    fn contest_by_definition(g: &Graph) -> BTreeMap<String, u128> {
        fn below(
            g: &Graph,
            path: &str,
            memo: &mut BTreeMap<String, BTreeMap<String, u128>>,
        ) -> BTreeMap<String, u128> {
            if let Some(m) = memo.get(path) {
                return m.clone();
            }
            let children: Vec<String> = g.get(path).unwrap().references.iter().cloned().collect();
            let table = tally(g, &children, memo);
            memo.insert(path.to_owned(), table.clone());
            table
        }
        fn tally(
            g: &Graph,
            children: &[String],
            memo: &mut BTreeMap<String, BTreeMap<String, u128>>,
        ) -> BTreeMap<String, u128> {
            let mut table = BTreeMap::new();
            for child in children {
                *table.entry(child.clone()).or_insert(0) += 1;
                for (p, count) in below(g, child, memo) {
                    *table.entry(p).or_insert(0) += count + 1;
                }
            }
            table
        }
        tally(g, &g.roots(), &mut BTreeMap::new())
    }

    #[test]
    fn counting_matches_the_definition() {
        for seed in 0..40 {
            let g = random_graph(seed, 1 + seed as usize % 30);
            assert_eq!(
                popularity(&g).unwrap(),
                contest_by_definition(&g),
                "seed {seed}"
            );
        }
    }

    /// Deep chains of diamonds double the ways down at every level; the
    /// count stays exact up to 128 bits and is an error, not a wrap, past.
    #[test]
    fn huge_popularity_is_an_error_not_a_wrap() {
        let levels = |n: usize| {
            let mut entries: Vec<(String, u64, Vec<String>)> = Vec::new();
            for i in 0..n {
                let next: Vec<String> = if i + 1 < n {
                    vec![
                        format!("/nix/store/{:03}a-l", i + 1),
                        format!("/nix/store/{:03}b-l", i + 1),
                    ]
                } else {
                    vec![]
                };
                entries.push((format!("/nix/store/{i:03}a-l"), 1, next.clone()));
                entries.push((format!("/nix/store/{i:03}b-l"), 1, next));
            }
            let borrowed: Vec<(&str, u64, Vec<&str>)> = entries
                .iter()
                .map(|(p, s, r)| (p.as_str(), *s, r.iter().map(String::as_str).collect()))
                .collect();
            let rows: Vec<(&str, u64, &[&str])> = borrowed
                .iter()
                .map(|(p, s, r)| (*p, *s, r.as_slice()))
                .collect();
            graph(&rows)
        };
        let g = levels(60);
        assert_eq!(order(&g).unwrap().len(), 120);
        let e = order(&levels(140)).unwrap_err().to_string();
        assert!(e.contains("128 bits"), "{e}");
    }
}
