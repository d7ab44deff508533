//! The explicit strategy: store layers named path by path, in the order
//! given, and every other path of the closure in one final layer, so no
//! path is lost. A name for what nixpkgs builds from `split_paths`
//! pipelines, without the pipeline language.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use super::Plan;
use crate::closure::Graph;

pub(super) fn plan(
    graph: &Graph,
    layers: &[Vec<String>],
    limit: usize,
    exclude: &BTreeSet<String>,
) -> Result<Plan> {
    let mut placed: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let n = i + 1;
        if layer.is_empty() {
            bail!("explicit layer {n} is empty");
        }
        for path in layer {
            if !graph.contains(path) {
                bail!("explicit layer {n} names {path}, which is not in the closure graph");
            }
            if exclude.contains(path) {
                bail!("explicit layer {n} names {path}, which is excluded from the image");
            }
            if let Some(first) = placed.insert(path, n) {
                bail!("store path {path} is in explicit layers {first} and {n}; name it once");
            }
        }
    }
    let rest: Vec<String> = graph
        .paths()
        .filter(|p| !placed.contains_key(p) && !exclude.contains(*p))
        .map(str::to_owned)
        .collect();
    let needed = layers.len() + usize::from(!rest.is_empty());
    if needed > limit {
        let and_rest = if rest.is_empty() {
            ""
        } else {
            " and one for the remaining paths"
        };
        bail!(
            "{} explicit layers{and_rest} need {needed} store layers, but max layers leaves \
             {limit} (one more is the customisation layer)",
            layers.len()
        );
    }
    let mut plan = layers.to_vec();
    if !rest.is_empty() {
        plan.push(rest);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::super::test_graphs::graph;
    use super::super::{Strategy, plan as plan_layers};
    use super::*;

    const A: &str = "/nix/store/aaaa-app";
    const B: &str = "/nix/store/bbbb-lib";
    const C: &str = "/nix/store/cccc-libc";
    const D: &str = "/nix/store/dddd-data";

    fn g() -> Graph {
        graph(&[(A, 1, &[B, D]), (B, 1, &[C]), (C, 1, &[]), (D, 1, &[])])
    }

    fn plan(lists: &[&[&str]], max_layers: usize, exclude: &[&str]) -> Result<Plan> {
        let lists = lists
            .iter()
            .map(|l| l.iter().map(|p| p.to_string()).collect())
            .collect();
        let exclude = exclude.iter().map(|p| p.to_string()).collect();
        plan_layers(&g(), &Strategy::Explicit(lists), max_layers, &exclude)
    }

    fn err(lists: &[&[&str]], max_layers: usize, exclude: &[&str]) -> String {
        format!("{:#}", plan(lists, max_layers, exclude).unwrap_err())
    }

    #[test]
    fn lists_are_kept_and_the_rest_goes_last() {
        assert_eq!(
            plan(&[&[C], &[D, A]], 10, &[]).unwrap(),
            [vec![C], vec![D, A], vec![B]]
        );
        // Everything named: no remainder layer, so 2 store layers suffice.
        assert_eq!(
            plan(&[&[C, B], &[D, A]], 3, &[]).unwrap(),
            [vec![C, B], vec![D, A]]
        );
        // Nothing named: one layer with the whole closure, in path order.
        assert_eq!(plan(&[], 2, &[]).unwrap(), [vec![A, B, C, D]]);
        // Excluded paths leave the remainder.
        assert_eq!(plan(&[&[C]], 10, &[A, D]).unwrap(), [vec![C], vec![B]]);
    }

    #[test]
    fn bad_lists_are_named() {
        let e = err(&[&[C], &["/nix/store/zzzz-x"]], 10, &[]);
        assert!(
            e.contains("layer 2") && e.contains("/nix/store/zzzz-x"),
            "{e}"
        );
        let e = err(&[&[C, B], &[A, C]], 10, &[]);
        assert!(e.contains(C) && e.contains("layers 1 and 2"), "{e}");
        let e = err(&[&[C, C]], 10, &[]);
        assert!(e.contains(C) && e.contains("layers 1 and 1"), "{e}");
        let e = err(&[&[C], &[]], 10, &[]);
        assert!(e.contains("layer 2 is empty"), "{e}");
        let e = err(&[&[A]], 10, &[A]);
        assert!(e.contains(A) && e.contains("excluded"), "{e}");
    }

    #[test]
    fn max_layers_is_respected() {
        // 2 named + the rest = 3 store layers: needs max_layers 4.
        assert!(plan(&[&[C], &[B]], 4, &[]).is_ok());
        let e = err(&[&[C], &[B]], 3, &[]);
        assert!(
            e.contains("need 3 store layers") && e.contains("leaves 2"),
            "{e}"
        );
    }
}
