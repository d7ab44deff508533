//! The SBOMs of the Nix library's images (`image.sbom`, CycloneDX 1.6, and
//! `image.spdx`, SPDX 2.3) and of `stevedore sbom`: accepted by the
//! validators of both projects (installed by scripts/setup.sh), one
//! component per store path of the image with the narHash, references and
//! layer Nix and the archive say, `meta` where the library had it, and the
//! same bytes when built again.
//!
//! `scripts/test.sh` runs this module on the host's Nix 2.8 and on Nix
//! 2.34 with the sandbox on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::docker_archive::{archive_layers, store_paths_in};
use crate::support::nix::{REPO, build, example_build_cmd, expr, nix, nonce, realise_check};
use crate::support::process::{run, stdout_of, stevedore, tempdir};

/// The validators' virtual environment (scripts/setup.sh makes it).
fn validators() -> PathBuf {
    let bin = Path::new(REPO).join("target/sbom-validators/bin");
    assert!(
        bin.join("pyspdxtools").exists(),
        "no SBOM validators in {}: run scripts/setup.sh",
        bin.display()
    );
    bin
}

/// CycloneDX's own JSON schema validation (cyclonedx-python-lib), strict.
fn validate_cyclonedx(file: &Path) {
    let script = "import sys\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        from cyclonedx.schema import SchemaVersion\n\
        err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
        print('invalid:', err) if err else print('valid')\n\
        sys.exit(1 if err else 0)\n";
    let out = stdout_of(
        std::process::Command::new(validators().join("python"))
            .arg("-c")
            .arg(script)
            .arg(file),
    );
    assert_eq!(out.trim(), "valid", "{}", file.display());
}

/// SPDX's own validator: `pyspdxtools -i FILE` fails on an invalid document.
fn validate_spdx(file: &Path) {
    run(std::process::Command::new(validators().join("pyspdxtools"))
        .arg("-i")
        .arg(file));
}

fn json_of(file: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

/// One line of `nix-store -q FLAG PATH` of this Nix, per path.
fn query(flag: &str, path: &str) -> Vec<String> {
    String::from_utf8(run(nix().command("nix-store").args(["-q", flag, path])).stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The narHash of `path` in base16, as this Nix records it.
fn nar_hash_hex(path: &str) -> String {
    let hash = query("--hash", path).remove(0);
    let hex = stdout_of(nix().command("nix-hash").args([
        "--type",
        "sha256",
        "--to-base16",
        hash.trim_start_matches("sha256:"),
    ]));
    hex.trim().to_owned()
}

/// `name`'s value among a CycloneDX component's properties.
fn property<'a>(component: &'a Value, name: &str) -> Option<&'a str> {
    component["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["value"]
        .as_str()
}

/// Checks a CycloneDX document of the docker-archive `archive` against
/// the archive and the store: every store path of the archive is a
/// component with its narHash, the layer that holds it and its references
/// in the image.
fn check_against_archive(doc: &Value, archive: &Path) {
    let layers = archive_layers(archive);
    let mut layer_of: BTreeMap<String, String> = BTreeMap::new();
    for layer in &layers {
        for p in store_paths_in(layer) {
            layer_of.insert(p, layer.digest.clone());
        }
    }
    let components = doc["components"].as_array().unwrap();
    let refs: BTreeSet<&str> = components
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        layer_of.keys().map(String::as_str).collect(),
        "one component per store path of {}",
        archive.display()
    );
    let dependencies: BTreeMap<&str, BTreeSet<&str>> = doc["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["ref"].as_str().unwrap(),
                d["dependsOn"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    for c in components {
        let path = c["bom-ref"].as_str().unwrap();
        assert_eq!(
            property(c, "stevedore:layer"),
            Some(layer_of[path].as_str()),
            "{path}: the layer that holds it"
        );
        assert_eq!(c["hashes"][0]["alg"], "SHA-256");
        assert_eq!(
            c["hashes"][0]["content"],
            nar_hash_hex(path),
            "{path}: narHash"
        );
        let want: BTreeSet<String> = query("--references", path)
            .into_iter()
            .filter(|r| r != path && layer_of.contains_key(r))
            .collect();
        let have: BTreeSet<String> = dependencies[path].iter().map(|s| s.to_string()).collect();
        assert_eq!(have, want, "{path}: dependencies are its references");
        let purl = c["purl"].as_str().unwrap();
        assert!(purl.starts_with("pkg:nix/"), "{purl}");
    }
}

#[test]
fn sboms_of_example_images_pass_both_validators_and_are_reproducible() {
    let dir = tempdir();
    let attrs = [
        "layered",
        "layered.sbom",
        "layered.spdx",
        "hello.sbom",
        "hello.spdx",
        "nixDb.sbom",
        "nixDb.spdx",
    ];
    let out = stdout_of(
        example_build_cmd(&attrs)
            .arg("-o")
            .arg(dir.path().join("r")),
    );
    let built: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    assert_eq!(built.len(), attrs.len(), "{out}");
    let host: Vec<PathBuf> = built.iter().map(|p| nix().host_path(p)).collect();
    for (attr, file) in attrs.iter().zip(&host).skip(1) {
        if attr.ends_with(".sbom") {
            validate_cyclonedx(file);
            let doc = json_of(file);
            assert_eq!(doc["specVersion"], "1.6");
            assert!(!doc["components"].as_array().unwrap().is_empty(), "{attr}");
        } else {
            validate_spdx(file);
            assert_eq!(json_of(file)["spdxVersion"], "SPDX-2.3");
        }
    }
    check_against_archive(&json_of(&host[1]), &host[0]);

    // The image's time, and a serial number that is the image's: the same
    // image gives the same document.
    let doc = json_of(&host[1]);
    assert_eq!(doc["metadata"]["timestamp"], "1970-01-01T00:00:01Z");
    let config = stdout_of(
        std::process::Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", host[0].display())),
    );
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["created"], "1970-01-01T00:00:01Z");
    let image_ref = doc["metadata"]["component"]["bom-ref"].as_str().unwrap();
    assert_eq!(
        doc["metadata"]["component"]["name"],
        "stevedore-example-layered"
    );
    assert_eq!(doc["metadata"]["component"]["version"], "latest");
    assert!(image_ref.starts_with("image:sha256:"), "{image_ref}");

    // Built again, byte for byte.
    let drvs: Vec<String> = built[1..]
        .iter()
        .map(|p| query("--deriver", p.to_str().unwrap()).remove(0))
        .collect();
    realise_check(&drvs);

    // `stevedore sbom` of the archive, with narHash and references from
    // the host's store, writes what the derivation wrote.
    if !nix().sandboxed() {
        for (format, file) in [("cyclonedx", &host[1]), ("spdx", &host[2])] {
            let cli = run(stevedore()
                .arg("sbom")
                .arg(&host[0])
                .args(["--format", format]))
            .stdout;
            assert_eq!(
                String::from_utf8(cli).unwrap(),
                std::fs::read_to_string(file).unwrap(),
                "stevedore sbom --format {format} and the derivation"
            );
        }
    }
}

#[test]
fn meta_of_contents_gives_names_licenses_and_homepages() {
    let n = nonce();
    let body = |result: &str| {
        format!(
            r#"let
          widget = derivation {{
            name = "widget-1.2.3";
            system = builtins.currentSystem;
            builder = "${{ex.busybox}}/bin/sh";
            args = [ "-c" "mkdir -p $out/bin && echo '#!${{ex.busybox}}/bin/sh {n}' > $out/bin/widget" ];
          }} // {{
            meta = {{
              description = "A widget";
              homepage = "https://widget.example/";
              license = {{ spdxId = "MIT"; fullName = "MIT License"; }};
            }};
          }};
          gadget = derivation {{
            name = "gadget-0.9";
            system = builtins.currentSystem;
            builder = "${{ex.busybox}}/bin/sh";
            args = [ "-c" "mkdir -p $out && echo {n} > $out/gadget" ];
          }} // {{ meta.license = [ "Gadget Public License" ]; }};
          image = s.buildLayeredImage {{
            name = "stevedore-test-sbom-meta";
            tag = "latest";
            contents = [ widget gadget ex.busybox ];
          }};
        in image.{result}"#
        )
    };
    // The CycloneDX and SPDX documents of one image.
    let dir = tempdir();
    let (_, cdx) = build(&expr("", &body("sbom")), dir.path());
    let dir2 = tempdir();
    let (_, spdx) = build(&expr("", &body("spdx")), dir2.path());
    validate_cyclonedx(&cdx);
    validate_spdx(&spdx);

    let doc = json_of(&cdx);
    let components = doc["components"].as_array().unwrap();
    let widget = components
        .iter()
        .find(|c| c["name"] == "widget")
        .expect("a widget component");
    assert_eq!(widget["version"], "1.2.3");
    assert_eq!(widget["description"], "A widget");
    assert_eq!(widget["licenses"][0]["expression"], "MIT");
    assert_eq!(
        widget["externalReferences"][0]["url"],
        "https://widget.example/"
    );
    let path = widget["bom-ref"].as_str().unwrap();
    let hash = path.rsplit('/').next().unwrap().split('-').next().unwrap();
    assert_eq!(widget["purl"], format!("pkg:nix/widget@1.2.3?hash={hash}"));
    assert_eq!(widget["hashes"][0]["content"], nar_hash_hex(path));
    // The widget's script names busybox: a dependency.
    let busybox = components.iter().find(|c| c["name"] == "busybox").unwrap()["bom-ref"]
        .as_str()
        .unwrap();
    let deps = doc["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ref"] == path)
        .unwrap();
    assert_eq!(deps["dependsOn"], serde_json::json!([busybox]));
    let gadget = components.iter().find(|c| c["name"] == "gadget").unwrap();
    assert_eq!(gadget["version"], "0.9");
    assert_eq!(
        gadget["licenses"][0]["license"]["name"],
        "Gadget Public License"
    );

    let doc = json_of(&spdx);
    let packages = doc["packages"].as_array().unwrap();
    let widget = packages.iter().find(|p| p["name"] == "widget").unwrap();
    assert_eq!(widget["licenseDeclared"], "MIT");
    assert_eq!(widget["homepage"], "https://widget.example/");
    assert_eq!(widget["versionInfo"], "1.2.3");
    let gadget = packages.iter().find(|p| p["name"] == "gadget").unwrap();
    assert_eq!(
        gadget["licenseDeclared"],
        "LicenseRef-Gadget-Public-License"
    );
    assert_eq!(
        doc["hasExtractedLicensingInfos"][0]["name"],
        "Gadget Public License"
    );
}

#[test]
fn push_sbom_refers_to_the_image_under_the_fallback_tag() {
    use crate::support::digest::sha256;
    use crate::support::registry::Registry;
    let layered = crate::support::nix::build_example("layered");
    let reg = Registry::start();
    let dest = reg.reference("with-sbom", "v1");
    let push = || {
        run(reg
            .stevedore()
            .arg("push")
            .arg(&layered.path)
            .arg(&dest)
            .arg("--sbom")
            .args(reg.stevedore_args()))
    };
    let out = push();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let image_digest = stdout
        .trim()
        .lines()
        .last()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    let hex = image_digest.trim_start_matches("sha256:");
    // docker-registry has no referrers API: the fallback tag.
    assert!(
        stderr.contains(&format!("(listed under the tag sha256-{hex})")),
        "{stderr}"
    );
    let inspect_raw = |reference: &str| -> Value {
        let out = stdout_of(
            std::process::Command::new("skopeo")
                .args(["inspect", "--raw"])
                .args(reg.skopeo_args(""))
                .arg(reference),
        );
        serde_json::from_str(&out).unwrap()
    };
    let fallback = reg.reference("with-sbom", &format!("sha256-{hex}"));
    let index = inspect_raw(&fallback);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["artifactType"], "application/vnd.cyclonedx+json");
    let artifact = inspect_raw(&format!(
        "docker://{}/with-sbom@{}",
        reg.host(),
        entries[0]["digest"].as_str().unwrap()
    ));
    assert_eq!(artifact["subject"]["digest"], image_digest);
    assert_eq!(artifact["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(
        artifact["layers"][0]["mediaType"],
        "application/vnd.cyclonedx+json"
    );
    // The SBOM pushed is `stevedore sbom` of the image.
    let sbom = run(stevedore()
        .arg("sbom")
        .arg(&layered.path)
        .args(["--format", "cyclonedx"]))
    .stdout;
    assert_eq!(artifact["layers"][0]["digest"], sha256(&sbom));
    assert_eq!(artifact["layers"][0]["size"], sbom.len());

    // Pushed again: the index still lists it once.
    push();
    assert_eq!(
        inspect_raw(&fallback)["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
