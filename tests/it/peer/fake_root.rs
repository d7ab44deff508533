//! The peer's subtests of commands run as root while building:
//! fakeRootCommands (with and without enableFakechroot), runAsRoot, and
//! the images whose contents come from such commands or from the
//! library's own packages (fakeNss, caCertificates).

use std::process::Command;
use std::time::{Duration, Instant};

use super::support::{build, claim, docker_succeed, load, reference};
use crate::support::podman::podman;
use crate::support::registry::free_port;

#[test]
fn build_layered_image_supports_running_chown_with_fake_root_commands() {
    let name = "layered-image-with-fake-root-commands";
    let _claim = claim(&[name]);
    let _image = load(
        &build("layeredImageWithFakeRootCommands"),
        &[&format!("{name}:latest")],
    );
    let uid = docker_succeed(name, &["sh", "-c", "stat -c '%u' /home/alice"]);
    assert_eq!(uid, "1000\n");
}

#[test]
fn layered_image_fake_root_commands_with_fakechroot_works() {
    let _claim = claim(&["image-via-fake-chroot"]);
    let _image = load(
        &build("imageViaFakeChroot"),
        &["image-via-fake-chroot:latest"],
    );
    let out = docker_succeed("image-via-fake-chroot", &[]);
    assert!(out.to_lowercase().contains("hello"), "{out}");
}

#[test]
fn stream_layered_image_chown_is_persistent_in_fake_root_commands() {
    let _claim = claim(&["chown-test"]);
    let _image = load(&build("chownTestImage"), &["chown-test:latest"]);
    assert_eq!(docker_succeed("chown-test", &[]), "12345:12345\n");
}

#[test]
fn stream_layered_image_with_non_root_user() {
    // The peer loads nonRootTestImage and then runs chownTestImage, which
    // its previous subtest loaded: both are loaded here.
    let _claim = claim(&["chown-test", "non-root-test"]);
    let _chown = load(&build("chownTestImage"), &["chown-test:latest"]);
    let _image = load(&build("nonRootTestImage"), &["non-root-test:latest"]);
    assert_eq!(docker_succeed("chown-test", &[]), "12345:12345\n");
}

#[test]
fn etc() {
    let _claim = claim(&["etc"]);
    let _image = load(&build("etc"), &["etc:latest"]);
    let out = docker_succeed("etc", &[]);
    assert!(out.contains("localhost"), "{out}");
}

#[test]
fn regression_test_for_issue_34779() {
    let _claim = claim(&["runasrootextracommands"]);
    let _image = load(
        &build("runAsRootExtraCommands"),
        &["runasrootextracommands:latest"],
    );
    docker_succeed("runasrootextracommands", &["cat", "extraCommands"]);
    docker_succeed("runasrootextracommands", &["cat", "runAsRoot"]);
}

#[test]
fn image_with_certs() {
    let _claim = claim(&["image-with-certs"]);
    let _image = load(&build("image-with-certs"), &["image-with-certs:latest"]);
    for bundle in [
        "/etc/ssl/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        docker_succeed("image-with-certs:latest", &["test", "-r", bundle]);
    }
}

/// A detached container, removed when dropped.
struct Running(String);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "--force", &self.0]).output();
    }
}

#[test]
fn run_as_root_and_entry_point_work() {
    let _claim = claim(&["nginx-container"]);
    let _image = load(&build("nginx"), &["nginx-container:latest"]);
    let port = free_port();
    let container = format!("stevedore-peer-nginx-{port}");
    let started = podman()
        .args(["run", "--name", &container, "-d", "-p"])
        .arg(format!("127.0.0.1:{port}:80"))
        .arg(reference("nginx-container"))
        .output()
        .unwrap();
    let _running = Running(container.clone());
    assert!(
        started.status.success(),
        "docker run -d -p {port}:80 nginx-container: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    // docker.wait_until_succeeds("curl -f http://localhost:8000/")
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let curl = Command::new("curl")
            .args(["-fsS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        if curl.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "curl -f http://127.0.0.1:{port}/: {}\nlogs: {}",
            String::from_utf8_lossy(&curl.stderr),
            String::from_utf8_lossy(&podman().args(["logs", &container]).output().unwrap().stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
