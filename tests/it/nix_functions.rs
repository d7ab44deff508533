//! dockerTools' small functions and the nix-shell images, built with the
//! library and checked in podman as nixpkgs' tests check them
//! (`nixos/tests/docker-tools.nix`, `docker-tools-nix-shell.nix`):
//! `binSh`, `usrBinEnv`, `caCertificates`, `fakeNss` and its `override`,
//! `shadowSetup` in a `runAsRoot`, `streamNixShellImage` and
//! `buildNixShellImage`; and `default.nix` handing nixpkgs' packages to
//! the library.
//!
//! The library's packages are stand-ins made from the examples' busybox,
//! so every build takes everything from the store and runs in the Nix
//! sandbox as well (`STEVEDORE_TEST_NIX=sandbox`): `bash` is a script
//! that runs busybox's sh, `coreutils` a directory of busybox applets, `cacert` a directory with
//! a bundle file, `shadow` busybox's `passwd`.

use std::path::{Path, PathBuf};

use crate::support::nix::build;
use crate::support::nix::{REPO, evaluation_fails, nix};
use crate::support::podman::{PodmanImage, podman, podman_load, podman_load_stream};
use crate::support::process::{stdout_of, tempdir};

/// The stand-ins and the library with them, then `BODY`, in which `s` is
/// the library, `tools` the coreutils stand-in, `cacert`, `mk` (a
/// derivation from a busybox script: name, script) and `sys` are bound.
fn expr(body: &str) -> String {
    let helper = nix().helper().display().to_string();
    format!(
        r#"let
  ex = import {REPO}/examples {{ {examples} }};
  bb = ex.busybox;
  sys = builtins.currentSystem;
  mk = name: script: derivation {{
    inherit name;
    system = sys;
    builder = "${{bb}}/bin/sh";
    args = [ "-c" "set -e; b=${{bb}}/bin/busybox; ${{script}}" ];
  }};
  applets = name: list: mk name "$b mkdir -p $out/bin; for a in ${{list}}; do $b ln -s $b $out/bin/$a; done";
  tools = applets "coreutils-standin" "sh cat chmod env id ls mkdir touch whoami printf test echo stat";
  shadow = applets "shadow-standin" "passwd";
  bash = mk "bash-standin" ''
    $b mkdir -p $out/bin
    $b printf '#!%s/bin/sh\nexec %s/bin/sh "$@"\n' ${{bb}} ${{bb}} > $out/bin/bash
    $b chmod 555 $out/bin/bash
  '';
  cacert = mk "cacert-standin" ''
    $b mkdir -p $out/etc/ssl/certs
    $b printf -- '-----BEGIN CERTIFICATE-----\nstevedore test bundle\n-----END CERTIFICATE-----\n' > $out/etc/ssl/certs/ca-bundle.crt
  '';
  s = import {REPO}/nix {{
    helper = {helper};
    shell = "${{bb}}/bin/sh";
    scriptPath = "${{tools}}/bin";
    bashInteractive = bash;
    coreutils = tools;
    inherit cacert shadow;
  }};
in {body}"#,
        examples = nix().example_attrs(),
    )
}

/// Builds `expr` with its out link in a directory of its own under
/// `dir`, so several results of one test each keep a GC root.
fn build_in(expr: &str, dir: &Path, sub: &str) -> (PathBuf, PathBuf) {
    let own = dir.join(sub);
    std::fs::create_dir_all(&own).unwrap();
    build(expr, &own)
}

/// Builds the stream launcher `expr` and loads its image, `reference`.
fn load_stream(expr: &str, dir: &Path, reference: &str) -> PodmanImage {
    let (store_path, _) = build_in(expr, dir, "image");
    podman_load_stream(&mut nix().run_in_tree(&store_path), reference)
}

/// `podman run --rm --network none [OPTIONS] IMAGE ARGS...`: its standard
/// output.
fn run_in(image: &PodmanImage, options: &[&str], args: &[&str]) -> String {
    stdout_of(
        podman()
            .args(["run", "--rm", "--network", "none"])
            .args(options)
            .arg(&image.0)
            .args(args),
    )
}

#[test]
fn bin_sh_runs_commands_with_the_library_bash() {
    let dir = tempdir();
    let image = load_stream(
        &expr(
            r#"s.streamLayeredImage { name = "stevedore-fn-binsh"; tag = "latest"; contents = [ s.binSh ]; }"#,
        ),
        dir.path(),
        "localhost/stevedore-fn-binsh:latest",
    );
    assert_eq!(run_in(&image, &[], &["/bin/sh", "-c", "echo ok"]), "ok\n");
}

#[test]
fn usr_bin_env_runs_scripts_with_an_env_shebang() {
    let dir = tempdir();
    let image = load_stream(
        &expr(
            r#"let greet = mk "greet" "$b mkdir -p $out/bin; $b printf '#!/usr/bin/env sh\necho greeted by $0\n' > $out/bin/greet; $b chmod 555 $out/bin/greet"; in
            s.streamLayeredImage { name = "stevedore-fn-env"; tag = "latest"; contents = [ s.usrBinEnv s.binSh greet ]; }"#,
        ),
        dir.path(),
        "localhost/stevedore-fn-env:latest",
    );
    // The kernel runs /usr/bin/env, which finds sh on PATH: binSh's.
    assert_eq!(
        run_in(&image, &[], &["/bin/greet"]),
        "greeted by /bin/greet\n"
    );
    let env = run_in(&image, &["--env", "FROM_TEST=1"], &["/usr/bin/env"]);
    assert!(env.lines().any(|l| l == "FROM_TEST=1"), "{env}");
}

#[test]
fn ca_certificates_holds_the_bundle_in_every_usual_place() {
    let dir = tempdir();
    let (_, cacert) = build_in(&expr("cacert"), dir.path(), "cacert");
    let bundle = std::fs::read_to_string(cacert.join("etc/ssl/certs/ca-bundle.crt")).unwrap();
    assert!(bundle.contains("BEGIN CERTIFICATE"), "{bundle}");
    let image = load_stream(
        &expr(
            r#"s.streamLayeredImage { name = "stevedore-fn-certs"; tag = "latest"; contents = [ s.caCertificates tools ]; }"#,
        ),
        dir.path(),
        "localhost/stevedore-fn-certs:latest",
    );
    for path in [
        "/etc/ssl/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        assert_eq!(run_in(&image, &[], &["cat", path]), bundle, "{path}");
    }
}

#[test]
fn fake_nss_names_root_nobody_and_the_users_an_override_adds() {
    let dir = tempdir();
    let image = load_stream(
        &expr(
            r#"s.streamLayeredImage {
              name = "stevedore-fn-nss"; tag = "latest";
              contents = [ tools (s.fakeNss.override {
                extraPasswdLines = [ "alice:x:1000:1000:Alice:/home/alice:/bin/sh" ];
                extraGroupLines = [ "alice:x:1000:" ];
              }) ];
            }"#,
        ),
        dir.path(),
        "localhost/stevedore-fn-nss:latest",
    );
    let id = |user: &str| run_in(&image, &["--user", user], &["id"]);
    assert!(
        id("0:0").starts_with("uid=0(root) gid=0(root)"),
        "{}",
        id("0:0")
    );
    assert!(
        id("65534:65534").starts_with("uid=65534(nobody) gid=65534(nobody)"),
        "{}",
        id("65534:65534")
    );
    assert!(
        id("1000:1000").starts_with("uid=1000(alice) gid=1000(alice)"),
        "{}",
        id("1000:1000")
    );
    assert_eq!(
        run_in(&image, &[], &["cat", "/etc/nsswitch.conf"]),
        "hosts: files dns\n"
    );
    assert_eq!(
        run_in(&image, &[], &["stat", "-c", "%F", "/var/empty"]),
        "directory\n"
    );
}

#[test]
fn fake_nss_override_refuses_what_is_not_a_list_of_lines() {
    evaluation_fails(
        r#"fakeNss.override { extraPasswdLines = "alice:x:1000:1000::/:/bin/sh"; }"#,
        &["fakeNss: extraPasswdLines must be a list of strings"],
    );
    evaluation_fails(
        "fakeNss.override { extraUsers = [ ]; }",
        &["fakeNss: unknown argument extraUsers"],
    );
}

#[test]
fn shadow_setup_gives_run_as_root_the_files_of_shadow_tools() {
    let dir = tempdir();
    let (_, archive) = build_in(
        &expr(
            r#"s.buildImage {
              name = "stevedore-fn-shadow"; tag = "latest";
              copyToRoot = [ tools ];
              runAsRoot = ''
                ${s.shadowSetup}
                passwd -d root
              '';
            }"#,
        ),
        dir.path(),
        "archive",
    );
    let image = podman_load(&archive, "localhost/stevedore-fn-shadow:latest");
    let passwd = run_in(&image, &[], &["cat", "/etc/passwd"]);
    assert!(
        passwd.starts_with("root:x:0:0::/root:/nix/store/") && passwd.ends_with("/bin/sh\n"),
        "{passwd}"
    );
    assert_eq!(run_in(&image, &[], &["cat", "/etc/group"]), "root:x:0:\n");
    assert_eq!(run_in(&image, &[], &["cat", "/etc/gshadow"]), "root:x::\n");
    // shadowSetup made root's locked entry, and the stand-in's passwd,
    // found first on PATH, emptied its password.
    let shadow = run_in(&image, &[], &["cat", "/etc/shadow"]);
    assert!(shadow.starts_with("root::"), "{shadow}");
    let pam = run_in(&image, &[], &["cat", "/etc/pam.d/other"]);
    assert!(pam.contains("auth sufficient pam_rootok.so\n"), "{pam}");
    assert_eq!(
        run_in(&image, &[], &["stat", "-c", "%s", "/etc/login.defs"]),
        "0\n"
    );
}

/// A derivation for the nix-shell images: a stdenv stand-in whose setup
/// puts the stand-in coreutils and the build inputs on PATH, a build
/// input, an attribute passed as a file, and a builder that writes
/// `$out/bin/hello`.
const SHELL_DRV: &str = r#"
  stdenv = mk "stdenv-standin" ''
    $b mkdir $out
    $b printf 'export PATH=%s/bin\nfor p in $nativeBuildInputs; do PATH=$PATH:$p/bin; done\n' ${tools} > $out/setup
  '';
  greeter = mk "greeter" "$b mkdir -p $out/bin; $b printf '#!${tools}/bin/sh\necho greeted by the build input\n' > $out/bin/greeter; $b chmod 555 $out/bin/greeter";
  drv = derivation {
    name = "shell-subject";
    system = sys;
    builder = "${tools}/bin/sh";
    args = [ "-c" "${tools}/bin/mkdir -p $out/bin && ${tools}/bin/printf '#!${tools}/bin/sh\\necho built by buildDerivation\\n' > $out/bin/hello && ${tools}/bin/chmod 555 $out/bin/hello" ];
    inherit stdenv;
    nativeBuildInputs = [ greeter ];
    greeting = "hello from the derivation";
    str = "this is a string";
    passAsFile = [ "str" ];
    flag = true;
  };
"#;

#[test]
fn nix_shell_image_has_the_build_environment_of_the_derivation() {
    let dir = tempdir();
    let image = load_stream(
        &expr(&format!(
            r#"let {SHELL_DRV} in s.streamNixShellImage {{
              inherit drv; name = "stevedore-fn-nix-shell"; tag = "latest";
              run = ''
                echo "greeting=$greeting"
                echo "str=$(cat "$strPath")"
                echo "flag=$flag"
                greeter
                echo "user=$(id -un):$(id -u):$(id -g)"
                echo "home=$HOME pwd=$(pwd)"
                [ "$HOME" = "$(eval echo ~$(whoami))" ] && echo "home is the user's"
                touch "$HOME/file" && echo "home is writable"
                touch /tmp/file && echo "tmp is writable"
                case "$-" in *i*) echo interactive ;; *) echo not interactive ;; esac
                buildDerivation && "$out/bin/hello"
              '';
            }}"#
        )),
        dir.path(),
        "localhost/stevedore-fn-nix-shell:latest",
    );
    let out = run_in(&image, &[], &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "greeting=hello from the derivation",
            "str=this is a string",
            "flag=1",
            "greeted by the build input",
            "user=nixbld:1000:1000",
            "home=/build pwd=/build",
            "home is the user's",
            "home is writable",
            "tmp is writable",
            "not interactive",
            "built by buildDerivation",
        ],
        "{out}"
    );
}

#[test]
fn build_nix_shell_image_command_runs_in_an_interactive_shell() {
    let dir = tempdir();
    let (store_path, archive) = build_in(
        &expr(&format!(
            r#"let {SHELL_DRV} in s.buildNixShellImage {{
              inherit drv; name = "stevedore-fn-nix-shell-command"; tag = "latest";
              compressor = "zstd";
              uid = 2000; gid = 3000; homeDirectory = "/homeless-shelter";
              command = ''
                case "$-" in *i*) echo This shell is interactive ;; *) echo This shell is not interactive ;; esac
                echo "user=$(id -u):$(id -g) home=$HOME"
                [ -e "$HOME" ] || echo "home does not exist"
              '';
            }}"#
        )),
        dir.path(),
        "archive",
    );
    assert!(
        store_path.to_string_lossy().ends_with("-shell-subject.tar"),
        "{store_path:?}"
    );
    let image = podman_load(&archive, "localhost/stevedore-fn-nix-shell-command:latest");
    // What the command printed comes last, after the banner busybox's
    // interactive shell prints.
    let out = run_in(&image, &[], &[]);
    assert!(
        out.ends_with(
            "\nThis shell is interactive\nuser=2000:3000 home=/homeless-shelter\nhome does not exist\n"
        ),
        "{out}"
    );
}

#[test]
fn nix_shell_image_runs_a_command_given_to_run_in_the_environment() {
    let dir = tempdir();
    let image = load_stream(
        &expr(&format!(
            r#"let {SHELL_DRV} in s.streamNixShellImage {{
              inherit drv; name = "stevedore-fn-nix-shell-override"; tag = "latest";
              includeBuildDerivation = false;
              extraContents = [ (mk "extra" "$b mkdir -p $out/share; $b printf 'extra file\n' > $out/share/extra") ];
            }}"#
        )),
        dir.path(),
        "localhost/stevedore-fn-nix-shell-override:latest",
    );
    // The command replaces the shell, not the entrypoint that sets up
    // the environment.
    let script = r#"echo "greeting=$greeting"; greeter; command -v buildDerivation || echo no buildDerivation; cat /share/extra"#;
    let out = run_in(&image, &[], &["/bin/sh", "-c", script]);
    assert_eq!(
        out,
        "greeting=hello from the derivation\ngreeted by the build input\nno buildDerivation\nextra file\n"
    );
}

#[test]
fn nix_shell_image_of_a_structured_derivation_names_its_attribute_files() {
    let dir = tempdir();
    let image = load_stream(
        &expr(
            r#"s.streamNixShellImage {
              name = "stevedore-fn-nix-shell-structured"; tag = "latest";
              drv = derivation {
                name = "structured"; system = sys; builder = "/bin/sh";
                __structuredAttrs = true;
                greeting = "it's here"; list = [ "a" "b" ]; nested = { x = { y = 1; }; };
              };
            }"#,
        ),
        dir.path(),
        "localhost/stevedore-fn-nix-shell-structured:latest",
    );
    // The stand-in shell cannot source `declare` lines, so the files the
    // environment names are read by binSh's shell, with builtins only.
    let read = r#"while IFS= read -r l || [ -n "$l" ]; do echo "$l"; done < "$NIX_ATTRS_JSON_FILE"; echo ---; while IFS= read -r l; do echo "$l"; done < "$NIX_ATTRS_SH_FILE""#;
    let out = run_in(&image, &[], &["/bin/sh", "-c", read]);
    let (json, sh) = out.split_once("---\n").expect(&out);
    let attrs: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(attrs["greeting"], "it's here", "{json}");
    assert_eq!(attrs["list"], serde_json::json!(["a", "b"]), "{json}");
    assert_eq!(attrs["nested"]["x"]["y"], 1, "{json}");
    let out_path = attrs["outputs"]["out"].as_str().expect(json);
    assert!(out_path.starts_with("/nix/store/") && out_path.ends_with("-structured"));
    let lines: Vec<&str> = sh.lines().collect();
    assert!(
        lines.contains(&r#"declare greeting='it'\''s here'"#),
        "{sh}"
    );
    assert!(lines.contains(&"declare -a list=('a' 'b' )"), "{sh}");
    assert!(
        lines.contains(&format!("declare -A outputs=(['out']='{out_path}' )").as_str()),
        "{sh}"
    );
    assert!(!sh.contains("nested"), "{sh}");
}

#[test]
fn nix_shell_images_refuse_bad_arguments_at_evaluation() {
    let drv = r#"derivation { name = "x"; system = "x"; builder = "/bin/sh"; }"#;
    evaluation_fails(
        &format!(r#"streamNixShellImage {{ drv = {drv}; command = "a"; run = "b"; }}"#),
        &["streamNixShellImage: give command or run, not both"],
    );
    evaluation_fails(
        r#"buildNixShellImage { drv = "hello"; }"#,
        &["buildNixShellImage: drv must be a derivation"],
    );
    evaluation_fails(
        &format!(r#"streamNixShellImage {{ drv = {drv}; includeBuildDerivation = "no"; }}"#),
        &["streamNixShellImage: includeBuildDerivation must be true or false"],
    );
    evaluation_fails(
        &format!(r#"buildNixShellImage {{ drv = {drv}; extraContents = "x"; }}"#),
        &["buildNixShellImage: extraContents must be a list"],
    );
    evaluation_fails(
        &format!("streamNixShellImage {{ drv = {drv}; }}"),
        &["streamNixShellImage: needs the library's bashInteractive argument"],
    );
}

#[test]
fn functions_name_the_package_argument_they_lack() {
    for (call, package) in [
        ("binSh", "bashInteractive"),
        ("usrBinEnv", "coreutils"),
        ("caCertificates", "cacert"),
        ("shadowSetup", "shadow"),
    ] {
        evaluation_fails(
            call,
            &[&format!("{call}: needs the library's {package} argument")],
        );
    }
}

/// `default.nix` as nixpkgs' callPackage calls it, with stand-ins: each
/// package a small store path of its own name.
fn default_nix(body: &str) -> String {
    let helper = nix().helper().display().to_string();
    format!(
        r#"let
  pkg = name: builtins.toFile name "";
  d = import {REPO}/default.nix {{
    lib.makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${{p}}/bin") ps);
    callPackage = _: _: {helper};
    stdenv.hostPlatform.system = builtins.currentSystem;
    runtimeShell = "/run/standin/sh";
    coreutils = pkg "coreutils"; findutils = pkg "findutils"; gnugrep = pkg "gnugrep"; gnused = pkg "gnused";
    bashInteractive = pkg "bashInteractive"; cacert = pkg "cacert"; shadow = pkg "shadow";
  }};
in {body}"#
    )
}

#[test]
fn default_nix_gives_the_library_the_packages_of_nixpkgs() {
    let dir = tempdir();
    let built: Vec<PathBuf> = ["binSh", "usrBinEnv", "caCertificates"]
        .iter()
        .map(|f| build_in(&default_nix(&format!("d.{f}")), dir.path(), f).1)
        .collect();
    let package = |name: &str| {
        stdout_of(
            nix()
                .command("nix-instantiate")
                .args(["--eval", "--json", "-E"])
                .arg(default_nix(&format!("pkg {name:?}"))),
        )
        .trim()
        .trim_matches('"')
        .to_owned()
    };
    let link = |i: usize, path: &str| {
        std::fs::read_link(built[i].join(path))
            .unwrap()
            .display()
            .to_string()
    };
    assert_eq!(
        link(0, "bin/sh"),
        format!("{}/bin/bash", package("bashInteractive"))
    );
    assert_eq!(
        link(1, "usr/bin/env"),
        format!("{}/bin/env", package("coreutils"))
    );
    assert_eq!(
        link(2, "etc/ssl/certs/ca-certificates.crt"),
        format!("{}/etc/ssl/certs/ca-bundle.crt", package("cacert"))
    );
    let setup = stdout_of(
        nix()
            .command("nix-instantiate")
            .args(["--eval", "--json", "-E"])
            .arg(default_nix("d.shadowSetup")),
    );
    let setup: String = serde_json::from_str(&setup).unwrap();
    assert!(
        setup.contains(&format!("export PATH={}/bin:$PATH", package("shadow"))),
        "{setup}"
    );
    // Root's shell is nixpkgs' runtimeShell, the library's shell.
    assert!(
        setup.contains("root:x:0:0::/root:/run/standin/sh"),
        "{setup}"
    );
}
