//! `stevedore pull` in a `TMPDIR` that other users share (issue 11,
//! cases 1, 2 and 8): what another user plants there is neither used nor
//! followed, a complete blob is checked again before it is used, a layer
//! named twice in one manifest is fetched once, and pulls to the same
//! output take turns. The other user is `nobody`, by `setpriv`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::digest::sha256;
use crate::support::docker_archive::archive_layer_digests;
use crate::support::oci_layout::{Layout, blob_path, one_file_layout};
use crate::support::process::{run, tempdir};
use crate::support::registry::{Registry, push};

/// A directory every user may write in, with the sticky bit, as `/tmp`.
fn shared_tmp() -> tempfile::TempDir {
    let tmp = tempdir();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    tmp
}

/// Runs a shell script as `nobody`.
fn as_nobody(script: &str) {
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/bin/sh", "-ec", script]));
}

/// The name a pull into `out` of `manifest` gives its work directory.
fn work_name(out: &Path, manifest: &str) -> String {
    let key = sha256(format!("{}\n{manifest}", out.display()).as_bytes());
    key["sha256:".len().."sha256:".len() + 16].to_owned()
}

/// `stevedore pull` with `TMPDIR` set; its output.
fn pull_in(reg: &Registry, tmp: &Path, src: &str, out: &Path) -> std::process::Output {
    reg.stevedore()
        .env("TMPDIR", tmp)
        .arg("pull")
        .arg(src)
        .arg("--out")
        .arg(out)
        .args(reg.stevedore_args())
        .output()
        .unwrap()
}

#[test]
fn pull_neither_uses_nor_follows_what_another_user_planted() {
    let reg = Registry::start();
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "planted", "planted", 300_000, 31);
    let image = Layout::read(&layout);
    let reference = reg.reference("planted/app", "v1");
    push(&reg, &layout, &reference, &[]);
    let src = format!("docker://{}/planted/app@{}", reg.host(), image.digest);
    let layer = image.layers()[0].clone();
    let (layer_hex, config_hex) = (
        layer["sha256:".len()..].to_owned(),
        image.config()["sha256:".len()..].to_owned(),
    );
    let size = image.blob(&layer).len();

    let tmp = shared_tmp();
    let out_dir = tempdir();
    let out = out_dir.path().join("image.tar");
    // A file root owns, which the attacker names.
    let victim = out_dir.path().join("victim");
    fs::write(&victim, "root's\n").unwrap();
    let key = work_name(&out, &image.digest);
    // Where pulls put their work, old names and new: a layer of the right
    // size with other bytes, and the partial files as symlinks to the
    // victim.
    let t = tmp.path().display();
    as_nobody(&format!(
        "for d in {t}/stevedore-pull-{key} {t}/stevedore-0/pull-{key}; do
           mkdir -p -m 777 $d
           head -c {size} /dev/zero | tr '\\0' X > $d/{layer_hex}
           ln -s {victim} $d/{layer_hex}.partial
           ln -s {victim} $d/{config_hex}.partial
         done
         chmod 777 {t}/stevedore-0",
        victim = victim.display()
    ));

    let pulled = pull_in(&reg, tmp.path(), &src, &out);
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{stderr}");
    assert!(
        stderr.contains("stevedore-0 belongs to uid 65534, not to this user"),
        "{stderr}"
    );
    assert_eq!(archive_layer_digests(&out), vec![layer.clone()]);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's\n");

    // In the user's own directory, a complete blob with other bytes (a
    // disk that lost them, an earlier bug) is fetched again, not used.
    let own = shared_tmp();
    let work = own
        .path()
        .join("stevedore-0")
        .join(format!("pull-{}", work_name(&out, &image.digest)));
    fs::create_dir_all(&work).unwrap();
    fs::set_permissions(
        own.path().join("stevedore-0"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fs::write(work.join(&layer_hex), vec![b'X'; size]).unwrap();
    fs::remove_file(&out).unwrap();
    let pulled = pull_in(&reg, own.path(), &src, &out);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert_eq!(archive_layer_digests(&out), vec![layer]);
    assert!(!work.exists(), "the work directory is removed after a pull");
}

/// Writes `layout`'s manifest again with its one layer named twice (and
/// twice in the config's diff_ids), as a new image of the layout; its
/// manifest digest.
fn with_layer_twice(layout: &Path) -> String {
    let image = Layout::read(layout);
    let mut manifest = image.doc();
    let mut config: Value = serde_json::from_slice(&image.blob(&image.config())).unwrap();
    let diff_id = config["rootfs"]["diff_ids"][0].clone();
    config["rootfs"]["diff_ids"] = json!([diff_id.clone(), diff_id]);
    config["history"] = json!([{ "created_by": "one" }, { "created_by": "two" }]);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = sha256(&config_bytes);
    fs::write(blob_path(layout, &config_digest), &config_bytes).unwrap();
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_bytes.len());
    let layer = manifest["layers"][0].clone();
    manifest["layers"] = json!([layer.clone(), layer]);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256(&manifest_bytes);
    fs::write(blob_path(layout, &digest), &manifest_bytes).unwrap();
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = json!(digest);
    index["manifests"][0]["size"] = json!(manifest_bytes.len());
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    digest
}

#[test]
fn a_layer_named_twice_and_pulls_to_one_output_do_not_collide() {
    let reg = Registry::start();
    let dir = tempdir();
    let layout = one_file_layout(dir.path(), "twice", "twice", 2_000_000, 32);
    let layer = Layout::read(&layout).layers()[0].clone();
    let digest = with_layer_twice(&layout);
    push(&reg, &layout, &reg.reference("twice/app", "v1"), &[]);
    let src = format!("docker://{}/twice/app@{digest}", reg.host());

    let tmp = tempdir();
    let out_dir = tempdir();
    let out = out_dir.path().join("image.tar");
    let pulls: Vec<_> = (0..10)
        .map(|_| {
            reg.stevedore()
                .env("TMPDIR", tmp.path())
                .arg("pull")
                .arg(&src)
                .arg("--out")
                .arg(&out)
                .args(reg.stevedore_args())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for pull in pulls {
        let done = pull.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "one of 10 pulls to one output failed: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    assert_eq!(archive_layer_digests(&out), vec![layer.clone(), layer]);
}
