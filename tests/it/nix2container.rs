//! `stevedore.nix2container`: nix2container's examples
//! (`examples/nix2container.nix`, its `examples/` with stand-in
//! packages) built with `nix-build`, loaded into podman and run, each
//! asserting what the example shows; layers as derivations, rebuilt
//! alone after a change to the application; and the arguments refused at
//! evaluation.
//!
//! Each example has its own image name and exactly one test loads it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::docker_archive::{Layer, archive_layers, store_paths_in};
use crate::support::nix::{
    REPO, build as build_expr, build_cmd_of, build_linked, evaluation_fails, nix, nix_store_in,
    would_build,
};
use crate::support::podman::{
    PodmanImage, export_rootfs, podman, podman_inspect, podman_load, podman_run,
};
use crate::support::process::{run, run_bounded, stdout_of, tempdir};
use crate::support::registry::{Registry, push};

fn examples() -> PathBuf {
    Path::new(REPO).join("examples/nix2container.nix")
}

/// `nix-build examples/nix2container.nix -A ATTR` with the examples'
/// arguments and `extra` ones.
fn build_cmd(attr: &str, extra: &[&str]) -> Command {
    let mut cmd = build_cmd_of(&examples(), &[attr]);
    cmd.args(extra);
    cmd
}

/// An example built, and its image streamed into a docker-archive.
struct Example {
    /// Holds the out link (a GC root) and the archive.
    _dir: tempfile::TempDir,
    archive: PathBuf,
}

fn build(attr: &str) -> Example {
    build_with(attr, &[])
}

/// [`build`], with more `nix-build` arguments.
fn build_with(attr: &str, extra: &[&str]) -> Example {
    let built = build_linked(&mut build_cmd(attr, extra), &format!("-A {attr}"));
    // The result is a launcher: `./result | podman load`.
    let archive = built.dir.path().join("image.tar");
    let status = built
        .command()
        .stdout(File::create(&archive).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(status.success(), "{} failed", built.store_path.display());
    Example {
        _dir: built.dir,
        archive,
    }
}

impl Example {
    fn load(&self, name: &str) -> PodmanImage {
        podman_load(&self.archive, &format!("localhost/{name}:latest"))
    }

    fn layers(&self) -> Vec<Layer> {
        archive_layers(&self.archive)
    }
}

/// Store paths the examples build (`hello`, `busybox`, ...).
fn store_path(attr: &str) -> String {
    let out = stdout_of(&mut build_cmd(attr, &["--no-out-link"]));
    out.trim().to_owned()
}

/// Which layers (by index) hold `path`.
fn layers_holding(layers: &[Layer], path: &str) -> Vec<usize> {
    layers
        .iter()
        .enumerate()
        .filter(|(_, l)| store_paths_in(l).contains(path))
        .map(|(i, _)| i)
        .collect()
}

fn layer_count(image: &PodmanImage) -> usize {
    podman_inspect(image)["RootFS"]["Layers"]
        .as_array()
        .expect("RootFS.Layers")
        .len()
}

/// `podman run --entrypoint ENTRYPOINT IMAGE ARGS...`, its output.
fn run_entrypoint(image: &PodmanImage, entrypoint: &str, args: &[&str]) -> String {
    stdout_of(
        podman()
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                entrypoint,
            ])
            .arg(&image.0)
            .args(args),
    )
}

#[test]
fn basic_runs_its_entrypoint_from_one_layer() {
    let ex = build("basic");
    assert_eq!(ex.layers().len(), 1, "layers of basic");
    let image = ex.load("n2c-basic");
    assert_eq!(podman_run(&image, &[]), "Hello, world!\n");
}

#[test]
fn hello_isolates_the_dependencies_in_a_layer_of_their_own() {
    let ex = build("helloImage");
    let layers = ex.layers();
    assert_eq!(layers.len(), 2, "the dependencies' layer and the top layer");
    for dep in ["busybox", "hello"] {
        let path = store_path(dep);
        assert_eq!(layers_holding(&layers, &path), [0], "{path}");
    }
    let app = store_path("application");
    assert_eq!(layers_holding(&layers, &app), [1], "{app}");
    let image = ex.load("n2c-hello");
    assert_eq!(
        podman_run(&image, &[]),
        "Hello, world!\nHaaa aa... I am dying!!!\n"
    );
}

#[test]
fn bash_copies_the_root_to_slash_and_not_to_the_store() {
    let ex = build("bash");
    let image = ex.load("n2c-bash");
    let root: BTreeSet<String> = podman_run(&image, &["/bin/ls", "/"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(root.contains("bin"), "ls /: {root:?}");
    assert_eq!(
        podman_run(&image, &["/bin/sh", "-c", "echo from sh"]),
        "from sh\n"
    );
    let root_path = store_path("rootWithBin");
    let store = podman_run(&image, &["/bin/ls", "/nix/store"]);
    assert!(
        !store.contains(root_path.trim_start_matches("/nix/store/")),
        "copyToRoot's own store path is in the image's store:\n{store}"
    );
}

#[test]
fn layered_splits_the_closure_into_three_layers_each_path_once() {
    let ex = build("layered");
    let layers = ex.layers();
    assert_eq!(layers.len(), 3, "maxLayers = 3");
    let mut seen = BTreeSet::new();
    for layer in &layers {
        for p in store_paths_in(layer) {
            assert!(seen.insert(p.clone()), "{p} is in two layers");
        }
    }
    // app, its 29 dependencies and busybox.
    assert_eq!(seen.len(), 31, "{seen:#?}");
    let image = ex.load("n2c-layered");
    assert_eq!(layer_count(&image), 3);
    assert_eq!(podman_run(&image, &[]).trim(), "31");
}

#[test]
fn perms_sets_modes_in_the_layer_not_in_the_store() {
    let ex = build("perms");
    let image = ex.load("n2c-perms");
    let listed = podman_run(&image, &[]);
    let modes: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains("test"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        modes,
        ["-rwxrwxrwx", "-rwxrwxrwx"],
        "ls -l /tmp/:\n{listed}"
    );
    let stat_bin = format!("{}/bin/stat", store_path("busybox"));
    let stat = run_entrypoint(&image, &stat_bin, &["-c", "%a %u %g", "/tmp"]);
    assert_eq!(stat, "777 0 0\n");
    // The store keeps its own modes.
    let root = nix().host_path(Path::new(&store_path("permsRoot")));
    let mode = fs::metadata(root.join("tmp/test1.txt")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o444
    );
}

#[test]
fn perms_on_a_store_path_set_its_mode_and_owner_where_it_is() {
    let ex = build("permsStore");
    let image = ex.load("n2c-perms-store");
    assert_eq!(podman_run(&image, &[]), "750 7 8\n");
    // A path the image does not hold fails the build, naming it.
    let stderr = crate::support::nix::build_fails(&n2c_expr(
        r#"s.nix2container.buildImage { name = "x"; perms = [ { path = n2c.rootWithBin; regex = ""; mode = "0700"; } ]; }"#,
    ));
    assert!(
        stderr.contains("is neither one of copyToRoot nor a store path this layer holds"),
        "{stderr}"
    );
}

#[test]
fn uid_gid_gives_the_home_directory_its_owner_and_mode() {
    let ex = build("uidGid");
    let image = ex.load("n2c-uid-gid");
    assert_eq!(podman_run(&image, &[]), "744 1000 1000 user\n");
}

#[test]
fn from_image_puts_the_layers_on_the_base() {
    let ex = build("fromImage");
    let layers = ex.layers();
    // examples/default.nix's hello: its store layers and customisation
    // layer, then the one new layer.
    assert!(layers.len() >= 2, "{} layers", layers.len());
    let hello = store_path("hello");
    assert_eq!(layers_holding(&layers, &hello), [layers.len() - 1]);
    let busybox = store_path("busybox");
    assert_eq!(
        layers_holding(&layers, &busybox).len(),
        1,
        "busybox is the base's, and in no new layer"
    );
    assert!(layers_holding(&layers, &busybox)[0] < layers.len() - 1);
    let image = ex.load("n2c-from-image");
    assert_eq!(podman_run(&image, &[]), "Hello, world!\n");
    let out = run_entrypoint(&image, "/bin/sh", &["-c", "echo the base has /bin/sh"]);
    assert_eq!(out, "the base has /bin/sh\n");
}

#[test]
fn nested_layers_are_both_in_the_image() {
    let ex = build("nested");
    let layers = ex.layers();
    assert_eq!(layers.len(), 2, "the low layer and the high layer");
    assert_eq!(layers_holding(&layers, &store_path("busybox")), [0]);
    assert_eq!(layers_holding(&layers, &store_path("hello")), [1]);
    let image = ex.load("n2c-nested");
    assert_eq!(podman_run(&image, &[]), "Hello, world!\n");
}

#[test]
fn initialize_nix_database_registers_every_store_path_nested_layers_included() {
    let ex = build("nix");
    let image = ex.load("n2c-nix");
    // The image's file system, as a container has it.
    let rootfs = export_rootfs(&image.0);
    let nix_store = |args: &[&str]| nix_store_in(&rootfs.root, args);
    nix_store(&["--verify", "--check-contents"]);
    // hello is in the nested buildLayer; busybox is what it refers to.
    let hello = store_path("hello");
    let closure: BTreeSet<String> = nix_store(&["-qR", &hello])
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = [hello.clone(), store_path("busybox")].into();
    assert_eq!(closure, expected, "nix-store -qR {hello} in the image");
    // Every store path of the image is registered.
    let listed = podman_run(&image, &["/bin/ls", "/nix/store"]);
    for name in listed.lines() {
        let path = format!("/nix/store/{name}");
        nix_store(&["--check-validity", &path]);
    }
}

/// The derivations `nix-build --dry-run` would build for `rebuild` with
/// the application at `version`.
fn to_build(version: &str) -> BTreeSet<String> {
    would_build(&mut build_cmd(
        "rebuild",
        &["--dry-run", "--argstr", "appVersion", version],
    ))
}

fn drv_path(attr: &str, version: &str) -> String {
    let nix = nix();
    let out = stdout_of(
        nix.command("nix-instantiate")
            .arg(examples())
            .args(["-A", attr, "--argstr", "appVersion", version])
            .arg("--arg")
            .arg("helper")
            .arg(nix.helper())
            .args(nix.example_args()),
    );
    out.trim().to_owned()
}

#[test]
fn after_a_change_to_the_application_only_its_layer_is_built_again() {
    let version = crate::support::nix::nonce();
    let first = run_bounded(
        &mut build_cmd(
            "rebuild",
            &["--argstr", "appVersion", &version, "--no-out-link"],
        ),
        Duration::from_secs(600),
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let deps_layer = drv_path("rebuildDeps", &version);
    assert!(
        to_build(&version).is_empty(),
        "built once, nothing is left to build"
    );

    let changed = format!("{version}-changed");
    let planned = to_build(&changed);
    let app_layer = drv_path("rebuildAppLayer", &changed);
    assert_eq!(
        drv_path("rebuildDeps", &changed),
        deps_layer,
        "the dependencies' layer is the same derivation"
    );
    assert!(
        !planned.contains(&deps_layer),
        "the dependencies' layer is built again: {planned:#?}"
    );
    assert!(
        planned.contains(&app_layer),
        "the application's layer is not built: {planned:#?}"
    );
    // The application, its layer, the config and the top layer it
    // shapes, and the image: nothing holding the dependencies.
    for drv in &planned {
        assert!(
            [
                "rebuild-app",
                "nix2container-layer",
                "config.json",
                "image-n2c-rebuild"
            ]
            .iter()
            .any(|n| drv.contains(n)),
            "{drv} is built again"
        );
    }
    let layer_drvs = planned
        .iter()
        .filter(|d| d.contains("nix2container-layer"))
        .count();
    assert_eq!(
        layer_drvs, 2,
        "the application's layer and the top layer: {planned:#?}"
    );

    // Both images share the dependencies' layer blob, byte for byte.
    let a = build_with_version(&version);
    let b = build_with_version(&changed);
    // The top layer would hold the config's closure without the
    // layers below: nothing, so there is none.
    assert_eq!(a.len(), 2, "the dependencies' layer and the application's");
    assert_eq!(a[0].digest, b[0].digest, "the dependencies' blob");
    assert_ne!(a[1].digest, b[1].digest, "the application's blob");
}

fn build_with_version(version: &str) -> Vec<Layer> {
    build_with("rebuild", &["--argstr", "appVersion", version]).layers()
}

#[test]
fn bad_arguments_fail_at_evaluation_with_the_fix() {
    evaluation_fails(
        r#"nix2container.buildImage { name = "x"; config.Cmdd = [ ]; }"#,
        &[
            "nix2container.buildImage",
            "config has unknown key \"Cmdd\"",
        ],
    );
    evaluation_fails(
        r#"nix2container.buildImage { name = "x"; layers = [ "/nix/store/x" ]; }"#,
        &["layers must be a list of nix2container.buildLayer results"],
    );
    evaluation_fails(
        r#"nix2container.buildLayer { perms = [ { path = "/nix/store/x"; mode = "0644"; } ]; }"#,
        &["each perms entry needs path and regex"],
    );
    evaluation_fails(
        r#"nix2container.buildLayer { perms = [ { path = "/nix/store/x"; regex = ""; mode = 420; } ]; }"#,
        &["perms mode 420 must be an octal string such as \"0644\""],
    );
    evaluation_fails(
        r#"nix2container.buildLayer { perms = [ { path = "/nix/store/x"; regex = ""; uid = "1000"; } ]; }"#,
        &["perms uid \"1000\" must be a non-negative integer"],
    );
    evaluation_fails(
        r#"nix2container.buildLayer { maxLayers = 0; }"#,
        &["maxLayers must be a number from 1 to 125"],
    );
}

/// A Nix expression of the library with the examples (`ex`) and
/// nix2container's examples (`n2c`) in scope.
fn n2c_expr(body: &str) -> String {
    crate::support::nix::expr(
        "",
        &format!(
            "let n2c = import {} {{ {} }}; in {body}",
            examples().display(),
            nix().example_attrs()
        ),
    )
}

#[test]
fn pull_image_from_manifest_fetches_each_blob_and_both_pulls_are_a_from_image_of_both_apis() {
    let reg = Registry::start();
    // The registry holds the bash example as n2c/base:v1.
    let base = build("bash");
    push(
        &reg,
        &base.archive,
        &reg.reference("n2c/base", "v1"),
        &["--compress", "gzip"],
    );
    let pull_args = format!(
        "imageName = \"n2c/base\"; imageTag = \"v1\"; registryUrl = \"{}\"; tlsVerify = false;",
        reg.host()
    );

    // getManifest writes the lock file: the manifest, byte for byte.
    let dir = tempdir();
    let (get_manifest, _) = build_expr(
        &n2c_expr(&format!(
            "(s.nix2container.pullImageFromManifest {{ {pull_args} }}).getManifest"
        )),
        dir.path(),
    );
    let program = get_manifest.join("bin/get-manifest");
    let out = run_bounded(&mut nix().run_in_tree(&program), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "get-manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = dir.path().join("manifest.json");
    fs::write(&lock, &out.stdout).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer_count = manifest["layers"].as_array().unwrap().len();
    let inspected: serde_json::Value = serde_json::from_str(&stdout_of(
        Command::new("skopeo")
            .arg("inspect")
            .args(reg.skopeo_args(""))
            .arg(reg.reference("n2c/base", "v1")),
    ))
    .unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_hex(&out.stdout)),
        inspected["Digest"].as_str().unwrap(),
        "the lock file is the registry's manifest"
    );

    // Pulled: each blob its own fixed-output derivation.
    let pulled = format!(
        "s.nix2container.pullImageFromManifest {{ {pull_args} imageManifest = {}; }}",
        lock.display()
    );
    let drv = stdout_of(
        nix()
            .command("nix-instantiate")
            .arg("-E")
            .arg(n2c_expr(&pulled)),
    );
    let inputs = stdout_of(
        nix()
            .command("nix-store")
            .args(["-q", "--references"])
            .arg(drv.trim()),
    );
    let blob_drvs = inputs
        .lines()
        .filter(|l| l.ends_with(".drv"))
        .filter(|l| {
            let name = l.rsplit('/').next().unwrap();
            name.len() == 32 + 1 + 64 + 4
        })
        .count();
    assert_eq!(
        blob_drvs,
        layer_count + 1,
        "one derivation per blob:\n{inputs}"
    );

    // nix2container.pullImage pins the same image by its digest: build
    // once with a wrong hash, as users do, and take the one Nix reports.
    let by_digest = |hash: &str| {
        format!(
            "s.nix2container.pullImage {{ imageName = \"{}/n2c/base\"; imageDigest = \"{}\"; sha256 = \"{hash}\"; tlsVerify = false; }}",
            reg.host(),
            inspected["Digest"].as_str().unwrap()
        )
    };
    let stderr = crate::support::nix::build_fails(&n2c_expr(&by_digest(
        "0000000000000000000000000000000000000000000000000000",
    )));
    let hash = crate::support::nix::reported_hash(&stderr);
    let pinned = by_digest(&hash);

    // As fromImage of nix2container.buildImage and of buildLayeredImage.
    for (attr, name, body) in [
        (
            "n2c",
            "n2c-on-pulled",
            format!(
                "s.nix2container.buildImage {{ name = \"n2c-on-pulled\"; tag = \"latest\"; fromImage = {pulled}; config.entrypoint = [ \"${{n2c.hello}}/bin/hello\" ]; }}"
            ),
        ),
        (
            "layered",
            "layered-on-pulled",
            format!(
                "s.streamLayeredImage {{ name = \"layered-on-pulled\"; tag = \"latest\"; fromImage = {pulled}; contents = [ n2c.hello ]; config.Cmd = [ \"/bin/hello\" ]; }}"
            ),
        ),
        (
            "n2c on pullImage",
            "n2c-on-pinned",
            format!(
                "s.nix2container.buildImage {{ name = \"n2c-on-pinned\"; tag = \"latest\"; fromImage = {pinned}; config.entrypoint = [ \"${{n2c.hello}}/bin/hello\" ]; }}"
            ),
        ),
    ] {
        let dir = tempdir();
        let (store_path, _) = build_expr(&n2c_expr(&body), dir.path());
        let archive = dir.path().join("image.tar");
        let status = nix()
            .run_in_tree(&store_path)
            .stdout(File::create(&archive).unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "{attr}: streaming the image");
        let image = podman_load(&archive, &format!("localhost/{name}:latest"));
        assert_eq!(podman_run(&image, &[]), "Hello, world!\n", "{attr}");
        // The base's /bin/ls, from the pulled layers.
        assert_eq!(
            run_entrypoint(&image, "/bin/sh", &["-c", "ls /bin/ls"]),
            "/bin/ls\n",
            "{attr}"
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn copy_to_pushes_the_layer_blobs_as_their_derivations_hold_them() {
    let reg = Registry::start();
    let dir = tempdir();
    let (copy_to, _) = build_expr(&n2c_expr("n2c.helloImage.copyTo"), dir.path());
    let dest = reg.reference("n2c/hello", "v1");
    reg.run_copy_app(&copy_to, "copy-to", &dest);
    let pushed: serde_json::Value = serde_json::from_str(&stdout_of(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(reg.skopeo_args(""))
            .arg(&dest),
    ))
    .unwrap();
    let pushed: Vec<&str> = pushed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    // The digests the layer derivations recorded when they compressed the
    // layers: the image sent their blobs as they are.
    let mut recorded = Vec::new();
    for layout in hello_layers() {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(
            &fs::read(
                layout
                    .join("blobs/sha256")
                    .join(manifest.trim_start_matches("sha256:")),
            )
            .unwrap(),
        )
        .unwrap();
        for l in manifest["layers"].as_array().unwrap() {
            recorded.push(l["digest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        pushed, recorded,
        "pushed layers and the layers' derivations"
    );

    let reference = stdout_of(
        nix()
            .command("nix-instantiate")
            .args(["--eval", "-E"])
            .arg(n2c_expr("n2c.helloImage.imageRefUnsafe")),
    );
    assert_eq!(reference.trim(), "\"n2c-hello:latest\"");

    // copyToRegistry with no destination pushes to imageName:imageTag, as
    // nix2container's does; its arguments are push's options.
    let (copy_to_registry, _) = build_expr(
        &n2c_expr(&format!(
            "(s.nix2container.buildImage {{ name = \"{}/n2c/direct\"; tag = \"v2\"; config.entrypoint = [ \"${{n2c.hello}}/bin/hello\" ]; }}).copyToRegistry",
            reg.host()
        )),
        dir.path(),
    );
    let out = run_bounded(
        nix()
            .run_in_tree(&copy_to_registry.join("bin/copy-to-registry"))
            .args(reg.stevedore_args()),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "copy-to-registry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_of(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(reg.skopeo_args(""))
            .arg(reg.reference("n2c/direct", "v2")),
    );
}

/// The layer images of `n2c.helloImage` (its `layers`), built, where
/// they are on the host.
fn hello_layers() -> Vec<PathBuf> {
    stdout_of(
        nix()
            .command("nix-build")
            .arg("--no-out-link")
            .arg("-E")
            .arg(n2c_expr("n2c.helloImage.layers")),
    )
    .lines()
    .map(|layer| nix().host_path(Path::new(layer)))
    .collect()
}

/// The layer images of `n2c.helloImage`, copied where a test may change
/// them, in `dir`.
fn hello_layer_copies(dir: &Path) -> Vec<PathBuf> {
    hello_layers()
        .into_iter()
        .enumerate()
        .map(|(i, layer)| {
            let copy = dir.join(format!("layer-{i}"));
            run(Command::new("cp").arg("-r").arg(&layer).arg(&copy));
            run(Command::new("chmod").arg("-R").arg("u+w").arg(&copy));
            copy
        })
        .collect()
}

/// `stevedore stream` of an image made of `layers` and a file on top.
fn stream_stacked(dir: &Path, layers: &[PathBuf]) -> std::process::Output {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/motd"), "stacked\n").unwrap();
    let spec = serde_json::json!({
        "version": 1,
        "name": "stacked",
        "layers": [],
        "base": { "layers": layers },
        "customisation": { "trees": [tree] },
    });
    let spec_path = dir.join("spec.json");
    fs::write(&spec_path, spec.to_string()).unwrap();
    crate::support::process::stevedore()
        .arg("stream")
        .arg(&spec_path)
        .output()
        .unwrap()
}

/// The `layer` job's scan records stand for its blobs: an image made on
/// the layers from their records is the image made by reading the blobs,
/// and with the records the blobs are not read at all (a blob damaged in
/// place goes unseen until its record is gone, and is refused then).
#[test]
fn stacked_layers_are_taken_from_their_scan_records() {
    let dir = tempdir();
    let layers = hello_layer_copies(dir.path());
    assert_eq!(layers.len(), 2, "the dependencies' layer and the top layer");
    for layer in &layers {
        let records = fs::read_dir(layer.join("scans"))
            .unwrap_or_else(|e| panic!("{}/scans: {e}", layer.display()))
            .count();
        assert!(records >= 1, "{} has no scan record", layer.display());
    }
    let with_records = stream_stacked(dir.path(), &layers);
    assert!(
        with_records.status.success(),
        "{}",
        String::from_utf8_lossy(&with_records.stderr)
    );
    let scans = dir.path().join("scans-of-layer-0");
    fs::rename(layers[0].join("scans"), &scans).unwrap();
    fs::rename(layers[1].join("scans"), dir.path().join("scans-of-layer-1")).unwrap();
    let read = stream_stacked(dir.path(), &layers);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(
        with_records.stdout == read.stdout,
        "the image made from the records differs from the one made by reading the layers"
    );

    // Damage the dependencies' blob in place, keeping its size.
    fs::rename(&scans, layers[0].join("scans")).unwrap();
    let record = fs::read_dir(layers[0].join("scans"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let blob = layers[0].join("blobs/sha256").join(&record);
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let planned = stream_stacked(dir.path(), &layers);
    assert!(
        planned.status.success(),
        "with its record, the blob is not read: {}",
        String::from_utf8_lossy(&planned.stderr)
    );
    fs::remove_dir_all(layers[0].join("scans")).unwrap();
    let refused = stream_stacked(dir.path(), &layers);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("layer-0"),
        "{err}"
    );
}
