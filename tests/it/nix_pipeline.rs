//! dockerTools' `layeringPipeline` and `debug` through the Nix library:
//! images of a small closure built with a pipeline, whose layers (the store
//! paths of each, in the docker-archive's manifest order, and podman's
//! count) are the ones nixpkgs' flatten-references-graph gives; a pipeline
//! given as a JSON file; the build log with `debug`; and the errors.
//!
//! Runs on the host's Nix 2.8 and, with `STEVEDORE_TEST_NIX=sandbox`, on
//! Nix 2.34 with the sandbox on ([`crate::support::nix::Nix`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::support::docker_archive::{archive_layers, store_paths_in};
use crate::support::nix::{build, build_fails, expr, nonce};
use crate::support::nix::{evaluation_fails, nix};
use crate::support::podman::{podman_inspect, podman_load, podman_rmi};
use crate::support::process::{run_bounded, tempdir};

/// `let` bindings of a closure built fresh: app refers to lib and tool,
/// tool to lib and zlib, lib to libc. libc is the largest path, lib much
/// smaller (it holds one store path), which orders them by narSize.
fn closure(nonce: &str) -> String {
    format!(
        r#"mk = name: text: derivation {{
            name = "stevedore-pipe-${{name}}-{nonce}";
            system = builtins.currentSystem;
            builder = "${{ex.busybox}}/bin/sh";
            args = [ "-c" "mkdir $out && echo '${{text}}' > $out/file" ];
          }};
          zlib = mk "zlib" "z";
          libc = mk "libc" (builtins.concatStringsSep "" (builtins.genList (_: "c") 4000));
          lib = mk "lib" "${{libc}}";
          tool = mk "tool" "${{lib}} ${{zlib}}";
          app = mk "app" "${{lib}} ${{tool}}";"#
    )
}

/// The store paths of each layer of a docker-archive, lowest first, the
/// closure's by name (`app`, `lib`, ...), any other in full; the
/// customisation layer included.
fn layer_names(archive: &Path) -> Vec<Vec<String>> {
    archive_layers(archive)
        .iter()
        .map(|layer| {
            store_paths_in(layer)
                .into_iter()
                .map(|p| match p.split_once("-stevedore-pipe-") {
                    Some((_, rest)) => rest.split('-').next().unwrap_or_default().to_owned(),
                    None => p,
                })
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect()
        })
        .collect()
}

/// split_paths [tool] on app lib libc tool zlib (one root, app): main is
/// tool and zlib (what only tool needs), common lib and libc (app reaches
/// them without tool), rest app. `over common split_every 1` gives one
/// layer each, in narSize order (lib, then libc); flatten, then reverse.
/// The customisation layer (no store paths) comes last.
const SPLIT_PIPELINE: &str = r#"[
    [ "split_paths" [ tool ] ]
    [ "over" "common" [ "split_every" 1 ] ]
    [ "flatten" ]
    [ "reverse" ]
  ]"#;

fn split_expected() -> Vec<Vec<String>> {
    [&["app"][..], &["libc"], &["lib"], &["tool", "zlib"], &[]]
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn build_layered_image_takes_the_layers_of_a_pipeline_naming_store_paths() {
    let nonce = nonce();
    let dir = tempdir();
    let body = format!(
        r#"let {} in s.buildLayeredImage {{
          name = "stevedore-test-pipeline-{nonce}";
          tag = "latest";
          contents = [ app ];
          maxLayers = 2;
          layeringPipeline = {SPLIT_PIPELINE};
        }}"#,
        closure(&nonce)
    );
    // maxLayers 2 would allow one store layer; a pipeline is not bound by it.
    let (_, archive) = build(&expr("", &body), dir.path());
    assert_eq!(layer_names(&archive), split_expected());

    let reference = format!("localhost/stevedore-test-pipeline-{nonce}:latest");
    let image = podman_load(&archive, &reference);
    let rootfs = podman_inspect(&image)["RootFS"]["Layers"].clone();
    assert_eq!(rootfs.as_array().map(Vec::len), Some(5), "{rootfs}");
    podman_rmi(&reference);
}

#[test]
fn stream_layered_image_takes_a_pipeline_too() {
    let nonce = nonce();
    let dir = tempdir();
    let body = format!(
        r#"let {} in s.streamLayeredImage {{
          name = "stevedore-test-pipeline-stream-{nonce}";
          contents = [ app ];
          layeringPipeline = {SPLIT_PIPELINE};
        }}"#,
        closure(&nonce)
    );
    let (launcher, _) = build(&expr("", &body), dir.path());
    let archive = dir.path().join("image.tar");
    let out = run_bounded(&mut nix().run_in_tree(&launcher), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&archive, &out.stdout).unwrap();
    assert_eq!(layer_names(&archive), split_expected());
}

/// A pipeline in a JSON file (here builtins.toFile), read at build time.
/// Popularity on the closure: ways down from app: app 1, tool 1, lib 2,
/// libc 2, zlib 1; popularity libc 6, lib 4, zlib 3, tool 2, app 1;
/// limit_layers 3 keeps two and merges the rest. `debug` prints each step
/// and the layers to the build log.
#[test]
fn a_pipeline_file_with_debug() {
    let nonce = nonce();
    let dir = tempdir();
    let body = format!(
        r#"let {} in s.buildLayeredImage {{
          name = "stevedore-test-pipeline-file-{nonce}";
          contents = [ app ];
          debug = true;
          layeringPipeline = builtins.toFile "pipeline.json"
            (builtins.toJSON [ [ "popularity_contest" ] [ "limit_layers" 3 ] ]);
        }}"#,
        closure(&nonce)
    );
    let link = dir.path().join("result");
    let out = run_bounded(
        nix()
            .command("nix-build")
            .arg("-E")
            .arg(expr("", &body))
            .arg("-o")
            .arg(&link),
        Duration::from_secs(300),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("layering pipeline: step 1 popularity_contest: list of 5")
            && log.contains("layering pipeline: step 2 limit_layers: list of 3")
            && log.contains("store layers planned (pipeline)"),
        "{log}"
    );
    let store_path = String::from_utf8(out.stdout).unwrap();
    let archive = nix().host_path(Path::new(store_path.trim()));
    let want: Vec<Vec<String>> = [&["libc"][..], &["lib"], &["app", "tool", "zlib"], &[]]
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(layer_names(&archive), want);
}

#[test]
fn bad_pipelines_fail_naming_the_argument_or_step() {
    evaluation_fails(
        r#"streamLayeredImage { name = "x"; layering = "auto"; layeringPipeline = [ ]; }"#,
        &["streamLayeredImage: give either layering or layeringPipeline, not both"],
    );
    evaluation_fails(
        r#"buildLayeredImage { name = "x"; layeringPipeline = 3; }"#,
        &["buildLayeredImage: layeringPipeline must be a list of steps"],
    );
    evaluation_fails(
        r#"streamLayeredImage { name = "x"; debug = "yes"; }"#,
        &["streamLayeredImage: debug must be true or false"],
    );
    let nonce = nonce();
    let body = format!(
        r#"let {} in s.buildLayeredImage {{
          name = "stevedore-test-pipeline-bad-{nonce}";
          contents = [ app ];
          layeringPipeline = [ [ "popularity_contest" ] [ "limit_layers" 0 ] ];
        }}"#,
        closure(&nonce)
    );
    let log = build_fails(&expr("", &body));
    assert!(
        log.contains(
            "layering pipeline step 2 (\"limit_layers\"): the count must be a positive integer, not 0"
        ),
        "{log}"
    );
}
