//! What `runAsRoot` changed in a root filesystem, as an image layer: the
//! tree is snapshotted (per path: kind, mode, owner, size, times, inode,
//! symlink target) before and after, and the difference is written as a
//! directory in the OCI layer convention (created and changed entries with
//! their content, `.wh.NAME` for deletions, `.wh..wh..opq` for replaced
//! directories).
//!
//! Comparing `lstat` results, rather than contents, finds every change the
//! script made, including a `chmod`, a `chown` or a rewrite with the same
//! bytes (they change the ctime), and nothing it did not touch: a file
//! extracted from a base image and left alone keeps its inode and ctime.
//! Directories are compared by inode, mode and owner only: their times
//! change whenever an entry is added or removed, and those entries are
//! compared themselves.
//!
//! In a namespace that maps one id, a chown changes nothing on disk; its
//! owner is recorded ([`super::chown`]) and set on the entries of the
//! after-snapshot with that inode ([`Snapshot::record_owners`]), which
//! gives them that owner in the layer. The owners of the base that could
//! not be given at extraction are set on the before-snapshot the same
//! way, so an entry is a change when its recorded owner differs.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::chown::{Owners, RecordedOwner};
use crate::spec::EntryMetadata;

/// The kind of a tree entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
    Symlink,
    /// A device, fifo or socket, named for messages.
    Special(&'static str),
}

/// One entry's `lstat`, as far as a layer cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub dev: u64,
    pub ino: u64,
    pub target: Option<PathBuf>,
    /// The owner a recorded chown gave it, over `uid` and `gid`.
    pub chowned: Option<RecordedOwner>,
}

impl Node {
    fn from_metadata(path: &Path, md: &fs::Metadata) -> Result<Node> {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else {
            use std::os::unix::fs::FileTypeExt;
            NodeKind::Special(if ft.is_char_device() {
                "character device"
            } else if ft.is_block_device() {
                "block device"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            })
        };
        let target = if kind == NodeKind::Symlink {
            Some(fs::read_link(path).with_context(|| format!("reading {}", path.display()))?)
        } else {
            None
        };
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ok(Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            ctime_ns: ns(md.ctime(), md.ctime_nsec()),
            dev: md.dev(),
            ino: md.ino(),
            target,
            chowned: None,
        })
    }

    /// Its owner in the image: the recorded chown's, over `owner` of the
    /// ids on disk.
    pub fn image_owner(&self, owner: &dyn Fn(u32, u32) -> (u64, u64)) -> (u64, u64) {
        let (uid, gid) = owner(self.uid, self.gid);
        match self.chowned {
            Some(chowned) => (
                chowned.uid.map_or(uid, u64::from),
                chowned.gid.map_or(gid, u64::from),
            ),
            None => (uid, gid),
        }
    }

    fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }
}

/// Every entry below a root, keyed by its path relative to the root
/// (`etc/passwd`); the root itself is not an entry.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub entries: BTreeMap<String, Node>,
}

impl Snapshot {
    /// Gives every entry whose inode a chown was recorded for that owner.
    pub fn record_owners(&mut self, owners: &Owners) {
        if owners.is_empty() {
            return;
        }
        for entry in self.entries.values_mut() {
            if let Some(owner) = owners.get(&(entry.dev, entry.ino)) {
                entry.chowned = Some(*owner);
            }
        }
    }
}

/// Walks `root` without following symlinks. A directory the build user
/// cannot read (made by the script with mode 0 in a namespace where it is
/// the build user) is made readable after its `lstat` is taken.
pub fn snapshot(root: &Path) -> Result<Snapshot> {
    fn walk(dir: &Path, rel: &str, entries: &mut BTreeMap<String, Node>) -> Result<()> {
        let listing = match fs::read_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let mode = fs::symlink_metadata(dir)?.mode();
                fs::set_permissions(dir, fs::Permissions::from_mode((mode & 0o7777) | 0o700))
                    .with_context(|| format!("reading {}", dir.display()))?;
                fs::read_dir(dir)
            }
            other => other,
        }
        .with_context(|| format!("reading {}", dir.display()))?;
        let mut names = listing
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let name = name.to_str().with_context(|| {
                format!(
                    "{}: file names in the customisation layer must be UTF-8",
                    path.display()
                )
            })?;
            let rel = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let md = fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let entry = Node::from_metadata(&path, &md)?;
            let is_dir = entry.is_dir();
            entries.insert(rel.clone(), entry);
            if is_dir {
                walk(&path, &rel, entries)?;
            }
        }
        Ok(())
    }
    let mut entries = BTreeMap::new();
    walk(root, "", &mut entries)?;
    Ok(Snapshot { entries })
}

/// What goes at a path of the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The entry as the tree has it after the script (for a directory,
    /// the directory alone: its entries are listed on their own).
    FromTree,
    /// An empty file whose name marks a whiteout: `.wh.NAME` or
    /// `.wh..wh..opq`.
    Marker,
}

/// The layer that turns `before` into `after`, by path relative to the
/// root.
pub type Layer = BTreeMap<String, Emit>;

const OPAQUE: &str = ".wh..wh..opq";

fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// The strict ancestors of a relative path, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        rest = parent_of(rest);
        (!rest.is_empty()).then_some(rest)
    })
}

fn child(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The changes from `before` to `after`:
/// - an entry that is new, or whose metadata or content changed, with its
///   content;
/// - a deleted entry as `.wh.NAME` in its parent, only where the parent
///   stays (a deleted directory gives one whiteout, not one per child);
/// - a directory that replaced another one (a new inode) or an entry of
///   another kind, as `DIR/.wh..wh..opq` and all of its content;
/// - the ancestor directories of all of these.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Layer {
    // A directory whose lower content must be hidden.
    let replaced = |path: &str| match (before.entries.get(path), after.entries.get(path)) {
        (Some(b), Some(a)) if a.is_dir() => !b.is_dir() || b.ino != a.ino || b.dev != a.dev,
        _ => false,
    };
    let mut layer = Layer::new();
    for (path, a) in &after.entries {
        let emit =
            ancestors(path).any(replaced) || before.entries.get(path).is_none_or(|b| changed(b, a));
        if emit {
            layer.insert(path.clone(), Emit::FromTree);
        }
        if replaced(path) {
            layer.insert(child(path, OPAQUE), Emit::Marker);
        }
    }
    for path in before.entries.keys() {
        if after.entries.contains_key(path) {
            continue;
        }
        let parent = parent_of(path);
        // Every ancestor stays the same directory: this is the topmost
        // deleted path, and nothing above hides it already.
        let kept = |dir: &str| after.entries.get(dir).is_some_and(Node::is_dir) && !replaced(dir);
        if (parent.is_empty() || kept(parent)) && ancestors(path).all(kept) {
            let name = &path[path.rfind('/').map_or(0, |i| i + 1)..];
            layer.insert(child(parent, &format!(".wh.{name}")), Emit::Marker);
        }
    }
    let dirs: Vec<String> = layer
        .keys()
        .flat_map(|p| ancestors(p).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for dir in dirs {
        layer.entry(dir).or_insert(Emit::FromTree);
    }
    layer
}

fn changed(b: &Node, a: &Node) -> bool {
    if b.kind != a.kind {
        return true;
    }
    if a.is_dir() {
        return (b.mode, b.uid, b.gid, b.dev, b.ino, b.chowned)
            != (a.mode, a.uid, a.gid, a.dev, a.ino, a.chowned);
    }
    b != a
}

/// One entry written to the layer directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Mode and owner in the image.
    pub metadata: EntryMetadata,
    /// The mode the entry has on disk: the image's, with the owner's
    /// read and write bits (and search for directories), so that the
    /// build user can fill, read and remove the tree.
    pub disk_mode: u32,
}

/// Writes `layer` into the empty directory `out`, taking entries from
/// `root` (the tree after the script, as `after` recorded it). `owner`
/// turns a uid and gid seen from outside into those of the image, where
/// no chown was recorded.
pub fn write_layer(
    root: &Path,
    after: &Snapshot,
    layer: &Layer,
    out: &Path,
    owner: &dyn Fn(u32, u32) -> (u64, u64),
) -> Result<BTreeMap<String, Written>> {
    let mut written = BTreeMap::new();
    // Parents sort before their children: a path is a prefix of theirs.
    for (path, emit) in layer {
        let dest = out.join(path);
        let entry = match emit {
            Emit::Marker => {
                write_file(&dest, &mut io::empty(), 0o644)?;
                Written {
                    metadata: EntryMetadata {
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                    },
                    disk_mode: 0o644,
                }
            }
            Emit::FromTree => {
                let e = after
                    .entries
                    .get(path)
                    .with_context(|| format!("{path} is not in the tree"))?;
                let src = root.join(path);
                let disk_mode = match e.kind {
                    NodeKind::Dir => {
                        let mode = (e.mode & 0o777) | 0o700;
                        fs::create_dir(&dest)
                            .and_then(|()| {
                                fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                            })
                            .with_context(|| format!("creating {}", dest.display()))?;
                        mode
                    }
                    NodeKind::File => {
                        let mode = (e.mode & 0o777) | 0o600;
                        write_file(&dest, &mut open_nofollow(&src)?, mode)?;
                        mode
                    }
                    NodeKind::Symlink => {
                        let target = e.target.as_deref().unwrap_or(Path::new(""));
                        std::os::unix::fs::symlink(target, &dest)
                            .with_context(|| format!("creating {}", dest.display()))?;
                        0o777
                    }
                    NodeKind::Special(what) => bail!(
                        "runAsRoot left /{path}, a {what}; a layer made in the Nix store holds only files, directories and symlinks: remove it at the end of runAsRoot"
                    ),
                };
                let (uid, gid) = e.image_owner(owner);
                Written {
                    metadata: EntryMetadata {
                        mode: if e.kind == NodeKind::Symlink {
                            0o777
                        } else {
                            e.mode
                        },
                        uid,
                        gid,
                    },
                    disk_mode,
                }
            }
        };
        written.insert(path.clone(), entry);
    }
    Ok(written)
}

/// Opens a file of the tree for reading without following a symlink; one
/// the build user cannot read (mode 0, made in its namespace) is made
/// readable first.
fn open_nofollow(path: &Path) -> Result<fs::File> {
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mode = fs::symlink_metadata(path)?.mode();
            fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o7777) | 0o400))
                .with_context(|| format!("reading {}", path.display()))?;
            open()
        }
        other => other,
    }
    .with_context(|| format!("reading {}", path.display()))
}

fn write_file(dest: &Path, content: &mut dyn io::Read, mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dest)
        .with_context(|| format!("creating {}", dest.display()))?;
    io::copy(content, &mut file).with_context(|| format!("writing {}", dest.display()))?;
    // The umask may have taken bits away.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("writing {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer_of(before: &Snapshot, after: &Snapshot) -> Vec<(String, Emit)> {
        diff(before, after).into_iter().collect()
    }

    fn names(layer: &[(String, Emit)]) -> Vec<&str> {
        layer.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// A tree with `etc/passwd`, `etc/group`, `srv/data/a`, `srv/data/b`
    /// and `bin/sh -> busybox`.
    fn lower() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("srv/data")).unwrap();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(r.join("etc/group"), "root:x:0:\n").unwrap();
        fs::write(r.join("srv/data/a"), "a").unwrap();
        fs::write(r.join("srv/data/b"), "b").unwrap();
        symlink("busybox", r.join("bin/sh")).unwrap();
        dir
    }

    #[test]
    fn an_untouched_tree_gives_an_empty_layer() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        let after = snapshot(dir.path()).unwrap();
        assert_eq!(layer_of(&before, &after), vec![]);
    }

    #[test]
    fn a_created_file_comes_with_its_ancestors() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("home/alice")).unwrap();
        fs::write(dir.path().join("home/alice/.profile"), "x").unwrap();
        fs::write(dir.path().join("srv/data/c"), "c").unwrap();
        let after = snapshot(dir.path()).unwrap();
        let layer = layer_of(&before, &after);
        assert_eq!(
            names(&layer),
            [
                "home",
                "home/alice",
                "home/alice/.profile",
                "srv",
                "srv/data",
                "srv/data/c"
            ]
        );
        assert!(layer.iter().all(|(_, e)| *e == Emit::FromTree));
    }

    #[test]
    fn changed_content_and_a_chmod_are_changes() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        // Same length, new bytes.
        fs::write(dir.path().join("srv/data/a"), "A").unwrap();
        fs::set_permissions(dir.path().join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
        let after = snapshot(dir.path()).unwrap();
        assert_eq!(
            names(&layer_of(&before, &after)),
            ["etc", "srv", "srv/data", "srv/data/a"]
        );
    }

    #[test]
    fn a_chmod_of_a_file_alone_is_a_change() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        fs::set_permissions(
            dir.path().join("etc/passwd"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let after = snapshot(dir.path()).unwrap();
        assert_eq!(names(&layer_of(&before, &after)), ["etc", "etc/passwd"]);
        assert_eq!(after.entries["etc/passwd"].mode, 0o600);
    }

    #[test]
    fn a_deleted_directory_is_one_whiteout() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        fs::remove_dir_all(dir.path().join("srv/data")).unwrap();
        fs::remove_file(dir.path().join("etc/group")).unwrap();
        let after = snapshot(dir.path()).unwrap();
        let layer = layer_of(&before, &after);
        assert_eq!(
            layer,
            vec![
                ("etc".to_owned(), Emit::FromTree),
                ("etc/.wh.group".to_owned(), Emit::Marker),
                ("srv".to_owned(), Emit::FromTree),
                ("srv/.wh.data".to_owned(), Emit::Marker),
            ]
        );
    }

    #[test]
    fn a_replaced_directory_is_opaque_with_all_its_content() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        let data = dir.path().join("srv/data");
        fs::rename(&data, dir.path().join("old")).unwrap();
        fs::create_dir(&data).unwrap();
        // Moved back into the new directory: unchanged in itself, but under
        // an opaque directory it must be in the layer.
        fs::rename(dir.path().join("old/a"), data.join("a")).unwrap();
        fs::remove_dir_all(dir.path().join("old")).unwrap();
        let after = snapshot(dir.path()).unwrap();
        assert_eq!(
            names(&layer_of(&before, &after)),
            ["srv", "srv/data", "srv/data/.wh..wh..opq", "srv/data/a"]
        );
    }

    #[test]
    fn a_kind_change_replaces_the_entry() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        // A file becomes a directory, a symlink a file, a directory a file.
        fs::remove_file(dir.path().join("etc/group")).unwrap();
        fs::create_dir(dir.path().join("etc/group")).unwrap();
        fs::write(dir.path().join("etc/group/x"), "x").unwrap();
        fs::remove_file(dir.path().join("bin/sh")).unwrap();
        fs::write(dir.path().join("bin/sh"), "#!").unwrap();
        fs::remove_dir_all(dir.path().join("srv/data")).unwrap();
        fs::write(dir.path().join("srv/data"), "now a file").unwrap();
        let after = snapshot(dir.path()).unwrap();
        assert_eq!(
            names(&layer_of(&before, &after)),
            [
                "bin",
                "bin/sh",
                "etc",
                "etc/group",
                "etc/group/.wh..wh..opq",
                "etc/group/x",
                "srv",
                "srv/data"
            ]
        );
    }

    #[test]
    fn a_new_symlink_target_is_a_change() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        fs::remove_file(dir.path().join("bin/sh")).unwrap();
        symlink("bash", dir.path().join("bin/sh")).unwrap();
        let after = snapshot(dir.path()).unwrap();
        assert_eq!(names(&layer_of(&before, &after)), ["bin", "bin/sh"]);
    }

    #[test]
    fn the_layer_is_written_with_contents_markers_and_modes() {
        let dir = lower();
        let r = dir.path();
        let before = snapshot(r).unwrap();
        fs::write(
            r.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        fs::create_dir(r.join("data")).unwrap();
        fs::set_permissions(r.join("data"), fs::Permissions::from_mode(0o1555)).unwrap();
        fs::write(r.join("tool"), "t").unwrap();
        fs::set_permissions(r.join("tool"), fs::Permissions::from_mode(0o4000)).unwrap();
        fs::remove_file(r.join("srv/data/b")).unwrap();
        let after = snapshot(r).unwrap();
        let layer = diff(&before, &after);
        let out = tempfile::tempdir().unwrap();
        let written = write_layer(r, &after, &layer, out.path(), &|_, _| (7, 8)).unwrap();
        let o = out.path();
        assert_eq!(
            fs::read_to_string(o.join("etc/passwd")).unwrap(),
            fs::read_to_string(r.join("etc/passwd")).unwrap()
        );
        assert_eq!(fs::read(o.join("srv/data/.wh.b")).unwrap(), b"");
        assert_eq!(fs::read(o.join("tool")).unwrap(), b"t");
        let meta = |p: &str| written[p].metadata;
        assert_eq!(meta("data").mode, 0o1555);
        assert_eq!(written["data"].disk_mode, 0o755);
        assert_eq!(meta("tool").mode, 0o4000);
        assert_eq!((meta("tool").uid, meta("tool").gid), (7, 8));
        assert_eq!(
            meta("srv/data/.wh.b"),
            EntryMetadata {
                mode: 0o644,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(
            written.keys().collect::<Vec<_>>(),
            [
                "data",
                "etc",
                "etc/passwd",
                "srv",
                "srv/data",
                "srv/data/.wh.b",
                "tool"
            ]
        );
        // The build user can remove what was written.
        fs::remove_dir_all(o).unwrap();
    }

    #[test]
    fn recorded_owners_are_changes_with_those_owners() {
        let dir = lower();
        let r = dir.path();
        let before = snapshot(r).unwrap();
        fs::create_dir(r.join("data")).unwrap();
        let mut after = snapshot(r).unwrap();
        let key = |rel: &str| {
            let md = fs::symlink_metadata(r.join(rel)).unwrap();
            (md.dev(), md.ino())
        };
        let mut owners = Owners::new();
        for (rel, uid, gid) in [
            ("data", Some(1000), Some(1000)),
            ("etc/passwd", Some(1000), None),
            ("bin/sh", None, Some(7)),
            ("srv", Some(5), Some(5)),
        ] {
            owners.insert(key(rel), RecordedOwner { uid, gid });
        }
        after.record_owners(&owners);
        let layer = diff(&before, &after);
        // Untouched on disk, but chowned: in the layer.
        assert_eq!(
            layer.keys().collect::<Vec<_>>(),
            ["bin", "bin/sh", "data", "etc", "etc/passwd", "srv"]
        );
        let out = tempfile::tempdir().unwrap();
        let written = write_layer(r, &after, &layer, out.path(), &|_, _| (0, 0)).unwrap();
        let owner = |p: &str| (written[p].metadata.uid, written[p].metadata.gid);
        assert_eq!(owner("data"), (1000, 1000));
        assert_eq!(owner("etc/passwd"), (1000, 0));
        assert_eq!(owner("bin/sh"), (0, 7));
        assert_eq!(owner("srv"), (5, 5));
        assert_eq!(owner("etc"), (0, 0));
    }

    #[test]
    fn special_files_are_refused_with_their_path() {
        let dir = lower();
        let before = snapshot(dir.path()).unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("pipe").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let after = snapshot(dir.path()).unwrap();
        let layer = diff(&before, &after);
        let out = tempfile::tempdir().unwrap();
        let err = write_layer(dir.path(), &after, &layer, out.path(), &|u, g| {
            (u64::from(u), u64::from(g))
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("runAsRoot left /pipe, a fifo;"),
            "{err:#}"
        );
    }
}
