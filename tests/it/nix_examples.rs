//! The Nix library end to end: every image of `examples/default.nix` is
//! built with `nix-build` (the helper under test as the builder), loaded
//! into podman and checked the way its user would check it; the image
//! derivations are rebuilt with `--check` to compare bytes; and bad
//! arguments fail at evaluation with the library's message.
//!
//! Each example has its own image name and exactly one test here loads
//! it. Images that share a layer are loaded and removed one at a time, so
//! that removing one cannot race with loading another.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::docker_archive::{Layer, archive_layers, store_paths_in};
use crate::support::nix::{
    REPO, build_example, evaluation_fails, example_build_cmd, nix, realise_check,
};
use crate::support::podman::{podman_inspect, podman_load, podman_load_stream, podman_run};
use crate::support::process::{run, stdout_of};

/// The helper the examples are built with, as a Nix path literal.
fn helper() -> String {
    nix().helper().display().to_string()
}

/// `nix-instantiate ARGS... EXAMPLES` with the examples' arguments.
fn instantiate_example(args: &[&str]) -> Command {
    let nix = nix();
    let mut cmd = nix.command("nix-instantiate");
    cmd.args(args)
        .arg("--arg")
        .arg("helper")
        .arg(nix.helper())
        .args(nix.example_args())
        .arg(examples());
    cmd
}

fn examples() -> PathBuf {
    Path::new(REPO).join("examples")
}

/// Store paths of examples that are no images (`busybox`, `app`).
fn nix_build_paths(attrs: &[&str]) -> Vec<PathBuf> {
    let out = stdout_of(example_build_cmd(attrs).arg("--no-out-link"));
    out.lines().map(PathBuf::from).collect()
}

// ---------------------------------------------------------------------------
// podman

fn layer_count(inspect: &Value) -> usize {
    inspect["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no RootFS.Layers:\n{inspect:#}"))
        .len()
}

// ---------------------------------------------------------------------------
// docker-archives

/// `nix-store -qR PATHS`.
fn closure(paths: &[PathBuf]) -> BTreeSet<String> {
    stdout_of(nix().command("nix-store").arg("-qR").args(paths))
        .lines()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// The examples

#[test]
fn hello_streams_into_podman_load_and_says_hello() {
    let built = build_example("hello");
    let meta = fs::metadata(&built.path).unwrap();
    assert!(
        meta.is_file() && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
        "{} is not an executable file",
        built.path.display()
    );
    let image = podman_load_stream(
        &mut built.command(),
        "localhost/stevedore-example-hello:latest",
    );
    assert_eq!(podman_run(&image, &[]), "hello from stevedore\n");
}

#[test]
fn layered_has_four_layers_and_the_whole_closure() {
    let built = build_example("layered");
    let deps = nix_build_paths(&["app", "busybox"]);
    assert_eq!(deps.len(), 2, "{deps:?}");
    let closure = closure(&deps);
    // app, its 29 dependencies and busybox.
    assert_eq!(closure.len(), 31, "{closure:#?}");

    // In the archive: 3 store layers, then the customisation layer, and
    // between the store layers every path of the closure exactly once,
    // the last store layer included (nixpkgs issue 78744).
    let layers = archive_layers(&built.path);
    assert_eq!(layers.len(), 4, "layers in manifest.json");
    let mut seen = BTreeSet::new();
    for (i, layer) in layers[..3].iter().enumerate() {
        let paths = store_paths_in(layer);
        assert!(!paths.is_empty(), "store layer {i} holds no store path");
        for p in &paths {
            assert!(seen.insert(p.clone()), "{p} is in two layers");
        }
    }
    let missing: Vec<_> = closure.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "closure paths missing from the image: {missing:#?}"
    );
    let extra: Vec<_> = seen.difference(&closure).collect();
    assert!(
        extra.is_empty(),
        "store paths in the image outside the closure: {extra:#?}"
    );
    assert_eq!(
        store_paths_in(&layers[3]),
        BTreeSet::new(),
        "the customisation layer holds store paths"
    );

    let image = podman_load(&built.path, "localhost/stevedore-example-layered:latest");
    assert_eq!(layer_count(&podman_inspect(&image)), 4);
    assert_eq!(podman_run(&image, &[]).trim(), "31");
    // What the container sees.
    let listed: BTreeSet<String> = podman_run(&image, &["/bin/ls", "/nix/store"])
        .lines()
        .map(|name| format!("/nix/store/{name}"))
        .collect();
    assert_eq!(listed, closure, "ls /nix/store in the container");
}

#[test]
fn two_layers_has_two_zstd_layers_and_runs() {
    let built = build_example("twoLayers");
    let layers = archive_layers(&built.path);
    assert_eq!(layers.len(), 2, "layers in manifest.json");
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer.compression, "zstd", "layer {i}");
    }
    let image = podman_load(&built.path, "localhost/stevedore-example-two-layers:latest");
    assert_eq!(layer_count(&podman_inspect(&image)), 2);
    assert_eq!(podman_run(&image, &[]).trim(), "31");
}

#[test]
fn non_root_runs_as_1000_and_owns_the_store_files() {
    let built = build_example("nonRoot");
    let image = podman_load(&built.path, "localhost/stevedore-example-non-root:latest");
    // `id -u`, then the owner of busybox in the store.
    assert_eq!(podman_run(&image, &[]), "1000\n1000\n");
}

#[test]
fn fake_root_chown_reaches_the_layer() {
    let built = build_example("fakeRoot");
    let image = podman_load(&built.path, "localhost/stevedore-example-fake-root:latest");
    assert_eq!(podman_run(&image, &[]), "1000:1000\n");
}

#[test]
fn config_only_has_no_nix_directory() {
    let built = build_example("configOnly");
    let layers = archive_layers(&built.path);
    for (i, layer) in layers.iter().enumerate() {
        let nix: Vec<_> = layer
            .entries
            .iter()
            .filter(|e| e.starts_with("nix"))
            .collect();
        assert!(nix.is_empty(), "layer {i} has {nix:?}");
    }
    let image = podman_load(
        &built.path,
        "localhost/stevedore-example-config-only:latest",
    );
    let inspect = podman_inspect(&image);
    let config = &inspect["Config"];
    assert_eq!(config["Env"], json!(["ONLY=config"]), "{inspect:#}");
    assert_eq!(
        config["Labels"],
        json!({ "org.example.kind": "config-only" }),
        "{inspect:#}"
    );
}

#[test]
fn config_reaches_podman_and_extra_commands_are_not_interpolated() {
    let built = build_example("config");
    let image = podman_load(&built.path, "localhost/stevedore-example-config:latest");
    let inspect = podman_inspect(&image);
    let config = &inspect["Config"];
    let expect = [
        ("Env", json!(["GREETING=hello world", "PATH=/bin"])),
        ("Entrypoint", json!(["/bin/sh", "-c"])),
        ("Cmd", json!(["echo $GREETING; pwd; cat greeting"])),
        ("WorkingDir", json!("/srv/app")),
        ("ExposedPorts", json!({ "8080/tcp": {} })),
        ("Volumes", json!({ "/data": {} })),
        ("Labels", json!({ "org.example.name": "config" })),
        ("StopSignal", json!("SIGINT")),
    ];
    for (field, value) in expect {
        assert_eq!(config[field], value, "Config.{field}:\n{inspect:#}");
    }
    // `${not interpolated}` reaches the file as written (nixpkgs issue
    // 34779).
    assert_eq!(
        podman_run(&image, &[]),
        "hello world\n/srv/app\nfrom extraCommands: ${not interpolated}\n"
    );
}

#[test]
fn now_is_the_build_time() {
    // A result built on an earlier day would be reused; remove it first.
    let out_path = stdout_of(&mut instantiate_example(&["--eval", "-A", "now.outPath"]));
    let out_path = out_path.trim().trim_matches('"');
    let _ = nix()
        .command("nix-store")
        .args(["--delete", out_path])
        .output();

    let built = build_example("now");
    let image = podman_load(&built.path, "localhost/stevedore-example-now:latest");
    let inspect = podman_inspect(&image);
    let created_text = inspect["Created"].as_str().unwrap();
    assert_ne!(created_text, "1970-01-01T00:00:01Z");
    let created =
        time::OffsetDateTime::parse(created_text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("Created {created_text:?}: {e}"));
    let age = time::OffsetDateTime::now_utc() - created;
    assert!(
        age >= time::Duration::minutes(-5) && age <= time::Duration::days(1),
        "Created {created_text} is not within the last day"
    );
}

#[test]
fn untagged_is_tagged_with_the_output_hash() {
    let built = build_example("untagged");
    // As in dockerTools, the archive and its `stream` share one tag: the
    // hash of the stream's output path.
    let stream_path = stdout_of(&mut instantiate_example(&[
        "--eval",
        "-A",
        "untagged.stream.outPath",
    ]));
    let stream_path = stream_path.trim().trim_matches('"');
    let base = stream_path.rsplit('/').next().unwrap();
    let hash = &base[..32];
    assert_eq!(&base[32..33], "-", "{base}");
    // The library says the same in `imageTag`.
    let image_tag = stdout_of(&mut instantiate_example(&[
        "--eval",
        "-A",
        "untagged.imageTag",
    ]));
    assert_eq!(image_tag.trim(), format!("\"{hash}\""));

    let reference = format!("localhost/stevedore-example-untagged:{hash}");
    let image = podman_load(&built.path, &reference);
    assert_eq!(podman_inspect(&image)["RepoTags"], json!([reference]));
    assert_eq!(podman_run(&image, &[]), "untagged\n");
}

#[test]
fn image_derivations_rebuild_to_the_same_bytes() {
    // Every example image but `now`, which is not reproducible on purpose.
    let attrs = [
        "hello",
        "layered",
        "twoLayers",
        "nonRoot",
        "config",
        "fakeRoot",
        "configOnly",
        "untagged",
        "onBase",
        "onBaseStream",
        "imageOnBase",
    ];
    let first = stdout_of(example_build_cmd(&attrs).arg("--no-out-link"));
    assert_eq!(first.lines().count(), attrs.len(), "{first}");
    // Rebuilds each image and compares it with the first build.
    let out = example_build_cmd(&attrs)
        .args(["--no-out-link", "--check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix-build --check of {attrs:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), first);

    // And the customisation trees and config files they are made of.
    let mut inputs = Vec::new();
    for attr in attrs {
        let drv = stdout_of(&mut instantiate_example(&["-A", attr]));
        let refs = stdout_of(
            nix()
                .command("nix-store")
                .args(["-q", "--references"])
                .arg(drv.trim()),
        );
        inputs.extend(
            refs.lines()
                .filter(|r| {
                    r.ends_with("-customisation-layer.drv") || r.ends_with("-config.json.drv")
                })
                .map(str::to_owned),
        );
    }
    assert_eq!(inputs.len(), 2 * attrs.len(), "{inputs:#?}");
    run(nix().command("nix-store").arg("--realise").args(&inputs));
    realise_check(&inputs);
}

// ---------------------------------------------------------------------------
// Evaluation errors

#[test]
fn valid_arguments_instantiate() {
    // The expressions below fail for their argument, not for their form.
    let expr = format!(
        "(import {REPO}/nix {{ helper = {}; }}).buildLayeredImage {{ name = \"myapp\"; tag = \"v1\"; maxLayers = 2; }}",
        helper()
    );
    let drv = stdout_of(nix().command("nix-instantiate").arg("-E").arg(&expr));
    assert!(drv.trim().ends_with("-myapp.tar.drv"), "{drv}");
}

#[test]
fn uppercase_name_is_lowercased_with_a_warning_that_gives_the_fix() {
    for (call, warning, fix) in [
        (
            r#"buildLayeredImage { name = "MyApp"; }"#,
            r#"buildLayeredImage: name "MyApp" has uppercase letters"#,
            r#"use name = "myapp""#,
        ),
        (
            r#"streamLayeredImage { name = "localhost:5000/Team/App"; }"#,
            r#"streamLayeredImage: name "localhost:5000/Team/App" has uppercase letters"#,
            r#"use name = "localhost:5000/team/app""#,
        ),
    ] {
        let expr = format!("(import {REPO}/nix {{ helper = {}; }}).{call}", helper());
        let out = run(nix().command("nix-instantiate").arg("-E").arg(&expr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(warning) && stderr.contains(fix), "{stderr}");
    }
}

#[test]
fn invalid_tag_is_refused() {
    evaluation_fails(
        r#"buildLayeredImage { name = "myapp"; tag = "-v1"; }"#,
        &[
            r#"buildLayeredImage: tag "-v1" is not a valid tag"#,
            "not starting with . or -",
        ],
    );
    evaluation_fails(
        r#"buildLayeredImage { name = "myapp"; tag = "v 1"; }"#,
        &[r#"buildLayeredImage: tag "v 1" is not a valid tag"#],
    );
}

#[test]
fn max_layers_out_of_range_is_refused() {
    for n in ["1", "126"] {
        evaluation_fails(
            &format!(r#"buildLayeredImage {{ name = "myapp"; maxLayers = {n}; }}"#),
            &[&format!(
                "buildLayeredImage: maxLayers {n} must be an integer from 2 to 125"
            )],
        );
    }
}

#[test]
fn unknown_compressor_is_refused() {
    evaluation_fails(
        r#"buildLayeredImage { name = "myapp"; compressor = "xz"; }"#,
        &[r#"buildLayeredImage: compressor "xz" is unknown; use "gz", "zstd" or "none""#],
    );
}

#[test]
fn contents_and_copy_to_root_together_are_refused() {
    evaluation_fails(
        r#"buildLayeredImage { name = "myapp"; contents = [ (builtins.toFile "a" "a") ]; copyToRoot = [ (builtins.toFile "b" "b") ]; }"#,
        &["buildLayeredImage: give either contents or copyToRoot, not both"],
    );
}

#[test]
fn created_that_is_not_a_date_is_refused() {
    evaluation_fails(
        r#"buildLayeredImage { name = "myapp"; created = "yesterday"; }"#,
        &[
            r#"buildLayeredImage: created "yesterday" is not a date"#,
            r#"use an RFC 3339 time such as "1970-01-01T00:00:01Z" or "now""#,
        ],
    );
}

#[test]
fn unknown_config_keys_are_refused() {
    evaluation_fails(
        r#"streamLayeredImage { name = "myapp"; config.Cmdd = [ "/bin/sh" ]; }"#,
        &[
            r#"streamLayeredImage: config has unknown key "Cmdd""#,
            "Entrypoint",
        ],
    );
}

#[test]
fn unknown_layering_is_refused() {
    evaluation_fails(
        r#"buildLayeredImage { name = "myapp"; layering = "random"; }"#,
        &[
            r#"buildLayeredImage: layering "random" is unknown; use "auto", "popularity" or a list of lists of store paths"#,
        ],
    );
}

#[test]
fn from_image_arguments_are_checked_at_evaluation() {
    for f in ["buildLayeredImage", "buildImage", "streamLayeredImage"] {
        evaluation_fails(
            &format!(r#"{f} {{ name = "myapp"; fromImageTag = "1"; }}"#),
            &[&format!(
                "{f}: fromImageName and fromImageTag pick an image of fromImage; give fromImage too"
            )],
        );
        evaluation_fails(
            &format!(r#"{f} {{ name = "myapp"; fromImage = "base.tar"; }}"#),
            &[&format!("{f}: fromImage must be an image")],
        );
    }
}

// ---------------------------------------------------------------------------
// Images on a base

/// The layers of `image` start with those of `base`, byte for byte.
fn assert_base_layers_unchanged(base: &[Layer], image: &[Layer]) {
    assert!(image.len() > base.len(), "no layers on top of the base");
    for (i, (b, l)) in base.iter().zip(image).enumerate() {
        assert_eq!(
            (&b.digest, &b.diff_id),
            (&l.digest, &l.diff_id),
            "base layer {}",
            i + 1
        );
    }
}

/// The image config of a docker-archive.
fn archive_config(archive: &Path) -> Value {
    let files = crate::support::tar::tar_members(archive);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap();
    serde_json::from_slice(&files[config]).unwrap()
}

#[test]
fn layered_image_on_a_stevedore_base_keeps_its_layers_and_runs() {
    let base = build_example("layered");
    let image = build_example("onBase");
    let base_layers = archive_layers(&base.path);
    let layers = archive_layers(&image.path);
    assert_base_layers_unchanged(&base_layers, &layers);
    // maxLayers = 7: the base's four, then busybox and app are in the
    // base already, so one store layer (greeter) and the customisation
    // layer.
    assert_eq!(layers.len(), 6);
    let [store, custom] = &layers[4..] else {
        unreachable!()
    };
    let [greeter] = nix_build_paths(&["greeter"]).try_into().unwrap();
    let busybox = nix_build_paths(&["busybox"]).remove(0);
    assert_eq!(
        store_paths_in(store),
        BTreeSet::from([greeter.display().to_string()]),
        "the store layer holds only what the base lacks"
    );
    // The customisation tree links bin/sh to busybox as the base's does:
    // the same symlink is not written again; etc/layer-note is new.
    assert!(
        !custom.entries.iter().any(|e| e == "bin/sh"),
        "{:?}",
        custom.entries
    );
    assert!(custom.entries.iter().any(|e| e == "etc/layer-note"));
    assert!(custom.entries.iter().any(|e| e == "bin/greet"));
    assert!(!store_paths_in(custom).contains(&busybox.display().to_string()));

    let config = archive_config(&image.path);
    let base_config = archive_config(&base.path);
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history[..4],
        base_config["history"].as_array().unwrap()[..],
        "the base's history comes first"
    );
    assert_eq!(history.len(), 6);

    let loaded = podman_load(&image.path, "localhost/stevedore-example-on-base:latest");
    assert_eq!(podman_run(&loaded, &[]), "hello from the layer on top\n");
    // The base's files are there too.
    assert!(podman_run(&loaded, &["/bin/sh", "-c", "ls /bin"]).contains("busybox"));
}

#[test]
fn stream_on_a_launcher_base_keeps_its_layers() {
    let base = build_example("hello");
    let image = build_example("onBaseStream");
    // The launcher base's layers are what streaming it gives.
    let dir = crate::support::process::tempdir();
    let (base_tar, image_tar) = (dir.path().join("base.tar"), dir.path().join("image.tar"));
    for (launcher, out) in [(&base, &base_tar), (&image, &image_tar)] {
        let bytes = run(&mut launcher.command()).stdout;
        fs::write(out, bytes).unwrap();
    }
    assert_base_layers_unchanged(&archive_layers(&base_tar), &archive_layers(&image_tar));
    let env = &archive_config(&image_tar)["config"]["Env"];
    assert_eq!(env, &json!(["GREETING=hi"]));
    let loaded = podman_load_stream(
        &mut image.command(),
        "localhost/stevedore-example-on-base-stream:latest",
    );
    assert_eq!(podman_run(&loaded, &[]), "hi from a streamed layer\n");
    assert_eq!(
        podman_run(&loaded, &["/bin/sh", "-c", "echo hello from stevedore"]),
        "hello from stevedore\n"
    );
}

#[test]
fn build_image_on_a_base_adds_two_layers() {
    let base = build_example("twoLayers");
    let image = build_example("imageOnBase");
    let base_layers = archive_layers(&base.path);
    let layers = archive_layers(&image.path);
    assert_base_layers_unchanged(&base_layers, &layers);
    assert_eq!(layers.len(), base_layers.len() + 2);
    // The base's zstd layers stay zstd; the new ones are gzip.
    assert_eq!(layers[0].compression, "zstd");
    assert_eq!(layers[3].compression, "gzip");
    let loaded = podman_load(
        &image.path,
        "localhost/stevedore-example-image-on-base:latest",
    );
    assert_eq!(podman_run(&loaded, &[]), "hey from buildImage\n");
}

#[test]
fn base_layers_count_towards_max_layers() {
    let e = build_fails_with(
        r#"buildLayeredImage { name = "x"; fromImage = (import EXAMPLES { EXAMPLE_ARGS }).layered; maxLayers = 5; }"#,
    );
    assert!(
        e.contains(
            "maxLayers is 5 but fromImage already has 4 layers; raise maxLayers to at least 6"
        ),
        "{e}"
    );
}

/// Builds `call` (a library call, with `EXAMPLES` standing for the
/// examples' file) and returns the build's error output.
fn build_fails_with(call: &str) -> String {
    let call = call
        .replace("EXAMPLES", &examples().display().to_string())
        .replace("EXAMPLE_ARGS", &nix().example_attrs());
    let expr = format!(
        "let s = import {REPO}/nix {{ helper = {}; }}; in s.{call}",
        helper()
    );
    let out = nix()
        .command("nix-build")
        .args(["--no-out-link", "-E", &expr])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{call} built");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn build_image_takes_no_layer_arguments() {
    for arg in [
        "maxLayers = 3;",
        r#"layering = "auto";"#,
        r#"layeringPipeline = [ [ "popularity_contest" ] ];"#,
        "debug = true;",
    ] {
        evaluation_fails(
            &format!(r#"buildImage {{ name = "myapp"; {arg} }}"#),
            &[
                "buildImage: maxLayers, layering, layeringPipeline and debug are not arguments of buildImage; use buildLayeredImage",
            ],
        );
    }
}
