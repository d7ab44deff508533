//! Explicit `layering` lists of buildLayeredImage: each list is a layer
//! derivation of its own, whose blob the image takes without compressing
//! it again. The layers are the tars streamLayeredImage lays for the same
//! arguments; podman loads and runs the image; a change to the
//! application builds its list's layer again and no other; and the lists
//! are checked as before, fromImage included.
//!
//! Runs on the host's Nix 2.8 and, with `STEVEDORE_TEST_NIX=sandbox`, on
//! Nix 2.34 with the sandbox on ([`crate::support::nix::Nix`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::docker_archive::{Layer, archive_layers, store_paths_in};
use crate::support::nix::{
    build, build_fails, build_logged, evaluation_fails, expr, nix, nonce, would_build,
};
use crate::support::podman::{podman_load, podman_run};
use crate::support::process::{run_bounded, tempdir};
use crate::support::tar::tar_members;

/// `let` bindings of a small closure built fresh: app refers to lib, lib
/// to libc; the application's text holds `version`.
fn closure(nonce: &str, version: &str) -> String {
    format!(
        r#"mk = name: text: derivation {{
            name = "stevedore-explicit-${{name}}-{nonce}";
            system = builtins.currentSystem;
            builder = "${{ex.busybox}}/bin/sh";
            args = [ "-c" "mkdir $out && echo '${{text}}' > $out/file" ];
          }};
          libc = mk "libc" (builtins.concatStringsSep "" (builtins.genList (_: "c") 4000));
          lib = mk "lib" "${{libc}}";
          app = mk "app" "version {version} of the app, on ${{lib}}";"#
    )
}

/// An image of the closure and busybox with `function`: the libraries in
/// one list, the application in another, busybox in none (the final store
/// layer); store files owned by 1000:100.
fn image(function: &str, nonce: &str, version: &str) -> String {
    let body = format!(
        r#"let {} in s.{function} {{
          name = "stevedore-test-explicit-{nonce}";
          tag = "latest";
          contents = [ ex.busybox app ];
          layering = [ [ libc lib ] [ app ] ];
          uid = 1000;
          gid = 100;
          uname = "user";
          gname = "users";
          config.Cmd = [ "/bin/cat" "${{app}}/file" ];
        }}"#,
        closure(nonce, version)
    );
    expr("", &body)
}

/// The closure's names (`app`, `lib`, `libc`) of each layer's store
/// paths, lowest first, any other path by its name after the hash.
fn layer_names(layers: &[Layer]) -> Vec<BTreeSet<String>> {
    layers
        .iter()
        .map(|layer| {
            store_paths_in(layer)
                .into_iter()
                .map(|p| {
                    let name = &p["/nix/store/".len() + 33..];
                    match name.strip_prefix("stevedore-explicit-") {
                        Some(rest) => rest.split('-').next().unwrap_or_default().to_owned(),
                        None => name.to_owned(),
                    }
                })
                .collect()
        })
        .collect()
}

/// The history comments of a docker-archive's config.
fn history_comments(archive: &Path) -> Vec<String> {
    let members = tar_members(archive);
    let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let config: Value =
        serde_json::from_slice(&members[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["comment"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The derivations `nix-build --dry-run` would build for `expr`.
fn to_build(expr: &str) -> BTreeSet<String> {
    would_build(
        nix()
            .command("nix-build")
            .args(["--dry-run", "-E"])
            .arg(expr),
    )
}

fn layer_drvs(drvs: &BTreeSet<String>) -> BTreeSet<&str> {
    drvs.iter()
        .filter(|d| d.contains("-layer-stevedore-explicit-"))
        .map(String::as_str)
        .collect()
}

#[test]
fn explicit_lists_are_derivations_whose_layers_are_the_streams() {
    let nonce = nonce();
    let dir = tempdir();
    let archive_expr = image("buildLayeredImage", &nonce, "1");
    let planned = to_build(&archive_expr);
    let lists = layer_drvs(&planned);
    assert_eq!(
        lists.len(),
        2,
        "one derivation per list, named after its first path: {planned:#?}"
    );
    let libs = format!("-layer-stevedore-explicit-libc-{nonce}.drv");
    assert!(lists.iter().any(|d| d.ends_with(&libs)), "{lists:#?}");
    let (_, archive, _) = build_logged(&archive_expr, dir.path());
    let built = archive_layers(&archive);

    // The stream lays the same lists itself, and no layer derivation.
    let stream_expr = image("streamLayeredImage", &nonce, "1");
    assert!(layer_drvs(&to_build(&stream_expr)).is_empty());
    let stream_dir = tempdir();
    let (launcher, _) = build(&stream_expr, stream_dir.path());
    let out = run_bounded(&mut nix().run_in_tree(&launcher), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streamed_archive = stream_dir.path().join("image.tar");
    std::fs::write(&streamed_archive, &out.stdout).unwrap();
    let streamed = archive_layers(&streamed_archive);

    let names = layer_names(&built);
    assert_eq!(names[0], BTreeSet::from(["lib".into(), "libc".into()]));
    assert_eq!(names[1], BTreeSet::from(["app".into()]));
    assert!(names[2].iter().any(|n| n == "busybox"), "{names:?}");
    assert_eq!(
        names.len(),
        4,
        "two lists, the rest, the customisation layer"
    );
    assert!(built.iter().all(|l| l.compression == "gzip"));
    // Owners, times and order inside each tar are the stream's, byte for byte.
    let ids = |layers: &[Layer]| layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&built), ids(&streamed));
    assert_eq!(
        history_comments(&archive),
        history_comments(&streamed_archive)
    );

    let reference = format!("localhost/stevedore-test-explicit-{nonce}:latest");
    let image = podman_load(&archive, &reference);
    assert_eq!(
        podman_run(&image, &[]).trim_end().split(", on ").next(),
        Some("version 1 of the app")
    );
    let listing = podman_run(&image, &["/bin/ls", "-ln", "/nix/store"]);
    let owned = listing
        .lines()
        .filter(|l| l.contains("stevedore-explicit-"))
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(owned, ["1000", "1000", "1000"], "{listing}");
}

#[test]
fn after_a_change_to_the_application_only_its_list_is_built_again() {
    let nonce = nonce();
    let first = image("buildLayeredImage", &nonce, "1");
    let dir = tempdir();
    let (_, archive) = build(&first, dir.path());
    assert!(to_build(&first).is_empty(), "built once, nothing is left");

    let second = image("buildLayeredImage", &nonce, "2");
    let planned = to_build(&second);
    let lists = layer_drvs(&planned);
    assert_eq!(lists.len(), 1, "{planned:#?}");
    assert!(
        lists
            .iter()
            .all(|d| d.contains("-layer-stevedore-explicit-app-")),
        "the application's list alone: {planned:#?}"
    );
    // The application, its layer, the customisation tree and config that
    // name it, and the image: nothing holding the libraries.
    for drv in &planned {
        assert!(
            [
                "-stevedore-explicit-app-",
                "-customisation-layer.drv",
                "-config.json.drv",
                ".tar.drv"
            ]
            .iter()
            .any(|n| drv.contains(n)),
            "{drv} is built again"
        );
    }

    let dir2 = tempdir();
    let (_, changed) = build(&second, dir2.path());
    let (a, b) = (archive_layers(&archive), archive_layers(&changed));
    assert_eq!(a[0].digest, b[0].digest, "the libraries' blob is the same");
    assert_ne!(a[1].digest, b[1].digest, "the application's blob");
}

#[test]
fn explicit_lists_on_a_base_leave_its_paths_to_it() {
    let nonce = nonce();
    let dir = tempdir();
    let base_body = format!(
        r#"s.buildLayeredImage {{
          name = "stevedore-test-explicit-base-{nonce}";
          tag = "latest";
          contents = [ ex.busybox ];
        }}"#
    );
    let on_base = |layering: &str, max_layers: u32| {
        expr(
            "",
            &format!(
                r#"let {} base = {base_body}; in s.buildLayeredImage {{
                  name = "stevedore-test-explicit-on-base-{nonce}";
                  tag = "latest";
                  fromImage = base;
                  contents = [ ex.busybox app ];
                  layering = {layering};
                  maxLayers = {max_layers};
                }}"#,
                closure(&nonce, "1")
            ),
        )
    };
    // The base's two layers, the two lists, the rest (libc) and the
    // customisation layer: six, each counted once.
    let (_, archive) = build(&on_base("[ [ app ] [ lib ] ]", 6), dir.path());
    let names = layer_names(&archive_layers(&archive));
    let n = names.len();
    assert_eq!(n, 6, "{names:?}");
    assert_eq!(names[n - 4], BTreeSet::from(["app".into()]), "{names:?}");
    assert_eq!(names[n - 3], BTreeSet::from(["lib".into()]), "{names:?}");
    assert_eq!(
        names[n - 2],
        BTreeSet::from(["libc".into()]),
        "the rest: {names:?}"
    );
    assert!(
        names[..n - 4].iter().any(|l| l.contains("busybox")),
        "busybox stays in the base's layers: {names:?}"
    );

    // A path the base holds is named in a list: refused as by the stream.
    let err = build_fails(&on_base("[ [ app ] [ lib ] ]", 5));
    assert!(
        err.contains(
            "2 explicit layers and one for the remaining paths need 3 store layers, but max layers leaves 2"
        ),
        "{err}"
    );
    let err = build_fails(&on_base("[ [ app ] [ ex.busybox ] ]", 100));
    assert!(
        err.contains("explicit layer 2 names") && err.contains("which is excluded from the image"),
        "{err}"
    );
}

#[test]
fn lists_are_checked() {
    evaluation_fails(
        r#"buildLayeredImage { name = "x"; layering = [ [ "/nix/store/x" ] [ ] ]; }"#,
        &["buildLayeredImage: layering list 2 is empty"],
    );
    let nonce = nonce();
    let outside = expr(
        "",
        &format!(
            r#"let {} in s.buildLayeredImage {{
              name = "stevedore-test-explicit-outside-{nonce}";
              contents = [ lib ];
              layering = [ [ app ] ];
            }}"#,
            closure(&nonce, "1")
        ),
    );
    let err = build_fails(&outside);
    assert!(
        err.contains("explicit layer 1 names") && err.contains("which is not in the closure graph"),
        "{err}"
    );
}
