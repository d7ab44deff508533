//! podman with this machine's settings, and the lock every change to its
//! image store takes: loading, running, inspecting and removing images.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::process::{run, stdout_of};

/// A podman command with this machine's settings: no default ulimits
/// (the machine refuses them) and runc.
pub fn podman() -> Command {
    let conf = std::env::temp_dir().join("stevedore-test-containers.conf");
    if !conf.exists() {
        fs::write(
            &conf,
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
    }
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

/// Held while a command adds images to or removes them from podman's store.
///
/// containers/storage shares layers between images: a `podman load` that
/// finds a layer already present can fail with "layer not known" when a
/// concurrent `podman rmi` of another image removes that layer meanwhile.
/// Tests run in parallel threads of one process, so one lock serialises
/// every load, import, save and removal.
static PODMAN_STORE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the podman store lock (see [`PODMAN_STORE`]).
pub fn podman_store_lock() -> std::sync::MutexGuard<'static, ()> {
    PODMAN_STORE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a command that changes podman's image store (`podman load`,
/// `import`, `save`, `stevedore load --into podman`, a skopeo copy to
/// `containers-storage:`) under the store lock, panicking if it fails.
pub fn run_in_podman_store(cmd: &mut Command) -> Output {
    let _guard = podman_store_lock();
    run(cmd)
}

/// `podman rmi -f REFERENCE` under the store lock; a missing image is fine.
pub fn podman_rmi(reference: &str) {
    let _guard = podman_store_lock();
    let _ = podman().args(["rmi", "-f", reference]).output();
}

/// A podman image that is removed when dropped (also when a test fails).
pub struct PodmanImage(pub String);

impl Drop for PodmanImage {
    fn drop(&mut self) {
        podman_rmi(&self.0);
    }
}

/// Checks that podman load succeeded and reported `reference`.
fn loaded(out: &Output, reference: &str) -> PodmanImage {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "podman load failed:\n{said}");
    assert!(
        said.contains(&format!("Loaded image: {reference}\n"))
            || said.contains(&format!("Loaded image(s): {reference}\n")),
        "podman load did not report {reference}:\n{said}"
    );
    PodmanImage(reference.to_owned())
}

/// `podman load -i ARCHIVE`, which must name the image `reference`.
pub fn podman_load(archive: &Path, reference: &str) -> PodmanImage {
    let _guard = podman_store_lock();
    let out = podman()
        .arg("load")
        .arg("-i")
        .arg(archive)
        .output()
        .unwrap();
    loaded(&out, reference)
}

/// `PRODUCER | podman load` (a launcher, `stevedore stream`), which must
/// name the image `reference`.
pub fn podman_load_stream(producer: &mut Command, reference: &str) -> PodmanImage {
    let _guard = podman_store_lock();
    let mut child = producer
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {producer:?}: {e}"));
    let pipe = child.stdout.take().unwrap();
    let load = podman().arg("load").stdin(pipe).output().unwrap();
    let produced = child.wait_with_output().unwrap();
    assert!(
        produced.status.success(),
        "{producer:?} failed ({}): {}",
        produced.status,
        String::from_utf8_lossy(&produced.stderr)
    );
    loaded(&load, reference)
}

/// `podman manifest push --all` of the manifest list `list` to `dest`, a
/// registry without TLS.
pub fn podman_manifest_push(list: &PodmanImage, dest: &str) {
    run_in_podman_store(podman().args([
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        &list.0,
        dest,
    ]));
}

/// `podman run --rm --network none IMAGE ARGS...`, its standard output.
pub fn podman_run(image: &PodmanImage, args: &[&str]) -> String {
    stdout_of(
        podman()
            .args(["run", "--rm", "--network", "none", &image.0])
            .args(args),
    )
}

/// `podman image inspect`, the image's JSON object.
pub fn podman_inspect(image: &PodmanImage) -> Value {
    let out = stdout_of(podman().args(["image", "inspect", &image.0]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
    v[0].clone()
}

/// The `CONTAINERS_CONF` that [`podman`] sets, for other programs that
/// talk to podman's store.
pub fn containers_conf() -> std::ffi::OsString {
    podman()
        .get_envs()
        .find(|(k, _)| *k == "CONTAINERS_CONF")
        .and_then(|(_, v)| v)
        .expect("podman() sets CONTAINERS_CONF")
        .to_owned()
}

/// The image's file system as a container of it has it (what
/// `crane export - -` writes), unpacked into a directory.
pub struct Rootfs {
    _dir: tempfile::TempDir,
    pub tar: std::path::PathBuf,
    pub root: std::path::PathBuf,
}

/// Exports a container of the image `reference` (not started) and
/// unpacks it as root, owners and all.
pub fn export_rootfs(reference: &str) -> Rootfs {
    let dir = super::process::tempdir();
    let id = stdout_of(podman().args(["create", reference, "/nonexistent"]));
    let id = id.trim();
    let tar = dir.path().join("rootfs.tar");
    let exported = podman()
        .args(["export", "-o"])
        .arg(&tar)
        .arg(id)
        .output()
        .unwrap();
    let _ = podman().args(["rm", "-f", id]).output();
    assert!(
        exported.status.success(),
        "podman export: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    run(Command::new("tar")
        .arg("-xpf")
        .arg(&tar)
        .arg("-C")
        .arg(&root));
    Rootfs {
        _dir: dir,
        tar,
        root,
    }
}
