//! Which store paths of a [`Graph`] go into which image layer: the layering
//! strategies of nixpkgs' dockerTools, reproduced path for path, and
//! explicit layer lists. A plan is a list of store layers, lowest first.
//!
//! `max_layers` counts every layer of the image, as dockerTools' `maxLayers`
//! does: the customisation layer that the caller puts on top takes one, so
//! the strategies get `max_layers - 1` store layers. nixpkgs
//! `pkgs/build-support/docker/auto-layer.nix` and
//! `popularity-contest-layering-pipeline.nix` (like `streamLayeredImage` in
//! `default.nix` before them) compute `availableLayers = maxLayers -
//! usedLayers` with `usedLayers = 1` plus the layers of a `fromImage`, and
//! refuse to build unless `usedLayers < maxLayers`; a base's layers are
//! taken off first by [`max_layers_above_base`]. A layering pipeline
//! ([`pipeline`]) is the exception: it bounds its layers itself, and
//! dockerTools ignores `maxLayers` for it.

pub mod auto;
pub mod explicit;
pub mod pipeline;
pub mod popularity;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use anyhow::{Result, bail};

use crate::closure::Graph;

/// Store layers, lowest first; each a list of store paths.
pub type Plan = Vec<Vec<String>>;

/// Layers of the image that hold no store layer: the customisation layer.
pub const CUSTOMISATION_LAYERS: usize = 1;

/// How store paths are split into layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The most popular paths get a layer each, the rest share the last one
    /// (nixpkgs' popularity contest, the dockerTools default before the
    /// auto layering); see [`popularity`].
    Popularity,
    /// Layers grown from the largest paths by narSize (nixpkgs'
    /// auto-layer.py, the dockerTools default since); see [`auto`].
    Auto,
    /// Layers given as lists of store paths, in order; every other path of
    /// the closure goes into one final layer. See [`explicit`].
    Explicit(Vec<Vec<String>>),
    /// nixpkgs' `layeringPipeline`: steps that cut the graph into layers;
    /// see [`pipeline`].
    Pipeline(pipeline::Pipeline),
}

impl FromStr for Strategy {
    type Err = anyhow::Error;

    /// The strategies that a name alone selects: `popularity` and `auto`.
    fn from_str(name: &str) -> Result<Strategy> {
        match name {
            "popularity" => Ok(Strategy::Popularity),
            "auto" => Ok(Strategy::Auto),
            _ => bail!("unknown layering strategy {name:?}; use \"popularity\" or \"auto\""),
        }
    }
}

/// The fewest layers an image can have: one store layer and the
/// customisation layer.
pub const MIN_LAYERS: usize = CUSTOMISATION_LAYERS + 1;

/// What `max_layers` leaves for the new layers of an image whose base has
/// `base_layers` layers: the base's count towards it, as in dockerTools;
/// `None` when fewer than [`MIN_LAYERS`] remain.
pub fn max_layers_above_base(max_layers: usize, base_layers: usize) -> Option<usize> {
    max_layers
        .checked_sub(base_layers)
        .filter(|&n| n >= MIN_LAYERS)
}

/// How many store layers `max_layers` leaves once the customisation layer
/// is counted; at least one is needed, as dockerTools requires.
pub fn store_layer_limit(max_layers: usize) -> Result<usize> {
    if max_layers <= CUSTOMISATION_LAYERS {
        bail!(
            "max layers {max_layers} leaves no layer for store paths: the customisation \
             layer takes {CUSTOMISATION_LAYERS}; use at least {MIN_LAYERS}"
        );
    }
    Ok(max_layers - CUSTOMISATION_LAYERS)
}

/// Splits the closure into store layers, lowest first, leaving out the
/// `exclude`d paths (paths not in the graph are ignored there). Every other
/// path of the graph is in exactly one layer, no layer is empty, and there
/// are at most `max_layers - 1` layers. A pipeline is not bound by
/// `max_layers`, and leaves out the paths its `remove_paths` steps remove.
pub fn plan(
    graph: &Graph,
    strategy: &Strategy,
    max_layers: usize,
    exclude: &BTreeSet<String>,
) -> Result<Plan> {
    if let Strategy::Pipeline(p) = strategy {
        let plan = pipeline::plan(graph, p, exclude)?;
        check_layers(graph, &plan, exclude)?;
        return Ok(plan);
    }
    let limit = store_layer_limit(max_layers)?;
    let plan = match strategy {
        Strategy::Popularity => popularity::plan(graph, limit, exclude)?,
        Strategy::Auto => auto::plan(graph, limit, exclude)?,
        Strategy::Explicit(layers) => explicit::plan(graph, layers, limit, exclude)?,
        Strategy::Pipeline(_) => unreachable!("planned above"),
    };
    check_plan(graph, &plan, limit, exclude)?;
    Ok(plan)
}

/// The promise of [`plan`], checked on every plan: a broken plan would make
/// an image that silently lacks store paths.
fn check_plan(graph: &Graph, plan: &Plan, limit: usize, exclude: &BTreeSet<String>) -> Result<()> {
    if plan.len() > limit {
        bail!(
            "internal error: {} store layers planned for a limit of {limit}",
            plan.len()
        );
    }
    let seen = check_layers(graph, plan, exclude)?;
    if let Some(lost) = graph
        .paths()
        .find(|p| !exclude.contains(*p) && !seen.contains(p))
    {
        bail!("internal error: store path {lost} is in no planned layer");
    }
    Ok(())
}

/// No layer empty, and every path in one layer at most, none excluded;
/// the paths planned.
fn check_layers<'p>(
    graph: &Graph,
    plan: &'p Plan,
    exclude: &BTreeSet<String>,
) -> Result<BTreeSet<&'p str>> {
    let mut seen = BTreeSet::new();
    for (i, layer) in plan.iter().enumerate() {
        if layer.is_empty() {
            bail!("internal error: planned store layer {} is empty", i + 1);
        }
        for path in layer {
            if !graph.contains(path) || exclude.contains(path) || !seen.insert(path.as_str()) {
                bail!("internal error: store path {path} misplaced in the layer plan");
            }
        }
    }
    Ok(seen)
}

/// The graph with paths numbered in path order, for the algorithms that
/// walk it many times.
struct Numbered<'g> {
    paths: Vec<&'g str>,
    /// Direct references of each path, by number.
    references: Vec<Vec<usize>>,
    /// Paths that refer to each path directly, by number.
    users: Vec<Vec<usize>>,
}

impl<'g> Numbered<'g> {
    fn new(graph: &'g Graph) -> Numbered<'g> {
        let paths: Vec<&str> = graph.paths().collect();
        let number: BTreeMap<&str, usize> =
            paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let references: Vec<Vec<usize>> = graph
            .iter()
            .map(|(_, info)| info.references.iter().map(|r| number[r.as_str()]).collect())
            .collect();
        let mut users = vec![Vec::new(); paths.len()];
        for (user, refs) in references.iter().enumerate() {
            for &r in refs {
                users[r].push(user);
            }
        }
        Numbered {
            paths,
            references,
            users,
        }
    }

    fn len(&self) -> usize {
        self.paths.len()
    }

    /// Marks every path reachable from `start` through `edges`, not
    /// counting `start` itself (a graph has no cycles).
    fn reachable(&self, start: usize, edges: &[Vec<usize>]) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut todo = edges[start].clone();
        while let Some(n) = todo.pop() {
            if !seen[n] {
                seen[n] = true;
                todo.extend(&edges[n]);
            }
        }
        seen
    }
}

#[cfg(test)]
pub(crate) mod test_graphs {
    //! Graph builders shared by the strategies' tests.

    use crate::closure::{Graph, GraphEntry};

    /// A graph from `(path, narSize, references)`, listed in the given order.
    pub fn graph(entries: &[(&str, u64, &[&str])]) -> Graph {
        Graph::from_entries(
            entries
                .iter()
                .map(|(path, size, refs)| GraphEntry {
                    path: path.to_string(),
                    nar_size: Some(*size),
                    references: Some(refs.iter().map(|r| r.to_string()).collect()),
                    ..GraphEntry::default()
                })
                .collect(),
        )
        .unwrap()
    }

    /// xorshift64*: a fixed, dependency-free source of test graphs.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random closure of `n` paths: few names (so popularity ties happen),
    /// few narSizes (so size ties happen), references only to paths of a
    /// later rank (so no cycles), listed in path order as Nix does.
    pub fn random_graph(seed: u64, n: usize) -> Graph {
        const NAMES: [&str; 6] = ["libc", "zlib", "lib-ssl", "python3", "data", "app"];
        const SIZES: [u64; 5] = [8, 120, 4096, 4096, 3_000_000_000];
        const HASH: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut paths: Vec<String> = (0..n)
            .map(|i| {
                let mut hash: String = (0..6)
                    .map(|_| HASH[rng.below(32) as usize] as char)
                    .collect();
                hash.push_str(&format!("{i:02}"));
                let name = NAMES[rng.below(NAMES.len() as u64) as usize];
                format!("/nix/store/{hash}-{name}")
            })
            .collect();
        // Rank = position in `paths`, shuffled so that rank and path order differ.
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            paths.swap(i, j);
        }
        let mut entries: Vec<(String, u64, Vec<String>)> = (0..n)
            .map(|rank| {
                let mut refs = Vec::new();
                if rank + 1 < n {
                    for _ in 0..rng.below(4) {
                        let to = rank + 1 + rng.below((n - rank - 1) as u64) as usize;
                        refs.push(paths[to].clone());
                    }
                }
                refs.push(paths[rank].clone());
                let size = SIZES[rng.below(SIZES.len() as u64) as usize];
                (paths[rank].clone(), size, refs)
            })
            .collect();
        entries.sort();
        Graph::from_entries(
            entries
                .into_iter()
                .map(|(path, size, refs)| GraphEntry {
                    path,
                    nar_size: Some(size),
                    references: Some(refs),
                    ..GraphEntry::default()
                })
                .collect(),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_graphs::{Rng, graph, random_graph};
    use super::*;

    #[test]
    fn strategies_by_name() {
        assert_eq!(
            "popularity".parse::<Strategy>().unwrap(),
            Strategy::Popularity
        );
        assert_eq!("auto".parse::<Strategy>().unwrap(), Strategy::Auto);
        let e = "explicit".parse::<Strategy>().unwrap_err().to_string();
        assert!(
            e.contains("\"explicit\"") && e.contains("popularity"),
            "{e}"
        );
    }

    #[test]
    fn max_layers_counts_the_customisation_layer() {
        assert_eq!(store_layer_limit(100).unwrap(), 99);
        assert_eq!(store_layer_limit(2).unwrap(), 1);
        for too_few in [0, 1] {
            let e = store_layer_limit(too_few).unwrap_err().to_string();
            assert!(e.contains("customisation"), "{e}");
            let g = graph(&[("/nix/store/a-x", 1, &[])]);
            assert!(plan(&g, &Strategy::Auto, too_few, &BTreeSet::new()).is_err());
        }
    }

    #[test]
    fn a_base_takes_its_layers_off_max_layers() {
        assert_eq!(max_layers_above_base(100, 0), Some(100));
        assert_eq!(max_layers_above_base(6, 4), Some(2));
        assert_eq!(max_layers_above_base(5, 4), None);
        assert_eq!(max_layers_above_base(3, 4), None);
    }

    #[test]
    fn empty_graphs_give_empty_plans() {
        let g = Graph::default();
        for s in [
            Strategy::Popularity,
            Strategy::Auto,
            Strategy::Explicit(vec![]),
        ] {
            assert!(plan(&g, &s, 10, &BTreeSet::new()).unwrap().is_empty());
        }
    }

    /// Every strategy, on graphs of every size, with and without excluded
    /// paths: no path lost, none twice, none excluded, no empty layer, and
    /// no more layers than allowed.
    #[test]
    fn plans_partition_the_closure_within_the_limit() {
        for seed in 0..60 {
            let n = 1 + (seed as usize * 7) % 40;
            let g = random_graph(seed, n);
            let mut rng = Rng(seed + 1);
            let all: Vec<&str> = g.paths().collect();
            let some: BTreeSet<String> = all
                .iter()
                .filter(|_| rng.below(5) == 0)
                .map(|p| p.to_string())
                .collect();
            let unknown: BTreeSet<String> = ["/nix/store/zzz-not-in-graph".to_owned()].into();
            let explicit = Strategy::Explicit(
                all.chunks(3)
                    .step_by(2)
                    .take(2)
                    .map(|c| c.iter().map(|p| p.to_string()).collect())
                    .collect(),
            );
            for exclude in [BTreeSet::new(), some, unknown] {
                for max_layers in [2, 3, 4, 7, 12, 100] {
                    for strategy in [Strategy::Popularity, Strategy::Auto, explicit.clone()] {
                        let Strategy::Explicit(lists) = &strategy else {
                            // `plan` checks the partition itself; check again
                            // here so a test never trusts the code it tests.
                            let p = plan(&g, &strategy, max_layers, &exclude).unwrap();
                            assert_partition(&g, &p, max_layers, &exclude);
                            assert_eq!(p, plan(&g, &strategy, max_layers, &exclude).unwrap());
                            continue;
                        };
                        let clash = lists.iter().flatten().any(|p| exclude.contains(p));
                        match plan(&g, &strategy, max_layers, &exclude) {
                            Ok(p) => {
                                assert_partition(&g, &p, max_layers, &exclude);
                                assert_eq!(&p[..lists.len()], &lists[..]);
                            }
                            Err(_) => assert!(clash || lists.len() + 1 > max_layers - 1),
                        }
                    }
                }
            }
        }
    }

    fn assert_partition(g: &Graph, plan: &Plan, max_layers: usize, exclude: &BTreeSet<String>) {
        assert!(
            plan.len() < max_layers,
            "{} layers for {max_layers}",
            plan.len()
        );
        assert!(plan.iter().all(|l| !l.is_empty()));
        let mut planned: Vec<&str> = plan.iter().flatten().map(String::as_str).collect();
        planned.sort();
        let expected: Vec<&str> = g.paths().filter(|p| !exclude.contains(*p)).collect();
        assert_eq!(planned, expected);
    }
}
