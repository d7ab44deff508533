//! The helper's shape: every `crate::` path in `src/` goes to a module of a
//! lower layer than its own, as the table of `docs/architecture.md` says,
//! and every module of `src/` has a row there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::support::nix::REPO;

/// The layer of every module, from the table of docs/architecture.md.
fn layers() -> BTreeMap<String, u32> {
    let doc = fs::read_to_string(Path::new(REPO).join("docs/architecture.md")).unwrap();
    let mut layers = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | layer | `module` | owns |
        if let [_, layer, module, _, _] = cells.as_slice()
            && let Ok(layer) = layer.parse::<u32>()
        {
            let module = module.trim_matches('`').to_owned();
            assert!(
                layers.insert(module.clone(), layer).is_none(),
                "{module} has two rows in docs/architecture.md"
            );
        }
    }
    assert!(
        !layers.is_empty(),
        "docs/architecture.md has no layer table"
    );
    layers
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a line of code names through `crate::`: paths
/// (`crate::a::b`) and groups (`crate::{a, b::c}`). Comments are not code.
fn used_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let before = rest[..at].chars().last();
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` or a longer name
        }
        if let Some(group) = after.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        } else {
            found.push(
                after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

#[test]
fn imports_follow_the_layer_order() {
    let layers = layers();
    let src = Path::new(REPO).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        modules.insert(module.clone());
        let Some(&own) = layers.get(&module) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for used in used_modules(line) {
                if used == module {
                    continue;
                }
                match layers.get(&used) {
                    Some(&layer) if layer < own => {}
                    Some(&layer) => wrong.push(format!(
                        "{}:{}: {module} (layer {own}) uses {used} (layer {layer})",
                        file.strip_prefix(REPO).unwrap().display(),
                        n + 1
                    )),
                    None => wrong.push(format!(
                        "{}:{}: {used} has no row in docs/architecture.md",
                        file.strip_prefix(REPO).unwrap().display(),
                        n + 1
                    )),
                }
            }
        }
    }
    let unlisted: Vec<&String> = modules
        .iter()
        .filter(|m| !layers.contains_key(*m))
        .collect();
    assert!(
        unlisted.is_empty(),
        "modules of src/ without a row in docs/architecture.md: {unlisted:?}"
    );
    let gone: Vec<&String> = layers.keys().filter(|m| !modules.contains(*m)).collect();
    assert!(
        gone.is_empty(),
        "rows of docs/architecture.md for modules src/ does not have: {gone:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layer order of docs/architecture.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_of_imports_sees_paths_and_groups() {
    assert_eq!(used_modules("use crate::image::Image;"), ["image"]);
    assert_eq!(
        used_modules("use crate::{base, oci::Platform, self};"),
        ["base", "oci"]
    );
    assert_eq!(
        used_modules("    let x = crate::pool::map(1, 2, f); // crate::cli"),
        ["pool"]
    );
    assert!(used_modules("$crate::x and mycrate::y").is_empty());
}
