//! `stevedore layers`: the plan nixpkgs' dockerTools would make, printed as
//! JSON, on the graph that nixpkgs' closure-graph.py documents (popularity
//! A 1, B 2, C 3, D 4, E 5, F 9, G 2).

use serde_json::{Value, json};

use crate::support::process::{run, run_fail, stevedore, tempdir};

fn documented_graph() -> Value {
    let entry = |name: &str, refs: &[&str]| {
        json!({
            "path": format!("/nix/store/{name}"),
            "narSize": 1000,
            "references": refs.iter().map(|r| format!("/nix/store/{r}")).collect::<Vec<_>>(),
        })
    };
    json!([
        entry("1-a", &["2-b", "7-g"]),
        entry("2-b", &["3-c", "5-e"]),
        entry("3-c", &["4-d", "5-e"]),
        entry("4-d", &["6-f"]),
        entry("5-e", &["6-f"]),
        entry("6-f", &[]),
        entry("7-g", &[]),
    ])
}

fn plan(graph: &Value, args: &[&str]) -> Vec<Vec<String>> {
    let dir = tempdir();
    let path = dir.path().join("graph.json");
    std::fs::write(&path, graph.to_string()).unwrap();
    let out = run(stevedore().arg("layers").arg(&path).args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn short(plan: Vec<Vec<String>>) -> Vec<Vec<String>> {
    plan.into_iter()
        .map(|l| {
            l.into_iter()
                .map(|p| p["/nix/store/".len()..].to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn popularity_fills_the_budget_most_popular_first() {
    // maxLayers 4: the customisation layer, two single-path layers for the
    // most popular (F, E) and one layer for the rest in popularity order.
    let got = short(plan(
        &documented_graph(),
        &["--strategy", "popularity", "--max-layers", "4"],
    ));
    assert_eq!(
        got,
        [
            vec!["6-f"],
            vec!["5-e"],
            vec!["4-d", "3-c", "2-b", "7-g", "1-a"]
        ]
    );
}

#[test]
fn popularity_with_room_gives_one_layer_per_path() {
    let got = short(plan(
        &documented_graph(),
        &["--strategy", "popularity", "--max-layers", "100"],
    ));
    let order: Vec<&str> = got.iter().map(|l| l[0].as_str()).collect();
    assert!(got.iter().all(|l| l.len() == 1));
    assert_eq!(order, ["6-f", "5-e", "4-d", "3-c", "2-b", "7-g", "1-a"]);
}

#[test]
fn exclude_leaves_paths_out() {
    let dir = tempdir();
    let exclude = dir.path().join("exclude");
    std::fs::write(&exclude, "/nix/store/7-g\n").unwrap();
    let got = plan(
        &documented_graph(),
        &[
            "--strategy",
            "auto",
            "--max-layers",
            "3",
            "--exclude",
            exclude.to_str().unwrap(),
        ],
    );
    let all: Vec<&String> = got.iter().flatten().collect();
    assert_eq!(all.len(), 6);
    assert!(!all.iter().any(|p| p.ends_with("7-g")));
    assert!(got.len() <= 2);
}

#[test]
fn bad_graphs_and_limits_are_one_line_errors() {
    let dir = tempdir();
    let path = dir.path().join("graph.json");
    std::fs::write(
        &path,
        r#"[{"path":"/nix/store/1-a","narSize":1,"references":["/nix/store/9-missing"]}]"#,
    )
    .unwrap();
    let err = run_fail(stevedore().arg("layers").arg(&path));
    assert!(err.contains("/nix/store/9-missing"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    std::fs::write(&path, documented_graph().to_string()).unwrap();
    let err = run_fail(
        stevedore()
            .arg("layers")
            .arg(&path)
            .args(["--max-layers", "1"]),
    );
    assert!(err.contains("max layers 1"), "{err}");
    let err = run_fail(
        stevedore()
            .arg("layers")
            .arg(&path)
            .args(["--strategy", "biggest"]),
    );
    assert!(err.contains("biggest"), "{err}");
}
