//! The arguments and behaviours of dockerTools' image builders that the
//! library takes with their dockerTools names and defaults: uppercase
//! names, `variant`, `keepContentsDirlinks` and the VM sizes, pullImage's
//! hash forms and platform (pulled from a registry's index), `override`
//! and dockerTools' passthru, a stream launcher's `--repo_tag`,
//! runAsRoot's PATH of coreutils, `enableFakechroot`, exportImage's `./`
//! names and buildImage's deprecated `contents`.
//!
//! Each is checked as a user would: the image loaded and run in podman,
//! its config read with skopeo, its tar listed with GNU tar, and the
//! evaluation's warnings and errors read from Nix. Like
//! [`crate::nix_library`], the module runs on the host's Nix and, with
//! `STEVEDORE_TEST_NIX=sandbox`, on Nix 2.34 with the sandbox on.

use std::process::Command;

use serde_json::Value;

use crate::support::nix::{build, build_fails, build_logged, expr, nix, nonce};
use crate::support::podman::{
    PodmanImage, podman, podman_load, podman_load_stream, podman_manifest_push, podman_run,
    run_in_podman_store,
};
use crate::support::process::{run, run_fail, stdout_of, tempdir};

/// `nix-instantiate --eval --strict --json` of `body` in [`expr`]'s scope
/// with the library's arguments `library_args`: the value and standard
/// error (where evaluation warnings go).
fn eval(library_args: &str, body: &str) -> (Value, String) {
    let out = run(nix()
        .command("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E"])
        .arg(expr(library_args, body)));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Evaluating `body` fails with `needle` in its message.
fn eval_fails(body: &str, needle: &str) {
    let err = run_fail(
        nix()
            .command("nix-instantiate")
            .args(["--eval", "--strict", "-E"])
            .arg(expr("", body)),
    );
    assert!(err.contains(needle), "{body}:\n{err}");
}

/// The config of a docker-archive, as `skopeo inspect --config` reads it.
fn skopeo_config(archive: &std::path::Path) -> Value {
    serde_json::from_str(&stdout_of(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", archive.display())),
    ))
    .unwrap()
}

/// Builds `body` (an image named `name`, tagged `latest`) with the
/// library's arguments `library_args`, loads it into podman and runs
/// `script` with its `/bin/sh`: the image and what the script printed.
fn run_in_built(
    library_args: &str,
    body: &str,
    dir: &std::path::Path,
    name: &str,
    script: &str,
) -> (std::path::PathBuf, String) {
    let (_, archive) = build(&expr(library_args, body), dir);
    let image = podman_load(&archive, &format!("localhost/{name}:latest"));
    let said = podman_run(&image, &["/bin/sh", "-c", script]);
    (archive, said)
}

/// The library's tools for scripts that run inside an image root: the
/// examples' busybox from the store, on either Nix.
const STORE_TOOLS: &str = r#"shell = "${ex.busybox}/bin/sh"; scriptPath = "${ex.busybox}/bin";"#;

#[test]
fn an_uppercase_name_is_lowercased_with_one_warning() {
    let nonce = nonce();
    let dir = tempdir();
    let body = format!(
        r#"s.buildLayeredImage {{ name = "Stevedore-Test-Upper-{nonce}"; tag = "latest"; contents = [ ex.busybox ]; }}"#
    );
    let (_, archive, log) = build_logged(&expr("", &body), dir.path());
    let lowered = format!("stevedore-test-upper-{nonce}");
    let warning =
        format!(r#"buildLayeredImage: name "Stevedore-Test-Upper-{nonce}" has uppercase letters"#);
    assert_eq!(log.matches(&warning).count(), 1, "{log}");
    assert!(log.contains(&format!(r#"use name = "{lowered}""#)), "{log}");
    let image = podman_load(&archive, &format!("localhost/{lowered}:latest"));
    assert_eq!(podman_run(&image, &["/bin/sh", "-c", "echo up"]), "up\n");
    // The result's name follows, with a registry host kept as it is.
    let (names, _) = eval(
        "",
        r#"[ (s.streamLayeredImage { name = "Localhost:5000/Team/App"; }).imageName
             (s.buildImage { name = "MyApp"; }).imageName ]"#,
    );
    assert_eq!(
        names,
        serde_json::json!(["Localhost:5000/team/app", "myapp"])
    );
}

#[test]
fn variant_goes_into_the_image_config_and_defaults_from_the_system() {
    let nonce = nonce();
    let dir = tempdir();
    for (i, function) in ["buildImage", "buildLayeredImage"].iter().enumerate() {
        let body = format!(
            r#"s.{function} {{ name = "stevedore-test-variant-{nonce}"; tag = "v"; architecture = "arm"; variant = "v7"; }}"#
        );
        let sub = dir.path().join(i.to_string());
        std::fs::create_dir(&sub).unwrap();
        let (_, archive) = build(&expr("", &body), &sub);
        let config = skopeo_config(&archive);
        assert_eq!(
            (&config["architecture"], &config["variant"]),
            (&Value::from("arm"), &Value::from("v7")),
            "{function}: {config}"
        );
    }
    // The stream's image too, as its launcher writes it.
    let body = format!(
        r#"s.streamLayeredImage {{ name = "stevedore-test-variant-{nonce}"; tag = "s"; variant = "v8"; architecture = "arm64"; }}"#
    );
    let (stream, _) = build(&expr("", &body), dir.path());
    let streamed = dir.path().join("streamed.tar");
    let out = nix().run_in_tree(&stream).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&streamed, &out.stdout).unwrap();
    assert_eq!(skopeo_config(&streamed)["variant"], "v8");

    // The default: the system's ARM version; none on x86_64, where the
    // image config has no variant at all.
    let variant_of = |system: &str| {
        eval(
            &format!(r#"system = "{system}";"#),
            r#"let i = s.streamLayeredImage { name = "v"; }; in i.stevedore.image.variant or null"#,
        )
        .0
    };
    assert_eq!(variant_of("armv7l-linux"), "v7");
    assert_eq!(variant_of("armv6l-linux"), "v6");
    assert_eq!(variant_of("aarch64-linux"), "v8");
    assert_eq!(variant_of("x86_64-linux"), Value::Null);
    let body = format!(r#"s.buildLayeredImage {{ name = "stevedore-test-novariant-{nonce}"; }}"#);
    let (_, archive) = build(&expr("", &body), dir.path());
    assert_eq!(
        skopeo_config(&archive).get("variant"),
        None,
        "an x86_64 image has no variant"
    );
    eval_fails(
        r#"(s.buildImage { name = "v"; variant = "V7"; }).drvPath"#,
        r#"buildImage: variant "V7" is not a platform variant"#,
    );
}

#[test]
fn keep_contents_dirlinks_keeps_a_symlink_to_a_directory_and_vm_sizes_change_nothing() {
    let nonce = nonce();
    let dir = tempdir();
    let linked = format!(
        r#"(derivation {{ name = "stevedore-dirlink-{nonce}"; system = builtins.currentSystem; builder = "${{ex.busybox}}/bin/sh"; args = [ "-c" "${{ex.busybox}}/bin/busybox mkdir -p $out/real && echo {nonce} > $out/real/file && ${{ex.busybox}}/bin/busybox ln -s real $out/link" ]; }})"#
    );
    let check = |keep: &str, want: &str| {
        let name = format!("stevedore-test-dirlinks-{want}-{nonce}");
        let body = format!(
            r#"s.buildImage {{ name = "{name}"; tag = "latest"; copyToRoot = [ ex.busybox {linked} ]; {keep} }}"#
        );
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let (_, said) = run_in_built(
            "",
            &body,
            sub.path(),
            &name,
            "if [ -L /link ]; then echo symlink; elif [ -d /link ]; then echo directory; fi; cat /link/file",
        );
        assert_eq!(said, format!("{want}\n{nonce}\n"), "{keep}");
    };
    // dockerTools' default copies it as a directory (rsync -k).
    check("", "directory");
    check("keepContentsDirlinks = true;", "symlink");

    // diskSize and buildVMMemorySize: accepted, checked, and no part of
    // the derivation.
    let (drvs, _) = eval(
        "",
        r#"[ (s.buildImage { name = "vm"; }).drvPath
             (s.buildImage { name = "vm"; diskSize = 4096; buildVMMemorySize = 2048; }).drvPath ]"#,
    );
    assert_eq!(drvs[0], drvs[1]);
    eval_fails(
        r#"(s.buildImage { name = "vm"; buildVMMemorySize = "big"; }).drvPath"#,
        r#"buildImage: buildVMMemorySize "big" must be a positive integer"#,
    );
}

#[test]
fn pull_image_takes_output_hash_and_picks_the_variant() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let sri = format!("sha256-{}=", "A".repeat(43));
    let pull = |system: &str, args: &str| {
        eval(
            &format!(r#"system = "{system}";"#),
            &format!(
                r#"let p = s.pullImage {{ imageName = "registry.example.com/app"; imageDigest = "{digest}"; {args} }}; in {{ inherit (p) outputHash; algo = p.outputHashAlgo or null; variant = p.stevedore.variant or null; arch = p.stevedore.arch; }}"#
            ),
        )
        .0
    };
    // outputHash with outputHashAlgo, as a fetcher's derivation takes
    // them; sha256 and hash as before.
    let v = pull(
        "x86_64-linux",
        r#"outputHash = "0000000000000000000000000000000000000000000000000000"; outputHashAlgo = "sha256";"#,
    );
    assert_eq!(
        (&v["outputHash"], &v["algo"], &v["variant"], &v["arch"]),
        (
            &Value::from("0000000000000000000000000000000000000000000000000000"),
            &Value::from("sha256"),
            &Value::Null,
            &Value::from("amd64")
        )
    );
    assert_eq!(
        pull("x86_64-linux", &format!(r#"outputHash = "{sri}";"#))["outputHash"],
        sri.as_str()
    );
    // 32-bit ARM picks its version from an index; arm64 any variant.
    let arm = pull("armv7l-linux", &format!(r#"hash = "{sri}";"#));
    assert_eq!(
        (&arm["arch"], &arm["variant"]),
        (&Value::from("arm"), &Value::from("v7"))
    );
    assert_eq!(
        pull("aarch64-linux", &format!(r#"hash = "{sri}";"#))["variant"],
        Value::Null
    );
    let given = pull(
        "x86_64-linux",
        &format!(r#"hash = "{sri}"; arch = "arm64"; variant = "v8";"#),
    );
    assert_eq!(given["variant"], "v8");

    eval_fails(
        &format!(
            r#"(s.pullImage {{ imageName = "a"; imageDigest = "{digest}"; hash = "{sri}"; outputHash = "{sri}"; }}).drvPath"#
        ),
        "pullImage: give one of hash, sha256 and outputHash, not several",
    );
    eval_fails(
        &format!(
            r#"(s.pullImage {{ imageName = "a"; imageDigest = "{digest}"; outputHashAlgo = "sha256"; }}).drvPath"#
        ),
        "pullImage: outputHashAlgo goes with outputHash",
    );
    eval_fails(
        &format!(
            r#"(s.pullImage {{ imageName = "a"; imageDigest = "{digest}"; hash = "{sri}"; os = "Linux"; }}).drvPath"#
        ),
        r#"pullImage: os "Linux" must be a platform name"#,
    );
}

#[test]
fn results_have_override_and_dockertools_passthru() {
    let nonce = nonce();
    let (v, _) = eval(
        "",
        r#"let
          i = s.buildImage { name = "o"; tag = "one"; };
          two = i.override { tag = "two"; };
          three = two.override (old: { tag = old.tag + "-three"; });
          st = s.streamLayeredImage { name = "o"; tag = "s"; passthru.mine = 1; };
          l = s.buildLayeredImage { name = "o"; tag = "l"; };
        in {
          tags = [ i.imageTag two.imageTag three.imageTag (l.override { tag = "l2"; }).imageTag (st.override { name = "p"; }).imageName ];
          buildArgs = three.buildArgs;
          layer = i.layer.name;
          exe = [ (st.isExe or false) (l.isExe or false) (i.isExe or false) ];
          streamScript = st.streamScript == (s.streamLayeredImage { name = "x"; }).streamScript;
          conf = st.conf.drvPath == st.drvPath;
          mine = st.mine;
          stream = l.stream.drvPath == (s.streamLayeredImage { name = "o"; tag = "l"; }).drvPath;
        }"#,
    );
    assert_eq!(
        v,
        serde_json::json!({
            "tags": ["one", "two", "two-three", "l2", "p"],
            "buildArgs": { "name": "o", "tag": "two-three" },
            "layer": "o-customisation-layer",
            "exe": [true, false, false],
            "streamScript": true,
            "conf": true,
            "mine": 1,
            "stream": true,
        })
    );
    // The overridden image is the image of the new arguments.
    let dir = tempdir();
    let name = format!("stevedore-test-override-{nonce}");
    let body = format!(
        r#"(s.buildLayeredImage {{ name = "{name}"; tag = "one"; contents = [ ex.busybox ]; }}).override (old: {{ tag = "two"; config.Cmd = [ "/bin/echo" "overridden" ]; }})"#
    );
    let (_, archive) = build(&expr("", &body), dir.path());
    let image = podman_load(&archive, &format!("localhost/{name}:two"));
    assert_eq!(podman_run(&image, &[]), "overridden\n");
}

#[test]
fn a_stream_launcher_takes_repo_tag() {
    let nonce = nonce();
    let dir = tempdir();
    let body = format!(
        r#"s.streamLayeredImage {{ name = "stevedore-test-stream-{nonce}"; tag = "built"; contents = [ ex.busybox ]; }}"#
    );
    let (launcher, _) = build(&expr("", &body), dir.path());
    for (flag, tag) in [("--repo_tag", "dev"), ("-t", "short")] {
        let reference = format!("localhost:5000/team/other-{nonce}:{tag}");
        let image = podman_load_stream(
            nix().run_in_tree(&launcher).args([flag, &reference]),
            &reference,
        );
        assert_eq!(
            podman_run(&image, &["/bin/sh", "-c", "echo tagged"]),
            "tagged\n"
        );
    }
    let out = nix()
        .run_in_tree(&launcher)
        .args(["--repo_tag", "Other:dev"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{stderr}");
    assert!(
        stderr.contains("--repo_tag: name \"Other\" has uppercase letters"),
        "{stderr}"
    );
}

#[test]
fn run_as_root_has_coreutils_on_path_in_an_image_without_them() {
    let nonce = nonce();
    let dir = tempdir();
    let name = format!("stevedore-test-redis-{nonce}");
    // nixpkgs' redis example: the image has no shell and no coreutils; the
    // script uses the library's.
    let library = format!(r#"{STORE_TOOLS} coreutils = ex.busybox;"#);
    let body = format!(
        r#"s.buildImage {{
          name = "{name}";
          tag = "latest";
          runAsRoot = ''
            mkdir -p /data
            echo {nonce} > /data/nonce
            cp /data/nonce /data/copy
            chown 1000:1000 /data /data/copy
            echo "$PATH" > /data/path
          '';
        }}"#
    );
    build(&expr(&library, &body), dir.path());
    // Read it as a user would: on a base with a shell.
    let viewer = format!(
        r#"s.buildImage {{ name = "{name}-view"; tag = "latest"; fromImage = {body}; copyToRoot = [ ex.busybox ]; }}"#
    );
    let (busybox, _) = eval("", r#""${ex.busybox}""#);
    let (_, said) = run_in_built(
        &library,
        &viewer,
        dir.path(),
        &format!("{name}-view"),
        "stat -c '%u:%g' /data /data/copy; cat /data/copy /data/path",
    );
    assert_eq!(
        said,
        format!(
            "1000:1000\n1000:1000\n{nonce}\n{}/bin:/bin\n",
            busybox.as_str().unwrap()
        )
    );
    // `set -e`: a failing command fails the build.
    let failing =
        format!(r#"s.buildImage {{ name = "{name}-fails"; runAsRoot = "false; mkdir /never"; }}"#);
    let err = build_fails(&expr(&library, &failing));
    assert!(err.contains("runAsRoot failed (exit status 1)"), "{err}");
}

#[test]
fn enable_fakechroot_runs_fake_root_commands_in_the_image_root() {
    let nonce = nonce();
    let dir = tempdir();
    let name = format!("stevedore-test-fakechroot-{nonce}");
    let body = format!(
        r#"let
          # Named by the commands only, not in contents.
          tool = derivation {{ name = "stevedore-tool-{nonce}"; system = builtins.currentSystem; builder = "${{ex.busybox}}/bin/sh"; args = [ "-c" "${{ex.busybox}}/bin/busybox mkdir -p $out/bin && printf '#!${{ex.busybox}}/bin/sh\necho tool {nonce}\n' > $out/bin/tool && ${{ex.busybox}}/bin/busybox chmod +x $out/bin/tool" ]; }};
        in s.buildLayeredImage {{
          name = "{name}";
          tag = "latest";
          contents = [ ex.busybox ];
          enableFakechroot = true;
          fakeRootCommands = ''
            mkdir -p /var/lib/app
            chown 1000:1000 /var/lib/app
            echo {nonce} > /var/lib/app/nonce
            test -x /bin/sh && pwd > /var/lib/app/pwd
            test -d ${{ex.busybox}}/bin && echo store > /var/lib/app/store
            ${{tool}}/bin/tool > /var/lib/app/tool
          '';
        }}"#
    );
    let (archive, said) = run_in_built(
        STORE_TOOLS,
        &body,
        dir.path(),
        &name,
        "stat -c %u:%g /var/lib/app; cat /var/lib/app/nonce /var/lib/app/pwd /var/lib/app/store /var/lib/app/tool; ls -a / | grep -c stevedore || true",
    );
    assert_eq!(
        said,
        format!("1000:1000\n{nonce}\n/\nstore\ntool {nonce}\n0\n")
    );
    // No mountpoint of the chroot reaches the customisation layer.
    let layers = crate::support::docker_archive::archive_layers(&archive);
    let top = layers.last().unwrap();
    assert!(
        !top.entries
            .iter()
            .any(|e| e.starts_with("nix/") || e.contains("stevedore-")),
        "{:#?}",
        top.entries
    );
    eval_fails(
        r#"(s.buildImage { name = "f"; enableFakechroot = true; }).drvPath"#,
        "buildImage: enableFakechroot is not an argument of buildImage",
    );
}

#[test]
fn export_image_names_entries_as_dockertools_does() {
    let dir = tempdir();
    let (_, tar) = build(
        &expr("", "s.exportImage { fromImage = ex.layered; }"),
        dir.path(),
    );
    let listed = stdout_of(Command::new("tar").arg("-tf").arg(&tar));
    let names: Vec<&str> = listed.lines().collect();
    assert_eq!(names.first(), Some(&"./"), "{listed}");
    assert!(names.iter().all(|n| n.starts_with("./")), "{listed}");
    assert!(names.contains(&"./nix/store/"), "{listed}");
    // podman imports it as a root file system.
    let reference = format!("localhost/stevedore-test-export-{}:latest", nonce());
    run_in_podman_store(podman().arg("import").arg(&tar).arg(&reference));
    let image = PodmanImage(reference.clone());
    let (shell, _) = eval("", r#""${ex.busybox}/bin/sh""#);
    assert_eq!(
        podman_run(&image, &[shell.as_str().unwrap(), "-c", "echo imported"]),
        "imported\n"
    );
}

#[test]
fn build_image_contents_is_deprecated_with_a_warning_and_still_works() {
    let (drvs, log) = eval(
        "",
        r#"[ (s.buildImage { name = "c"; contents = [ ex.busybox ]; }).drvPath
             (s.buildImage { name = "c"; copyToRoot = [ ex.busybox ]; }).drvPath ]"#,
    );
    assert_eq!(drvs[0], drvs[1], "contents is copyToRoot");
    assert_eq!(
        log.matches(r#"buildImage: in image "c", contents is deprecated; use copyToRoot"#)
            .count(),
        1,
        "{log}"
    );
    let (_, quiet) = eval(
        "",
        r#"[ (s.buildImage { name = "c"; copyToRoot = [ ex.busybox ]; }).drvPath
             (s.buildLayeredImage { name = "c"; contents = [ ex.busybox ]; }).drvPath ]"#,
    );
    assert!(!quiet.contains("deprecated"), "{quiet}");
    eval_fails(
        r#"(s.buildImage { name = "c"; contents = [ ex.busybox ]; copyToRoot = [ ex.busybox ]; }).drvPath"#,
        "give either contents or copyToRoot, not both",
    );
}

#[test]
fn pull_image_takes_the_variant_it_is_given_from_an_index() {
    use crate::support::registry::{Registry, push};
    let nonce = nonce();
    let dir = tempdir();
    let reg = Registry::start();
    let list = PodmanImage(format!("localhost/stevedore-test-variants-{nonce}:list"));
    run_in_podman_store(podman().args(["manifest", "create", &list.0]));
    for variant in ["v6", "v7"] {
        let body = format!(
            r#"s.buildLayeredImage {{ name = "stevedore-test-variant-{variant}-{nonce}"; tag = "t"; architecture = "arm"; variant = "{variant}"; config.Labels.built = "{variant}"; }}"#
        );
        let sub = dir.path().join(variant);
        std::fs::create_dir(&sub).unwrap();
        let (_, archive) = build(&expr("", &body), &sub);
        let reference = reg.reference("variants/app", variant);
        push(&reg, &archive, &reference, &[]);
        run_in_podman_store(podman().args([
            "manifest",
            "add",
            "--tls-verify=false",
            "--arch",
            "arm",
            "--variant",
            variant,
            &list.0,
            &reference,
        ]));
    }
    let index = reg.reference("variants/app", "multi");
    podman_manifest_push(&list, &index);
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&index))
    .stdout;
    let digest = crate::support::digest::sha256(&raw);
    let name = format!("stevedore-test-pulled-{nonce}");
    let pull = |hash: &str| {
        expr(
            "",
            &format!(
                r#"s.pullImage {{ imageName = "{}/variants/app"; imageDigest = "{digest}"; outputHash = "{hash}"; outputHashAlgo = "sha256"; arch = "arm"; variant = "v7"; finalImageName = "{name}"; finalImageTag = "pinned"; tlsVerify = false; }}"#,
                reg.host()
            ),
        )
    };
    // The first build gives the hash, as a user takes it.
    let mismatch = build_fails(&pull(&format!("sha256-{}=", "A".repeat(43))));
    let got = mismatch
        .split_whitespace()
        .skip_while(|w| *w != "got:")
        .nth(1)
        .unwrap_or_else(|| panic!("no hash in:\n{mismatch}"))
        .to_owned();
    let (_, archive) = build(&pull(&got), dir.path());
    let config = skopeo_config(&archive);
    assert_eq!(
        (&config["variant"], &config["config"]["Labels"]["built"]),
        (&Value::from("v7"), &Value::from("v7")),
        "{config}"
    );
    podman_load(&archive, &format!("localhost/{name}:pinned"));
}

#[test]
fn write_image_stream_writes_a_streams_image_as_build_layered_image_does() {
    let nonce = nonce();
    let dir = tempdir();
    let name = format!("stevedore-test-write-stream-{nonce}");
    let args = format!(
        r#"{{ name = "{name}"; tag = "one"; contents = [ ex.busybox ]; config.Cmd = [ "/bin/echo" "first" ]; }}"#
    );
    // The stream overridden, as writeImageStream exists for.
    let body = format!(
        r#"s.writeImageStream {{
          name = "written";
          stream = (s.streamLayeredImage {args}).override (old: {{ tag = "two"; config.Cmd = [ "/bin/echo" "written {nonce}" ]; }});
        }}"#
    );
    let (store_path, archive) = build(&expr("", &body), dir.path());
    assert!(
        store_path.to_string_lossy().ends_with("-written.tar"),
        "{store_path:?}"
    );
    // The same bytes as buildLayeredImage's archive of those arguments:
    // layers compressed with gzip, the default.
    let same = format!(
        r#"(s.buildLayeredImage {args}).override {{ tag = "two"; config.Cmd = [ "/bin/echo" "written {nonce}" ]; }}"#
    );
    let sub = dir.path().join("layered");
    std::fs::create_dir(&sub).unwrap();
    let (_, layered) = build(&expr("", &same), &sub);
    assert!(
        std::fs::read(&archive).unwrap() == std::fs::read(&layered).unwrap(),
        "writeImageStream and buildLayeredImage differ"
    );
    let manifest: Value = serde_json::from_str(&stdout_of(
        Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json"),
    ))
    .unwrap();
    let first_layer = manifest[0]["Layers"][0].as_str().unwrap().to_owned();
    let bytes = run(Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg(&first_layer))
    .stdout;
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{first_layer} is not gzip");
    let image = podman_load(&archive, &format!("localhost/{name}:two"));
    assert_eq!(podman_run(&image, &[]), format!("written {nonce}\n"));
    // dockerTools' result attributes, and its argument errors.
    let (v, _) = eval(
        "",
        r#"let
          st = s.streamLayeredImage { name = "w"; tag = "t"; };
          w = s.writeImageStream { name = "dir/w"; stream = st; compressor = "zstd"; meta.description = "d"; };
        in [ w.imageName w.imageTag w.meta.description (w.stream.drvPath == st.drvPath) w.name ]"#,
    );
    assert_eq!(v, serde_json::json!(["w", "t", "d", true, "w.tar"]));
    eval_fails(
        r#"(s.writeImageStream { name = "w"; stream = s.streamLayeredImage { name = "w"; }; compressor = "xz"; }).drvPath"#,
        r#"writeImageStream: compressor "xz" is unknown"#,
    );
    eval_fails(
        r#"(s.writeImageStream { name = "w"; stream = ex.busybox; }).drvPath"#,
        "writeImageStream: stream must be a stream launcher",
    );
}

#[test]
fn shell_script_runs_its_text_with_set_e_and_coreutils_on_path() {
    let nonce = nonce();
    let dir = tempdir();
    let library = format!(r#"{STORE_TOOLS} coreutils = ex.busybox;"#);
    let body = format!(
        r#"s.shellScript "greet-{nonce}" ''
          echo "$PATH"
          basename /a/{nonce}
          false
          echo never
        ''"#
    );
    let (store_path, script) = build(&expr(&library, &body), dir.path());
    assert!(
        store_path
            .to_string_lossy()
            .ends_with(&format!("-greet-{nonce}")),
        "{store_path:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&script).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o555, "{mode:o}");
    let (busybox, _) = eval("", r#""${ex.busybox}""#);
    let busybox = busybox.as_str().unwrap();
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.starts_with(&format!(
            "#!{busybox}/bin/sh\nset -e\nexport PATH={busybox}/bin:/bin\n"
        )),
        "{text}"
    );
    // `set -e`: it stops at `false`, failing.
    let out = nix().run_in_tree(&store_path).output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{busybox}/bin:/bin\n{nonce}\n")
    );
    eval_fails(
        r#"(s.shellScript "x" "true").drvPath"#,
        "shellScript: needs the library's coreutils argument",
    );
}

#[test]
fn config_null_is_an_empty_config() {
    let (v, _) = eval(
        "",
        r#"let
          same = f: (f { name = "c"; config = null; }).drvPath == (f { name = "c"; }).drvPath
            && (f { name = "c"; config = { }; }).drvPath == (f { name = "c"; }).drvPath;
        in map same [ s.buildImage s.buildLayeredImage s.streamLayeredImage s.buildImageWithNixDb s.buildLayeredImageWithNixDb ]"#,
    );
    assert_eq!(v, serde_json::json!([true, true, true, true, true]));
    // It still builds: an image with no Cmd.
    let dir = tempdir();
    let (_, archive) = build(
        &expr(
            "",
            r#"s.buildImage { name = "stevedore-test-config-null"; tag = "latest"; config = null; copyToRoot = [ ex.busybox ]; }"#,
        ),
        dir.path(),
    );
    let config = skopeo_config(&archive);
    assert!(config["config"].get("Cmd").is_none(), "{config}");
}

#[test]
fn mtime_now_gives_the_files_the_build_time() {
    let nonce = nonce();
    let dir = tempdir();
    let name = format!("stevedore-test-mtime-now-{nonce}");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = format!(
        r#"s.buildLayeredImage {{ name = "{name}"; tag = "latest"; contents = [ ex.busybox ]; mtime = "now"; extraCommands = "echo {nonce} > made"; }}"#
    );
    let (_, archive) = build(&expr("", &body), dir.path());
    let image = podman_load(&archive, &format!("localhost/{name}:latest"));
    let said = podman_run(&image, &["/bin/sh", "-c", "stat -c %Y /made /bin"]);
    let times: Vec<u64> = said.lines().map(|l| l.parse().unwrap()).collect();
    let after = before + 600;
    assert!(
        times.iter().all(|t| (before - 5..after).contains(t)),
        "{times:?} not between {before} and {after}"
    );
    // The image's creation time stays fixed.
    assert_eq!(skopeo_config(&archive)["created"], "1970-01-01T00:00:01Z");
    eval_fails(
        r#"(s.streamLayeredImage { name = "m"; mtime = "yesterday"; }).drvPath"#,
        r#"streamLayeredImage: mtime "yesterday" is not a date; use an RFC 3339 time such as "1970-01-01T00:00:01Z" or "now""#,
    );
}

#[test]
fn export_image_takes_its_name_as_given_and_any_tag_by_default() {
    let nonce = nonce();
    let dir = tempdir();
    let (names, _) = eval(
        "",
        r#"let l = s.buildLayeredImage { name = "hello"; }; in [
          (s.exportImage { name = "filesystem.tar"; fromImage = l; }).name
          (s.exportImage { fromImage = l; }).name
          (s.exportImage { fromImage = s.mergeImages [ l ]; }).name
          (s.exportImage { fromImage = s.streamLayeredImage { name = "hello"; }; }).name
        ]"#,
    );
    assert_eq!(
        names,
        serde_json::json!([
            "filesystem.tar",
            "hello.tar",
            "merge-docker-images",
            "hello.tar"
        ])
    );
    // fromImageName without fromImageTag: the image of that name, whatever
    // its tag.
    let body = format!(
        r#"s.exportImage {{
          fromImage = s.buildImage {{ name = "b"; tag = "t"; extraCommands = "echo {nonce} > marker"; }};
          fromImageName = "b";
        }}"#
    );
    let (_, tar) = build(&expr("", &body), dir.path());
    let marker = stdout_of(Command::new("tar").arg("-xOf").arg(&tar).arg("./marker"));
    assert_eq!(marker, format!("{nonce}\n"));
}

#[test]
fn pull_image_has_dockertools_source_url_and_dest_name_tag() {
    let (v, _) = eval(
        "",
        r#"let
          digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
          p = s.pullImage { imageName = "nixos/nix"; imageDigest = digest; finalImageTag = "2.8"; hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };
          q = s.pullImage { imageName = "registry.example.com/a/b"; imageDigest = digest; finalImageName = "b"; hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };
        in [ p.sourceURL p.destNameTag q.sourceURL q.destNameTag (p.drvAttrs ? sourceURL) (p.drvAttrs ? destNameTag) ]"#,
    );
    let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(
        v,
        serde_json::json!([
            format!("docker://nixos/nix@{digest}"),
            "nixos/nix:2.8",
            format!("docker://registry.example.com/a/b@{digest}"),
            "b:latest",
            false,
            false
        ])
    );
}

#[test]
fn the_default_architecture_is_gos_name_for_the_cpu() {
    for (system, arch) in [
        ("x86_64-linux", "amd64"),
        ("aarch64-linux", "arm64"),
        ("loongarch64-linux", "loong64"),
        ("mips64el-linux", "mips64le"),
        ("mipsel-linux", "mipsle"),
        ("powerpc64-linux", "ppc64"),
        ("powerpc64le-linux", "ppc64le"),
        ("riscv64-linux", "riscv64"),
        ("s390x-linux", "s390x"),
        ("mips-linux", "mips"),
    ] {
        let helper = nix().helper().display().to_string();
        let (v, _) = eval(
            "",
            &format!(
                r#"let t = import {root}/nix {{ helper = {helper}; system = "{system}"; }}; in [
                  (t.streamLayeredImage {{ name = "a"; }}).drvAttrs.stevedore.image.architecture
                  (t.pullImage {{ imageName = "a"; imageDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"; hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; }}).drvAttrs.stevedore.arch
                ]"#,
                root = env!("CARGO_MANIFEST_DIR"),
            ),
        );
        assert_eq!(v, serde_json::json!([arch, arch]), "{system}");
    }
}

#[test]
fn nix_shell_images_have_override() {
    let (v, _) = eval(
        r#"bashInteractive = ex.busybox; coreutils = ex.busybox; cacert = ex.busybox;"#,
        r#"let
          st = s.streamNixShellImage { drv = ex.busybox; tag = "one"; };
          two = st.override { tag = "two"; };
          b = s.buildNixShellImage { drv = ex.busybox; tag = "one"; };
          w = s.writeImageStream { name = "n"; stream = st.override (old: { tag = old.tag + "-w"; }); };
        in [
          two.imageTag
          (two.drvPath == (s.streamNixShellImage { drv = ex.busybox; tag = "two"; }).drvPath)
          (b.override { compressor = "zstd"; tag = "z"; }).imageTag
          ((b.override { tag = "z"; }).drvPath == (s.buildNixShellImage { drv = ex.busybox; tag = "z"; }).drvPath)
          w.imageTag
        ]"#,
    );
    assert_eq!(v, serde_json::json!(["two", true, "z", true, "one-w"]));
}
