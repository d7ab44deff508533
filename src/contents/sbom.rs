//! Software bills of materials of an image ([`Contents`]): CycloneDX 1.6
//! and SPDX 2.3, as JSON (docs/sbom.md). One component per store path, with
//! name and version as `builtins.parseDrvName` splits them, a `pkg:nix`
//! purl, the narHash as SHA-256, `meta` where the Nix library had it,
//! dependencies from the references and the layer as a property.
//!
//! The same image gives the same bytes: the time is the image's `created`,
//! the serial number and namespace are derived from the image id, and every
//! list and map is sorted. The documents are built as JSON values rather
//! than with a CycloneDX or SPDX crate: the ones on crates.io either lag
//! the 1.6 / 2.3 specifications or pull in much more than these two
//! documents need; the validators of both projects check the output in the
//! tests.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Contents, License, StorePath, parse_name};

/// The SBOM formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
}

/// The document of `contents` in `format`, as pretty JSON with a final
/// newline.
pub fn write(contents: &Contents, format: SbomFormat) -> Result<Vec<u8>> {
    let doc = match format {
        SbomFormat::Cyclonedx => cyclonedx(contents)?,
        SbomFormat::Spdx => spdx(contents)?,
    };
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The tool named in both documents.
const TOOL: &str = "stevedore";
const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A UUID (RFC 4122 version 5, in the URL namespace) that depends only on
/// the image id and `purpose`.
fn image_uuid(contents: &Contents, purpose: &str) -> String {
    let name = format!("stevedore:{purpose}:{}", contents.id);
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes())
        .hyphenated()
        .to_string()
}

/// The image's `created`, as both formats want it (`YYYY-MM-DDThh:mm:ssZ`).
fn created(contents: &Contents) -> Result<String> {
    let text = contents
        .created
        .as_deref()
        .unwrap_or(crate::spec::DEFAULT_TIME);
    let time = crate::image::parse_time("created", text)?.replace_nanosecond(0)?;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    Ok(time.format(&format)?)
}

/// The image's name and tag, from its first stored name.
fn image_name_tag(contents: &Contents) -> (String, String) {
    let name = contents.display_name();
    match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_owned(), t.to_owned()),
        _ => (name.to_owned(), "latest".to_owned()),
    }
}

/// The hex of a `sha256:<base16>` narHash.
fn nar_hex(p: &StorePath) -> Option<&str> {
    p.nar_hash
        .as_deref()
        .and_then(|h| h.strip_prefix("sha256:"))
}

/// The references of `p` that are store paths of the image, sorted.
fn dependencies<'a>(contents: &'a Contents, p: &'a StorePath) -> Option<Vec<&'a str>> {
    p.references.as_ref().map(|refs| {
        refs.iter()
            .filter(|r| contents.store_paths.contains_key(*r))
            .map(String::as_str)
            .collect()
    })
}

fn cyclonedx(contents: &Contents) -> Result<Value> {
    let (name, tag) = image_name_tag(contents);
    let mut components = Vec::new();
    let mut deps: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (path, p) in &contents.store_paths {
        let nv = parse_name(path);
        let layer = &contents.layers[p.layer];
        let mut c = json!({
            "type": "library",
            "bom-ref": path,
            "name": nv.name,
            "purl": nv.purl(),
            "properties": properties(&[
                ("nix:store_path", Some(path.clone())),
                ("nix:nar_size", p.nar_size.map(|s| s.to_string())),
                ("stevedore:layer", Some(layer.digest.to_string())),
                ("stevedore:layer_index", Some(p.layer.to_string())),
            ]),
        });
        if !nv.version.is_empty() {
            c["version"] = json!(nv.version);
        }
        if let Some(hex) = nar_hex(p) {
            c["hashes"] = json!([{ "alg": "SHA-256", "content": hex }]);
        }
        if let Some(meta) = &p.meta {
            if let Some(d) = &meta.description {
                c["description"] = json!(d);
            }
            if let Some(h) = &meta.homepage {
                c["externalReferences"] = json!([{ "type": "website", "url": h }]);
            }
            if let Some(l) = cyclonedx_licenses(&meta.licenses) {
                c["licenses"] = l;
            }
        }
        components.push(c);
        if let Some(d) = dependencies(contents, p) {
            deps.insert(path.clone(), d);
        }
    }
    let image_ref = format!("image:{}", contents.id);
    let known_refs = contents
        .store_paths
        .values()
        .all(|p| p.references.is_some());
    let mut dependencies: Vec<Value> = Vec::new();
    if known_refs {
        dependencies.push(json!({ "ref": image_ref, "dependsOn": contents.roots() }));
    }
    for (path, d) in deps {
        dependencies.push(json!({ "ref": path, "dependsOn": d }));
    }
    dependencies.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
    let platform = contents.platforms.first().map(ToString::to_string);
    let mut doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", image_uuid(contents, "cyclonedx")),
        "version": 1,
        "metadata": {
            "timestamp": created(contents)?,
            "tools": { "components": [
                { "type": "application", "name": TOOL, "version": TOOL_VERSION }
            ] },
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": name,
                "version": tag,
                "hashes": [{ "alg": "SHA-256", "content": contents.id.hex() }],
                "properties": properties(&[
                    ("stevedore:image_id", Some(contents.id.to_string())),
                    ("stevedore:manifest", contents.manifest.as_ref().map(ToString::to_string)),
                    ("stevedore:platform", platform),
                ]),
            },
        },
        "components": components,
    });
    if !dependencies.is_empty() {
        doc["dependencies"] = json!(dependencies);
    }
    Ok(doc)
}

/// `[{name, value}]` of the pairs that have a value, in the order given.
fn properties(pairs: &[(&str, Option<String>)]) -> Value {
    pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| json!({ "name": name, "value": v })))
        .collect()
}

/// CycloneDX `licenses`: one SPDX expression when every license has an
/// SPDX id, else each license by name.
fn cyclonedx_licenses(licenses: &[License]) -> Option<Value> {
    if licenses.is_empty() {
        return None;
    }
    if let Some(expr) = spdx_expression(licenses) {
        return Some(json!([{ "expression": expr }]));
    }
    let mut names: Vec<&str> = licenses
        .iter()
        .filter_map(|l| l.name.as_deref().or(l.spdx_id.as_deref()))
        .collect();
    names.sort();
    names.dedup();
    Some(
        names
            .iter()
            .map(|n| json!({ "license": { "name": n } }))
            .collect(),
    )
}

/// The SPDX ids joined with `AND` (a package under several licenses, as
/// nixpkgs' `meta.license` lists them), or `None` when one has no id.
fn spdx_expression(licenses: &[License]) -> Option<String> {
    let ids: BTreeSet<&str> = licenses
        .iter()
        .map(|l| l.spdx_id.as_deref())
        .collect::<Option<_>>()?;
    Some(ids.into_iter().collect::<Vec<_>>().join(" AND "))
}

/// An SPDX id for a store path: `SPDXRef-Package-<hash>-<name>`, with what
/// SPDX ids may not hold replaced by `-`.
fn spdx_id(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let safe: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-{safe}")
}

/// `LicenseRef-<name>` for a license without an SPDX id.
fn license_ref(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{safe}")
}

fn spdx(contents: &Contents) -> Result<Value> {
    let (name, tag) = image_name_tag(contents);
    let created = created(contents)?;
    let tool = format!("Tool: {TOOL}-{TOOL_VERSION}");
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": name,
        "versionInfo": tag,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": contents.id.hex() }],
        "comment": format!("image id {}", contents.id),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_ids = BTreeSet::new();
    for (path, p) in &contents.store_paths {
        let nv = parse_name(path);
        let id = spdx_id(path);
        if !seen_ids.insert(id.clone()) {
            bail!("two store paths of the image give the SPDX id {id}");
        }
        let layer = &contents.layers[p.layer];
        let mut declared = "NOASSERTION".to_owned();
        let mut pkg = json!({
            "SPDXID": id,
            "name": nv.name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": nv.purl(),
            }],
            "comment": format!("{path} in layer {} ({})", p.layer + 1, layer.digest),
        });
        if !nv.version.is_empty() {
            pkg["versionInfo"] = json!(nv.version);
        }
        if let Some(hex) = nar_hex(p) {
            pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": hex }]);
        }
        if let Some(meta) = &p.meta {
            if let Some(d) = &meta.description {
                pkg["description"] = json!(d);
            }
            if let Some(h) = &meta.homepage {
                pkg["homepage"] = json!(h);
            }
            if !meta.licenses.is_empty() {
                let mut terms: BTreeSet<String> = BTreeSet::new();
                for l in &meta.licenses {
                    match (&l.spdx_id, &l.name) {
                        (Some(id), _) => {
                            terms.insert(id.clone());
                        }
                        (None, Some(n)) => {
                            let r = license_ref(n);
                            extracted.insert(r.clone(), n.clone());
                            terms.insert(r);
                        }
                        (None, None) => {}
                    }
                }
                if !terms.is_empty() {
                    declared = terms.into_iter().collect::<Vec<_>>().join(" AND ");
                }
            }
        }
        pkg["licenseDeclared"] = json!(declared);
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        for d in dependencies(contents, p).unwrap_or_default() {
            relationships.push(json!({
                "spdxElementId": id,
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": spdx_id(d),
            }));
        }
    }
    let key = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    packages.sort_by_key(|p| key(p, "SPDXID"));
    relationships.sort_by_key(|r| {
        (
            key(r, "spdxElementId"),
            key(r, "relationshipType"),
            key(r, "relatedSpdxElement"),
        )
    });
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": contents.display_name(),
        "documentNamespace": format!(
            "https://stevedore.invalid/spdx/{}/{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-', "-"),
            image_uuid(contents, "spdx")
        ),
        "creationInfo": { "created": created, "creators": [tool] },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, name)| json!({ "licenseId": id, "name": name, "extractedText": name }))
            .collect();
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_need_every_id() {
        let id = |s: &str| License {
            spdx_id: Some(s.into()),
            name: None,
        };
        assert_eq!(spdx_expression(&[id("MIT")]).unwrap(), "MIT");
        assert_eq!(
            spdx_expression(&[id("MIT"), id("Apache-2.0")]).unwrap(),
            "Apache-2.0 AND MIT"
        );
        let named = License {
            spdx_id: None,
            name: Some("Custom".into()),
        };
        assert!(spdx_expression(&[id("MIT"), named]).is_none());
    }

    #[test]
    fn spdx_ids_keep_only_allowed_characters() {
        assert_eq!(
            spdx_id("/nix/store/abc-gtk+_x-2.24"),
            "SPDXRef-Package-abc-gtk--x-2.24"
        );
    }
}
