//! `stevedore export` and the library's `exportImage`: an image's file
//! system as one tar, checked with the `tar` crate, GNU tar and podman.

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;

use crate::support::docker_archive::{Blob, docker_archive};
use crate::support::nix::build_example;
use crate::support::podman::{PodmanImage, podman, run_in_podman_store};
use crate::support::process::{
    assert_one_line_error, dir_names, run, run_fail, stevedore, tempdir,
};
use crate::support::tar::{raw_entry, raw_layer};

/// `(path, type, mode, uid:gid, uname:gname, mtime, data or link)` of
/// every entry of a tar.
fn listing(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let h = e.header().clone();
            let what = match e.link_name().unwrap() {
                Some(l) => format!("-> {}", l.display()),
                None => format!("{:?}", String::from_utf8_lossy(&data)),
            };
            let dev = match (h.device_major().unwrap(), h.device_minor().unwrap()) {
                (Some(a), Some(b)) if a != 0 || b != 0 => format!(" {a},{b}"),
                _ => String::new(),
            };
            format!(
                "{} {} {:o} {}:{} {}:{} {}{dev} {what}",
                String::from_utf8_lossy(&e.path_bytes()),
                h.entry_type().as_byte() as char,
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.username().unwrap().unwrap_or(""),
                h.groupname().unwrap().unwrap_or(""),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

fn export(image: &Path, out: &Path, args: &[&str]) -> Vec<u8> {
    run(stevedore()
        .arg("export")
        .arg(image)
        .arg("--out")
        .arg(out)
        .args(args));
    fs::read(out).unwrap()
}

/// An entry with an owner, mode, time and device numbers of its own.
fn entry(name: &str, kind: u8, data: &[u8], link: &str, mode: u32, owner: (u64, &str)) -> Vec<u8> {
    let mut bytes = raw_entry(name, kind, data, link, None);
    let mut h = tar::Header::new_ustar();
    h.as_mut_bytes().copy_from_slice(&bytes[..512]);
    h.set_mode(mode);
    h.set_uid(owner.0);
    h.set_gid(owner.0 + 1);
    h.set_username(owner.1).unwrap();
    h.set_groupname(&format!("{}-group", owner.1)).unwrap();
    h.set_mtime(1_000_000 + owner.0);
    if kind == b'3' || kind == b'4' {
        h.set_device_major(if kind == b'3' { 1 } else { 8 })
            .unwrap();
        h.set_device_minor(if kind == b'3' { 3 } else { 1 })
            .unwrap();
    }
    h.set_cksum();
    bytes[..512].copy_from_slice(h.as_bytes());
    bytes
}

#[test]
fn export_applies_whiteouts_and_keeps_metadata() {
    let dir = tempdir();
    let root = (0, "root");
    let app = (1000, "app");
    let lower = raw_layer(&[
        entry("etc/", b'5', b"", "", 0o755, root),
        entry(
            "etc/passwd",
            b'0',
            b"root:x:0:0::/:/bin/sh\n",
            "",
            0o644,
            root,
        ),
        entry("etc/old", b'0', b"old", "", 0o644, root),
        entry("opt/", b'5', b"", "", 0o755, root),
        entry("opt/a", b'0', b"a", "", 0o644, root),
        entry("opt/b/", b'5', b"", "", 0o755, root),
        entry("opt/b/c", b'0', b"c", "", 0o644, root),
        entry("dev/", b'5', b"", "", 0o755, root),
        entry("dev/null", b'3', b"", "", 0o666, root),
        entry("dev/sda1", b'4', b"", "", 0o660, root),
    ]);
    let upper = raw_layer(&[
        entry("etc/.wh.old", b'0', b"", "", 0o644, root),
        entry("opt/.wh..wh..opq", b'0', b"", "", 0o644, root),
        entry("opt/new", b'0', b"new", "", 0o600, app),
        entry("home/", b'5', b"", "", 0o700, app),
        entry("home/tool", b'0', b"#!/bin/sh\n", "", 0o4755, app),
        entry("home/tool-copy", b'1', b"", "home/tool", 0o755, app),
        entry("home/link", b'2', b"", "tool", 0o777, app),
        entry("run/", b'5', b"", "", 0o1777, root),
        entry("run/fifo", b'6', b"", "", 0o600, root),
    ]);
    let image = docker_archive(dir.path(), &[Blob::plain(lower), Blob::plain(upper)]);
    let out = dir.path().join("rootfs.tar");
    let bytes = export(&image, &out, &[]);
    assert_eq!(
        listing(&bytes),
        [
            "./ 5 755 0:0 root:root 1 \"\"",
            "./dev/ 5 755 0:1 root:root-group 1000000 \"\"",
            "./dev/null 3 666 0:1 root:root-group 1000000 1,3 \"\"",
            "./dev/sda1 4 660 0:1 root:root-group 1000000 8,1 \"\"",
            "./etc/ 5 755 0:1 root:root-group 1000000 \"\"",
            "./etc/passwd 0 644 0:1 root:root-group 1000000 \"root:x:0:0::/:/bin/sh\\n\"",
            "./home/ 5 700 1000:1001 app:app-group 1001000 \"\"",
            "./home/link 2 777 1000:1001 app:app-group 1001000 -> tool",
            "./home/tool 0 4755 1000:1001 app:app-group 1001000 \"#!/bin/sh\\n\"",
            "./home/tool-copy 0 755 1000:1001 app:app-group 1001000 \"#!/bin/sh\\n\"",
            "./opt/ 5 755 0:1 root:root-group 1000000 \"\"",
            "./opt/new 0 600 1000:1001 app:app-group 1001000 \"new\"",
            "./run/ 5 1777 0:1 root:root-group 1000000 \"\"",
            "./run/fifo 6 600 0:1 root:root-group 1000000 \"\"",
        ]
    );
    // GNU tar reads it too, and a second export is the same bytes.
    let listed = run(Command::new("tar").arg("-tvf").arg(&out));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("home/tool-copy"),
        "{listed:?}"
    );
    let again = export(&image, &dir.path().join("again.tar"), &[]);
    assert_eq!(bytes, again);
}

#[test]
fn export_refuses_a_bad_output_and_a_missing_image() {
    let dir = tempdir();
    let image = docker_archive(
        dir.path(),
        &[Blob::plain(raw_layer(&[raw_entry(
            "a", b'0', b"x", "", None,
        )]))],
    );
    let err = run_fail(
        stevedore()
            .arg("export")
            .arg(&image)
            .arg("--out")
            .arg(dir.path().join("no/such/dir/rootfs.tar")),
    );
    assert_one_line_error(&err, "export to a missing directory");
    assert!(err.contains("no/such/dir"), "{err}");
    let err = run_fail(
        stevedore()
            .arg("export")
            .arg(dir.path().join("missing.tar"))
            .arg("--out")
            .arg(dir.path().join("rootfs.tar")),
    );
    assert_one_line_error(&err, "export of a missing image");
    assert!(err.contains("missing.tar"), "{err}");
    assert_eq!(dir_names(dir.path()), ["image.tar"]);
}

/// The `exportImage` of an example image through the Nix library: the
/// same bytes as the command, and a file system podman runs.
#[test]
fn export_image_nix_matches_the_command_and_runs() {
    // A busybox-only example: an open archive is a GC runtime root of its
    // store paths, which the Nix database tests must see as dead.
    let layered = build_example("config");
    let dir = tempdir();
    let link = dir.path().join("result");
    let helper = env!("CARGO_BIN_EXE_stevedore");
    let root = env!("CARGO_MANIFEST_DIR");
    let expr = format!(
        r#"let
          st = import {root}/nix {{ helper = "{helper}"; }};
          ex = import {root}/examples {{ helper = "{helper}"; }};
        in st.exportImage {{ fromImage = ex.config; diskSize = 2048; buildVMMemorySize = 1024; }}"#
    );
    let out = run(Command::new("nix-build")
        .args(["-E", &expr, "-o"])
        .arg(&link));
    let path = String::from_utf8(out.stdout).unwrap();
    let path = Path::new(path.trim());
    assert!(
        path.to_string_lossy()
            .ends_with("-stevedore-example-config.tar"),
        "{}",
        path.display()
    );
    let from_nix = fs::read(path).unwrap();
    let from_cli = export(&layered.path, &dir.path().join("cli.tar"), &[]);
    assert!(
        from_nix == from_cli,
        "exportImage and stevedore export differ"
    );
    let names = listing(&from_nix);
    assert!(
        names.iter().any(|n| n.starts_with("./bin/sh 2 777")),
        "{names:#?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("-busybox/bin/busybox 0 555 0:0 root:root 1 ")),
        "{names:#?}"
    );

    // podman runs the flattened file system.
    let name = "localhost/stevedore-export-test:latest";
    run_in_podman_store(podman().arg("import").arg(path).arg(name));
    let image = PodmanImage(name.to_owned());
    let said = run(podman().args([
        "run",
        "--rm",
        "--network",
        "none",
        name,
        "/bin/sh",
        "-c",
        "echo exported",
    ]));
    drop(image);
    assert_eq!(String::from_utf8_lossy(&said.stdout).trim(), "exported");
}

/// A `streamLayeredImage` launcher is streamed once and flattened like
/// an archive.
#[test]
fn export_reads_a_stream_launcher() {
    let hello = build_example("hello");
    let dir = tempdir();
    let bytes = export(&hello.path, &dir.path().join("rootfs.tar"), &[]);
    let names = listing(&bytes);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("./bin/sh 2 777 0:0 root:root")),
        "{names:#?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("./nix/store/ 5 755")),
        "{names:#?}"
    );
}

/// `fromImageName` and `fromImageTag` pick an image of an archive that
/// holds several (here a `mergeImages` result); without them the first is
/// taken.
#[test]
fn export_image_nix_picks_by_name_and_tag() {
    let dir = tempdir();
    let helper = env!("CARGO_BIN_EXE_stevedore");
    let root = env!("CARGO_MANIFEST_DIR");
    let expr = |pick: &str| {
        format!(
            r#"let
              st = import {root}/nix {{ helper = "{helper}"; }};
              ex = import {root}/examples {{ helper = "{helper}"; }};
              image = n: st.buildLayeredImage {{
                name = "stevedore-export-pick-${{n}}";
                tag = "t${{n}}";
                contents = [ ex.busybox ];
                extraCommands = "echo ${{n}} > marker-${{n}}";
              }};
            in st.exportImage {{ fromImage = st.mergeImages [ (image "a") (image "b") ]; {pick} }}"#
        )
    };
    for (pick, want, name) in [
        ("", "marker-a", "merge-docker-images"),
        (
            r#"fromImageName = "stevedore-export-pick-b"; fromImageTag = "tb"; name = "picked";"#,
            "marker-b",
            "picked",
        ),
    ] {
        let link = dir.path().join(want);
        let out = run(Command::new("nix-build")
            .args(["-E", &expr(pick), "-o"])
            .arg(&link));
        let path = String::from_utf8(out.stdout).unwrap();
        assert!(path.trim().ends_with(name), "{path}");
        let names = listing(&fs::read(path.trim()).unwrap());
        let markers: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("./marker-"))
            .collect();
        assert_eq!(markers.len(), 1, "{names:#?}");
        assert!(markers[0].starts_with(&format!("./{want}")), "{markers:?}");
    }
    let err = run_fail(Command::new("nix-build").args([
        "-E",
        &expr(r#"fromImageName = "stevedore-export-pick-b"; fromImageTag = "nope";"#),
        "--no-out-link",
    ]));
    assert!(
        err.contains("manifest.json has no image tagged stevedore-export-pick-b:nope"),
        "{err}"
    );
}
