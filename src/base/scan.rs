//! Reads layer tars of images stevedore did not write, trusting nothing.
//!
//! A base image may come from anywhere, so every layer is read as hostile:
//! names are normalised and an absolute or `..` name is refused; an entry
//! under a symlink, or a hard link to anything but a file earlier in the
//! same layer, is refused (either could make a later write land outside the
//! root); a header whose checksum is wrong, data shorter than its header
//! says, and an entry kind that cannot be represented are errors; and
//! decompression stops at [`Limits`]. Every error names the layer and the
//! entry.
//!
//! Parsing is the `tar` crate's; what it lets through (any name, any link,
//! short data in a stream) is checked here. The result is a [`View`]: the
//! file system the layers add up to, with whiteouts applied.
//!
//! A layer is read in two phases, so that the layers of an image can be
//! read at once and still add up as if read one after the other:
//! [`read_layer`] reads one layer on its own (decompression, diff_id, every
//! entry and its file's SHA-256, and every check that needs no other layer)
//! into a [`LayerRecord`] of names and metadata; [`View::apply`] then puts
//! the records on the view in layer order, with the checks that need the
//! layers below (a parent that is a symlink or a file there). The error
//! [`View::apply`] reports is the one reading the layer on top of the view
//! in one go would: the record keeps the lookups in the lower layers that
//! came before its first error, in archive order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, HashingReader};

pub use super::guard::MAX_HEADER_DATA;
use super::guard::{Bounded, HeaderGuard, Tee};
pub use super::view::{EntryKind, View, ViewEntry};
use super::view::{key, unkey};

/// Bounds on what one layer may expand to, against compression bombs.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Uncompressed bytes of one layer.
    pub max_layer_bytes: u64,
    /// Past `ratio_floor` uncompressed bytes, a compressed layer may expand
    /// to at most this many times its compressed size.
    pub max_ratio: u64,
    pub ratio_floor: u64,
}

/// The environment variable that lowers or raises
/// [`Limits::max_layer_bytes`].
pub const MAX_LAYER_BYTES_VAR: &str = "STEVEDORE_MAX_LAYER_BYTES";

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_layer_bytes: 64 << 30,
            max_ratio: 1000,
            ratio_floor: 1 << 30,
        }
    }
}

impl Limits {
    /// The defaults, with `STEVEDORE_MAX_LAYER_BYTES` when set.
    pub fn from_env() -> Result<Limits> {
        let mut limits = Limits::default();
        if let Some(v) = std::env::var_os(MAX_LAYER_BYTES_VAR) {
            let text = v.to_string_lossy();
            limits.max_layer_bytes = text.trim().parse().map_err(|_| {
                anyhow::anyhow!("{MAX_LAYER_BYTES_VAR}={text:?} is not a number of bytes")
            })?;
        }
        Ok(limits)
    }
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Normalises an entry name: `./` and `.` components and trailing `/` go;
/// an absolute name or a `..` component is an error. `None` is the root.
pub fn normalise_name(raw: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
    if raw.starts_with(b"/") {
        return Err("is absolute; layer entries must be relative to the root".into());
    }
    if raw.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("has a \"..\" component, which could leave the root".into()),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&b| b == b'/').map(|i| &path[..i])
}

fn base_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// A path as messages show it: cut after [`SHOWN_BYTES`] bytes, so that a
/// hostile name of any length gives a short line.
fn show(path: &[u8]) -> String {
    if path.len() <= SHOWN_BYTES {
        return String::from_utf8_lossy(path).into_owned();
    }
    format!(
        "{}... ({} bytes)",
        String::from_utf8_lossy(&path[..SHOWN_BYTES]),
        path.len()
    )
}

/// How much of a path a message shows.
const SHOWN_BYTES: usize = 256;

/// The longest path an entry may have, in bytes: the kernel's PATH_MAX.
/// Longer ones could not be made on disk, and a path's parents are
/// checked one by one, so this also bounds the work per entry.
pub const MAX_PATH_BYTES: usize = 4096;

/// What reading one layer found besides the entries.
#[derive(Debug, Serialize, Deserialize)]
pub struct LayerScan {
    /// SHA-256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Entries in the layer (whiteouts included).
    pub entries: usize,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

/// One layer read on its own: what it adds and removes, with no file data,
/// and what is left to check against the layers below it.
#[derive(Debug)]
pub struct LayerRecord {
    pub(super) what: String,
    pub(super) changes: Changes,
    /// What the reading found, or the first error that needs no other
    /// layer (nothing after it was read).
    pub found: Result<LayerScan>,
}

impl LayerRecord {
    /// Makes `err`, found after the reading (a blob digest that differs
    /// from its manifest), the record's error, unless it has one already.
    pub fn fail(&mut self, err: anyhow::Error) {
        if self.found.is_ok() {
            self.found = Err(err);
        }
    }
}

/// What a layer's entries do, in the state the end of the layer (or its
/// first error) left them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Changes {
    /// Parent directories of entries that the layer neither holds nor
    /// removes, to be looked up in the layers below: each the first time
    /// the reading came to it, as the entry of `lower_names` it is a
    /// parent of and its length there. Kept as lengths, not copies, so
    /// that memory stays linear in the names however deep they are.
    lower_parents: Vec<(usize, usize)>,
    /// Entries with such parents: the name as shown, and the name.
    lower_names: Vec<(String, Vec<u8>)>,
    /// Entries by key.
    pub(super) entries: BTreeMap<Vec<u8>, ViewEntry>,
    removals: Vec<Removal>,
}

/// Reads one layer (compressed or not) without the layers below it. `what`
/// names the layer in errors; `index` is recorded in the entries; the
/// uncompressed tar is copied to `keep` when given, for reading files back
/// later. The result goes on a view with [`View::apply`].
pub fn read_layer(
    what: &str,
    index: usize,
    blob: impl Read,
    compressed_size: Option<u64>,
    limits: Limits,
    keep: Option<&mut dyn Write>,
) -> LayerRecord {
    let mut changes = Changes::default();
    let found = read_tar(
        &mut changes,
        what,
        index,
        blob,
        compressed_size,
        limits,
        keep,
    );
    LayerRecord {
        what: what.to_owned(),
        changes,
        found,
    }
}

/// Decompresses and reads a layer's tar into `changes`; what it found.
fn read_tar(
    changes: &mut Changes,
    what: &str,
    index: usize,
    mut blob: impl Read,
    compressed_size: Option<u64>,
    limits: Limits,
    keep: Option<&mut dyn Write>,
) -> Result<LayerScan> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match blob.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("{what}: reading")),
        }
    }
    let head = &head[..got];
    let compression = crate::compress::Compression::sniff(head);
    let compressed = compression != crate::compress::Compression::None;
    let raw = io::Cursor::new(head.to_vec()).chain(blob);
    let bounded = Bounded {
        inner: compression
            .decoder(raw)
            .context("starting zstd")
            .with_context(|| what.to_owned())?,
        read: 0,
        compressed_size: if compressed { compressed_size } else { None },
        limits,
        tripped: None,
    };
    let mut tee = Tee {
        inner: bounded,
        copy: keep,
    };
    let mut reader = HashingReader::new(&mut tee);
    let result = read_entries(changes, what, index, &mut HeaderGuard::new(&mut reader));
    // The end of the tar may be followed by padding; it is part of the
    // diff_id.
    let rest = result
        .is_ok()
        .then(|| io::copy(&mut reader, &mut io::sink()));
    let (diff_id, size) = reader.finish();
    if let Some(why) = tee.inner.tripped.take() {
        bail!("{what}: {why}");
    }
    let entries = result?;
    if let Some(Err(e)) = rest {
        bail!("{what}: damaged data ({e})");
    }
    Ok(LayerScan {
        diff_id,
        entries,
        size,
    })
}

impl View {
    /// Puts a layer read with [`read_layer`] on top of the view: the second
    /// phase of reading a layer. Its error is the first of the layer's
    /// lookups in the layers below that fails, else the record's own.
    pub fn apply(&mut self, record: LayerRecord) -> Result<LayerScan> {
        for &(entry, len) in &record.changes.lower_parents {
            let (shown, name) = &record.changes.lower_names[entry];
            let dir = &name[..len];
            if let Some(why) = self.get(dir).and_then(|e| not_a_parent(dir, &e.kind)) {
                bail!("{}: entry {shown:?} {why}", record.what);
            }
        }
        let found = record.found?;
        // Whiteouts hide what the lower layers have; then this layer's
        // entries go on top.
        for removal in record.changes.removals {
            match removal {
                Removal::Path(p) => self.remove_tree(&p),
                Removal::Children(p) => {
                    if p.is_empty() {
                        self.entries.clear();
                    } else {
                        self.remove_children(&p);
                    }
                }
            }
        }
        for (k, e) in record.changes.entries {
            if e.kind != EntryKind::Dir {
                self.remove_tree(&unkey(&k));
            }
            self.entries.insert(k, e);
        }
        Ok(found)
    }
}

/// A whiteout found in a layer.
#[derive(Debug, Serialize, Deserialize)]
enum Removal {
    Path(Vec<u8>),
    Children(Vec<u8>),
}

/// Reads the entries of a layer's tar into `changes`; the number of entries,
/// or the first error that needs no other layer.
fn read_entries(
    changes: &mut Changes,
    what: &str,
    index: usize,
    r: &mut impl Read,
) -> Result<usize> {
    let mut archive = tar::Archive::new(r);
    let Changes {
        lower_parents,
        lower_names,
        entries: layer,
        removals,
    } = changes;
    // Parents already left to the layers below, by the SHA-256 of their
    // path: a second lookup of one would find what the first did.
    let mut lower_seen: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut count = 0usize;
    let mut last = String::from("(none yet)");
    let entries = archive
        .entries()
        .with_context(|| format!("{what}: not a tar archive"))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| anyhow::anyhow!("{what}: broken tar header after entry {last} ({e})"))?;
        count += 1;
        let raw_name = entry.path_bytes().into_owned();
        let shown = show(&raw_name);
        let fail = |why: &str| anyhow::anyhow!("{what}: entry {shown:?} {why}");
        let header = entry.header();
        let ty = header.entry_type();
        if matches!(ty, tar::EntryType::XGlobalHeader) {
            continue;
        }
        let name = normalise_name(&raw_name).map_err(|e| fail(&e))?;
        let Some(name) = name else {
            // The root itself (`./`): nothing to record.
            last = shown;
            continue;
        };
        let mode = header
            .mode()
            .map_err(|e| fail(&format!("has a bad mode ({e})")))?
            & 0o7777;
        let uid = header
            .uid()
            .map_err(|e| fail(&format!("has a bad uid ({e})")))?;
        let gid = header
            .gid()
            .map_err(|e| fail(&format!("has a bad gid ({e})")))?;
        let mtime = header
            .mtime()
            .map_err(|e| fail(&format!("has a bad mtime ({e})")))?;
        let uname = header.username_bytes().unwrap_or_default().to_vec();
        let gname = header.groupname_bytes().unwrap_or_default().to_vec();
        let size = entry.size();
        let offset = entry.raw_file_position();
        let link = entry.link_name_bytes().map(|l| l.into_owned());

        if name.len() > MAX_PATH_BYTES {
            return Err(fail(&format!(
                "has a path of {} bytes; paths longer than {MAX_PATH_BYTES} bytes (the kernel's PATH_MAX) are refused",
                name.len()
            )));
        }
        // Nothing may be written through a symlink or into a file.
        let mut recorded = false;
        let checked = check_parents(layer, removals, &name, |dir, digest| {
            if lower_seen.insert(digest) {
                if !recorded {
                    lower_names.push((shown.clone(), name.clone()));
                    recorded = true;
                }
                lower_parents.push((lower_names.len() - 1, dir.len()));
            }
        });
        checked.map_err(|e| fail(&e))?;

        let file_name = base_name(&name);
        if file_name == OPAQUE {
            let dir = parent(&name).unwrap_or_default().to_vec();
            removals.push(Removal::Children(dir));
            last = shown;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT) {
            if hidden.starts_with(WHITEOUT) {
                // Other aufs metadata (`.wh..wh.plnk`): not a path.
                last = shown;
                continue;
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(fail("is a whiteout of no valid name"));
            }
            let mut target = parent(&name).map(|p| p.to_vec()).unwrap_or_default();
            if !target.is_empty() {
                target.push(b'/');
            }
            target.extend_from_slice(hidden);
            removals.push(Removal::Path(target));
            last = shown;
            continue;
        }

        let mut e = ViewEntry {
            kind: EntryKind::Dir,
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            size: 0,
            link: Vec::new(),
            sha256: None,
            layer: index,
            offset,
        };
        match ty {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                e.kind = EntryKind::File;
                e.size = size;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut read = 0u64;
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(fail(&format!("has damaged data ({e})"))),
                    };
                    hasher.update(&buf[..n]);
                    read += n as u64;
                }
                if read != size {
                    return Err(fail(&format!(
                        "has a header that says {size} bytes, but the archive holds only {read}"
                    )));
                }
                e.sha256 = Some(hasher.finalize().into());
            }
            tar::EntryType::Directory => {
                e.kind = EntryKind::Dir;
            }
            tar::EntryType::Symlink => {
                let target = link.ok_or_else(|| fail("is a symlink without a target"))?;
                if target.is_empty() {
                    return Err(fail("is a symlink with an empty target"));
                }
                e.kind = EntryKind::Symlink;
                e.link = target;
            }
            tar::EntryType::Link => {
                let target = link.ok_or_else(|| fail("is a hard link without a target"))?;
                let target = normalise_name(&target)
                    .map_err(|why| fail(&format!("is a hard link whose target {why}")))?
                    .ok_or_else(|| fail("is a hard link to the root"))?;
                let Some(t) = layer.get(&key(&target)) else {
                    return Err(fail(&format!(
                        "is a hard link to {:?}, which is not a file earlier in the layer",
                        show(&target)
                    )));
                };
                if t.kind != EntryKind::File {
                    return Err(fail(&format!(
                        "is a hard link to {:?}, which is not a regular file",
                        show(&target)
                    )));
                }
                // Hard links are read as copies: the image never holds one.
                let (mode, uid, gid, uname, gname, mtime) = (
                    e.mode,
                    e.uid,
                    e.gid,
                    e.uname.clone(),
                    e.gname.clone(),
                    e.mtime,
                );
                e = t.clone();
                (e.mode, e.uid, e.gid, e.uname, e.gname, e.mtime) =
                    (mode, uid, gid, uname, gname, mtime);
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header
                    .device_major()
                    .ok()
                    .flatten()
                    .ok_or_else(|| fail("is a device without a valid device number"))?;
                let minor = header
                    .device_minor()
                    .ok()
                    .flatten()
                    .ok_or_else(|| fail("is a device without a valid device number"))?;
                e.kind = if ty == tar::EntryType::Char {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                };
            }
            tar::EntryType::Fifo => e.kind = EntryKind::Fifo,
            other => {
                return Err(fail(&format!(
                    "is of tar type {:?}, which an image layer cannot hold",
                    other.as_byte() as char
                )));
            }
        }
        if let Some(prev) = layer.get(&key(&name))
            && prev.kind == EntryKind::Dir
            && e.kind != EntryKind::Dir
        {
            // A later entry replacing a directory of the same layer drops
            // what was under it.
            let mut prefix = key(&name);
            prefix.push(0);
            layer.retain(|k, _| !k.starts_with(&prefix));
        }
        layer.insert(key(&name), e);
        last = shown;
    }
    Ok(count)
}

/// Every parent of `name` must be a directory (or not exist yet) in this
/// layer, or else in the layers below unless this layer removed it. A
/// parent the layer neither holds nor removes goes to `lower`, in order,
/// to be looked up in the layers below ([`View::apply`]).
/// `lower` gets each such parent with the SHA-256 of its path, made as
/// the name is walked, so the hashing is linear in the name and costs
/// nothing for parents the layer holds.
fn check_parents(
    layer: &BTreeMap<Vec<u8>, ViewEntry>,
    removals: &[Removal],
    name: &[u8],
    mut lower: impl FnMut(&[u8], [u8; 32]),
) -> std::result::Result<(), String> {
    use sha2::Digest as _;
    // Fed with `name` up to the parent at hand, each byte once, and
    // finished only for the parents that go to `lower`.
    let mut hasher = sha2::Sha256::new();
    let mut fed = 0;
    let mut end = 0;
    while let Some(i) = name[end..].iter().position(|&b| b == b'/') {
        let dir = &name[..end + i];
        end += i + 1;
        if let Some(e) = layer.get(&key(dir)) {
            if let Some(why) = not_a_parent(dir, &e.kind) {
                return Err(why);
            }
            continue;
        }
        let removed = removals.iter().any(|r| match r {
            Removal::Path(p) => {
                dir == p.as_slice() || dir.starts_with(&[p.as_slice(), b"/"].concat())
            }
            Removal::Children(p) => p.is_empty() || dir.starts_with(&[p.as_slice(), b"/"].concat()),
        });
        if !removed {
            hasher.update(&dir[fed..]);
            fed = dir.len();
            lower(dir, hasher.clone().finalize().into());
        }
    }
    Ok(())
}

/// Why an entry cannot be below `dir`, which is a `kind`.
fn not_a_parent(dir: &[u8], kind: &EntryKind) -> Option<String> {
    match kind {
        EntryKind::Dir => None,
        EntryKind::Symlink => Some(format!(
            "is below {:?}, a symlink: writing through it could leave the root",
            show(dir)
        )),
        _ => Some(format!(
            "is below {:?}, which is not a directory",
            show(dir)
        )),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `(name, type, data, link target)`.
    pub(in crate::base) type Spec<'a> = (&'a str, tar::EntryType, &'a [u8], &'a str);

    /// A GNU tar of `entries`, every one with `mode`, `mtime` and root's
    /// ids, names written as given (`..` and all): the layers of the
    /// base's tests.
    pub(in crate::base) fn gnu_tar(entries: &[Spec], mode: u32, mtime: u64) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, ty, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A layer's entries written on one line, `; ` between them, each
    /// `KIND NAME [DATA or TARGET]` with KIND `d` (directory), `f` (file,
    /// the rest of the entry its data), `l` (symlink), `h` (hard link) or
    /// `p` (fifo).
    pub(in crate::base) fn entries(line: &str) -> Vec<Spec<'_>> {
        use tar::EntryType::*;
        line.split("; ")
            .map(|entry| {
                let (kind, rest) = entry.split_once(' ').unwrap();
                let (name, more) = rest.split_once(' ').unwrap_or((rest, ""));
                match kind {
                    "d" => (name, Directory, &b""[..], ""),
                    "f" => (name, Regular, more.as_bytes(), ""),
                    "l" => (name, Symlink, &b""[..], more),
                    "h" => (name, Link, &b""[..], more),
                    "p" => (name, Fifo, &b""[..], ""),
                    _ => panic!("unknown entry kind {kind:?} in {entry:?}"),
                }
            })
            .collect()
    }

    fn tar_of(entries: &[Spec]) -> Vec<u8> {
        gnu_tar(entries, 0o644, 1)
    }

    fn tar_of_line(line: &str) -> Vec<u8> {
        tar_of(&entries(line))
    }

    fn scan(view: &mut View, bytes: &[u8]) -> Result<LayerScan> {
        view.apply(read_layer("layer", 0, bytes, None, Limits::default(), None))
    }

    #[test]
    fn whiteouts_hide_lower_paths() {
        let mut v = View::default();
        scan(
            &mut v,
            &tar_of_line("d etc/; f etc/a a; f etc/b b; d opt/; d opt/x/; f opt/x/y y"),
        )
        .unwrap();
        scan(
            &mut v,
            &tar_of_line("f etc/.wh.a; f opt/.wh..wh..opq; f opt/z z"),
        )
        .unwrap();
        let paths: Vec<String> = v.iter().map(|(p, _)| show(&p)).collect();
        assert_eq!(paths, ["etc", "etc/b", "opt", "opt/z"]);
    }

    #[test]
    fn hostile_names_and_links_are_refused() {
        use tar::EntryType::*;
        let cases: &[(&[Spec], &str)] = &[
            (&[("x/../../etc", Regular, b"", "")], "\"..\""),
            (
                &[("l", Symlink, b"", "/etc"), ("l/passwd", Regular, b"x", "")],
                "a symlink",
            ),
            (&[("h", Link, b"", "../etc/passwd")], "\"..\""),
            (&[("h", Link, b"", "missing")], "not a file earlier"),
        ];
        for (entries, want) in cases {
            let err = format!(
                "{:#}",
                scan(&mut View::default(), &raw_tar(entries)).unwrap_err()
            );
            assert!(err.contains(want), "{err}");
        }
    }

    /// A tar whose names are written as given, `..` and all.
    fn raw_tar(entries: &[Spec]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, ty, data, link) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*ty);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_size(data.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn absolute_names_are_refused() {
        let err = format!(
            "{:#}",
            scan(
                &mut View::default(),
                &raw_tar(&[("/etc/passwd", tar::EntryType::Regular, b"x", "")])
            )
            .unwrap_err()
        );
        assert!(err.contains("\"/etc/passwd\" is absolute"), "{err}");
    }

    #[test]
    fn short_data_and_bad_checksums_are_refused() {
        let mut bytes = raw_tar(&[("a", tar::EntryType::Regular, &[7u8; 2000], "")]);
        bytes.truncate(512 + 1000);
        let err = format!("{:#}", scan(&mut View::default(), &bytes).unwrap_err());
        assert!(err.contains("\"a\"") && err.contains("2000 bytes"), "{err}");

        let mut bytes = raw_tar(&[
            ("a", tar::EntryType::Regular, b"x", ""),
            ("b", tar::EntryType::Regular, b"y", ""),
        ]);
        bytes[1024 + 150] ^= 1;
        let err = format!("{:#}", scan(&mut View::default(), &bytes).unwrap_err());
        assert!(err.contains("after entry a"), "{err}");
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let data = vec![0u8; 4 << 20];
        let tar = tar_of(&[("zeros", tar::EntryType::Regular, &data, "")]);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let refused = |limits: Limits| {
            let err = View::default()
                .apply(read_layer(
                    "layer 1",
                    0,
                    &gz[..],
                    Some(gz.len() as u64),
                    limits,
                    None,
                ))
                .unwrap_err();
            format!("{err:#}")
        };
        let err = refused(Limits {
            max_layer_bytes: 1 << 20,
            ..Limits::default()
        });
        assert!(err.contains("more than 1048576 bytes"), "{err}");
        let err = refused(Limits {
            ratio_floor: 1 << 20,
            ..Limits::default()
        });
        assert!(err.contains("compression bomb"), "{err}");
    }

    /// A valid GNU long-name header (`L`) that claims `size` bytes.
    fn long_name_header(size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_size(size);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn huge_long_names_are_refused_before_they_are_read() {
        let mut bytes = raw_tar(&[("a", tar::EntryType::Regular, b"x", "")]);
        bytes.truncate(1024);
        bytes.extend_from_slice(&long_name_header(1 << 40));
        bytes.extend_from_slice(&[b'n'; 4096]);
        let err = format!("{:#}", scan(&mut View::default(), &bytes).unwrap_err());
        assert!(
            err.contains("after entry a") && err.contains("GNU long name of 1099511627776 bytes"),
            "{err}"
        );
    }

    #[test]
    fn header_guard_follows_pax_sizes_and_skips_file_data() {
        // A file whose data looks like a huge long-name header, then one
        // whose size only a PAX record gives (the ustar field says 0), its
        // data the same lookalike: neither is a header.
        let fake = long_name_header(1 << 40);
        let mut data = fake.clone();
        data.extend_from_slice(&[7u8; 88]);
        let mut bytes = raw_tar(&[("a", tar::EntryType::Regular, &data, "")]);
        bytes.truncate(bytes.len() - 1024);
        assert_eq!(data.len(), 600);
        let record = "12 size=600\n".to_owned();
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_path("pax").unwrap();
        pax.set_mode(0o644);
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        bytes.extend_from_slice(pax.as_bytes());
        let mut rec = record.into_bytes();
        rec.resize(512, 0);
        bytes.extend_from_slice(&rec);
        let mut h = tar::Header::new_ustar();
        h.set_path("b").unwrap();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(0);
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        let mut padded = data.clone();
        padded.resize(1024, 0);
        bytes.extend_from_slice(&padded);
        bytes.extend_from_slice(&[0; 1024]);
        let mut v = View::default();
        scan(&mut v, &bytes).unwrap();
        assert_eq!(v.get(b"a").unwrap().size, data.len() as u64);
        assert_eq!(v.get(b"b").unwrap().size, data.len() as u64);
    }

    #[test]
    fn diff_id_is_the_tar_digest() {
        let tar = tar_of(&[("a", tar::EntryType::Regular, b"x", "")]);
        let got = scan(&mut View::default(), &tar).unwrap();
        assert_eq!(got.diff_id, Digest::of(&tar));
    }
}
