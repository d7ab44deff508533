//! Tar bytes: reading an archive's members, and writing archives entry by
//! entry, raw ustar headers included where the `tar` crate refuses a name.

use std::fs;
use std::path::Path;

/// The members of a tar file by name (without `./`), with their data.
pub fn tar_members(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read as _;
    let mut out = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(name.trim_start_matches("./").to_owned(), data);
    }
    out
}

/// One raw tar entry: a ustar header with the name and link target as
/// given (`..`, leading `/` and all), then the data. `size` overrides the
/// size the header states.
pub fn raw_entry(name: &str, kind: u8, data: &[u8], link: &str, size: Option<u64>) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_size(size.unwrap_or(data.len() as u64));
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// A layer tar of raw entries, with the end-of-archive blocks.
pub fn raw_layer(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = entries.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

/// Members of an outer archive: `(name, bytes)`.
pub type Members = Vec<(String, Vec<u8>)>;

/// Members of an outer archive, written with the `tar` crate.
pub fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(1);
        b.append_data(&mut h, name, &bytes[..]).unwrap();
    }
    b.into_inner().unwrap()
}
