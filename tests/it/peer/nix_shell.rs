//! The peer's streamNixShellImage subtests (docker-tools-nix-shell.nix),
//! on stand-ins of hello and mkShell built by a stand-in stdenv.

use super::support::{build, claim, docker_succeed, docker_succeed_with, load};

/// `IMAGE | docker load` and `docker run --rm -it NAME ARGS`; its output.
fn run_shell(attr: &str, args: &[&str]) -> String {
    let _claim = claim(&[attr]);
    let _image = load(&build(attr), &[&format!("{attr}:latest")]);
    docker_succeed_with(&["-i", "-t"], attr, args)
}

#[test]
fn build_nix_shell_image_can_build_a_basic_derivation() {
    let name = "nix-shell-basic";
    let _claim = claim(&[name]);
    let _image = load(&build(name), &[&format!("{name}:latest")]);
    let out = docker_succeed(name, &["bash", "-c", "buildDerivation && $out/bin/hello"]);
    assert!(out.lines().any(|l| l == "Hello, world!"), "{out}");
}

#[test]
fn build_nix_shell_image_runs_the_shell_hook() {
    let out = run_shell("nix-shell-hook", &[]);
    assert!(out.contains("This is the shell hook!"), "{out}");
}

#[test]
fn build_nix_shell_image_sources_stdenv_making_build_inputs_available() {
    let out = run_shell("nix-shell-inputs", &[]);
    assert!(out.contains("Hello, world!"), "{out}");
}

#[test]
fn build_nix_shell_image_pass_as_file_works() {
    let out = run_shell("nix-shell-pass-as-file", &[]);
    assert!(out.contains("this is a string"), "{out}");
}

#[test]
fn build_nix_shell_image_run_argument_works() {
    let out = run_shell("nix-shell-run", &[]);
    assert!(out.contains("This shell is not interactive"), "{out}");
}

#[test]
fn build_nix_shell_image_command_argument_works() {
    let out = run_shell("nix-shell-command", &[]);
    assert!(out.contains("This shell is interactive"), "{out}");
}

#[test]
fn build_nix_shell_image_command_override_works() {
    let out = run_shell("nix-shell-command-override", &["/bin/sh", "-c", "hello"]);
    assert!(out.contains("Hello, world!"), "{out}");
}

#[test]
fn build_nix_shell_image_home_directory_is_writable_by_default() {
    run_shell("nix-shell-writable-home", &[]);
}

#[test]
fn build_nix_shell_image_home_directory_can_be_made_non_existent() {
    run_shell("nix-shell-nonexistent-home", &[]);
}

#[test]
fn build_nix_shell_image_can_build_derivations() {
    run_shell("nix-shell-build-derivation", &[]);
}
