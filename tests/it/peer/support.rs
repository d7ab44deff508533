//! What the peer tests share: building an attribute of
//! `tests/peer/images.nix` with the Nix under test, loading it into podman
//! as `docker load` does in the peer's VM, and the `docker run`,
//! `docker images` and `docker inspect` checks the peer makes.
//!
//! The peer's subtests run one after another in one VM; these run in
//! parallel threads, so a test first [`claim`]s the image names it loads,
//! and no other peer test loads them meanwhile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use crate::support::nix::nix_store_in;
use crate::support::nix::{Built, REPO, build_cmd_of, build_linked, nix};
pub use crate::support::podman::Rootfs;
use crate::support::podman::{PodmanImage, podman, podman_store_lock};
use crate::support::process::{run_bounded, stdout_of};

/// The ported images.
pub fn images_nix() -> PathBuf {
    Path::new(REPO).join("tests/peer/images.nix")
}

/// `nix-build tests/peer/images.nix -A ATTR` with the helper under test
/// (and, in the sandbox, busybox from the store), plus `extra` arguments.
pub fn build_with(attr: &str, extra: &[String]) -> Built {
    build_linked(&mut nix_build(attr, extra), &format!("-A {attr}"))
}

/// The `nix-build` of [`build_with`], for a build that may fail.
pub fn nix_build(attr: &str, extra: &[String]) -> Command {
    let mut cmd = build_cmd_of(&images_nix(), &[attr]);
    cmd.args(extra);
    cmd
}

/// [`build_with`] with no extra arguments.
pub fn build(attr: &str) -> Built {
    build_with(attr, &[])
}

/// `nix-build -A ATTR`, which must fail; its error output.
pub fn build_fails(attr: &str, extra: &[String]) -> String {
    let out = run_bounded(
        nix_build(attr, extra).arg("--no-out-link"),
        Duration::from_secs(600),
    );
    assert!(!out.status.success(), "nix-build -A {attr} built");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value of `(import tests/peer/images.nix { ... }).PATH`, a string
/// (`bashNoTag.imageTag`, `pkgs.nix.outPath`).
pub fn eval_string(path: &str) -> String {
    let expr = format!(
        "(import {} {{ {} }}).{path}",
        images_nix().display(),
        nix().example_attrs()
    );
    let out = stdout_of(
        nix()
            .command("nix-instantiate")
            .args(["--eval", "--strict", "--json", "-E"])
            .arg(&expr),
    );
    serde_json::from_str::<String>(out.trim()).unwrap_or_else(|e| panic!("{expr}: {out}: {e}"))
}

/// The names held by running peer tests.
static CLAIMED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static RELEASED: Condvar = Condvar::new();

/// Image names a test holds until dropped.
pub struct Claim(Vec<String>);

/// Waits until no other peer test holds any of `names`, then holds them
/// all (all at once, so that two tests never wait on each other).
pub fn claim(names: &[&str]) -> Claim {
    let mut held = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    while names.iter().any(|n| held.contains(*n)) {
        held = RELEASED.wait(held).unwrap_or_else(|e| e.into_inner());
    }
    held.extend(names.iter().map(|n| n.to_string()));
    Claim(names.iter().map(|n| n.to_string()).collect())
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut held = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        for n in &self.0 {
            held.remove(n);
        }
        RELEASED.notify_all();
    }
}

/// What podman calls the image `docker load` names `NAME:TAG`.
pub fn reference(name_tag: &str) -> String {
    let first = name_tag.split('/').next().unwrap_or_default();
    if name_tag.contains('/') && (first.contains('.') || first.contains(':')) {
        name_tag.to_owned()
    } else {
        format!("localhost/{name_tag}")
    }
}

/// `docker load --input=RESULT` for an archive, `RESULT | docker load`
/// for a launcher; every one of `name_tags` must then be in podman's
/// store. The images are removed when the guards drop.
pub fn load(built: &Built, name_tags: &[&str]) -> Vec<PodmanImage> {
    let _guard = podman_store_lock();
    let is_launcher = std::fs::read(&built.path)
        .map(|b| b.starts_with(b"#!"))
        .unwrap_or(false);
    let out = if is_launcher {
        let mut producer = built.command();
        let mut child = producer
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = child.stdout.take().unwrap();
        let load = podman().arg("load").stdin(pipe).output().unwrap();
        let produced = child.wait_with_output().unwrap();
        assert!(
            produced.status.success(),
            "{} | docker load: {}",
            built.store_path.display(),
            String::from_utf8_lossy(&produced.stderr)
        );
        load
    } else {
        podman()
            .arg("load")
            .arg("--input")
            .arg(&built.path)
            .output()
            .unwrap()
    };
    assert!(
        out.status.success(),
        "docker load {}:\n{}{}",
        built.store_path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    name_tags
        .iter()
        .map(|n| {
            let r = reference(n);
            let exists = podman().args(["image", "exists", &r]).status().unwrap();
            assert!(
                exists.success(),
                "docker load {} did not load {r}:\n{}",
                built.store_path.display(),
                String::from_utf8_lossy(&out.stdout)
            );
            PodmanImage(r)
        })
        .collect()
}

/// `docker run --rm OPTIONS... IMAGE ARGS...` (with no network), bounded in
/// time; its output whether or not it succeeded.
pub fn docker_run(options: &[&str], image: &str, args: &[&str]) -> Output {
    run_bounded(
        podman()
            .args(["run", "--rm", "--network", "none"])
            .args(options)
            .arg(reference(image))
            .args(args)
            .stdin(Stdio::null()),
        Duration::from_secs(120),
    )
}

/// `docker.succeed("docker run --rm IMAGE ARGS...")`: its standard output.
pub fn docker_succeed(image: &str, args: &[&str]) -> String {
    docker_succeed_with(&[], image, args)
}

/// [`docker_succeed`] with options before the image.
pub fn docker_succeed_with(options: &[&str], image: &str, args: &[&str]) -> String {
    let out = docker_run(options, image, args);
    assert!(
        out.status.success(),
        "docker run {options:?} {image} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard output and error together, as `|&` gives them.
pub fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `docker images --format FORMAT`, one line an image.
pub fn docker_images(format: &str) -> Vec<String> {
    // Under the store lock: an image another test removes meanwhile
    // fails the listing ("image not known").
    let _guard = podman_store_lock();
    stdout_of(podman().args(["images", "--format", format]))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `docker inspect IMAGE`: the image's JSON object.
pub fn docker_inspect(image: &str) -> Value {
    let out = stdout_of(podman().args(["image", "inspect", &reference(image)]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// The peer's `set_of_layers`: the image's `RootFS.Layers`.
pub fn set_of_layers(image: &str) -> BTreeSet<String> {
    docker_inspect(image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// Exports a container of `image` (`NAME:TAG` as `docker load` names
/// it) and unpacks it as root, owners and all.
pub fn export_rootfs(image: &str) -> Rootfs {
    crate::support::podman::export_rootfs(&reference(image))
}

/// The member names of a tar file, as `tar t` lists them.
pub fn tar_names(tar: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Where `path` leads inside `root`, links followed there: what
/// `readlink -f` gives in the container.
pub fn resolve_in(root: &Path, path: &str) -> String {
    let mut current = PathBuf::from(path);
    for _ in 0..40 {
        let mut resolved = PathBuf::from("/");
        let mut changed = false;
        for (i, part) in current.iter().skip(1).enumerate() {
            resolved.push(part);
            let on_host = root.join(resolved.strip_prefix("/").unwrap());
            if let Ok(target) = std::fs::read_link(&on_host) {
                let mut next = if target.is_absolute() {
                    target
                } else {
                    resolved.parent().unwrap().join(target)
                };
                for rest in current.iter().skip(i + 2) {
                    next.push(rest);
                }
                current = next;
                changed = true;
                break;
            }
        }
        if !changed {
            return resolved.display().to_string();
        }
    }
    panic!("{path} loops in {}", root.display());
}

/// `nix-store -qR PATH` of the Nix that built the images, sorted.
pub fn build_closure(path: &str) -> BTreeSet<String> {
    stdout_of(nix().command("nix-store").args(["-qR", path]))
        .lines()
        .map(str::to_owned)
        .collect()
}
