//! `buildImage` with `runAsRoot`: the script runs as root in a user
//! namespace, chrooted into the image root, and what it changes is the
//! customisation layer. The `runAsRoot` example is built with Nix, loaded
//! into podman and checked as its user would; the layer's whiteouts are
//! read from the archive; the derivations are rebuilt with `--check`; and
//! the helper's job is also run directly as an unprivileged user under
//! `no_new_privs`, as a Nix build user runs it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::docker_archive::archive_layers;
use crate::support::nix::{
    REPO, build_example, evaluation_fails, example_build_cmd, realise_check,
};
use crate::support::podman::{podman_load, podman_run};
use crate::support::process::{HELPER, run, tempdir};
use crate::support::spec::{build, spec, write_spec};
use crate::support::store::{busybox_store_path, nix_add};

#[test]
fn run_as_root_makes_a_user_who_owns_a_directory_and_deletes_base_files() {
    let built = build_example("runAsRoot");
    let image = podman_load(
        &built.path,
        "localhost/stevedore-example-run-as-root:latest",
    );
    let said = podman_run(
        &image,
        &[
            "/bin/sh",
            "-c",
            "id alice; stat -c %U:%G /data /home/alice; ls /srv; cat /srv/extra; \
             test -e /bin/wc && echo wc is there || echo wc is gone",
        ],
    );
    assert_eq!(
        said,
        "uid=1000(alice) gid=1000(alice) groups=1000(alice)\n\
         alice:alice\n\
         alice:alice\n\
         extra\n\
         kept\n\
         made by extraCommands\n\
         wc is gone\n"
    );
}

#[test]
fn run_as_root_layer_has_whiteouts_for_files_of_the_base() {
    let built = build_example("runAsRoot");
    let layers = archive_layers(&built.path);
    let (top, lower) = layers.split_last().unwrap();
    let lower_has = |path: &str| lower.iter().any(|l| l.entries.iter().any(|e| e == path));
    // The files it deletes are in a lower layer (the base's), and the top
    // layer hides them with whiteouts.
    assert!(lower_has("srv/obsolete"), "no srv/obsolete below");
    assert!(lower_has("bin/wc"), "no bin/wc below");
    let top_has = |path: &str| top.entries.iter().any(|e| e.trim_end_matches('/') == path);
    for path in [
        "srv/.wh.obsolete",
        "bin/.wh.wc",
        "etc/passwd",
        "data",
        "srv/extra",
    ] {
        assert!(
            top_has(path),
            "{path} is not in the top layer: {:?}",
            top.entries
        );
    }
    // Untouched base files, and contents that the base has the same, are
    // not written again.
    for path in ["srv/kept", "bin/sh", "srv/obsolete", "bin/wc"] {
        assert!(
            !top_has(path),
            "{path} is in the top layer: {:?}",
            top.entries
        );
    }
}

#[test]
fn run_as_root_rebuilds_to_the_same_bytes() {
    let built = build_example("runAsRoot");
    let drv = String::from_utf8(
        run(Command::new("nix-instantiate")
            .args(["-A", "runAsRoot", "--arg", "helper", HELPER])
            .arg(Path::new(REPO).join("examples")))
        .stdout,
    )
    .unwrap();
    let drv = drv.trim();
    let refs =
        String::from_utf8(run(Command::new("nix-store").args(["-q", "--references", drv])).stdout)
            .unwrap();
    let layer = refs
        .lines()
        .find(|r| r.ends_with("-run-as-root-customisation-layer.drv"))
        .unwrap_or_else(|| panic!("no customisation layer among\n{refs}"));
    realise_check(&[layer, drv]);
    assert!(built.path.exists());
}

/// What the helper, which is not a Nix-built program, needs from the
/// host inside the sandbox: its C library, and `/bin/sh` for the probe.
const HOST_PATHS: &str = "/lib /lib64 /usr/lib /bin /usr/bin";

/// Why this machine builds nothing in the Nix sandbox, if it does not: a
/// trivial derivation (new each time) is built there.
fn sandbox_refused() -> Option<String> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let expr = format!(
        "derivation {{ name = \"stevedore-sandbox-probe\"; system = builtins.currentSystem; \
         builder = \"/bin/sh\"; args = [ \"-c\" \"echo $nonce > $out\" ]; nonce = \"{nonce}\"; }}"
    );
    let out = Command::new("nix-build")
        .args(["--no-out-link", "--option", "sandbox", "true"])
        .args(["--option", "extra-sandbox-paths", HOST_PATHS])
        .args(["-E", &expr])
        .output()
        .unwrap();
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn run_as_root_in_the_nix_sandbox_gives_the_same_layer_and_owners() {
    if let Some(why) = sandbox_refused() {
        println!("skipped: this machine builds nothing in the Nix sandbox:\n{why}");
        return;
    }
    // Built as root first (ids mapped one to one, chown real), then
    // rebuilt in the sandbox, where the builder is one mapped uid and
    // chown is recorded: --check wants the same tree and owners.
    build_example("runAsRoot");
    let drv = String::from_utf8(
        run(Command::new("nix-instantiate")
            .args(["-A", "runAsRoot", "--arg", "helper", HELPER])
            .arg(Path::new(REPO).join("examples")))
        .stdout,
    )
    .unwrap();
    let refs = String::from_utf8(
        run(Command::new("nix-store").args(["-q", "--references", drv.trim()])).stdout,
    )
    .unwrap();
    let layer = refs
        .lines()
        .find(|r| r.ends_with("-run-as-root-customisation-layer.drv"))
        .unwrap_or_else(|| panic!("no customisation layer among\n{refs}"));
    let out = Command::new("nix-store")
        .args(["--realise", "--check", "--option", "sandbox", "true"])
        .args(["--option", "extra-sandbox-paths", HOST_PATHS])
        .arg(layer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nix-store --realise --check in the sandbox {layer}:\n{stderr}"
    );
    assert!(!stderr.contains("warning: runAsRoot"), "{stderr}");
}

/// `nix-build -E` of `buildImage { name; contents = [ busybox ]; ARGS }`
/// with the examples' busybox, which must fail; its standard error.
fn build_image_fails(args: &str) -> String {
    let expr = format!(
        "let ex = import {REPO}/examples {{ helper = {HELPER}; }}; \
         s = import {REPO}/nix {{ helper = {HELPER}; }}; \
         in s.buildImage {{ name = \"stevedore-test-run-as-root\"; {args} }}"
    );
    let out = Command::new("nix-build")
        .args(["--no-out-link", "-E", &expr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{expr} built:\n{stderr}");
    stderr
}

/// The helper's lines in a build log: exactly one.
fn helper_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("stevedore: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one stevedore line in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].trim().to_owned()
}

#[test]
fn run_as_root_failure_is_one_line_with_the_exit_status() {
    let stderr =
        build_image_fails("contents = [ ex.busybox ]; runAsRoot = \"echo about to fail; exit 3\";");
    assert_eq!(
        helper_error(&stderr),
        "stevedore: error: runAsRoot failed (exit status 3)"
    );
    assert!(stderr.contains("about to fail"), "{stderr}");
}

#[test]
fn run_as_root_without_a_shell_in_the_root_says_how_to_add_one() {
    // No contents: the root has no /bin/sh.
    let stderr = build_image_fails("runAsRoot = \"true\";");
    let line = helper_error(&stderr);
    assert!(
        line.starts_with(
            "stevedore: error: runAsRoot: the shell /bin/sh is not in the image root; add a shell to contents"
        ),
        "{line}"
    );
    assert!(line.contains("shell from the store"), "{line}");
}

#[test]
fn run_as_root_with_fake_root_commands_is_refused() {
    evaluation_fails(
        r#"buildImage { name = "myapp"; runAsRoot = "true"; fakeRootCommands = "true"; }"#,
        &["buildImage: give runAsRoot or fakeRootCommands, not both"],
    );
    evaluation_fails(
        r#"buildImage { name = "myapp"; runAsRoot = [ "true" ]; }"#,
        &["buildImage: runAsRoot must be a string of shell commands, or null"],
    );
}

#[test]
fn run_as_root_instantiates_on_build_image_with_nix_db() {
    let expr = format!(
        "(import {REPO}/nix {{ helper = {HELPER}; }}).buildImageWithNixDb {{ name = \"myapp\"; runAsRoot = \"true\"; }}"
    );
    let drv = String::from_utf8(run(Command::new("nix-instantiate").arg("-E").arg(&expr)).stdout)
        .unwrap();
    assert!(drv.trim().ends_with("-myapp.tar.drv"), "{drv}");
    // The example builds with the same library.
    run(example_build_cmd(&["runAsRoot"]).arg("--dry-run"));
}

// ---------------------------------------------------------------------------
// The job run directly, as an unprivileged build user.

/// A build directory for `stevedore nix-builder` with a run-as-root job:
/// busybox as contents, `script` as a store file.
struct DirectBuild {
    dir: tempfile::TempDir,
    out: PathBuf,
    metadata: PathBuf,
}

impl DirectBuild {
    fn new(script: &str) -> DirectBuild {
        DirectBuild::on(script, None)
    }

    /// With `base` (a docker-archive) as `fromImage`.
    fn on(script: &str, base: Option<&Path>) -> DirectBuild {
        let dir = tempdir();
        // Writable by the unprivileged user the helper runs as.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let busybox = busybox_store_path();
        let script_dir = tempdir();
        let script_file = script_dir.path().join("run-as-root.sh");
        fs::write(&script_file, script).unwrap();
        let script_path = nix_add(&script_file);
        let out = dir.path().join("out");
        let metadata = dir.path().join("metadata");
        let mut attrs = json!({
            "outputs": { "out": out, "metadata": metadata },
            "stevedore": {
                "job": "run-as-root",
                "version": 1,
                "paths": [busybox],
                "script": script_path,
                "shell": "/bin/sh",
                "graph": "closure",
            },
            "closure": [
                { "path": busybox, "references": [] },
                { "path": script_path, "references": [] },
            ],
        });
        if let Some(base) = base {
            attrs["stevedore"]["base"] = json!({ "path": base });
        }
        fs::write(
            dir.path().join(".attrs.json"),
            serde_json::to_vec(&attrs).unwrap(),
        )
        .unwrap();
        DirectBuild { dir, out, metadata }
    }

    /// Runs the helper as `nobody`, with no supplementary groups and
    /// `no_new_privs` (as Nix runs builders).
    fn run(&self) -> std::process::Output {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--no-new-privs",
                HELPER,
                "nix-builder",
            ])
            .current_dir(self.dir.path())
            .env("NIX_ATTRS_JSON_FILE", self.dir.path().join(".attrs.json"))
            .output()
            .unwrap()
    }

    /// The layer's entries as the job's metadata gives them (mode and
    /// owner by path).
    fn entries(&self) -> Value {
        let metadata: Value = serde_json::from_slice(&fs::read(&self.metadata).unwrap()).unwrap();
        metadata["entries"].clone()
    }

    /// Only the job's own files are left in the build directory.
    fn assert_scratch_removed(&self) {
        for entry in fs::read_dir(self.dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                [".attrs.json", "out", "metadata"].contains(&name.as_str()),
                "{name} is left in the build directory"
            );
        }
    }
}

/// The owner (uid, gid) that `entries` gives `path`, which must be in the
/// layer.
fn owner_in(entries: &Value, path: &str) -> (u64, u64) {
    let e = &entries[path];
    assert!(e.is_object(), "{path} is not in the layer: {entries}");
    (e["uid"].as_u64().unwrap(), e["gid"].as_u64().unwrap())
}

#[test]
fn run_as_root_as_a_build_user_is_root_inside_with_root_owned_files() {
    let build = DirectBuild::new("mkdir /data\nid -u > /data/uid\nchmod 700 /data\nrm /bin/echo\n");
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        fs::read_to_string(build.out.join("data/uid")).unwrap(),
        "0\n"
    );
    assert!(build.out.join("bin/sh").is_symlink());
    assert!(!build.out.join("bin/echo").exists());
    // The mountpoints made for the script are not in the layer.
    for made in ["dev", "proc", "nix"] {
        assert!(!build.out.join(made).exists(), "{made} is in the layer");
    }
    let entries = build.entries();
    assert_eq!(
        entries["data"],
        json!({ "mode": 0o700, "uid": 0, "gid": 0 })
    );
    assert_eq!(
        entries["data/uid"],
        json!({ "mode": 0o644, "uid": 0, "gid": 0 })
    );
    build.assert_scratch_removed();
}

#[test]
fn run_as_root_as_a_build_user_records_chown_to_other_ids() {
    // /bin is a directory of contents; /bin/ls a symlink into the store;
    // /bin/echo follows into the read-only store mount.
    let build = DirectBuild::new(
        "mkdir /data\n\
         chown 1000:1000 /data /bin\n\
         chown -h 1000:1000 /bin/ls\n\
         stat -c %u:%g /data > /data/seen\n\
         touch /data/own && chown 2000:3000 /data/own\n\
         cd /data && touch rel && chown 4000:4000 rel && cd /\n\
         touch /tool && chmod 4755 /tool && chown 1000 /tool\n\
         touch /gone && chown 1000 /gone && rm /gone && touch /new\n\
         ! chown 70000 /data 2> /data/einval\n\
         ! chown 1000 /bin/echo 2> /data/erofs\n\
         ! chown 1000 /missing 2> /data/enoent\n",
    );
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Ownership is recorded, not applied, and the script sees it.
    assert_eq!(
        fs::read_to_string(build.out.join("data/seen")).unwrap(),
        "1000:1000\n"
    );
    for (file, error) in [
        ("einval", "Invalid argument"),
        ("erofs", "Read-only file system"),
        ("enoent", "No such file or directory"),
    ] {
        let said = fs::read_to_string(build.out.join("data").join(file)).unwrap();
        assert!(said.contains(error), "{file}: {said}");
    }
    let entries = &build.entries();
    let owner = |path: &str| owner_in(entries, path);
    assert_eq!(owner("data"), (1000, 1000));
    assert_eq!(owner("bin"), (1000, 1000));
    assert_eq!(owner("bin/ls"), (1000, 1000));
    assert_eq!(owner("data/own"), (2000, 3000));
    assert_eq!(owner("data/rel"), (4000, 4000));
    assert_eq!(owner("data/seen"), (0, 0));
    // A chown clears the setuid bit, as it does as root.
    assert_eq!(owner("tool"), (1000, 0));
    assert_eq!(entries["tool"]["mode"], json!(0o755));
    // A new file that may reuse a deleted one's inode is root's.
    assert_eq!(owner("new"), (0, 0));
    assert!(entries["gone"].is_null());
    // Untouched symlinks of contents keep root's.
    assert_eq!(owner("bin/cat"), (0, 0));
    assert!(build.out.join("bin/ls").is_symlink());
    build.assert_scratch_removed();
}

/// As a build user, the base's files keep owners the build user cannot
/// give: the script sees them (`stat`, and the tools that keep an owner
/// by reading it first, `chgrp` and `sed -i`), and the files it changes
/// keep them in the layer.
#[test]
fn run_as_root_as_a_build_user_sees_and_keeps_the_owners_of_the_base() {
    let dir = tempdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let busybox = busybox_store_path();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("home/alice")).unwrap();
    fs::create_dir_all(tree.join("srv/shared")).unwrap();
    fs::write(tree.join("home/alice/.profile"), "export A=1\n").unwrap();
    fs::write(tree.join("home/alice/notes"), "base notes\n").unwrap();
    fs::write(tree.join("home/alice/untouched"), "as it was\n").unwrap();
    let metadata = dir.path().join("metadata.json");
    let alice = json!({ "mode": 0o644, "uid": 1000, "gid": 1000 });
    fs::write(
        &metadata,
        serde_json::to_vec(&json!({ "version": 1, "entries": {
            "home/alice": { "mode": 0o755, "uid": 1000, "gid": 1000 },
            "home/alice/.profile": alice,
            "home/alice/notes": alice,
            "home/alice/untouched": alice,
            "srv/shared": { "mode": 0o775, "uid": 2000, "gid": 2000 },
        } }))
        .unwrap(),
    )
    .unwrap();
    let spec_path = write_spec(
        dir.path(),
        &spec(
            "stevedore-it/owned-base",
            &[vec![&busybox]],
            json!({ "customisation": { "trees": [tree], "metadata": metadata } }),
        ),
    );
    let base = dir.path().join("base.tar");
    build(&spec_path, "docker-archive", "none", &base);

    let build = DirectBuild::on(
        "stat -c %u:%g /home/alice /home/alice/.profile /srv/shared > /seen\n\
         echo 'export B=2' >> /home/alice/.profile\n\
         sed -i s/base/edited/ /home/alice/notes\n\
         chgrp 50 /srv/shared\n\
         touch /home/alice/new && chown 1000 /home/alice/new && chgrp 100 /home/alice/new\n\
         stat -c %u:%g /home/alice/notes /srv/shared /home/alice/new >> /seen\n",
        Some(&base),
    );
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        fs::read_to_string(build.out.join("seen")).unwrap(),
        "1000:1000\n1000:1000\n2000:2000\n1000:1000\n2000:50\n1000:100\n"
    );
    assert_eq!(
        fs::read_to_string(build.out.join("home/alice/notes")).unwrap(),
        "edited notes\n"
    );
    let entries = &build.entries();
    let owner = |path: &str| owner_in(entries, path);
    assert_eq!(owner("home/alice/.profile"), (1000, 1000));
    assert_eq!(owner("home/alice/notes"), (1000, 1000));
    assert_eq!(owner("srv/shared"), (2000, 50));
    assert_eq!(owner("home/alice/new"), (1000, 100));
    assert_eq!(owner("seen"), (0, 0));
    // What the script left alone is the base's, and not in the layer.
    assert!(!build.out.join("home/alice/untouched").exists());
    build.assert_scratch_removed();
}

#[test]
fn run_as_root_as_a_build_user_fails_with_the_scripts_status() {
    let build = DirectBuild::new("mkdir /data\nchown 1000 /data\nchmod 0 /data\nexit 3\n");
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "stevedore: error: runAsRoot failed (exit status 3)"
    );
    // Nothing half-written, and the locked scratch tree is gone.
    assert!(!build.out.exists() && !build.metadata.exists());
    build.assert_scratch_removed();
}

#[test]
fn run_as_root_as_a_build_user_killed_by_a_signal_says_so() {
    let build = DirectBuild::new("kill -9 $$\n");
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "stevedore: error: runAsRoot failed (killed by signal 9)"
    );
    build.assert_scratch_removed();
}
