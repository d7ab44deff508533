//! Which entries a layer holds, in which order, and how many bytes its tar
//! takes, all learnt from metadata (`lstat`, `readlink`) before any file is
//! read. This is the one place that orders entries: directory listings are
//! sorted here, by name bytes, and nowhere else.
//!
//! Order: a depth-first walk with each directory's children sorted by name,
//! so entries are sorted by path compared component by component, and every
//! parent comes before its children.
//!
//! A plan holds the entries of customisation trees (few), and those of
//! store paths up to [`KEPT_ENTRIES`]. A layer with more (a closure may
//! have millions of files) keeps none: their sizes are summed by one walk,
//! and [`LayerPlan::each_entry`] walks them again as the layer is written,
//! so a layer takes memory for one directory listing per level, not for
//! every entry. The store does not change; an entry that did is caught by
//! the writer, which compares a fingerprint of every entry's header with
//! the plan's.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Owner;
use super::header::{self, Header};
use crate::entry::EntryKind;
use crate::spec::EntryMetadata;

/// Whose ownership an entry carries: the spec's store owner, root, or
/// ids recorded for a customisation entry (by `fakeRootCommands`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Store,
    Root,
    Ids { uid: u64, gid: u64 },
}

/// One entry of a layer, with everything its header needs.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path in the tar: relative, directories end in `/`.
    pub name: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub size: u64,
    pub link: Vec<u8>,
    /// Where a file's content is read from.
    pub source: Option<PathBuf>,
    pub role: Role,
}

/// What goes into one layer, as the image plan decided it.
#[derive(Clone, Debug, Default)]
pub struct LayerSource {
    /// Store paths, normalised, sorted, none of them in a lower layer.
    pub store_paths: Vec<PathBuf>,
    /// Directory trees whose contents are merged into `/`.
    pub trees: Vec<PathBuf>,
    /// Names of the store paths held by this or a lower layer; a tree entry
    /// under one of them is compared with the store rather than written.
    pub covered: BTreeSet<OsString>,
    /// Modes and owners of entries by destination, over the trees' (and,
    /// for nix2container's `perms`, over the store's).
    pub metadata: BTreeMap<String, EntryMetadata>,
    /// The base image's file system: a tree entry it already has, alike in
    /// kind, mode, owner and content, is not written again.
    pub base: Option<std::sync::Arc<crate::base::View>>,
}

/// Settings that shape every layer's bytes.
#[derive(Clone, Debug)]
pub struct LayerSettings {
    /// Absolute, normalised store directory (`/nix/store`).
    pub store_dir: PathBuf,
    pub mtime: u64,
    pub store_owner: Owner,
}

impl LayerSettings {
    pub fn owner(&self, role: Role) -> Cow<'_, Owner> {
        match role {
            Role::Store => Cow::Borrowed(&self.store_owner),
            Role::Root => Cow::Owned(Owner::root()),
            Role::Ids { uid: 0, gid: 0 } => Cow::Owned(Owner::root()),
            // Numeric ids only: the image's /etc/passwd names them.
            Role::Ids { uid, gid } => Cow::Owned(Owner {
                uid,
                gid,
                uname: String::new(),
                gname: String::new(),
            }),
        }
    }

    /// The header an entry is written with.
    pub fn header<'a>(&self, entry: &'a Entry, owner: &'a Owner) -> Header<'a> {
        Header {
            name: &entry.name,
            kind: entry.kind,
            mode: entry.mode,
            size: entry.size,
            link: &entry.link,
            mtime: self.mtime,
            owner,
        }
    }
}

/// Store entries a plan keeps, rather than walking the store again when
/// the layer is written: about 16 MiB of them, a walk's worth of `lstat`
/// saved on every layer but the largest. Unit tests keep two, so that
/// their small stores are walked again.
const KEPT_ENTRIES: usize = if cfg!(test) { 2 } else { 65_536 };

/// A layer's entries and the exact size of its tar.
#[derive(Debug)]
pub struct LayerPlan {
    /// The store directory and its parents, before the store paths.
    head: Vec<Entry>,
    /// Store paths, walked when the layer is written.
    store_paths: Vec<PathBuf>,
    /// The store paths' entries, when there are at most [`KEPT_ENTRIES`].
    store_entries: Option<Vec<Entry>>,
    /// Modes and owners of store entries (nix2container's `perms` on a
    /// store path), by destination.
    store_metadata: BTreeMap<String, EntryMetadata>,
    /// The customisation trees' entries, after the store paths'.
    tail: Vec<Entry>,
    pub size: u64,
    /// [`Fingerprint`] of every entry, as planned.
    pub fingerprint: u64,
}

/// A hash of entries' names, kinds, modes, sizes and link targets, in
/// order: equal for the plan's walk and the writer's when nothing changed
/// between them. Only ever compared within one process.
#[derive(Default)]
pub struct Fingerprint(std::hash::DefaultHasher);

impl Fingerprint {
    pub fn add(&mut self, e: &Entry) {
        use std::hash::Hash;
        (&e.name, e.kind, e.mode, e.size, &e.link).hash(&mut self.0);
    }

    pub fn value(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

impl LayerPlan {
    /// Hands every entry of the layer to `f`, in the layer's order.
    pub fn each_entry(&self, mut f: impl FnMut(Entry) -> Result<()>) -> Result<()> {
        for entry in &self.head {
            f(entry.clone())?;
        }
        if let Some(entries) = &self.store_entries {
            for entry in entries {
                f(entry.clone())?;
            }
        } else {
            let store = StoreWalk {
                paths: &self.store_paths,
                metadata: &self.store_metadata,
            };
            store.each_entry(&mut f)?;
        }
        for entry in &self.tail {
            f(entry.clone())?;
        }
        Ok(())
    }
}

/// Walks a layer's sources and plans its tar.
pub fn plan_layer(ctx: &LayerSettings, source: &LayerSource) -> Result<LayerPlan> {
    let mut head = Vec::new();
    let mut size = 2 * header::BLOCK;
    let mut fingerprint = Fingerprint::default();
    let mut store_entries = Some(Vec::new());
    if !source.store_paths.is_empty() {
        // The store directory and its parents, so the layer unpacks on an
        // empty root. A layer without store paths has none of them: an
        // empty `/nix` in a layer breaks overlayfs.
        let rel = relative(&ctx.store_dir);
        let mut name = Vec::new();
        for component in rel.components() {
            name.extend_from_slice(component.as_os_str().as_bytes());
            name.push(b'/');
            head.push(dir_entry(name.clone(), 0o755, Role::Root));
        }
        head.iter().for_each(|e| fingerprint.add(e));
        let store = StoreWalk {
            paths: &source.store_paths,
            metadata: &source.metadata,
        };
        store.each_entry(&mut |e| {
            size += header::entry_len(&ctx.header(&e, &ctx.owner(e.role)));
            fingerprint.add(&e);
            if let Some(kept) = &mut store_entries {
                if kept.len() < KEPT_ENTRIES {
                    kept.push(e);
                } else {
                    store_entries = None;
                }
            }
            Ok(())
        })?;
    }
    let mut tail = Vec::new();
    if !source.trees.is_empty() {
        let trees = source
            .trees
            .iter()
            .map(|t| {
                let md = fs::symlink_metadata(t)
                    .with_context(|| format!("reading customisation tree {}", t.display()))?;
                if !md.is_dir() {
                    bail!("customisation tree {} is not a directory", t.display());
                }
                Ok(t.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        Merge { ctx, source }.merge(Vec::new(), &trees, &mut tail)?;
    }
    for e in head.iter().chain(&tail) {
        size += header::entry_len(&ctx.header(e, &ctx.owner(e.role)));
    }
    tail.iter().for_each(|e| fingerprint.add(e));
    Ok(LayerPlan {
        head,
        store_paths: source.store_paths.clone(),
        store_entries,
        store_metadata: store_metadata(source),
        tail,
        size,
        fingerprint: fingerprint.value(),
    })
}

/// The store paths of a layer, walked in order.
struct StoreWalk<'a> {
    paths: &'a [PathBuf],
    metadata: &'a BTreeMap<String, EntryMetadata>,
}

impl StoreWalk<'_> {
    /// Hands `f` every entry of the store paths; those the metadata names
    /// take its mode and owner.
    fn each_entry(&self, f: &mut impl FnMut(Entry) -> Result<()>) -> Result<()> {
        for path in self.paths {
            walk(
                path,
                relative(path).as_os_str().as_bytes().to_vec(),
                &mut |mut e| {
                    if !self.metadata.is_empty() {
                        apply_metadata(self.metadata, &mut e);
                    }
                    f(e)
                },
            )?;
        }
        Ok(())
    }
}

/// The metadata of entries below the layer's store paths: what the second
/// walk needs of `source.metadata`.
fn store_metadata(source: &LayerSource) -> BTreeMap<String, EntryMetadata> {
    let names: Vec<String> = source
        .store_paths
        .iter()
        .map(|p| relative(p).to_string_lossy().into_owned())
        .collect();
    source
        .metadata
        .iter()
        .filter(|(dest, _)| {
            names.iter().any(|n| {
                dest.strip_prefix(n.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Gives `entry` the mode (but to a symlink) and owner `metadata`
/// records for its path.
fn apply_metadata(metadata: &BTreeMap<String, EntryMetadata>, entry: &mut Entry) {
    let dest = String::from_utf8_lossy(&entry.name);
    if let Some(m) = metadata.get(dest.trim_end_matches('/')) {
        if entry.kind != EntryKind::Symlink {
            entry.mode = m.mode & 0o7777;
        }
        entry.role = Role::Ids {
            uid: m.uid,
            gid: m.gid,
        };
    }
}

/// `/nix/store/x` -> `nix/store/x`.
fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

fn dir_entry(mut name: Vec<u8>, mode: u32, role: Role) -> Entry {
    if !name.ends_with(b"/") {
        name.push(b'/');
    }
    Entry {
        name,
        kind: EntryKind::Dir,
        mode,
        size: 0,
        link: Vec::new(),
        source: None,
        role,
    }
}

/// The entry for one filesystem object, without descending into it.
fn entry_for(path: &Path, md: &Metadata, name: Vec<u8>, role: Role) -> Result<Entry> {
    let mode = md.permissions().mode() & 0o7777;
    let ft = md.file_type();
    let entry = if ft.is_symlink() {
        let target =
            fs::read_link(path).with_context(|| format!("reading symlink {}", path.display()))?;
        Entry {
            name,
            kind: EntryKind::Symlink,
            mode,
            size: 0,
            link: target.into_os_string().into_vec(),
            source: None,
            role,
        }
    } else if ft.is_dir() {
        dir_entry(name, mode, role)
    } else if ft.is_file() {
        Entry {
            name,
            kind: EntryKind::File,
            mode,
            size: md.len(),
            link: Vec::new(),
            source: Some(path.to_owned()),
            role,
        }
    } else {
        let what = if ft.is_socket() {
            "a socket"
        } else if ft.is_fifo() {
            "a fifo"
        } else {
            "a device"
        };
        bail!(
            "{} is {what}; layers hold only files, directories and symlinks",
            path.display()
        );
    };
    Ok(entry)
}

/// A directory's children, sorted by name bytes: the order of every layer.
fn sorted_children(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn lstat(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))
}

/// Hands `f` the entry of `path` and, for a directory, those of
/// everything below it. Symlinks are never followed, also when `path`
/// itself is one.
fn walk(path: &Path, name: Vec<u8>, f: &mut impl FnMut(Entry) -> Result<()>) -> Result<()> {
    let md = lstat(path)?;
    let entry = entry_for(path, &md, name, Role::Store)?;
    let is_dir = entry.kind == EntryKind::Dir;
    let dir_name = is_dir.then(|| entry.name.clone());
    f(entry)?;
    if let Some(dir_name) = dir_name {
        for child in sorted_children(path)? {
            let mut child_name = dir_name.clone();
            child_name.extend_from_slice(child.as_bytes());
            walk(&path.join(&child), child_name, f)?;
        }
    }
    Ok(())
}

/// Merges customisation trees into one root.
struct Merge<'a> {
    ctx: &'a LayerSettings,
    source: &'a LayerSource,
}

/// Where a tree entry's destination is already provided by the store.
enum Covered {
    No,
    /// The store directory or one of its parents: a directory already there.
    StoreDir,
    /// Inside a store path of this or a lower layer, at this host path.
    StorePath(PathBuf),
}

impl Merge<'_> {
    /// `rel` is the destination without leading `/` (empty for the root);
    /// `dirs` are the source directories that all land on it.
    fn merge(&self, rel: Vec<u8>, dirs: &[PathBuf], out: &mut Vec<Entry>) -> Result<()> {
        let mut children: BTreeMap<Vec<u8>, Vec<PathBuf>> = BTreeMap::new();
        for dir in dirs {
            for name in sorted_children(dir)? {
                let path = dir.join(&name);
                children.entry(name.into_vec()).or_default().push(path);
            }
        }
        for (name, sources) in children {
            let mut dest = rel.clone();
            if !dest.is_empty() {
                dest.push(b'/');
            }
            dest.extend_from_slice(&name);
            let metas = sources
                .iter()
                .map(|p| lstat(p))
                .collect::<Result<Vec<_>>>()?;
            let covered = self.covered(&dest);
            if metas.iter().all(|m| m.is_dir()) {
                match &covered {
                    Covered::No => {
                        let entry = self.recorded(dir_entry(
                            dest.clone(),
                            metas[0].permissions().mode() & 0o7777,
                            Role::Root,
                        ));
                        if !self.in_base(&entry)? {
                            out.push(entry);
                        }
                    }
                    // The store layers made it 0755 and root's; metadata
                    // that says otherwise (the Nix database's owner, so
                    // that Nix can add paths) writes it again on top.
                    Covered::StoreDir => {
                        let dest_str = String::from_utf8_lossy(&dest);
                        if let Some(m) = self.source.metadata.get(dest_str.as_ref())
                            && (m.mode & 0o7777, m.uid, m.gid) != (0o755, 0, 0)
                        {
                            out.push(self.recorded(dir_entry(dest.clone(), 0o755, Role::Root)));
                        }
                    }
                    Covered::StorePath(store) => {
                        if !fs::symlink_metadata(store).is_ok_and(|m| m.is_dir()) {
                            bail!(
                                "/{} is a directory in customisation tree {} but not in the store path of a lower layer",
                                String::from_utf8_lossy(&dest),
                                sources[0].display()
                            );
                        }
                    }
                }
                self.merge(dest, &sources, out)?;
                continue;
            }
            for other in &sources[1..] {
                if !same_content(&sources[0], other)? {
                    bail!(
                        "/{} comes from both {} and {} with different content",
                        String::from_utf8_lossy(&dest),
                        sources[0].display(),
                        other.display()
                    );
                }
            }
            match covered {
                Covered::No => {
                    let entry = self.recorded(entry_for(&sources[0], &metas[0], dest, Role::Root)?);
                    if !self.in_base(&entry)? {
                        out.push(entry);
                    }
                }
                Covered::StorePath(store) => {
                    if fs::symlink_metadata(&store).is_err() {
                        bail!(
                            "/{} from customisation tree {} would add to a store path of a lower layer",
                            String::from_utf8_lossy(&dest),
                            sources[0].display()
                        );
                    }
                    if !same_content(&sources[0], &store)? {
                        bail!(
                            "/{} from customisation tree {} differs from the store path in a lower layer",
                            String::from_utf8_lossy(&dest),
                            sources[0].display()
                        );
                    }
                }
                Covered::StoreDir => bail!(
                    "/{} from customisation tree {} would replace the store directory",
                    String::from_utf8_lossy(&dest),
                    sources[0].display()
                ),
            }
        }
        Ok(())
    }

    /// The entry with the mode and owner the metadata records for it.
    fn recorded(&self, mut entry: Entry) -> Entry {
        apply_metadata(&self.source.metadata, &mut entry);
        entry
    }

    /// Whether the base image already has this entry at its path, alike in
    /// kind, mode, owner and content: then the layer leaves it out.
    fn in_base(&self, entry: &Entry) -> Result<bool> {
        let Some(view) = &self.source.base else {
            return Ok(false);
        };
        let path = entry.name.strip_suffix(b"/").unwrap_or(&entry.name);
        let Some(have) = view.get(path) else {
            return Ok(false);
        };
        let owner = self.ctx.owner(entry.role);
        if (have.uid, have.gid) != (owner.uid, owner.gid) {
            return Ok(false);
        }
        Ok(match entry.kind {
            EntryKind::Dir => have.kind == EntryKind::Dir && have.mode == entry.mode,
            EntryKind::Symlink => have.kind == EntryKind::Symlink && have.link == entry.link,
            EntryKind::File => {
                have.kind == EntryKind::File
                    && have.mode == entry.mode
                    && have.size == entry.size
                    && match (&entry.source, have.sha256) {
                        (Some(src), Some(want)) => file_sha256(src)? == want,
                        _ => false,
                    }
            }
            EntryKind::CharDevice { major, minor } => {
                have.kind == EntryKind::CharDevice { major, minor } && have.mode == entry.mode
            }
            EntryKind::BlockDevice { major, minor } => {
                have.kind == EntryKind::BlockDevice { major, minor } && have.mode == entry.mode
            }
            EntryKind::Fifo => have.kind == EntryKind::Fifo && have.mode == entry.mode,
        })
    }

    fn covered(&self, dest: &[u8]) -> Covered {
        if self.source.covered.is_empty() {
            return Covered::No;
        }
        let store = relative(&self.ctx.store_dir).as_os_str().as_bytes();
        if store.starts_with(dest) && (store.len() == dest.len() || store[dest.len()] == b'/') {
            return Covered::StoreDir;
        }
        let Some(rest) = dest.strip_prefix(store).and_then(|r| r.strip_prefix(b"/")) else {
            return Covered::No;
        };
        let top = rest.split(|&b| b == b'/').next().unwrap_or_default();
        if self
            .source
            .covered
            .contains(&OsString::from_vec(top.to_vec()))
        {
            let mut host = b"/".to_vec();
            host.extend_from_slice(dest);
            Covered::StorePath(PathBuf::from(OsString::from_vec(host)))
        } else {
            Covered::No
        }
    }
}

/// Whether two non-directory objects would give the same entry: same kind,
/// same mode, and the same bytes or link target.
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (ma, mb) = (lstat(a)?, lstat(b)?);
    let (ta, tb) = (ma.file_type(), mb.file_type());
    if ta.is_symlink() || tb.is_symlink() {
        return Ok(ta.is_symlink()
            && tb.is_symlink()
            && fs::read_link(a).with_context(|| format!("reading symlink {}", a.display()))?
                == fs::read_link(b)
                    .with_context(|| format!("reading symlink {}", b.display()))?);
    }
    if !(ta.is_file() && tb.is_file())
        || ma.len() != mb.len()
        || ma.permissions().mode() & 0o7777 != mb.permissions().mode() & 0o7777
    {
        return Ok(false);
    }
    let open = |p: &Path| fs::File::open(p).with_context(|| format!("reading {}", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba).with_context(|| format!("reading {}", a.display()))?;
        let m = read_full(&mut fb, &mut bb).with_context(|| format!("reading {}", b.display()))?;
        if ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// The SHA-256 of a file's content.
fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hashing = crate::digest::HashingWriter::new(io::sink());
    io::copy(&mut f, &mut hashing).with_context(|| format!("reading {}", path.display()))?;
    let (_, digest, _) = hashing.finish();
    let mut out = [0u8; 32];
    hex::decode_to_slice(digest.hex(), &mut out).expect("a digest is 64 hex digits");
    Ok(out)
}

/// Reads until `buf` is full or the file ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
