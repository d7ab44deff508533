//! The pipeline strategy: nixpkgs dockerTools' `layeringPipeline`, a small
//! language of steps that cut the closure graph into layers, run here as
//! nixpkgs' `flatten-references-graph` package runs it (`pipe.py`, `lib.py`,
//! `subcomponent.py`, `split_paths.py`, `popularity_contest.py`), so the
//! same graph and pipeline give the same layers, paths in the same order.
//!
//! What that package does, and this module with it:
//! - Excluded paths leave the graph first, with the references to them.
//! - The graph's paths are ordered by narSize, smallest first, equal ones in
//!   the order Nix listed them (path order): the vertex order of the
//!   igraph graph nixpkgs builds. Every graph a step makes keeps its paths
//!   in that order (igraph's induced subgraphs and deletions keep it), and
//!   a merged layer (`limit_layers`) lists its graphs one after the other.
//! - A value between steps is a graph, a list of values, or named parts (a
//!   Python dict, in insertion order): `subcomponent_*` give `main` and
//!   `rest`; `split_paths` gives those of `main`, `common`, `rest` that
//!   are not empty, `rest` alone when no split path is in the graph, and
//!   `main` alone when the graph's one root is split off.
//! - Store paths a step names that are not in its graph are ignored, as in
//!   nixpkgs (a sub-pipeline sees only part of the closure).
//! - The result is flattened into graphs, and empty ones are dropped; each
//!   graph is a layer, lowest first.
//! - `maxLayers` does not apply: a pipeline bounds its layers itself
//!   (`limit_layers`), as dockerTools ignores `maxLayers` for it.
//!
//! Where nixpkgs would fail with a Python exception (an unknown step, a
//! missing part for `over`, a step given the wrong kind of value), this
//! module fails with one line naming the step. Paths a pipeline removes
//! with `remove_paths` are in no layer, so not in the image, as in nixpkgs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value as Json;

use super::{Plan, popularity};
use crate::closure::{Graph, GraphEntry};

/// A parsed pipeline: the steps, run on the closure graph in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    steps: Vec<Step>,
    /// Print each step's result to standard error (dockerTools' `debug`).
    pub debug: bool,
}

/// One step of the language, with its arguments checked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Flatten,
    Over(String, Box<Step>),
    SplitEvery(usize),
    LimitLayers(usize),
    RemovePaths(Vec<String>),
    Reverse,
    SubcomponentIn(Vec<String>),
    SubcomponentOut(Vec<String>),
    SplitPaths(Vec<SplitSpec>),
    PopularityContest,
    Map(Box<Step>),
    Pipe(Vec<Step>),
}

/// What `split_paths` splits off: a path, or the direct references of
/// paths (`{"children_of": ...}`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum SplitSpec {
    Path(String),
    ChildrenOf(Vec<String>),
}

const STEP_NAMES: &str = "flatten, over, split_every, limit_layers, remove_paths, reverse, \
                          subcomponent_in, subcomponent_out, split_paths, popularity_contest, \
                          map, pipe";

impl Pipeline {
    /// Parses the JSON value of `layeringPipeline`: a list of steps, each a
    /// list of the step's name and its arguments.
    pub fn parse(value: &Json) -> Result<Pipeline> {
        Ok(Pipeline {
            steps: parse_steps(value, "layering pipeline")?,
            debug: false,
        })
    }

    /// Reads a JSON file holding the pipeline, as dockerTools takes one.
    pub fn read(file: &Path) -> Result<Pipeline> {
        let text = std::fs::read(file)
            .with_context(|| format!("reading the layering pipeline {}", file.display()))?;
        let value: Json = serde_json::from_slice(&text)
            .with_context(|| format!("layering pipeline {}: invalid JSON", file.display()))?;
        Pipeline::parse(&value).with_context(|| format!("in {}", file.display()))
    }
}

fn parse_steps(value: &Json, at: &str) -> Result<Vec<Step>> {
    let Json::Array(steps) = value else {
        bail!(
            "{at}: expected a list of steps such as [[\"popularity_contest\"], [\"limit_layers\", 10]], not {}",
            kind(value)
        );
    };
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| parse_step(s, &format!("{at} step {}", i + 1)))
        .collect()
}

fn parse_step(value: &Json, at: &str) -> Result<Step> {
    let Some((Json::String(name), args)) = value.as_array().and_then(|a| a.split_first()) else {
        bail!(
            "{at}: expected a list of a step name and its arguments, such as [\"split_every\", 5], not {value}"
        );
    };
    let at = format!("{at} ({name:?})");
    let want = |n: usize| -> Result<()> {
        if args.len() != n {
            bail!("{at}: takes {n} argument(s), not {}", args.len());
        }
        Ok(())
    };
    Ok(match name.as_str() {
        "flatten" | "reverse" | "popularity_contest" => {
            want(0)?;
            match name.as_str() {
                "flatten" => Step::Flatten,
                "reverse" => Step::Reverse,
                _ => Step::PopularityContest,
            }
        }
        "split_every" | "limit_layers" => {
            want(1)?;
            let n = match args[0].as_u64() {
                Some(n) if n > 0 => n as usize,
                _ => bail!(
                    "{at}: the count must be a positive integer, not {}",
                    args[0]
                ),
            };
            if name == "split_every" {
                Step::SplitEvery(n)
            } else {
                Step::LimitLayers(n)
            }
        }
        "remove_paths" => {
            want(1)?;
            // nixpkgs takes one path as well as a list.
            match &args[0] {
                Json::String(p) => Step::RemovePaths(vec![p.clone()]),
                other => Step::RemovePaths(path_list(other, &at)?),
            }
        }
        "subcomponent_in" | "subcomponent_out" => {
            want(1)?;
            let paths = path_list(&args[0], &at)?;
            if name == "subcomponent_in" {
                Step::SubcomponentIn(paths)
            } else {
                Step::SubcomponentOut(paths)
            }
        }
        "split_paths" => {
            want(1)?;
            let Json::Array(specs) = &args[0] else {
                bail!(
                    "{at}: expected a list of store paths or {{\"children_of\": ...}} objects, not {}",
                    kind(&args[0])
                );
            };
            let specs = specs
                .iter()
                .map(|s| match s {
                    Json::String(p) => Ok(SplitSpec::Path(p.clone())),
                    Json::Object(o) => match o.get("children_of") {
                        Some(Json::String(p)) => Ok(SplitSpec::ChildrenOf(vec![p.clone()])),
                        Some(v) => Ok(SplitSpec::ChildrenOf(path_list(v, &at)?)),
                        None => bail!("{at}: an object in the list needs the key \"children_of\""),
                    },
                    other => bail!(
                        "{at}: expected a store path or {{\"children_of\": ...}}, not {}",
                        kind(other)
                    ),
                })
                .collect::<Result<_>>()?;
            Step::SplitPaths(specs)
        }
        "over" => {
            want(2)?;
            let Json::String(key) = &args[0] else {
                bail!(
                    "{at}: the first argument must be the name of a part, such as \"rest\", not {}",
                    kind(&args[0])
                );
            };
            Step::Over(
                key.clone(),
                Box::new(parse_step(&args[1], &format!("{at} {key:?}"))?),
            )
        }
        "map" => {
            want(1)?;
            Step::Map(Box::new(parse_step(&args[0], &at)?))
        }
        "pipe" => {
            want(1)?;
            Step::Pipe(parse_steps(&args[0], &at)?)
        }
        _ => bail!("{at}: unknown step; the steps are {STEP_NAMES}"),
    })
}

fn path_list(value: &Json, at: &str) -> Result<Vec<String>> {
    let list = value.as_array().filter(|l| l.iter().all(Json::is_string));
    match list {
        Some(l) => Ok(l
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect()),
        None => bail!("{at}: expected a list of store paths, not {value}"),
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// Runs the pipeline on the graph less the `exclude`d paths; the layers,
/// lowest first, none empty.
pub(super) fn plan(
    graph: &Graph,
    pipeline: &Pipeline,
    exclude: &std::collections::BTreeSet<String>,
) -> Result<Plan> {
    let graph = graph.without(exclude);
    let run = Run::new(&graph, pipeline.debug);
    let mut value = Value::Graph(run.whole());
    for (i, step) in pipeline.steps.iter().enumerate() {
        value = run.step(step, value, &format!("step {}", i + 1))?;
    }
    let mut layers = Vec::new();
    flatten_into(value, &mut layers);
    let plan: Plan = layers
        .into_iter()
        .filter(|g| !g.vertices.is_empty())
        .map(|g| {
            g.vertices
                .iter()
                .map(|&v| run.paths[v].to_owned())
                .collect()
        })
        .collect();
    Ok(plan)
}

/// A graph of the pipeline: some of the closure's paths (by number, in
/// order) and the references among them that are left.
#[derive(Clone, Debug, Default)]
struct Sub {
    vertices: Vec<usize>,
    /// (from, to): `from` refers to `to`.
    edges: Vec<(usize, usize)>,
}

/// A value between steps.
#[derive(Clone, Debug)]
enum Value {
    Graph(Sub),
    List(Vec<Value>),
    /// Named parts, in the order the step made them.
    Parts(Vec<(String, Value)>),
}

impl Value {
    fn describe(&self) -> String {
        match self {
            Value::Graph(g) => format!("graph of {} paths", g.vertices.len()),
            Value::List(l) => format!("list of {}", l.len()),
            Value::Parts(p) => {
                let mut s = String::from("parts");
                for (name, v) in p {
                    let _ = write!(s, " {name} ({})", v.describe());
                }
                s
            }
        }
    }
}

/// What `flatten` does: dicts give their values, lists their items, all
/// the way down; graphs are the leaves.
fn flatten_into(value: Value, out: &mut Vec<Sub>) {
    match value {
        Value::Graph(g) => out.push(g),
        Value::List(items) => items.into_iter().for_each(|v| flatten_into(v, out)),
        Value::Parts(parts) => parts.into_iter().for_each(|(_, v)| flatten_into(v, out)),
    }
}

struct Run<'g> {
    /// The closure's paths, numbered in nixpkgs' vertex order.
    paths: Vec<&'g str>,
    number: BTreeMap<&'g str, usize>,
    graph: &'g Graph,
    debug: bool,
}

impl<'g> Run<'g> {
    fn new(graph: &'g Graph, debug: bool) -> Run<'g> {
        let mut paths: Vec<(u64, usize, &str)> = graph
            .iter()
            .map(|(p, info)| (info.nar_size.unwrap_or(0), info.listed_at(), p))
            .collect();
        paths.sort();
        let paths: Vec<&str> = paths.into_iter().map(|(_, _, p)| p).collect();
        let number = paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        Run {
            paths,
            number,
            graph,
            debug,
        }
    }

    fn whole(&self) -> Sub {
        let edges = self
            .paths
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                let refs = &self.graph.get(p).expect("a path of the graph").references;
                refs.iter().map(move |r| (i, self.number[r.as_str()]))
            })
            .collect();
        Sub {
            vertices: (0..self.paths.len()).collect(),
            edges,
        }
    }

    fn step(&self, step: &Step, value: Value, at: &str) -> Result<Value> {
        let result = self.apply(step, value, at)?;
        if self.debug {
            eprintln!(
                "layering pipeline: {at} {}: {}",
                step_name(step),
                result.describe()
            );
        }
        Ok(result)
    }

    fn apply(&self, step: &Step, value: Value, at: &str) -> Result<Value> {
        let name = step_name(step);
        let graph = |value: Value| -> Result<Sub> {
            match value {
                Value::Graph(g) => Ok(g),
                other => bail!(
                    "layering pipeline {at} ({name:?}): needs a graph, but the step before gave {}; \
                     use \"over\" to reach a part or \"map\" to apply it to each item",
                    other.describe()
                ),
            }
        };
        let list = |value: Value| -> Result<Vec<Value>> {
            match value {
                Value::List(l) => Ok(l),
                other => bail!(
                    "layering pipeline {at} ({name:?}): needs a list, but the step before gave {}; \
                     use \"flatten\" first",
                    other.describe()
                ),
            }
        };
        Ok(match step {
            Step::Flatten => {
                let mut out = Vec::new();
                flatten_into(value, &mut out);
                Value::List(out.into_iter().map(Value::Graph).collect())
            }
            Step::Over(key, inner) => {
                let Value::Parts(mut parts) = value else {
                    bail!(
                        "layering pipeline {at} (\"over\"): needs named parts, but the step before gave {}",
                        value.describe()
                    );
                };
                let Some(slot) = parts.iter_mut().find(|(k, _)| k == key) else {
                    let names: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
                    bail!(
                        "layering pipeline {at} (\"over\"): the step before gave no part {key:?}, only {}",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    );
                };
                let part = std::mem::replace(&mut slot.1, Value::List(Vec::new()));
                slot.1 = self.step(inner, part, &format!("{at} {key:?}"))?;
                Value::Parts(parts)
            }
            Step::SplitEvery(n) => {
                let g = graph(value)?;
                Value::List(
                    g.vertices
                        .chunks(*n)
                        .map(|c| Value::Graph(induced(&g, c, self.paths.len())))
                        .collect(),
                )
            }
            Step::LimitLayers(n) => {
                let mut items = list(value)?.into_iter();
                let mut out: Vec<Value> = items.by_ref().take(n - 1).collect();
                let mut merged = Sub::default();
                for (i, item) in items.enumerate() {
                    let Value::Graph(g) = item else {
                        bail!(
                            "layering pipeline {at} (\"limit_layers\"): item {} to merge is a {}, not a graph; use \"flatten\" first",
                            n + i,
                            item.describe()
                        );
                    };
                    merged.vertices.extend(g.vertices);
                    merged.edges.extend(g.edges);
                }
                out.push(Value::Graph(merged));
                Value::List(out)
            }
            Step::RemovePaths(paths) => {
                let g = graph(value)?;
                let gone = self.mark(&g, paths);
                let keep: Vec<usize> = g.vertices.iter().copied().filter(|&v| !gone[v]).collect();
                Value::Graph(induced(&g, &keep, self.paths.len()))
            }
            Step::Reverse => {
                let mut l = list(value)?;
                l.reverse();
                Value::List(l)
            }
            Step::SubcomponentIn(paths) | Step::SubcomponentOut(paths) => {
                let g = graph(value)?;
                let outwards = matches!(step, Step::SubcomponentOut(_));
                let start: Vec<usize> = self.found(&g, paths);
                let reach = reachable(&g, &start, outwards, self.paths.len());
                let (main, rest): (Vec<usize>, Vec<usize>) =
                    g.vertices.iter().partition(|&&v| reach[v]);
                Value::Parts(vec![
                    (
                        "main".into(),
                        Value::Graph(induced(&g, &main, self.paths.len())),
                    ),
                    (
                        "rest".into(),
                        Value::Graph(induced(&g, &rest, self.paths.len())),
                    ),
                ])
            }
            Step::SplitPaths(specs) => self.split_paths(graph(value)?, specs),
            Step::PopularityContest => {
                let g = graph(value)?;
                let sub = self.as_graph(&g)?;
                Value::List(
                    popularity::order(&sub)?
                        .iter()
                        .map(|p| {
                            Value::Graph(Sub {
                                vertices: vec![self.number[p.as_str()]],
                                edges: Vec::new(),
                            })
                        })
                        .collect(),
                )
            }
            Step::Map(inner) => Value::List(
                list(value)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| self.step(inner, v, &format!("{at} item {}", i + 1)))
                    .collect::<Result<_>>()?,
            ),
            Step::Pipe(steps) => {
                let mut value = value;
                for (i, s) in steps.iter().enumerate() {
                    value = self.step(s, value, &format!("{at} > step {}", i + 1))?;
                }
                value
            }
        })
    }

    /// The vertices of `g` among `paths`, in the order given.
    fn found(&self, g: &Sub, paths: &[String]) -> Vec<usize> {
        let inside = self.mask(&g.vertices);
        paths
            .iter()
            .filter_map(|p| self.number.get(p.as_str()).copied())
            .filter(|&v| inside[v])
            .collect()
    }

    fn mark(&self, g: &Sub, paths: &[String]) -> Vec<bool> {
        self.mask(&self.found(g, paths))
    }

    fn mask(&self, vertices: &[usize]) -> Vec<bool> {
        let mut m = vec![false; self.paths.len()];
        vertices.iter().for_each(|&v| m[v] = true);
        m
    }

    /// nixpkgs' split_paths: the split paths and what only they need
    /// (`main`), what they share with the rest of the graph (`common`), and
    /// the rest. References to the split paths are deleted first, and stay
    /// deleted in the parts.
    fn split_paths(&self, g: Sub, specs: &[SplitSpec]) -> Value {
        let n = self.paths.len();
        let mut split = Vec::new();
        for spec in specs {
            match spec {
                SplitSpec::Path(p) => split.extend(self.found(&g, std::slice::from_ref(p))),
                SplitSpec::ChildrenOf(ps) => {
                    for parent in self.found(&g, ps) {
                        split.extend(g.edges.iter().filter(|e| e.0 == parent).map(|e| e.1));
                    }
                }
            }
        }
        if split.is_empty() {
            return Value::Parts(vec![("rest".into(), Value::Graph(g))]);
        }
        let is_split = self.mask(&split);
        let mut referred = vec![false; n];
        g.edges.iter().for_each(|&(_, to)| referred[to] = true);
        let roots: Vec<usize> = g
            .vertices
            .iter()
            .copied()
            .filter(|&v| !referred[v])
            .collect();
        // A graph of several roots gets a made-up root above them, which
        // is never split off itself.
        if let [root] = roots[..]
            && is_split[root]
        {
            return Value::Parts(vec![("main".into(), Value::Graph(g))]);
        }
        let split_off = reachable(&g, &split, true, n);
        let cut = Sub {
            vertices: g.vertices.clone(),
            edges: g
                .edges
                .iter()
                .copied()
                .filter(|&(_, to)| !is_split[to])
                .collect(),
        };
        let starts: Vec<usize> = roots.into_iter().filter(|&r| !is_split[r]).collect();
        let from_roots = reachable(&cut, &starts, true, n);
        let mut main = Vec::new();
        let mut common = Vec::new();
        let mut rest = Vec::new();
        for &v in &g.vertices {
            match (split_off[v], from_roots[v]) {
                (true, true) => common.push(v),
                (true, false) => main.push(v),
                _ => rest.push(v),
            }
        }
        Value::Parts(
            [("main", main), ("common", common), ("rest", rest)]
                .into_iter()
                .filter(|(_, vs)| !vs.is_empty())
                .map(|(name, vs)| (name.to_owned(), Value::Graph(induced(&cut, &vs, n))))
                .collect(),
        )
    }

    /// The pipeline graph as a closure graph, for the popularity contest.
    fn as_graph(&self, g: &Sub) -> Result<Graph> {
        let mut references: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for &(from, to) in &g.edges {
            references
                .entry(from)
                .or_default()
                .push(self.paths[to].to_owned());
        }
        Graph::from_entries(
            g.vertices
                .iter()
                .map(|&v| GraphEntry {
                    path: self.paths[v].to_owned(),
                    references: Some(references.remove(&v).unwrap_or_default()),
                    ..GraphEntry::default()
                })
                .collect(),
        )
    }
}

/// The part of `g` on `keep` (a subset of its vertices, in its order).
fn induced(g: &Sub, keep: &[usize], n: usize) -> Sub {
    let mut inside = vec![false; n];
    keep.iter().for_each(|&v| inside[v] = true);
    Sub {
        vertices: keep.to_vec(),
        edges: g
            .edges
            .iter()
            .copied()
            .filter(|&(a, b)| inside[a] && inside[b])
            .collect(),
    }
}

/// Marks `start` and every vertex of `g` reachable from it along the
/// references (`outwards`) or against them.
fn reachable(g: &Sub, start: &[usize], outwards: bool, n: usize) -> Vec<bool> {
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in &g.edges {
        if outwards {
            next[a].push(b);
        } else {
            next[b].push(a);
        }
    }
    let mut seen = vec![false; n];
    let mut todo = start.to_vec();
    while let Some(v) = todo.pop() {
        if !seen[v] {
            seen[v] = true;
            todo.extend(&next[v]);
        }
    }
    seen
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Flatten => "flatten",
        Step::Over(..) => "over",
        Step::SplitEvery(_) => "split_every",
        Step::LimitLayers(_) => "limit_layers",
        Step::RemovePaths(_) => "remove_paths",
        Step::Reverse => "reverse",
        Step::SubcomponentIn(_) => "subcomponent_in",
        Step::SubcomponentOut(_) => "subcomponent_out",
        Step::SplitPaths(_) => "split_paths",
        Step::PopularityContest => "popularity_contest",
        Step::Map(_) => "map",
        Step::Pipe(_) => "pipe",
    }
}

#[cfg(test)]
mod tests {
    //! Each expectation is worked out by hand from nixpkgs'
    //! flatten-references-graph sources, as the comment above it shows.

    use std::collections::BTreeSet;

    use serde_json::json;

    use super::super::test_graphs::{graph, random_graph};
    use super::super::{Strategy, plan as plan_layers};
    use super::*;

    fn run(g: &Graph, steps: Json) -> Result<Vec<Vec<String>>> {
        run_without(g, steps, &[])
    }

    fn run_without(g: &Graph, steps: Json, exclude: &[&str]) -> Result<Vec<Vec<String>>> {
        let exclude = exclude.iter().map(|p| p.to_string()).collect();
        plan_layers(
            g,
            &Strategy::Pipeline(Pipeline::parse(&steps)?),
            0,
            &exclude,
        )
    }

    fn layers(ls: &[&[&str]]) -> Vec<Vec<String>> {
        ls.iter()
            .map(|l| l.iter().map(|p| p.to_string()).collect())
            .collect()
    }

    fn err(g: &Graph, steps: Json) -> String {
        format!("{:#}", run(g, steps).unwrap_err())
    }

    // nixpkgs' pipe_test.py graph: Root1→A, A→B, A→C, B→D, B→E, E→F,
    // B→G, Root2→B, Root3→C. All narSizes equal, listed in path order, so
    // the vertex order is the path order: R1 A B C D E F G R2 R3.
    const R1: &str = "/nix/store/a1-root1";
    const A: &str = "/nix/store/b1-a";
    const B: &str = "/nix/store/c1-b";
    const C: &str = "/nix/store/d1-c";
    const D: &str = "/nix/store/e1-d";
    const E: &str = "/nix/store/f1-e";
    const F: &str = "/nix/store/g1-f";
    const G: &str = "/nix/store/h1-g";
    const R2: &str = "/nix/store/i1-root2";
    const R3: &str = "/nix/store/j1-root3";

    fn nixpkgs_test_graph() -> Graph {
        graph(&[
            (R1, 1, &[A]),
            (A, 1, &[B, C]),
            (B, 1, &[D, E, G]),
            (C, 1, &[]),
            (D, 1, &[]),
            (E, 1, &[F]),
            (F, 1, &[]),
            (G, 1, &[]),
            (R2, 1, &[B]),
            (R3, 1, &[C]),
        ])
    }

    /// nixpkgs' pipe_test.py test_1, worked through:
    /// - split_paths [B]: three roots, so a made-up root above them.
    ///   Split off: B and below, {B D E F G}. Edges into B (A→B, R2→B)
    ///   deleted; from the roots: {R1 A C R2 R3}. Common: none. Parts main
    ///   [B D E F G], rest [R1 A C R2 R3].
    /// - over main, subcomponent_in [B]: nothing refers to B within main:
    ///   main [B], rest [D E F G] (edge E→F).
    /// - over rest, popularity_contest: roots D E G; F is 2 (itself and E),
    ///   D E G 1, ties by name: F D E G.
    /// - flatten: [B] [F] [D] [E] [G] [R1 A C R2 R3]; map remove_paths R3.
    /// - limit_layers 5: four kept, [G] and the rest merged in that order.
    #[test]
    fn nixpkgs_pipe_test_1() {
        let p = json!([
            ["split_paths", [B]],
            [
                "over",
                "main",
                [
                    "pipe",
                    [
                        ["subcomponent_in", [B]],
                        ["over", "rest", ["popularity_contest"]]
                    ]
                ]
            ],
            ["flatten"],
            ["map", ["remove_paths", R3]],
            ["limit_layers", 5]
        ]);
        assert_eq!(
            run(&nixpkgs_test_graph(), p).unwrap(),
            layers(&[&[B], &[F], &[D], &[E], &[G, R1, A, C, R2]])
        );
    }

    /// nixpkgs' pipe_test.py test_2: Root1→A→B and a lone Root2.
    /// Popularity B 3 (B, A, Root1), A 2, Root1 1, Root2 1 (by name).
    #[test]
    fn nixpkgs_pipe_test_2() {
        let (r1, a, b, r2) = (
            "/nix/store/1-root1",
            "/nix/store/2-a",
            "/nix/store/3-b",
            "/nix/store/4-root2",
        );
        let g = graph(&[(r1, 1, &[a]), (a, 1, &[b]), (b, 1, &[]), (r2, 1, &[])]);
        assert_eq!(
            run(&g, json!([["popularity_contest"]])).unwrap(),
            layers(&[&[b], &[a], &[r1], &[r2]])
        );
        assert_eq!(
            run(&g, json!([["popularity_contest"], ["limit_layers", 3]])).unwrap(),
            layers(&[&[b], &[a], &[r1, r2]])
        );
        assert_eq!(
            run(
                &g,
                json!([["popularity_contest"], ["reverse"], ["limit_layers", 3]])
            )
            .unwrap(),
            layers(&[&[r2], &[r1], &[a, b]])
        );
    }

    // A one-root graph: app→lib, app→tool, tool→lib, lib→libc,
    // tool→zlib; equal narSizes, vertex order app lib libc tool zlib.
    const APP: &str = "/nix/store/a-app";
    const LIB: &str = "/nix/store/b-lib";
    const LIBC: &str = "/nix/store/c-libc";
    const TOOL: &str = "/nix/store/d-tool";
    const ZLIB: &str = "/nix/store/e-zlib";

    fn app() -> Graph {
        graph(&[
            (APP, 1, &[LIB, TOOL]),
            (LIB, 1, &[LIBC]),
            (LIBC, 1, &[]),
            (TOOL, 1, &[LIB, ZLIB]),
            (ZLIB, 1, &[]),
        ])
    }

    /// Ways down from app: app 1, tool 1, lib 2, libc 2, zlib 1. Popularity
    /// (ways over a path and its dependents): libc 2+2+1+1 = 6, lib
    /// 2+1+1 = 4, zlib 1+1+1 = 3, tool 1+1 = 2, app 1. limit_layers n keeps
    /// n-1 and merges the rest; 1 merges everything.
    #[test]
    fn popularity_and_limit_layers() {
        let g = app();
        assert_eq!(
            run(&g, json!([["popularity_contest"], ["limit_layers", 3]])).unwrap(),
            layers(&[&[LIBC], &[LIB], &[ZLIB, TOOL, APP]])
        );
        assert_eq!(
            run(&g, json!([["popularity_contest"], ["limit_layers", 1]])).unwrap(),
            layers(&[&[LIBC, LIB, ZLIB, TOOL, APP]])
        );
        // More room than paths: the merged remainder is empty and dropped.
        assert_eq!(
            run(&g, json!([["popularity_contest"], ["limit_layers", 9]])).unwrap(),
            layers(&[&[LIBC], &[LIB], &[ZLIB], &[TOOL], &[APP]])
        );
        assert_eq!(
            run(
                &g,
                json!([["popularity_contest"], ["reverse"], ["limit_layers", 2]])
            )
            .unwrap(),
            layers(&[&[APP], &[TOOL, ZLIB, LIB, LIBC]])
        );
    }

    /// Excluded paths leave the graph before the pipeline: without tool,
    /// zlib is a root; ways app 1, lib 1, libc 1, zlib 1; popularity libc 3,
    /// lib 2, then app and zlib 1 each, by name.
    #[test]
    fn excluded_paths_leave_first() {
        assert_eq!(
            run_without(&app(), json!([["popularity_contest"]]), &[TOOL]).unwrap(),
            layers(&[&[LIBC], &[LIB], &[APP], &[ZLIB]])
        );
    }

    /// split_paths [tool]: one root (app), not split. Split off: tool lib
    /// libc zlib. With app→tool deleted, app reaches app lib libc. Common:
    /// lib libc; main: tool zlib; rest: app. Parts in that order.
    #[test]
    fn split_paths_main_common_rest() {
        assert_eq!(
            run(&app(), json!([["split_paths", [TOOL]]])).unwrap(),
            layers(&[&[TOOL, ZLIB], &[LIB, LIBC], &[APP]])
        );
        // The parts by name: over common, then reverse (flatten first).
        assert_eq!(
            run(
                &app(),
                json!([
                    ["split_paths", [TOOL]],
                    ["over", "common", ["split_every", 1]],
                    ["flatten"],
                    ["reverse"]
                ])
            )
            .unwrap(),
            layers(&[&[APP], &[LIBC], &[LIB], &[TOOL, ZLIB]])
        );
    }

    /// split_paths [tool, zlib] deletes tool→zlib too, and main keeps it
    /// deleted: in main, tool and zlib are both roots of popularity 1, so
    /// by name tool comes first (with the edge, zlib would be 2 and first).
    #[test]
    fn split_paths_keeps_references_to_split_paths_deleted() {
        assert_eq!(
            run(
                &app(),
                json!([
                    ["split_paths", [TOOL, ZLIB]],
                    ["over", "main", ["popularity_contest"]]
                ])
            )
            .unwrap(),
            layers(&[&[TOOL], &[ZLIB], &[LIB, LIBC], &[APP]])
        );
    }

    /// children_of app: lib and tool. Edges into them deleted; app reaches
    /// only itself. Split off lib libc tool zlib, none common.
    #[test]
    fn split_paths_children_of() {
        assert_eq!(
            run(&app(), json!([["split_paths", [{"children_of": APP}]]])).unwrap(),
            layers(&[&[LIB, LIBC, TOOL, ZLIB], &[APP]])
        );
        assert_eq!(
            run(&app(), json!([["split_paths", [{"children_of": [TOOL]}]]])).unwrap(),
            // lib and zlib split; app→lib deleted too; app reaches app tool.
            layers(&[&[LIB, LIBC, ZLIB], &[APP, TOOL]])
        );
    }

    /// Splitting the one root gives `main` alone; nothing found gives
    /// `rest` alone; `over` a part that is not there fails, as the KeyError
    /// of nixpkgs does.
    #[test]
    fn split_paths_degenerate_parts() {
        let g = app();
        assert_eq!(
            run(
                &g,
                json!([["split_paths", [APP]], ["over", "main", ["split_every", 4]]])
            )
            .unwrap(),
            layers(&[&[APP, LIB, LIBC, TOOL], &[ZLIB]])
        );
        let e = err(
            &g,
            json!([["split_paths", [APP]], ["over", "rest", ["flatten"]]]),
        );
        assert!(
            e.contains("step 2 (\"over\")") && e.contains("no part \"rest\", only main"),
            "{e}"
        );
        assert_eq!(
            run(
                &g,
                json!([
                    ["split_paths", ["/nix/store/z-none"]],
                    ["over", "rest", ["split_every", 2]]
                ])
            )
            .unwrap(),
            layers(&[&[APP, LIB], &[LIBC, TOOL], &[ZLIB]])
        );
    }

    /// Two roots x→y and w→y; split_paths [x]: the made-up root's edge to
    /// x goes too, w reaches w and y, so y is common.
    #[test]
    fn split_paths_with_several_roots() {
        let (w, x, y) = ("/nix/store/1-w", "/nix/store/2-x", "/nix/store/3-y");
        let g = graph(&[(w, 1, &[y]), (x, 1, &[y]), (y, 1, &[])]);
        assert_eq!(
            run(&g, json!([["split_paths", [x]]])).unwrap(),
            layers(&[&[x], &[y], &[w]])
        );
    }

    /// subcomponent_out [tool]: tool and below (lib libc zlib); rest app.
    /// subcomponent_in [lib]: lib and what refers to it (app tool). Paths
    /// not in the graph are ignored. The nixpkgs documentation example
    /// shape: the rest through a nested pipe, whose limit_layers leaves an
    /// empty merged layer that is dropped.
    #[test]
    fn subcomponents_and_nested_pipes() {
        let g = app();
        assert_eq!(
            run(
                &g,
                json!([["subcomponent_out", [TOOL, "/nix/store/z-none"]]])
            )
            .unwrap(),
            layers(&[&[LIB, LIBC, TOOL, ZLIB], &[APP]])
        );
        assert_eq!(
            run(&g, json!([["subcomponent_in", [LIB]]])).unwrap(),
            layers(&[&[APP, LIB, TOOL], &[LIBC, ZLIB]])
        );
        assert_eq!(
            run(
                &g,
                json!([
                    ["subcomponent_out", [TOOL]],
                    [
                        "over",
                        "rest",
                        ["pipe", [["popularity_contest"], ["limit_layers", 100]]]
                    ]
                ])
            )
            .unwrap(),
            layers(&[&[LIB, LIBC, TOOL, ZLIB], &[APP]])
        );
        // Nothing found: main is empty and dropped.
        assert_eq!(
            run(&g, json!([["subcomponent_in", ["/nix/store/z-none"]]])).unwrap(),
            layers(&[&[APP, LIB, LIBC, TOOL, ZLIB]])
        );
    }

    /// split_every follows the vertex order: narSize, smallest first, ties
    /// in listed order. Sizes p1 30, p2 10, p3 20, p4 10: p2 p4 p3 p1.
    /// map applies a step to each chunk: the chunk [app lib] keeps app→lib,
    /// so lib (2) comes before app (1).
    #[test]
    fn split_every_and_map() {
        let (p1, p2, p3, p4) = (
            "/nix/store/1-p",
            "/nix/store/2-p",
            "/nix/store/3-p",
            "/nix/store/4-p",
        );
        let g = graph(&[(p1, 30, &[]), (p2, 10, &[]), (p3, 20, &[p1]), (p4, 10, &[])]);
        assert_eq!(
            run(&g, json!([["split_every", 3]])).unwrap(),
            layers(&[&[p2, p4, p3], &[p1]])
        );
        // No step: the whole graph is one layer, in vertex order.
        assert_eq!(run(&g, json!([])).unwrap(), layers(&[&[p2, p4, p3, p1]]));
        assert_eq!(
            run(
                &app(),
                json!([["split_every", 2], ["map", ["popularity_contest"]]])
            )
            .unwrap(),
            layers(&[&[LIB], &[APP], &[LIBC], &[TOOL], &[ZLIB]])
        );
    }

    /// remove_paths takes a path or a list; removed paths are in no layer.
    #[test]
    fn remove_paths_leaves_paths_out() {
        let g = app();
        assert_eq!(
            run(&g, json!([["remove_paths", LIB]])).unwrap(),
            layers(&[&[APP, LIBC, TOOL, ZLIB]])
        );
        assert_eq!(
            run(
                &g,
                json!([
                    ["remove_paths", [LIB, ZLIB, "/nix/store/z-none"]],
                    ["split_every", 2]
                ])
            )
            .unwrap(),
            layers(&[&[APP, LIBC], &[TOOL]])
        );
        assert!(
            run(&g, json!([["remove_paths", [APP, LIB, LIBC, TOOL, ZLIB]]]))
                .unwrap()
                .is_empty()
        );
        assert!(
            run(
                &Graph::default(),
                json!([["popularity_contest"], ["limit_layers", 3]])
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn bad_pipelines_are_named() {
        let g = app();
        let cases = [
            (
                json!({"popularity_contest": []}),
                "expected a list of steps",
            ),
            (
                json!([["popularity"]]),
                "step 1 (\"popularity\"): unknown step; the steps are flatten",
            ),
            (json!(["flatten"]), "step 1: expected a list of a step name"),
            (
                json!([["limit_layers", "3"]]),
                "step 1 (\"limit_layers\"): the count must be a positive integer, not \"3\"",
            ),
            (json!([["split_every", 0]]), "positive integer, not 0"),
            (json!([["limit_layers"]]), "takes 1 argument(s), not 0"),
            (
                json!([["subcomponent_out", APP]]),
                "(\"subcomponent_out\"): expected a list of store paths",
            ),
            (
                json!([["split_paths", [{"parent_of": APP}]]]),
                "needs the key \"children_of\"",
            ),
            (json!([["over", 1, ["flatten"]]]), "name of a part"),
            (
                json!([["flatten"], ["over", "rest", ["bogus"]]]),
                "step 2 (\"over\") \"rest\" (\"bogus\"): unknown step",
            ),
            (
                json!([["pipe", [["flatten"], ["nope"]]]]),
                "step 1 (\"pipe\") step 2 (\"nope\")",
            ),
        ];
        for (p, want) in cases {
            let e = err(&g, p.clone());
            assert!(e.contains(want), "{p}: {e}");
        }
        // Kinds of value are checked when the step runs.
        let e = err(&g, json!([["popularity_contest"], ["popularity_contest"]]));
        assert!(
            e.contains(
                "step 2 (\"popularity_contest\"): needs a graph, but the step before gave list of 5"
            ),
            "{e}"
        );
        let e = err(&g, json!([["limit_layers", 2]]));
        assert!(e.contains("needs a list") && e.contains("flatten"), "{e}");
        let e = err(
            &g,
            json!([["subcomponent_out", [TOOL]], ["limit_layers", 2]]),
        );
        assert!(
            e.contains("needs a list, but the step before gave parts main"),
            "{e}"
        );
        let e = err(
            &g,
            json!([["split_every", 2], ["over", "main", ["flatten"]]]),
        );
        assert!(e.contains("needs named parts"), "{e}");
        let e = err(
            &g,
            json!([
                ["split_every", 2],
                ["map", ["split_every", 1]],
                ["limit_layers", 1]
            ]),
        );
        assert!(
            e.contains("item 1 to merge is a list of 2, not a graph"),
            "{e}"
        );
    }

    #[test]
    fn files_are_read_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, br#"[["popularity_contest"], ["limit_layers", 2]]"#).unwrap();
        let p = Pipeline::read(&file).unwrap();
        let plan = plan_layers(&app(), &Strategy::Pipeline(p), 0, &BTreeSet::new()).unwrap();
        assert_eq!(plan, layers(&[&[LIBC], &[LIB, ZLIB, TOOL, APP]]));
        std::fs::write(&file, b"[[\"flatten\"").unwrap();
        let e = format!("{:#}", Pipeline::read(&file).unwrap_err());
        assert!(e.contains("p.json") && e.contains("invalid JSON"), "{e}");
        std::fs::write(&file, br#"[["x"]]"#).unwrap();
        let e = format!("{:#}", Pipeline::read(&file).unwrap_err());
        assert!(e.contains("p.json") && e.contains("unknown step"), "{e}");
    }

    /// dockerTools' default pipeline, popularity_contest then limit_layers
    /// maxLayers-1, is the popularity strategy; and pipelines that remove
    /// nothing place every path once.
    #[test]
    fn the_default_pipeline_is_the_popularity_strategy() {
        for seed in 0..40 {
            let g = random_graph(seed, 1 + seed as usize % 30);
            for max_layers in [2, 3, 5, 100] {
                let p = run(
                    &g,
                    json!([["popularity_contest"], ["limit_layers", max_layers - 1]]),
                )
                .unwrap();
                let want =
                    plan_layers(&g, &Strategy::Popularity, max_layers, &BTreeSet::new()).unwrap();
                assert_eq!(p, want, "seed {seed}, max layers {max_layers}");
            }
            let some: Vec<&str> = g.paths().step_by(3).collect();
            let p = run(
                &g,
                json!([
                    ["subcomponent_in", some],
                    ["over", "main", ["split_paths", some]],
                    ["flatten"],
                    ["map", ["split_every", 2]],
                    ["flatten"],
                    ["limit_layers", 6]
                ]),
            )
            .unwrap();
            let mut placed: Vec<&str> = p.iter().flatten().map(String::as_str).collect();
            placed.sort();
            assert_eq!(placed, g.paths().collect::<Vec<_>>(), "seed {seed}");
        }
    }
}
