//! What the Nix library must do on every Nix from 2.8 on, with the sandbox
//! on or off (issue 10): fakeRootCommands with no fakeroot program and a
//! daemon left behind, a shell given as a path inside a store path,
//! archives that keep no references, derivation files in `contents` on a
//! fresh store, and errors that name a shell or PATH that cannot run.
//!
//! `scripts/test.sh` runs this module twice: on the host's Nix 2.8 and,
//! with `STEVEDORE_TEST_NIX=sandbox`, on Nix 2.34 with the sandbox on
//! ([`crate::support::nix::Nix`]). Expressions that must build fresh carry a
//! nonce, so no earlier result is reused.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::docker_archive::{archive_layers, store_paths_in};
use crate::support::nix::{build, build_fails, expr, nix, nonce};
use crate::support::podman::{podman_load, podman_run};
use crate::support::process::{run, tempdir};

/// `nix-store -qR PATH` of this Nix.
fn closure_of(path: &Path) -> BTreeSet<String> {
    String::from_utf8(run(nix().command("nix-store").arg("-qR").arg(path)).stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether no process's command line holds `marker`.
fn no_process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().all(|entry| {
        let Ok(entry) = entry else { return true };
        match std::fs::read(entry.path().join("cmdline")) {
            Ok(cmdline) => !String::from_utf8_lossy(&cmdline).contains(marker),
            Err(_) => true,
        }
    })
}

#[test]
fn fake_root_commands_set_owners_with_no_fakeroot_and_a_daemon_left_behind_ends() {
    let nonce = nonce();
    let marker = format!("stevedore-daemon-{nonce}");
    // A daemon that double-forks, holds the build's output and would run
    // for an hour; a plain background job; and writes through a symlink
    // into the store, which must not reach the store.
    let body = format!(
        r#"let
          victim = derivation {{
            name = "stevedore-victim-{nonce}";
            system = builtins.currentSystem;
            builder = "${{ex.busybox}}/bin/sh";
            args = [ "-c" "mkdir $out && echo {nonce} > $out/file" ];
          }};
        in s.buildLayeredImage {{
          name = "stevedore-test-fake-root-{nonce}";
          tag = "latest";
          contents = [ ex.busybox victim ];
          fakeRootCommands = ''
            mkdir -p data/private
            echo {nonce} > data/nonce
            chown 1000:1000 data data/nonce
            chown 2000:3000 data/private
            chmod 700 data/private
            if chmod 666 file 2>/dev/null; then echo changed; else echo refused; fi > data/store-chmod
            chown 1000:1000 file 2>/dev/null || true
            (sh -c 'sleep 3600; : {marker}' &)
            sleep 3600 &
          '';
          passthru.victim = victim;
        }}"#
    );
    let dir = tempdir();
    let (_, archive) = build(&expr("", &body), dir.path());
    assert!(
        no_process_with(&marker),
        "the daemon fakeRootCommands left is still running"
    );
    let victim = String::from_utf8(
        run(nix()
            .command("nix-instantiate")
            .args(["--eval", "-E"])
            .arg(expr("", &format!("({body}).victim.outPath"))))
        .stdout,
    )
    .unwrap();
    let victim_file = nix().host_path(&Path::new(victim.trim().trim_matches('"')).join("file"));
    let md = std::fs::metadata(&victim_file).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o444, 0, 0),
        "{} was changed through the tree",
        victim_file.display()
    );
    let image = podman_load(
        &archive,
        &format!("localhost/stevedore-test-fake-root-{nonce}:latest"),
    );
    assert_eq!(
        podman_run(
            &image,
            &[
                "/bin/sh",
                "-c",
                "stat -c '%n %u:%g %a' /data /data/nonce /data/private; cat /data/store-chmod"
            ]
        ),
        "/data 1000:1000 755\n/data/nonce 1000:1000 644\n/data/private 2000:3000 700\nrefused\n"
    );
}

#[test]
fn run_as_root_and_extra_commands_take_a_shell_inside_a_store_path() {
    let nonce = nonce();
    // The shell as "${drv}/bin/sh", which is what pkgs.runtimeShell is.
    let tools = r#"shell = "${ex.busybox}/bin/sh"; scriptPath = "${ex.busybox}/bin";"#;
    let body = format!(
        r#"s.buildImage {{
          name = "stevedore-test-store-shell-{nonce}";
          tag = "latest";
          contents = [ ex.busybox ];
          runAsRoot = ''
            mkdir -p /data
            echo {nonce} > /data/nonce
            chown 1000:1000 /data
          '';
          extraCommands = "mkdir -p etc && echo extra > etc/note";
        }}"#
    );
    let dir = tempdir();
    let (_, archive) = build(&expr(tools, &body), dir.path());
    let image = podman_load(
        &archive,
        &format!("localhost/stevedore-test-store-shell-{nonce}:latest"),
    );
    assert_eq!(
        podman_run(
            &image,
            &[
                "/bin/sh",
                "-c",
                "stat -c %u:%g /data; cat /data/nonce /etc/note"
            ]
        ),
        format!("1000:1000\n{nonce}\nextra\n")
    );
}

#[test]
fn archives_keep_no_references_and_launchers_keep_theirs() {
    let dir = tempdir();
    let results = [
        ("buildLayeredImage", "ex.layered"),
        ("buildImage", "ex.imageOnBase"),
        ("mergeImages", "s.mergeImages [ ex.layered ex.twoLayers ]"),
        ("exportImage", "s.exportImage { fromImage = ex.layered; }"),
    ];
    for (i, (function, body)) in results.iter().enumerate() {
        let sub = dir.path().join(i.to_string());
        std::fs::create_dir(&sub).unwrap();
        let (store_path, _) = build(&expr("", body), &sub);
        let closure = closure_of(&store_path);
        if nix().sandboxed() {
            // Nix 2.16 and later honour unsafeDiscardReferences.
            assert_eq!(
                closure,
                BTreeSet::from([store_path.display().to_string()]),
                "nix-store -qR of the {function} result"
            );
        } else {
            // Nix 2.8 ignores it: the archive refers to what its config
            // and history name.
            assert!(
                closure.contains(&store_path.display().to_string()),
                "{closure:#?}"
            );
        }
    }
    // A launcher reads the store when it runs, and keeps its references.
    let (stream, _) = build(&expr("", "ex.hello"), dir.path());
    let busybox = build(&expr("", "ex.busybox"), &dir.path().join("0")).0;
    assert!(
        closure_of(&stream).contains(&busybox.display().to_string()),
        "the launcher's closure lacks busybox"
    );
}

#[test]
fn a_derivation_file_in_contents_needs_its_outputs() {
    let nonce = nonce();
    // A derivation no earlier build made: its outputs are not in the
    // store until this image needs them.
    let drv = format!(
        r#"(derivation {{ name = "stevedore-fresh-{nonce}"; system = builtins.currentSystem; builder = "${{ex.busybox}}/bin/sh"; args = [ "-c" "echo {nonce} > $out" ]; }})"#
    );
    // Without its outputs: refused at evaluation, with the fix.
    let refused = expr(
        "",
        &format!(
            r#"s.buildLayeredImage {{ name = "fresh"; contents = [ (builtins.unsafeDiscardOutputDependency {drv}.drvPath) ]; }}"#
        ),
    );
    let out = nix()
        .command("nix-instantiate")
        .arg("-E")
        .arg(&refused)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{refused} instantiated");
    assert!(
        stderr.contains("buildLayeredImage: contents /nix/store/")
            && stderr.contains(&format!(
                "-stevedore-fresh-{nonce}.drv is a derivation file without its outputs"
            ))
            && stderr.contains("give drv.drvPath itself"),
        "{stderr}"
    );

    // With them (drv.drvPath as it is): it builds, and the image holds
    // the derivation file and its output.
    let dir = tempdir();
    let body = format!(
        r#"s.buildLayeredImage {{ name = "stevedore-test-fresh-{nonce}"; tag = "latest"; contents = [ {drv}.drvPath ]; }}"#
    );
    let (_, archive) = build(&expr("", &body), dir.path());
    let in_layers: BTreeSet<String> = archive_layers(&archive)
        .iter()
        .flat_map(store_paths_in)
        .collect();
    let suffix = format!("-stevedore-fresh-{nonce}");
    assert!(
        in_layers
            .iter()
            .any(|p| p.ends_with(&format!("{suffix}.drv")))
            && in_layers.iter().any(|p| p.ends_with(&suffix)),
        "{in_layers:#?}"
    );
}

#[test]
fn a_shell_or_path_that_cannot_run_is_named() {
    let nonce = nonce();
    let body = |what: &str| {
        format!(
            r#"s.buildLayeredImage {{ name = "stevedore-test-bad-tools-{nonce}"; {what} = "mkdir -p srv; stevedore-test-tool"; }}"#
        )
    };
    let no_shell = build_fails(&expr(
        r#"shell = "/nonexistent/sh"; scriptPath = "/nonexistent";"#,
        &body("extraCommands"),
    ));
    assert!(
        no_shell.contains("extraCommands: the shell /nonexistent/sh cannot be run here")
            && no_shell.contains("import the library with a shell from the store"),
        "{no_shell}"
    );
    for what in ["extraCommands", "fakeRootCommands"] {
        let shell = if nix().sandboxed() {
            r#"shell = "${ex.busybox}/bin/sh";"#
        } else {
            ""
        };
        let no_path = build_fails(&expr(
            &format!(r#"{shell} scriptPath = "/nonexistent-{nonce}";"#),
            &body(what),
        ));
        assert!(
            no_path.contains(&format!("{what} ran a command that was not found"))
                && no_path.contains(&format!("/nonexistent-{nonce} is not here"))
                && no_path.contains("scriptPath"),
            "{no_path}"
        );
    }
}

#[test]
fn every_example_builds_and_run_as_root_gives_its_owners() {
    // `nix-build examples`: every attribute, the Nix-database and
    // runAsRoot images among them.
    let examples = crate::support::nix::example_build_cmd(&[])
        .arg("--no-out-link")
        .output()
        .unwrap();
    assert!(
        examples.status.success(),
        "nix-build examples:\n{}",
        String::from_utf8_lossy(&examples.stderr)
    );
    let built = String::from_utf8(examples.stdout).unwrap();
    assert!(built.lines().count() >= 20, "{built}");

    let run_as_root = crate::support::nix::build_example("runAsRoot");
    let image = podman_load(
        &run_as_root.path,
        "localhost/stevedore-example-run-as-root:latest",
    );
    assert_eq!(
        podman_run(
            &image,
            &[
                "/bin/sh",
                "-c",
                "stat -c '%U:%G %u:%g' /data /home/alice; cat /srv/extra; ls /srv"
            ]
        ),
        "alice:alice 1000:1000\nalice:alice 1000:1000\nmade by extraCommands\nextra\nkept\n"
    );
}
