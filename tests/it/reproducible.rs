//! Reproducibility: the same spec gives the same bytes, whatever the run,
//! the umask, the number of jobs, or whether the store is optimised.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::process::{run, stevedore, tempdir};
use crate::support::spec::{build, spec, write_spec};
use crate::support::store::nix_add;

const FORMATS: [&str; 3] = ["docker-archive", "oci-archive", "oci-dir"];
const COMPRESSIONS: [&str; 3] = ["none", "gzip", "zstd"];

/// The output name for a format: a file, or a directory for `oci-dir`.
fn out_name(format: &str, compress: &str) -> String {
    match format {
        "oci-dir" => format!("{format}-{compress}"),
        _ => format!("{format}-{compress}.tar"),
    }
}

/// The bytes of an output: one file, or every file of a directory tree by
/// relative path (directories listed too, so an extra empty one shows).
fn output_bytes(path: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            let md = fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                assert!(md.is_file(), "{} is not a regular file", path.display());
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        walk(path, path, &mut out);
        assert!(!out.is_empty(), "{} is empty", path.display());
    } else {
        out.insert(PathBuf::new(), Some(fs::read(path).unwrap()));
    }
    out
}

/// Asserts two outputs hold the same bytes, naming the first difference.
fn assert_same_output(a: &Path, b: &Path, what: &str) {
    let (a_bytes, b_bytes) = (output_bytes(a), output_bytes(b));
    let a_names: Vec<_> = a_bytes.keys().collect();
    let b_names: Vec<_> = b_bytes.keys().collect();
    assert_eq!(a_names, b_names, "{what}: the outputs hold different files");
    for (name, content) in &a_bytes {
        assert!(
            content == &b_bytes[name],
            "{what}: {} differs between {} and {}",
            name.display(),
            a.display(),
            b.display()
        );
    }
}

/// A customisation tree with a few modes, set explicitly so that the tree
/// is the same on disk whatever the umask of the test process.
fn fixture_tree(root: &Path) {
    for (dir, mode) in [("etc", 0o755), ("etc/app", 0o750), ("var/lib/app", 0o700)] {
        fs::create_dir_all(root.join(dir)).unwrap();
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(root.join("var"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root.join("var/lib"), fs::Permissions::from_mode(0o755)).unwrap();
    for (file, mode, content) in [
        ("etc/app/config", 0o640, "key = value\n"),
        ("etc/hostname", 0o644, "reproducible\n"),
        ("var/lib/app/state", 0o600, ""),
    ] {
        fs::write(root.join(file), content).unwrap();
        fs::set_permissions(root.join(file), fs::Permissions::from_mode(mode)).unwrap();
    }
    symlink("app/config", root.join("etc/config")).unwrap();
}

/// A spec with two store layers and a customisation layer, written into
/// `dir`. The store paths are small, to keep the many builds quick.
fn fixture_spec(dir: &Path) -> PathBuf {
    let src = tempdir();
    let tools = src.path().join("stevedore-repro-tools");
    fs::create_dir_all(tools.join("bin")).unwrap();
    fs::create_dir_all(tools.join("lib/deep/er")).unwrap();
    fs::write(tools.join("bin/tool"), pseudo_random("tool", 50_000)).unwrap();
    fs::set_permissions(tools.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("tool", tools.join("bin/alias")).unwrap();
    fs::write(tools.join("lib/deep/er/file"), "deep\n").unwrap();
    fs::write(tools.join("lib").join("n".repeat(150)), "long name\n").unwrap();
    let tools = nix_add(&tools);
    let data = src.path().join("stevedore-repro-data");
    fs::create_dir_all(data.join("share")).unwrap();
    fs::write(data.join("share/data"), "some data\n".repeat(1000)).unwrap();
    fs::write(data.join("share/empty"), "").unwrap();
    let data = nix_add(&data);
    let tree = dir.join("tree");
    fs::create_dir(&tree).unwrap();
    fixture_tree(&tree);
    write_spec(
        dir,
        &spec(
            "repro/image",
            &[vec![&tools], vec![&data]],
            json!({
                "tag": "v1",
                "created": "2024-01-02T03:04:05Z",
                "config": { "Cmd": [tools.join("bin/tool")], "Env": ["A=b"] },
                "customisation": { "trees": [tree] },
            }),
        ),
    )
}

#[test]
fn two_builds_are_byte_identical() {
    let dir = tempdir();
    let spec_path = fixture_spec(dir.path());
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    fs::create_dir(&first).unwrap();
    fs::create_dir(&second).unwrap();
    for format in FORMATS {
        for compress in COMPRESSIONS {
            let name = out_name(format, compress);
            build(&spec_path, format, compress, &first.join(&name));
            build(&spec_path, format, compress, &second.join(&name));
            assert_same_output(
                &first.join(&name),
                &second.join(&name),
                &format!("{format} {compress}"),
            );
        }
    }
}

#[test]
fn stream_equals_uncompressed_docker_archive() {
    let dir = tempdir();
    let spec_path = fixture_spec(dir.path());
    let archive = dir.path().join("image.tar");
    build(&spec_path, "docker-archive", "none", &archive);
    let streamed = run(stevedore().arg("stream").arg(&spec_path)).stdout;
    let built = fs::read(&archive).unwrap();
    assert_eq!(streamed.len(), built.len(), "stream and build sizes differ");
    assert!(streamed == built, "stream and build give different bytes");
}

#[test]
fn jobs_do_not_change_the_output() {
    let dir = tempdir();
    let spec_path = fixture_spec(dir.path());
    for (format, compress) in [
        ("oci-dir", "gzip"),
        ("docker-archive", "zstd"),
        ("oci-archive", "none"),
    ] {
        let name = out_name(format, compress);
        let mut outs = Vec::new();
        for jobs in ["1", "4"] {
            let out = dir.path().join(format!("jobs-{jobs}-{name}"));
            run(stevedore()
                .arg("build")
                .arg(&spec_path)
                .args([
                    "--format",
                    format,
                    "--compress",
                    compress,
                    "--jobs",
                    jobs,
                    "--out",
                ])
                .arg(&out));
            outs.push(out);
        }
        assert_same_output(&outs[0], &outs[1], &format!("{format} {compress}"));
    }
}

/// `PROGRAM ARGS...` run by `sh` with the given umask.
fn with_umask(umask: &str, program: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(program);
    cmd
}

#[test]
fn the_umask_does_not_change_the_output() {
    let dir = tempdir();
    let spec_path = fixture_spec(dir.path());
    let bin = PathBuf::from(stevedore().get_program());
    // The wrapper really sets the umask of the program it runs.
    for umask in ["022", "077"] {
        let shown = run(with_umask(umask, Path::new("/bin/sh")).args(["-c", "umask"])).stdout;
        assert_eq!(
            String::from_utf8(shown).unwrap().trim(),
            format!("0{umask}")
        );
    }
    let (loose, strict) = (dir.path().join("umask-022"), dir.path().join("umask-077"));
    fs::create_dir(&loose).unwrap();
    fs::create_dir(&strict).unwrap();
    for format in FORMATS {
        for compress in COMPRESSIONS {
            let name = out_name(format, compress);
            for (umask, out_dir) in [("022", &loose), ("077", &strict)] {
                run(with_umask(umask, &bin)
                    .arg("build")
                    .arg(&spec_path)
                    .args(["--format", format, "--compress", compress, "--out"])
                    .arg(out_dir.join(&name)));
            }
            assert_same_output(
                &loose.join(&name),
                &strict.join(&name),
                &format!("{format} {compress}"),
            );
        }
    }
}

/// Hard-link count of a file.
fn link_count(path: &Path) -> u64 {
    let out = run(Command::new("stat").args(["-c", "%h"]).arg(path)).stdout;
    String::from_utf8(out).unwrap().trim().parse().unwrap()
}

/// A file of `len` bytes that depends on `seed` throughout.
fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The files of a tar, by name: entry type and content.
fn tar_entries(bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.push((name, kind, content));
    }
    out
}

#[test]
fn an_optimised_store_gives_the_same_bytes_and_no_hard_links() {
    // Content no earlier run has put in the store, so the store paths are
    // new and not yet optimised.
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let shared = pseudo_random(&nonce, 300_000);
    let src = tempdir();
    let mut store_paths = Vec::new();
    for which in ["one", "two"] {
        let root = src.path().join(format!("stevedore-optimise-{which}"));
        fs::create_dir_all(root.join("share")).unwrap();
        fs::write(root.join("share/shared"), &shared).unwrap();
        fs::write(root.join("share/own"), format!("{which} {nonce}\n")).unwrap();
        if which == "one" {
            // The same content twice within one store path, too.
            fs::write(root.join("share/shared-again"), &shared).unwrap();
        }
        store_paths.push(nix_add(&root));
    }
    let shared_files = [
        store_paths[0].join("share/shared"),
        store_paths[0].join("share/shared-again"),
        store_paths[1].join("share/shared"),
    ];
    for f in &shared_files {
        assert_eq!(link_count(f), 1, "{} is already hard-linked", f.display());
    }

    let dir = tempdir();
    // Both store paths in one layer: where a tar writer that follows inode
    // numbers would write hard links.
    let spec_path = write_spec(
        dir.path(),
        &spec(
            "repro/optimised",
            &[vec![&store_paths[0], &store_paths[1]]],
            json!({ "created": "2024-01-02T03:04:05Z" }),
        ),
    );
    let cases = [
        ("docker-archive", "none"),
        ("oci-dir", "zstd"),
        ("oci-archive", "gzip"),
    ];
    let before = dir.path().join("before");
    let after = dir.path().join("after");
    fs::create_dir(&before).unwrap();
    fs::create_dir(&after).unwrap();
    for (format, compress) in cases {
        build(
            &spec_path,
            format,
            compress,
            &before.join(out_name(format, compress)),
        );
    }

    run(Command::new("nix-store").arg("--optimise"));
    for f in &shared_files {
        assert!(
            link_count(f) > 1,
            "nix-store --optimise did not hard-link {}",
            f.display()
        );
    }

    for (format, compress) in cases {
        let name = out_name(format, compress);
        build(&spec_path, format, compress, &after.join(&name));
        assert_same_output(
            &before.join(&name),
            &after.join(&name),
            &format!("{format} {compress} before and after nix-store --optimise"),
        );
    }

    // The layer holds every copy as a regular file with its content.
    let archive = fs::read(after.join(out_name("docker-archive", "none"))).unwrap();
    let outer = tar_entries(&archive);
    let manifest: Value = serde_json::from_slice(
        &outer
            .iter()
            .find(|(n, _, _)| n == "manifest.json")
            .unwrap()
            .2,
    )
    .unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer_name = layers[0].as_str().unwrap();
    let layer = &outer.iter().find(|(n, _, _)| n == layer_name).unwrap().2;
    let entries = tar_entries(layer);
    let links: Vec<_> = entries
        .iter()
        .filter(|(_, kind, _)| *kind == tar::EntryType::Link)
        .map(|(n, _, _)| n)
        .collect();
    assert!(links.is_empty(), "hard links in the layer: {links:?}");
    for f in &shared_files {
        let name = f.strip_prefix("/").unwrap().to_str().unwrap();
        let (_, kind, content) = entries
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not in the layer"));
        assert_eq!(*kind, tar::EntryType::Regular, "{name}");
        assert!(
            content == &shared,
            "{name} does not hold the shared content"
        );
    }
}
